#pragma once
// The last 15 minutes of the process as a few series (the dashboard's charts): one point per
// sampling interval, computed from the change of the cumulative counters since the previous one.
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "admin/process_stats.h"
#include "admin/snapshot.h"

namespace tandem::admin {

struct SeriesPoint {
  int64_t unix_ms = 0;
  double requests_per_second = 0;
  std::optional<double> error_rate;  // 5xx share of the responses; none without responses
  std::optional<double> p50_ms;
  std::optional<double> p99_ms;
  int64_t active_connections = 0;
  double cpu_percent = 0;  // of one core
  uint64_t resident_bytes = 0;
};

class TimeSeries {
 public:
  explicit TimeSeries(size_t capacity = 450) : capacity_(capacity) {}

  // The first call only records the baseline; later ones add a point.
  void add(int64_t mono_ms, int64_t unix_ms, const Totals& snap, const ProcessStats& proc);
  const std::deque<SeriesPoint>& points() const { return points_; }
  // Columnar JSON for uPlot: {"interval_seconds":..,"t":[..],"requests_per_second":[..],...}.
  std::string json(double interval_seconds) const;

 private:
  struct Baseline {
    int64_t mono_ms = 0;
    uint64_t responses = 0;
    uint64_t errors = 0;
    HistogramSnapshot duration;
    double cpu_seconds = 0;
  };
  size_t capacity_;
  std::optional<Baseline> last_;
  std::deque<SeriesPoint> points_;
};

}  // namespace tandem::admin
