#include "admin/metrics.h"

#include <fmt/format.h>

#include <string_view>

namespace tandem::admin {
namespace {

constexpr const char* kClasses[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

std::string escapeLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(std::string_view name, std::string_view labels, uint64_t v) {
    line(name, labels);
    fmt::format_to(std::back_inserter(out), "{}\n", v);
  }
  void sample(std::string_view name, std::string_view labels, int64_t v) {
    line(name, labels);
    fmt::format_to(std::back_inserter(out), "{}\n", v);
  }
  void sample(std::string_view name, std::string_view labels, double v) {
    line(name, labels);
    fmt::format_to(std::back_inserter(out), "{}\n", v);
  }
  // A family with one unlabelled sample.
  template <typename V>
  void single(std::string_view name, std::string_view type, std::string_view help, V v) {
    family(name, type, help);
    sample(name, "", v);
  }
  void histogram(std::string_view name, std::string_view labels, const HistogramSnapshot& h) {
    uint64_t cumulative = 0;
    const std::string sep = labels.empty() ? "" : ",";
    for (size_t i = 0; i < kLatencyBuckets; ++i) {
      cumulative += h.buckets[i];
      std::string le = i < kLatencyBoundsUs.size()
                           ? fmt::format("{}", static_cast<double>(kLatencyBoundsUs[i]) / 1e6)
                           : "+Inf";
      fmt::format_to(std::back_inserter(out), "{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep,
                     le, cumulative);
    }
    line(std::string(name) + "_sum", labels);
    fmt::format_to(std::back_inserter(out), "{}\n", static_cast<double>(h.sum_us) / 1e6);
    line(std::string(name) + "_count", labels);
    fmt::format_to(std::back_inserter(out), "{}\n", cumulative);
  }
  std::string out;

 private:
  void line(std::string_view name, std::string_view labels) {
    if (labels.empty()) {
      fmt::format_to(std::back_inserter(out), "{} ", name);
    } else {
      fmt::format_to(std::back_inserter(out), "{}{{{}}} ", name, labels);
    }
  }
};

std::string label(std::string_view k, std::string_view v) {
  return fmt::format("{}=\"{}\"", k, escapeLabel(v));
}

// One labelled subject of a family: a listener, a backend or a server.
template <typename T>
struct Subject {
  std::string labels;
  const T* totals;
};

// A family with one sample per subject.
template <typename T, typename Fn>
void emit(Writer& w, std::string_view name, std::string_view type, std::string_view help,
          const std::vector<Subject<T>>& subjects, Fn value) {
  w.family(name, type, help);
  for (const Subject<T>& s : subjects) w.sample(name, s.labels, value(*s.totals));
}

// A family with one sample per subject and value of an extra label (status class, state):
// `value(totals, i)` for the i-th of `values`.
template <typename T, typename Fn>
void emitSplit(Writer& w, std::string_view name, std::string_view type, std::string_view help,
               const std::vector<Subject<T>>& subjects, std::string_view key,
               const std::vector<std::string_view>& values, Fn value) {
  w.family(name, type, help);
  for (const Subject<T>& s : subjects) {
    for (size_t i = 0; i < values.size(); ++i) {
      w.sample(name, s.labels + "," + label(key, values[i]), value(*s.totals, i));
    }
  }
}

// Requests, responses by class and bytes: the same five families at every level.
template <typename T>
void emitTraffic(Writer& w, std::string_view prefix, const std::vector<Subject<T>>& subjects,
                 std::string_view requests_help, std::string_view responses_help, bool with_none,
                 std::string_view in_help, std::string_view out_help) {
  auto n = [&](std::string_view suffix) { return std::string(prefix) + std::string(suffix); };
  emit(w, n("_requests_total"), "counter", requests_help, subjects,
       [](const TrafficTotals& t) { return t.requests; });
  std::vector<std::string_view> classes(std::begin(kClasses) + (with_none ? 0 : 1),
                                        std::end(kClasses));
  const int first = with_none ? 0 : 1;
  emitSplit(w, n("_responses_total"), "counter", responses_help, subjects, "class", classes,
            [first](const TrafficTotals& t, size_t i) { return t.responses[first + i]; });
  emit(w, n("_request_bytes_total"), "counter", in_help, subjects,
       [](const TrafficTotals& t) { return t.bytes_in; });
  emit(w, n("_response_bytes_total"), "counter", out_help, subjects,
       [](const TrafficTotals& t) { return t.bytes_out; });
}

}  // namespace

std::string renderMetrics(const config::Config& cfg, const Totals& snap, const ProcessStats& proc,
                          const ControlFacts& facts) {
  Writer w;
  w.out.reserve(64 * 1024);
  std::vector<Subject<ListenerTotals>> listeners;
  for (size_t i = 0; i < snap.listeners.size(); ++i) {
    listeners.push_back({label("listener", cfg.listeners[i].name), &snap.listeners[i]});
  }
  std::vector<Subject<BackendTotals>> backends;
  std::vector<Subject<ServerTotals>> servers;
  for (size_t b = 0; b < snap.backends.size(); ++b) {
    backends.push_back({label("backend", cfg.backends[b].name), &snap.backends[b]});
    for (size_t s = 0; s < snap.backends[b].servers.size(); ++s) {
      servers.push_back(
          {backends.back().labels + "," + label("server", cfg.backends[b].servers[s].name),
           &snap.backends[b].servers[s]});
    }
  }

  // ---- listeners
  emit(w, "tandem_listener_connections_total", "counter", "Client connections accepted.", listeners,
       [](const ListenerTotals& t) { return t.connections; });
  emit(w, "tandem_listener_active_connections", "gauge", "Client connections open now.", listeners,
       [](const ListenerTotals& t) { return t.active; });
  emit(w, "tandem_listener_connections_rejected_total", "counter",
       "Client connections closed at once because the listener had max_connections open.",
       listeners, [](const ListenerTotals& t) { return t.rejected; });
  emitSplit(w, "tandem_listener_client_timeouts_total", "counter",
            "Clients cut off for being too slow: header (header_timeout), body (request body "
            "under min_rate), read (reading the response under min_rate).",
            listeners, "reason", {"header", "body", "read"},
            [](const ListenerTotals& t, size_t i) { return t.timeouts[i]; });
  std::vector<Subject<ListenerTotals>> tls_listeners;  // only listeners with tls
  for (size_t i = 0; i < listeners.size(); ++i) {
    if (cfg.listeners[i].tls.context) tls_listeners.push_back(listeners[i]);
  }
  emit(w, "tandem_listener_tls_handshakes_total", "counter", "TLS handshakes completed.",
       tls_listeners, [](const ListenerTotals& t) { return t.tls_handshakes; });
  emit(w, "tandem_listener_tls_handshake_failures_total", "counter",
       "TLS handshakes that failed after the client sent something (unsupported protocol or "
       "ciphers, no common ALPN protocol, plain HTTP, header_timeout).",
       tls_listeners, [](const ListenerTotals& t) { return t.tls_handshake_failures; });
  emitTraffic(w, "tandem_listener", listeners, "HTTP requests received (malformed ones included).",
              "Responses sent to clients by status class (none: the request ended without one).",
              true, "Bytes received from clients.", "Bytes sent to clients.");

  // ---- backends
  emitTraffic(w, "tandem_backend", backends, "Requests routed to the backend.",
              "Responses to requests routed to the backend, by status class (generated ones "
              "included; none: the request ended without one).",
              true, "Request bytes sent to servers.", "Response bytes received from servers.");
  emit(w, "tandem_backend_connect_failures_total", "counter",
       "Upstream connections that failed (refused, unreachable, timed out).", backends,
       [](const BackendTotals& t) { return t.connect_failures; });
  emit(w, "tandem_backend_retries_total", "counter", "Requests retried on another server.",
       backends, [](const BackendTotals& t) { return t.retries; });
  emit(w, "tandem_backend_no_server_total", "counter",
       "Requests answered 503 because no server could take them.", backends,
       [](const BackendTotals& t) { return t.no_server; });
  emit(w, "tandem_backend_rate_limited_total", "counter",
       "Requests answered 429 because their key was over the backend's rate_limit.", backends,
       [](const BackendTotals& t) { return t.rate_limited; });
  emit(w, "tandem_backend_active_requests", "gauge", "Requests in flight.", backends,
       [](const BackendTotals& t) { return t.active(); });
  emit(w, "tandem_backend_healthy_servers", "gauge", "Servers that pass their health checks.",
       backends, [](const BackendTotals& t) { return static_cast<uint64_t>(t.healthy); });
  emit(w, "tandem_backend_servers", "gauge", "Configured servers.", backends,
       [](const BackendTotals& t) { return static_cast<uint64_t>(t.servers.size()); });
  emit(w, "tandem_backend_panic", "gauge",
       "1 while too few servers are healthy and all of them take traffic.", backends,
       [](const BackendTotals& t) { return static_cast<uint64_t>(t.panic ? 1 : 0); });
  w.family("tandem_backend_request_duration_seconds", "histogram",
           "Time from a complete request head to the last response byte sent.");
  for (const auto& b : backends) {
    w.histogram("tandem_backend_request_duration_seconds", b.labels, b.totals->duration);
  }
  w.family("tandem_backend_connect_duration_seconds", "histogram",
           "Time to establish a new upstream connection.");
  for (const auto& b : backends) {
    w.histogram("tandem_backend_connect_duration_seconds", b.labels, b.totals->connect);
  }

  // ---- servers
  emitTraffic(w, "tandem_server", servers,
              "Tries sent to the server (a retried request counts once per server tried).",
              "Responses from the server by status class.", false,
              "Request bytes sent to the server.", "Response bytes received from the server.");
  emit(w, "tandem_server_connections_total", "counter", "New upstream connections opened.", servers,
       [](const ServerTotals& t) { return t.connects; });
  emit(w, "tandem_server_connect_failures_total", "counter", "Failed upstream connections.",
       servers, [](const ServerTotals& t) { return t.connect_failures; });
  emit(w, "tandem_server_failed_tries_total", "counter",
       "Tries that failed (connect failure, reset, timeout, failure status).", servers,
       [](const ServerTotals& t) { return t.failures; });
  emit(w, "tandem_server_ejections_total", "counter", "Ejections by outlier detection.", servers,
       [](const ServerTotals& t) { return t.ejections; });
  emitSplit(w, "tandem_server_health_checks_total", "counter", "Active health checks by result.",
            servers, "result", {"passed", "failed"}, [](const ServerTotals& t, size_t i) {
              return i == 0 ? t.checks_passed : t.checks_failed;
            });
  emit(w, "tandem_server_active_requests", "gauge", "Requests in flight on the server.", servers,
       [](const ServerTotals& t) { return t.active; });
  emit(w, "tandem_server_up", "gauge", "1 if the server is healthy (checks and outlier detection).",
       servers,
       [](const ServerTotals& t) { return static_cast<uint64_t>(t.view.healthy ? 1 : 0); });
  const std::vector<std::string_view> health_states{"up", "down", "ejected"};
  emitSplit(w, "tandem_server_health_state", "gauge",
            "Health state, one series per state (1 = current).", servers, "state", health_states,
            [&](const ServerTotals& t, size_t i) {
              return static_cast<uint64_t>(health_states[i] == t.state() ? 1 : 0);
            });
  const health::AdminState admin_states[] = {
      health::AdminState::kEnabled, health::AdminState::kDraining, health::AdminState::kDisabled};
  emitSplit(w, "tandem_server_admin_state", "gauge",
            "Admin state, one series per state (1 = current).", servers, "state",
            {"enabled", "draining", "disabled"}, [&](const ServerTotals& t, size_t i) {
              return static_cast<uint64_t>(t.admin == admin_states[i] ? 1 : 0);
            });
  emit(w, "tandem_server_weight", "gauge", "Configured weight (or the admin's override).", servers,
       [](const ServerTotals& t) { return static_cast<uint64_t>(t.view.weight); });
  emit(w, "tandem_server_effective_weight", "gauge",
       "Weight the balancer uses now (slow start scales it down).", servers,
       [](const ServerTotals& t) { return t.effectiveWeight(); });

  // ---- process
  w.single("tandem_process_cpu_seconds_total", "counter", "User and system CPU time.",
           proc.cpu_seconds);
  w.single("tandem_process_resident_memory_bytes", "gauge", "Resident memory.",
           proc.resident_bytes);
  w.single("tandem_process_virtual_memory_bytes", "gauge", "Virtual memory.", proc.virtual_bytes);
  w.single("tandem_process_open_fds", "gauge", "Open file descriptors.", proc.open_fds);
  w.single("tandem_process_max_fds", "gauge", "File descriptor limit.", proc.max_fds);
  w.single("tandem_process_threads", "gauge", "Threads.", proc.threads);
  w.single("tandem_process_start_time_seconds", "gauge", "Start time (Unix seconds).",
           proc.start_time_seconds);

  // ---- control plane
  w.family("tandem_build_info", "gauge", "Version of this binary and node id (always 1).");
  w.sample("tandem_build_info", label("version", facts.version) + "," + label("node", facts.node),
           uint64_t{1});
  w.single("tandem_config_revision", "gauge", "Revision of the configuration in use.",
           facts.config_revision);
  w.single("tandem_config_source_revision", "gauge",
           "etcd revision of the configuration in use (0 when it came from a file).",
           facts.config_source_revision);
  w.single("tandem_config_loaded_timestamp_seconds", "gauge", "When it was loaded (Unix seconds).",
           facts.config_loaded_seconds);
  w.single("tandem_events_total", "counter", "Control-plane events (health transitions, admin).",
           facts.events_total);
  w.single("tandem_alerts_firing", "gauge", "Alerts firing now.", facts.alerts_firing);
  w.single("tandem_alerts_fired_total", "counter", "Alerts fired since start.",
           facts.alerts_fired_total);
  w.family("tandem_webhook_notifications_total", "counter", "Webhook notifications by outcome.");
  w.sample("tandem_webhook_notifications_total", "result=\"delivered\"", facts.webhook_delivered);
  w.sample("tandem_webhook_notifications_total", "result=\"failed\"", facts.webhook_failed);
  w.sample("tandem_webhook_notifications_total", "result=\"dropped\"", facts.webhook_dropped);
  w.family("tandem_access_log_lines_total", "counter", "Access log lines by outcome.");
  w.sample("tandem_access_log_lines_total", "result=\"written\"", facts.access_log_written);
  w.sample("tandem_access_log_lines_total", "result=\"dropped\"", facts.access_log_dropped);
  w.family("tandem_ha_role", "gauge", "This node's role, one series per role (1 = current).");
  for (const char* r :
       {"standalone", "active", "leader", "follower", "init", "backup", "master", "fault"}) {
    w.sample("tandem_ha_role", label("role", r), static_cast<uint64_t>(facts.role == r ? 1 : 0));
  }
  if (facts.vrrp) {
    w.single("tandem_vrrp_adverts_sent_total", "counter", "VRRP advertisements sent.",
             facts.vrrp_adverts_sent);
    w.single("tandem_vrrp_adverts_received_total", "counter", "Valid VRRP advertisements received.",
             facts.vrrp_adverts_received);
    w.family("tandem_vrrp_adverts_rejected_total", "counter",
             "Received VRRP packets dropped, by reason (they change nothing).");
    for (const auto& [reason, n] : facts.vrrp_rejected) {
      w.sample("tandem_vrrp_adverts_rejected_total", label("reason", reason), n);
    }
    w.single("tandem_ha_transitions_total", "counter", "VRRP state transitions.",
             facts.vrrp_transitions);
    w.single("tandem_vrrp_gratuitous_arps_total", "counter", "Gratuitous ARPs sent.",
             facts.vrrp_garps);
  }
  if (facts.state) {
    const state::Table::Stats& t = facts.table;
    w.single("tandem_state_entries", "gauge", "Records in the shared-state table.",
             static_cast<uint64_t>(t.entries));
    w.single("tandem_state_local_writes_total", "counter",
             "Writes of this node to the shared state (sticky entries, rate counts, health).",
             t.local_writes);
    w.family("tandem_state_merges_total", "counter",
             "Records received from other instances, by whether they changed the table.");
    w.sample("tandem_state_merges_total", "result=\"changed\"", t.merged);
    w.sample("tandem_state_merges_total", "result=\"stale\"", t.stale);
    w.single("tandem_state_replication_overflows_total", "counter",
             "Times local writes outran the replicator (each forced a full resync).",
             t.dirty_overflows);
    w.single("tandem_state_evictions_total", "counter",
             "Records evicted because the table was full.", t.evictions);
  }
  if (!facts.store.empty()) {
    const char* up_help = "1 while the peer (or Redis) is connected.";
    w.family("tandem_cluster_peer_up", "gauge", up_help);
    for (const auto& p : facts.peers) {
      w.sample("tandem_cluster_peer_up", label("peer", p.id),
               static_cast<uint64_t>(p.state == "connected" ? 1 : 0));
    }
    auto perPeer = [&](const char* name, const char* help, auto get) {
      w.family(name, "counter", help);
      for (const auto& p : facts.peers) w.sample(name, label("peer", p.id), get(p));
    };
    perPeer("tandem_cluster_records_sent_total", "Records sent to the peer.",
            [](const state::PeerStatus& p) { return p.records_sent; });
    perPeer("tandem_cluster_records_received_total", "Records received from the peer.",
            [](const state::PeerStatus& p) { return p.records_received; });
    perPeer("tandem_cluster_full_syncs_total", "Full syncs sent (connects, overflows).",
            [](const state::PeerStatus& p) { return p.full_syncs; });
    perPeer("tandem_cluster_queue_overflows_total",
            "Outbound queue overflows (dropped, then a full resync).",
            [](const state::PeerStatus& p) { return p.queue_overflows; });
    perPeer("tandem_cluster_auth_failures_total",
            "Connections closed for a bad handshake or message authentication code.",
            [](const state::PeerStatus& p) { return p.auth_failures; });
    perPeer("tandem_cluster_connects_total", "Successful connections (reconnects + 1).",
            [](const state::PeerStatus& p) { return p.connects; });
    w.family("tandem_cluster_peer_rtt_seconds", "gauge", "Last heartbeat round trip.");
    for (const auto& p : facts.peers) {
      if (p.rtt_us >= 0) {
        w.sample("tandem_cluster_peer_rtt_seconds", label("peer", p.id),
                 static_cast<double>(p.rtt_us) / 1e6);
      }
    }
    w.family("tandem_cluster_replication_lag_seconds", "histogram",
             "Time from a write on another instance to its merge here.");
    w.histogram("tandem_cluster_replication_lag_seconds", "", facts.replication_lag);
  }
  w.single("tandem_admin_scrapes_total", "counter", "Scrapes of this endpoint.",
           facts.scrapes_total);
  return std::move(w.out);
}

}  // namespace tandem::admin
