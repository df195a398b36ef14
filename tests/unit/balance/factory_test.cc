#include <gtest/gtest.h>

#include "balance/balancer.h"
#include "test_util.h"

namespace tandem::balance {
namespace {

using testing::kAllAlgorithms;
using testing::specs;

TEST(Factory, KnowsEveryAlgorithmAndNamesIt) {
  Random rng(1);
  for (const auto& name : kAllAlgorithms) {
    EXPECT_TRUE(isKnownAlgorithm(name)) << name;
    auto b = makeBalancer(name, specs({1, 1}), {}, &rng);
    ASSERT_TRUE(b.has_value()) << name << ": " << b.error().message;
    EXPECT_EQ((*b)->name(), name);
  }
}

TEST(Factory, UnknownNameIsConfigError) {
  Random rng(1);
  for (std::string_view bad : {"", "roundrobin", "ROUND_ROBIN", "leastconn", "consistent"}) {
    EXPECT_FALSE(isKnownAlgorithm(bad)) << bad;
    EXPECT_FALSE(isHashAlgorithm(bad)) << bad;
    auto b = makeBalancer(bad, specs({1}), {}, &rng);
    ASSERT_FALSE(b.has_value()) << bad;
    EXPECT_EQ(b.error().source, ErrorSource::kConfig);
    EXPECT_NE(b.error().message.find("round_robin"), std::string::npos);  // lists known names
  }
}

TEST(Factory, HashAlgorithms) {
  EXPECT_TRUE(isHashAlgorithm("source_hash"));
  EXPECT_TRUE(isHashAlgorithm("ring_hash"));
  EXPECT_TRUE(isHashAlgorithm("maglev"));
  EXPECT_FALSE(isHashAlgorithm("round_robin"));
  EXPECT_FALSE(isHashAlgorithm("least_conn"));
  EXPECT_FALSE(isHashAlgorithm("p2c"));
  EXPECT_FALSE(isHashAlgorithm("random"));
}

TEST(Factory, MaglevTableSizeMustBePrimeAndLargerThanPool) {
  Random rng(1);
  for (uint32_t m : {0u, 1u, 4u, 65536u, 65535u, 100u}) {
    Options o;
    o.maglev_table_size = m;
    auto b = makeBalancer("maglev", specs({1, 1}), o, &rng);
    ASSERT_FALSE(b.has_value()) << m;
    EXPECT_EQ(b.error().source, ErrorSource::kConfig);
  }
  Options o;
  o.maglev_table_size = 3;  // prime, but not > 3 servers
  EXPECT_FALSE(makeBalancer("maglev", specs({1, 1, 1}), o, &rng).has_value());
  o.maglev_table_size = 5;
  EXPECT_TRUE(makeBalancer("maglev", specs({1, 1, 1}), o, &rng).has_value());
  o.maglev_table_size = 251;
  EXPECT_TRUE(makeBalancer("maglev", specs({1, 1, 1}), o, &rng).has_value());
}

TEST(Factory, RingPointsMustBePositive) {
  Options o;
  o.ring_points_per_weight = 0;
  auto b = makeBalancer("ring_hash", specs({1}), o, nullptr);
  ASSERT_FALSE(b.has_value());
  EXPECT_EQ(b.error().source, ErrorSource::kConfig);
}

TEST(Factory, ConsistentHashRejectsDuplicateNames) {
  for (std::string_view name : {"ring_hash", "maglev"}) {
    auto b = makeBalancer(name, {{"a", 1}, {"b", 1}, {"a", 2}}, {}, nullptr);
    ASSERT_FALSE(b.has_value()) << name;
    EXPECT_EQ(b.error().source, ErrorSource::kConfig);
  }
}

TEST(Factory, RandomAlgorithmsNeedAnEngine) {
  EXPECT_FALSE(makeBalancer("p2c", specs({1}), {}, nullptr).has_value());
  EXPECT_FALSE(makeBalancer("random", specs({1}), {}, nullptr).has_value());
  // The others never draw and accept none.
  for (std::string_view name :
       {"round_robin", "least_conn", "source_hash", "ring_hash", "maglev"}) {
    EXPECT_TRUE(makeBalancer(name, specs({1}), {}, nullptr).has_value()) << name;
  }
}

}  // namespace
}  // namespace tandem::balance
