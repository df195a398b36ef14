#include "app/run.h"

#include <arpa/inet.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "admin/admin_server.h"
#include "app/privileges.h"
#include "cluster/peer_replicator.h"
#include "config/config.h"
#include "config/etcd_election.h"
#include "config/etcd_source.h"
#include "core/clock.h"
#include "core/log.h"
#include "ha/ha_node.h"
#include "ha/listener_probe.h"
#include "proxy/access_log.h"
#include "proxy/server.h"
#include "state/redis_replicator.h"
#include "state/sticky_cookie.h"
#include "state/table.h"

namespace tandem::app {
namespace {

using config::Config;

// Internal signal: the etcd source has a new config for the main thread to apply.
constexpr int kConfigArrived = SIGUSR2;

class Runner {
 public:
  explicit Runner(std::string path) : path_(std::move(path)) {}
  int run();

 private:
  // Validates and applies a config text; a bad one is rejected with every FILE:LINE: reason,
  // an event and an alert, and the running config stays.
  bool apply(tl::expected<Config, std::vector<config::ConfigError>> loaded,
             const proxy::ConfigOrigin& origin, const std::string& source);
  void applyFromEtcd();
  bool startEtcd();
  bool startElection();
  bool startHa();
  bool prepareState();
  void publishHealth(const Config& cfg, const health::HealthView& view);
  void trackBackends(const Config& cfg, const health::HealthView& view);
  void onPeerRecord(const state::Record& r);
  void startListenerProbe();
  int drain(int sig);

  std::string path_;
  std::shared_ptr<const Config> boot_;  // the local file at start (config source, election)
  std::shared_ptr<const Config> cfg_;   // the running config
  std::unique_ptr<proxy::AccessLog> access_log_;
  // Declared before the server: the server's health thread (tracking) may use it until it stops.
  std::unique_ptr<ha::HaNode> ha_;
  std::atomic<ha::HaNode*> ha_ptr_{nullptr};
  // Tracking (priority penalties): no healthy server in a tracked backend; a listener down.
  std::atomic<int> backend_penalty_{0};
  std::atomic<int> listener_penalty_{0};
  void applyTracking() {
    if (ha::HaNode* node = ha_ptr_.load()) {
      node->setTrackPenalty(backend_penalty_.load() + listener_penalty_.load());
    }
  }
  std::optional<std::chrono::steady_clock::time_point>
      backup_since_;  // HA thread only  // the latest, for a node that starts after the first view
  // Shared state: declared before the server (workers use it) and destroyed after it.
  std::unique_ptr<state::Table> table_;
  std::mutex published_mu_;  // written by the health thread, read by the replicator's
  std::map<std::string, std::string> published_;   // our last observation per server
  std::map<std::string, std::string> peer_views_;  // replicator thread: peers' last observations
  static constexpr int64_t kHealthRecordTtlMs = 600'000;
  std::unique_ptr<proxy::Server> server_;
  std::unique_ptr<admin::AdminServer> admin_;
  std::unique_ptr<ha::ListenerProbe> listener_probe_;    // uses server_: declared (stops) after it
  std::atomic<admin::AdminServer*> admin_ptr_{nullptr};  // for threads started before admin_
  std::unique_ptr<state::Replicator> replicator_;  // uses the table, server and admin: stops first
  std::unique_ptr<config::EtcdSource> source_;
  std::unique_ptr<config::EtcdElection> election_;
  std::mutex pending_mu_;  // guards pending_ (written by the etcd source's thread)
  std::optional<std::pair<std::string, int64_t>> pending_;
};

bool Runner::apply(tl::expected<Config, std::vector<config::ConfigError>> loaded,
                   const proxy::ConfigOrigin& origin, const std::string& source) {
  auto rejected = [&](const std::string& why) {
    server_->events().emit({0, 0, "config_rejected", "", "", source + ": " + why});
    if (admin_) admin_->configOutcome(source, false, why);
    return false;
  };
  if (!loaded) {
    for (const auto& e : loaded.error()) log::error("reload rejected: {}", e.text());
    const size_t more = loaded.error().size() - 1;
    return rejected(loaded.error().front().text() +
                    (more ? " (and " + std::to_string(more) + " more)" : ""));
  }
  // Node-local sections come from the local file for the process's life: a document shared
  // through etcd must not give every node the same id or admin address, nor point the process
  // at another source.
  loaded->node_id = boot_->node_id;
  loaded->admin = boot_->admin;
  loaded->config_source = boot_->config_source;
  loaded->cluster = boot_->cluster;
  loaded->user = boot_->user;  // the process switched users once, at start
  loaded->group = boot_->group;
  auto next = std::make_shared<const Config>(std::move(*loaded));
  if (auto r = server_->reload(next, origin); !r) {
    log::error("reload rejected: {}", r.error().message);
    return rejected(r.error().message);
  }
  cfg_ = next;
  server_->events().emit({0, 0, "config_reloaded", "", "",
                          source + ": revision " + std::to_string(server_->snapshot()->id)});
  if (admin_) admin_->configOutcome(source, true, "");
  return true;
}

void Runner::applyFromEtcd() {
  std::optional<std::pair<std::string, int64_t>> got;
  {
    std::lock_guard<std::mutex> g(pending_mu_);
    got.swap(pending_);
  }
  if (!got) return;
  const std::string& key = boot_->config_source.key;
  const std::string name = "etcd:" + key + "@" + std::to_string(got->second);
  apply(config::loadString(got->first, name, path_), {"etcd", key, got->second}, "etcd:" + key);
}

bool Runner::startEtcd() {
  config::EtcdSourceOptions o;
  o.endpoints = boot_->config_source.endpoints;
  o.key = boot_->config_source.key;
  const pid_t self = ::getpid();
  auto made = config::EtcdSource::make(
      o,
      [this, self](std::string text, int64_t revision) {
        {
          std::lock_guard<std::mutex> g(pending_mu_);
          pending_.emplace(std::move(text), revision);  // a newer one replaces one not applied
        }
        ::kill(self, kConfigArrived);
      },
      [this](bool reachable, std::string why) {
        const std::string subject = "etcd:" + boot_->config_source.key;
        if (reachable) {
          log::info("config source {}: {}", subject, why);
        } else {
          log::warn("config source {} unreachable: {}; serving the last good config", subject, why);
        }
        if (admin_) admin_->sourceState(subject, reachable, why);
      });
  if (!made) {
    log::error("cannot start: config source: {}", made.error().message);
    return false;
  }
  source_ = std::move(*made);
  source_->start();
  return true;
}

bool Runner::startElection() {
  const config::Election& e = boot_->cluster.election;
  config::EtcdElectionOptions o;
  o.endpoints = e.endpoints;
  o.key = e.key;
  o.node_id = boot_->node_id;
  o.ttl = std::chrono::duration_cast<std::chrono::seconds>(e.ttl);
  auto made = config::EtcdElection::make(o, [this](bool leader, std::string leader_id) {
    log::warn("election {}: {} (leader: {})", boot_->cluster.election.key,
              leader ? "this node leads" : "this node follows",
              leader_id.empty() ? "none" : leader_id);
    server_->events().emit({0, 0, leader ? "election_leader" : "election_follower", "", "",
                            "leader: " + (leader_id.empty() ? std::string("none") : leader_id)});
    if (admin_) admin_->setRole(leader ? "leader" : "follower", leader_id);
  });
  if (!made) {
    log::error("cannot start: election: {}", made.error().message);
    return false;
  }
  election_ = std::move(*made);
  if (admin_) admin_->setRole("follower", "");
  election_->start();
  return true;
}

uint32_t hostOrder(const std::string& ip) {
  in_addr a{};
  ::inet_pton(AF_INET, ip.c_str(), &a);  // validated by the config loader
  return ntohl(a.s_addr);
}

bool Runner::startHa() {
  const config::Vrrp& v = boot_->cluster.vrrp;
  ha::VrrpSettings s;
  s.interface = v.interface;
  s.vrid = static_cast<uint8_t>(v.vrid);
  s.priority = static_cast<uint8_t>(v.priority);
  s.advert_interval_cs = static_cast<uint16_t>(v.advert_interval.count() / 10);
  s.preempt = v.preempt;
  s.preempt_delay_ms = v.preempt_delay.count();
  for (const auto& vip : v.virtual_ips) s.vips.emplace_back(hostOrder(vip.address), vip.prefix);
  for (const auto& peer : v.unicast_peers) s.unicast_peers.push_back(hostOrder(peer));
  s.garp_count = v.garp_count;
  s.garp_repeat_ms = v.garp_repeat.count();
  auto made = ha::HaNode::make(s, [this](ha::State from, ha::State to, ha::Reason why) {
    log::warn("vrrp vrid {}: {} -> {} ({})", boot_->cluster.vrrp.vrid, ha::stateName(from),
              ha::stateName(to), ha::reasonName(why));
    server_->events().emit({0, 0, std::string("vrrp_") + ha::stateName(to), "", "",
                            std::string(ha::stateName(from)) + " -> " + ha::stateName(to) + " (" +
                                ha::reasonName(why) + ")"});
    // A takeover, as opposed to the election of a cold start: this node had been a backup for
    // longer than a master-down interval, so it had been hearing another master.
    const auto now = std::chrono::steady_clock::now();
    const auto down = std::chrono::milliseconds(ha::masterDownIntervalMs(
        static_cast<uint8_t>(boot_->cluster.vrrp.priority),
        static_cast<uint16_t>(boot_->cluster.vrrp.advert_interval.count() / 10)));
    const bool takeover = to == ha::State::kMaster &&
                          (why == ha::Reason::kMasterDown || why == ha::Reason::kMasterStopped) &&
                          backup_since_ &&
                          now - *backup_since_ > down + std::chrono::milliseconds(100);
    if (to == ha::State::kBackup) backup_since_ = now;
    if (admin_) {
      admin_->haTransition(ha::stateName(to), to == ha::State::kFault, takeover,
                           ha::reasonName(why));
    }
  });
  if (!made) {
    log::error("cannot start: vrrp: {}", made.error().message);
    return false;
  }
  ha_ = std::move(*made);
  if (admin_) admin_->setHaNode(ha_.get());
  ha_ptr_.store(ha_.get());
  applyTracking();
  ha_->start();
  if (v.track_listener_down != 0) startListenerProbe();
  return true;
}

void Runner::startListenerProbe() {
  const config::Vrrp& v = boot_->cluster.vrrp;
  auto targets = [this, &v] {
    // The running config's listeners: a reload that drops a tracked listener makes it "down".
    std::vector<ha::ProbeTarget> out;
    auto cfg = server_->snapshot()->cfg;
    auto isVip = [&v](const std::string& host) {
      return std::any_of(v.virtual_ips.begin(), v.virtual_ips.end(),
                         [&](const config::VirtualIp& vip) { return vip.address == host; });
    };
    if (v.track_listeners.empty()) {
      for (const auto& l : cfg->listeners) {
        if (!isVip(l.listen.host)) out.push_back({l.name, l.listen.host, l.listen.port});
      }
      return out;
    }
    for (const std::string& name : v.track_listeners) {
      auto it = std::find_if(cfg->listeners.begin(), cfg->listeners.end(),
                             [&](const config::Listener& l) { return l.name == name; });
      if (it == cfg->listeners.end()) {
        out.push_back({name, "127.0.0.1", 0});  // gone from the config: a connect that fails
      } else {
        out.push_back({name, it->listen.host, it->listen.port});
      }
    }
    return out;
  };
  const int penalty = -v.track_listener_down;
  listener_probe_ = std::make_unique<ha::ListenerProbe>(
      targets, std::chrono::milliseconds(250), std::chrono::milliseconds(1000), 2,
      [this, penalty](bool down, const std::string& detail) {
        listener_penalty_.store(down ? penalty : 0);
        applyTracking();
        server_->events().emit({0, 0, down ? "track_listener_down" : "track_listener_up", "", "",
                                down ? detail : "every tracked listener accepts"});
      });
  listener_probe_->start();
}

void Runner::trackBackends(const Config& cfg, const health::HealthView& view) {
  // Tracking: while a backend has no healthy server, this node is a worse master.
  if (boot_->cluster.mode != "active_passive" || !boot_->cluster.vrrp.track_no_healthy_backends) {
    return;
  }
  const int penalty = -boot_->cluster.vrrp.track_no_healthy_backends;
  const auto& tracked = boot_->cluster.vrrp.track_backends;
  bool empty = false;
  for (size_t i = 0; i < view.backends.size() && i < cfg.backends.size(); ++i) {
    const auto& b = view.backends[i];
    if (!tracked.empty() &&
        std::find(tracked.begin(), tracked.end(), cfg.backends[i].name) == tracked.end()) {
      continue;
    }
    bool any = false;
    for (const auto& s : b.servers) any |= s.healthy && !s.disabled;
    empty |= !any && !b.servers.empty();
  }
  backend_penalty_.store(empty ? penalty : 0);
  applyTracking();
}

void Runner::publishHealth(const Config& cfg, const health::HealthView& view) {
  // This node's observation of each server, shared with the other instances (only changes are
  // written).
  std::lock_guard lock(published_mu_);
  for (size_t b = 0; b < view.backends.size() && b < cfg.backends.size(); ++b) {
    const auto& servers = view.backends[b].servers;
    for (size_t i = 0; i < servers.size() && i < cfg.backends[b].servers.size(); ++i) {
      const health::ServerView& v = servers[i];
      const char* seen = v.ejected ? "ejected" : !v.healthy ? "down" : "up";
      std::string key = cfg.backends[b].name;
      key.push_back(state::kSep);
      key += cfg.backends[b].servers[i].name;
      key.push_back(state::kSep);
      key += boot_->node_id;
      auto [it, inserted] = published_.try_emplace(key, seen);
      if (!inserted && it->second == seen) continue;
      it->second = seen;
      table_->put(state::Kind::kHealth, key, seen, kHealthRecordTtlMs, unixUs());
    }
  }
}

void Runner::onPeerRecord(const state::Record& r) {
  // Another instance's observation of a server: shown as an event; with peer_health: act, a
  // failure it saw counts as a local failure streak (ejection under this node's own outlier
  // rules, max_ejection_percent included), so the whole fleet stops using the server at once.
  if (r.kind != state::Kind::kHealth || r.origin == boot_->node_id) return;
  const size_t a = r.key.find(state::kSep);
  const size_t b = a == std::string::npos ? a : r.key.find(state::kSep, a + 1);
  if (b == std::string::npos) return;
  const std::string backend = r.key.substr(0, a);
  const std::string server = r.key.substr(a + 1, b - a - 1);
  // An event when a peer's view changes, not for every "up" of a full sync.
  auto [seen, inserted] = peer_views_.try_emplace(r.key, r.value);
  if (!inserted && seen->second == r.value) return;
  seen->second = r.value;
  if (!(inserted && r.value == "up")) {
    server_->events().emit(
        {0, 0, "peer_health", backend, server, r.origin + " sees it " + r.value});
  }
  if (r.value == "up") return;
  auto snap = server_->snapshot();
  if (!snap->cfg->cluster.act_on_peer_health) return;
  {
    // Only while this node still sees the server up: its own ejection (which the peer may be
    // echoing back) is not extended by the peer's report.
    std::lock_guard lock(published_mu_);
    auto it = published_.find(backend + state::kSep + server + state::kSep + boot_->node_id);
    if (it != published_.end() && it->second != "up") return;
  }
  for (size_t bi = 0; bi < snap->cfg->backends.size(); ++bi) {
    const auto& bc = snap->cfg->backends[bi];
    if (bc.name != backend) continue;
    for (size_t si = 0; si < bc.servers.size(); ++si) {
      if (bc.servers[si].name == server && snap->health) {
        snap->health->reportFailureStreak(static_cast<int>(bi), static_cast<int>(si));
      }
    }
  }
}

bool Runner::prepareState() {
  table_ = std::make_unique<state::Table>(state::Table::Options{boot_->node_id});
  server_->setState(table_.get(),
                    boot_->cluster.secret.empty() ? state::randomSecret() : boot_->cluster.secret);
  table_->setMergeObserver([this](const state::Record& r) { onPeerRecord(r); });
  state::ReplicatorObserver observer;
  observer.link = [this](const std::string& peer, bool up, const std::string& detail) {
    server_->events().emit({0, 0, up ? "peer_up" : "peer_down", "", peer, detail});
    if (admin::AdminServer* a = admin_ptr_.load()) a->stateLink(peer, up, detail);
  };
  const config::StateStore& st = boot_->state;
  if (st.redis) {
    state::RedisReplicatorOptions o;
    o.node_id = boot_->node_id;
    o.host = st.redis_address.host;
    o.port = st.redis_address.port;
    o.prefix = st.redis_prefix;
    replicator_ = std::make_unique<state::RedisReplicator>(*table_, std::move(o), observer);
  } else if (!boot_->cluster.peers.empty()) {
    cluster::PeerReplicatorOptions o;
    o.node_id = boot_->node_id;
    o.listen_host = boot_->cluster.listen.host;
    o.listen_port = boot_->cluster.listen.port;
    for (const config::Peer& p : boot_->cluster.peers) {
      o.peers.push_back({p.id, p.address.host, p.address.port});
    }
    o.secret = boot_->cluster.secret;
    o.observer = observer;
    replicator_ = std::make_unique<cluster::PeerReplicator>(*table_, std::move(o));
  }
  return true;
}

int Runner::drain(int sig) {
  log::info("signal {}: draining (up to {} ms)", sig, cfg_->drain_timeout.count());
  if (admin_) admin_->setDraining();
  // A graceful stop hands the VIPs over at once: priority 0, VIPs removed (RFC 5798 6.4.3).
  if (listener_probe_) listener_probe_->stop();
  if (ha_) ha_->stop();
  if (source_) source_->stop();
  // A graceful stop hands the leadership over at once instead of after the lease's TTL.
  if (election_) {
    election_->stop();
    election_->resign();
  }
  bool clean = server_->drain(cfg_->drain_timeout);
  if (!clean) {
    log::warn("drain timeout reached with requests still open; exiting");
    if (access_log_) access_log_->stop();  // what the workers logged so far still gets written
    std::fflush(stderr);
    std::_Exit(0);
  }
  if (replicator_) replicator_->stop();
  if (admin_) admin_->stop();
  if (access_log_) access_log_->stop();
  log::info("drained; bye");
  return 0;
}

int Runner::run() {
  auto loaded = config::loadFile(path_);
  if (!loaded) {
    for (const auto& e : loaded.error()) std::fprintf(stderr, "%s\n", e.text().c_str());
    return 1;
  }
  boot_ = std::make_shared<const Config>(std::move(*loaded));
  cfg_ = boot_;

  // Signals are taken synchronously by this thread; every other thread inherits the blocked mask.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, kConfigArrived}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (cfg_->access_log.enabled) {
    auto opened =
        proxy::AccessLog::open(cfg_->access_log, proxy::resolveWorkerCount(cfg_->workers));
    if (!opened) {
      log::error("cannot start: access log: {}", opened.error().message);
      return 1;
    }
    access_log_ = std::move(*opened);
  }
  server_ = std::make_unique<proxy::Server>();
  server_->setAccessLog(access_log_.get());
  if (!prepareState()) return 1;
  server_->setHealthObserver([this](const health::HealthView& view) {
    // The view is indexed like the config it was built for (the server's current snapshot).
    auto cfg = server_->snapshot()->cfg;
    publishHealth(*cfg, view);
    trackBackends(*cfg, view);
  });
  // Everything that needs root is opened before any thread starts (listeners, the admin socket,
  // the access log); then privileges are dropped, and every thread inherits what is left.
  if (auto r = server_->bind(cfg_, {"file", path_, 0}); !r) {
    log::error("cannot start: {}", r.error().message);
    return 1;
  }
  if (cfg_->admin.enabled) {
    admin_ = std::make_unique<admin::AdminServer>(*server_, access_log_.get());
    admin_->setState(table_.get(), replicator_.get());
    if (boot_->cluster.mode == "active_active" && !boot_->cluster.election.enabled) {
      admin_->setRole("active", "");  // every instance serves
    }
    admin_ptr_.store(admin_.get());
    if (auto r = admin_->bind(); !r) {
      log::error("cannot start: {}", r.error().message);
      admin_.reset();
      return 1;
    }
  }
  if (replicator_) {
    if (auto r = replicator_->bind(); !r) {
      log::error("cannot start: state replication: {}", r.error().message);
      return 1;
    }
  }
  if (auto r = dropPrivileges(*boot_); !r) {
    log::error("cannot start: {}", r.error().message);
    return 1;
  }
  if (access_log_) access_log_->start();
  server_->run();
  if (admin_) {
    if (auto r = admin_->start(); !r) {
      log::error("cannot start: {}", r.error().message);
      admin_.reset();
      return 1;  // ~Server stops the workers
    }
  }
  if (replicator_) {
    if (auto r = replicator_->start(); !r) {
      log::error("cannot start: state replication: {}", r.error().message);
      return 1;
    }
  }
  if (boot_->cluster.mode == "active_passive" && !startHa()) return 1;
  if (boot_->cluster.election.enabled && !startElection()) return 1;
  if (boot_->config_source.etcd && !startEtcd()) return 1;
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGUSR1) {
      // Log rotation: the access log is reopened at its path (the writer finishes the old file).
      if (access_log_) access_log_->reopen();
      log::info("SIGUSR1: access log reopened");
    } else if (sig == kConfigArrived) {
      applyFromEtcd();
    } else if (sig == SIGHUP) {
      if (boot_->config_source.etcd) {
        log::info("SIGHUP: the config comes from etcd; push changes with `tandem config push`");
      } else {
        apply(config::loadFile(path_), {"file", path_, 0}, path_);
      }
    } else {
      return drain(sig);
    }
  }
}

}  // namespace

int run(const std::string& config_path) { return Runner(config_path).run(); }

}  // namespace tandem::app
