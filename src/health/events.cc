#include "health/events.h"

#include <chrono>

#include "core/log.h"

namespace tandem::health {

void EventLog::emit(Event e) {
  if (e.unix_ms == 0) {
    e.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  }
  // One readable line per event; the words (up, down, ejected, returned, panic) are stable.
  if (e.kind == "peer_up" || e.kind == "track_listener_up") {
    log::info("event={} {} {}", e.kind, e.server, e.detail);  // good news
  } else if (e.backend.empty()) {
    log::warn("event={} {}", e.kind, e.detail);
  } else if (e.server.empty()) {
    log::warn("event={} backend {}: {}", e.kind, e.backend, e.detail);
  } else {
    std::string_view verb = e.kind;
    if (verb.starts_with("server_")) verb.remove_prefix(7);
    log::warn("event={} server {}/{} {}: {}", e.kind, e.backend, e.server, verb, e.detail);
  }
  std::lock_guard<std::mutex> g(mu_);
  e.id = ++total_;
  ring_.push_back(std::move(e));
  if (ring_.size() > capacity_) ring_.pop_front();
}

std::vector<Event> EventLog::since(uint64_t after) const {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<Event> out;
  for (const Event& e : ring_) {
    if (e.id > after) out.push_back(e);
  }
  return out;
}

std::vector<Event> EventLog::recent() const {
  std::lock_guard<std::mutex> g(mu_);
  return {ring_.begin(), ring_.end()};
}

uint64_t EventLog::total() const {
  std::lock_guard<std::mutex> g(mu_);
  return total_;
}

}  // namespace tandem::health
