#pragma once
// One consistent-enough picture of the data plane for the control thread: every worker's
// counters summed, plus health and admin state. Built for each scrape, API call and sample;
// the workers are never stopped or locked for it.
#include <cstdint>
#include <vector>

#include "core/stats.h"
#include "health/manager.h"
#include "health/view.h"
#include "proxy/server.h"

namespace tandem::admin {

struct TrafficTotals {
  uint64_t requests = 0;
  uint64_t responses[6] = {};  // [0] = ended without a response, [1..5] = 1xx..5xx
  uint64_t bytes_in = 0;       // request bytes
  uint64_t bytes_out = 0;      // response bytes
  uint64_t responsesTotal() const {
    uint64_t n = 0;
    for (int i = 1; i < 6; ++i) n += responses[i];
    return n;
  }
};

struct ListenerTotals : TrafficTotals {
  uint64_t connections = 0;
  uint64_t tls_handshakes = 0;
  uint64_t tls_handshake_failures = 0;
  uint64_t rejected = 0;      // over max_connections
  uint64_t timeouts[3] = {};  // by proxy::ClientTimeout: header, body (slow POST), read
  int64_t active = 0;         // open client connections
};

struct ServerTotals : TrafficTotals {
  uint64_t connects = 0;
  uint64_t connect_failures = 0;
  uint64_t failures = 0;
  int64_t active = 0;
  uint64_t checks_passed = 0;
  uint64_t checks_failed = 0;
  uint64_t ejections = 0;
  health::ServerView view;
  health::AdminState admin = health::AdminState::kEnabled;
  const char* state() const { return view.healthy ? "up" : view.ejected ? "ejected" : "down"; }
  double effectiveWeight() const { return view.weight * view.weight_permille / 1000.0; }
};

struct BackendTotals : TrafficTotals {
  uint64_t connect_failures = 0;
  uint64_t retries = 0;
  uint64_t no_server = 0;
  uint64_t rate_limited = 0;
  HistogramSnapshot duration;
  HistogramSnapshot connect;
  std::vector<ServerTotals> servers;
  bool panic = false;
  size_t healthy = 0;
  int64_t active() const {
    int64_t n = 0;
    for (const ServerTotals& s : servers) n += s.active;
    return n;
  }
};

struct Totals {
  std::shared_ptr<const proxy::Snapshot> snap;  // the config these are indexed by
  std::vector<ListenerTotals> listeners;        // parallel to snap->cfg->listeners
  std::vector<BackendTotals> backends;          // parallel to snap->cfg->backends
  uint64_t health_version = 0;
  uint64_t revision = 0;
};

Totals collect(proxy::Server& server);

const char* adminStateName(health::AdminState s);

}  // namespace tandem::admin
