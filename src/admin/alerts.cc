#include "admin/alerts.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <set>
#include <string_view>

#include "core/clock.h"

namespace tandem::admin {
namespace {

constexpr const char* kServerDown = "server_down";
constexpr const char* kBackendDown = "backend_down";
constexpr const char* kErrorRate = "error_rate";
constexpr const char* kP99Latency = "p99_latency";

// Process-wide so that an engine rebuilt on reload never reuses an id a receiver has seen.
std::atomic<uint64_t> next_id{1};

// "12.5", "5", "0.33": two decimals at most, no trailing zeros.
std::string number(double x) {
  std::string s = fmt::format("{:.2f}", x);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s == "-0" ? "0" : s;
}

std::string duration(int64_t ms) {
  if (ms >= 60'000 && ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
  if (ms >= 1'000 && ms % 1'000 == 0) return fmt::format("{}s", ms / 1'000);
  return fmt::format("{}ms", ms);
}

// Length of the valid UTF-8 sequence at s[i], or 0 if it is invalid (overlong, surrogate, >
// U+10FFFF or truncated).
size_t utf8Length(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

void appendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else if (c >= 0x80) {
          const size_t n = utf8Length(s, i);
          if (n == 0) {
            out += "\xEF\xBF\xBD";  // U+FFFD: a strict parser rejects the whole line otherwise
            ++i;
          } else {
            out.append(s.substr(i, n));
            i += n;
          }
          continue;
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

}  // namespace

AlertEngine::AlertEngine(config::AlertRules rules) : rules_(std::move(rules)) {}

void AlertEngine::setRules(config::AlertRules rules) { rules_ = std::move(rules); }

std::vector<Alert> AlertEngine::evaluate(int64_t now_ms, int64_t unix_ms,
                                         const std::vector<BackendSample>& backends) {
  std::vector<Finding> findings;
  const bool traffic_rules = rules_.error_rate.enabled || rules_.p99_latency.enabled;
  for (const BackendSample& b : backends) {
    int healthy = 0;
    for (const ServerSample& s : b.servers) healthy += s.healthy && !s.disabled;
    if (rules_.server_down) {
      for (const ServerSample& s : b.servers) {
        const bool down = !s.healthy && !s.disabled;
        Finding f{{kServerDown, b.name + "/" + s.name}, down ? Verdict::kFire : Verdict::kResolve};
        f.severity = "critical";
        f.message = fmt::format("server {}/{} is down ({} of {} servers in {} healthy)", b.name,
                                s.name, healthy, b.servers.size(), b.name);
        f.value = healthy;
        findings.push_back(std::move(f));
      }
    }
    if (rules_.backend_down) {
      const bool down = !b.servers.empty() && healthy == 0;
      Finding f{{kBackendDown, b.name}, down ? Verdict::kFire : Verdict::kResolve};
      f.severity = "critical";
      f.message =
          fmt::format("backend {} has no healthy server ({} servers)", b.name, b.servers.size());
      f.value = healthy;
      findings.push_back(std::move(f));
    }
    if (traffic_rules) {
      const std::deque<Sample>& ring = record(b, now_ms);
      if (rules_.error_rate.enabled) errorRate(b.name, ring, now_ms, findings);
      if (rules_.p99_latency.enabled) p99Latency(b.name, ring, now_ms, findings);
    }
  }
  // Rings of backends that are gone (or of rules switched off) would only hold memory.
  std::set<std::string_view> present;
  for (const BackendSample& b : backends) present.insert(b.name);
  for (auto it = rings_.begin(); it != rings_.end();) {
    it = traffic_rules && present.count(it->first) ? std::next(it) : rings_.erase(it);
  }

  // A name listed twice in the samples: a condition seen once in this pass wins over its absence.
  std::map<Key, size_t> judged;  // every key with a finding -> its index in `merged`
  std::vector<Finding*> merged;
  for (Finding& f : findings) {
    auto [j, inserted] = judged.emplace(f.key, merged.size());
    if (inserted) {
      merged.push_back(&f);
    } else if (f.verdict == Verdict::kFire && merged[j->second]->verdict != Verdict::kFire) {
      merged[j->second] = &f;
    }
  }

  std::vector<Alert> changes;
  for (const Finding* f : merged) {
    auto it = evaluated_.find(f->key);
    if (f->verdict == Verdict::kFire && it == evaluated_.end()) {
      changes.push_back(fire(evaluated_, f->key, f->severity, f->message, f->value, unix_ms));
    } else if (f->verdict == Verdict::kResolve && it != evaluated_.end()) {
      changes.push_back(resolve(evaluated_, it, unix_ms));
    }
  }
  // Oldest first, so the resolutions of a vanished backend come out in the order they fired.
  std::vector<std::map<Key, Alert>::iterator> vanished;
  for (auto it = evaluated_.begin(); it != evaluated_.end(); ++it) {
    if (!judged.count(it->first)) vanished.push_back(it);
  }
  std::sort(vanished.begin(), vanished.end(),
            [](const auto& a, const auto& b) { return a->second.id < b->second.id; });
  for (auto it : vanished) changes.push_back(resolve(evaluated_, it, unix_ms));
  return changes;
}

const std::deque<AlertEngine::Sample>& AlertEngine::record(const BackendSample& b, int64_t now_ms) {
  std::deque<Sample>& ring = rings_[b.name];
  Sample s{now_ms, b.responses_total, b.errors_total, b.duration};
  if (!ring.empty()) {
    const Sample& last = ring.back();
    // Counters that went backwards (stats rebuilt) or a clock that did: earlier samples no longer
    // describe the same series, so the window starts over.
    if (now_ms < last.at_ms || s.responses < last.responses || s.errors < last.errors ||
        s.duration.count() < last.duration.count()) {
      ring.clear();
    } else if (now_ms == last.at_ms) {
      ring.pop_back();  // evaluated twice at one instant: keep the newer counters
    }
  }
  ring.push_back(std::move(s));
  int64_t keep_ms = 0;
  if (rules_.error_rate.enabled) {
    keep_ms = std::max<int64_t>(keep_ms, rules_.error_rate.window.count());
  }
  if (rules_.p99_latency.enabled) {
    keep_ms = std::max<int64_t>(keep_ms, rules_.p99_latency.window.count());
  }
  // Keep one sample at or before the start of the longest window: it is that window's baseline.
  while (ring.size() >= 2 && ring[1].at_ms <= now_ms - keep_ms) ring.pop_front();
  return ring;
}

const AlertEngine::Sample* AlertEngine::baseline(const std::deque<Sample>& ring, int64_t now_ms,
                                                 int64_t window_ms) const {
  const int64_t start = now_ms - window_ms;
  if (ring.empty() || ring.front().at_ms > start) return nullptr;  // not a full window yet
  size_t i = 0;
  while (i + 1 < ring.size() && ring[i + 1].at_ms <= start) ++i;
  return &ring[i];
}

void AlertEngine::errorRate(const std::string& backend, const std::deque<Sample>& ring,
                            int64_t now_ms, std::vector<Finding>& out) const {
  const config::ThresholdRule& rule = rules_.error_rate;
  Finding f{{kErrorRate, backend}, Verdict::kKeep};
  f.severity = "warning";
  const Sample* base = baseline(ring, now_ms, rule.window.count());
  if (base != nullptr) {
    const Sample& cur = ring.back();
    const uint64_t responses = cur.responses - base->responses;
    const uint64_t errors = cur.errors - base->errors;
    if (responses == 0) {
      f.verdict = Verdict::kResolve;  // nothing is failing when nothing is served
    } else if (responses >= rule.min_requests) {
      f.value = static_cast<double>(errors) / static_cast<double>(responses);
      f.verdict = f.value > rule.above ? Verdict::kFire : Verdict::kResolve;
      f.message = fmt::format("backend {}: {}% of {} responses were 5xx over {} (threshold {}%)",
                              backend, number(f.value * 100), responses,
                              duration(rule.window.count()), number(rule.above * 100));
    }
  }
  out.push_back(std::move(f));
}

void AlertEngine::p99Latency(const std::string& backend, const std::deque<Sample>& ring,
                             int64_t now_ms, std::vector<Finding>& out) const {
  const config::ThresholdRule& rule = rules_.p99_latency;
  Finding f{{kP99Latency, backend}, Verdict::kKeep};
  f.severity = "warning";
  const Sample* base = baseline(ring, now_ms, rule.window.count());
  if (base != nullptr) {
    const HistogramSnapshot d = ring.back().duration.minus(base->duration);
    const uint64_t n = d.count();
    if (n == 0) {
      f.verdict = Verdict::kResolve;
    } else if (n >= rule.min_requests) {
      f.value = d.quantileUs(0.99) / 1000.0;
      f.verdict = f.value > rule.above ? Verdict::kFire : Verdict::kResolve;
      f.message = fmt::format(
          "backend {}: p99 latency {}ms over {} requests in {} (threshold {}ms)", backend,
          number(f.value), n, duration(rule.window.count()), number(rule.above));
    }
  }
  out.push_back(std::move(f));
}

Alert AlertEngine::fire(std::map<Key, Alert>& set, Key key, const std::string& severity,
                        const std::string& message, double value, int64_t unix_ms) {
  Alert a;
  a.id = next_id.fetch_add(1, std::memory_order_relaxed);
  a.rule = key.first;
  a.subject = key.second;
  a.severity = severity;
  a.message = message;
  a.value = value;
  a.fired_unix_ms = unix_ms;
  set.emplace(std::move(key), a);
  remember(a);
  return a;
}

Alert AlertEngine::resolve(std::map<Key, Alert>& set, std::map<Key, Alert>::iterator it,
                           int64_t unix_ms) {
  Alert a = std::move(it->second);
  set.erase(it);
  a.resolved_unix_ms = std::max<int64_t>(unix_ms, 1);  // 0 would read as still firing
  remember(a);
  return a;
}

void AlertEngine::remember(const Alert& a) {
  recent_.push_front(a);
  if (recent_.size() > kRecent) recent_.pop_back();
}

std::optional<Alert> AlertEngine::raise(const std::string& rule, const std::string& subject,
                                        const std::string& severity, const std::string& message,
                                        double value, int64_t unix_ms) {
  Key key{rule, subject};
  if (external_.count(key)) return std::nullopt;
  return fire(external_, std::move(key), severity, message, value, unix_ms);
}

std::optional<Alert> AlertEngine::clear(const std::string& rule, const std::string& subject,
                                        int64_t unix_ms) {
  auto it = external_.find(Key{rule, subject});
  if (it == external_.end()) return std::nullopt;
  return resolve(external_, it, unix_ms);
}

std::vector<Alert> AlertEngine::active() const {
  std::vector<Alert> out;
  out.reserve(evaluated_.size() + external_.size());
  for (const auto& [key, a] : evaluated_) out.push_back(a);
  for (const auto& [key, a] : external_) out.push_back(a);
  std::sort(out.begin(), out.end(), [](const Alert& x, const Alert& y) { return x.id < y.id; });
  return out;
}

std::vector<Alert> AlertEngine::recent() const { return {recent_.begin(), recent_.end()}; }

std::string alertJson(const Alert& a, const std::string& node) {
  std::string out;
  out.reserve(256 + a.message.size());
  out += fmt::format("{{\"id\":{},\"node\":", a.id);
  appendJsonString(out, node);
  out += ",\"rule\":";
  appendJsonString(out, a.rule);
  out += ",\"subject\":";
  appendJsonString(out, a.subject);
  out += a.firing() ? ",\"state\":\"firing\"" : ",\"state\":\"resolved\"";
  out += ",\"severity\":";
  appendJsonString(out, a.severity);
  out += ",\"message\":";
  appendJsonString(out, a.message);
  // fmt's shortest round-trip form ("0.125", "3", "1e+20") is valid JSON; NaN/inf are not.
  out += std::isfinite(a.value) ? fmt::format(",\"value\":{}", a.value) : ",\"value\":null";
  out += ",\"fired_at\":\"" + rfc3339Ms(a.fired_unix_ms) + "\"";
  out += ",\"resolved_at\":";
  out += a.firing() ? "null" : "\"" + rfc3339Ms(a.resolved_unix_ms) + "\"";
  out += '}';
  return out;
}

}  // namespace tandem::admin
