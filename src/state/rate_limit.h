#pragma once
// Cluster-wide rate limiting over the shared table: a sliding window (two fixed windows, the
// previous one weighted by how much of it still overlaps the sliding one). Each node counts the
// requests it allowed in a G-counter per (key, window); the table sums every node's count, so the
// limit holds across the fleet within a replication round trip.
//
// `rate` r per second with `burst` b maps to a window W = max(1 s, b / r) allowing r x W
// requests: bursts of about b, a sustained r. The window is at least a second because the counts
// of the other nodes arrive a replication round trip late; a shorter one would be dominated by it.
#include <cstdint>
#include <string_view>

#include "state/table.h"

namespace tandem::state {

struct RateVerdict {
  bool allowed = true;
  int retry_after_s = 0;  // when refused: seconds until the window has room again (>= 1)
};

class RateLimiter {
 public:
  RateLimiter(double rate_per_s, uint32_t burst);
  // Counts the request if allowed. `key` identifies the limited thing (backend + client key).
  RateVerdict check(Table& table, std::string_view key, int64_t now_us) const;

  int64_t windowMs() const { return window_ms_; }
  double limit() const { return limit_; }

 private:
  int64_t window_ms_;
  double limit_;  // requests per window
};

}  // namespace tandem::state
