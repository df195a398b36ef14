#include "admin/webhook.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../support/listening_socket.h"

namespace tandem::admin {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct Received {
  std::string head;  // request line and headers, up to and including the blank line
  std::string body;
  Clock::time_point at;
};

// A blocking HTTP/1.1 receiver on 127.0.0.1:<ephemeral>, one connection at a time on a thread of
// its own. The n-th request gets script[n] (kOk once the script is used up). Every wait is bounded
// so the destructor always joins promptly.
class Receiver {
 public:
  enum Reply { kOk, kServerError, kFound, kClose, kSilent };

  explicit Receiver(std::vector<Reply> script = {}) : script_(std::move(script)) {
    thread_ = std::thread([this] { serve(); });
  }
  ~Receiver() {
    stop_ = true;
    thread_.join();
    for (int fd : held_) ::close(fd);
  }

  uint16_t port() const { return listen_.port; }
  std::vector<Received> received() const {
    std::lock_guard<std::mutex> g(mu_);
    return got_;
  }
  size_t count() const {
    std::lock_guard<std::mutex> g(mu_);
    return got_.size();
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{listen_.fd, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      const int fd = ::accept4(listen_.fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      Received r;
      if (!readRequest(fd, r)) {
        ::close(fd);
        continue;
      }
      const Reply reply = next_ < script_.size() ? script_[next_] : kOk;
      ++next_;
      {
        std::lock_guard<std::mutex> g(mu_);
        got_.push_back(std::move(r));
      }
      const char* response = nullptr;
      switch (reply) {
        case kOk:
          response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
          break;
        case kServerError:
          response = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
          break;
        case kFound:
          response = "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n";
          break;
        case kClose:
          ::close(fd);  // the request was read; no response at all
          continue;
        case kSilent:
          held_.push_back(fd);  // never answered; closed when the receiver goes
          continue;
      }
      ssize_t n = ::send(fd, response, strlen(response), MSG_NOSIGNAL);
      (void)n;
      ::close(fd);
    }
  }

  bool readRequest(int fd, Received& r) {
    std::string data;
    size_t need = std::string::npos;
    const auto deadline = Clock::now() + 3s;
    while (!stop_ && Clock::now() < deadline) {
      if (need == std::string::npos) {
        const size_t end = data.find("\r\n\r\n");
        if (end != std::string::npos) {
          r.head = data.substr(0, end + 4);
          const std::string key = "\r\nContent-Length: ";
          const size_t cl = r.head.find(key);
          const size_t length =
              cl == std::string::npos ? 0 : std::stoul(r.head.substr(cl + key.size()));
          need = end + 4 + length;
        }
      }
      if (need != std::string::npos && data.size() >= need) {
        r.body = data.substr(r.head.size(), need - r.head.size());
        r.at = Clock::now();
        return true;
      }
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      char buf[64 * 1024];
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) return false;
      data.append(buf, static_cast<size_t>(n));
    }
    return false;
  }

  std::vector<Reply> script_;
  size_t next_ = 0;
  tandem::testing::ListeningSocket listen_;  // closed after the thread is joined
  std::atomic<bool> stop_{false};
  std::vector<int> held_;
  mutable std::mutex mu_;
  std::vector<Received> got_;
  std::thread thread_;
};

// A loopback port that refuses connections (bound once, then released without listening).
uint16_t closedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

config::Webhook hook(uint16_t port, std::string path = "/hook", int64_t timeout_ms = 2'000,
                     uint32_t max_attempts = 3) {
  config::Webhook h;
  h.address = {"127.0.0.1", port};
  h.path = std::move(path);
  h.url = "http://127.0.0.1:" + std::to_string(port) + h.path;
  h.timeout = std::chrono::milliseconds(timeout_ms);
  h.max_attempts = max_attempts;
  return h;
}

// Runs `loop` until `done()` holds (checked every 5 ms) or `limit_ms` passes; returns done().
bool runUntil(EventLoop& loop, const std::function<bool()>& done, int64_t limit_ms) {
  struct Until : TimerHandler {
    EventLoop& loop;
    const std::function<bool()>& done;
    Timer tick{this, 1};
    Timer limit{this, 2};
    Until(EventLoop& l, const std::function<bool()>& d) : loop(l), done(d) {}
    void onTimer(int tag) override {
      if (tag == 2 || done()) {
        loop.stop();
      } else {
        tick.arm(loop.timers(5));
      }
    }
  } until(loop, done);
  loop.updateTime();
  until.tick.arm(loop.timers(5));
  until.limit.arm(loop.timers(limit_ms));
  loop.run();
  return done();
}

std::string headerLine(const std::string& name, const std::string& value) {
  return "\r\n" + name + ": " + value + "\r\n";
}

TEST(WebhookSender, DeliversBodiesIntactWithHeaders) {
  Receiver rx;
  EventLoop loop;
  WebhookSender sender(loop, {hook(rx.port(), "/alerts/in?src=tandem")});
  const std::string small = R"({"id":1,"message":"quote \" and é ✓"})";
  std::string large(3 << 20, 'x');  // more than the socket buffers: sent in several writes
  for (size_t i = 0; i < large.size(); i += 4096) large[i] = static_cast<char>('a' + i / 4096 % 26);
  sender.send(small);
  sender.send(large);
  EXPECT_EQ(sender.queued(), 2u);
  ASSERT_TRUE(runUntil(
      loop, [&] { return sender.stats().delivered == 2; }, 5'000));

  auto got = rx.received();
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const std::string& body = i == 0 ? small : large;
    const std::string& head = got[i].head;
    EXPECT_EQ(head.rfind("POST /alerts/in?src=tandem HTTP/1.1\r\n", 0), 0u) << head;
    EXPECT_NE(head.find(headerLine("Host", "127.0.0.1:" + std::to_string(rx.port()))),
              std::string::npos)
        << head;
    EXPECT_NE(head.find(headerLine("Content-Type", "application/json")), std::string::npos);
    EXPECT_NE(head.find(headerLine("Content-Length", std::to_string(body.size()))),
              std::string::npos);
    EXPECT_NE(head.find(headerLine("Connection", "close")), std::string::npos);
    EXPECT_NE(head.find(headerLine("User-Agent", "tandem")), std::string::npos);
    EXPECT_TRUE(got[i].body == body) << "body " << i << " differs";
  }
  auto s = sender.stats();
  EXPECT_EQ(s.attempts, 2u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(sender.queued(), 0u);
}

TEST(WebhookSender, RetriesWithBackoffUntil2xx) {
  Receiver rx({Receiver::kServerError, Receiver::kServerError, Receiver::kOk});
  EventLoop loop;
  WebhookSender sender(loop, {hook(rx.port(), "/hook", 2'000, 4)});
  sender.send("{\"n\":1}");
  ASSERT_TRUE(runUntil(
      loop, [&] { return sender.stats().delivered == 1; }, 4'000));
  auto s = sender.stats();
  EXPECT_EQ(s.attempts, 3u);
  EXPECT_EQ(s.failed, 0u);
  auto got = rx.received();
  ASSERT_EQ(got.size(), 3u);
  for (const auto& r : got) EXPECT_EQ(r.body, "{\"n\":1}");
  // 500 ms then 1 s (±10%, 100 ms steps), less the coarse clock's slack.
  EXPECT_GE(got[1].at - got[0].at, 400ms);
  EXPECT_GE(got[2].at - got[1].at, 800ms);
}

TEST(WebhookSender, RefusedConnectionsFailAfterMaxAttempts) {
  EventLoop loop;
  WebhookSender sender(loop, {hook(closedPort(), "/hook", 1'000, 3)});
  sender.send("{}");
  ASSERT_TRUE(runUntil(
      loop, [&] { return sender.stats().failed == 1; }, 4'000));
  auto s = sender.stats();
  EXPECT_EQ(s.attempts, 3u);
  EXPECT_EQ(s.delivered, 0u);
  EXPECT_EQ(sender.queued(), 0u);
}

TEST(WebhookSender, ASilentReceiverTimesOutAsAFailedAttempt) {
  Receiver rx({Receiver::kSilent, Receiver::kSilent, Receiver::kSilent});
  EventLoop loop;
  auto sender = std::make_unique<WebhookSender>(
      loop, std::vector<config::Webhook>{hook(rx.port(), "/hook", 150, 2)});
  sender->send("{\"a\":1}");
  ASSERT_TRUE(runUntil(
      loop, [&] { return sender->stats().failed == 1; }, 3'000));
  EXPECT_EQ(sender->stats().attempts, 2u);
  EXPECT_EQ(rx.count(), 2u);
  EXPECT_EQ(sender->queued(), 0u);
  sender->send("{\"a\":2}");
  // The second notification's first attempt is in flight: destroying the sender now closes it.
  ASSERT_TRUE(runUntil(
      loop, [&] { return rx.count() == 3; }, 2'000));
  EXPECT_EQ(rx.received()[2].body, "{\"a\":2}");
  sender.reset();
}

TEST(WebhookSender, PreservesOrderPerWebhookAcrossRetries) {
  Receiver flaky({Receiver::kFound, Receiver::kClose});
  Receiver always_ok;
  EventLoop loop;
  WebhookSender sender(loop, {hook(flaky.port()), hook(always_ok.port())});
  for (int i = 0; i < 5; ++i) sender.send("n" + std::to_string(i));
  EXPECT_EQ(sender.queued(), 10u);
  ASSERT_TRUE(runUntil(
      loop, [&] { return sender.stats().delivered == 10; }, 4'000));
  auto bodies = [](const Receiver& r) {
    std::vector<std::string> out;
    for (const auto& x : r.received()) out.push_back(x.body);
    return out;
  };
  EXPECT_EQ(bodies(flaky), (std::vector<std::string>{"n0", "n0", "n0", "n1", "n2", "n3", "n4"}));
  EXPECT_EQ(bodies(always_ok), (std::vector<std::string>{"n0", "n1", "n2", "n3", "n4"}));
  EXPECT_EQ(sender.stats().attempts, 12u);
}

TEST(WebhookSender, FullQueueDropsTheOldest) {
  Receiver rx;
  EventLoop loop;
  WebhookSender sender(loop, {hook(rx.port())});
  const size_t extra = 3;
  for (size_t i = 0; i < WebhookSender::kMaxQueued + extra; ++i)
    sender.send("n" + std::to_string(i));
  EXPECT_EQ(sender.queued(), WebhookSender::kMaxQueued);
  EXPECT_EQ(sender.stats().dropped, extra);
  ASSERT_TRUE(runUntil(
      loop, [&] { return rx.count() >= 2; }, 3'000));
  auto got = rx.received();
  EXPECT_EQ(got[0].body, "n3");
  EXPECT_EQ(got[1].body, "n4");

  // Once an attempt is under way the front is kept: the next oldest goes instead.
  ASSERT_TRUE(runUntil(
      loop, [&] { return sender.stats().attempts > sender.stats().delivered; }, 1'000));
  const size_t before = sender.queued();
  for (size_t i = before; i <= WebhookSender::kMaxQueued; ++i) sender.send("more");
  EXPECT_EQ(sender.queued(), WebhookSender::kMaxQueued);
  EXPECT_EQ(sender.stats().dropped, extra + 1);
  // The sender goes with ~1000 notifications queued and one attempt in flight.
}

TEST(WebhookSender, UnparsableAddressFailsAtOnce) {
  EventLoop loop;
  config::Webhook h = hook(1);
  h.address.host = "not-an-ip";
  WebhookSender sender(loop, {h});
  sender.send("{}");
  EXPECT_EQ(sender.stats().failed, 1u);
  EXPECT_EQ(sender.queued(), 0u);
}

TEST(WebhookBackoff, DoublesFromHalfASecondCappedAt30s) {
  EXPECT_EQ(backoffDelayMs(1, 0), 500);
  EXPECT_EQ(backoffDelayMs(2, 0), 1'000);
  EXPECT_EQ(backoffDelayMs(3, 0), 2'000);
  EXPECT_EQ(backoffDelayMs(6, 0), 16'000);
  EXPECT_EQ(backoffDelayMs(7, 0), 30'000);
  EXPECT_EQ(backoffDelayMs(1'000, 0), 30'000);
  EXPECT_EQ(backoffDelayMs(1, 1), 600);
  EXPECT_EQ(backoffDelayMs(2, -1), 900);
  EXPECT_EQ(backoffDelayMs(7, -1), 27'000);
  EXPECT_EQ(backoffDelayMs(7, 1), 30'000);
  // Every delay is on the 100 ms grid, so few TimerLists are ever created.
  for (uint32_t f = 1; f < 12; ++f) {
    for (int j = -1; j <= 1; ++j) EXPECT_EQ(backoffDelayMs(f, j) % 100, 0) << f << " " << j;
  }
}

}  // namespace
}  // namespace tandem::admin
