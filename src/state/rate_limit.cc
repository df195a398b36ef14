#include "state/rate_limit.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace tandem::state {

RateLimiter::RateLimiter(double rate_per_s, uint32_t burst) {
  const double r = std::max(rate_per_s, 1e-9);
  const double b = burst ? static_cast<double>(burst) : std::max(1.0, r);
  window_ms_ = std::max<int64_t>(1000, static_cast<int64_t>(std::ceil(b / r * 1000)));
  limit_ = std::max(1.0, r * static_cast<double>(window_ms_) / 1000);
}

RateVerdict RateLimiter::check(Table& table, std::string_view key, int64_t now_us) const {
  const int64_t now_ms = now_us / 1000;
  const int64_t w = now_ms / window_ms_;
  std::string k;
  k.reserve(key.size() + 24);
  k.append(key);
  k.push_back(kSep);
  const size_t base = k.size();
  k.append(std::to_string(w - 1));
  const double prev = static_cast<double>(table.total(Kind::kRate, k, now_ms));
  k.resize(base);
  k.append(std::to_string(w));
  const double curr = static_cast<double>(table.total(Kind::kRate, k, now_ms));
  const double into =
      static_cast<double>(now_ms - w * window_ms_) / static_cast<double>(window_ms_);
  const double estimate = prev * (1 - into) + curr;
  if (estimate + 1 > limit_ + 1e-9) {
    // Room comes back as the previous window slides out (or, if the current one alone is full,
    // when the next one starts).
    double wait_ms = static_cast<double>(window_ms_ - (now_ms - w * window_ms_));
    if (curr + 1 <= limit_ && prev > 0) {
      const double need = estimate + 1 - limit_;  // this much of prev must slide out
      wait_ms = std::min(wait_ms, need / prev * static_cast<double>(window_ms_));
    }
    return {false, std::max(1, static_cast<int>(std::ceil(wait_ms / 1000)))};
  }
  // Kept for two windows plus a margin: the next window still reads this one as "previous".
  table.add(Kind::kRate, k, 1, 2 * window_ms_ + 1000, now_us);
  return {true, 0};
}

}  // namespace tandem::state
