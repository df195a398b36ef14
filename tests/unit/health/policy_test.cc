// Slow start, weight scaling, panic and the retry budget.
#include "health/policy.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>

namespace tandem::health {
namespace {

constexpr int64_t kUp = 1'000'000;  // a server came up at t = 1000 s
constexpr int64_t kRamp = 10'000;   // slow_start: 10s

TEST(SlowStart, StartsAtTenPercent) { EXPECT_EQ(slowStartPermille(kUp, kUp, kRamp), 100u); }

TEST(SlowStart, EndsAtFullWeight) {
  EXPECT_EQ(slowStartPermille(kUp + kRamp, kUp, kRamp), 1000u);
  EXPECT_EQ(slowStartPermille(kUp + kRamp + 1, kUp, kRamp), 1000u);
  EXPECT_EQ(slowStartPermille(kUp + 100 * kRamp, kUp, kRamp), 1000u);
}

TEST(SlowStart, RampIsLinear) {
  EXPECT_EQ(slowStartPermille(kUp + kRamp / 2, kUp, kRamp), 550u);      // middle
  EXPECT_EQ(slowStartPermille(kUp + kRamp / 4, kUp, kRamp), 325u);      // 100 + 900/4
  EXPECT_EQ(slowStartPermille(kUp + kRamp * 3 / 4, kUp, kRamp), 775u);
  EXPECT_EQ(slowStartPermille(kUp + 1'000, kUp, kRamp), 190u);
  EXPECT_EQ(slowStartPermille(kUp + kRamp - 1, kUp, kRamp), 999u);     // just before the end
  EXPECT_EQ(slowStartPermille(kUp + 1, kUp, kRamp), 100u);             // rounds down
}

TEST(SlowStart, RampIsMonotonicAndWithinBounds) {
  uint32_t prev = 0;
  for (int64_t t = kUp - 100; t <= kUp + kRamp + 100; t += 7) {
    uint32_t p = slowStartPermille(t, kUp, kRamp);
    EXPECT_GE(p, 100u) << "t=" << t;
    EXPECT_LE(p, 1000u) << "t=" << t;
    EXPECT_GE(p, prev) << "t=" << t;
    prev = p;
  }
  EXPECT_EQ(prev, 1000u);
}

TEST(SlowStart, BeforeUpSinceIsTheStartingFactor) {
  // A clock read slightly before the up-transition was stamped must not yield an underflow.
  EXPECT_EQ(slowStartPermille(kUp - 1, kUp, kRamp), 100u);
  EXPECT_EQ(slowStartPermille(kUp - kRamp * 5, kUp, kRamp), 100u);
}

TEST(SlowStart, ZeroDurationIsOff) {
  EXPECT_EQ(slowStartPermille(kUp, kUp, 0), 1000u);
  EXPECT_EQ(slowStartPermille(kUp - 5, kUp, 0), 1000u);
  EXPECT_EQ(slowStartPermille(kUp, kUp, -1), 1000u);
}

TEST(SlowStart, ShortRampsWork) {
  EXPECT_EQ(slowStartPermille(kUp, kUp, 1), 100u);
  EXPECT_EQ(slowStartPermille(kUp + 1, kUp, 1), 1000u);
  EXPECT_EQ(slowStartPermille(kUp + 1, kUp, 2), 550u);
}

TEST(SlowStart, LongRampDoesNotOverflow) {
  constexpr int64_t kDay = 86'400'000;
  EXPECT_EQ(slowStartPermille(kUp + kDay / 2, kUp, kDay), 550u);
}

TEST(SlowStart, UnsetUpSinceMeansFullWeight) {
  // up_since <= 0 is "no up-transition recorded" (a server up since boot is not ramped).
  EXPECT_EQ(slowStartPermille(5, 0, kRamp), 1000u);
  EXPECT_EQ(slowStartPermille(5, -1, kRamp), 1000u);
}

TEST(ScaledWeight, ScalesByPermille) {
  EXPECT_EQ(scaledWeight(100, 1000), 100u);
  EXPECT_EQ(scaledWeight(100, 550), 55u);
  EXPECT_EQ(scaledWeight(100, 100), 10u);
  EXPECT_EQ(scaledWeight(256, 500), 128u);
  EXPECT_EQ(scaledWeight(7, 500), 3u);  // rounds down
}

TEST(ScaledWeight, NeverZero) {
  EXPECT_EQ(scaledWeight(1, 100), 1u);
  EXPECT_EQ(scaledWeight(1, 999), 1u);
  EXPECT_EQ(scaledWeight(9, 100), 1u);  // 0.9 -> still 1
  EXPECT_EQ(scaledWeight(5, 0), 1u);
  for (uint32_t w = 1; w <= 256; ++w) {
    for (uint32_t p = 100; p <= 1000; p += 50) EXPECT_GE(scaledWeight(w, p), 1u);
  }
}

TEST(ScaledWeight, LargeWeightDoesNotOverflow) {
  EXPECT_EQ(scaledWeight(4'000'000'000u, 1000), 4'000'000'000u);
  EXPECT_EQ(scaledWeight(4'000'000'000u, 500), 2'000'000'000u);
}

TEST(Panic, FewerHealthyThanThresholdIsPanic) {
  EXPECT_TRUE(inPanic(4, 10, 50));
  EXPECT_TRUE(inPanic(0, 10, 50));
  EXPECT_TRUE(inPanic(0, 1, 1));
  EXPECT_FALSE(inPanic(6, 10, 50));
  EXPECT_FALSE(inPanic(10, 10, 50));
}

TEST(Panic, ExactlyAtThresholdIsNotPanic) {
  EXPECT_FALSE(inPanic(5, 10, 50));
  EXPECT_FALSE(inPanic(1, 2, 50));
  EXPECT_TRUE(inPanic(0, 2, 50));
  EXPECT_FALSE(inPanic(1, 4, 25));
  EXPECT_TRUE(inPanic(0, 4, 25));
}

TEST(Panic, ThresholdBetweenServerCounts) {
  // 1 of 3 healthy is 33.3 %: below 34, above 33.
  EXPECT_TRUE(inPanic(1, 3, 34));
  EXPECT_FALSE(inPanic(1, 3, 33));
  EXPECT_TRUE(inPanic(2, 3, 67));
  EXPECT_FALSE(inPanic(2, 3, 66));
}

TEST(Panic, ZeroThresholdIsOff) {
  EXPECT_FALSE(inPanic(0, 10, 0));
  EXPECT_FALSE(inPanic(0, 1, 0));
}

TEST(Panic, EmptyPoolIsNotPanic) {
  EXPECT_FALSE(inPanic(0, 0, 50));
  EXPECT_FALSE(inPanic(0, 0, 100));
}

TEST(Panic, HundredPercentPanicsUnlessAllHealthy) {
  EXPECT_FALSE(inPanic(10, 10, 100));
  EXPECT_TRUE(inPanic(9, 10, 100));
}

// Acquires until refused; returns how many were granted.
uint64_t fill(RetryBudget& b, uint64_t active_requests) {
  uint64_t n = 0;
  while (b.tryAcquire(active_requests)) {
    if (++n > 1'000'000) break;  // a broken cap must not hang the test
  }
  return n;
}

TEST(RetryBudget, MinConcurrencyWhenIdle) {
  RetryBudget b(20, 3);
  EXPECT_EQ(fill(b, 0), 3u);
  EXPECT_EQ(b.active(), 3u);
}

TEST(RetryBudget, MinConcurrencyWhenPercentIsSmaller) {
  RetryBudget b(20, 3);
  EXPECT_EQ(fill(b, 10), 3u);  // 20 % of 10 = 2 < 3
}

TEST(RetryBudget, PercentOfActiveRequests) {
  RetryBudget b(20, 3);
  EXPECT_EQ(fill(b, 100), 20u);
  EXPECT_EQ(b.active(), 20u);
}

TEST(RetryBudget, PercentRoundsDown) {
  RetryBudget b(20, 0);
  EXPECT_EQ(fill(b, 24), 4u);  // 4.8
}

TEST(RetryBudget, ZeroPercentAndZeroMinAllowsNoRetry) {
  RetryBudget b(0, 0);
  EXPECT_FALSE(b.tryAcquire(1'000));
  EXPECT_EQ(b.active(), 0u);
}

TEST(RetryBudget, HundredPercent) {
  RetryBudget b(100, 1);
  EXPECT_EQ(fill(b, 50), 50u);
}

TEST(RetryBudget, CapFollowsTheCurrentLoad) {
  RetryBudget b(10, 2);
  EXPECT_EQ(fill(b, 100), 10u);
  // Load drops: the retries in flight stay, but no new one is allowed until below the new cap.
  EXPECT_FALSE(b.tryAcquire(50));  // cap 5, 10 in flight
  for (int i = 0; i < 5; ++i) b.release();
  EXPECT_FALSE(b.tryAcquire(50));  // 5 in flight, cap 5
  b.release();
  EXPECT_TRUE(b.tryAcquire(50));
  EXPECT_EQ(b.active(), 5u);
  // Load rises: more room.
  EXPECT_EQ(fill(b, 200), 15u);
  EXPECT_EQ(b.active(), 20u);
}

TEST(RetryBudget, ReleaseMakesRoom) {
  RetryBudget b(20, 1);
  EXPECT_TRUE(b.tryAcquire(0));
  EXPECT_FALSE(b.tryAcquire(0));
  b.release();
  EXPECT_EQ(b.active(), 0u);
  EXPECT_TRUE(b.tryAcquire(0));
  EXPECT_EQ(b.active(), 1u);
}

TEST(RetryBudget, ReleaseWithNothingInFlightDoesNotUnderflow) {
  RetryBudget b(20, 1);
  b.release();
  b.release();
  EXPECT_EQ(b.active(), 0u);
  EXPECT_TRUE(b.tryAcquire(0));
  EXPECT_FALSE(b.tryAcquire(0));  // an extra release earned no credit
}

TEST(RetryBudget, RefusalDoesNotCount) {
  RetryBudget b(0, 2);
  EXPECT_EQ(fill(b, 0), 2u);
  EXPECT_FALSE(b.tryAcquire(0));
  EXPECT_FALSE(b.tryAcquire(0));
  EXPECT_EQ(b.active(), 2u);
}

}  // namespace
}  // namespace tandem::health
