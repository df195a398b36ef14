#pragma once
// Counters for the hot path. Each counter has exactly one writer (the worker that owns it) and any
// number of readers (the control thread summing them for /metrics). The writer does a relaxed
// load + store, which compiles to a plain increment: no locked instruction, no fence, no cache
// line bouncing between workers. Readers see a value that may lag by a few increments.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace tandem {

class Counter {
 public:
  void add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// Up and down (in-flight requests, open connections); summed across workers it is exact.
class Gauge {
 public:
  void add(int64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(int64_t n = 1) { add(-n); }
  int64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Latency buckets shared by every histogram (upper bounds in microseconds, 1-2.5-5 steps from
// 100 µs to 60 s). One fixed set keeps the scrape simple and lets histograms be added together.
inline constexpr std::array<uint64_t, 18> kLatencyBoundsUs{
    100,     250,     500,     1'000,     2'500,     5'000,     10'000,     25'000,     50'000,
    100'000, 250'000, 500'000, 1'000'000, 2'500'000, 5'000'000, 10'000'000, 30'000'000, 60'000'000};
inline constexpr size_t kLatencyBuckets = kLatencyBoundsUs.size() + 1;  // + the +Inf bucket

// Per-bucket counts (not cumulative); `sum_us` for the Prometheus _sum.
struct Histogram {
  std::array<Counter, kLatencyBuckets> buckets;
  Counter sum_us;

  void observe(uint64_t us) {
    size_t i = 0;
    while (i < kLatencyBoundsUs.size() && us > kLatencyBoundsUs[i]) ++i;
    buckets[i].add();
    sum_us.add(us);
  }
};

// A plain copy of a histogram (summed over workers, or a difference between two scrapes).
struct HistogramSnapshot {
  std::array<uint64_t, kLatencyBuckets> buckets{};
  uint64_t sum_us = 0;

  void addFrom(const Histogram& h) {
    for (size_t i = 0; i < kLatencyBuckets; ++i) buckets[i] += h.buckets[i].get();
    sum_us += h.sum_us.get();
  }
  uint64_t count() const {
    uint64_t n = 0;
    for (uint64_t b : buckets) n += b;
    return n;
  }
  // this - earlier (counts only grow, so every difference is >= 0 unless counters were reset).
  HistogramSnapshot minus(const HistogramSnapshot& earlier) const {
    HistogramSnapshot d;
    for (size_t i = 0; i < kLatencyBuckets; ++i) {
      d.buckets[i] = buckets[i] >= earlier.buckets[i] ? buckets[i] - earlier.buckets[i] : 0;
    }
    d.sum_us = sum_us >= earlier.sum_us ? sum_us - earlier.sum_us : 0;
    return d;
  }
  // The q-quantile (0..1) in microseconds, interpolated linearly inside its bucket as Prometheus'
  // histogram_quantile does; the +Inf bucket reports the largest finite bound. 0 when empty.
  double quantileUs(double q) const {
    const uint64_t total = count();
    if (total == 0) return 0;
    const double rank = q * static_cast<double>(total);
    uint64_t seen = 0;
    for (size_t i = 0; i < kLatencyBuckets; ++i) {
      if (buckets[i] == 0) continue;
      if (static_cast<double>(seen + buckets[i]) >= rank) {
        if (i == kLatencyBoundsUs.size()) return static_cast<double>(kLatencyBoundsUs.back());
        const double lo = i == 0 ? 0 : static_cast<double>(kLatencyBoundsUs[i - 1]);
        const double hi = static_cast<double>(kLatencyBoundsUs[i]);
        const double within = (rank - static_cast<double>(seen)) / static_cast<double>(buckets[i]);
        return lo + (hi - lo) * within;
      }
      seen += buckets[i];
    }
    return static_cast<double>(kLatencyBoundsUs.back());
  }
};

}  // namespace tandem
