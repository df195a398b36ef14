// Exact sequences of the deterministic (or nearly) algorithms.
#include <gtest/gtest.h>

#include <string>

#include "balance/balancer.h"
#include "test_util.h"

namespace tandem::balance {
namespace {

using testing::make;
using testing::Pool;
using testing::specs;

std::string sequence(Balancer& b, const Pool& pool, int n) {
  std::string out;
  for (int k = 0; k < n; ++k) {
    const int s = b.pick(pool.ctx());
    out += s == kNoServer ? '-' : static_cast<char>('a' + s);
  }
  return out;
}

TEST(RoundRobin, EqualWeightsRotateInOrder) {
  auto b = make("round_robin", specs({1, 1, 1}), nullptr);
  Pool pool(3);
  EXPECT_EQ(sequence(*b, pool, 9), "abcabcabc");
}

TEST(RoundRobin, SmoothInterleaveAsNginx) {
  // NGINX's documented sequence for weights 5, 1, 1 (ngx_http_upstream_round_robin.c).
  auto b = make("round_robin", specs({5, 1, 1}), nullptr);
  Pool pool(3);
  EXPECT_EQ(sequence(*b, pool, 14), "aabacaaaabacaa");
}

TEST(RoundRobin, SkipsIneligibleAndKeepsRotating) {
  auto b = make("round_robin", specs({1, 1, 1, 1}), nullptr);
  Pool pool(4);
  pool.eligible[1] = 0;
  EXPECT_EQ(sequence(*b, pool, 6), "acdacd");
  pool.eligible[1] = 1;
  EXPECT_EQ(sequence(*b, pool, 8).size(), 8u);
}

TEST(LeastConn, PicksLowestLoadPerWeight) {
  auto b = make("least_conn", specs({1, 2, 1}), nullptr);
  Pool pool(3);
  pool.active = {2, 3, 1};  // 2/1, 3/2, 1/1 -> c
  EXPECT_EQ(b->pick(pool.ctx()), 2);
  pool.active = {2, 3, 2};  // 2, 1.5, 2 -> b
  EXPECT_EQ(b->pick(pool.ctx()), 1);
  pool.eligible[1] = 0;  // b is out: a and c tie at 2
  const int s = b->pick(pool.ctx());
  EXPECT_TRUE(s == 0 || s == 2);
}

TEST(LeastConn, TiesRotateInsteadOfFavouringFirst) {
  auto b = make("least_conn", specs({1, 1, 1}), nullptr);
  Pool pool(3);  // idle pool: every pick is a three-way tie
  EXPECT_EQ(sequence(*b, pool, 6), "abcabc");
  pool.active = {0, 5, 0};
  EXPECT_EQ(sequence(*b, pool, 4), "acac");
}

TEST(LeastConn, IdlePoolFollowsWeights) {
  auto b = make("least_conn", specs({5, 1, 1}), nullptr);
  Pool pool(3);
  EXPECT_EQ(sequence(*b, pool, 7), "aabacaa");
}

TEST(P2c, AvoidsTheLoadedServer) {
  Random rng(3);
  auto b = make("p2c", specs({1, 1}), &rng);
  Pool pool(2);
  pool.active = {10, 0};
  // With two servers both are always drawn, so the idle one always wins.
  for (int k = 0; k < 1000; ++k) EXPECT_EQ(b->pick(pool.ctx()), 1);
}

TEST(P2c, TiesAreRandomNotFirst) {
  Random rng(3);
  auto b = make("p2c", specs({1, 1}), &rng);
  Pool pool(2);
  int first = 0;
  for (int k = 0; k < 10'000; ++k) first += b->pick(pool.ctx()) == 0 ? 1 : 0;
  EXPECT_NEAR(first, 5000, 300);
}

TEST(P2c, SameSeedSameSequence) {
  Random rng1(42);
  Random rng2(42);
  auto a = make("p2c", specs({1, 2, 3, 4}), &rng1);
  auto b = make("p2c", specs({1, 2, 3, 4}), &rng2);
  Pool pool(4);
  pool.active = {1, 0, 2, 1};
  for (int k = 0; k < 1000; ++k) ASSERT_EQ(a->pick(pool.ctx()), b->pick(pool.ctx()));
}

}  // namespace
}  // namespace tandem::balance
