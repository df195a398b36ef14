#include "ha/listener_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "core/log.h"

namespace tandem::ha {

ListenerProbe::ListenerProbe(Targets targets, std::chrono::milliseconds interval,
                             std::chrono::milliseconds timeout, int fall, Changed changed)
    : targets_(std::move(targets)),
      interval_(interval),
      timeout_(timeout),
      fall_(fall < 1 ? 1 : fall),
      changed_(std::move(changed)) {}

ListenerProbe::~ListenerProbe() { stop(); }

void ListenerProbe::start() {
  thread_ = std::thread([this] { loop(); });
}

void ListenerProbe::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::string ListenerProbe::probeOnce(const ProbeTarget& t, std::chrono::milliseconds timeout) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  if (t.host.find(':') != std::string::npos) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    a6->sin6_family = family = AF_INET6;
    a6->sin6_port = htons(t.port);
    if (inet_pton(AF_INET6, t.host.c_str(), &a6->sin6_addr) != 1) return "bad address";
    if (IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr)) a6->sin6_addr = in6addr_loopback;
    len = sizeof *a6;
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(t.port);
    if (inet_pton(AF_INET, t.host.c_str(), &a4->sin_addr) != 1) return "bad address";
    if (a4->sin_addr.s_addr == htonl(INADDR_ANY)) a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *a4;
  }
  const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket: ") + std::strerror(errno);
  std::string why;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 && errno != EINPROGRESS) {
    why = std::string("connect: ") + std::strerror(errno);
  } else {
    pollfd p{fd, POLLOUT, 0};
    const int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    int err = 0;
    socklen_t elen = sizeof err;
    if (n == 0) {
      why = "connect: timed out";
    } else if (n < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
      why = std::string("connect: ") + std::strerror(err ? err : errno);
    }
  }
  ::close(fd);
  return why;
}

void ListenerProbe::loop() {
  std::map<std::string, int> failures;  // by listener name
  bool down = false;
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    std::string detail;
    bool now_down = false;
    std::map<std::string, int> next;
    for (const ProbeTarget& t : targets_()) {
      const std::string why = probeOnce(t, timeout_);
      int& f = next[t.name];
      f = why.empty() ? 0 : failures[t.name] + 1;
      if (f >= fall_) {
        now_down = true;
        detail += (detail.empty() ? "" : "; ") + ("listener " + t.name + ": " + why);
      }
    }
    failures = std::move(next);
    if (now_down != down) {
      down = now_down;
      if (down) {
        log::warn("tracking: {}", detail);
      } else {
        log::info("tracking: every tracked listener accepts again");
      }
      changed_(down, detail);
    }
    lock.lock();
    cv_.wait_for(lock, interval_, [this] { return stop_; });
  }
}

}  // namespace tandem::ha
