#include "proxy/upstream.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <memory>

#include "proxy/worker.h"

namespace tandem::proxy {

UpstreamConn::UpstreamConn(Worker& w, BackendRt& backend, int server, int fd)
    : w_(w), backend_(backend), server_(server), fd_(fd), in_(w.pool()) {
  w_.loop().add(fd_, this);
}

UpstreamConn::~UpstreamConn() {
  if (fd_ >= 0) ::close(fd_);
}

void UpstreamConn::onIo(uint32_t events) {
  if (fd_ < 0) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) readable = true;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) writable = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hup = true;
  if (owner_) {
    owner_->onUpstreamIo(events);
  } else if (connected && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    close();  // idle in the pool: the server hung up or misbehaved
  }
}

void UpstreamConn::close() {
  if (fd_ < 0) return;
  ::close(fd_);  // also leaves the epoll set: the descriptor is never duplicated
  fd_ = -1;
  owner_ = nullptr;
  in_.clear();
  w_.upstreamClosed(this);
  w_.loop().destroyLater(std::unique_ptr<Deferred>(this));
}

}  // namespace tandem::proxy
