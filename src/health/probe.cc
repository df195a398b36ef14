#include "health/probe.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tandem::health {
namespace {
constexpr size_t kMaxBodyScan = 64 * 1024;
}

Probe::Probe(EventLoop& loop, BufferPool& pool, const config::ActiveHealth& cfg,
             const SockAddr& addr, std::string host_header, Done done)
    : loop_(loop),
      cfg_(cfg),
      addr_(addr),
      done_(std::move(done)),
      start_timer_(this, kStart),
      timeout_timer_(this, kTimeout),
      in_(pool) {
  if (cfg_.type == config::CheckType::kHttp) {
    request_ = cfg_.method + " " + cfg_.path + " HTTP/1.1\r\nHost: " + host_header +
               "\r\nUser-Agent: tandem-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  }
}

Probe::~Probe() {
  if (fd_ >= 0) {
    loop_.remove(fd_);
    ::close(fd_);
  }
}

void Probe::schedule(int64_t delay_ms) {
  if (running()) return;
  if (delay_ms <= 0) {
    start_timer_.cancel();
    begin();
    return;
  }
  start_timer_.arm(loop_.timers(delay_ms));
}

void Probe::onTimer(int tag) {
  if (tag == kStart) {
    begin();
  } else if (running()) {
    finish(false, "timeout after " + std::to_string(cfg_.timeout.count()) + "ms");
  }
}

void Probe::begin() {
  auto fd = connectNonBlocking(addr_);
  if (!fd) {
    finish(false, fd.error().message);
    return;
  }
  fd_ = *fd;
  connected_ = false;
  sent_ = 0;
  in_.clear();
  st_ = {};
  head_done_ = false;
  status_ = 0;
  loop_.add(fd_, this);
  timeout_timer_.arm(loop_.timers(cfg_.timeout.count()));
}

void Probe::finish(bool ok, const std::string& why) {
  timeout_timer_.cancel();
  if (fd_ >= 0) {
    loop_.remove(fd_);
    ::close(fd_);
    fd_ = -1;
  }
  in_.clear();
  done_(ok, why);  // may call schedule()
}

void Probe::onIo(uint32_t events) {
  if (fd_ < 0) return;
  if (!connected_) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = socketError(fd_);
    if (err != 0) {
      finish(false, std::string("connect: ") + strerror(err));
      return;
    }
    connected_ = true;
    if (cfg_.type == config::CheckType::kTcp) {
      finish(true, "connected");
      return;
    }
  }
  if (sent_ < request_.size()) onWritable();
  if (fd_ >= 0 && sent_ >= request_.size()) onReadable();
}

void Probe::onWritable() {
  ssize_t n = ::send(fd_, request_.data() + sent_, request_.size() - sent_, MSG_NOSIGNAL);
  if (n > 0) {
    sent_ += static_cast<size_t>(n);
  } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
    finish(false, std::string("send: ") + strerror(errno));
  }
}

void Probe::onReadable() {
  for (;;) {
    char* p = in_.prepare(4096);
    ssize_t n = ::read(fd_, p, in_.writable());
    if (n > 0) {
      in_.commit(static_cast<size_t>(n));
      std::string why;
      if (verdictFromResponse(why, false)) return;
      continue;
    }
    if (n == 0) {
      std::string why;
      if (!verdictFromResponse(why, true)) finish(false, "connection closed before a verdict");
      return;
    }
    if (errno == EAGAIN || errno == EINTR) return;
    finish(false, std::string("read: ") + strerror(errno));
    return;
  }
}

// Returns true once a verdict was delivered (finish() called).
bool Probe::verdictFromResponse(std::string& why, bool eof) {
  if (!head_done_) {
    auto r = http::parseResponseHead(in_.view(), 64 * 1024, http::Method::kGet, st_, head_);
    if (r.status == http::ParseStatus::kError) {
      finish(false, std::string("invalid response: ") + std::string(http::describe(r.error)));
      return true;
    }
    if (r.status == http::ParseStatus::kIncomplete) return false;
    head_done_ = true;
    status_ = head_.status;
    body_start_ = head_.head_length;
    bool expected = false;
    for (const auto& range : cfg_.expect) expected |= status_ >= range.low && status_ <= range.high;
    if (!expected) {
      finish(false, "status " + std::to_string(status_));
      return true;
    }
    if (cfg_.body_contains.empty()) {
      finish(true, "status " + std::to_string(status_));
      return true;
    }
  }
  std::string_view body = in_.view().substr(body_start_);
  if (body.find(cfg_.body_contains) != std::string_view::npos) {
    finish(true, "status " + std::to_string(status_) + ", body matches");
    return true;
  }
  if (eof || body.size() >= kMaxBodyScan) {
    finish(false, "body does not contain '" + cfg_.body_contains + "'");
    return true;
  }
  (void)why;
  return false;
}

}  // namespace tandem::health
