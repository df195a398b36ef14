#pragma once
// A worker: one thread, one event loop, its own SO_REUSEPORT listeners, balancers, upstream
// connection pools and counters. Nothing here is shared with other workers except the immutable
// snapshot (config, health manager) and the per-listener connection counters (one atomic
// increment per accepted connection).
//
// Reloads: the server publishes a new Snapshot; each worker builds a Generation from it (its
// balancers and pools for that config) on its own thread. Sessions pin the generation they use;
// in-flight requests finish on theirs, the next request of a keep-alive connection moves to the
// current one, and a retired generation is freed when its last session leaves.
#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "balance/balancer.h"
#include "config/config.h"
#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/socket.h"
#include "health/manager.h"
#include "health/policy.h"
#include "health/view.h"
#include "http/parser.h"
#include "proxy/splice_pipe.h"
#include "proxy/stats.h"
#include "state/rate_limit.h"
#include "state/table.h"

namespace tandem::proxy {

class AccessLog;
class Session;
class UpstreamConn;
class Worker;

// Process-wide state of one listener, shared by the workers' sockets for it.
struct ListenerShared {
  const config::Listener* cfg = nullptr;
  int index = 0;  // in Config::listeners
  int backend_index = -1;
  // Open connections, for max_connections; kept across reloads while the address stays.
  std::shared_ptr<std::atomic<uint32_t>> connections = std::make_shared<std::atomic<uint32_t>>(0);
};

// What every worker runs from: one config, its listeners, and the health manager of that config.
// Immutable once published; shared by all workers.
struct Snapshot {
  uint64_t id = 0;  // 1, 2, ... per successful load: the config revision
  std::shared_ptr<const config::Config> cfg;
  std::string source = "file";  // file | etcd
  std::string origin;           // the file path, or etcd key
  int64_t source_revision = 0;  // etcd: the key's mod_revision
  int64_t loaded_unix_ms = 0;
  std::vector<std::shared_ptr<ListenerShared>> listeners;  // parallel to cfg->listeners
  std::shared_ptr<health::HealthManager> health;
};

// One server of a backend, as seen by one worker.
struct ServerRt {
  const config::Server* cfg = nullptr;
  SockAddr addr;
  int group = 0;                      // 0 = primaries, 1 = backups
  int position = 0;                   // index inside its group's arrays
  int64_t failed_until_ms = 0;        // after a connect failure, skipped until then (this worker)
  uint32_t consecutive_failures = 0;  // passive detection, counted per worker
  health::ServerView health;          // from the control thread's latest snapshot
  ServerStats* stats = nullptr;       // this worker's counters for the server
  std::vector<UpstreamConn*> idle;    // keep-alive connections ready for reuse (LIFO)
  std::string sticky_cookie;          // sticky cookie mode: the value naming this server
  std::string set_cookie;             // ... and the Set-Cookie header value that gives it
};

// A balancing group (primaries or backups) with the arrays its Balancer reads.
struct GroupRt {
  std::vector<int> members;  // indices into BackendRt::servers
  std::unique_ptr<balance::Balancer> lb;
  std::vector<uint8_t> eligible;
  std::vector<uint32_t> active;
};

struct BackendRt {
  const config::Backend* cfg = nullptr;
  std::vector<ServerRt> servers;
  GroupRt groups[2];
  bool hashed = false;
  bool panic = false;
  uint32_t pending = 0;                   // requests waiting for a new upstream connection
  uint64_t active_requests = 0;           // requests in flight on this backend (this worker)
  uint32_t max_in_flight_per_server = 0;  // this worker's share of max_connections_per_server
  uint32_t max_pending = 0;               // this worker's share of max_pending
  std::unique_ptr<health::RetryBudget> retry_budget;
  std::unique_ptr<state::RateLimiter> rate_limiter;  // rate_limit configured (and a table)
  BackendStats* stats = nullptr;                     // this worker's counters for the backend
  int index = 0;                                     // in Config::backends
  struct Generation* gen = nullptr;
};

// A worker's runtime for one Snapshot.
struct Generation {
  std::shared_ptr<const Snapshot> snap;
  std::vector<BackendRt> backends;
  std::vector<ListenerStats*> listener_stats;  // parallel to snap->listeners
  std::shared_ptr<const health::HealthView> health;
  uint32_t sessions = 0;  // open sessions pinned to it
  bool retired = false;   // a newer one is current
};

// Why a pick found no server.
enum class PickFailure { kNone, kNoHealthyServer, kAtCapacity };

// Why a server may not be picked for this request (retries exclude servers already tried).
// The first 64 servers live in a word; larger pools spill into a vector (allocated only then).
struct PickExclusions {
  uint64_t small = 0;
  std::vector<uint64_t> big;  // bits for servers 64 and up
  void add(int i) {
    if (i < 0) return;
    if (i < 64) {
      small |= uint64_t{1} << i;
      return;
    }
    size_t w = static_cast<size_t>(i - 64) / 64;
    if (big.size() <= w) big.resize(w + 1, 0);
    big[w] |= uint64_t{1} << ((i - 64) % 64);
  }
  bool has(int i) const {
    if (i < 64) return (small >> i) & 1;
    size_t w = static_cast<size_t>(i - 64) / 64;
    return w < big.size() && ((big[w] >> ((i - 64) % 64)) & 1);
  }
};

class Worker {
 public:
  Worker(int id, unsigned worker_count, uint64_t seed);
  ~Worker();

  // Before start(): the first snapshot and this worker's listening sockets (one per listener of
  // the snapshot, parallel to snap->listeners; the worker owns and closes them).
  void init(std::shared_ptr<const Snapshot> snap, std::vector<int> listen_fds);
  void start();
  // Thread-safe: a new snapshot (config reload) with this worker's sockets for it; sockets of
  // listeners that are kept are the same numbers as before. Applied on the worker's thread.
  void publishSnapshot(std::shared_ptr<const Snapshot> snap, std::vector<int> listen_fds);
  // Thread-safe: stop accepting, let sessions finish, then end the thread.
  void drain();
  void join();

  EventLoop& loop() { return loop_; }
  BufferPool& pool() { return pool_; }
  balance::Random& rng() { return rng_; }
  // Thread-safe (find-or-create locks; the counters are single-writer atomics).
  StatsRegistry& stats() { return stats_; }
  // Optional access log (set before start()); nullptr when off.
  void setAccessLog(AccessLog* log) { access_log_ = log; }
  AccessLog* accessLog() const { return access_log_; }
  // Shared state (sticky table, rate limits) and the secret that signs sticky cookies; before
  // start().
  void setState(state::Table* table, std::string cookie_secret) {
    state_ = table;
    cookie_secret_ = std::move(cookie_secret);
  }
  state::Table* state() const { return state_; }
  int id() const { return id_; }
  bool draining() const { return draining_; }
  Generation* current() { return gen_.get(); }
  // Thread-safe: id of the snapshot this worker runs new requests on.
  uint64_t appliedSnapshot() const { return applied_.load(); }

  // Picks a server of backend `b` for a request with key hash `hash`; -1 if none can take it
  // (then `why` says whether none was healthy or all were at their limits).
  // `preferred` (a sticky server): taken if it may be picked at all, whatever the balancer says.
  int pickServer(BackendRt& b, uint64_t hash, const PickExclusions& ex, PickFailure* why = nullptr,
                 int preferred = -1);
  // Thread-safe: a new health snapshot from the control thread (applied on the worker's thread
  // if it belongs to the current generation's health manager).
  void publishHealth(std::shared_ptr<const health::HealthView> view);
  // Passive outlier detection: the outcome of one try on a server.
  void recordOutcome(BackendRt& b, int server, bool ok);
  // HTTP statuses that count as a failed try for passive detection.
  static bool isFailureStatus(const config::Backend& b, int status);

  // In-flight accounting used by least_conn / p2c.
  void requestStarted(BackendRt& b, int server);
  void requestFinished(BackendRt& b, int server);
  void markConnectFailure(BackendRt& b, int server);

  // Upstream pool: an idle keep-alive connection to the server, or nullptr.
  UpstreamConn* takeIdle(ServerRt& s);
  void putIdle(UpstreamConn* c);
  void upstreamClosed(UpstreamConn* c);

  // Sessions pin a generation: opened/closed/moved keep its session count.
  void sessionOpened(Session* s, Generation* g);
  void sessionMoved(Generation* from, Generation* to);
  void sessionClosed(Session* s, Generation* g);

  // Parsed heads are used right after a parse completes and never kept, so one per worker suffices
  // (an idle connection must not carry kilobytes of header slots).
  http::RequestHead scratch_request;
  http::ResponseHead scratch_response;
  // Pipes for spliced TCP tunnels (two descriptors each, so capped per worker).
  PipePool pipes{512};

 private:
  class Acceptor;
  void onDrain();
  void maybeFinish();
  void apply(std::shared_ptr<const Snapshot> snap, std::vector<int> fds);
  std::unique_ptr<Generation> build(std::shared_ptr<const Snapshot> snap);
  void retire(std::unique_ptr<Generation> g);
  void release(Generation* g);
  void applyHealth(Generation& g, const health::HealthView& view);
  void rebuildBalancers(BackendRt& b);

  int id_;
  EventLoop loop_;
  BufferPool pool_;
  balance::Random rng_;
  StatsRegistry stats_;
  AccessLog* access_log_ = nullptr;
  state::Table* state_ = nullptr;
  std::string cookie_secret_;
  std::unique_ptr<Generation> gen_;
  std::vector<std::unique_ptr<Generation>> retired_;
  std::mutex mailbox_mu_;  // guards the two pending_ fields (written by other threads)
  std::shared_ptr<const health::HealthView> pending_health_;
  std::shared_ptr<const Snapshot> pending_snap_;
  std::vector<int> pending_fds_;
  unsigned worker_count_ = 1;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<Session*> sessions_;  // for draining; index kept in the session
  bool draining_ = false;
  std::atomic<bool> drain_requested_{false};
  std::atomic<uint64_t> applied_{0};
  std::thread thread_;
};

}  // namespace tandem::proxy
