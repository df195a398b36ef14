#pragma once
// The alert rule engine (issue 4): turns periodic health and traffic samples into alerts that fire
// once and resolve once, plus alerts raised by other subsystems (failover, rejected config, state
// store unreachable). Pure logic with injected time; the control thread owns it and hands the
// alerts it returns to WebhookSender (as alertJson) and to the admin API.
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "core/stats.h"

namespace tandem::admin {

struct ServerSample {
  std::string name;
  bool healthy = true;
  bool disabled = false;  // disabled/draining by an admin: never alerts as down
};

struct BackendSample {
  std::string name;
  std::vector<ServerSample> servers;
  uint64_t responses_total = 0;  // cumulative since start (all classes)
  uint64_t errors_total = 0;     // cumulative 5xx
  HistogramSnapshot duration;    // cumulative request-duration histogram
};

struct Alert {
  uint64_t id = 0;       // unique per process, increasing
  std::string rule;      // server_down | backend_down | error_rate | p99_latency | external name
  std::string subject;   // "app" (backend) or "app/a1" (server) or free text for external rules
  std::string severity;  // "critical" (down rules) or "warning"
  std::string message;   // human readable; describes the condition that fired
  double value = 0;      // what was measured when it fired (see AlertEngine)
  int64_t fired_unix_ms = 0;
  int64_t resolved_unix_ms = 0;  // 0 while firing
  bool firing() const { return resolved_unix_ms == 0; }
};

// Rules (config::AlertRules), each keyed by (rule, subject):
//   server_down  "app/a1"  critical  a server neither healthy nor disabled. value: healthy servers
//                                    left in its backend.
//   backend_down "app"     critical  a backend with servers but no healthy non-disabled one (so a
//                                    backend whose servers are all disabled is down). value: 0.
//   error_rate   "app"     warning   5xx / responses over the trailing window > above. value: the
//                                    fraction.
//   p99_latency  "app"     warning   p99 of request durations over the window > above ms. value:
//                                    the p99 in ms.
// A resolved alert keeps the message and value it fired with, so a notification of its end still
// says what the condition was. Alerts whose backend or server disappears from the samples, or
// whose rule is switched off by setRules(), resolve at the next evaluate().
//
// Windows: each evaluate() appends a sample (now_ms, cumulative counters) to a per-backend ring.
// The window's baseline is the newest sample taken at or before now - window, so the measured span
// is at least `window` and longer by less than one evaluation interval. Until the ring reaches
// that far back (a new backend, the first `window` after start, or after the counters went
// backwards, which restarts the ring) there is no verdict: a partial window would let a burst at
// startup fire what the configured window is meant to smooth out. The ring keeps only the samples
// needed for the longest enabled window (plus the baseline).
//
// With fewer than min_requests responses (for p99: durations recorded) in the window there is no
// verdict either way, except that a firing alert with no traffic at all in the window resolves.
//
// External alerts (raise/clear) live apart from the evaluated ones: evaluate() never resolves them
// and clear() never resolves an evaluated alert, even under the same rule name.
//
// Threading: not thread-safe; one thread (the control thread) owns it.
class AlertEngine {
 public:
  explicit AlertEngine(config::AlertRules rules);

  // Replaces the rules (config reload). Alerts of a rule switched off resolve at the next
  // evaluate(); a firing alert whose threshold changed is judged on the new one from then on.
  void setRules(config::AlertRules rules);

  // One evaluation on samples taken at `now_ms` (monotonic) / `unix_ms` (wall clock); called about
  // once a second. Returns the alerts that fired or resolved in this call (a resolved one carries
  // resolved_unix_ms), in the order of `backends`, then the resolutions of vanished subjects.
  std::vector<Alert> evaluate(int64_t now_ms, int64_t unix_ms,
                              const std::vector<BackendSample>& backends);

  // External conditions: raise fires once (nullopt if already firing; the first message is kept),
  // clear resolves once (nullopt if not firing).
  std::optional<Alert> raise(const std::string& rule, const std::string& subject,
                             const std::string& severity, const std::string& message, double value,
                             int64_t unix_ms);
  std::optional<Alert> clear(const std::string& rule, const std::string& subject, int64_t unix_ms);

  std::vector<Alert> active() const;  // firing now, oldest first
  // The last kRecent events, newest first: a firing entry when an alert fires and a resolved entry
  // (same id) when it resolves, so this reads as the log of what was notified.
  std::vector<Alert> recent() const;

  static constexpr size_t kRecent = 200;

 private:
  using Key = std::pair<std::string, std::string>;  // (rule, subject)
  struct Sample {
    int64_t at_ms = 0;
    uint64_t responses = 0;
    uint64_t errors = 0;
    HistogramSnapshot duration;
  };
  enum class Verdict { kFire, kResolve, kKeep };
  struct Finding {
    Key key;
    Verdict verdict = Verdict::kKeep;
    std::string severity;
    std::string message;
    double value = 0;
  };

  const std::deque<Sample>& record(const BackendSample& b, int64_t now_ms);
  const Sample* baseline(const std::deque<Sample>& ring, int64_t now_ms, int64_t window_ms) const;
  void errorRate(const std::string& backend, const std::deque<Sample>& ring, int64_t now_ms,
                 std::vector<Finding>& out) const;
  void p99Latency(const std::string& backend, const std::deque<Sample>& ring, int64_t now_ms,
                  std::vector<Finding>& out) const;
  Alert fire(std::map<Key, Alert>& set, Key key, const std::string& severity,
             const std::string& message, double value, int64_t unix_ms);
  Alert resolve(std::map<Key, Alert>& set, std::map<Key, Alert>::iterator it, int64_t unix_ms);
  void remember(const Alert& a);

  config::AlertRules rules_;
  std::map<Key, Alert> evaluated_;                   // firing alerts of the built-in rules
  std::map<Key, Alert> external_;                    // firing alerts from raise()
  std::map<std::string, std::deque<Sample>> rings_;  // per backend, oldest first
  std::deque<Alert> recent_;                         // newest first
};

// {"id":..,"node":..,"rule":..,"subject":..,"state":"firing"|"resolved","severity":..,
//  "message":..,"value":..,"fired_at":"2026-11-24T08:30:00.123Z","resolved_at":null|"..."}
// Times are RFC 3339 UTC with milliseconds. Strings are JSON-escaped; invalid UTF-8 becomes
// U+FFFD so the output is always valid JSON. A non-finite value is written as null.
std::string alertJson(const Alert& a, const std::string& node);

}  // namespace tandem::admin
