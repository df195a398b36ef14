#include "admin/snapshot.h"

namespace tandem::admin {
namespace {

void addTraffic(TrafficTotals& t, const proxy::TrafficStats& s) {
  t.requests += s.requests.get();
  for (int i = 0; i < 6; ++i) t.responses[i] += s.responses[i].get();
  t.bytes_in += s.bytes_in.get();
  t.bytes_out += s.bytes_out.get();
}

}  // namespace

const char* adminStateName(health::AdminState s) {
  switch (s) {
    case health::AdminState::kEnabled:
      return "enabled";
    case health::AdminState::kDraining:
      return "draining";
    case health::AdminState::kDisabled:
      return "disabled";
  }
  return "enabled";
}

Totals collect(proxy::Server& server) {
  auto snap = server.snapshot();
  const config::Config& cfg = *snap->cfg;
  Totals t;
  t.revision = snap->id;
  t.listeners.resize(cfg.listeners.size());
  t.backends.resize(cfg.backends.size());
  for (size_t b = 0; b < cfg.backends.size(); ++b) {
    t.backends[b].servers.resize(cfg.backends[b].servers.size());
  }
  // Counters are looked up by name (they outlive reloads); the lookups lock the worker's
  // registry briefly, the counters themselves are read without a lock.
  for (const auto& w : server.workers()) {
    proxy::StatsRegistry& reg = w->stats();
    for (size_t l = 0; l < t.listeners.size(); ++l) {
      const proxy::ListenerStats& ls = *reg.listener(cfg.listeners[l].name);
      addTraffic(t.listeners[l], ls);
      t.listeners[l].connections += ls.connections.get();
      t.listeners[l].tls_handshakes += ls.tls_handshakes.get();
      t.listeners[l].tls_handshake_failures += ls.tls_handshake_failures.get();
      t.listeners[l].rejected += ls.rejected.get();
      for (int k = 0; k < proxy::kClientTimeoutKinds; ++k) {
        t.listeners[l].timeouts[k] += ls.timeouts[k].get();
      }
    }
    for (size_t b = 0; b < t.backends.size(); ++b) {
      const config::Backend& bc = cfg.backends[b];
      const proxy::BackendStats& bs = *reg.backend(bc.name);
      BackendTotals& bt = t.backends[b];
      addTraffic(bt, bs);
      bt.connect_failures += bs.connect_failures.get();
      bt.retries += bs.retries.get();
      bt.no_server += bs.no_server.get();
      bt.rate_limited += bs.rate_limited.get();
      bt.duration.addFrom(bs.duration);
      bt.connect.addFrom(bs.connect);
      for (size_t s = 0; s < bt.servers.size(); ++s) {
        const proxy::ServerStats& ss = *reg.server(bc.name, bc.servers[s]);
        ServerTotals& st = bt.servers[s];
        addTraffic(st, ss);
        st.connects += ss.connects.get();
        st.connect_failures += ss.connect_failures.get();
        st.failures += ss.failures.get();
        st.active += ss.active.get();
      }
    }
  }
  for (size_t l = 0; l < t.listeners.size(); ++l) {
    t.listeners[l].active = snap->listeners[l]->connections->load(std::memory_order_relaxed);
  }
  health::HealthManager& hm = *snap->health;
  auto view = hm.current();
  auto admin = hm.adminStates();
  if (view) t.health_version = view->version;
  for (size_t b = 0; b < t.backends.size(); ++b) {
    BackendTotals& bt = t.backends[b];
    if (view && b < view->backends.size()) bt.panic = view->backends[b].panic;
    for (size_t s = 0; s < bt.servers.size(); ++s) {
      ServerTotals& st = bt.servers[s];
      const auto& c = hm.counters(b, s);
      st.checks_passed = c.checks_passed.get();
      st.checks_failed = c.checks_failed.get();
      st.ejections = c.ejections.get();
      if (view && b < view->backends.size() && s < view->backends[b].servers.size()) {
        st.view = view->backends[b].servers[s];
      } else {
        st.view.weight = static_cast<uint16_t>(cfg.backends[b].servers[s].weight);
      }
      if (b < admin.size() && s < admin[b].size()) st.admin = admin[b][s];
      bt.healthy += st.view.healthy ? 1 : 0;
    }
  }
  t.snap = std::move(snap);
  return t;
}

}  // namespace tandem::admin
