#pragma once
// The process's shared-state table: every Record this instance knows (its own and its peers'),
// readable and writable from any thread. Workers use it on the request path only when a backend
// has a sticky table or a rate limit; each call takes one of 64 shard locks for a few hundred
// nanoseconds (the one place a worker takes a lock per request: the state is shared by design, as
// in HAProxy's stick tables). A replicator (peers or Redis) drains the local writes and merges
// remote ones; see record.h for the merge rules.
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "state/record.h"

namespace tandem::state {

class Table {
 public:
  struct Options {
    std::string node_id;
    size_t max_entries = 1'000'000;  // over it, new entries evict old ones (counted)
    size_t max_dirty = 262'144;      // local writes waiting for the replicator; over it: full sync
  };
  struct Stats {
    size_t entries = 0;
    uint64_t local_writes = 0;
    uint64_t merged = 0;           // remote records that changed the table
    uint64_t stale = 0;            // remote records that lost the merge (already known or older)
    uint64_t dirty_overflows = 0;  // times the replicator fell behind (each forced a full sync)
    uint64_t evictions = 0;
    uint64_t expired = 0;
  };

  explicit Table(Options options);
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;

  const std::string& nodeId() const { return node_id_; }

  // ---- request path (any thread) ----
  // A register's live value (sticky, health), or nothing if absent or expired.
  std::optional<std::string> get(Kind kind, std::string_view key, int64_t now_ms) const;
  // Writes a new version of a register from this node, valid for ttl_ms (0 = forever).
  void put(Kind kind, std::string_view key, std::string_view value, int64_t ttl_ms, int64_t now_us);
  // Like put, but writes only if the value differs or less than half of the TTL is left, so a key
  // used on every request is not re-replicated on every request. Returns whether it wrote.
  bool touch(Kind kind, std::string_view key, std::string_view value, int64_t ttl_ms,
             int64_t now_us);
  // Adds `delta` to this node's count of a counter; its expiry becomes at least now + ttl_ms.
  // Returns the cluster total after the addition.
  uint64_t add(Kind kind, std::string_view key, uint64_t delta, int64_t ttl_ms, int64_t now_us);
  // The cluster total of a counter (0 if absent or expired).
  uint64_t total(Kind kind, std::string_view key, int64_t now_ms) const;

  // ---- replication (the replicator's thread) ----
  // Merges a record from elsewhere; returns true if the table changed. Merged records are not
  // queued for replication: each node sends its own writes to every peer, full syncs the rest.
  bool merge(const Record& r, int64_t now_ms);
  // Called by a writing thread when the first local write lands after a drain. Must be cheap and
  // thread-safe (an eventfd write). Set once, before the table is shared.
  void setWake(std::function<void()> wake) { wake_ = std::move(wake); }
  // Called (on the replicator's thread, no lock held) with every remote record that changed the
  // table, e.g. to act on a peer's health observation. Set once, before the table is shared.
  void setMergeObserver(std::function<void(const Record&)> fn) { on_merge_ = std::move(fn); }
  // Moves up to `max` records written locally since the last drain into `out` (their current
  // state: several writes of one key since the last drain are sent once). Returns false if local
  // writes were lost from the queue because the replicator fell behind (more than max_dirty keys
  // waiting): the caller must send a full sync (forEach) to every peer.
  bool drain(std::vector<Record>& out, size_t max);
  // Every live record, for a full sync. `fn` runs under a shard lock: it must not call the table.
  void forEach(const std::function<void(const Record&)>& fn, int64_t now_ms) const;
  // Drops expired records; returns how many.
  size_t expire(int64_t now_ms);

  Stats stats() const;

 private:
  struct Entry {
    Record rec;
    bool dirty = false;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Entry> map;  // kind byte + key
    std::vector<std::string> dirty;              // map keys with dirty == true
  };
  static constexpr size_t kShards = 64;

  static std::string mapKey(Kind kind, std::string_view key);
  Shard& shardOf(const std::string& map_key) const;
  // Under the shard lock: a new entry for `mk`, evicting another if the shard is full.
  Entry& slot(Shard& s, const std::string& mk, bool& created);
  void markDirty(Shard& s, const std::string& mk, Entry& e);
  // A write from this node to (kind, key), under its shard lock: `write(Record&, bool created)`
  // updates the record (a created one comes with kind and key set) and returns whether it wrote,
  // and then the entry is marked dirty. Returns what `write` returned. Defined in table.cc.
  template <class Write>
  bool writeLocal(Kind kind, std::string_view key, Write&& write);

  const std::string node_id_;
  const size_t max_per_shard_;
  const size_t max_dirty_;
  mutable std::array<Shard, kShards> shards_;
  std::function<void()> wake_;
  std::function<void(const Record&)> on_merge_;
  std::atomic<size_t> dirty_count_{0};
  std::atomic<bool> overflowed_{false};
  std::atomic<uint64_t> local_writes_{0}, merged_{0}, stale_{0}, overflows_{0}, evictions_{0},
      expired_{0};
};

}  // namespace tandem::state
