// OutlierDetector: consecutive-failure ejection on injected time.
#include "health/outlier.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace tandem::health {
namespace {

using Servers = std::vector<size_t>;

OutlierParams params(uint32_t percent = 100, int64_t base = 10'000, int64_t max = 300'000) {
  OutlierParams p;
  p.consecutive_failures = 3;
  p.base_ejection_ms = base;
  p.max_ejection_ms = max;
  p.max_ejection_percent = percent;
  return p;
}

// Ejects `server` at `now`, then ends the ejection at exactly its expiry; returns how long it lasted.
int64_t ejectionLength(OutlierDetector& od, size_t server, int64_t now) {
  if (!od.onFailureStreak(server, now)) return -1;
  int64_t until = od.nextExpiry();
  if (od.expire(until) != Servers{server}) return -2;
  return until - now;
}

TEST(Outlier, DefaultsAreEnvoys) {
  OutlierParams p;
  EXPECT_EQ(p.consecutive_failures, 5u);
  EXPECT_EQ(p.base_ejection_ms, 30'000);
  EXPECT_EQ(p.max_ejection_ms, 300'000);
  EXPECT_EQ(p.max_ejection_percent, 10u);
}

TEST(Outlier, NothingEjectedInitially) {
  OutlierDetector od(params(), 4);
  EXPECT_EQ(od.ejectedCount(), 0u);
  EXPECT_EQ(od.nextExpiry(), -1);
  for (size_t s = 0; s < 4; ++s) {
    EXPECT_FALSE(od.ejected(s));
    EXPECT_EQ(od.timesEjected(s), 0u);
  }
  EXPECT_TRUE(od.expire(1'000'000).empty());
}

TEST(Outlier, FailureStreakEjectsAndReportsIt) {
  OutlierDetector od(params(), 4);
  EXPECT_TRUE(od.onFailureStreak(2, 1'000));
  EXPECT_TRUE(od.ejected(2));
  EXPECT_FALSE(od.ejected(0));
  EXPECT_FALSE(od.ejected(1));
  EXPECT_FALSE(od.ejected(3));
  EXPECT_EQ(od.ejectedCount(), 1u);
  EXPECT_EQ(od.timesEjected(2), 1u);
  EXPECT_EQ(od.timesEjected(0), 0u);
}

TEST(Outlier, AlreadyEjectedIsNotReEjected) {
  OutlierDetector od(params(), 4);
  ASSERT_TRUE(od.onFailureStreak(1, 1'000));
  int64_t until = od.nextExpiry();
  EXPECT_FALSE(od.onFailureStreak(1, 2'000));
  EXPECT_FALSE(od.onFailureStreak(1, 9'000));
  EXPECT_EQ(od.timesEjected(1), 1u);       // not counted again
  EXPECT_EQ(od.nextExpiry(), until);       // not extended
  EXPECT_EQ(od.ejectedCount(), 1u);
}

TEST(Outlier, DetectionOffWithZeroConsecutiveFailures) {
  OutlierParams p = params();
  p.consecutive_failures = 0;
  OutlierDetector od(p, 3);
  for (size_t s = 0; s < 3; ++s) EXPECT_FALSE(od.onFailureStreak(s, 1'000));
  EXPECT_EQ(od.ejectedCount(), 0u);
  EXPECT_EQ(od.timesEjected(0), 0u);
  EXPECT_EQ(od.nextExpiry(), -1);
}

TEST(Outlier, UnknownServerIsIgnored) {
  OutlierDetector od(params(), 2);
  EXPECT_FALSE(od.onFailureStreak(2, 1'000));
  EXPECT_FALSE(od.onFailureStreak(100, 1'000));
  EXPECT_EQ(od.ejectedCount(), 0u);
  OutlierDetector empty(params(), 0);
  EXPECT_FALSE(empty.onFailureStreak(0, 1'000));
  EXPECT_EQ(empty.nextExpiry(), -1);
}

TEST(Outlier, FirstEjectionLastsBase) {
  OutlierDetector od(params(100, 10'000, 300'000), 2);
  ASSERT_TRUE(od.onFailureStreak(0, 5'000));
  EXPECT_EQ(od.nextExpiry(), 15'000);
}

TEST(Outlier, DurationIsBaseTimesTimesEjected) {
  OutlierDetector od(params(100, 10'000, 300'000), 2);
  int64_t now = 1'000;
  for (uint32_t n = 1; n <= 5; ++n) {
    int64_t len = ejectionLength(od, 0, now);
    EXPECT_EQ(len, 10'000 * static_cast<int64_t>(n)) << "ejection " << n;
    EXPECT_EQ(od.timesEjected(0), n);
    now += 100'000;
  }
}

TEST(Outlier, DurationIsCappedAtMaxEjection) {
  OutlierDetector od(params(100, 10'000, 35'000), 1);
  EXPECT_EQ(ejectionLength(od, 0, 1'000), 10'000);
  EXPECT_EQ(ejectionLength(od, 0, 100'000), 20'000);
  EXPECT_EQ(ejectionLength(od, 0, 200'000), 30'000);
  EXPECT_EQ(ejectionLength(od, 0, 300'000), 35'000);  // 40 s capped
  EXPECT_EQ(ejectionLength(od, 0, 400'000), 35'000);  // 50 s capped
  EXPECT_EQ(od.timesEjected(0), 5u);                   // still counting
}

TEST(Outlier, MaxEqualToBaseMeansConstantDuration) {
  OutlierDetector od(params(100, 10'000, 10'000), 1);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(ejectionLength(od, 0, 1'000 + i * 50'000), 10'000);
}

TEST(Outlier, TimesEjectedIsPerServer) {
  OutlierDetector od(params(100, 10'000, 300'000), 2);
  EXPECT_EQ(ejectionLength(od, 0, 1'000), 10'000);
  EXPECT_EQ(ejectionLength(od, 0, 50'000), 20'000);
  EXPECT_EQ(ejectionLength(od, 1, 100'000), 10'000);  // server 1's first ejection
  EXPECT_EQ(od.timesEjected(0), 2u);
  EXPECT_EQ(od.timesEjected(1), 1u);
}

TEST(Outlier, ExpireReturnsExactlyTheDueServers) {
  OutlierDetector od(params(100, 10'000, 300'000), 5);
  ASSERT_TRUE(od.onFailureStreak(3, 1'000));  // until 11'000
  ASSERT_TRUE(od.onFailureStreak(1, 2'000));  // until 12'000
  ASSERT_TRUE(od.onFailureStreak(4, 5'000));  // until 15'000
  EXPECT_TRUE(od.expire(10'999).empty());
  EXPECT_EQ(od.ejectedCount(), 3u);
  EXPECT_EQ(od.expire(12'000), (Servers{1, 3}));  // both due, boundary inclusive
  EXPECT_FALSE(od.ejected(1));
  EXPECT_FALSE(od.ejected(3));
  EXPECT_TRUE(od.ejected(4));
  EXPECT_EQ(od.ejectedCount(), 1u);
  EXPECT_TRUE(od.expire(12'000).empty());  // not returned twice
  EXPECT_TRUE(od.expire(14'999).empty());
  EXPECT_EQ(od.expire(15'000), Servers{4});
  EXPECT_EQ(od.ejectedCount(), 0u);
  EXPECT_TRUE(od.expire(1'000'000).empty());
}

TEST(Outlier, ExpireIsInclusiveOfTheDeadline) {
  OutlierDetector od(params(100, 10'000, 300'000), 1);
  ASSERT_TRUE(od.onFailureStreak(0, 0));
  EXPECT_TRUE(od.expire(9'999).empty());
  EXPECT_TRUE(od.ejected(0));
  EXPECT_EQ(od.expire(10'000), Servers{0});
  EXPECT_FALSE(od.ejected(0));
}

TEST(Outlier, ExpireKeepsTimesEjected) {
  OutlierDetector od(params(), 1);
  ASSERT_TRUE(od.onFailureStreak(0, 0));
  od.expire(1'000'000);
  EXPECT_FALSE(od.ejected(0));
  EXPECT_EQ(od.timesEjected(0), 1u);
}

TEST(Outlier, NextExpiryIsTheEarliestDeadline) {
  OutlierDetector od(params(100, 10'000, 300'000), 4);
  EXPECT_EQ(od.nextExpiry(), -1);
  ASSERT_TRUE(od.onFailureStreak(2, 5'000));  // until 15'000
  EXPECT_EQ(od.nextExpiry(), 15'000);
  ASSERT_TRUE(od.onFailureStreak(0, 3'000));  // until 13'000: earlier, though ejected later
  EXPECT_EQ(od.nextExpiry(), 13'000);
  ASSERT_TRUE(od.onFailureStreak(1, 9'000));  // until 19'000
  EXPECT_EQ(od.nextExpiry(), 13'000);
  EXPECT_EQ(od.expire(13'000), Servers{0});
  EXPECT_EQ(od.nextExpiry(), 15'000);
  EXPECT_EQ(od.expire(15'000), Servers{2});
  EXPECT_EQ(od.nextExpiry(), 19'000);
  EXPECT_EQ(od.expire(19'000), Servers{1});
  EXPECT_EQ(od.nextExpiry(), -1);
}

TEST(Outlier, NextExpiryIgnoresEndedEjectionsOfRepeatOffenders) {
  OutlierDetector od(params(100, 10'000, 300'000), 2);
  ASSERT_TRUE(od.onFailureStreak(0, 0));  // until 10'000
  od.expire(10'000);
  ASSERT_TRUE(od.onFailureStreak(1, 20'000));  // until 30'000
  EXPECT_EQ(od.nextExpiry(), 30'000);          // server 0's old deadline is not reported
}

TEST(Outlier, ExpiredServerCanBeEjectedAgain) {
  OutlierDetector od(params(100, 10'000, 300'000), 1);
  ASSERT_TRUE(od.onFailureStreak(0, 0));
  od.expire(10'000);
  EXPECT_TRUE(od.onFailureStreak(0, 10'001));
  EXPECT_TRUE(od.ejected(0));
  EXPECT_EQ(od.nextExpiry(), 10'001 + 20'000);
}

// How many of `pool` servers can be ejected at once with `percent`, ejecting them in order.
size_t maxConcurrentEjections(size_t pool, uint32_t percent) {
  OutlierDetector od(params(percent), pool);
  size_t ejected = 0;
  for (size_t s = 0; s < pool; ++s) {
    if (od.onFailureStreak(s, 1'000)) ++ejected;
  }
  if (ejected != od.ejectedCount()) return 9999;
  return ejected;
}

struct CapCase {
  size_t pool;
  uint32_t percent;
  size_t expected;
};

class OutlierCap : public ::testing::TestWithParam<CapCase> {};

TEST_P(OutlierCap, MaxEjectionPercentIsNeverExceededButOneIsAlwaysAllowed) {
  const CapCase& c = GetParam();
  EXPECT_EQ(maxConcurrentEjections(c.pool, c.percent), c.expected)
      << "pool=" << c.pool << " percent=" << c.percent;
}

INSTANTIATE_TEST_SUITE_P(
    Pools, OutlierCap,
    ::testing::Values(
        // A pool of two or three can always eject its one dead server, whatever the percent.
        CapCase{2, 10, 1}, CapCase{2, 50, 1}, CapCase{2, 100, 2},
        CapCase{3, 10, 1}, CapCase{3, 50, 1}, CapCase{3, 100, 3},
        CapCase{10, 10, 1}, CapCase{10, 50, 5}, CapCase{10, 100, 10},
        CapCase{10, 0, 1}, CapCase{10, 30, 3}, CapCase{4, 50, 2}, CapCase{1, 10, 1}),
    [](const ::testing::TestParamInfo<CapCase>& i) {
      return "pool" + std::to_string(i.param.pool) + "_pct" + std::to_string(i.param.percent);
    });

TEST(Outlier, RefusedEjectionLeavesNoTrace) {
  OutlierDetector od(params(10), 10);
  ASSERT_TRUE(od.onFailureStreak(0, 1'000));
  EXPECT_FALSE(od.onFailureStreak(1, 2'000));
  EXPECT_FALSE(od.ejected(1));
  EXPECT_EQ(od.timesEjected(1), 0u);  // a refusal is not an ejection
  EXPECT_EQ(od.nextExpiry(), 11'000);
}

TEST(Outlier, CapFreesUpWhenAnEjectionEnds) {
  OutlierDetector od(params(50, 10'000, 300'000), 4);
  ASSERT_TRUE(od.onFailureStreak(0, 0));      // until 10'000
  ASSERT_TRUE(od.onFailureStreak(1, 5'000));  // until 15'000
  EXPECT_FALSE(od.onFailureStreak(2, 6'000));  // 3 of 4 > 50 %
  EXPECT_EQ(od.expire(10'000), Servers{0});
  EXPECT_TRUE(od.onFailureStreak(2, 10'000));
  EXPECT_FALSE(od.onFailureStreak(3, 10'000));
  EXPECT_EQ(od.ejectedCount(), 2u);
}

TEST(Outlier, ResizeChangesTheCapBase) {
  OutlierDetector od(params(50), 2);
  ASSERT_TRUE(od.onFailureStreak(0, 0));
  EXPECT_FALSE(od.onFailureStreak(1, 0));
  od.resize(4);  // two servers join: 2 of 4 is within 50 %
  EXPECT_FALSE(od.ejected(2));
  EXPECT_FALSE(od.ejected(3));
  EXPECT_EQ(od.timesEjected(3), 0u);
  EXPECT_TRUE(od.onFailureStreak(1, 0));
  EXPECT_FALSE(od.onFailureStreak(2, 0));
  EXPECT_EQ(od.ejectedCount(), 2u);
}

TEST(Outlier, ResizeDownDropsTheLeavingServers) {
  OutlierDetector od(params(100, 10'000, 300'000), 3);
  ASSERT_TRUE(od.onFailureStreak(0, 0));       // until 10'000
  ASSERT_TRUE(od.onFailureStreak(2, 1'000));   // until 11'000
  od.resize(2);
  EXPECT_EQ(od.ejectedCount(), 1u);
  EXPECT_FALSE(od.onFailureStreak(2, 2'000));  // gone
  EXPECT_EQ(od.nextExpiry(), 10'000);
  EXPECT_EQ(od.expire(20'000), Servers{0});
}

}  // namespace
}  // namespace tandem::health
