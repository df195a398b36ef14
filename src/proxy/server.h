#pragma once
// The data plane of one process: binds every listener once per worker (SO_REUSEPORT), then runs
// the workers. Binding happens up front on the calling thread so that a port in use is reported
// before anything starts.
#include <memory>
#include <vector>

#include "config/config.h"
#include "core/error.h"
#include "health/events.h"
#include "health/manager.h"
#include "proxy/worker.h"

namespace tandem::proxy {

class Server {
 public:
  Server();
  ~Server();

  Result<void> start(std::shared_ptr<const config::Config> cfg);
  // Stops accepting and lets in-flight requests finish; returns true if all workers finished
  // within `timeout`.
  bool drain(config::Duration timeout);
  size_t workerCount() const { return workers_.size(); }
  health::HealthManager& health() { return *health_; }
  health::EventLog& events() { return events_; }
  const config::Config& config() const { return *cfg_; }
  // Read-only views for the control thread (counters are single-writer atomics).
  const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }
  const ListenerShared& listener(size_t i) const { return *listeners_[i]; }
  // Optional access log, shared by the workers (set before start()).
  void setAccessLog(AccessLog* log) { access_log_ = log; }

 private:
  std::shared_ptr<const config::Config> cfg_;
  health::EventLog events_;
  std::unique_ptr<health::HealthManager> health_;
  std::vector<std::unique_ptr<ListenerShared>> listeners_;
  std::vector<std::unique_ptr<Worker>> workers_;
  AccessLog* access_log_ = nullptr;
};

// workers: auto -> one per online CPU.
unsigned resolveWorkerCount(uint32_t configured);

}  // namespace tandem::proxy
