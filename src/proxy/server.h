#pragma once
// The data plane of one process: binds every listener once per worker (SO_REUSEPORT), runs the
// workers, and replaces the running config without dropping a connection (reload). Binding happens
// on the calling thread so that a port in use is reported before anything changes.
//
// Threading: start(), reload() and drain() run on the main thread; snapshot(), workers() and
// events() may be used from any thread.
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/error.h"
#include "health/events.h"
#include "health/manager.h"
#include "proxy/worker.h"

namespace tandem::proxy {

// Where a config came from, for the status API and logs.
struct ConfigOrigin {
  std::string source = "file";  // file | etcd
  std::string origin;           // path or key
  int64_t source_revision = 0;  // etcd mod_revision
};

class Server {
 public:
  Server();
  ~Server();

  // bind() then run().
  Result<void> start(std::shared_ptr<const config::Config> cfg, ConfigOrigin origin = {});
  // Binds every listener and builds the workers without starting any thread, so that the
  // process can drop privileges before threads exist (capabilities are per thread).
  Result<void> bind(std::shared_ptr<const config::Config> cfg, ConfigOrigin origin = {});
  // Starts the worker and health threads of a bound server.
  void run();
  // Applies a validated config: listeners whose address stays keep their sockets, new ones are
  // bound (an error here changes nothing), removed ones stop accepting; in-flight requests finish
  // on the old config; health state, admin states and counters of unchanged servers are kept.
  // Returns once every worker runs new requests on it.
  Result<void> reload(std::shared_ptr<const config::Config> cfg, ConfigOrigin origin = {});
  // Stops accepting and lets in-flight requests finish; returns true if all workers finished
  // within `timeout`.
  bool drain(config::Duration timeout);
  size_t workerCount() const { return workers_.size(); }
  std::shared_ptr<const Snapshot> snapshot() const;
  health::EventLog& events() { return events_; }
  const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }
  // Optional access log, shared by the workers (set before start()).
  void setAccessLog(AccessLog* log) { access_log_ = log; }
  // The shared-state table (sticky table, rate limits) and the sticky-cookie secret; before
  // start(). Without a table, rate limits and sticky tables are off.
  void setState(state::Table* table, std::string cookie_secret) {
    state_ = table;
    cookie_secret_ = std::move(cookie_secret);
  }
  state::Table* state() const { return state_; }
  // Optional: called with every health view published (on the health thread), e.g. for VRRP
  // tracking. Set before start().
  void setHealthObserver(std::function<void(const health::HealthView&)> fn) {
    health_observer_ = std::move(fn);
  }

 private:
  // Builds the snapshot for `cfg`, binding what is missing; `fds[w]` gets worker w's sockets.
  Result<std::shared_ptr<Snapshot>> prepare(std::shared_ptr<const config::Config> cfg,
                                            const ConfigOrigin& origin,
                                            std::vector<std::vector<int>>& fds);
  void startHealth(const Snapshot& snap);

  mutable std::mutex mu_;  // guards snap_
  std::shared_ptr<const Snapshot> snap_;
  health::EventLog events_;
  unsigned n_ = 0;
  // Listening sockets by address ("127.0.0.1:8080"), one per worker; owned by the workers'
  // acceptors, recorded here so that a reload can hand the same ones to the next generation.
  std::map<std::string, std::vector<int>> sockets_;
  std::vector<std::unique_ptr<Worker>> workers_;
  AccessLog* access_log_ = nullptr;
  state::Table* state_ = nullptr;
  std::string cookie_secret_;
  std::function<void(const health::HealthView&)> health_observer_;
};

// workers: auto -> one per online CPU.
unsigned resolveWorkerCount(uint32_t configured);

}  // namespace tandem::proxy
