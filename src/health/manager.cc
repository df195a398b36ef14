#include "health/manager.h"

#include <algorithm>

#include "core/log.h"
#include "health/policy.h"

namespace tandem::health {
namespace {
constexpr int64_t kTickMs = 100;  // ejection expiry and slow-start steps
constexpr uint32_t kPermilleStep = 50;

const char* adminWord(AdminState s) {
  switch (s) {
    case AdminState::kEnabled:
      return "enabled";
    case AdminState::kDraining:
      return "draining";
    case AdminState::kDisabled:
      return "disabled";
  }
  return "?";
}
}  // namespace

HealthManager::HealthManager(std::shared_ptr<const config::Config> cfg, EventLog& events,
                             const std::vector<ServerMemo>& carry)
    : cfg_(std::move(cfg)), events_(events), tick_(this, 0) {
  backends_.resize(cfg_->backends.size());
  counters_.resize(cfg_->backends.size());
  admin_states_.resize(cfg_->backends.size());
  for (size_t bi = 0; bi < cfg_->backends.size(); ++bi) {
    const config::Backend& bc = cfg_->backends[bi];
    for (size_t si = 0; si < bc.servers.size(); ++si) {
      counters_[bi].push_back(std::make_unique<ServerCounters>());
    }
    admin_states_[bi].assign(bc.servers.size(), AdminState::kEnabled);
    BackendState& b = backends_[bi];
    b.cfg = &bc;
    b.servers.resize(bc.servers.size());
    for (ServerState& s : b.servers) {
      bool initial = !bc.active.enabled || bc.active.initial_up;
      s.rf = RiseFall(bc.active.rise, bc.active.fall, initial);
    }
    if (bc.passive.enabled) {
      OutlierParams p;
      p.consecutive_failures = bc.passive.consecutive_failures;
      p.base_ejection_ms = bc.passive.base_ejection.count();
      p.max_ejection_ms = bc.passive.max_ejection.count();
      p.max_ejection_percent = bc.passive.max_ejection_percent;
      b.outlier = std::make_unique<OutlierDetector>(p, bc.servers.size());
    }
  }
  for (const ServerMemo& m : carry) {
    for (size_t bi = 0; bi < backends_.size(); ++bi) {
      const config::Backend& bc = *backends_[bi].cfg;
      if (bc.name != m.backend) continue;
      for (size_t si = 0; si < bc.servers.size(); ++si) {
        if (bc.servers[si].name != m.server || bc.servers[si].address.text() != m.address) continue;
        ServerState& s = backends_[bi].servers[si];
        s.admin = m.admin;
        s.weight = m.weight;
        counters_[bi][si]->checks_passed.add(m.checks_passed);
        counters_[bi][si]->checks_failed.add(m.checks_failed);
        counters_[bi][si]->ejections.add(m.ejections);
        admin_states_[bi][si] = m.admin;
        if (bc.active.enabled) {
          s.checked = m.checked;
          s.rf.set(m.up);
          // An ejection does not survive a reload, but a server that was out stays out until it
          // passes a check.
          s.awaiting_probe = m.ejected_or_waiting;
        }
      }
    }
  }
  current_ = buildView();
  for (BackendState& b : backends_) b.panic = false;  // events for panic come with publish()
}

std::vector<ServerMemo> HealthManager::memo() const {
  std::vector<ServerMemo> out;
  for (const BackendState& b : backends_) {
    for (size_t si = 0; si < b.servers.size(); ++si) {
      const ServerState& s = b.servers[si];
      const ServerCounters& c = *counters_[&b - backends_.data()][si];
      out.push_back({b.cfg->name, b.cfg->servers[si].name, b.cfg->servers[si].address.text(),
                     s.checked, s.rf.up(), s.ejected || s.awaiting_probe, s.admin, s.weight,
                     c.checks_passed.get(), c.checks_failed.get(), c.ejections.get()});
    }
  }
  return out;
}

HealthManager::~HealthManager() { stop(); }

std::shared_ptr<const HealthView> HealthManager::current() const {
  std::lock_guard<std::mutex> g(mu_);
  return current_;
}

void HealthManager::start(Publisher publish) {
  publish_ = std::move(publish);
  for (size_t bi = 0; bi < backends_.size(); ++bi) {
    BackendState& b = backends_[bi];
    if (!b.cfg->active.enabled) continue;
    for (size_t si = 0; si < b.servers.size(); ++si) {
      const config::Server& sc = b.cfg->servers[si];
      auto addr = parseAddress(sc.address.host, sc.address.port);
      if (!addr) continue;  // validated at load
      std::string host = b.cfg->active.host.empty() ? sc.address.text() : b.cfg->active.host;
      int bidx = static_cast<int>(bi), sidx = static_cast<int>(si);
      b.servers[si].probe = std::make_unique<Probe>(
          loop_, pool_, b.cfg->active, *addr, host,
          [this, bidx, sidx](bool ok, const std::string& why) { onProbe(bidx, sidx, ok, why); });
      // Spread the first checks over a few milliseconds rather than all at once.
      b.servers[si].probe->schedule(static_cast<int64_t>(1 + rng_() % 10));
    }
  }
  loop_.setWakeHandler([this] { drainMailbox(); });
  tick_.arm(loop_.timers(kTickMs));
  thread_ = std::thread([this] { loop_.run(); });
}

void HealthManager::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_requested_ = true;  // the loop applies what was posted before, then stops
  }
  loop_.wake();
  thread_.join();
}

void HealthManager::reportFailureStreak(int backend, int server) {
  {
    std::lock_guard<std::mutex> g(mu_);
    reports_.emplace_back(backend, server);
  }
  loop_.wake();
}

std::pair<int, int> HealthManager::find(const std::string& backend,
                                        const std::string& server) const {
  for (size_t bi = 0; bi < cfg_->backends.size(); ++bi) {
    if (cfg_->backends[bi].name != backend) continue;
    const auto& servers = cfg_->backends[bi].servers;
    for (size_t si = 0; si < servers.size(); ++si) {
      if (servers[si].name == server) return {static_cast<int>(bi), static_cast<int>(si)};
    }
  }
  return {-1, -1};
}

bool HealthManager::setAdminState(const std::string& backend, const std::string& server,
                                  AdminState state) {
  std::shared_ptr<HealthManager> next;
  {
    std::lock_guard<std::mutex> g(mu_);
    next = successor_;
    if (!next) {
      auto [b, s] = find(backend, server);
      if (b < 0) return false;
      admin_.emplace_back(b, s, state);
      admin_states_[b][s] = state;  // visible to readers at once, applied on the loop
    }
  }
  if (next) return next->setAdminState(backend, server, state);  // the server may be new there
  loop_.wake();
  return true;
}

bool HealthManager::setWeight(const std::string& backend, const std::string& server,
                              uint32_t weight) {
  std::shared_ptr<HealthManager> next;
  {
    std::lock_guard<std::mutex> g(mu_);
    next = successor_;
    if (!next) {
      auto [b, s] = find(backend, server);
      if (b < 0 || weight < 1 || weight > 256) return false;
      weights_.emplace_back(b, s, weight);
    }
  }
  if (next) return next->setWeight(backend, server, weight);
  loop_.wake();
  return true;
}

std::shared_ptr<HealthManager> HealthManager::handOver(
    const std::function<std::shared_ptr<HealthManager>(const std::vector<ServerMemo>&)>& make) {
  stop();  // the loop thread is gone: this thread may apply what it left
  // Under mu_, so that an admin action lands either in the memo or in the successor.
  std::lock_guard<std::mutex> g(mu_);
  applyAdmin(admin_, weights_);  // posted after the loop took its last mailbox
  admin_.clear();
  weights_.clear();
  successor_ = make(memo());
  return successor_;
}

std::vector<std::vector<AdminState>> HealthManager::adminStates() const {
  std::lock_guard<std::mutex> g(mu_);
  return admin_states_;
}

void HealthManager::drainMailbox() {
  std::vector<std::pair<int, int>> reports;
  std::vector<std::tuple<int, int, AdminState>> admin;
  std::vector<std::tuple<int, int, uint32_t>> weights;
  bool stop = false;
  {
    std::lock_guard<std::mutex> g(mu_);
    reports.swap(reports_);
    admin.swap(admin_);
    weights.swap(weights_);
    stop = stop_requested_;
  }
  for (auto [b, s] : reports) {
    BackendState& bs = backends_[b];
    if (!bs.outlier || !bs.outlier->onFailureStreak(static_cast<size_t>(s), loop_.now())) continue;
    bs.servers[s].ejected = true;
    counters_[b][s]->ejections.add();
    emit("ejected", b, s,
         std::to_string(bs.cfg->passive.consecutive_failures) + " failures in a row, ejection #" +
             std::to_string(bs.outlier->timesEjected(static_cast<size_t>(s))));
  }
  applyAdmin(admin, weights);
  if (stop) {
    loop_.stop();
    return;
  }
  publish();
}

void HealthManager::applyAdmin(const std::vector<std::tuple<int, int, AdminState>>& admin,
                               const std::vector<std::tuple<int, int, uint32_t>>& weights) {
  for (auto [b, s, state] : admin) {
    ServerState& ss = backends_[b].servers[s];
    if (ss.admin == state) continue;
    ss.admin = state;
    emit(adminWord(state), b, s, "admin request");
  }
  for (auto [b, s, weight] : weights) {
    ServerState& ss = backends_[b].servers[s];
    if (ss.weight == weight) continue;
    ss.weight = weight;
    emit("weight", b, s,
         "admin request: weight " + std::to_string(weight) + " (configured " +
             std::to_string(backends_[b].cfg->servers[s].weight) + ")");
  }
}

bool HealthManager::healthy(const BackendState&, const ServerState& s) const {
  return s.rf.up() && !s.ejected && !s.awaiting_probe;
}

void HealthManager::onProbe(int b, int s, bool ok, const std::string& why) {
  BackendState& bs = backends_[b];
  ServerState& ss = bs.servers[s];
  bool first = !ss.checked;
  ss.checked = true;
  (ok ? counters_[b][s]->checks_passed : counters_[b][s]->checks_failed).add();
  bool was_up = ss.rf.up();
  bool flipped;
  if (first && !was_up && ok) {
    ss.rf.set(true);  // a server never checked needs one pass, not `rise`, to start
    flipped = true;
  } else {
    flipped = ss.rf.record(ok);
  }
  if (flipped) {
    if (ss.rf.up()) {
      becameUp(b, s,
               "passed " + std::to_string(first ? 1 : bs.cfg->active.rise) + " check(s): " + why);
      emit("server_up", b, s, why);
    } else {
      emit("server_down", b, s, std::to_string(bs.cfg->active.fall) + " failed check(s): " + why);
    }
  }
  if (ss.awaiting_probe && ok && ss.rf.up()) {
    ss.awaiting_probe = false;
    becameUp(b, s, why);
    emit("returned", b, s, "ejection over and a check passed");
  }
  publish();
  scheduleProbe(b, s);
}

void HealthManager::scheduleProbe(int b, int s) {
  const config::ActiveHealth& a = backends_[b].cfg->active;
  ServerState& ss = backends_[b].servers[s];
  int64_t base = a.interval.count();
  if (!ss.rf.up() || ss.rf.changing() || ss.awaiting_probe) {
    base = a.fast_interval.count() > 0 ? a.fast_interval.count()
                                       : std::max<int64_t>(50, a.interval.count() / 4);
  }
  // Jitter keeps checks of many servers from marching in step; quantised to 10 ms because every
  // distinct duration is a timer list of its own.
  int64_t spread = base * a.jitter_percent / 100;
  int64_t delay = base;
  if (spread > 0) delay += static_cast<int64_t>(rng_() % (2 * spread + 1)) - spread;
  delay = std::max<int64_t>(10, delay / 10 * 10);
  ss.probe->schedule(delay);
}

void HealthManager::becameUp(int b, int s, const std::string&) {
  const config::Backend& bc = *backends_[b].cfg;
  backends_[b].servers[s].up_since_ms = bc.slow_start.count() > 0 ? loop_.now() : 0;
}

void HealthManager::onTimer(int) {
  housekeeping();
  tick_.arm(loop_.timers(kTickMs));
}

void HealthManager::housekeeping() {
  const int64_t now = loop_.now();
  for (size_t bi = 0; bi < backends_.size(); ++bi) {
    BackendState& bs = backends_[bi];
    if (!bs.outlier) continue;
    for (size_t si : bs.outlier->expire(now)) {
      ServerState& ss = bs.servers[si];
      ss.ejected = false;
      if (bs.cfg->active.enabled) {
        ss.awaiting_probe = true;  // returns only after passing a check
        ss.probe->schedule(0);
      } else {
        becameUp(static_cast<int>(bi), static_cast<int>(si), "ejection over");
        emit("returned", static_cast<int>(bi), static_cast<int>(si), "ejection over");
      }
    }
  }
  publish();  // also advances slow-start ramps; no-op when nothing changed
}

std::shared_ptr<const HealthView> HealthManager::buildView() {
  auto v = std::make_shared<HealthView>();
  v->source = this;
  v->backends.resize(backends_.size());
  const int64_t now = loop_.now();
  for (size_t bi = 0; bi < backends_.size(); ++bi) {
    const BackendState& bs = backends_[bi];
    BackendView& bv = v->backends[bi];
    bv.servers.resize(bs.servers.size());
    size_t up = 0;
    for (size_t si = 0; si < bs.servers.size(); ++si) {
      const ServerState& ss = bs.servers[si];
      ServerView& sv = bv.servers[si];
      sv.healthy = healthy(bs, ss);
      sv.ejected = ss.ejected || ss.awaiting_probe;
      sv.weight = static_cast<uint16_t>(ss.weight ? ss.weight : bs.cfg->servers[si].weight);
      sv.draining = ss.admin == AdminState::kDraining;
      sv.disabled = ss.admin == AdminState::kDisabled;
      uint32_t pm = slowStartPermille(now, ss.up_since_ms, bs.cfg->slow_start.count());
      if (pm < 1000) pm = std::max<uint32_t>(100, pm / kPermilleStep * kPermilleStep);
      sv.weight_permille = static_cast<uint16_t>(pm);
      up += sv.healthy ? 1 : 0;
    }
    bv.panic = inPanic(up, bs.servers.size(), bs.cfg->panic_threshold_percent);
  }
  return v;
}

void HealthManager::publish() {
  auto v = buildView();
  {
    std::lock_guard<std::mutex> g(mu_);
    bool same = current_ && current_->backends.size() == v->backends.size();
    for (size_t i = 0; same && i < v->backends.size(); ++i) {
      same = current_->backends[i].servers == v->backends[i].servers &&
             current_->backends[i].panic == v->backends[i].panic;
    }
    if (same) return;
  }
  for (size_t bi = 0; bi < backends_.size(); ++bi) {
    bool panic = v->backends[bi].panic;
    if (panic != backends_[bi].panic) {
      backends_[bi].panic = panic;
      emit(panic ? "panic_on" : "panic_off", static_cast<int>(bi), -1,
           panic ? "too few healthy servers: balancing over all of them"
                 : "enough healthy servers again");
    }
  }
  auto mv = std::const_pointer_cast<HealthView>(v);
  mv->version = ++version_;
  {
    std::lock_guard<std::mutex> g(mu_);
    current_ = v;
  }
  if (publish_) publish_(v);
}

void HealthManager::emit(const std::string& kind, int b, int s, const std::string& detail) {
  Event e;
  e.kind = kind;
  e.backend = backends_[b].cfg->name;
  if (s >= 0) e.server = backends_[b].cfg->servers[s].name;
  e.detail = detail;
  events_.emit(std::move(e));
}

}  // namespace tandem::health
