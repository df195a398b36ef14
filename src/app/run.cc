#include "app/run.h"

#include <arpa/inet.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "admin/admin_server.h"
#include "config/config.h"
#include "config/etcd_election.h"
#include "config/etcd_source.h"
#include "core/log.h"
#include "ha/ha_node.h"
#include "proxy/access_log.h"
#include "proxy/server.h"

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
  int drain(int sig);

  std::string path_;
  std::shared_ptr<const Config> boot_;  // the local file at start (config source, election)
  std::shared_ptr<const Config> cfg_;   // the running config
  std::unique_ptr<proxy::AccessLog> access_log_;
  // Declared before the server: the server's health thread (tracking) may use it until it stops.
  std::unique_ptr<ha::HaNode> ha_;
  std::atomic<ha::HaNode*> ha_ptr_{nullptr};
  std::atomic<int> track_penalty_{0};
  std::optional<std::chrono::steady_clock::time_point>
      backup_since_;  // HA thread only  // the latest, for a node that starts after the first view
  std::unique_ptr<proxy::Server> server_;
  std::unique_ptr<admin::AdminServer> admin_;
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
  ha_->setTrackPenalty(track_penalty_.load());
  ha_->start();
  return true;
}

int Runner::drain(int sig) {
  log::info("signal {}: draining (up to {} ms)", sig, cfg_->drain_timeout.count());
  if (admin_) admin_->setDraining();
  // A graceful stop hands the VIPs over at once: priority 0, VIPs removed (RFC 5798 6.4.3).
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
    access_log_->start();
  }
  server_ = std::make_unique<proxy::Server>();
  server_->setAccessLog(access_log_.get());
  if (boot_->cluster.mode == "active_passive" && boot_->cluster.vrrp.track_no_healthy_backends) {
    // Tracking: while a backend has no healthy server, this node is a worse master.
    const int penalty = -boot_->cluster.vrrp.track_no_healthy_backends;
    server_->setHealthObserver([this, penalty](const health::HealthView& view) {
      // The view is indexed like the config it was built for (the server's current snapshot).
      auto cfg = server_->snapshot()->cfg;
      const auto& tracked = boot_->cluster.vrrp.track_backends;
      bool empty = false;
      for (size_t i = 0; i < view.backends.size() && i < cfg->backends.size(); ++i) {
        const auto& b = view.backends[i];
        if (!tracked.empty() &&
            std::find(tracked.begin(), tracked.end(), cfg->backends[i].name) == tracked.end()) {
          continue;
        }
        bool any = false;
        for (const auto& s : b.servers) any |= s.healthy && !s.disabled;
        empty |= !any && !b.servers.empty();
      }
      track_penalty_.store(empty ? penalty : 0);
      if (ha::HaNode* node = ha_ptr_.load()) node->setTrackPenalty(empty ? penalty : 0);
    });
  }
  if (auto r = server_->start(cfg_, {"file", path_, 0}); !r) {
    log::error("cannot start: {}", r.error().message);
    return 1;
  }
  if (cfg_->admin.enabled) {
    admin_ = std::make_unique<admin::AdminServer>(*server_, access_log_.get());
    if (auto r = admin_->start(); !r) {
      log::error("cannot start: {}", r.error().message);
      admin_.reset();
      return 1;  // ~Server stops the workers
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
