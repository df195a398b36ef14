#pragma once
// What one worker counts (DESIGN §1: workers bump their own counters, the scrape sums them).
// Bytes follow HAProxy's convention at every level: "in" is what
// clients send (requests), "out" is what they receive (responses).
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

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

// Why a client was cut off for being too slow (tandem_listener_client_timeouts_total{reason}).
enum ClientTimeout { kHeaderTimeout, kSlowBody, kSlowRead, kClientTimeoutKinds };

struct ListenerStats : TrafficStats {
  Counter connections;             // accepted
  Counter tls_handshakes;          // completed
  Counter tls_handshake_failures;  // the client sent bytes, no handshake came of them

  Counter rejected;  // accepted and closed at once: over max_connections
  Counter timeouts[kClientTimeoutKinds];
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
  Counter no_server;     // requests answered 503 because no server could take them
  Counter rate_limited;  // requests answered 429 (rate_limit)
  Histogram duration;    // request: head received -> last response byte sent
  Histogram connect;     // new upstream connection: connect() -> writable
};

// One worker's counters by name, kept across config reloads: a listener, backend or server that
// is still there after a reload counts on where it was (a server is the same server if its name
// and address are). Entries are found or created when a worker builds a generation (at start and
// on reloads, never per request) and when the control thread sums them; both lock. The counters
// themselves are written without a lock by the owning worker only.
class StatsRegistry {
 public:
  ListenerStats* listener(const std::string& name) { return find(listeners_, name); }
  BackendStats* backend(const std::string& name) { return find(backends_, name); }
  ServerStats* server(const std::string& backend, const config::Server& s) {
    return find(servers_, backend + "/" + s.name + "@" + s.address.text());
  }

 private:
  template <typename T>
  T* find(std::map<std::string, std::unique_ptr<T>>& m, const std::string& key) {
    std::lock_guard<std::mutex> g(mu_);
    auto& slot = m[key];
    if (!slot) slot = std::make_unique<T>();
    return slot.get();
  }
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<ListenerStats>> listeners_;
  std::map<std::string, std::unique_ptr<BackendStats>> backends_;
  std::map<std::string, std::unique_ptr<ServerStats>> servers_;
};

}  // namespace tandem::proxy
