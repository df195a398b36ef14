#pragma once
// What one worker counts (DESIGN §1: workers bump their own counters, the scrape sums them).
// Indexed like the config: listeners[i] is Config::listeners[i], backends[b].servers[s] is
// Config::backends[b].servers[s]. Bytes follow HAProxy's convention at every level: "in" is what
// clients send (requests), "out" is what they receive (responses).
#include <cstddef>
#include <memory>

#include "config/config.h"
#include "core/stats.h"

namespace tandem::proxy {

struct TrafficStats {
  Counter requests;
  Counter responses[6];  // by status class 1xx..5xx (index 1..5); [0]: ended without a response
  Counter bytes_in;
  Counter bytes_out;

  void respond(int status) { responses[status >= 100 && status < 600 ? status / 100 : 0].add(); }
};

struct ListenerStats : TrafficStats {
  Counter connections;  // accepted
};

struct ServerStats : TrafficStats {
  Counter connects;          // new upstream connections opened
  Counter connect_failures;  // refused, unreachable or timed out
  Counter failures;          // tries that failed after connecting (reset, timeout, failure status)
  Gauge active;              // requests in flight on this server
};

struct BackendStats : TrafficStats {
  Counter connect_failures;
  Counter retries;
  Counter no_server;   // requests answered 503 because no server could take them
  Histogram duration;  // request: head received -> last response byte sent
  Histogram connect;   // new upstream connection: connect() -> writable
  std::unique_ptr<ServerStats[]> servers;
  size_t server_count = 0;
};

struct WorkerStats {
  explicit WorkerStats(const config::Config& cfg)
      : listeners(std::make_unique<ListenerStats[]>(cfg.listeners.size())),
        listener_count(cfg.listeners.size()),
        backends(std::make_unique<BackendStats[]>(cfg.backends.size())),
        backend_count(cfg.backends.size()) {
    for (size_t b = 0; b < backend_count; ++b) {
      backends[b].server_count = cfg.backends[b].servers.size();
      backends[b].servers = std::make_unique<ServerStats[]>(backends[b].server_count);
    }
  }
  std::unique_ptr<ListenerStats[]> listeners;
  size_t listener_count;
  std::unique_ptr<BackendStats[]> backends;
  size_t backend_count;
};

}  // namespace tandem::proxy
