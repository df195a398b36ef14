#include "proxy/splice_pipe.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace tandem::proxy {

PipePool::~PipePool() {
  for (Pipe p : free_) {
    ::close(p.r);
    ::close(p.w);
  }
}

Pipe PipePool::acquire() {
  if (!free_.empty()) {
    Pipe p = free_.back();
    free_.pop_back();
    return p;
  }
  if (live_ >= max_live_) return {};
  int fds[2];
  if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};
  ++live_;
  return {fds[0], fds[1]};
}

void PipePool::release(Pipe p, bool empty) {
  if (p.r < 0) return;
  if (empty) {
    free_.push_back(p);
    return;
  }
  ::close(p.r);
  ::close(p.w);
  --live_;
}

long SpliceLane::fill(int src, bool& ready) {
  // Only called with an empty pipe, so EAGAIN means the socket is drained, not the pipe full.
  ssize_t n = ::splice(src, nullptr, pipe_.w, nullptr, kChunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n > 0) {
    // A short splice does not mean the socket is drained (the pipe may have run out of slots),
    // so only EAGAIN or EOF clears `ready`.
    queued_ += static_cast<size_t>(n);
    return n;
  }
  if (n == 0) return 0;
  if (errno == EAGAIN || errno == EINTR) {
    ready = false;
    return -1;
  }
  return -2;
}

long SpliceLane::drain(int dst, bool& ready) {
  ssize_t n = ::splice(pipe_.r, nullptr, dst, nullptr, queued_, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n > 0) {
    queued_ -= static_cast<size_t>(n);
    if (queued_ > 0) ready = false;
    return n;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    ready = false;
    return -1;
  }
  return -2;
}

}  // namespace tandem::proxy
