#pragma once
// A small blocking client for etcd's v3 JSON gateway (plain HTTP/1.1, no gRPC), used by the
// control plane: the etcd config source (DESIGN §6 "Central config"), `tandem config push` and the
// lease-based leader election (`cluster.election: etcd`).
//
// Wire facts (FACTS.md, etcd 3.4): keys and values travel base64-encoded, 64-bit numbers as JSON
// strings, and fields holding their default value are omitted (a PUT event has no `type`, a failed
// txn has no `succeeded`, a lease that is gone answers a keepalive without `TTL`).
//
// Every call opens its own connection (Connection: close), so an EtcdClient holds no socket between
// calls and may be used from several threads at once. Calls block for at most `timeout` per
// endpoint tried, and poll the cancel hook at least every 50 ms (at once with a wake fd).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/socket.h"

namespace tandem::config {

// Standard base64 (RFC 4648 §4, with padding), as the gateway uses for keys and values.
std::string base64Encode(std::string_view bytes);
// Strict: rejects characters outside the alphabet, bad padding and lengths that are not a multiple
// of 4. nullopt on any of these.
std::optional<std::string> base64Decode(std::string_view text);

struct EtcdClientOptions {
  // "http://host:port" URLs (IP literals or localhost), tried in order; the client starts with the
  // endpoint that answered last.
  std::vector<std::string> endpoints;
  // Per endpoint and call: connect + request + complete answer (for a watch: until it is created).
  std::chrono::milliseconds timeout{2'000};
  // Polled at least every 50 ms while any call waits; true ends the call with code ECANCELED.
  // Called on the calling thread. Empty = never cancelled.
  std::function<bool()> cancelled;
  // Optional: a descriptor (eventfd) the owner makes readable when it sets `cancelled`, polled
  // along with the socket so that cancelling takes effect at once instead of within 50 ms. Not
  // owned, never read: the owner drains it before reusing the client.
  int wake_fd = -1;
};

// One key as etcd stores it (the gateway omits zero fields; they read as 0 / empty here).
struct EtcdKeyValue {
  bool found = false;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;  // 0 = no lease
};

struct EtcdRange {
  EtcdKeyValue kv;       // kv.found == false if the key does not exist
  int64_t revision = 0;  // header revision: the store's revision when etcd answered
};

// Outcome of txnCreate: `created` if our put ran (the key did not exist); otherwise `existing` is
// the key as it was (it may also be absent, if it disappeared between the compare and the range).
struct EtcdCreateResult {
  bool created = false;
  EtcdKeyValue existing;
  int64_t revision = 0;  // header revision (the put's revision when created)
};

struct EtcdWatchEvent {
  bool deleted = false;
  std::string value;  // empty for a delete
  int64_t mod_revision = 0;
};

// Why a watch ended without an error (errors: connection lost, timeout before the watch was
// created, an etcd error answer; see watch()).
struct WatchEnd {
  enum class Reason {
    kCancelled,        // our stop hook, the client's cancel hook, or the deadline
    kCompacted,        // start_revision is older than the compaction: re-read, then watch again
    kServerCancelled,  // etcd cancelled the watch for another reason (message says why)
  };
  Reason reason = Reason::kCancelled;
  int64_t compact_revision = 0;  // kCompacted: the oldest revision still available
  int64_t revision = 0;          // the last header revision seen on the stream (0 if none)
  std::string message;
};

class EtcdClient {
 public:
  // Validates every endpoint (config::parseHttpUrl); the error names the bad one.
  static Result<EtcdClient> make(EtcdClientOptions options);

  // GET /health: true when etcd says "health":"true".
  Result<bool> health() const;

  Result<EtcdRange> range(std::string_view key) const;
  // Returns the revision of the put. lease 0 = none.
  Result<int64_t> put(std::string_view key, std::string_view value, int64_t lease = 0) const;
  // Deletes one key; returns the number of keys deleted (0 or 1).
  Result<int64_t> del(std::string_view key) const;

  // Txn: if the key does not exist (create_revision == 0) put `value` under `lease`, else range it.
  Result<EtcdCreateResult> txnCreate(std::string_view key, std::string_view value,
                                     int64_t lease) const;
  // Txn: delete the key only if its value is `value` (and, when lease != 0, it is held under that
  // lease). Returns true if it was deleted.
  Result<bool> txnDeleteIfValue(std::string_view key, std::string_view value,
                                int64_t lease = 0) const;

  struct Lease {
    int64_t id = 0;
    int64_t ttl_s = 0;  // as granted (etcd may raise a TTL below its minimum)
  };
  Result<Lease> leaseGrant(int64_t ttl_s) const;
  // One keepalive round. Returns the remaining TTL in seconds; 0 = the lease is gone. `timeout`
  // overrides the client's timeout for this call when positive (a leader bounds it by its own
  // step-down deadline).
  Result<int64_t> leaseKeepAlive(int64_t id,
                                 std::chrono::milliseconds timeout = std::chrono::milliseconds{
                                     0}) const;
  Result<void> leaseRevoke(int64_t id) const;
  // Compacts the history up to `revision` (physical: waits until it is applied). For tests.
  Result<void> compact(int64_t revision) const;

  // Streams the events of one key from `start_revision` (0 = from now) until `stop()` returns true
  // (polled at least every 50 ms), `until` passes, the client's cancel hook fires, etcd compacts
  // past us or cancels the watch, or the connection fails. `on_event` is called on this thread, in
  // revision order; `on_created` (optional) once the watch is established, with the header
  // revision. Errors: the connection was lost or timed out (retryable = true), or etcd answered
  // an error (retryable = false). Only the first endpoint that accepts the watch is used.
  using EventFn = std::function<void(const EtcdWatchEvent&)>;
  Result<WatchEnd> watch(
      std::string_view key, int64_t start_revision, const EventFn& on_event,
      const std::function<bool()>& stop,
      std::chrono::steady_clock::time_point until = std::chrono::steady_clock::time_point::max(),
      const std::function<void(int64_t revision)>& on_created = {}) const;

  const std::vector<std::string>& endpoints() const { return options_.endpoints; }

  EtcdClient(EtcdClient&& o) noexcept
      : options_(std::move(o.options_)),
        endpoints_(std::move(o.endpoints_)),
        preferred_(o.preferred_.load(std::memory_order_relaxed)) {}
  EtcdClient& operator=(EtcdClient&& o) noexcept {
    options_ = std::move(o.options_);
    endpoints_ = std::move(o.endpoints_);
    preferred_.store(o.preferred_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    return *this;
  }

  struct Endpoint {
    std::string url;   // as given, for messages
    std::string host;  // Host header
    std::string base;  // path prefix from the URL, without a trailing '/'
    SockAddr addr;
  };

 private:
  struct Answer {
    int status = 0;
    std::string body;
    std::string url;  // the endpoint that answered
  };
  enum class Read { kWhole, kFirstLine };  // kFirstLine: one streamed message is enough
  EtcdClient() = default;
  // POSTs (GETs when `get`) to each endpoint in turn, starting with the preferred one, until one
  // answers. A 5xx answer also moves on to the next endpoint.
  Result<Answer> call(std::string_view path, const std::string& body, bool get,
                      std::chrono::milliseconds timeout, Read read = Read::kWhole) const;
  // Tries the endpoints in turn, starting with the one that answered last, until
  // `attempt(index, endpoint, last_endpoint, failures)` returns a result (an answer, or an error to
  // pass on as it is); nullopt moves on to the next endpoint, after noting why in `failures`. When
  // none answered: a retryable error listing the notes. Defined (and used) in etcd_client.cc.
  template <class T, class F>
  Result<T> tryEndpoints(F&& attempt) const;
  // call() + status check: a non-2xx answer becomes an Error with etcd's message.
  Result<Answer> callJson(std::string_view path, const std::string& body,
                          std::chrono::milliseconds timeout = std::chrono::milliseconds{0},
                          Read read = Read::kWhole) const;

  EtcdClientOptions options_;
  std::vector<Endpoint> endpoints_;
  // Index of the endpoint that answered last: a hint only, shared by concurrent calls.
  mutable std::atomic<size_t> preferred_{0};
};

}  // namespace tandem::config
