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

// Emits one family for `count` subjects (listeners, backends or servers).
template <typename Fn>
void each(Writer& w, std::string_view name, std::string_view type, std::string_view help,
          Fn&& emit) {
  w.family(name, type, help);
  emit();
}

}  // namespace

std::string renderMetrics(const config::Config& cfg, const Snapshot& snap, const ProcessStats& proc,
                          const ControlFacts& facts) {
  Writer w;
  w.out.reserve(64 * 1024);

  // ---- listeners
  std::vector<std::string> ll;
  for (const auto& l : cfg.listeners) ll.push_back(label("listener", l.name));
  auto perListener = [&](std::string_view name, std::string_view type, std::string_view help,
                         auto value) {
    each(w, name, type, help, [&] {
      for (size_t i = 0; i < snap.listeners.size(); ++i)
        w.sample(name, ll[i], value(snap.listeners[i]));
    });
  };
  perListener("tandem_listener_connections_total", "counter", "Client connections accepted.",
              [](const ListenerTotals& t) { return t.connections; });
  perListener("tandem_listener_active_connections", "gauge", "Client connections open now.",
              [](const ListenerTotals& t) { return t.active; });
  perListener("tandem_listener_requests_total", "counter",
              "HTTP requests received (malformed ones included).",
              [](const ListenerTotals& t) { return t.requests; });
  w.family("tandem_listener_responses_total", "counter",
           "Responses sent to clients by status class (none: the request ended without one).");
  for (size_t i = 0; i < snap.listeners.size(); ++i) {
    for (int c = 0; c < 6; ++c) {
      w.sample("tandem_listener_responses_total", ll[i] + "," + label("class", kClasses[c]),
               snap.listeners[i].responses[c]);
    }
  }
  perListener("tandem_listener_request_bytes_total", "counter", "Bytes received from clients.",
              [](const ListenerTotals& t) { return t.bytes_in; });
  perListener("tandem_listener_response_bytes_total", "counter", "Bytes sent to clients.",
              [](const ListenerTotals& t) { return t.bytes_out; });

  // ---- backends
  std::vector<std::string> bl;
  for (const auto& b : cfg.backends) bl.push_back(label("backend", b.name));
  auto perBackend = [&](std::string_view name, std::string_view type, std::string_view help,
                        auto value) {
    each(w, name, type, help, [&] {
      for (size_t i = 0; i < snap.backends.size(); ++i)
        w.sample(name, bl[i], value(snap.backends[i]));
    });
  };
  perBackend("tandem_backend_requests_total", "counter", "Requests routed to the backend.",
             [](const BackendTotals& t) { return t.requests; });
  w.family(
      "tandem_backend_responses_total", "counter",
      "Responses to requests routed to the backend, by status class (generated ones included).");
  for (size_t i = 0; i < snap.backends.size(); ++i) {
    for (int c = 0; c < 6; ++c) {
      w.sample("tandem_backend_responses_total", bl[i] + "," + label("class", kClasses[c]),
               snap.backends[i].responses[c]);
    }
  }
  perBackend("tandem_backend_request_bytes_total", "counter", "Request bytes sent to servers.",
             [](const BackendTotals& t) { return t.bytes_in; });
  perBackend("tandem_backend_response_bytes_total", "counter",
             "Response bytes received from servers.",
             [](const BackendTotals& t) { return t.bytes_out; });
  perBackend("tandem_backend_connect_failures_total", "counter",
             "Upstream connections that failed (refused, unreachable, timed out).",
             [](const BackendTotals& t) { return t.connect_failures; });
  perBackend("tandem_backend_retries_total", "counter", "Requests retried on another server.",
             [](const BackendTotals& t) { return t.retries; });
  perBackend("tandem_backend_no_server_total", "counter",
             "Requests answered 503 because no server could take them.",
             [](const BackendTotals& t) { return t.no_server; });
  perBackend("tandem_backend_active_requests", "gauge", "Requests in flight.",
             [](const BackendTotals& t) { return t.active(); });
  perBackend("tandem_backend_healthy_servers", "gauge", "Servers that pass their health checks.",
             [](const BackendTotals& t) { return static_cast<uint64_t>(t.healthy); });
  perBackend("tandem_backend_servers", "gauge", "Configured servers.",
             [](const BackendTotals& t) { return static_cast<uint64_t>(t.servers.size()); });
  perBackend("tandem_backend_panic", "gauge",
             "1 while too few servers are healthy and all of them take traffic.",
             [](const BackendTotals& t) { return static_cast<uint64_t>(t.panic ? 1 : 0); });
  w.family("tandem_backend_request_duration_seconds", "histogram",
           "Time from a complete request head to the last response byte sent.");
  for (size_t i = 0; i < snap.backends.size(); ++i) {
    w.histogram("tandem_backend_request_duration_seconds", bl[i], snap.backends[i].duration);
  }
  w.family("tandem_backend_connect_duration_seconds", "histogram",
           "Time to establish a new upstream connection.");
  for (size_t i = 0; i < snap.backends.size(); ++i) {
    w.histogram("tandem_backend_connect_duration_seconds", bl[i], snap.backends[i].connect);
  }

  // ---- servers
  std::vector<std::vector<std::string>> sl(snap.backends.size());
  for (size_t b = 0; b < cfg.backends.size(); ++b) {
    for (const auto& s : cfg.backends[b].servers)
      sl[b].push_back(bl[b] + "," + label("server", s.name));
  }
  auto perServer = [&](std::string_view name, std::string_view type, std::string_view help,
                       auto value) {
    each(w, name, type, help, [&] {
      for (size_t b = 0; b < snap.backends.size(); ++b) {
        for (size_t s = 0; s < snap.backends[b].servers.size(); ++s) {
          w.sample(name, sl[b][s], value(snap.backends[b].servers[s]));
        }
      }
    });
  };
  perServer("tandem_server_requests_total", "counter",
            "Tries sent to the server (a retried request counts once per server tried).",
            [](const ServerTotals& t) { return t.requests; });
  w.family("tandem_server_responses_total", "counter",
           "Responses from the server by status class.");
  for (size_t b = 0; b < snap.backends.size(); ++b) {
    for (size_t s = 0; s < snap.backends[b].servers.size(); ++s) {
      for (int c = 1; c < 6; ++c) {
        w.sample("tandem_server_responses_total", sl[b][s] + "," + label("class", kClasses[c]),
                 snap.backends[b].servers[s].responses[c]);
      }
    }
  }
  perServer("tandem_server_request_bytes_total", "counter", "Request bytes sent to the server.",
            [](const ServerTotals& t) { return t.bytes_in; });
  perServer("tandem_server_response_bytes_total", "counter",
            "Response bytes received from the server.",
            [](const ServerTotals& t) { return t.bytes_out; });
  perServer("tandem_server_connections_total", "counter", "New upstream connections opened.",
            [](const ServerTotals& t) { return t.connects; });
  perServer("tandem_server_connect_failures_total", "counter", "Failed upstream connections.",
            [](const ServerTotals& t) { return t.connect_failures; });
  perServer("tandem_server_failed_tries_total", "counter",
            "Tries that failed (connect failure, reset, timeout, failure status).",
            [](const ServerTotals& t) { return t.failures; });
  perServer("tandem_server_ejections_total", "counter", "Ejections by outlier detection.",
            [](const ServerTotals& t) { return t.ejections; });
  w.family("tandem_server_health_checks_total", "counter", "Active health checks by result.");
  for (size_t b = 0; b < snap.backends.size(); ++b) {
    for (size_t s = 0; s < snap.backends[b].servers.size(); ++s) {
      const ServerTotals& t = snap.backends[b].servers[s];
      w.sample("tandem_server_health_checks_total", sl[b][s] + ",result=\"passed\"",
               t.checks_passed);
      w.sample("tandem_server_health_checks_total", sl[b][s] + ",result=\"failed\"",
               t.checks_failed);
    }
  }
  perServer("tandem_server_active_requests", "gauge", "Requests in flight on the server.",
            [](const ServerTotals& t) { return t.active; });
  perServer("tandem_server_up", "gauge",
            "1 if the server is healthy (checks and outlier detection).",
            [](const ServerTotals& t) { return static_cast<uint64_t>(t.view.healthy ? 1 : 0); });
  w.family("tandem_server_health_state", "gauge",
           "Health state, one series per state (1 = current).");
  for (size_t b = 0; b < snap.backends.size(); ++b) {
    for (size_t s = 0; s < snap.backends[b].servers.size(); ++s) {
      const ServerTotals& t = snap.backends[b].servers[s];
      for (const char* st : {"up", "down", "ejected"}) {
        w.sample("tandem_server_health_state", sl[b][s] + "," + label("state", st),
                 static_cast<uint64_t>(std::string_view(t.state()) == st ? 1 : 0));
      }
    }
  }
  w.family("tandem_server_admin_state", "gauge",
           "Admin state, one series per state (1 = current).");
  for (size_t b = 0; b < snap.backends.size(); ++b) {
    for (size_t s = 0; s < snap.backends[b].servers.size(); ++s) {
      const ServerTotals& t = snap.backends[b].servers[s];
      for (auto st : {health::AdminState::kEnabled, health::AdminState::kDraining,
                      health::AdminState::kDisabled}) {
        w.sample("tandem_server_admin_state", sl[b][s] + "," + label("state", adminStateName(st)),
                 static_cast<uint64_t>(t.admin == st ? 1 : 0));
      }
    }
  }
  perServer("tandem_server_weight", "gauge", "Configured weight (or the admin's override).",
            [](const ServerTotals& t) { return static_cast<uint64_t>(t.view.weight); });
  perServer("tandem_server_effective_weight", "gauge",
            "Weight the balancer uses now (slow start scales it down).",
            [](const ServerTotals& t) { return t.effectiveWeight(); });

  // ---- process
  w.family("tandem_process_cpu_seconds_total", "counter", "User and system CPU time.");
  w.sample("tandem_process_cpu_seconds_total", "", proc.cpu_seconds);
  w.family("tandem_process_resident_memory_bytes", "gauge", "Resident memory.");
  w.sample("tandem_process_resident_memory_bytes", "", proc.resident_bytes);
  w.family("tandem_process_virtual_memory_bytes", "gauge", "Virtual memory.");
  w.sample("tandem_process_virtual_memory_bytes", "", proc.virtual_bytes);
  w.family("tandem_process_open_fds", "gauge", "Open file descriptors.");
  w.sample("tandem_process_open_fds", "", proc.open_fds);
  w.family("tandem_process_max_fds", "gauge", "File descriptor limit.");
  w.sample("tandem_process_max_fds", "", proc.max_fds);
  w.family("tandem_process_threads", "gauge", "Threads.");
  w.sample("tandem_process_threads", "", proc.threads);
  w.family("tandem_process_start_time_seconds", "gauge", "Start time (Unix seconds).");
  w.sample("tandem_process_start_time_seconds", "", proc.start_time_seconds);

  // ---- control plane
  w.family("tandem_build_info", "gauge", "Version of this binary and node id (always 1).");
  w.sample("tandem_build_info", label("version", facts.version) + "," + label("node", facts.node),
           uint64_t{1});
  w.family("tandem_config_revision", "gauge", "Revision of the configuration in use.");
  w.sample("tandem_config_revision", "", facts.config_revision);
  w.family("tandem_config_loaded_timestamp_seconds", "gauge", "When it was loaded (Unix seconds).");
  w.sample("tandem_config_loaded_timestamp_seconds", "", facts.config_loaded_seconds);
  w.family("tandem_events_total", "counter", "Control-plane events (health transitions, admin).");
  w.sample("tandem_events_total", "", facts.events_total);
  w.family("tandem_alerts_firing", "gauge", "Alerts firing now.");
  w.sample("tandem_alerts_firing", "", facts.alerts_firing);
  w.family("tandem_alerts_fired_total", "counter", "Alerts fired since start.");
  w.sample("tandem_alerts_fired_total", "", facts.alerts_fired_total);
  w.family("tandem_webhook_notifications_total", "counter", "Webhook notifications by outcome.");
  w.sample("tandem_webhook_notifications_total", "result=\"delivered\"", facts.webhook_delivered);
  w.sample("tandem_webhook_notifications_total", "result=\"failed\"", facts.webhook_failed);
  w.sample("tandem_webhook_notifications_total", "result=\"dropped\"", facts.webhook_dropped);
  w.family("tandem_access_log_lines_total", "counter", "Access log lines by outcome.");
  w.sample("tandem_access_log_lines_total", "result=\"written\"", facts.access_log_written);
  w.sample("tandem_access_log_lines_total", "result=\"dropped\"", facts.access_log_dropped);
  w.family("tandem_admin_scrapes_total", "counter", "Scrapes of this endpoint.");
  w.sample("tandem_admin_scrapes_total", "", facts.scrapes_total);
  return std::move(w.out);
}

}  // namespace tandem::admin
