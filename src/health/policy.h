#pragma once
// Small pure policies of the failure handling: slow start, panic, retry budget.
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace tandem::health {

// Slow start: a server that (re)joins ramps its effective weight linearly from 10% to 100% over
// `duration_ms`. Returns the factor in permille (100..1000). `up_since_ms` <= 0 means "no ramp in
// progress" (monotonic clocks are far from 0; tests must not start their clock at 0).
inline uint32_t slowStartPermille(int64_t now_ms, int64_t up_since_ms, int64_t duration_ms) {
  if (duration_ms <= 0 || up_since_ms <= 0 || now_ms >= up_since_ms + duration_ms) return 1000;
  int64_t elapsed = std::max<int64_t>(0, now_ms - up_since_ms);
  return static_cast<uint32_t>(100 + 900 * elapsed / duration_ms);
}

inline uint32_t scaledWeight(uint32_t weight, uint32_t permille) {
  return std::max<uint32_t>(1, static_cast<uint32_t>(uint64_t{weight} * permille / 1000));
}

// Panic: when fewer than `threshold_percent` of the servers are healthy, health is ignored and
// traffic spreads over all of them (better some errors than overloading the few survivors).
inline bool inPanic(size_t healthy, size_t total, uint32_t threshold_percent) {
  return total > 0 && threshold_percent > 0 && healthy * 100 < total * threshold_percent;
}

// Retry budget (Envoy's): retries in flight may be at most `percent` of the requests in flight,
// but at least `min_concurrency`, so that retries cannot multiply the load of an outage.
class RetryBudget {
 public:
  RetryBudget(uint32_t percent, uint32_t min_concurrency)
      : percent_(percent), min_(min_concurrency) {}
  bool tryAcquire(uint64_t active_requests) {
    uint64_t cap = std::max<uint64_t>(min_, active_requests * percent_ / 100);
    if (active_ >= cap) return false;
    ++active_;
    return true;
  }
  void release() {
    if (active_ > 0) --active_;
  }
  uint64_t active() const { return active_; }

 private:
  uint32_t percent_;
  uint32_t min_;
  uint64_t active_ = 0;
};

}  // namespace tandem::health
