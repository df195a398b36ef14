#pragma once
// Webhook delivery of alert notifications (issue 4): one HTTP POST per notification and webhook,
// on the control thread's event loop, without ever blocking it.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/event_loop.h"

namespace tandem::admin {

// Delivery per webhook: an in-order FIFO of at most kMaxQueued notifications (one more drops the
// oldest not yet being attempted, counted as `dropped`), at most one request in flight. A request
// is `POST <path> HTTP/1.1` with Host, Content-Type: application/json, Content-Length,
// Connection: close and User-Agent: tandem. Only the status line of the response is read: 2xx is
// delivered; a refused or reset connection, `timeout` (connect to status line) or any other
// status is a failed attempt, retried after backoffDelayMs() up to `max_attempts` attempts in
// all, after which the notification counts as `failed` (with a warning logged) and the next one
// starts. A webhook whose address does not parse counts every notification as failed at once.
//
// Threading: everything, including construction and destruction, on `loop`'s thread (or while no
// thread runs the loop). The loop must outlive the sender. send() does no I/O itself: attempts
// start from timers, so a callback may call send() freely. The sender may be destroyed inside any
// callback of the loop: its per-hook state is freed through EventLoop::destroyLater() after the
// current batch.
class WebhookSender {
 public:
  WebhookSender(EventLoop& loop, std::vector<config::Webhook> hooks);
  // Closes connections and cancels timers; notifications still queued are abandoned (not counted).
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  void send(const std::string& json_body);  // one notification to every webhook

  struct Stats {
    uint64_t delivered = 0, failed = 0, dropped = 0, attempts = 0;
  };
  Stats stats() const;    // summed over hooks
  size_t queued() const;  // notifications not finished yet, the ones being attempted included

  static constexpr size_t kMaxQueued = 1000;

 private:
  class Hook;
  EventLoop& loop_;
  std::vector<std::unique_ptr<Hook>> hooks_;
};

// The wait after the `failures`-th failed attempt of a notification: 500 ms doubling per failure,
// capped at 30 s, shifted by `jitter` (-1, 0 or +1) tenths and rounded to 100 ms. The coarse steps
// keep the number of TimerLists (one per distinct duration, living as long as the loop) small.
int64_t backoffDelayMs(uint32_t failures, int jitter);

}  // namespace tandem::admin
