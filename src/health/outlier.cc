#include "health/outlier.h"

#include <algorithm>

namespace tandem::health {

size_t OutlierDetector::ejectedCount() const {
  return static_cast<size_t>(
      std::count_if(s_.begin(), s_.end(), [](const State& s) { return s.ejected; }));
}

bool OutlierDetector::onFailureStreak(size_t server, int64_t now_ms) {
  if (p_.consecutive_failures == 0 || server >= s_.size() || s_[server].ejected) return false;
  // The cap counts the server about to be ejected; at least one ejection is always allowed
  // (Envoy's rule), otherwise a pool of two could never eject a dead server.
  size_t after = ejectedCount() + 1;
  if (after > 1 && after * 100 > s_.size() * p_.max_ejection_percent) return false;
  State& st = s_[server];
  ++st.times;
  int64_t d = std::min<int64_t>(p_.base_ejection_ms * st.times, p_.max_ejection_ms);
  st.ejected = true;
  st.until_ms = now_ms + d;
  return true;
}

std::vector<size_t> OutlierDetector::expire(int64_t now_ms) {
  std::vector<size_t> back;
  for (size_t i = 0; i < s_.size(); ++i) {
    if (s_[i].ejected && s_[i].until_ms <= now_ms) {
      s_[i].ejected = false;
      back.push_back(i);
    }
  }
  return back;
}

int64_t OutlierDetector::nextExpiry() const {
  int64_t best = -1;
  for (const State& s : s_) {
    if (s.ejected && (best < 0 || s.until_ms < best)) best = s.until_ms;
  }
  return best;
}

}  // namespace tandem::health
