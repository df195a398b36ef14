#include "health/manager.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>

#include "../support/listening_socket.h"

namespace tandem::health {
namespace {

using namespace std::chrono_literals;

using tandem::testing::ListeningSocket;

// Collects published views; waits for one that satisfies a condition (bounded).
struct Views {
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<const HealthView> last;
  void put(std::shared_ptr<const HealthView> v) {
    std::lock_guard<std::mutex> g(mu);
    last = std::move(v);
    cv.notify_all();
  }
  bool waitFor(const std::function<bool(const HealthView&)>& pred,
               std::chrono::milliseconds limit = 3s) {
    std::unique_lock<std::mutex> g(mu);
    return cv.wait_for(g, limit, [&] { return last && pred(*last); });
  }
};

config::Config makeConfig(uint16_t up_port, uint16_t down_port) {
  config::Config c;
  config::Backend b;
  b.name = "app";
  b.servers.push_back({"up", {"127.0.0.1", up_port}, 1, false, 0});
  b.servers.push_back({"down", {"127.0.0.1", down_port}, 1, false, 0});
  c.backends.push_back(b);
  return c;
}

TEST(HealthManager, ActiveTcpChecksTakeARefusingServerOutAndAdminStatesPublish) {
  ListeningSocket good, bad;
  uint16_t bad_port = bad.port;
  bad.close();  // connections to it are refused now
  auto cfg = makeConfig(good.port, bad_port);
  auto& active = cfg.backends[0].active;
  active.enabled = true;
  active.type = config::CheckType::kTcp;
  active.interval = 50ms;
  active.timeout = 40ms;
  active.rise = 1;
  active.fall = 1;
  active.initial_up = true;
  EventLog events;
  HealthManager m(std::make_shared<const config::Config>(cfg), events);
  EXPECT_TRUE(m.current()->backends[0].servers[1].healthy);  // initial: up
  Views views;
  m.start([&](std::shared_ptr<const HealthView> v) { views.put(std::move(v)); });
  ASSERT_TRUE(views.waitFor([](const HealthView& v) {
    return v.backends[0].servers[0].healthy && !v.backends[0].servers[1].healthy;
  }));
  ASSERT_TRUE(m.setAdminState("app", "up", AdminState::kDraining));
  EXPECT_FALSE(m.setAdminState("app", "nope", AdminState::kDraining));
  ASSERT_TRUE(views.waitFor([](const HealthView& v) { return v.backends[0].servers[0].draining; }));
  m.stop();
  bool saw_down = false;
  for (const Event& e : events.recent()) saw_down |= e.kind == "server_down" && e.server == "down";
  EXPECT_TRUE(saw_down);
}

TEST(HealthManager, InitialDownServerNeedsOnePassedCheck) {
  ListeningSocket good, other;
  auto cfg = makeConfig(good.port, other.port);
  auto& active = cfg.backends[0].active;
  active.enabled = true;
  active.interval = 50ms;
  active.timeout = 40ms;
  active.rise = 5;  // the first verdict needs one pass, not `rise`
  active.initial_up = false;
  EventLog events;
  HealthManager m(std::make_shared<const config::Config>(cfg), events);
  EXPECT_FALSE(m.current()->backends[0].servers[0].healthy);
  Views views;
  m.start([&](std::shared_ptr<const HealthView> v) { views.put(std::move(v)); });
  EXPECT_TRUE(views.waitFor(
      [](const HealthView& v) {
        return v.backends[0].servers[0].healthy && v.backends[0].servers[1].healthy;
      },
      1s));
}

TEST(HealthManager, PassiveEjectionWithoutActiveChecksEndsAfterItsTime) {
  ListeningSocket a, b;
  auto cfg = makeConfig(a.port, b.port);
  auto& passive = cfg.backends[0].passive;
  passive.enabled = true;
  passive.consecutive_failures = 3;
  passive.base_ejection = 200ms;
  passive.max_ejection_percent = 50;
  cfg.backends[0].slow_start = 1s;
  EventLog events;
  HealthManager m(std::make_shared<const config::Config>(cfg), events);
  Views views;
  m.start([&](std::shared_ptr<const HealthView> v) { views.put(std::move(v)); });
  auto t0 = std::chrono::steady_clock::now();
  m.reportFailureStreak(0, 1);
  ASSERT_TRUE(views.waitFor([](const HealthView& v) { return !v.backends[0].servers[1].healthy; }));
  m.reportFailureStreak(0, 0);  // a second ejection would exceed 50% of two servers
  ASSERT_TRUE(views.waitFor([](const HealthView& v) {
    return v.backends[0].servers[1].healthy && v.backends[0].servers[1].weight_permille < 1000;
  }));
  auto back_after = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(back_after, 180ms);  // ejection time (coarse clock tolerance)
  EXPECT_TRUE(m.current()->backends[0].servers[0].healthy);
  // Slow start: the returning server ramps up to full weight.
  EXPECT_TRUE(views.waitFor(
      [](const HealthView& v) { return v.backends[0].servers[1].weight_permille == 1000; }, 3s));
}

}  // namespace
}  // namespace tandem::health

namespace tandem::health {
namespace {

TEST(HealthManager, VerdictsOfUnchangedServersSurviveAReload) {
  ListeningSocket a, b;
  auto cfg = makeConfig(a.port, b.port);
  cfg.backends[0].active.enabled = true;
  cfg.backends[0].active.initial_up = true;
  EventLog events;
  std::vector<ServerMemo> carry = {
      {"app", "up", "127.0.0.1:" + std::to_string(a.port), true, false, false,
       AdminState::kDraining},
      // Same name, different address: a new server, which starts from `initial`.
      {"app", "down", "127.0.0.1:1", true, false, true, AdminState::kDisabled},
  };
  HealthManager m(std::make_shared<const config::Config>(cfg), events, carry);
  auto v = m.current();
  EXPECT_FALSE(v->backends[0].servers[0].healthy);  // carried: it was down
  EXPECT_TRUE(v->backends[0].servers[0].draining);  // carried admin state
  EXPECT_TRUE(v->backends[0].servers[1].healthy);   // not matched: initial up
  EXPECT_FALSE(v->backends[0].servers[1].disabled);
  auto memo = m.memo();
  ASSERT_EQ(memo.size(), 2u);
  EXPECT_EQ(memo[0].server, "up");
  EXPECT_FALSE(memo[0].up);
  EXPECT_EQ(memo[0].admin, AdminState::kDraining);
}

// An admin action must not fall between the generations of a config reload: one sent to the old
// manager after its loop stopped is carried in the memo, one sent after the hand-over is
// forwarded to the successor (the admin API may still hold the old generation).
TEST(HealthManager, AdminActionsDuringAReloadReachTheNextGeneration) {
  ListeningSocket a, b;
  auto cfg = std::make_shared<const config::Config>(makeConfig(a.port, b.port));
  EventLog events;
  auto old_m = std::make_shared<HealthManager>(cfg, events);
  old_m->start([](std::shared_ptr<const HealthView>) {});
  // Posted just before the stop: the loop applies them in its last round (they used to be
  // dropped when they shared that round with the stop request).
  ASSERT_TRUE(old_m->setAdminState("app", "down", AdminState::kDraining));
  ASSERT_TRUE(old_m->setWeight("app", "down", 5));
  old_m->stop();  // the reload has begun: the old loop is gone
  ASSERT_TRUE(old_m->setAdminState("app", "up", AdminState::kDraining));
  ASSERT_TRUE(old_m->setWeight("app", "up", 7));

  auto next = old_m->handOver([&](const std::vector<ServerMemo>& carry) {
    return std::make_shared<HealthManager>(cfg, events, carry);
  });
  ASSERT_TRUE(next);
  auto v = next->current();
  EXPECT_TRUE(v->backends[0].servers[0].draining);
  EXPECT_EQ(v->backends[0].servers[0].weight, 7);
  EXPECT_TRUE(v->backends[0].servers[1].draining);
  EXPECT_EQ(v->backends[0].servers[1].weight, 5);

  // After the hand-over: forwarded, and answered by the successor's config.
  EXPECT_TRUE(old_m->setAdminState("app", "down", AdminState::kDisabled));
  EXPECT_EQ(next->adminStates()[0][1], AdminState::kDisabled);
  EXPECT_FALSE(old_m->setAdminState("app", "nonexistent", AdminState::kDisabled));
  Views views;
  next->start([&](std::shared_ptr<const HealthView> view) { views.put(std::move(view)); });
  EXPECT_TRUE(old_m->setWeight("app", "down", 3));
  EXPECT_TRUE(views.waitFor([](const HealthView& hv) {
    const auto& sv = hv.backends[0].servers[1];
    return sv.disabled && sv.weight == 3;
  })) << "the forwarded actions never reached the successor's view";
  next->stop();
}

}  // namespace
}  // namespace tandem::health
