#include "state/rate_limit.h"

#include <gtest/gtest.h>

#include "state/sticky_cookie.h"
#include "state/table.h"

namespace tandem::state {
namespace {

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kT0 = 1'700'000'000LL * kSecond;  // a whole second: window boundaries line up

TEST(RateLimiter, WindowFromRateAndBurst) {
  EXPECT_EQ(RateLimiter(100, 0).windowMs(), 1000);  // default burst: one second's worth
  EXPECT_DOUBLE_EQ(RateLimiter(100, 0).limit(), 100);
  EXPECT_EQ(RateLimiter(100, 500).windowMs(), 5000);  // burst 500 at 100/s: a 5 s window
  EXPECT_DOUBLE_EQ(RateLimiter(100, 500).limit(), 500);
  EXPECT_EQ(RateLimiter(100, 10).windowMs(), 1000);  // never shorter than a second
  EXPECT_EQ(RateLimiter(0.5, 0).windowMs(), 2000);   // 30/m: one request per 2 s
  EXPECT_DOUBLE_EQ(RateLimiter(0.5, 0).limit(), 1);
}

TEST(RateLimiter, AllowsTheLimitPerWindowThenRefusesWithRetryAfter) {
  Table t({"n1"});
  RateLimiter rl(10, 0);
  int allowed = 0;
  for (int i = 0; i < 25; ++i) allowed += rl.check(t, "k", kT0 + i * 1000).allowed;
  EXPECT_EQ(allowed, 10);
  const RateVerdict v = rl.check(t, "k", kT0 + 500'000);
  EXPECT_FALSE(v.allowed);
  EXPECT_EQ(v.retry_after_s, 1);
  // Another key has its own budget.
  EXPECT_TRUE(rl.check(t, "other", kT0 + 500'000).allowed);
}

TEST(RateLimiter, SlidingWindowWeighsThePreviousOne) {
  Table t({"n1"});
  RateLimiter rl(10, 0);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(rl.check(t, "k", kT0 + i * 1000).allowed);
  // Half-way into the next window the previous one counts half: 5 left.
  int allowed = 0;
  for (int i = 0; i < 20; ++i) allowed += rl.check(t, "k", kT0 + kSecond + kSecond / 2).allowed;
  EXPECT_EQ(allowed, 5);
  // Two windows later nothing of it is left.
  allowed = 0;
  for (int i = 0; i < 20; ++i) allowed += rl.check(t, "k", kT0 + 3 * kSecond).allowed;
  EXPECT_EQ(allowed, 10);
}

TEST(RateLimiter, SustainedRateConvergesToTheLimit) {
  // 1,000 requests/s offered for 20 s against 100/s: about 100/s get through.
  Table t({"n1"});
  RateLimiter rl(100, 0);
  int allowed = 0;
  for (int64_t us = 0; us < 20 * kSecond; us += 1000) allowed += rl.check(t, "k", kT0 + us).allowed;
  EXPECT_NEAR(allowed, 2000, 2000 * 0.05);
}

TEST(RateLimiter, CountsOfOtherNodesShareTheLimit) {
  // Two nodes, each seeing the other's counts (as replication delivers them): the limit holds for
  // the sum.
  Table a({"a"}), b({"b"});
  RateLimiter rl(50, 0);
  int allowed = 0;
  for (int i = 0; i < 200; ++i) {
    Table& mine = i % 2 ? a : b;
    Table& other = i % 2 ? b : a;
    const int64_t now = kT0 + i * 2000;
    allowed += rl.check(mine, "k", now).allowed;
    std::vector<Record> out;
    mine.drain(out, 100);
    for (const Record& r : out) other.merge(r, now / 1000);
  }
  EXPECT_EQ(allowed, 50);  // 200 requests in 0.4 s: the window's 50, split across both
}

TEST(StickyCookie, SignedPerBackendAndServerUnderTheSecret) {
  const std::string v = stickyCookieValue("secret-0123456789", "app", "a1");
  EXPECT_EQ(v.rfind("a1.", 0), 0u);
  EXPECT_EQ(v.size(), 3u + 24u);
  EXPECT_EQ(v, stickyCookieValue("secret-0123456789", "app", "a1"));  // deterministic
  EXPECT_NE(v, stickyCookieValue("secret-0123456789", "app", "a2"));
  EXPECT_NE(v.substr(3), stickyCookieValue("secret-0123456789", "api", "a1").substr(3));
  EXPECT_NE(v, stickyCookieValue("another-secret-xyz", "app", "a1"));
  EXPECT_NE(randomSecret(), randomSecret());
  EXPECT_EQ(randomSecret().size(), 64u);
}

}  // namespace
}  // namespace tandem::state
