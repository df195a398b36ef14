#pragma once
// Passive outlier detection for one backend (Envoy's consecutive-failure ejection): a server whose
// requests fail `consecutive_failures` times in a row is ejected for base_ejection x times ejected
// (capped at max_ejection), but never more than max_ejection_percent of the pool at once.
// Pure logic on injected time; the control thread owns one per backend.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tandem::health {

struct OutlierParams {
  uint32_t consecutive_failures = 5;  // 0 = passive detection off
  int64_t base_ejection_ms = 30'000;
  int64_t max_ejection_ms = 300'000;
  uint32_t max_ejection_percent = 10;
};

class OutlierDetector {
 public:
  OutlierDetector(OutlierParams p, size_t servers) : p_(p), s_(servers) {}

  // A worker reports that `server` reached the consecutive-failure threshold. Returns true if the
  // server is now ejected (false: already ejected, detection off, or the cap is reached).
  bool onFailureStreak(size_t server, int64_t now_ms);
  // Ends the ejections whose time is up; returns those servers (they may take traffic again, or,
  // with active checks, after passing one).
  std::vector<size_t> expire(int64_t now_ms);
  // The earliest time expire() has something to do, or -1.
  int64_t nextExpiry() const;

  bool ejected(size_t server) const { return s_[server].ejected; }
  uint32_t timesEjected(size_t server) const { return s_[server].times; }
  size_t ejectedCount() const;
  // Servers leave and join with config reloads.
  void resize(size_t servers) { s_.resize(servers); }

 private:
  struct State {
    bool ejected = false;
    uint32_t times = 0;
    int64_t until_ms = 0;
  };
  OutlierParams p_;
  std::vector<State> s_;
};

}  // namespace tandem::health
