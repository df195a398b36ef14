#include "admin/admin_server.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "admin/assets.h"
#include "admin/metrics.h"
#include "admin/process_stats.h"
#include "admin/snapshot.h"
#include "core/clock.h"
#include "core/log.h"
#include "ha/ha_node.h"
#include "proxy/access_log.h"

namespace tandem::admin {
namespace {

using json = nlohmann::json;

constexpr int64_t kSampleMs = 1000;    // alert evaluation
constexpr int kSeriesEveryTicks = 2;   // a time-series point every 2 s: 450 points = 15 min
constexpr int64_t kEventPollMs = 200;  // event log -> event streams
constexpr size_t kEventBacklog = 50;   // events replayed to a new stream

HttpResponse jsonResponse(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

HttpResponse errorJson(int status, const std::string& message) {
  return jsonResponse(status, json{{"error", message}});
}

json classes(const TrafficTotals& t) {
  return json{{"1xx", t.responses[1]}, {"2xx", t.responses[2]}, {"3xx", t.responses[3]},
              {"4xx", t.responses[4]}, {"5xx", t.responses[5]}, {"none", t.responses[0]}};
}

json eventJson(const health::Event& e) {
  json j{{"id", e.id},
         {"time", rfc3339Ms(e.unix_ms)},
         {"kind", e.kind},
         {"backend", e.backend},
         {"detail", e.detail}};
  j["server"] = e.server.empty() ? json(nullptr) : json(e.server);
  return j;
}

std::string sse(std::string_view event, uint64_t id, const std::string& data) {
  std::string out = "event: " + std::string(event) + "\n";
  if (id) out += "id: " + std::to_string(id) + "\n";
  out += "data: " + data + "\n\n";
  return out;
}

// "/api/v1/backends/{b}/servers/{s}/{action}" -> parts; false if the path has another shape.
bool splitServerPath(const std::string& path, std::string& b, std::string& s, std::string& action) {
  constexpr std::string_view kPrefix = "/api/v1/backends/";
  if (!path.starts_with(kPrefix)) return false;
  std::string_view rest = std::string_view(path).substr(kPrefix.size());
  size_t p1 = rest.find('/');
  if (p1 == std::string_view::npos) return false;
  b = std::string(rest.substr(0, p1));
  rest.remove_prefix(p1 + 1);
  if (!rest.starts_with("servers/")) return false;
  rest.remove_prefix(8);
  size_t p2 = rest.find('/');
  if (p2 == std::string_view::npos) return false;
  s = std::string(rest.substr(0, p2));
  action = std::string(rest.substr(p2 + 1));
  return !b.empty() && !s.empty() && action.find('/') == std::string::npos;
}

}  // namespace

bool secretEquals(std::string_view presented, std::string_view expected) {
  // Every byte of the expected secret is looked at whatever the input, so the time taken does not
  // tell how much of a guess was right.
  unsigned diff = presented.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    char p = i < presented.size() ? presented[i] : 0;
    diff |= static_cast<unsigned char>(p ^ expected[i]);
  }
  return diff == 0 && !expected.empty();
}

AdminServer::AdminServer(proxy::Server& server, proxy::AccessLog* access_log)
    : server_(server),
      snap_(server.snapshot()),
      access_log_(access_log),
      http_(loop_, [this](const HttpRequest& r) { return handle(r); }),
      alerts_(snap_->cfg->alerts.rules),
      sample_timer_(this, kSampleTick),
      event_timer_(this, kEventTick) {}

AdminServer::~AdminServer() { stop(); }

Result<void> AdminServer::bind() {
  if (port_ != 0) return {};
  auto addr = parseAddress(cfg().admin.listen.host, cfg().admin.listen.port);
  if (!addr) return tl::unexpected(addr.error());
  if (auto r = http_.listen(*addr); !r) {
    return fail(ErrorSource::kInternal, r.error().code,
                "admin listener on " + cfg().admin.listen.text() + ": " + r.error().message);
  }
  port_ = http_.port();
  return {};
}

Result<void> AdminServer::start() {
  started_unix_ms_ = unixMs();
  if (auto r = bind(); !r) return r;
  if (!cfg().alerts.webhooks.empty()) {
    webhooks_ = std::make_unique<WebhookSender>(loop_, cfg().alerts.webhooks);
  }
  last_event_id_ = server_.events().total();
  sample();  // baseline for the time series
  loop_.setWakeHandler([this] {
    if (stop_.load()) {
      loop_.stop();
      return;
    }
    std::vector<Outcome> outcomes;
    {
      std::lock_guard<std::mutex> g(mailbox_mu_);
      outcomes.swap(outcomes_);
    }
    for (const Outcome& o : outcomes) {
      const std::string what =
          o.rule == "config_rejected" ? "config from " + o.source + " rejected: " + o.detail
          : o.rule == "vrrp_fault"
              ? "VRRP " + o.source + " in FAULT (" + o.detail + "): the virtual IPs are released"
          : o.rule == "failover" ? "VRRP " + o.source + ": this node took over as master (" +
                                       o.detail + "); the master it heard is gone"
          : o.rule == "state_store_unreachable"
              ? "state store Redis unreachable (" + o.detail +
                    "): serving from local state, resync on return"
          : o.rule == "peer_down"
              ? "peer " + o.source + " lost (" + o.detail + "): its state is kept, resync on return"
              : "config source " + o.source + " unreachable: " + o.detail;
      auto a = o.ok ? alerts_.clear(o.rule, o.source, unixMs())
                    : alerts_.raise(o.rule, o.source, "warning", what, 0, unixMs());
      if (a) deliver(*a);
    }
  });
  sample_timer_.arm(loop_.timers(kSampleMs));
  event_timer_.arm(loop_.timers(kEventPollMs));
  thread_ = std::thread([this] { loop_.run(); });
  log::info(
      "admin on http://{}/ (dashboard, /metrics, /api/v1){}", cfg().admin.listen.text(),
      cfg().admin.token.empty() ? "; no token_file: changes through the API are refused" : "");
  return {};
}

void AdminServer::stop() {
  if (!thread_.joinable()) return;
  stop_.store(true);
  loop_.wake();
  thread_.join();
  sample_timer_.cancel();
  event_timer_.cancel();
  webhooks_.reset();
  http_.close();
}

void AdminServer::configOutcome(const std::string& source, bool applied,
                                const std::string& detail) {
  {
    std::lock_guard<std::mutex> g(mailbox_mu_);
    outcomes_.push_back({"config_rejected", source, applied, detail});
  }
  loop_.wake();
}

void AdminServer::sourceState(const std::string& source, bool reachable,
                              const std::string& detail) {
  {
    std::lock_guard<std::mutex> g(mailbox_mu_);
    outcomes_.push_back({"config_source_unreachable", source, reachable, detail});
  }
  loop_.wake();
}

void AdminServer::stateLink(const std::string& peer, bool up, const std::string& detail) {
  {
    std::lock_guard<std::mutex> g(mailbox_mu_);
    outcomes_.push_back(
        {peer == "redis" ? "state_store_unreachable" : "peer_down", peer, up, detail});
  }
  loop_.wake();
}

void AdminServer::setRole(const std::string& role, const std::string& leader_id) {
  std::lock_guard<std::mutex> g(mailbox_mu_);
  role_ = role;
  leader_ = leader_id;
}

void AdminServer::haTransition(const std::string& state, bool fault, bool takeover,
                               const std::string& reason) {
  const std::string subject = "vrid " + std::to_string(server_.snapshot()->cfg->cluster.vrrp.vrid);
  {
    std::lock_guard<std::mutex> g(mailbox_mu_);
    role_ = state;
    outcomes_.push_back({"vrrp_fault", subject, !fault, reason});
    if (takeover || state != "master") {
      outcomes_.push_back({"failover", subject, !takeover, reason});
    }
  }
  loop_.wake();
}

std::string AdminServer::roleName() const {
  std::lock_guard<std::mutex> g(mailbox_mu_);
  return role_.empty() ? "standalone" : role_;
}

void AdminServer::onTimer(int tag) {
  if (tag == kSampleTick) {
    sample();
    sample_timer_.arm(loop_.timers(kSampleMs));
  } else {
    pushEvents();
    event_timer_.arm(loop_.timers(kEventPollMs));
  }
}

void AdminServer::refresh() {
  auto next = server_.snapshot();
  if (next == snap_) return;
  auto old = std::move(snap_);  // kept alive until the comparison below is done
  snap_ = std::move(next);
  const config::Config& was = *old->cfg;
  const config::Config& now = *snap_->cfg;
  // A reload: rules and webhooks follow the new config; the admin address needs a restart.
  alerts_.setRules(now.alerts.rules);
  std::vector<std::string> old_urls, new_urls;
  for (const auto& h : was.alerts.webhooks) old_urls.push_back(h.url);
  for (const auto& h : now.alerts.webhooks) new_urls.push_back(h.url);
  if (old_urls != new_urls) {
    webhooks_.reset();
    if (!now.alerts.webhooks.empty()) {
      webhooks_ = std::make_unique<WebhookSender>(loop_, now.alerts.webhooks);
    }
  }
  if (!(was.admin.listen == now.admin.listen) || was.admin.enabled != now.admin.enabled) {
    log::warn("admin: a new admin address ({}) takes effect at the next restart; still on {}",
              now.admin.listen.text(), was.admin.listen.text());
  }
}

void AdminServer::sample() {
  refresh();
  Totals snap = collect(server_);
  const config::Config& c = *snap.snap->cfg;  // the config the totals are indexed by
  const int64_t now = loop_.now();
  const int64_t unix_ms = unixMs();
  if (ticks_++ % kSeriesEveryTicks == 0) series_.add(now, unix_ms, snap, readProcessStats());
  std::vector<BackendSample> samples;
  samples.reserve(snap.backends.size());
  for (size_t b = 0; b < snap.backends.size(); ++b) {
    const BackendTotals& bt = snap.backends[b];
    BackendSample s;
    s.name = c.backends[b].name;
    for (size_t i = 0; i < bt.servers.size(); ++i) {
      const ServerTotals& st = bt.servers[i];
      // A server whose first active check has not finished yet is not down, just unknown.
      const bool unknown = c.backends[b].active.enabled && !st.view.ejected &&
                           st.checks_passed + st.checks_failed == 0;
      s.servers.push_back({c.backends[b].servers[i].name, st.view.healthy || unknown,
                           st.admin != health::AdminState::kEnabled});
    }
    s.responses_total = bt.responsesTotal();
    s.errors_total = bt.responses[5];
    s.duration = bt.duration;
    samples.push_back(std::move(s));
  }
  for (const Alert& a : alerts_.evaluate(now, unix_ms, samples)) deliver(a);
}

void AdminServer::deliver(const Alert& a) {
  if (a.firing()) {
    ++alerts_fired_;
    log::warn("alert={} firing {}: {}", a.rule, a.subject, a.message);
  } else {
    log::info("alert={} resolved {}: {}", a.rule, a.subject, a.message);
  }
  std::string body = alertJson(a, cfg().node_id);
  http_.broadcast(sse("alert", 0, body));
  const std::string role = roleName();
  if (webhooks_ && role != "follower") {
    webhooks_->send(body);
  } else if (webhooks_) {
    log::debug("alert {} {}: not the leader, the leader notifies the webhooks", a.rule, a.subject);
  }
}

void AdminServer::pushEvents() {
  if (server_.events().total() == last_event_id_) return;
  for (const health::Event& e : server_.events().since(last_event_id_)) {
    http_.broadcast(sse("health", e.id, eventJson(e).dump()));
    last_event_id_ = e.id;
  }
}

HttpResponse AdminServer::eventStream() {
  HttpResponse r;
  r.content_type = "text/event-stream";
  r.stream = true;
  r.body = "retry: 2000\n\n";
  auto recent = server_.events().recent();
  size_t from = recent.size() > kEventBacklog ? recent.size() - kEventBacklog : 0;
  for (size_t i = from; i < recent.size(); ++i) {
    // Only what the poller already pushed: later ones arrive through it, so none comes twice.
    if (recent[i].id > last_event_id_) break;
    r.body += sse("health", recent[i].id, eventJson(recent[i]).dump());
  }
  for (const Alert& a : alerts_.active()) r.body += sse("alert", 0, alertJson(a, cfg().node_id));
  return r;
}

bool AdminServer::authorized(const HttpRequest& req) const {
  constexpr std::string_view kBearer = "Bearer ";
  std::string_view auth = req.authorization;
  if (!auth.starts_with(kBearer)) return false;
  return secretEquals(auth.substr(kBearer.size()), cfg().admin.token);
}

HttpResponse AdminServer::mutate(const HttpRequest& req, const std::string& backend,
                                 const std::string& server, const std::string& action) {
  const bool is_state = action == "drain" || action == "enable" || action == "disable";
  if (!is_state && action != "weight") return errorJson(404, "unknown action '" + action + "'");
  const char* want = is_state ? "POST" : "PUT";
  if (req.method != want) {
    HttpResponse r = errorJson(405, std::string("use ") + want);
    r.headers.emplace_back("Allow", want);
    return r;
  }
  if (cfg().admin.token.empty()) {
    return errorJson(403, "changes through the API are disabled: set admin.token_file");
  }
  if (!authorized(req)) {
    HttpResponse r = errorJson(401, "missing or invalid bearer token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    log::warn("admin: refused {} {} from {}: bad or missing token", req.method, req.path, req.peer);
    return r;
  }
  health::HealthManager& hm = *snap_->health;
  if (is_state) {
    auto state = action == "drain"    ? health::AdminState::kDraining
                 : action == "enable" ? health::AdminState::kEnabled
                                      : health::AdminState::kDisabled;
    if (!hm.setAdminState(backend, server, state)) {
      return errorJson(404, "no server '" + server + "' in backend '" + backend + "'");
    }
    log::info("admin: {} {}/{} by {}", action, backend, server, req.peer);
    return jsonResponse(
        200, json{{"backend", backend}, {"server", server}, {"admin", adminStateName(state)}});
  }
  // Weight: {"weight": N} or a bare number.
  json body = json::parse(req.body, nullptr, false);
  int64_t weight = -1;
  if (body.is_object() && body.contains("weight") && body["weight"].is_number_integer()) {
    weight = body["weight"].get<int64_t>();
  } else if (body.is_number_integer()) {
    weight = body.get<int64_t>();
  }
  if (weight < 1 || weight > 256) {
    return errorJson(400,
                     "body must be {\"weight\": N} with N in 1..256 (drain a server to stop "
                     "sending it new requests)");
  }
  if (!hm.setWeight(backend, server, static_cast<uint32_t>(weight))) {
    return errorJson(404, "no server '" + server + "' in backend '" + backend + "'");
  }
  log::info("admin: weight {}/{} = {} by {}", backend, server, weight, req.peer);
  return jsonResponse(200, json{{"backend", backend}, {"server", server}, {"weight", weight}});
}

HttpResponse AdminServer::handle(const HttpRequest& req) {
  refresh();
  const std::string& p = req.path;
  std::string b, s, action;
  if (splitServerPath(p, b, s, action)) return mutate(req, b, s, action);
  if (req.method != "GET" && req.method != "HEAD") {
    HttpResponse r = errorJson(405, "read-only endpoint: use GET");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  if (p == "/healthz") {
    HttpResponse r;
    r.content_type = "text/plain; charset=utf-8";
    r.body = "ok\n";
    return r;
  }
  if (p == "/readyz") {
    HttpResponse r;
    r.content_type = "text/plain; charset=utf-8";
    const bool draining = draining_.load();
    r.status = draining ? 503 : 200;
    r.body = draining ? "draining\n" : "ready\n";
    return r;
  }
  if (p == "/metrics") {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metricsText();
    return r;
  }
  if (p == "/api/v1/status") return HttpResponse{200, "application/json", statusJson(), {}, false};
  if (p == "/api/v1/backends") {
    return HttpResponse{200, "application/json", backendsJson(collect(server_)), {}, false};
  }
  if (p == "/api/v1/alerts") return HttpResponse{200, "application/json", alertsJson(), {}, false};
  if (p == "/api/v1/events") return eventStream();
  if (p == "/api/v1/timeseries") {
    return HttpResponse{
        200, "application/json", series_.json(kSampleMs * kSeriesEveryTicks / 1000.0), {}, false};
  }
  if (p == "/api/v1/cluster") {
    json j{{"mode", cfg().cluster.mode},
           {"node", cfg().node_id},
           {"role", roleName()},
           {"peers", json::array()}};
    const config::Election& e = cfg().cluster.election;
    if (e.enabled) {
      std::lock_guard<std::mutex> g(mailbox_mu_);
      j["election"] = {{"type", "etcd"},
                       {"key", e.key},
                       {"ttl_seconds", e.ttl.count() / 1000},
                       {"leader", leader_.empty() ? json(nullptr) : json(leader_)}};
    }
    if (const ha::HaNode* node = ha_.load()) {
      const config::Vrrp& v = cfg().cluster.vrrp;
      auto c = node->counters();
      json vips = json::array();
      for (const auto& vip : v.virtual_ips) {
        vips.push_back(vip.address + "/" + std::to_string(vip.prefix));
      }
      uint32_t master = node->masterIp();
      char ip[INET_ADDRSTRLEN] = "";
      in_addr a{htonl(master)};
      if (master) ::inet_ntop(AF_INET, &a, ip, sizeof ip);
      j["vrrp"] = {{"interface", v.interface},
                   {"vrid", v.vrid},
                   {"priority", v.priority},
                   {"advert_interval_ms", v.advert_interval.count()},
                   {"state", ha::stateName(node->state())},
                   {"master", master ? json(ip) : json(nullptr)},
                   {"virtual_ips", vips},
                   {"adverts_sent", c.adverts_sent},
                   {"adverts_received", c.adverts_received},
                   {"transitions", c.transitions},
                   {"gratuitous_arps", c.garps_sent}};
    }
    if (replicator_) {
      state::ReplicationStatus rs = replicator_->status();
      j["store"] = rs.store;
      for (const state::PeerStatus& p : rs.peers) {
        j["peers"].push_back(
            {{"id", p.id},
             {"address", p.address},
             {"state", p.state},
             {"since", rfc3339Ms(p.since_unix_ms)},
             {"last_heard",
              p.last_heard_unix_ms ? json(rfc3339Ms(p.last_heard_unix_ms)) : json(nullptr)},
             {"rtt_ms", p.rtt_us >= 0 ? json(p.rtt_us / 1000.0) : json(nullptr)},
             {"records_sent", p.records_sent},
             {"records_received", p.records_received},
             {"full_syncs", p.full_syncs},
             {"queue_overflows", p.queue_overflows},
             {"auth_failures", p.auth_failures},
             {"connects", p.connects},
             {"last_error", p.last_error}});
      }
      j["replication_lag_ms"] = {{"p50", rs.lag.quantileUs(0.5) / 1000.0},
                                 {"p99", rs.lag.quantileUs(0.99) / 1000.0},
                                 {"count", rs.lag.count()}};
    } else {
      j["store"] = "local";
    }
    if (table_) {
      const state::Table::Stats t = table_->stats();
      j["state"] = {
          {"entries", t.entries}, {"local_writes", t.local_writes}, {"merged", t.merged},
          {"stale", t.stale},     {"overflows", t.dirty_overflows}, {"evictions", t.evictions}};
      // What other instances observe of the servers (a failed check, an ejection), whether or
      // not this node acts on it (cluster.peer_health).
      json seen = json::array();
      const int64_t now = unixMs();
      table_->forEach(
          [&](const state::Record& r) {
            if (r.kind != state::Kind::kHealth || r.origin == cfg().node_id) return;
            const size_t a = r.key.find(state::kSep);
            const size_t b = a == std::string::npos ? a : r.key.find(state::kSep, a + 1);
            if (b == std::string::npos) return;
            seen.push_back({{"backend", r.key.substr(0, a)},
                            {"server", r.key.substr(a + 1, b - a - 1)},
                            {"node", r.origin},
                            {"state", r.value},
                            {"since", rfc3339Ms(static_cast<int64_t>(r.version / 1000))}});
          },
          now);
      j["peer_health"] = std::move(seen);
    }
    return jsonResponse(200, j);
  }
  if (const Asset* a = findAsset(p)) {
    HttpResponse r;
    r.content_type = std::string(a->content_type);
    r.body = std::string(a->body);
    return r;
  }
  return errorJson(404, "no such endpoint: " + p);
}

std::string AdminServer::statusJson() {
  Totals snap = collect(server_);
  const config::Config& c = *snap.snap->cfg;  // the config the totals are indexed by
  ProcessStats proc = readProcessStats();
  const int64_t now = unixMs();
  json listeners = json::array();
  for (size_t i = 0; i < c.listeners.size(); ++i) {
    const config::Listener& l = c.listeners[i];
    const ListenerTotals& t = snap.listeners[i];
    listeners.push_back({{"name", l.name},
                         {"listen", l.listen.text()},
                         {"mode", l.mode == config::ListenerMode::kHttp ? "http" : "tcp"},
                         {"backend", l.backend},
                         {"active_connections", t.active},
                         {"connections_total", t.connections},
                         {"requests_total", t.requests},
                         {"responses", classes(t)},
                         {"bytes_in", t.bytes_in},
                         {"bytes_out", t.bytes_out}});
  }
  json j{{"node", c.node_id},
         {"version", TANDEM_VERSION},
         {"pid", static_cast<int64_t>(::getpid())},
         {"role", roleName()},
         {"started_at", rfc3339Ms(started_unix_ms_)},
         {"uptime_seconds", static_cast<double>(now - started_unix_ms_) / 1000.0},
         {"ready", !draining_.load()},
         {"config",
          {{"source", snap_->source},
           {"path", snap_->origin},
           {"revision", snap_->id},
           {"source_revision", snap_->source_revision},
           {"loaded_at", rfc3339Ms(snap_->loaded_unix_ms)}}},
         {"workers", server_.workerCount()},
         {"process",
          {{"cpu_seconds", proc.cpu_seconds},
           {"resident_bytes", proc.resident_bytes},
           {"open_fds", proc.open_fds},
           {"max_fds", proc.max_fds},
           {"threads", proc.threads}}},
         {"listeners", listeners},
         {"alerts_firing", alerts_.active().size()}};
  return j.dump();
}

std::string AdminServer::backendsJson(const Totals& snap) {
  const config::Config& c = *snap.snap->cfg;  // the config the totals are indexed by
  json backends = json::array();
  for (size_t b = 0; b < c.backends.size(); ++b) {
    const config::Backend& bc = c.backends[b];
    const BackendTotals& bt = snap.backends[b];
    json servers = json::array();
    for (size_t i = 0; i < bc.servers.size(); ++i) {
      const config::Server& sc = bc.servers[i];
      const ServerTotals& st = bt.servers[i];
      servers.push_back({{"name", sc.name},
                         {"address", sc.address.text()},
                         {"backup", sc.backup},
                         {"state", st.state()},
                         {"admin", adminStateName(st.admin)},
                         {"weight", st.view.weight},
                         {"configured_weight", sc.weight},
                         {"effective_weight_percent", st.view.weight_permille / 10},
                         {"active_requests", st.active},
                         {"requests_total", st.requests},
                         {"responses", classes(st)},
                         {"connect_failures", st.connect_failures},
                         {"failed_tries", st.failures},
                         {"checks", {{"passed", st.checks_passed}, {"failed", st.checks_failed}}},
                         {"ejections", st.ejections}});
    }
    backends.push_back({{"name", bc.name},
                        {"balance", bc.balance},
                        {"panic", bt.panic},
                        {"servers_healthy", bt.healthy},
                        {"servers_total", bc.servers.size()},
                        {"active_requests", bt.active()},
                        {"requests_total", bt.requests},
                        {"responses", classes(bt)},
                        {"retries", bt.retries},
                        {"connect_failures", bt.connect_failures},
                        {"p50_ms", bt.duration.quantileUs(0.5) / 1000.0},
                        {"p99_ms", bt.duration.quantileUs(0.99) / 1000.0},
                        {"servers", servers}});
  }
  return json{{"backends", backends}}.dump();
}

std::string AdminServer::alertsJson() const {
  std::string out = "{\"active\":[";
  bool first = true;
  for (const Alert& a : alerts_.active()) {
    if (!first) out += ',';
    first = false;
    out += alertJson(a, cfg().node_id);
  }
  out += "],\"recent\":[";
  first = true;
  for (const Alert& a : alerts_.recent()) {
    if (!first) out += ',';
    first = false;
    out += alertJson(a, cfg().node_id);
  }
  out += "]}";
  return out;
}

std::string AdminServer::metricsText() {
  ControlFacts f;
  f.version = TANDEM_VERSION;
  f.node = cfg().node_id;
  f.config_revision = snap_->id;
  f.config_source_revision = snap_->source_revision;
  f.config_loaded_seconds = static_cast<double>(snap_->loaded_unix_ms) / 1000.0;
  f.events_total = server_.events().total();
  f.alerts_firing = alerts_.active().size();
  f.alerts_fired_total = alerts_fired_;
  if (webhooks_) {
    auto ws = webhooks_->stats();
    f.webhook_delivered = ws.delivered;
    f.webhook_failed = ws.failed;
    f.webhook_dropped = ws.dropped;
  }
  if (access_log_) {
    f.access_log_written = access_log_->written();
    f.access_log_dropped = access_log_->dropped();
  }
  f.scrapes_total = ++scrapes_;
  f.role = roleName();
  if (const ha::HaNode* node = ha_.load()) {
    auto c = node->counters();
    f.vrrp = true;
    f.vrrp_adverts_sent = c.adverts_sent;
    f.vrrp_adverts_received = c.adverts_received;
    f.vrrp_transitions = c.transitions;
    f.vrrp_garps = c.garps_sent;
    for (size_t i = 0; i < c.rejected.size(); ++i) {
      f.vrrp_rejected.emplace_back(ha::rejectName(static_cast<ha::Reject>(i)), c.rejected[i]);
    }
  }
  if (table_) {
    f.state = true;
    f.table = table_->stats();
  }
  if (replicator_) {
    state::ReplicationStatus rs = replicator_->status();
    f.store = rs.store;
    f.peers = std::move(rs.peers);
    f.replication_lag = rs.lag;
  }
  Totals totals = collect(server_);
  return renderMetrics(*totals.snap->cfg, totals, readProcessStats(), f);
}

}  // namespace tandem::admin
