#include "admin/webhook.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <optional>
#include <random>

#include "core/log.h"
#include "core/socket.h"

namespace tandem::admin {
namespace {

constexpr int64_t kFirstBackoffMs = 500;
constexpr int64_t kMaxBackoffMs = 30'000;
// A status line is ~20 bytes; anything longer without a line end is not an HTTP/1 response.
constexpr size_t kMaxStatusLine = 1024;

// The status code of "HTTP/1.x NNN[ reason]" (optionally ending in CR), or 0 if malformed.
int parseStatusLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ') return 0;
  if (line.size() > 12 && line[12] != ' ') return 0;
  int code = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return 0;
    code = code * 10 + (line[i] - '0');
  }
  return code;
}

}  // namespace

int64_t backoffDelayMs(uint32_t failures, int jitter) {
  int64_t base = kFirstBackoffMs;
  for (uint32_t i = 1; i < failures && base < kMaxBackoffMs; ++i) base *= 2;
  base = std::min(base, kMaxBackoffMs);
  const int64_t d = base + std::clamp(jitter, -1, 1) * base / 10;
  return std::clamp<int64_t>((d + 50) / 100 * 100, 100, kMaxBackoffMs);
}

// One webhook: its queue and its (single) connection. A Deferred so that the sender's destructor
// can leave it to the loop to free after the current batch, in which its socket may still have
// an event pending.
class WebhookSender::Hook final : public IoHandler, public TimerHandler, public Deferred {
 public:
  Hook(EventLoop& loop, config::Webhook cfg, uint32_t seed)
      : loop_(loop),
        cfg_(std::move(cfg)),
        rng_(seed),
        start_timer_(this, kStart),
        timeout_timer_(this, kTimeout) {
    // Without the path: webhook paths often carry a secret token that logs must not show.
    name_ = "http://" + cfg_.address.text();
    auto addr = parseAddress(cfg_.address.host, cfg_.address.port);
    if (addr) {
      addr_ = *addr;
    } else {
      log::error("webhook {}: {}; its notifications will fail", name_, addr.error().message);
    }
    const std::string path = cfg_.path.empty() ? "/" : cfg_.path;
    head_prefix_ = "POST " + path + " HTTP/1.1\r\nHost: " + cfg_.address.text() +
                   "\r\nContent-Type: application/json\r\nConnection: close\r\n"
                   "User-Agent: tandem\r\nContent-Length: ";
  }
  ~Hook() override { shutdown(); }

  void push(std::shared_ptr<const std::string> body) {
    if (!addr_) {
      ++stats_.failed;
      return;
    }
    if (queue_.size() >= kMaxQueued) {
      // The front is kept while it is being attempted: its connection or backoff is under way.
      queue_.erase(queue_.begin() + (attempt_ > 0 ? 1 : 0));
      ++stats_.dropped;
      if (stats_.dropped % 100 == 1) {
        log::warn("webhook {}: queue full ({} notifications), dropping the oldest ({} so far)",
                  name_, kMaxQueued, stats_.dropped);
      }
    }
    queue_.push_back(std::move(body));
    if (queue_.size() == 1) start_timer_.arm(loop_.timers(0));
  }

  // Stops all I/O; the hook does nothing afterwards.
  void shutdown() {
    closeConnection();
    start_timer_.cancel();
    queue_.clear();
  }

  const Stats& stats() const { return stats_; }
  size_t queued() const { return queue_.size(); }

  void onTimer(int tag) override {
    if (tag == kStart) {
      startAttempt();
    } else if (fd_ >= 0) {
      failedAttempt("no response within " + std::to_string(cfg_.timeout.count()) + "ms");
    }
  }

  void onIo(uint32_t events) override {
    if (fd_ < 0) return;  // an event of a connection closed earlier in this batch
    if (!connected_) {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      if (int err = socketError(fd_); err != 0) {
        failedAttempt(std::string("connect: ") + strerror(err));
        return;
      }
      connected_ = true;
    }
    if (sent_ < head_.size() + queue_.front()->size() && !writeSome()) return;
    readSome();
  }

 private:
  enum Tag { kStart = 1, kTimeout = 2 };

  void startAttempt() {
    if (queue_.empty()) return;
    ++attempt_;
    ++stats_.attempts;
    auto fd = connectNonBlocking(*addr_);
    if (!fd) {
      failedAttempt(fd.error().message);
      return;
    }
    fd_ = *fd;
    connected_ = false;
    sent_ = 0;
    status_.clear();
    head_ = head_prefix_ + std::to_string(queue_.front()->size()) + "\r\n\r\n";
    timeout_timer_.arm(loop_.timers(std::max<int64_t>(cfg_.timeout.count(), 1)));
    if (!loop_.add(fd_, this)) failedAttempt(std::string("epoll_ctl: ") + strerror(errno));
  }

  // Returns false if the attempt failed (and was handled).
  bool writeSome() {
    const std::string& body = *queue_.front();
    while (sent_ < head_.size() + body.size()) {
      iovec iov[2];
      int n_iov = 0;
      if (sent_ < head_.size()) {
        iov[n_iov++] = {const_cast<char*>(head_.data() + sent_), head_.size() - sent_};
        iov[n_iov++] = {const_cast<char*>(body.data()), body.size()};
      } else {
        const size_t off = sent_ - head_.size();
        iov[n_iov++] = {const_cast<char*>(body.data() + off), body.size() - off};
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(n_iov);
      const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (n >= 0) {
        sent_ += static_cast<size_t>(n);
      } else if (errno == EAGAIN) {
        return true;  // the next EPOLLOUT edge continues
      } else if (errno != EINTR) {
        failedAttempt(std::string("send: ") + strerror(errno));
        return false;
      }
    }
    return true;
  }

  void readSome() {
    char buf[512];
    for (;;) {
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n > 0) {
        status_.append(buf, static_cast<size_t>(n));
        if (const size_t eol = status_.find('\n'); eol != std::string::npos) {
          const int code = parseStatusLine(std::string_view(status_).substr(0, eol));
          if (code >= 200 && code <= 299) {
            succeeded();
          } else {
            failedAttempt(code ? "status " + std::to_string(code) : "malformed status line");
          }
          return;
        }
        if (status_.size() >= kMaxStatusLine) {
          failedAttempt("no status line in the first bytes of the response");
          return;
        }
      } else if (n == 0) {
        failedAttempt("connection closed before a status line");
        return;
      } else if (errno == EAGAIN) {
        return;
      } else if (errno != EINTR) {
        failedAttempt(std::string("read: ") + strerror(errno));
        return;
      }
    }
  }

  void succeeded() {
    closeConnection();
    ++stats_.delivered;
    log::debug("webhook {}: delivered after {} attempt(s)", name_, attempt_);
    nextNotification();
  }

  void failedAttempt(const std::string& why) {
    closeConnection();
    if (attempt_ >= std::max<uint32_t>(cfg_.max_attempts, 1)) {
      ++stats_.failed;
      log::warn("webhook {}: giving up on a notification after {} attempt(s): {}", name_, attempt_,
                why);
      nextNotification();
      return;
    }
    const int jitter = static_cast<int>(rng_() % 3) - 1;
    const int64_t delay = backoffDelayMs(attempt_, jitter);
    log::debug("webhook {}: attempt {} failed ({}), retrying in {}ms", name_, attempt_, why, delay);
    start_timer_.arm(loop_.timers(delay));
  }

  // Through the start timer, not directly: a run of immediate failures never recurses.
  void nextNotification() {
    queue_.pop_front();
    attempt_ = 0;
    if (!queue_.empty()) start_timer_.arm(loop_.timers(0));
  }

  void closeConnection() {
    timeout_timer_.cancel();
    if (fd_ >= 0) {
      loop_.remove(fd_);
      ::close(fd_);
      fd_ = -1;
    }
  }

  EventLoop& loop_;
  config::Webhook cfg_;
  std::string name_;  // for log lines
  std::optional<SockAddr> addr_;
  std::string head_prefix_;  // the request head up to the Content-Length value
  std::minstd_rand rng_;     // backoff jitter only
  Timer start_timer_;        // the next attempt: now, or after a backoff
  Timer timeout_timer_;
  std::deque<std::shared_ptr<const std::string>> queue_;  // front: the one being attempted
  uint32_t attempt_ = 0;                                  // attempts started on queue_.front()
  Stats stats_;
  // The attempt in flight.
  int fd_ = -1;
  bool connected_ = false;
  std::string head_;
  size_t sent_ = 0;     // over head_ then the body
  std::string status_;  // response bytes until the end of the status line
};

WebhookSender::WebhookSender(EventLoop& loop, std::vector<config::Webhook> hooks) : loop_(loop) {
  // Jitter only needs to differ between nodes and hooks, not to be unpredictable.
  uint32_t seed = static_cast<uint32_t>(loop.now()) ^ (static_cast<uint32_t>(::getpid()) << 16);
  for (auto& h : hooks) hooks_.push_back(std::make_unique<Hook>(loop, std::move(h), ++seed));
}

WebhookSender::~WebhookSender() {
  for (auto& h : hooks_) {
    h->shutdown();
    loop_.destroyLater(std::move(h));
  }
}

void WebhookSender::send(const std::string& json_body) {
  if (hooks_.empty()) return;
  auto body = std::make_shared<const std::string>(json_body);
  for (auto& h : hooks_) h->push(body);
}

WebhookSender::Stats WebhookSender::stats() const {
  Stats s;
  for (const auto& h : hooks_) {
    s.delivered += h->stats().delivered;
    s.failed += h->stats().failed;
    s.dropped += h->stats().dropped;
    s.attempts += h->stats().attempts;
  }
  return s;
}

size_t WebhookSender::queued() const {
  size_t n = 0;
  for (const auto& h : hooks_) n += h->queued();
  return n;
}

}  // namespace tandem::admin
