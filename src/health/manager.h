#pragma once
// The control thread's view of backend health: runs active probes, takes passive failure reports
// from workers, applies rise/fall, outlier ejection, slow start, panic and admin states, and
// publishes immutable HealthView snapshots to the workers. Emits an event per transition.
//
// Threading: everything runs on the manager's own thread and loop, except the thread-safe entry
// points marked below (they post to the loop).
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/stats.h"
#include "health/events.h"
#include "health/outlier.h"
#include "health/probe.h"
#include "health/rise_fall.h"
#include "health/view.h"

namespace tandem::health {

enum class AdminState { kEnabled, kDraining, kDisabled };

// What a server's health was, carried from the manager of the old config to the manager of the
// new one on a reload, so that unchanged servers keep their verdicts (no flap to `initial`).
struct ServerMemo {
  std::string backend;
  std::string server;
  std::string address;  // a server whose address changed is a new server
  bool checked = false;
  bool up = true;
  bool ejected_or_waiting = false;
  AdminState admin = AdminState::kEnabled;
  uint32_t weight = 0;         // admin weight override; 0 = none
  uint64_t checks_passed = 0;  // counters, so that metrics do not restart at a reload
  uint64_t checks_failed = 0;
  uint64_t ejections = 0;
};

class HealthManager : public TimerHandler {
 public:
  using Publisher = std::function<void(std::shared_ptr<const HealthView>)>;

  // `carry`: memos of the previous manager (config reload); unmatched servers start fresh.
  HealthManager(std::shared_ptr<const config::Config> cfg, EventLog& events,
                const std::vector<ServerMemo>& carry = {});
  ~HealthManager();

  // The view before any check ran (initial verdicts), for workers created before start().
  std::shared_ptr<const HealthView> current() const;
  void start(Publisher publish);
  void stop();
  // Call after stop(): the state to carry into the manager of a reloaded config.
  std::vector<ServerMemo> memo() const;
  // Config reload: stops this manager and builds its successor with make(memo) in one step. The
  // admin actions still sent here afterwards (the admin API may hold the old generation a moment
  // longer) go to the successor, and those sent before are in the memo: none is lost.
  std::shared_ptr<HealthManager> handOver(
      const std::function<std::shared_ptr<HealthManager>(const std::vector<ServerMemo>&)>& make);

  // Thread-safe: a worker saw `consecutive_failures` failed tries in a row on this server.
  void reportFailureStreak(int backend, int server);
  // Thread-safe: admin action; false if the backend or server does not exist.
  bool setAdminState(const std::string& backend, const std::string& server, AdminState state);
  // Thread-safe: admin weight override (1..256); false if the backend or server does not exist.
  bool setWeight(const std::string& backend, const std::string& server, uint32_t weight);

  // Thread-safe counters per server, for metrics (indexed like the config).
  struct ServerCounters {
    Counter checks_passed;
    Counter checks_failed;
    Counter ejections;
  };
  const ServerCounters& counters(size_t backend, size_t server) const {
    return *counters_[backend][server];
  }
  // Thread-safe: the admin state of every server (indexed like the config).
  std::vector<std::vector<AdminState>> adminStates() const;

  void onTimer(int tag) override;

 private:
  struct ServerState {
    RiseFall rf{1, 1, true};
    bool checked = false;         // at least one active check finished
    bool ejected = false;         // passive ejection in force
    bool awaiting_probe = false;  // ejection over, waiting for a passed active check
    AdminState admin = AdminState::kEnabled;
    uint32_t weight = 0;      // admin override; 0 = the configured weight
    int64_t up_since_ms = 0;  // for slow start; 0 = at full weight from the start
    std::unique_ptr<Probe> probe;
  };
  struct BackendState {
    const config::Backend* cfg = nullptr;
    std::vector<ServerState> servers;
    std::unique_ptr<OutlierDetector> outlier;
    bool panic = false;
  };

  bool healthy(const BackendState& b, const ServerState& s) const;
  std::pair<int, int> find(const std::string& backend, const std::string& server) const;
  void onProbe(int b, int s, bool ok, const std::string& why);
  void scheduleProbe(int b, int s);
  void becameUp(int b, int s, const std::string& why);
  void drainMailbox();
  // Admin actions taken from the mailbox, applied to the servers' state (the loop's, or the
  // caller's once the loop has stopped).
  void applyAdmin(const std::vector<std::tuple<int, int, AdminState>>& admin,
                  const std::vector<std::tuple<int, int, uint32_t>>& weights);
  void housekeeping();
  void publish();
  std::shared_ptr<const HealthView> buildView();
  void emit(const std::string& kind, int b, int s, const std::string& detail);

  std::shared_ptr<const config::Config> cfg_;
  EventLog& events_;
  EventLoop loop_;
  BufferPool pool_{16};
  std::mt19937_64 rng_{std::random_device{}()};
  std::vector<BackendState> backends_;
  Timer tick_;
  Publisher publish_;
  std::thread thread_;
  uint64_t version_ = 0;

  mutable std::mutex mu_;  // guards the mailbox and current_
  std::vector<std::pair<int, int>> reports_;
  std::vector<std::tuple<int, int, AdminState>> admin_;
  std::vector<std::tuple<int, int, uint32_t>> weights_;
  std::vector<std::vector<AdminState>> admin_states_;  // copy for adminStates()
  std::shared_ptr<HealthManager> successor_;           // set by handOver(): admin actions go there
  bool stop_requested_ = false;                        // stop(): the loop ends after its mailbox
  std::vector<std::vector<std::unique_ptr<ServerCounters>>> counters_;
  std::shared_ptr<const HealthView> current_;
};

}  // namespace tandem::health
