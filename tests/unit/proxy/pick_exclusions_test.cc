#include <gtest/gtest.h>

#include "proxy/worker.h"

namespace tandem::proxy {
namespace {

TEST(PickExclusions, CoversSmallAndLargePools) {
  PickExclusions ex;
  for (int i : {0, 5, 63, 64, 127, 128, 1000}) {
    EXPECT_FALSE(ex.has(i)) << i;
    ex.add(i);
    EXPECT_TRUE(ex.has(i)) << i;
  }
  for (int i : {1, 62, 65, 126, 129, 999, 5000}) EXPECT_FALSE(ex.has(i)) << i;
  EXPECT_TRUE(PickExclusions{}.big.empty());  // small pools never allocate
  ex.add(-1);  // "no server" is ignored
  EXPECT_FALSE(ex.has(2));
}

}  // namespace
}  // namespace tandem::proxy
