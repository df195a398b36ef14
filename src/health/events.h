#pragma once
// Structured events of the control plane (server up/down, ejected/returned, draining, panic).
// Each is logged as one line and kept in a bounded ring for the monitoring API. Thread-safe.
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace tandem::health {

struct Event {
  uint64_t id = 0;  // 1, 2, ... in emission order (assigned by EventLog)
  int64_t unix_ms = 0;
  std::string kind;  // server_up, server_down, ejected, returned, draining, enabled, disabled,
                     // weight, panic_on, panic_off, config_reloaded, config_rejected
  std::string backend;
  std::string server;  // empty for backend-wide events
  std::string detail;
};

class EventLog {
 public:
  explicit EventLog(size_t capacity = 1000) : capacity_(capacity) {}
  void emit(Event e);
  std::vector<Event> recent() const;
  // Events with an id above `after` that are still in the ring, oldest first.
  std::vector<Event> since(uint64_t after) const;
  uint64_t total() const;

 private:
  mutable std::mutex mu_;
  std::deque<Event> ring_;
  size_t capacity_;
  uint64_t total_ = 0;
};

}  // namespace tandem::health
