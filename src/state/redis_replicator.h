#pragma once
// The Redis state store (DESIGN §4 `state: {store: redis}`, §6): keeps this instance's Table and a
// Redis server in agreement, and so every instance that uses the same Redis and prefix.
//
// The Table is the local cache: workers only ever read and write the Table and never wait for
// Redis. This replicator's thread (never a worker) does all Redis I/O:
// - local writes: the Table's wake callback (an eventfd) wakes the thread, which drains the
//   changed records and writes them in pipelined batches through two Lua scripts (EVALSHA):
//   registers are written only if they win over the stored version (so an older version never
//   overwrites a newer one, whichever order writes arrive in), counters take the larger count
//   per node. Every key gets PEXPIREAT = the record's expires_ms. After each batch, one PUBLISH
//   on `<prefix>changes` names the keys that changed (and the writing node). A register write
//   that lost is followed by a read of the newer one, so the local table converges at once.
// - other instances' writes: a second connection is SUBSCRIBEd to that channel; for each message
//   from another node the thread reads the named keys (pipelined HGETALL) and Table::merge()s
//   them; now - written_us of the records that changed the table feeds status().lag.
// - (re)connect: full resync both ways: SCAN `<prefix>*` and merge everything, then write every
//   live local record (the scripts keep the newer side); keys that changed in Redis are
//   published, so instances that reconnected earlier pick up our writes made during an outage.
//   The subscription is made before the SCAN, so no change in between is missed.
// - Redis down: the Table serves local state; local writes stay in its dirty queue (bounded by
//   Table max_dirty, then it only sets its overflow flag) and are dropped by the resync on
//   return, which sends their current state; status() says "down" with the error, the observer
//   hears link("redis", false, why) once per loss (and for a failed first attempt), link("redis",
//   true, ...) after each successful resync. Reconnects back off from backoff_initial doubling to
//   backoff_max (+-20%).
// - Table::expire() is run every expire_interval (unless 0), so expired records leave the table
//   too, as they leave Redis.
// Key and value layout: state/redis_codec.h.
//
// I/O model: hiredis's synchronous context (one per connection), switched to non-blocking, with
// our own poll() over the socket, the eventfd and a deadline around redisBufferWrite /
// redisBufferRead. This is the sync API's simple request/reply code, but every wait is bounded
// (connect_timeout, command_timeout without progress) and interruptible by stop() and by local
// writes, which a blocking redisGetReply under SO_RCVTIMEO is not (and a blocking context that
// timed out is unusable anyway). The async API would need an adapter to an EventLoop we would run
// on this thread only; the thread has exactly two sockets, so poll() is enough.
//
// Limits: numeric IP hosts are best (a name is resolved with a blocking getaddrinfo on this
// thread); a full resync copies the live table once (Table::forEach may not do I/O under its
// lock); counter counts must stay below 2^53 (Lua numbers).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "core/stats.h"
#include "state/replicator.h"
#include "state/table.h"

namespace tandem::state {

struct RedisReplicatorOptions {
  std::string node_id;  // must be the table's node id; empty = the table's
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  std::string prefix = "tandem:";  // keys `<prefix><kind>:<key>`, channel `<prefix>changes`
  std::chrono::milliseconds connect_timeout{500};
  std::chrono::milliseconds command_timeout{500};  // longest wait without progress on a reply
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{2'000};
  std::chrono::milliseconds ping_interval{1'000};    // liveness check and rtt while idle
  std::chrono::milliseconds expire_interval{1'000};  // Table::expire() sweeps; 0 = not ours
  size_t batch = 512;                                // records per pipelined round trip
};

namespace detail {
class RedisConn;
class Replies;
}  // namespace detail

class RedisReplicator final : public Replicator {
 public:
  // Installs the table's wake callback: construct before the table is shared with workers. The
  // table must outlive the replicator (the callback itself stays safe after it is destroyed).
  RedisReplicator(Table& table, RedisReplicatorOptions options, ReplicatorObserver observer = {});
  ~RedisReplicator() override;  // stop()
  RedisReplicator(const RedisReplicator&) = delete;
  RedisReplicator& operator=(const RedisReplicator&) = delete;

  // Starts the thread (once). Never waits for Redis: an unreachable Redis is reported through
  // status() and the observer, not as an error. Errors: eventfd failure, node id mismatch.
  Result<void> start() override;
  // Stops and joins, within about a millisecond (every wait polls the eventfd). Idempotent; no
  // observer call after it returns.
  void stop() override;
  ReplicationStatus status() const override;

 private:
  struct WakeFd;

  void run();
  bool stopping() const { return stop_.load(std::memory_order_acquire); }

  // Connection and I/O (thread only). Each bool function returns false with `err` set when the
  // connection must be dropped (or stop was requested).
  bool connectAndSync(std::string& err);
  bool openConn(std::unique_ptr<detail::RedisConn>& out, std::string& err);
  bool loadScripts(std::string& err);
  bool waitFd(int fd, short events, std::chrono::steady_clock::time_point deadline,
              std::string& err);
  // Sends what was appended to `conn`, then reads `n` replies into `out`.
  bool flushAndRead(detail::RedisConn& conn, size_t n, detail::Replies& out, std::string& err);
  bool fullSync(std::string& err);
  bool pushLocalWrites(std::string& err);
  bool pushAll(std::string& err);
  // `fetch_stale`: read back registers whose write lost (a newer version is in Redis).
  bool writeRecords(std::span<const Record> records, bool fetch_stale, std::string& err);
  bool fetchKeys(const std::vector<std::string>& suffixes, bool observe_lag, std::string& err);
  bool fetchPending(std::string& err);
  bool readSubscription(std::string& err);
  bool ping(std::string& err);
  // Waits for the eventfd, the subscription socket (if open) or `deadline`; true if the
  // subscription socket is readable.
  bool waitIdle(std::chrono::steady_clock::time_point deadline);
  void consumeWake();
  void discardLocalWrites();
  void disconnect();
  void markUp(const std::string& detail);
  void markDown(const std::string& err);
  std::chrono::milliseconds nextBackoff();

  Table& table_;
  RedisReplicatorOptions options_;
  ReplicatorObserver observer_;
  const std::string address_;
  const std::string channel_;
  std::shared_ptr<WakeFd> wake_;  // shared with the table's wake callback

  std::thread thread_;
  std::mutex start_mu_;
  std::atomic<bool> stop_{false};

  mutable std::mutex status_mu_;
  PeerStatus peer_;  // guarded by status_mu_
  Histogram lag_;    // written by the thread only

  // Thread only.
  std::unique_ptr<detail::RedisConn> cmd_, sub_;
  std::string register_sha_, counter_sha_;
  std::unordered_set<std::string> pending_;  // notified key suffixes to read
  bool wake_pending_ = true;
  int reported_ = -1;  // last link state told to the observer: -1 none, 0 down, 1 up
  std::chrono::milliseconds delay_{0};
  uint64_t rng_ = 0;
};

}  // namespace tandem::state
