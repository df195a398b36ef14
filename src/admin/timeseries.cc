#include "admin/timeseries.h"

#include <fmt/format.h>

#include <iterator>

namespace tandem::admin {

void TimeSeries::add(int64_t mono_ms, int64_t unix_ms, const Totals& snap,
                     const ProcessStats& proc) {
  Baseline now;
  now.mono_ms = mono_ms;
  for (const ListenerTotals& l : snap.listeners) {
    now.responses += l.responsesTotal();
    now.errors += l.responses[5];
  }
  for (const BackendTotals& b : snap.backends) {
    for (size_t i = 0; i < kLatencyBuckets; ++i) now.duration.buckets[i] += b.duration.buckets[i];
    now.duration.sum_us += b.duration.sum_us;
  }
  now.cpu_seconds = proc.cpu_seconds;
  if (last_ && mono_ms > last_->mono_ms) {
    const double secs = static_cast<double>(mono_ms - last_->mono_ms) / 1000.0;
    SeriesPoint p;
    p.unix_ms = unix_ms;
    const uint64_t responses = now.responses - std::min(now.responses, last_->responses);
    const uint64_t errors = now.errors - std::min(now.errors, last_->errors);
    p.requests_per_second = static_cast<double>(responses) / secs;
    if (responses > 0) p.error_rate = static_cast<double>(errors) / static_cast<double>(responses);
    HistogramSnapshot d = now.duration.minus(last_->duration);
    if (d.count() > 0) {
      p.p50_ms = d.quantileUs(0.5) / 1000.0;
      p.p99_ms = d.quantileUs(0.99) / 1000.0;
    }
    for (const ListenerTotals& l : snap.listeners) p.active_connections += l.active;
    p.cpu_percent = 100.0 * (now.cpu_seconds - last_->cpu_seconds) / secs;
    p.resident_bytes = proc.resident_bytes;
    points_.push_back(p);
    if (points_.size() > capacity_) points_.pop_front();
  }
  last_ = now;
}

std::string TimeSeries::json(double interval_seconds) const {
  std::string out;
  auto it = std::back_inserter(out);
  fmt::format_to(it, "{{\"interval_seconds\":{},\"t\":[", interval_seconds);
  auto column = [&](const char* name, auto value) {
    fmt::format_to(it, "],\"{}\":[", name);
    bool first = true;
    for (const SeriesPoint& p : points_) {
      if (!first) out += ',';
      first = false;
      value(p);
    }
  };
  bool first = true;
  for (const SeriesPoint& p : points_) {
    if (!first) out += ',';
    first = false;
    fmt::format_to(it, "{:.3f}", static_cast<double>(p.unix_ms) / 1000.0);
  }
  auto opt = [&](const std::optional<double>& v) {
    if (v) {
      fmt::format_to(it, "{:.4g}", *v);
    } else {
      out += "null";
    }
  };
  column("requests_per_second",
         [&](const SeriesPoint& p) { fmt::format_to(it, "{:.2f}", p.requests_per_second); });
  column("error_rate", [&](const SeriesPoint& p) { opt(p.error_rate); });
  column("p50_ms", [&](const SeriesPoint& p) { opt(p.p50_ms); });
  column("p99_ms", [&](const SeriesPoint& p) { opt(p.p99_ms); });
  column("active_connections",
         [&](const SeriesPoint& p) { fmt::format_to(it, "{}", p.active_connections); });
  column("cpu_percent", [&](const SeriesPoint& p) { fmt::format_to(it, "{:.2f}", p.cpu_percent); });
  column("resident_bytes",
         [&](const SeriesPoint& p) { fmt::format_to(it, "{}", p.resident_bytes); });
  out += "]}";
  return out;
}

}  // namespace tandem::admin
