#pragma once
// A worker: one thread, one event loop, its own SO_REUSEPORT listeners, balancers, upstream
// connection pools and counters. Nothing here is shared with other workers except the immutable
// config and the per-listener connection counters (one atomic increment per accepted connection).
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
  std::atomic<uint32_t> connections{0};
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
  BackendStats* stats = nullptr;  // this worker's counters for the backend
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
  Worker(int id, unsigned worker_count, std::shared_ptr<const config::Config> cfg,
         std::vector<ListenerShared*> shared, std::vector<int> listen_fds, uint64_t seed,
         health::HealthManager* health);
  ~Worker();

  void start();
  // Thread-safe: stop accepting, let sessions finish, then end the thread.
  void drain();
  void join();

  EventLoop& loop() { return loop_; }
  BufferPool& pool() { return pool_; }
  balance::Random& rng() { return rng_; }
  // Thread-safe to read from any thread (single-writer counters); written by this worker only.
  WorkerStats& stats() { return stats_; }
  const WorkerStats& stats() const { return stats_; }
  // Optional access log (set before start()); nullptr when off.
  void setAccessLog(AccessLog* log) { access_log_ = log; }
  AccessLog* accessLog() const { return access_log_; }
  int id() const { return id_; }
  const config::Config& config() const { return *cfg_; }
  bool draining() const { return draining_; }

  // Picks a server of backend `b` for a request with key hash `hash`; -1 if none can take it
  // (then `why` says whether none was healthy or all were at their limits).
  int pickServer(BackendRt& b, uint64_t hash, const PickExclusions& ex, PickFailure* why = nullptr);
  // Thread-safe: a new health snapshot from the control thread (applied on the worker's thread).
  void publishHealth(std::shared_ptr<const health::HealthView> view);
  // Passive outlier detection: the outcome of one try on a server.
  void recordOutcome(BackendRt& b, int server, bool ok);
  // HTTP statuses that count as a failed try for passive detection.
  static bool isFailureStatus(const config::Backend& b, int status);
  BackendRt& backend(int i) { return backends_[i]; }

  // In-flight accounting used by least_conn / p2c.
  void requestStarted(BackendRt& b, int server);
  void requestFinished(BackendRt& b, int server);
  void markConnectFailure(BackendRt& b, int server);

  // Upstream pool: an idle keep-alive connection to the server, or nullptr.
  UpstreamConn* takeIdle(ServerRt& s);
  void putIdle(UpstreamConn* c);
  void upstreamClosed(UpstreamConn* c);

  void sessionOpened(Session* s);
  void sessionClosed(Session* s);

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
  void applyHealth(const health::HealthView& view);
  void rebuildBalancers(BackendRt& b);

  int id_;
  std::shared_ptr<const config::Config> cfg_;
  EventLoop loop_;
  BufferPool pool_;
  balance::Random rng_;
  WorkerStats stats_;
  AccessLog* access_log_ = nullptr;
  health::HealthManager* health_manager_ = nullptr;
  std::shared_ptr<const health::HealthView> health_;
  std::mutex health_mu_;  // guards pending_health_ (written by the control thread)
  std::shared_ptr<const health::HealthView> pending_health_;
  unsigned worker_count_ = 1;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  std::vector<BackendRt> backends_;
  std::vector<Session*> sessions_;  // for draining; index kept in the session
  bool draining_ = false;
  std::atomic<bool> drain_requested_{false};
  std::thread thread_;
};

}  // namespace tandem::proxy
