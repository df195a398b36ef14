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

Snapshot collect(proxy::Server& server) {
  const config::Config& cfg = server.config();
  Snapshot snap;
  snap.listeners.resize(cfg.listeners.size());
  snap.backends.resize(cfg.backends.size());
  for (size_t b = 0; b < cfg.backends.size(); ++b) {
    snap.backends[b].servers.resize(cfg.backends[b].servers.size());
  }
  for (const auto& w : server.workers()) {
    const proxy::WorkerStats& ws = w->stats();
    for (size_t l = 0; l < snap.listeners.size(); ++l) {
      addTraffic(snap.listeners[l], ws.listeners[l]);
      snap.listeners[l].connections += ws.listeners[l].connections.get();
    }
    for (size_t b = 0; b < snap.backends.size(); ++b) {
      const proxy::BackendStats& bs = ws.backends[b];
      BackendTotals& bt = snap.backends[b];
      addTraffic(bt, bs);
      bt.connect_failures += bs.connect_failures.get();
      bt.retries += bs.retries.get();
      bt.no_server += bs.no_server.get();
      bt.duration.addFrom(bs.duration);
      bt.connect.addFrom(bs.connect);
      for (size_t s = 0; s < bt.servers.size(); ++s) {
        const proxy::ServerStats& ss = bs.servers[s];
        ServerTotals& st = bt.servers[s];
        addTraffic(st, ss);
        st.connects += ss.connects.get();
        st.connect_failures += ss.connect_failures.get();
        st.failures += ss.failures.get();
        st.active += ss.active.get();
      }
    }
  }
  for (size_t l = 0; l < snap.listeners.size(); ++l) {
    snap.listeners[l].active = server.listener(l).connections.load(std::memory_order_relaxed);
  }
  health::HealthManager& hm = server.health();
  auto view = hm.current();
  auto admin = hm.adminStates();
  if (view) snap.health_version = view->version;
  for (size_t b = 0; b < snap.backends.size(); ++b) {
    BackendTotals& bt = snap.backends[b];
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
  return snap;
}

}  // namespace tandem::admin
