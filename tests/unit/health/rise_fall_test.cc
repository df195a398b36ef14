// RiseFall: HAProxy's rise/fall verdict of active checks.
#include "health/rise_fall.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace tandem::health {
namespace {

// Feeds `n` identical results and returns the 1-based index of the one that flipped the verdict,
// or 0 if none did.
uint32_t flipAt(RiseFall& rf, bool success, uint32_t n) {
  for (uint32_t i = 1; i <= n; ++i) {
    if (rf.record(success)) return i;
  }
  return 0;
}

TEST(RiseFall, InitialVerdictIsTheGivenOne) {
  EXPECT_TRUE(RiseFall(2, 3, true).up());
  EXPECT_FALSE(RiseFall(2, 3, false).up());
  EXPECT_FALSE(RiseFall(2, 3, true).changing());
  EXPECT_FALSE(RiseFall(2, 3, false).changing());
}

TEST(RiseFall, UpServerGoesDownOnExactlyFallFailures) {
  for (uint32_t fall : {1u, 2u, 3u, 7u}) {
    RiseFall rf(2, fall, true);
    EXPECT_EQ(flipAt(rf, false, fall + 5), fall) << "fall=" << fall;
    EXPECT_FALSE(rf.up()) << "fall=" << fall;
  }
}

TEST(RiseFall, DownServerComesUpOnExactlyRiseSuccesses) {
  for (uint32_t rise : {1u, 2u, 4u, 10u}) {
    RiseFall rf(rise, 3, false);
    EXPECT_EQ(flipAt(rf, true, rise + 5), rise) << "rise=" << rise;
    EXPECT_TRUE(rf.up()) << "rise=" << rise;
  }
}

TEST(RiseFall, RiseAndFallAreNotSwapped) {
  // rise=2, fall=5: going down needs 5 failures, coming back needs 2 successes.
  RiseFall rf(2, 5, true);
  EXPECT_EQ(flipAt(rf, false, 10), 5u);
  EXPECT_EQ(flipAt(rf, true, 10), 2u);
  EXPECT_EQ(flipAt(rf, false, 10), 5u);
}

TEST(RiseFall, ZeroRiseOrFallMeansOne) {
  RiseFall rf(0, 0, true);
  EXPECT_TRUE(rf.record(false));
  EXPECT_FALSE(rf.up());
  EXPECT_TRUE(rf.record(true));
  EXPECT_TRUE(rf.up());
}

TEST(RiseFall, AgreeingResultsNeverFlip) {
  RiseFall up(1, 1, true);
  RiseFall down(1, 1, false);
  for (int i = 0; i < 20; ++i) {
    EXPECT_FALSE(up.record(true));
    EXPECT_FALSE(down.record(false));
  }
  EXPECT_TRUE(up.up());
  EXPECT_FALSE(down.up());
  EXPECT_FALSE(up.changing());
  EXPECT_FALSE(down.changing());
}

TEST(RiseFall, AgreeingResultResetsTheFallStreak) {
  RiseFall rf(2, 3, true);
  EXPECT_FALSE(rf.record(false));
  EXPECT_FALSE(rf.record(false));
  EXPECT_FALSE(rf.record(true));  // streak of 2 forgotten
  EXPECT_FALSE(rf.record(false));
  EXPECT_FALSE(rf.record(false));
  EXPECT_TRUE(rf.up());
  EXPECT_TRUE(rf.record(false));  // third failure of the new streak
  EXPECT_FALSE(rf.up());
}

TEST(RiseFall, AgreeingResultResetsTheRiseStreak) {
  RiseFall rf(3, 2, false);
  EXPECT_FALSE(rf.record(true));
  EXPECT_FALSE(rf.record(true));
  EXPECT_FALSE(rf.record(false));  // streak of 2 forgotten
  EXPECT_EQ(flipAt(rf, true, 10), 3u);
  EXPECT_TRUE(rf.up());
}

TEST(RiseFall, FlipStartsAFreshStreak) {
  // After going down, a single success must not count towards anything but the rise streak, and
  // failures left over from the fall streak must not carry into it.
  RiseFall rf(2, 2, true);
  EXPECT_EQ(flipAt(rf, false, 5), 2u);
  EXPECT_FALSE(rf.changing());
  EXPECT_FALSE(rf.record(false));  // agrees with "down"
  EXPECT_FALSE(rf.record(true));
  EXPECT_TRUE(rf.record(true));
  EXPECT_TRUE(rf.up());
  EXPECT_FALSE(rf.changing());
}

TEST(RiseFall, ChangingTracksAStreakUnderWay) {
  RiseFall rf(3, 3, true);
  EXPECT_FALSE(rf.changing());
  rf.record(false);
  EXPECT_TRUE(rf.changing());
  rf.record(false);
  EXPECT_TRUE(rf.changing());
  rf.record(true);  // agreeing result ends the streak
  EXPECT_FALSE(rf.changing());
  rf.record(false);
  rf.record(false);
  EXPECT_TRUE(rf.changing());
  EXPECT_TRUE(rf.record(false));  // flip
  EXPECT_FALSE(rf.changing());
  rf.record(true);
  EXPECT_TRUE(rf.changing());
}

TEST(RiseFall, ChangingIsFalseWhenOneResultFlips) {
  RiseFall rf(1, 1, true);
  EXPECT_TRUE(rf.record(false));
  EXPECT_FALSE(rf.changing());
  EXPECT_TRUE(rf.record(true));
  EXPECT_FALSE(rf.changing());
}

TEST(RiseFall, SetForcesTheVerdictAndClearsTheStreak) {
  RiseFall rf(3, 3, true);
  rf.record(false);
  rf.record(false);
  ASSERT_TRUE(rf.changing());
  rf.set(false);
  EXPECT_FALSE(rf.up());
  EXPECT_FALSE(rf.changing());
  // A full rise streak is now needed: the two failures did not leave anything behind.
  EXPECT_EQ(flipAt(rf, true, 10), 3u);
  EXPECT_TRUE(rf.up());
}

TEST(RiseFall, SetToTheSameVerdictStillClearsTheStreak) {
  RiseFall rf(3, 3, true);
  rf.record(false);
  rf.record(false);
  rf.set(true);
  EXPECT_TRUE(rf.up());
  EXPECT_FALSE(rf.changing());
  EXPECT_EQ(flipAt(rf, false, 10), 3u);  // not 1: the streak restarted
}

TEST(RiseFall, SetUpThenFallNeedsAFullStreak) {
  RiseFall rf(2, 4, false);
  rf.record(true);
  rf.set(true);
  EXPECT_TRUE(rf.up());
  EXPECT_EQ(flipAt(rf, false, 10), 4u);
}

}  // namespace
}  // namespace tandem::health
