#include "ha/vrrp_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace tandem::ha {
namespace {

constexpr uint32_t kIpA = 0xC612000B;  // 198.18.0.11
constexpr uint32_t kIpB = 0xC612000C;  // 198.18.0.12
constexpr uint32_t kIpC = 0xC612000D;  // 198.18.0.13
constexpr uint32_t kVip = 0xC6120064;  // 198.18.0.100
constexpr uint8_t kVrid = 51;

VrrpConfig config(uint8_t priority, uint32_t ip = kIpA, bool preempt = true,
                  int64_t preempt_delay_ms = 0, uint16_t interval_cs = 10) {
  return VrrpConfig{kVrid, priority, interval_cs, preempt, preempt_delay_ms, ip};
}

Advert advert(uint8_t priority, uint16_t interval_cs = 10) {
  return Advert{kVrid, priority, interval_cs, {kVip}};
}

}  // namespace

// gtest printer (found by ADL through std::variant's arguments).
void PrintTo(const Action& action, std::ostream* os) { *os << toString(action); }

namespace {

std::string show(const Actions& actions) {
  std::string s;
  for (const Action& a : actions) s += (s.empty() ? "" : ", ") + toString(a);
  return "[" + s + "]";
}

#define EXPECT_ACTIONS(actual, ...) EXPECT_EQ(show(actual), show(Actions{__VA_ARGS__}))

Actions becomeMaster(State from, Reason reason, uint8_t priority) {
  return {Transition{from, State::kMaster, reason}, SendAdvert{priority}, AddVips{},
          SendGratuitousArp{}};
}

// A router that went Master the ordinary way: startup, no adverts, Master_Down_Timer fired.
VrrpRouter startedMaster(const VrrpConfig& c, int64_t& now) {
  VrrpRouter r(c);
  r.startup(0);
  now = r.masterDownIntervalMs();
  r.tick(now);
  EXPECT_EQ(r.state(), State::kMaster);
  return r;
}

// ---- Timer arithmetic (§6.1) ----

TEST(VrrpTimers, MasterDownIntervalRoundsSkewUp) {
  // FACTS.md: 361 ms at 100 ms adverts, which is keepalived's default priority 100 (skew 60.9).
  EXPECT_EQ(skewTimeMs(100, 10), 61);
  EXPECT_EQ(masterDownIntervalMs(100, 10), 361);
  // Priority 150: skew 106/256 × 100 = 41.4 ms -> 42 (the RFC's centiseconds would give 40).
  EXPECT_EQ(skewTimeMs(150, 10), 42);
  EXPECT_EQ(masterDownIntervalMs(150, 10), 342);
  EXPECT_EQ(masterDownIntervalMs(254, 10), 301);    // 0.78 ms
  EXPECT_EQ(masterDownIntervalMs(1, 10), 400);      // 99.6 ms
  EXPECT_EQ(masterDownIntervalMs(100, 100), 3610);  // 1 s adverts: 609.4 ms skew
  EXPECT_EQ(masterDownIntervalMs(150, 100), 3415);
  EXPECT_EQ(masterDownIntervalMs(100, 1), 37);                  // 10 ms adverts: 6.1 ms skew
  EXPECT_EQ(masterDownIntervalMs(1, 4095), 3 * 40950 + 40791);  // 40790.04 rounded up
  // Never shorter for a higher priority.
  for (int p = 2; p <= 255; ++p) {
    EXPECT_LE(skewTimeMs(static_cast<uint8_t>(p), 10), skewTimeMs(static_cast<uint8_t>(p - 1), 10));
  }
}

// ---- Initialize and Backup (§6.4.1, §6.4.2) ----

TEST(VrrpState, StartupGoesBackupThenMasterAfterExactlyMasterDownInterval) {
  VrrpRouter r(config(150));
  EXPECT_EQ(r.state(), State::kInit);
  EXPECT_FALSE(r.nextDeadline());
  EXPECT_ACTIONS(r.startup(1000), Transition{State::kInit, State::kBackup, Reason::kStartup},
                 RemoveVips{});
  EXPECT_EQ(r.state(), State::kBackup);
  EXPECT_EQ(r.masterDownIntervalMs(), 342);
  EXPECT_EQ(r.nextDeadline(), 1342);
  EXPECT_TRUE(r.tick(1341).empty());
  EXPECT_EQ(r.state(), State::kBackup);
  EXPECT_EQ(r.tick(1342), becomeMaster(State::kBackup, Reason::kMasterDown, 150));
  EXPECT_EQ(r.nextDeadline(), 1442);
  EXPECT_EQ(r.masterIp(), kIpA);
  EXPECT_TRUE(r.startup(1500).empty());  // only from Initialize
}

TEST(VrrpState, Priority100TakesOverAt361Ms) {
  VrrpRouter r(config(100));
  r.startup(0);
  EXPECT_TRUE(r.tick(360).empty());
  EXPECT_EQ(r.tick(361), becomeMaster(State::kBackup, Reason::kMasterDown, 100));
}

TEST(VrrpState, BackupFollowingAMasterStaysBackup) {
  VrrpRouter r(config(100, kIpA));
  r.startup(0);
  for (int64_t t = 50; t < 10000; t += 100) {
    EXPECT_TRUE(r.receive(t, advert(150), kIpB).empty());
    EXPECT_TRUE(r.tick(t + 99).empty());
  }
  EXPECT_EQ(r.state(), State::kBackup);
  EXPECT_EQ(r.masterIp(), kIpB);
  // The master goes silent after its advert at 9950: takeover exactly 361 ms later.
  EXPECT_TRUE(r.tick(9950 + 360).empty());
  EXPECT_EQ(r.tick(9950 + 361), becomeMaster(State::kBackup, Reason::kMasterDown, 100));
}

TEST(VrrpState, BackupLearnsMasterAdverInterval) {
  VrrpRouter r(config(150, kIpA, true, 0, 10));
  r.startup(0);
  r.receive(100, advert(200, 100), kIpB);  // the master advertises every second
  EXPECT_EQ(r.masterAdverIntervalCs(), 100);
  EXPECT_EQ(r.masterDownIntervalMs(), 3415);
  EXPECT_EQ(r.nextDeadline(), 100 + 3415);
  r.receive(1100, advert(200, 5), kIpB);  // and then every 50 ms
  EXPECT_EQ(r.masterDownIntervalMs(), 150 + 21);
  EXPECT_EQ(r.nextDeadline(), 1100 + 171);
}

TEST(VrrpState, PriorityZeroMakesBackupTakeOverAfterSkewTime) {
  VrrpRouter r(config(150));
  r.startup(0);
  r.receive(100, advert(200), kIpB);
  EXPECT_TRUE(r.receive(150, advert(0), kIpB).empty());
  EXPECT_EQ(r.nextDeadline(), 150 + 42);
  EXPECT_TRUE(r.tick(191).empty());
  EXPECT_EQ(r.tick(192), becomeMaster(State::kBackup, Reason::kMasterStopped, 150));
}

TEST(VrrpState, PriorityZeroSkewUsesTheLearnedInterval) {
  VrrpRouter r(config(100));
  r.startup(0);
  r.receive(100, advert(200, 100), kIpB);
  r.receive(200, advert(0, 100), kIpB);
  EXPECT_EQ(r.nextDeadline(), 200 + 610);
}

TEST(VrrpState, BackupIgnoresOwnAdvertsAndOtherVrids) {
  VrrpRouter r(config(150, kIpA));
  r.startup(0);
  Advert other = advert(200);
  other.vrid = 52;
  r.receive(100, other, kIpB);
  r.receive(200, advert(200), kIpA);  // our own multicast, looped back
  EXPECT_EQ(r.nextDeadline(), 342);
  EXPECT_EQ(r.masterIp(), 0u);
}

TEST(VrrpState, InitializeIgnoresEverything) {
  VrrpRouter r(config(150));
  EXPECT_TRUE(r.receive(0, advert(200), kIpB).empty());
  EXPECT_TRUE(r.tick(100000).empty());
  EXPECT_TRUE(r.shutdown(0).empty());
  EXPECT_EQ(r.state(), State::kInit);
}

// ---- Master (§6.4.3) ----

TEST(VrrpState, MasterSendsAnAdvertEveryInterval) {
  int64_t now = 0;
  VrrpRouter r = startedMaster(config(150), now);
  std::vector<int64_t> sent;
  for (int64_t t = now + 1; t <= now + 1000; ++t) {
    for (const Action& a : r.tick(t)) {
      ASSERT_TRUE(std::holds_alternative<SendAdvert>(a)) << toString(a);
      EXPECT_EQ(std::get<SendAdvert>(a).priority, 150);
      sent.push_back(t);
    }
  }
  ASSERT_EQ(sent.size(), 10u);
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(sent[i], now + 100 * int64_t(i + 1));
  // A late tick sends one advert, not a burst, and restarts the schedule from then.
  EXPECT_ACTIONS(r.tick(now + 1550), SendAdvert{150});
  EXPECT_EQ(r.nextDeadline(), now + 1650);
  // A slightly late tick keeps the schedule.
  EXPECT_ACTIONS(r.tick(now + 1653), SendAdvert{150});
  EXPECT_EQ(r.nextDeadline(), now + 1750);
}

TEST(VrrpState, HigherPriorityAdvertDemotesMaster) {
  int64_t now = 0;
  VrrpRouter r = startedMaster(config(150, kIpA), now);
  EXPECT_ACTIONS(r.receive(now + 10, advert(200, 100), kIpB),
                 Transition{State::kMaster, State::kBackup, Reason::kHigherPriority}, RemoveVips{},
                 SendAdvert{150});  // the parting advert
  EXPECT_EQ(r.state(), State::kBackup);
  EXPECT_EQ(r.masterIp(), kIpB);
  EXPECT_EQ(r.masterAdverIntervalCs(), 100);  // learnt from the new master
  EXPECT_EQ(r.nextDeadline(), now + 10 + 3415);
  EXPECT_TRUE(r.tick(now + 500).empty());  // Adver_Timer was cancelled
}

TEST(VrrpState, EqualPriorityHigherAddressDemotesMaster) {
  int64_t now = 0;
  VrrpRouter r = startedMaster(config(150, kIpB), now);
  EXPECT_ACTIONS(r.receive(now + 10, advert(150), kIpA), SendAdvert{150}, SendGratuitousArp{});
  EXPECT_EQ(r.state(), State::kMaster);
  EXPECT_ACTIONS(r.receive(now + 20, advert(150), kIpC),
                 Transition{State::kMaster, State::kBackup, Reason::kHigherPriority}, RemoveVips{},
                 SendAdvert{150});
}

TEST(VrrpState, LowerPriorityAdvertGetsAnImmediateAnswer) {
  int64_t now = 0;
  VrrpRouter r = startedMaster(config(150, kIpA), now);
  EXPECT_ACTIONS(r.receive(now + 30, advert(100), kIpB), SendAdvert{150}, SendGratuitousArp{});
  EXPECT_EQ(r.state(), State::kMaster);
  EXPECT_EQ(r.nextDeadline(), now + 130);  // Adver_Timer restarts from the answer
  // Every one is answered (a parting advert may follow right after the peer's regular one).
  EXPECT_ACTIONS(r.receive(now + 31, advert(100), kIpB), SendAdvert{150}, SendGratuitousArp{});
  EXPECT_EQ(r.nextDeadline(), now + 131);
}

TEST(VrrpState, MasterAnswersPriorityZeroWithAnAdvert) {
  int64_t now = 0;
  VrrpRouter r = startedMaster(config(150), now);
  EXPECT_ACTIONS(r.receive(now + 30, advert(0), kIpB), SendAdvert{150});
  EXPECT_EQ(r.nextDeadline(), now + 130);
  EXPECT_EQ(r.state(), State::kMaster);
}

TEST(VrrpState, MasterIgnoresItsOwnAdvert) {
  int64_t now = 0;
  VrrpRouter r = startedMaster(config(150, kIpA), now);
  EXPECT_TRUE(r.receive(now + 1, advert(150), kIpA).empty());
  EXPECT_TRUE(r.receive(now + 1, advert(200), kIpA).empty());
  EXPECT_EQ(r.state(), State::kMaster);
}

TEST(VrrpState, ShutdownOfMasterSendsPriorityZeroAndRemovesVips) {
  int64_t now = 0;
  VrrpRouter r = startedMaster(config(150), now);
  EXPECT_ACTIONS(r.shutdown(now + 5), Transition{State::kMaster, State::kInit, Reason::kShutdown},
                 SendAdvert{0}, RemoveVips{});
  EXPECT_EQ(r.state(), State::kInit);
  EXPECT_FALSE(r.nextDeadline());
  EXPECT_TRUE(r.tick(now + 10000).empty());
  // And it can start again.
  EXPECT_ACTIONS(r.startup(now + 20000), Transition{State::kInit, State::kBackup, Reason::kStartup},
                 RemoveVips{});
}

TEST(VrrpState, ShutdownOfBackupIsSilent) {
  VrrpRouter r(config(150));
  r.startup(0);
  EXPECT_ACTIONS(r.shutdown(10), Transition{State::kBackup, State::kInit, Reason::kShutdown});
  EXPECT_TRUE(r.tick(1000).empty());
}

// ---- Owner (priority 255) ----

TEST(VrrpState, OwnerGoesMasterAtOnce) {
  VrrpRouter r(config(255));
  EXPECT_ACTIONS(r.startup(7), Transition{State::kInit, State::kMaster, Reason::kOwner},
                 SendAdvert{255}, AddVips{}, SendGratuitousArp{});
  EXPECT_EQ(r.nextDeadline(), 107);
}

TEST(VrrpState, OwnerNeverStepsDown) {
  VrrpRouter r(config(255, kIpA));
  r.startup(0);
  EXPECT_TRUE(r.receive(10, advert(255), kIpB).empty());  // a second owner: misconfiguration
  EXPECT_EQ(r.state(), State::kMaster);
  EXPECT_ACTIONS(r.receive(20, advert(200), kIpB), SendAdvert{255}, SendGratuitousArp{});
}

// ---- Preemption ----

TEST(VrrpState, PreemptOnTakesOverFromLowerMaster) {
  VrrpRouter r(config(200, kIpA));
  r.startup(0);
  for (int64_t t : {50, 150, 250}) {
    EXPECT_TRUE(r.receive(t, advert(100), kIpB).empty());  // discarded (§6.4.2)
    EXPECT_TRUE(r.tick(t).empty());
  }
  EXPECT_EQ(r.masterIp(), 0u);
  // Nothing was accepted, so the timer set at startup runs out: 300 + 22 ms.
  EXPECT_EQ(r.nextDeadline(), 322);
  EXPECT_TRUE(r.tick(321).empty());
  EXPECT_EQ(r.tick(322), becomeMaster(State::kBackup, Reason::kPreempt, 200));
}

TEST(VrrpState, PreemptOffNeverTakesOverFromLiveMaster) {
  VrrpRouter r(config(200, kIpA, /*preempt=*/false));
  r.startup(0);
  for (int64_t t = 50; t < 20000; t += 100) {
    r.receive(t, advert(100), kIpB);
    EXPECT_TRUE(r.tick(t + 1).empty());
  }
  EXPECT_EQ(r.state(), State::kBackup);
  EXPECT_EQ(r.masterIp(), kIpB);
  EXPECT_EQ(r.tick(19950 + 322), becomeMaster(State::kBackup, Reason::kMasterDown, 200));
}

TEST(VrrpState, PreemptDelayHoldsPreemptionAfterStartup) {
  VrrpRouter r(config(200, kIpA, true, /*preempt_delay_ms=*/1000));
  r.startup(0);
  // Within the delay the lower master's adverts are accepted (up to 950), after it discarded.
  for (int64_t t = 50; t <= 1250; t += 100) {
    EXPECT_TRUE(r.receive(t, advert(100), kIpB).empty());
    EXPECT_TRUE(r.tick(t).empty()) << t;
    EXPECT_EQ(r.nextDeadline(), std::min<int64_t>(t, 950) + 322) << t;
  }
  EXPECT_TRUE(r.tick(1271).empty());
  EXPECT_EQ(r.tick(1272), becomeMaster(State::kBackup, Reason::kPreempt, 200));
}

TEST(VrrpState, PreemptDelayRestartsWhenLeavingFault) {
  VrrpRouter r(config(200, kIpA, true, 1000));
  r.startup(0);
  r.setFault(true, 5000);
  r.setFault(false, 6000);
  r.receive(6500, advert(100), kIpB);
  EXPECT_EQ(r.masterIp(), kIpB);  // accepted: within 1 s of leaving Fault
  EXPECT_EQ(r.nextDeadline(), 6500 + 322);
}

// ---- Fault ----

TEST(VrrpState, FaultRemovesVipsAndSilencesMaster) {
  int64_t now = 0;
  VrrpRouter r = startedMaster(config(150), now);
  EXPECT_ACTIONS(r.setFault(true, now + 10),
                 Transition{State::kMaster, State::kFault, Reason::kFault}, RemoveVips{});
  EXPECT_FALSE(r.nextDeadline());
  EXPECT_TRUE(r.tick(now + 10000).empty());
  EXPECT_TRUE(r.receive(now + 10001, advert(100), kIpB).empty());
  EXPECT_TRUE(r.setFault(true, now + 10002).empty());
  EXPECT_ACTIONS(r.setFault(false, now + 20000),
                 Transition{State::kFault, State::kBackup, Reason::kFaultCleared}, RemoveVips{});
  EXPECT_EQ(r.nextDeadline(), now + 20000 + 342);
  EXPECT_EQ(r.tick(now + 20342), becomeMaster(State::kBackup, Reason::kMasterDown, 150));
}

TEST(VrrpState, FaultFromBackupAndShutdownFromFault) {
  VrrpRouter r(config(150));
  r.startup(0);
  EXPECT_ACTIONS(r.setFault(true, 10), Transition{State::kBackup, State::kFault, Reason::kFault},
                 RemoveVips{});
  EXPECT_TRUE(r.tick(1000).empty());
  EXPECT_ACTIONS(r.shutdown(1001), Transition{State::kFault, State::kInit, Reason::kShutdown});
}

TEST(VrrpState, FaultBeforeStartupStartsInFault) {
  VrrpRouter r(config(150));
  EXPECT_TRUE(r.setFault(true, 0).empty());
  EXPECT_ACTIONS(r.startup(5), Transition{State::kInit, State::kFault, Reason::kFault},
                 RemoveVips{});
  EXPECT_ACTIONS(r.setFault(false, 50),
                 Transition{State::kFault, State::kBackup, Reason::kFaultCleared}, RemoveVips{});
}

TEST(VrrpState, OwnerLeavesFaultAsMaster) {
  VrrpRouter r(config(255));
  r.startup(0);
  r.setFault(true, 10);
  EXPECT_EQ(r.setFault(false, 20), becomeMaster(State::kFault, Reason::kFaultCleared, 255));
}

// ---- Tracking (effective priority) ----

TEST(VrrpState, PriorityChangeOnMasterIsAdvertisedAtOnce) {
  int64_t now = 0;
  VrrpRouter r = startedMaster(config(150), now);
  EXPECT_ACTIONS(r.setPriority(90, now + 10), SendAdvert{90});
  EXPECT_EQ(r.priority(), 90);
  EXPECT_EQ(r.nextDeadline(), now + 110);
  EXPECT_TRUE(r.setPriority(90, now + 20).empty());
  EXPECT_ACTIONS(r.tick(now + 110), SendAdvert{90});
  EXPECT_ACTIONS(r.setPriority(0, now + 120), SendAdvert{1});  // 0 means stopping: never sent
}

TEST(VrrpState, PriorityChangeOnBackupAppliesFromTheNextAdvert) {
  VrrpRouter r(config(150));
  r.startup(0);
  EXPECT_TRUE(r.setPriority(100, 10).empty());
  EXPECT_EQ(r.nextDeadline(), 342);  // running timer unchanged
  r.receive(100, advert(200), kIpB);
  EXPECT_EQ(r.nextDeadline(), 100 + 361);
}

TEST(VrrpState, BackupRaisedToOwnerTakesOverAtOnce) {
  VrrpRouter r(config(150));
  r.startup(0);
  r.receive(100, advert(200), kIpB);
  EXPECT_EQ(r.setPriority(255, 150), becomeMaster(State::kBackup, Reason::kOwner, 255));
}

TEST(VrrpStateDeathTest, ConfigOutOfRangeAborts) {
  EXPECT_DEATH(VrrpRouter{config(0)}, "");  // 0 is only for a stopping master
  EXPECT_DEATH(VrrpRouter{config(100, kIpA, true, 0, 0)}, "");
  EXPECT_DEATH(VrrpRouter{config(100, kIpA, true, -1)}, "");
  VrrpConfig c = config(100);
  c.vrid = 0;
  EXPECT_DEATH(VrrpRouter{c}, "");
}

TEST(VrrpState, NamesAndStrings) {
  EXPECT_STREQ(stateName(State::kMaster), "master");
  EXPECT_STREQ(stateName(State::kFault), "fault");
  EXPECT_STREQ(reasonName(Reason::kMasterStopped), "master_stopped");
  EXPECT_STREQ(reasonName(Reason::kPreempt), "preempt");
  EXPECT_EQ(toString(Transition{State::kBackup, State::kMaster, Reason::kMasterDown}),
            "transition backup->master (master_down)");
  EXPECT_EQ(toString(SendAdvert{0}), "send_advert priority 0");
}

// ---- Several routers on a simulated wire ----

// Routers exchanging real encoded packets with a configurable one-way latency. A crashed node
// neither ticks nor hears anything; a cut link drops packets both ways.
class Wire {
 public:
  struct Node {
    std::unique_ptr<VrrpRouter> router;
    VrrpConfig config;
    bool alive = true;
    bool has_vips = false;
    int garps = 0;
    std::vector<Transition> transitions;
  };

  explicit Wire(int64_t latency_ms = 1, uint64_t seed = 1) : latency_(latency_ms), rng_(seed) {}

  size_t add(const VrrpConfig& c) {
    nodes_.push_back(Node{std::make_unique<VrrpRouter>(c), c});
    return nodes_.size() - 1;
  }
  void setJitter(int64_t max_ms) { jitter_ = max_ms; }

  void startup(size_t i) { apply(i, node(i).startup(now_)); }
  void shutdown(size_t i) { apply(i, node(i).shutdown(now_)); }
  void setFault(size_t i, bool f) { apply(i, node(i).setFault(f, now_)); }
  void setPriority(size_t i, uint8_t p) { apply(i, node(i).setPriority(p, now_)); }
  void crash(size_t i) { nodes_[i].alive = false; }  // kill -9 / host death: silence
  void restart(size_t i) {                           // a new process: fresh state machine
    nodes_[i].alive = true;
    nodes_[i].router = std::make_unique<VrrpRouter>(nodes_[i].config);
    startup(i);
  }
  void cut(size_t a, size_t b) { cut_.insert({std::min(a, b), std::max(a, b)}); }
  void heal() { cut_.clear(); }

  // Advances simulated time to `until`, jumping from event to event (timers and deliveries).
  void runUntil(int64_t until) {
    while (true) {
      int64_t next = until;
      for (const Packet& p : flight_) next = std::min(next, p.at);
      for (const Node& n : nodes_) {
        if (auto d = n.router->nextDeadline(); n.alive && d) next = std::min(next, *d);
      }
      if (next > until) break;
      now_ = std::max(now_, next);
      deliver();
      for (size_t i = 0; i < nodes_.size(); ++i) {
        if (nodes_[i].alive) apply(i, nodes_[i].router->tick(now_));
      }
      checkVipsFollowState();
      if (next == until) break;
    }
    now_ = until;
  }
  void runFor(int64_t ms) { runUntil(now_ + ms); }

  int64_t now() const { return now_; }
  VrrpRouter& node(size_t i) { return *nodes_[i].router; }
  const Node& info(size_t i) const { return nodes_[i]; }
  std::vector<size_t> masters() const {
    std::vector<size_t> out;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i].alive && nodes_[i].router->state() == State::kMaster) out.push_back(i);
    }
    return out;
  }
  size_t vipHolders() const {
    size_t n = 0;
    for (const Node& node : nodes_) n += node.alive && node.has_vips;
    return n;
  }
  // Time at which the set of masters last changed to exactly {i}.
  int64_t becameSoleMasterAt() const { return sole_since_; }

 private:
  struct Packet {
    int64_t at;
    size_t from;
    size_t to;
    std::vector<uint8_t> bytes;
  };

  void apply(size_t i, const Actions& actions) {
    Node& n = nodes_[i];
    for (const Action& a : actions) {
      if (auto* send = std::get_if<SendAdvert>(&a)) {
        const Advert adv{kVrid, send->priority, n.config.advert_interval_cs, {kVip}};
        const auto bytes = encode(adv, n.config.own_ip, kVrrpMulticast);
        for (size_t j = 0; j < nodes_.size(); ++j) {
          if (j == i || cut_.count({std::min(i, j), std::max(i, j)})) continue;
          const int64_t delay = latency_ + (jitter_ ? int64_t(rng_() % (jitter_ + 1)) : 0);
          flight_.push_back(Packet{now_ + delay, i, j, bytes});
        }
      } else if (std::holds_alternative<AddVips>(a)) {
        n.has_vips = true;
      } else if (std::holds_alternative<RemoveVips>(a)) {
        n.has_vips = false;
      } else if (std::holds_alternative<SendGratuitousArp>(a)) {
        ++n.garps;
      } else if (auto* t = std::get_if<Transition>(&a)) {
        n.transitions.push_back(*t);
      }
    }
    const auto m = masters();
    const bool sole = m.size() == 1;
    if (sole && (!was_sole_ || m[0] != sole_node_)) {
      sole_since_ = now_;
      sole_node_ = m[0];
    }
    was_sole_ = sole;
  }

  void deliver() {
    std::vector<Packet> due;
    auto it = std::stable_partition(flight_.begin(), flight_.end(),
                                    [&](const Packet& p) { return p.at > now_; });
    due.assign(std::make_move_iterator(it), std::make_move_iterator(flight_.end()));
    flight_.erase(it, flight_.end());
    for (const Packet& p : due) {
      if (!nodes_[p.to].alive || cut_.count({std::min(p.from, p.to), std::max(p.from, p.to)})) {
        continue;
      }
      const uint32_t src = nodes_[p.from].config.own_ip;
      auto adv = decode(p.bytes, src, kVrrpMulticast);
      ASSERT_TRUE(adv) << adv.error().message;
      apply(p.to, nodes_[p.to].router->receive(now_, *adv, src));
    }
  }

  void checkVipsFollowState() {
    for (const Node& n : nodes_) {
      if (!n.alive) continue;
      EXPECT_EQ(n.has_vips, n.router->state() == State::kMaster)
          << "VIPs out of step with state " << stateName(n.router->state()) << " at " << now_;
    }
  }

  int64_t latency_;
  int64_t jitter_ = 0;
  std::mt19937_64 rng_;
  int64_t now_ = 0;
  std::vector<Node> nodes_;
  std::vector<Packet> flight_;
  std::set<std::pair<size_t, size_t>> cut_;
  bool was_sole_ = false;
  size_t sole_node_ = 0;
  int64_t sole_since_ = -1;
};

void expectSoleMaster(const Wire& w, size_t who) {
  const auto m = w.masters();
  ASSERT_EQ(m.size(), 1u) << "at " << w.now();
  EXPECT_EQ(m[0], who) << "at " << w.now();
  EXPECT_EQ(w.vipHolders(), 1u);
}

TEST(VrrpWire, ColdStartElectsHigherPriorityWithoutOverlap) {
  Wire w;
  const size_t a = w.add(config(150, kIpA));
  const size_t b = w.add(config(100, kIpB));
  w.startup(a);
  w.startup(b);
  w.runUntil(342);
  expectSoleMaster(w, a);
  w.runFor(10000);
  expectSoleMaster(w, a);
  EXPECT_EQ(w.info(b).transitions.size(), 1u);  // only init -> backup: it never flapped
}

TEST(VrrpWire, EqualPrioritiesHigherAddressWins) {
  Wire w;
  const size_t a = w.add(config(100, kIpA));
  const size_t b = w.add(config(100, kIpB));
  w.startup(a);
  w.startup(b);
  w.runUntil(361);
  EXPECT_EQ(w.masters().size(), 2u);  // both timers ran out at once
  w.runUntil(362);                    // the adverts crossed
  expectSoleMaster(w, b);
  w.runFor(10000);
  expectSoleMaster(w, b);
}

TEST(VrrpWire, HostDeathFailsOverAfterMasterDownInterval) {
  Wire w;
  const size_t a = w.add(config(150, kIpA));
  const size_t b = w.add(config(100, kIpB));
  w.startup(a);
  w.startup(b);
  w.runUntil(2000);
  w.crash(a);  // A's last advert left at 1942, reached B at 1943
  w.runUntil(1943 + 360);
  EXPECT_TRUE(w.masters().empty());
  w.runUntil(1943 + 361);
  expectSoleMaster(w, b);
  // A comes back and preempts B.
  w.restart(a);
  w.runFor(2000);
  expectSoleMaster(w, a);
}

TEST(VrrpWire, GracefulStopFailsOverInSkewTime) {
  Wire w;
  const size_t a = w.add(config(150, kIpA));
  const size_t b = w.add(config(100, kIpB));
  w.startup(a);
  w.startup(b);
  w.runUntil(2000);
  w.shutdown(a);
  w.runUntil(2000 + 1 + 60);
  EXPECT_TRUE(w.masters().empty());
  EXPECT_EQ(w.vipHolders(), 0u);
  w.runUntil(2000 + 1 + 61);  // 1 ms on the wire + Skew_Time(100) = 62 ms, as keepalived
  expectSoleMaster(w, b);
  EXPECT_EQ(w.info(b).transitions.back().reason, Reason::kMasterStopped);
}

TEST(VrrpWire, HealedPartitionConvergesWithinOneAdvert) {
  // Heal at every offset within the advert period, so both "who speaks first" cases occur.
  for (int64_t offset = 0; offset < 100; offset += 7) {
    Wire w;
    const size_t a = w.add(config(150, kIpA));
    const size_t b = w.add(config(100, kIpB));
    w.startup(a);
    w.startup(b);
    w.runUntil(1000);
    w.cut(a, b);
    w.runUntil(3000);
    EXPECT_EQ(w.masters().size(), 2u);  // split brain while partitioned, as it must be
    const int garps_before = w.info(a).garps;
    w.runUntil(5000 + offset);
    w.heal();
    const int64_t healed_at = w.now();
    w.runFor(150);
    expectSoleMaster(w, a);
    // B heard A's scheduled advert or A answered B's at once: one advert period plus the wire.
    EXPECT_LE(w.becameSoleMasterAt() - healed_at, 100 + 2) << "offset " << offset;
    // B held the VIPs during the partition, so A must take the clients back whoever spoke first
    // (by answering B's advert, or B's parting advert when B heard A first).
    EXPECT_GT(w.info(a).garps, garps_before) << "offset " << offset;
    w.runFor(10000);
    expectSoleMaster(w, a);
  }
}

TEST(VrrpWire, PreemptOffKeepsTheIncumbent) {
  Wire w;
  const size_t a = w.add(config(200, kIpA, /*preempt=*/false));
  const size_t b = w.add(config(100, kIpB));
  w.startup(b);
  w.runUntil(1000);
  expectSoleMaster(w, b);
  w.startup(a);
  w.runFor(10000);
  expectSoleMaster(w, b);
  w.crash(b);
  w.runFor(1000);
  expectSoleMaster(w, a);
}

TEST(VrrpWire, PreemptDelayDefersTakeover) {
  Wire w;
  const size_t a = w.add(config(200, kIpA, true, 3000));
  const size_t b = w.add(config(100, kIpB));
  w.startup(b);
  w.runUntil(1000);
  w.startup(a);
  w.runUntil(1000 + 3000);
  expectSoleMaster(w, b);
  w.runFor(400);  // after the delay: one master-down interval (322 ms) later
  expectSoleMaster(w, a);
}

TEST(VrrpWire, TrackingLowersPriorityAndPeerTakesOver) {
  Wire w;
  const size_t a = w.add(config(150, kIpA));
  const size_t b = w.add(config(100, kIpB));
  w.startup(a);
  w.startup(b);
  w.runUntil(2000);
  w.setPriority(a, 90);  // e.g. no_healthy_backends: -60
  w.runFor(400);         // B discards A's 90s and takes over after its master-down interval
  expectSoleMaster(w, b);
  EXPECT_EQ(w.info(b).transitions.back().reason, Reason::kPreempt);
  w.setPriority(a, 150);  // healthy again: A preempts back
  w.runFor(400);
  expectSoleMaster(w, a);
}

TEST(VrrpWire, FaultOnMasterFailsOver) {
  Wire w;
  const size_t a = w.add(config(150, kIpA));
  const size_t b = w.add(config(100, kIpB));
  w.startup(a);
  w.startup(b);
  w.runUntil(2000);
  w.setFault(a, true);
  EXPECT_EQ(w.vipHolders(), 0u);
  w.runFor(400);
  expectSoleMaster(w, b);
  w.setFault(a, false);
  w.runFor(400);  // A restarts as backup, discards B's adverts, preempts after 342 ms
  expectSoleMaster(w, a);
}

TEST(VrrpWire, OwnerTakesOverAtOnce) {
  Wire w;
  const size_t a = w.add(config(255, kIpA));
  const size_t b = w.add(config(100, kIpB));
  w.startup(b);
  w.runUntil(1000);
  w.startup(a);
  w.runFor(2);
  expectSoleMaster(w, a);
}

// Random events on three routers (all preempting, distinct or equal priorities), with jittered
// latency. After every event and a quiet period with the network whole: exactly one master among
// the routers that are running and not in fault, it holds the VIPs alone, and it has the highest
// effective priority among them.
TEST(VrrpWire, RandomScenariosConvergeToOneMaster) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    Wire w(1, seed);
    w.setJitter(3);
    std::mt19937_64 rng(seed);
    const uint8_t base[3] = {150, static_cast<uint8_t>(seed % 2 ? 100 : 150), 120};
    const uint32_t ips[3] = {kIpA, kIpB, kIpC};
    uint8_t prio[3];
    bool running[3] = {true, true, true};
    bool fault[3] = {false, false, false};
    for (size_t i = 0; i < 3; ++i) {
      prio[i] = base[i];
      w.add(config(base[i], ips[i], true, 0, static_cast<uint16_t>(i == 2 ? 5 : 10)));
      w.startup(i);
    }
    for (int step = 0; step < 40; ++step) {
      const size_t i = rng() % 3;
      const size_t j = (i + 1 + rng() % 2) % 3;
      switch (rng() % 7) {
        case 0:
          if (running[i]) {
            w.crash(i);
            running[i] = false;
          } else {
            w.restart(i);
            running[i] = true;
            prio[i] = base[i];
            fault[i] = false;
          }
          break;
        case 1:
          if (running[i]) {
            w.shutdown(i);
            w.startup(i);
            w.setFault(i, fault[i]);
          }
          break;
        case 2:
          if (running[i]) w.setFault(i, fault[i] = !fault[i]);
          break;
        case 3:
          if (running[i]) w.setPriority(i, prio[i] = static_cast<uint8_t>(50 + rng() % 150));
          break;
        default: {  // a partition that heals after a while
          w.cut(i, j);
          w.runFor(static_cast<int64_t>(rng() % 3000));
          w.heal();
          break;
        }
      }
      w.runFor(static_cast<int64_t>(rng() % 500));
      w.heal();
      w.runFor(1500);  // longer than any master-down interval here (<= 400 ms) plus answers
      std::vector<size_t> eligible;
      uint8_t best = 0;
      for (size_t k = 0; k < 3; ++k) {
        if (running[k] && !fault[k]) {
          eligible.push_back(k);
          best = std::max(best, prio[k]);
        }
      }
      const auto m = w.masters();
      if (eligible.empty()) {
        EXPECT_TRUE(m.empty()) << "seed " << seed << " step " << step;
        continue;
      }
      ASSERT_EQ(m.size(), 1u) << "seed " << seed << " step " << step;
      EXPECT_EQ(w.vipHolders(), 1u) << "seed " << seed << " step " << step;
      EXPECT_EQ(w.node(m[0]).priority(), best) << "seed " << seed << " step " << step;
      // And it stays that way.
      const int64_t since = w.becameSoleMasterAt();
      w.runFor(3000);
      EXPECT_EQ(w.becameSoleMasterAt(), since) << "flapped, seed " << seed << " step " << step;
    }
  }
}

}  // namespace
}  // namespace tandem::ha
