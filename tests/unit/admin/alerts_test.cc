#include "admin/alerts.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace tandem::admin {
namespace {

constexpr int64_t kUnixBase = 1'795'509'000'000;  // 2026-11-24T08:30:00Z

config::AlertRules downRulesOnly() {
  config::AlertRules r;
  r.server_down = true;
  r.backend_down = true;
  return r;
}

BackendSample backend(const std::string& name, std::vector<ServerSample> servers) {
  BackendSample b;
  b.name = name;
  b.servers = std::move(servers);
  return b;
}

// Cumulative traffic of one backend, advanced step by step like the real counters.
struct Traffic {
  BackendSample sample = backend("app", {{"a1", true, false}});

  void add(uint64_t responses, uint64_t errors, uint64_t latency_us = 1'000) {
    sample.responses_total += responses;
    sample.errors_total += errors;
    size_t i = 0;
    while (i < kLatencyBoundsUs.size() && latency_us > kLatencyBoundsUs[i]) ++i;
    sample.duration.buckets[i] += responses;
    sample.duration.sum_us += responses * latency_us;
  }
};

// Evaluates at t = step * 1000 (monotonic) and kUnixBase + t (wall clock).
std::vector<Alert> at(AlertEngine& e, int64_t step, const std::vector<BackendSample>& b) {
  return e.evaluate(step * 1000, kUnixBase + step * 1000, b);
}

TEST(AlertEngine, ServerDownFiresOnceStaysSilentAndResolvesOnce) {
  AlertEngine e(downRulesOnly());
  auto healthy = backend("app", {{"a1", true, false}, {"a2", true, false}});
  auto a1_down = backend("app", {{"a1", false, false}, {"a2", true, false}});
  EXPECT_TRUE(at(e, 0, {healthy}).empty());

  auto fired = at(e, 1, {a1_down});
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_EQ(fired[0].rule, "server_down");
  EXPECT_EQ(fired[0].subject, "app/a1");
  EXPECT_EQ(fired[0].severity, "critical");
  EXPECT_EQ(fired[0].message, "server app/a1 is down (1 of 2 servers in app healthy)");
  EXPECT_EQ(fired[0].value, 1);
  EXPECT_EQ(fired[0].fired_unix_ms, kUnixBase + 1000);
  EXPECT_TRUE(fired[0].firing());

  for (int step = 2; step < 10; ++step) EXPECT_TRUE(at(e, step, {a1_down}).empty()) << step;
  ASSERT_EQ(e.active().size(), 1u);
  EXPECT_EQ(e.active()[0].id, fired[0].id);

  auto resolved = at(e, 10, {healthy});
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].id, fired[0].id);
  EXPECT_EQ(resolved[0].resolved_unix_ms, kUnixBase + 10'000);
  EXPECT_EQ(resolved[0].fired_unix_ms, kUnixBase + 1000);
  EXPECT_FALSE(resolved[0].firing());
  EXPECT_TRUE(at(e, 11, {healthy}).empty());
  EXPECT_TRUE(e.active().empty());

  // A second outage is a new alert.
  auto again = at(e, 12, {a1_down});
  ASSERT_EQ(again.size(), 1u);
  EXPECT_GT(again[0].id, fired[0].id);
}

TEST(AlertEngine, BackendDownWhenNoServerIsHealthy) {
  AlertEngine e(downRulesOnly());
  auto all_down = backend("app", {{"a1", false, false}, {"a2", false, false}});
  auto changes = at(e, 0, {all_down});
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0].subject, "app/a1");
  EXPECT_EQ(changes[1].subject, "app/a2");
  EXPECT_EQ(changes[2].rule, "backend_down");
  EXPECT_EQ(changes[2].subject, "app");
  EXPECT_EQ(changes[2].severity, "critical");
  EXPECT_EQ(changes[2].value, 0);
  EXPECT_TRUE(at(e, 1, {all_down}).empty());

  auto one_back = backend("app", {{"a1", true, false}, {"a2", false, false}});
  changes = at(e, 2, {one_back});
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].subject, "app/a1");
  EXPECT_FALSE(changes[0].firing());
  EXPECT_EQ(changes[1].rule, "backend_down");
  EXPECT_FALSE(changes[1].firing());
  ASSERT_EQ(e.active().size(), 1u);
  EXPECT_EQ(e.active()[0].subject, "app/a2");

  // A backend without servers is not "down": there is nothing to be healthy.
  AlertEngine empty(downRulesOnly());
  EXPECT_TRUE(at(empty, 0, {backend("none", {})}).empty());
}

TEST(AlertEngine, DisabledServersNeverAlertAsDown) {
  AlertEngine e(downRulesOnly());
  // Disabled and unhealthy: no server_down; a1 keeps the backend up.
  EXPECT_TRUE(at(e, 0, {backend("app", {{"a1", true, false}, {"a2", false, true}})}).empty());

  // A firing server_down resolves when an admin disables (drains) the server.
  ASSERT_EQ(at(e, 1, {backend("app", {{"a1", false, false}, {"a2", true, false}})}).size(), 1u);
  auto changes = at(e, 2, {backend("app", {{"a1", false, true}, {"a2", true, false}})});
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].subject, "app/a1");
  EXPECT_FALSE(changes[0].firing());

  // Every server disabled: no server is down, but the backend cannot serve (documented choice).
  changes = at(e, 3, {backend("app", {{"a1", true, true}, {"a2", true, true}})});
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].rule, "backend_down");
}

TEST(AlertEngine, RemovedServersAndBackendsResolve) {
  config::AlertRules rules = downRulesOnly();
  rules.error_rate = {true, 0.05, std::chrono::seconds(2), 1};
  AlertEngine e(rules);
  Traffic app;
  app.sample.servers = {{"a1", false, false}, {"a2", true, false}};
  auto other = backend("other", {{"o1", false, false}});
  EXPECT_EQ(at(e, 0, {app.sample, other}).size(), 3u);  // app/a1, other/o1, backend_down other
  app.add(10, 10);
  EXPECT_TRUE(at(e, 1, {app.sample, other}).empty());  // error_rate: window not full yet
  app.add(10, 10);
  auto changes = at(e, 2, {app.sample, other});
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].rule, "error_rate");

  // a1 leaves the config: its alert resolves.
  app.sample.servers = {{"a2", true, false}};
  app.add(10, 10);
  changes = at(e, 3, {app.sample, other});
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].subject, "app/a1");
  EXPECT_FALSE(changes[0].firing());

  // Both backends leave: everything resolves, oldest first.
  changes = at(e, 4, {});
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0].subject, "other/o1");
  EXPECT_EQ(changes[1].rule, "backend_down");
  EXPECT_EQ(changes[2].rule, "error_rate");
  for (const Alert& a : changes) EXPECT_FALSE(a.firing());
  EXPECT_TRUE(e.active().empty());

  // A backend that comes back starts a fresh window: no verdict until it is full again.
  app.sample.servers = {{"a1", true, false}};
  app.add(10, 10);
  EXPECT_TRUE(at(e, 5, {app.sample}).empty());
  app.add(10, 10);
  EXPECT_TRUE(at(e, 6, {app.sample}).empty());
  app.add(10, 10);
  EXPECT_EQ(at(e, 7, {app.sample}).size(), 1u);
}

config::AlertRules errorRateRule(int64_t window_s, uint32_t min_requests) {
  config::AlertRules r;
  r.server_down = false;
  r.backend_down = false;
  r.error_rate = {true, 0.05, std::chrono::seconds(window_s), min_requests};
  return r;
}

TEST(AlertEngine, ErrorRateCountsOnlyTheTrailingWindow) {
  AlertEngine e(errorRateRule(10, 20));
  Traffic app;
  std::vector<std::pair<int, Alert>> seen;
  for (int step = 0; step <= 30; ++step) {
    if (step > 0) app.add(100, step == 12 ? 100 : 0);  // one second of errors, before t=12s
    for (Alert& a : at(e, step, {app.sample})) seen.emplace_back(step, a);
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, 12);
  EXPECT_EQ(seen[0].second.rule, "error_rate");
  EXPECT_EQ(seen[0].second.subject, "app");
  EXPECT_EQ(seen[0].second.severity, "warning");
  EXPECT_DOUBLE_EQ(seen[0].second.value, 0.1);
  EXPECT_EQ(seen[0].second.message,
            "backend app: 10% of 1000 responses were 5xx over 10s (threshold 5%)");
  // The baseline at t=22s is the sample taken at t=12s, just after the burst: it no longer counts.
  EXPECT_EQ(seen[1].first, 22);
  EXPECT_EQ(seen[1].second.id, seen[0].second.id);
  EXPECT_FALSE(seen[1].second.firing());
  // The resolved alert keeps what it fired with.
  EXPECT_EQ(seen[1].second.message, seen[0].second.message);
}

TEST(AlertEngine, NoVerdictUntilTheWindowIsFull) {
  AlertEngine e(errorRateRule(10, 20));
  Traffic app;
  for (int step = 0; step < 10; ++step) {
    if (step > 0) app.add(100, 100);
    EXPECT_TRUE(at(e, step, {app.sample}).empty()) << step;
  }
  app.add(100, 100);
  auto fired = at(e, 10, {app.sample});
  ASSERT_EQ(fired.size(), 1u);
  EXPECT_DOUBLE_EQ(fired[0].value, 1.0);
}

TEST(AlertEngine, MinRequestsGatesVerdictsButSilenceResolves) {
  AlertEngine e(errorRateRule(10, 20));
  Traffic app;
  // 1 response/s, all 5xx: 10 in the window is below min_requests.
  for (int step = 0; step <= 20; ++step) {
    if (step > 0) app.add(1, 1);
    EXPECT_TRUE(at(e, step, {app.sample}).empty()) << step;
  }
  // 100/s with half of them 5xx: fires as soon as the window holds enough responses.
  std::vector<std::pair<int, Alert>> seen;
  for (int step = 21; step <= 40; ++step) {
    app.add(100, 50);
    for (Alert& a : at(e, step, {app.sample})) seen.emplace_back(step, a);
  }
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].first, 21);
  // Then 1 clean response/s: once the busy period leaves the window there are too few responses
  // for a verdict, so the alert stays firing although none of them failed.
  for (int step = 41; step <= 60; ++step) {
    app.add(1, 0);
    EXPECT_TRUE(at(e, step, {app.sample}).empty()) << step;
  }
  EXPECT_EQ(e.active().size(), 1u);
  // No traffic at all: the alert resolves once the window is empty (baseline = the t=60s sample).
  for (int step = 61; step < 70; ++step) EXPECT_TRUE(at(e, step, {app.sample}).empty()) << step;
  auto resolved = at(e, 70, {app.sample});
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_FALSE(resolved[0].firing());
  EXPECT_TRUE(at(e, 71, {app.sample}).empty());
}

TEST(AlertEngine, CountersGoingBackwardsRestartTheWindow) {
  AlertEngine e(errorRateRule(3, 1));
  Traffic app;
  for (int step = 0; step <= 3; ++step) {
    if (step > 0) app.add(10, 10);
    at(e, step, {app.sample});
  }
  ASSERT_EQ(e.active().size(), 1u);
  Traffic restarted;  // counters back near zero
  for (int step = 4; step < 7; ++step) {
    restarted.add(10, 0);
    EXPECT_TRUE(at(e, step, {restarted.sample}).empty()) << step;  // no full window: no verdict
  }
  restarted.add(10, 0);
  auto resolved = at(e, 7, {restarted.sample});
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_FALSE(resolved[0].firing());
}

TEST(AlertEngine, P99LatencyOverTheWindow) {
  config::AlertRules rules;
  rules.server_down = rules.backend_down = false;
  rules.p99_latency = {true, 200, std::chrono::seconds(5), 20};
  AlertEngine e(rules);
  Traffic app;
  std::vector<std::pair<int, Alert>> seen;
  for (int step = 0; step <= 20; ++step) {
    if (step > 0) app.add(50, 0, step == 8 ? 800'000 : 4'000);  // one slow second before t=8s
    for (Alert& a : at(e, step, {app.sample})) seen.emplace_back(step, a);
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, 8);
  EXPECT_EQ(seen[0].second.rule, "p99_latency");
  EXPECT_EQ(seen[0].second.severity, "warning");
  // 50 of 250 requests in (500ms, 1s]: the p99 interpolates inside that bucket.
  EXPECT_GT(seen[0].second.value, 500);
  EXPECT_LE(seen[0].second.value, 1000);
  EXPECT_NE(seen[0].second.message.find("backend app: p99 latency "), std::string::npos);
  EXPECT_NE(seen[0].second.message.find("over 250 requests in 5s (threshold 200ms)"),
            std::string::npos)
      << seen[0].second.message;
  EXPECT_EQ(seen[1].first, 13);
  EXPECT_FALSE(seen[1].second.firing());
}

TEST(AlertEngine, P99LatencyNeedsMinRequests) {
  config::AlertRules rules;
  rules.server_down = rules.backend_down = false;
  rules.p99_latency = {true, 200, std::chrono::seconds(5), 20};
  AlertEngine e(rules);
  Traffic app;
  for (int step = 0; step <= 12; ++step) {
    if (step > 0) app.add(3, 0, 5'000'000);  // 15 slow requests per window
    EXPECT_TRUE(at(e, step, {app.sample}).empty()) << step;
  }
}

TEST(AlertEngine, SwitchingARuleOffResolvesItsAlerts) {
  AlertEngine e(downRulesOnly());
  ASSERT_EQ(at(e, 0, {backend("app", {{"a1", false, false}, {"a2", true, false}})}).size(), 1u);
  config::AlertRules rules = downRulesOnly();
  rules.server_down = false;
  e.setRules(rules);
  auto changes = at(e, 1, {backend("app", {{"a1", false, false}, {"a2", true, false}})});
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_FALSE(changes[0].firing());
}

TEST(AlertEngine, RaiseAndClearAreIdempotent) {
  AlertEngine e(downRulesOnly());
  auto a = e.raise("failover", "node-b", "critical", "became MASTER", 1, kUnixBase);
  ASSERT_TRUE(a.has_value());
  EXPECT_TRUE(a->firing());
  EXPECT_EQ(a->rule, "failover");
  EXPECT_FALSE(e.raise("failover", "node-b", "critical", "again", 2, kUnixBase + 1).has_value());
  // Another subject is another alert.
  auto b = e.raise("failover", "node-c", "warning", "x", 0, kUnixBase + 2);
  ASSERT_TRUE(b.has_value());
  EXPECT_GT(b->id, a->id);

  // External alerts are not the engine's to resolve, even under a built-in rule name.
  auto ext = e.raise("server_down", "app/a1", "critical", "reported elsewhere", 0, kUnixBase);
  ASSERT_TRUE(ext.has_value());
  EXPECT_TRUE(at(e, 0, {backend("app", {{"a1", true, false}})}).empty());
  EXPECT_FALSE(e.clear("backend_down", "app", kUnixBase).has_value());

  auto active = e.active();
  ASSERT_EQ(active.size(), 3u);
  EXPECT_EQ(active[0].id, a->id);  // oldest first
  EXPECT_EQ(active[0].message, "became MASTER");
  EXPECT_EQ(active[2].id, ext->id);

  auto cleared = e.clear("failover", "node-b", kUnixBase + 5);
  ASSERT_TRUE(cleared.has_value());
  EXPECT_EQ(cleared->id, a->id);
  EXPECT_EQ(cleared->resolved_unix_ms, kUnixBase + 5);
  EXPECT_FALSE(e.clear("failover", "node-b", kUnixBase + 6).has_value());
  EXPECT_FALSE(e.clear("nothing", "here", kUnixBase).has_value());
  EXPECT_EQ(e.active().size(), 2u);
}

TEST(AlertEngine, RecentIsBoundedNewestFirst) {
  AlertEngine e(downRulesOnly());
  for (int i = 0; i < 150; ++i) {
    ASSERT_TRUE(e.raise("r", std::to_string(i), "warning", "m", i, kUnixBase + 2 * i));
    ASSERT_TRUE(e.clear("r", std::to_string(i), kUnixBase + 2 * i + 1));
  }
  auto recent = e.recent();
  ASSERT_EQ(recent.size(), AlertEngine::kRecent);
  EXPECT_EQ(recent.front().subject, "149");
  EXPECT_FALSE(recent.front().firing());
  EXPECT_EQ(recent[1].subject, "149");
  EXPECT_TRUE(recent[1].firing());
  EXPECT_EQ(recent.back().subject, "50");  // 300 events, the oldest 100 (subjects 0..49) gone
  for (size_t i = 1; i < recent.size(); ++i) EXPECT_GE(recent[i - 1].id, recent[i].id);
}

TEST(AlertJson, EscapesAndHasTheDocumentedShape) {
  Alert a;
  a.id = 42;
  a.rule = "error_rate";
  a.subject = "app \"main\"";
  a.severity = "warning";
  a.message =
      std::string("quote \" backslash \\ newline \n tab \t ctl \x01 del \x7f é ✓ bad \xff!");
  a.value = 0.125;
  a.fired_unix_ms = kUnixBase + 123;
  const std::string text = alertJson(a, "node\\1");
  ASSERT_TRUE(nlohmann::json::accept(text)) << text;
  auto j = nlohmann::json::parse(text);
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"fired_at", "id", "message", "node", "resolved_at",
                                            "rule", "severity", "state", "subject", "value"}));
  EXPECT_EQ(j["id"], 42);
  EXPECT_EQ(j["node"], "node\\1");
  EXPECT_EQ(j["rule"], "error_rate");
  EXPECT_EQ(j["subject"], "app \"main\"");
  EXPECT_EQ(j["state"], "firing");
  EXPECT_EQ(j["severity"], "warning");
  EXPECT_EQ(j["message"],
            "quote \" backslash \\ newline \n tab \t ctl \x01 del \x7f é ✓ bad \xEF\xBF\xBD!");
  EXPECT_EQ(j["value"], 0.125);
  EXPECT_EQ(j["fired_at"], "2026-11-24T08:30:00.123Z");
  EXPECT_TRUE(j["resolved_at"].is_null());
  EXPECT_EQ(text.rfind("{\"id\":42,\"node\":", 0), 0u) << text;

  a.resolved_unix_ms = kUnixBase + 61'005;
  a.value = std::numeric_limits<double>::quiet_NaN();
  j = nlohmann::json::parse(alertJson(a, "n"));
  EXPECT_EQ(j["state"], "resolved");
  EXPECT_EQ(j["resolved_at"], "2026-11-24T08:31:01.005Z");
  EXPECT_TRUE(j["value"].is_null());

  // Truncated and overlong sequences and surrogates are replaced, not passed through.
  a.message = std::string("\xC3") + "x" + "\xC0\xAF" + "\xED\xA0\x80" + "\xF0\x9F\x98";
  EXPECT_TRUE(nlohmann::json::accept(alertJson(a, "n"))) << alertJson(a, "n");
}

}  // namespace
}  // namespace tandem::admin
