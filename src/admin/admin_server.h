#pragma once
// The control thread's admin side (DESIGN §5): the admin HTTP API, Prometheus metrics, the
// dashboard, server-sent events, the 15-minute time series and the alerts with their webhooks.
// Runs on a thread and loop of its own; reads the data plane only through thread-safe views
// (single-writer counters, published health snapshots) and changes it only through the health
// manager's thread-safe entry points.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "admin/alerts.h"
#include "admin/http_server.h"
#include "admin/timeseries.h"
#include "admin/webhook.h"
#include "config/config.h"
#include "core/error.h"
#include "core/event_loop.h"
#include "proxy/server.h"

namespace tandem::proxy {
class AccessLog;
}
namespace tandem::ha {
class HaNode;
}
namespace tandem::state {
class Table;
class Replicator;
}  // namespace tandem::state

namespace tandem::admin {

class AdminServer : public TimerHandler {
 public:
  AdminServer(proxy::Server& server, proxy::AccessLog* access_log = nullptr);
  ~AdminServer();

  // Binds the admin listener (an error if it cannot: the process must not run without it); no
  // thread yet, so a privilege drop can follow (app/privileges.h). Idempotent.
  Result<void> bind();
  // bind() if not done yet, then starts the control thread.
  Result<void> start();
  void stop();
  uint16_t port() const { return port_; }
  // Thread-safe: /readyz answers 503 from now on (the process is draining).
  void setDraining() { draining_.store(true); }
  // Thread-safe: a config from `source` was rejected (raises the config_rejected alert) or
  // applied (resolves it).
  void configOutcome(const std::string& source, bool applied, const std::string& detail);
  // Thread-safe: the config source became unreachable (raises config_source_unreachable) or
  // reachable again (resolves it).
  void sourceState(const std::string& source, bool reachable, const std::string& detail);
  // Thread-safe: the role from the leader election ("leader" | "follower"); with an election, only
  // the leader delivers webhooks (one notification per fleet, not one per instance).
  void setRole(const std::string& role, const std::string& leader_id);
  // Thread-safe: VRRP (active-passive). The node's counters and master address show in
  // /api/v1/cluster and the metrics; a transition sets the role and raises/resolves vrrp_fault.
  void setHaNode(const ha::HaNode* node) { ha_.store(node); }
  // `takeover`: this node became master because the master it heard went away (raises the
  // failover alert; leaving MASTER resolves it).
  void haTransition(const std::string& state, bool fault, bool takeover, const std::string& reason);
  // Thread-safe: shared state. A peer (or Redis, peer "redis") was reached or lost: raises and
  // resolves peer_down / state_store_unreachable. The replicator and table feed /api/v1/cluster
  // and the metrics (set before start()).
  void stateLink(const std::string& peer, bool up, const std::string& detail);
  void setState(const state::Table* table, const state::Replicator* replicator) {
    table_ = table;
    replicator_ = replicator;
  }

  void onTimer(int tag) override;

 private:
  enum Tag { kSampleTick = 1, kEventTick = 2 };
  HttpResponse handle(const HttpRequest& req);
  // Picks up a reloaded config (alert rules, webhooks, token) before serving or sampling.
  void refresh();
  const config::Config& cfg() const { return *snap_->cfg; }
  HttpResponse mutate(const HttpRequest& req, const std::string& backend, const std::string& server,
                      const std::string& action);
  bool authorized(const HttpRequest& req) const;
  std::string statusJson();
  std::string backendsJson(const Totals& snap);
  std::string alertsJson() const;
  std::string metricsText();
  HttpResponse eventStream();
  void sample();
  void pushEvents();
  void deliver(const Alert& a);

  proxy::Server& server_;
  std::shared_ptr<const proxy::Snapshot> snap_;  // the config in use (control thread only)
  proxy::AccessLog* access_log_;
  EventLoop loop_;
  HttpServer http_;
  AlertEngine alerts_;
  std::unique_ptr<WebhookSender> webhooks_;
  TimeSeries series_;
  Timer sample_timer_;
  Timer event_timer_;
  std::thread thread_;
  std::atomic<bool> draining_{false};
  struct Outcome {
    std::string rule;  // config_rejected | config_source_unreachable
    std::string source;
    bool ok;  // applied / reachable: resolves the alert
    std::string detail;
  };
  std::string roleName() const;
  std::string role_;  // guarded by mailbox_mu_; empty = standalone (no election)
  std::string leader_;
  std::atomic<const ha::HaNode*> ha_{nullptr};
  const state::Table* table_ = nullptr;            // shared state (set before start)
  const state::Replicator* replicator_ = nullptr;  // peers or Redis; nullptr = none
  mutable std::mutex mailbox_mu_;
  std::vector<Outcome> outcomes_;
  std::atomic<bool> stop_{false};
  uint16_t port_ = 0;
  int64_t started_unix_ms_ = 0;
  uint64_t last_event_id_ = 0;
  uint64_t ticks_ = 0;
  uint64_t scrapes_ = 0;
  uint64_t alerts_fired_ = 0;
};

// Constant-time comparison of a presented secret with the expected one.
bool secretEquals(std::string_view presented, std::string_view expected);

}  // namespace tandem::admin
