// The backend failure-handling keys of the YAML loader: health (active and passive), retries,
// slow_start and panic_threshold. Round trip, defaults, and each error with its exact line; test
// documents mark the lines that matter with a "# L<n>" comment.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>

#include "config/config.h"
#include "config_test_util.h"

namespace tandem::config {

// Defined in loader_test.cc (same binary): readable failure output for ConfigError vectors.
void PrintTo(const ConfigError& error, std::ostream* os);

namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

using namespace std::chrono_literals;

using namespace ::tandem::config::test_util;

std::vector<StatusRange> ranges(std::initializer_list<std::pair<int, int>> list) {
  std::vector<StatusRange> out;
  for (auto [low, high] : list) out.push_back(StatusRange{low, high});
  return out;
}

TEST(Resilience, FullRoundTrip) {
  const Config config = mustLoad(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: app}
backends:
  - name: app
    servers: [{address: 127.0.0.1:9001}, {address: 127.0.0.1:9002}]
    health:
      active: {type: http, path: /healthz, method: GET, host: example, expect: 200-399, body_contains: ok,
               interval: 2s, fast_interval: 500ms, jitter_percent: 10, timeout: 1s, rise: 2, fall: 3, initial: up}
      passive: {consecutive_failures: 5, gateway_errors_only: false, base_ejection: 30s, max_ejection: 5m, max_ejection_percent: 10}
    retries: {attempts: 2, retry_on: [connect_failure, reset, 502, 503, 504], budget_percent: 20, min_retry_concurrency: 3, per_try_timeout: 500ms}
    slow_start: 10s
    panic_threshold: 50%
  - name: other
    servers: [{address: 127.0.0.1:9003}]
    health:
      active:
        type: http
        path: "/status?full=1"
        method: HEAD
        host: "[::1]:8443"
        expect: [204, 300-302]
        body_contains: "\"status\": \"ok\""
        interval: 10s
        fast_interval: 1s
        jitter_percent: 0
        timeout: 10s
        rise: 100
        fall: 1
        initial: down
      passive:
        consecutive_failures: 1000
        gateway_errors_only: true
        base_ejection: 1s
        max_ejection: 1s
        max_ejection_percent: 100
    retries:
      attempts: 0
      retry_on: ["503", reset]
      budget_percent: 0
      min_retry_concurrency: 1000
      per_try_timeout: 2s
    limits: {timeout: 2s}
    slow_start: 1.5s
    panic_threshold: 0%
)");
  ASSERT_THAT(config.backends, SizeIs(2));
  const Backend& app = config.backends[0];
  EXPECT_TRUE(app.active.enabled);
  EXPECT_EQ(app.active.type, CheckType::kHttp);
  EXPECT_EQ(app.active.path, "/healthz");
  EXPECT_EQ(app.active.method, "GET");
  EXPECT_EQ(app.active.host, "example");
  EXPECT_EQ(app.active.expect, ranges({{200, 399}}));
  EXPECT_EQ(app.active.body_contains, "ok");
  EXPECT_EQ(app.active.interval, 2s);
  EXPECT_EQ(app.active.fast_interval, 500ms);
  EXPECT_EQ(app.active.jitter_percent, 10u);
  EXPECT_EQ(app.active.timeout, 1s);
  EXPECT_EQ(app.active.rise, 2u);
  EXPECT_EQ(app.active.fall, 3u);
  EXPECT_TRUE(app.active.initial_up);
  EXPECT_TRUE(app.passive.enabled);
  EXPECT_EQ(app.passive.consecutive_failures, 5u);
  EXPECT_FALSE(app.passive.gateway_errors_only);
  EXPECT_EQ(app.passive.base_ejection, 30s);
  EXPECT_EQ(app.passive.max_ejection, 5min);
  EXPECT_EQ(app.passive.max_ejection_percent, 10u);
  EXPECT_EQ(app.retries.attempts, 2u);
  EXPECT_TRUE(app.retries.on_connect_failure);
  EXPECT_TRUE(app.retries.on_reset);
  EXPECT_EQ(app.retries.on_statuses, (std::vector<int>{502, 503, 504}));
  EXPECT_EQ(app.retries.budget_percent, 20u);
  EXPECT_EQ(app.retries.min_retry_concurrency, 3u);
  EXPECT_EQ(app.retries.per_try_timeout, 500ms);
  EXPECT_EQ(app.slow_start, 10s);
  EXPECT_EQ(app.panic_threshold_percent, 50u);

  const Backend& other = config.backends[1];
  EXPECT_TRUE(other.active.enabled);
  EXPECT_EQ(other.active.type, CheckType::kHttp);
  EXPECT_EQ(other.active.path, "/status?full=1");
  EXPECT_EQ(other.active.method, "HEAD");
  EXPECT_EQ(other.active.host, "[::1]:8443");
  EXPECT_EQ(other.active.expect, ranges({{204, 204}, {300, 302}}));
  EXPECT_EQ(other.active.body_contains, "\"status\": \"ok\"");
  EXPECT_EQ(other.active.interval, 10s);
  EXPECT_EQ(other.active.fast_interval, 1s);
  EXPECT_EQ(other.active.jitter_percent, 0u);
  EXPECT_EQ(other.active.timeout, 10s);
  EXPECT_EQ(other.active.rise, 100u);
  EXPECT_EQ(other.active.fall, 1u);
  EXPECT_FALSE(other.active.initial_up);
  EXPECT_TRUE(other.passive.enabled);
  EXPECT_EQ(other.passive.consecutive_failures, 1000u);
  EXPECT_TRUE(other.passive.gateway_errors_only);
  EXPECT_EQ(other.passive.base_ejection, 1s);
  EXPECT_EQ(other.passive.max_ejection, 1s);
  EXPECT_EQ(other.passive.max_ejection_percent, 100u);
  EXPECT_EQ(other.retries.attempts, 0u);
  EXPECT_FALSE(other.retries.on_connect_failure);
  EXPECT_TRUE(other.retries.on_reset);
  EXPECT_EQ(other.retries.on_statuses, (std::vector<int>{503}));
  EXPECT_EQ(other.retries.budget_percent, 0u);
  EXPECT_EQ(other.retries.min_retry_concurrency, 1000u);
  EXPECT_EQ(other.retries.per_try_timeout, 2s);
  EXPECT_EQ(other.slow_start, 1500ms);
  EXPECT_EQ(other.panic_threshold_percent, 0u);
}

TEST(Resilience, DefaultsWhenAbsent) {
  const Config config = mustLoad(kMinimal);
  ASSERT_THAT(config.backends, SizeIs(1));
  const Backend& app = config.backends[0];
  EXPECT_FALSE(app.active.enabled);
  EXPECT_EQ(app.active.type, CheckType::kTcp);
  EXPECT_EQ(app.active.method, "GET");
  EXPECT_EQ(app.active.path, "/");
  EXPECT_EQ(app.active.host, "");
  EXPECT_EQ(app.active.expect, ranges({{200, 399}}));
  EXPECT_EQ(app.active.body_contains, "");
  EXPECT_EQ(app.active.interval, 2s);
  EXPECT_EQ(app.active.fast_interval, 0ms);
  EXPECT_EQ(app.active.jitter_percent, 10u);
  EXPECT_EQ(app.active.timeout, 1s);
  EXPECT_EQ(app.active.rise, 2u);
  EXPECT_EQ(app.active.fall, 3u);
  EXPECT_FALSE(app.active.initial_up);
  EXPECT_FALSE(app.passive.enabled);
  EXPECT_EQ(app.passive.consecutive_failures, 5u);
  EXPECT_FALSE(app.passive.gateway_errors_only);
  EXPECT_EQ(app.passive.base_ejection, 30s);
  EXPECT_EQ(app.passive.max_ejection, 5min);
  EXPECT_EQ(app.passive.max_ejection_percent, 10u);
  EXPECT_EQ(app.retries.attempts, 1u);
  EXPECT_TRUE(app.retries.on_connect_failure);
  EXPECT_TRUE(app.retries.on_reset);
  EXPECT_THAT(app.retries.on_statuses, IsEmpty());
  EXPECT_EQ(app.retries.budget_percent, 20u);
  EXPECT_EQ(app.retries.min_retry_concurrency, 3u);
  EXPECT_EQ(app.retries.per_try_timeout, 0ms);
  EXPECT_EQ(app.slow_start, 0ms);
  EXPECT_EQ(app.panic_threshold_percent, 0u);
}

TEST(Resilience, PresenceEnablesWithDefaults) {
  const Config config = mustLoad(std::string(kMinimal.substr(1)) +
                                 "    health: {active: {}, passive: {}}\n"
                                 "  - name: b\n"
                                 "    servers: [{address: 127.0.0.1:9002}]\n"
                                 "    health: {passive: {consecutive_failures: 2}}\n"
                                 "  - name: c\n"
                                 "    servers: [{address: 127.0.0.1:9003}]\n"
                                 "    health: {}\n");
  ASSERT_THAT(config.backends, SizeIs(3));
  const Backend& app = config.backends[0];
  EXPECT_TRUE(app.active.enabled);
  EXPECT_EQ(app.active.type, CheckType::kTcp);
  EXPECT_EQ(app.active.interval, 2s);
  EXPECT_EQ(app.active.rise, 2u);
  EXPECT_TRUE(app.passive.enabled);
  EXPECT_EQ(app.passive.consecutive_failures, 5u);
  EXPECT_FALSE(config.backends[1].active.enabled);
  EXPECT_TRUE(config.backends[1].passive.enabled);
  EXPECT_EQ(config.backends[1].passive.consecutive_failures, 2u);
  EXPECT_FALSE(config.backends[2].active.enabled);
  EXPECT_FALSE(config.backends[2].passive.enabled);
}

TEST(Resilience, ExpectForms) {
  const Config config = mustLoad(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    servers: [{address: 127.0.0.1:9001}]
    health: {active: {type: http, expect: 204}}
  - name: b
    servers: [{address: 127.0.0.1:9001}]
    health: {active: {type: http, expect: "200-299"}}
  - name: c
    servers: [{address: 127.0.0.1:9001}]
    health: {active: {type: http, expect: [200, 301-302, "404", 100-599]}}
  - name: d
    servers: [{address: 127.0.0.1:9001}]
    health:
      active:
        type: http
        expect:
          - 200
          - 500-599
  - name: e
    servers: [{address: 127.0.0.1:9001}]
    health: {active: {type: http, expect: [599-599]}}
)");
  ASSERT_THAT(config.backends, SizeIs(5));
  EXPECT_EQ(config.backends[0].active.expect, ranges({{204, 204}}));
  EXPECT_EQ(config.backends[1].active.expect, ranges({{200, 299}}));
  EXPECT_EQ(config.backends[2].active.expect,
            ranges({{200, 200}, {301, 302}, {404, 404}, {100, 599}}));
  EXPECT_EQ(config.backends[3].active.expect, ranges({{200, 200}, {500, 599}}));
  EXPECT_EQ(config.backends[4].active.expect, ranges({{599, 599}}));
}

TEST(Resilience, RetryOnReplacesTheDefaults) {
  const Config config = mustLoad(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    servers: [{address: 127.0.0.1:9001}]
    retries: {attempts: 3}
  - name: b
    servers: [{address: 127.0.0.1:9001}]
    retries: {retry_on: [503]}
  - name: c
    servers: [{address: 127.0.0.1:9001}]
    retries:
      retry_on:
        - reset
        - "504"
        - 502
  - name: d
    servers: [{address: 127.0.0.1:9001}]
    retries: {retry_on: []}
  - name: e
    servers: [{address: 127.0.0.1:9001}]
    retries: {retry_on: [connect_failure]}
)");
  ASSERT_THAT(config.backends, SizeIs(5));
  const Retries& a = config.backends[0].retries;  // no retry_on: the defaults stay
  EXPECT_EQ(a.attempts, 3u);
  EXPECT_TRUE(a.on_connect_failure);
  EXPECT_TRUE(a.on_reset);
  EXPECT_THAT(a.on_statuses, IsEmpty());
  const Retries& b = config.backends[1].retries;
  EXPECT_FALSE(b.on_connect_failure);
  EXPECT_FALSE(b.on_reset);
  EXPECT_EQ(b.on_statuses, (std::vector<int>{503}));
  const Retries& c = config.backends[2].retries;
  EXPECT_FALSE(c.on_connect_failure);
  EXPECT_TRUE(c.on_reset);
  EXPECT_EQ(c.on_statuses, (std::vector<int>{502, 504}));  // sorted
  const Retries& d = config.backends[3].retries;
  EXPECT_FALSE(d.on_connect_failure);
  EXPECT_FALSE(d.on_reset);
  EXPECT_THAT(d.on_statuses, IsEmpty());
  const Retries& e = config.backends[4].retries;
  EXPECT_TRUE(e.on_connect_failure);
  EXPECT_FALSE(e.on_reset);
  EXPECT_THAT(e.on_statuses, IsEmpty());
}

TEST(Resilience, PanicThresholdAndSlowStartForms) {
  const std::string head = std::string(kMinimal.substr(1));
  struct Case {
    std::string_view yaml;
    uint32_t percent;
  };
  for (const Case& c : {Case{"50%", 50}, Case{"0%", 0}, Case{"100%", 100}, Case{"75", 75},
                        Case{"\"100\"", 100}, Case{"0", 0}}) {
    const Config config = mustLoad(head + "    panic_threshold: " + std::string(c.yaml) + "\n");
    ASSERT_THAT(config.backends, SizeIs(1)) << c.yaml;
    EXPECT_EQ(config.backends[0].panic_threshold_percent, c.percent) << c.yaml;
  }
  for (auto [yaml, expected] : {std::pair{"0s", 0ms}, std::pair{"0ms", 0ms},
                                std::pair{"1.5s", 1500ms}, std::pair{"2m", 120'000ms}}) {
    const Config config = mustLoad(head + "    slow_start: " + std::string(yaml) + "\n");
    ASSERT_THAT(config.backends, SizeIs(1)) << yaml;
    EXPECT_EQ(config.backends[0].slow_start, expected) << yaml;
  }
}

TEST(Resilience, HealthSectionErrors) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    servers: [{address: 127.0.0.1:9001}]
    health: [active]                  # L6
  - name: b
    servers: [{address: 127.0.0.1:9001}]
    health:
      activ: {type: tcp}              # L10
      pasive: {}                      # L11
      passive: on                     # L12
      active: [1]                     # L13
  - name: c
    servers: [{address: 127.0.0.1:9001}]
    health:
      active:                         # L17
)"),
              ElementsAre(Err(6, "'health' must be a map, got a list"),
                          Err(10, "unknown key 'activ' in health; did you mean 'active'?"),
                          Err(11, "unknown key 'pasive' in health; did you mean 'passive'?"),
                          Err(12, "'passive' must be a map, got 'on'"),
                          Err(13, "'active' must be a map, got a list"),
                          Err(17, "'active' must be a map, got nothing")));
}

TEST(Resilience, ActiveHealthErrors) {
  EXPECT_THAT(
      errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    servers: [{address: 127.0.0.1:9001}]
    health:
      active:
        type: https                  # L8
        intervl: 1s                  # L9
        rise: 0                      # L10
        fall: 101                    # L11
        jitter_percent: 51           # L12
        initial: maybe               # L13
        interval: 0s                 # L14
        fast_interval: 0ms           # L15
        timeout: 1                   # L16
  - name: b
    servers: [{address: 127.0.0.1:9001}]
    health:
      active:
        type: http
        path: healthz                # L22
        method: "GE T"               # L23
        host: "a b"                  # L24
        expect: 600                  # L25
        body_contains: ""            # L26
  - name: c
    servers: [{address: 127.0.0.1:9001}]
    health:
      active:
        type: http
        path: "/a b"                 # L32
        expect: [200, 399-200, abc, "99", 200-]   # L33
        method: ""                   # L34
        host: "a\r\nX: y"            # L35
        path: "/x"                   # L36
  - name: d
    servers: [{address: 127.0.0.1:9001}]
    health:
      active:
        type: http
        expect: []                   # L42
        path: "/\tx"                 # L43
        type: tcp                    # L44
  - name: e
    servers: [{address: 127.0.0.1:9001}]
    health:
      active:
        type: http
        expect:
          - 200
          - 2OO                      # L52
          - [300]                    # L53
        path: "/caf\u00e9"           # L54
)"),
      ElementsAre(
          Err(8, "'type' must be tcp or http, got 'https'"),
          Err(9, "unknown key 'intervl' in health.active; did you mean 'interval'?"),
          Err(10, "'rise' must be an integer in 1..100, got '0'"),
          Err(11, "'fall' must be an integer in 1..100, got '101'"),
          Err(12, "'jitter_percent' must be an integer in 0..50, got '51'"),
          Err(13, "'initial' must be up or down, got 'maybe'"),
          Err(14, "'interval' must be at least 1ms, got '0s'"),
          Err(15, "'fast_interval' must be at least 1ms, got '0ms'"),
          Err(16, "'timeout': invalid duration '1': missing unit"),
          Err(22, "'path' must start with '/' and be at most 1024 visible ASCII characters"),
          Err(23, "'method' must be an HTTP method token (e.g. GET or HEAD), got 'GE T'"),
          Err(24, "'host' must be a host name or HOST:PORT without spaces or control characters"),
          Err(25, "'expect': invalid status '600': statuses must be in 100..599"),
          Err(26, "'body_contains' must be 1..1024 characters, got 0"),
          Err(32, "'path' must start with '/'"),
          Err(33, "'expect': invalid status '399-200': the range is reversed"),
          Err(33,
              "'expect': invalid status 'abc': expected a status (e.g. 200) or a range (e.g. "
              "200-399)"),
          Err(33, "'expect': invalid status '99': statuses must be in 100..599"),
          Err(33, "'expect': invalid status '200-': expected a status"),
          Err(34, "'method' must be an HTTP method token"), Err(35, "'host' must be a host name"),
          Err(36, "duplicate key 'path' in health.active (first at line 32)"),
          Err(42, "'expect' must list 1..32 statuses or ranges, got 0"),
          Err(43, "'path' must start with '/'"),
          Err(44, "duplicate key 'type' in health.active (first at line 41)"),
          Err(52, "'expect': invalid status '2OO': expected a status"),
          Err(53, "'expect' must be a single value, got a list"),
          Err(54, "'path' must start with '/'")));
}

TEST(Resilience, HttpOptionsNeedTypeHttp) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    servers: [{address: 127.0.0.1:9001}]
    health:
      active:
        type: tcp
        path: /healthz               # L9
        expect: 200                  # L10
        rise: 1
  - name: b
    servers: [{address: 127.0.0.1:9001}]
    health:
      active: {method: HEAD, host: x, body_contains: ok}   # L15 (type defaults to tcp)
  - name: c
    servers: [{address: 127.0.0.1:9001}]
    health:
      active: {type: udp, path: /x}  # L19: the bad type is reported, not the path
)"),
              ElementsAre(Err(9, "'path' applies only to type: http checks"),
                          Err(10, "'expect' applies only to type: http checks"),
                          Err(15, "'method' applies only to type: http checks"),
                          Err(15, "'host' applies only to type: http checks"),
                          Err(15, "'body_contains' applies only to type: http checks"),
                          Err(19, "'type' must be tcp or http, got 'udp'")));
}

TEST(Resilience, TimeoutAndFastIntervalNotLongerThanInterval) {
  EXPECT_THAT(
      errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    servers: [{address: 127.0.0.1:9001}]
    health:
      active:
        interval: 1s                 # L8
        timeout: 2s                  # L9
        fast_interval: 1500ms        # L10
  - name: b
    servers: [{address: 127.0.0.1:9001}]
    health: {active: {interval: 500ms}}                 # L13: against the default timeout
  - name: c
    servers: [{address: 127.0.0.1:9001}]
    health: {active: {interval: 1s, timeout: 1s, fast_interval: 1s}}
  - name: d
    servers: [{address: 127.0.0.1:9001}]
    health:
      active:
        timeout: 3s                  # L21: against the default interval
)"),
      ElementsAre(Err(9, "'timeout' (2000ms) must not be longer than 'interval' (1000ms)"),
                  Err(10, "'fast_interval' (1500ms) must not be longer than 'interval' (1000ms)"),
                  Err(13, "'timeout' (1000ms) must not be longer than 'interval' (500ms)"),
                  Err(21, "'timeout' (3000ms) must not be longer than 'interval' (2000ms)")));
}

TEST(Resilience, PassiveHealthErrors) {
  EXPECT_THAT(
      errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    servers: [{address: 127.0.0.1:9001}]
    health:
      passive:
        consecutive_failures: 0      # L8
        gateway_errors_only: yes     # L9
        base_ejection: 0s            # L10
        max_ejection_percent: 101    # L11
        max_ejectoin: 1m             # L12
  - name: b
    servers: [{address: 127.0.0.1:9001}]
    health:
      passive:
        consecutive_failures: 1001   # L17
        base_ejection: 1m            # L18
        max_ejection: 30s            # L19
  - name: c
    servers: [{address: 127.0.0.1:9001}]
    health: {passive: {max_ejection: 10s}}     # L22: against the default base_ejection
  - name: d
    servers: [{address: 127.0.0.1:9001}]
    health:
      passive:
        base_ejection: 10m           # L27: against the default max_ejection
        max_ejection_percent: -1     # L28
)"),
      ElementsAre(
          Err(8, "'consecutive_failures' must be an integer in 1..1000, got '0'"),
          Err(9, "'gateway_errors_only' must be true or false, got 'yes'"),
          Err(10, "'base_ejection' must be at least 1ms, got '0s'"),
          Err(11, "'max_ejection_percent' must be an integer in 0..100, got '101'"),
          Err(12, "unknown key 'max_ejectoin' in health.passive; did you mean 'max_ejection'?"),
          Err(17, "'consecutive_failures' must be an integer in 1..1000, got '1001'"),
          Err(19, "'max_ejection' (30000ms) must be at least 'base_ejection' (60000ms)"),
          Err(22, "'max_ejection' (10000ms) must be at least 'base_ejection' (30000ms)"),
          Err(27, "'max_ejection' (300000ms) must be at least 'base_ejection' (600000ms)"),
          Err(28, "'max_ejection_percent' must be an integer in 0..100, got '-1'")));
}

TEST(Resilience, RetriesErrors) {
  EXPECT_THAT(
      errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    servers: [{address: 127.0.0.1:9001}]
    retries:
      attempts: 11                             # L7
      retry_on: [conect_failure, 499, 600, reset, reset, 503, "503", 5xx]   # L8
      budget_percent: 101                      # L9
      min_retry_concurrency: 1001              # L10
      per_try_timeout: -1s                     # L11
      retry_budget: 20                         # L12
  - name: b
    servers: [{address: 127.0.0.1:9001}]
    retries:
      per_try_timeout: 2s                      # L16
      retry_on:
        - connect_failure
        - [502]                                # L19
        - connect_failure                      # L20
    limits: {timeout: 1s}                      # after retries: still compared
  - name: c
    servers: [{address: 127.0.0.1:9001}]
    retries: {retry_on: 503}                   # L24
  - name: d
    servers: [{address: 127.0.0.1:9001}]
    retries: 2                                 # L27
  - name: e
    servers: [{address: 127.0.0.1:9001}]
    retries: {per_try_timeout: 31s}            # L30: against the default timeout (30s)
  - name: f
    servers: [{address: 127.0.0.1:9001}]
    retries: {per_try_timeout: 0s, attempts: -1}    # L33
)"),
      ElementsAre(Err(7, "'attempts' must be an integer in 0..10, got '11'"),
                  Err(8,
                      "'retry_on' entries must be connect_failure, reset or a status in 500..599, "
                      "got 'conect_failure'; did you mean 'connect_failure'?"),
                  Err(8, "got '499'"), Err(8, "got '600'"),
                  Err(8, "'retry_on' lists 'reset' more than once"),
                  Err(8, "'retry_on' lists '503' more than once"), Err(8, "got '5xx'"),
                  Err(9, "'budget_percent' must be an integer in 0..100, got '101'"),
                  Err(10, "'min_retry_concurrency' must be an integer in 0..1000, got '1001'"),
                  Err(11, "'per_try_timeout': invalid duration '-1s': must not be negative"),
                  Err(12, "unknown key 'retry_budget' in retries"),
                  Err(16,
                      "'per_try_timeout' (2000ms) must not be longer than the backend's 'timeout' "
                      "(1000ms)"),
                  Err(19, "'retry_on' must be a single value, got a list"),
                  Err(20, "'retry_on' lists 'connect_failure' more than once"),
                  Err(24, "'retry_on' must be a list, got '503'"),
                  Err(27, "'retries' must be a map, got '2'"),
                  Err(30,
                      "'per_try_timeout' (31000ms) must not be longer than the backend's "
                      "'timeout' (30000ms)"),
                  Err(33, "'attempts' must be an integer in 0..10, got '-1'")));
}

TEST(Resilience, PanicThresholdAndSlowStartErrors) {
  EXPECT_THAT(
      errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    servers: [{address: 127.0.0.1:9001}]
    panic_threshold: 101%        # L6
    slow_start: 10               # L7
  - name: b
    servers: [{address: 127.0.0.1:9001}]
    panic_threshold: "-1%"       # L10
    slow_start: -1s              # L11
  - name: c
    servers: [{address: 127.0.0.1:9001}]
    panic_threshold: 50 %        # L14
    slow_start: [10s]            # L15
  - name: d
    servers: [{address: 127.0.0.1:9001}]
    panic_threshold: "%"         # L18
    slow_start: 8d               # L19
  - name: e
    servers: [{address: 127.0.0.1:9001}]
    panic_threshold: 0.5         # L22
    slow_start: 200h             # L23
    panic_treshold: 5%           # L24
)"),
      ElementsAre(
          Err(6, "'panic_threshold' must be a percentage in 0%..100% (e.g. 50%), got '101%'"),
          Err(7, "'slow_start': invalid duration '10': missing unit"),
          Err(10, "'panic_threshold' must be a percentage in 0%..100% (e.g. 50%), got '-1%'"),
          Err(11, "'slow_start': invalid duration '-1s': must not be negative"),
          Err(14, "got '50 %'"), Err(15, "'slow_start' must be a single value, got a list"),
          Err(18, "got '%'"), Err(19, "'slow_start': invalid duration '8d': unknown unit 'd'"),
          Err(22, "got '0.5'"), Err(23, "'slow_start' must be at most 168h, got '200h'"),
          Err(24, "unknown key 'panic_treshold' in backend; did you mean 'panic_threshold'?")));
}

TEST(Resilience, ErrorsAreCollectedAcrossSections) {
  // One mistake in each new section, and one elsewhere: all reported, sorted by line.
  const auto errors = errorsOf(R"(
workers: 0                       # L1
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: app}
backends:
  - name: app
    servers: [{address: 127.0.0.1:9001}]
    panic_threshold: 200%        # L7
    retries: {attempts: 20}      # L8
    health:
      passive: {max_ejection_percent: 200}   # L10
      active: {rise: 0}          # L11
    slow_start: soon             # L12
)");
  EXPECT_THAT(errors, ElementsAre(Err(1, "'workers'"), Err(7, "'panic_threshold'"),
                                  Err(8, "'attempts'"), Err(10, "'max_ejection_percent'"),
                                  Err(11, "'rise'"), Err(12, "'slow_start'")));
  for (const ConfigError& e : errors) EXPECT_THAT(e.text(), testing::StartsWith("t.yaml:"));
}

TEST(Resilience, HealthExampleHasWhatItPromises) {
  auto result = loadFile(TANDEM_EXAMPLES_DIR "/health.yaml");
  ASSERT_TRUE(result.has_value());
  const Backend* app = result->findBackend("app");
  ASSERT_NE(app, nullptr);
  EXPECT_TRUE(app->active.enabled);
  EXPECT_EQ(app->active.type, CheckType::kHttp);
  EXPECT_TRUE(app->passive.enabled);
  EXPECT_EQ(app->retries.attempts, 2u);
  EXPECT_GT(app->retries.per_try_timeout, 0ms);
  EXPECT_EQ(app->slow_start, 10s);
  EXPECT_EQ(app->panic_threshold_percent, 50u);
  const Backend* cache = result->findBackend("cache");
  ASSERT_NE(cache, nullptr);
  EXPECT_TRUE(cache->active.enabled);
  EXPECT_EQ(cache->active.type, CheckType::kTcp);
  EXPECT_TRUE(cache->active.initial_up);
}

}  // namespace
}  // namespace tandem::config
