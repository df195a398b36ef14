// Single-writer counters and latency histograms.
#include "core/stats.h"

#include <gtest/gtest.h>

#include <thread>

namespace tandem {
namespace {

TEST(Counter, AddsAndReadsFromAnotherThread) {
  Counter c;
  std::thread writer([&] {
    for (int i = 0; i < 100000; ++i) c.add();
  });
  uint64_t last = 0;
  for (int i = 0; i < 1000; ++i) {
    uint64_t now = c.get();
    EXPECT_GE(now, last);  // a reader never sees the count go back
    last = now;
  }
  writer.join();
  EXPECT_EQ(c.get(), 100000u);
}

TEST(Gauge, UpAndDown) {
  Gauge g;
  g.add(3);
  g.sub();
  EXPECT_EQ(g.get(), 2);
  g.sub(5);
  EXPECT_EQ(g.get(), -3);  // per-worker gauges may go negative; only their sum means something
}

TEST(Histogram, BucketsByUpperBound) {
  Histogram h;
  h.observe(0);        // <= 100 us
  h.observe(100);      // <= 100 us (bounds are inclusive, as Prometheus' le)
  h.observe(101);      // <= 250 us
  h.observe(60'000'000);
  h.observe(60'000'001);  // +Inf
  HistogramSnapshot s;
  s.addFrom(h);
  EXPECT_EQ(s.buckets[0], 2u);
  EXPECT_EQ(s.buckets[1], 1u);
  EXPECT_EQ(s.buckets[kLatencyBoundsUs.size() - 1], 1u);
  EXPECT_EQ(s.buckets[kLatencyBoundsUs.size()], 1u);
  EXPECT_EQ(s.count(), 5u);
  EXPECT_EQ(s.sum_us, 0u + 100 + 101 + 60'000'000 + 60'000'001);
}

TEST(Histogram, QuantilesInterpolateInsideTheBucket) {
  HistogramSnapshot s;
  EXPECT_EQ(s.quantileUs(0.99), 0);  // empty
  // 100 observations in (1 ms, 2.5 ms]: the median is half way through that bucket.
  s.buckets[4] = 100;
  EXPECT_DOUBLE_EQ(s.quantileUs(0.5), 1000 + 1500 * 0.5);
  EXPECT_DOUBLE_EQ(s.quantileUs(1.0), 2500);
  // 99 fast, 1 very slow: p50 stays fast, p99 is at the fast bucket's top, p99.5 is slow.
  HistogramSnapshot t;
  t.buckets[0] = 99;
  t.buckets[12] = 1;  // (500 ms, 1 s]
  EXPECT_LE(t.quantileUs(0.5), 100);
  EXPECT_LE(t.quantileUs(0.99), 100);
  EXPECT_GT(t.quantileUs(0.995), 500'000);
  // Only +Inf: the largest finite bound.
  HistogramSnapshot inf;
  inf.buckets[kLatencyBoundsUs.size()] = 3;
  EXPECT_DOUBLE_EQ(inf.quantileUs(0.5), 60'000'000);
}

TEST(Histogram, MinusGivesTheWindow) {
  HistogramSnapshot a, b;
  a.buckets[1] = 5;
  a.sum_us = 1000;
  b.buckets[1] = 8;
  b.buckets[3] = 2;
  b.sum_us = 3000;
  HistogramSnapshot d = b.minus(a);
  EXPECT_EQ(d.buckets[1], 3u);
  EXPECT_EQ(d.buckets[3], 2u);
  EXPECT_EQ(d.sum_us, 2000u);
  EXPECT_EQ(a.minus(b).count(), 0u);  // never negative
}

}  // namespace
}  // namespace tandem
