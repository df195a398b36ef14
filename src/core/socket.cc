#include "core/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tandem {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Result<SockAddr> parseAddress(std::string_view host, uint16_t port) {
  SockAddr a;
  std::string h(host);
  if (h == "localhost") h = "127.0.0.1";
  if (!h.empty() && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    a.len = sizeof(sockaddr_in);
    return a;
  }
  if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    a.len = sizeof(sockaddr_in6);
    return a;
  }
  return fail(ErrorSource::kConfig, EINVAL, "not a numeric IP address: " + h);
}

std::string ipText(const SockAddr& a) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (a.family() == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a.ss)->sin_addr, buf, sizeof buf);
  } else if (a.family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a.ss)->sin6_addr, buf, sizeof buf);
  }
  return buf;
}

std::string_view ipBytes(const SockAddr& a) {
  if (a.family() == AF_INET) {
    const auto* p = &reinterpret_cast<const sockaddr_in*>(&a.ss)->sin_addr;
    return {reinterpret_cast<const char*>(p), 4};
  }
  if (a.family() == AF_INET6) {
    const auto* p = &reinterpret_cast<const sockaddr_in6*>(&a.ss)->sin6_addr;
    return {reinterpret_cast<const char*>(p), 16};
  }
  return {};
}

uint16_t portOf(const SockAddr& a) {
  if (a.family() == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6*>(a.get())->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(a.get())->sin_port);
}

uint16_t localPort(int fd) {
  SockAddr a;
  a.len = sizeof a.ss;
  if (fd < 0 || ::getsockname(fd, a.get(), &a.len) != 0) return 0;
  return portOf(a);
}

Result<int> listenOn(const SockAddr& addr, int backlog, bool freebind) {
  UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(ErrorSource::kInternal, errno, std::string("socket: ") + strerror(errno));
  int one = 1;
  if (freebind) {
    const int level = addr.family() == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
    const int opt = addr.family() == AF_INET6 ? IPV6_FREEBIND : IP_FREEBIND;
    setsockopt(fd.get(), level, opt, &one, sizeof one);
  }
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Accepted sockets inherit it (Linux): one setsockopt per listener instead of per connection.
  setNoDelay(fd.get());
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    return fail(ErrorSource::kInternal, errno, std::string("SO_REUSEPORT: ") + strerror(errno));
  }
  if (::bind(fd.get(), addr.get(), addr.len) != 0) {
    return fail(ErrorSource::kInternal, errno, std::string("bind: ") + strerror(errno));
  }
  if (::listen(fd.get(), backlog) != 0) {
    return fail(ErrorSource::kInternal, errno, std::string("listen: ") + strerror(errno));
  }
  return fd.release();
}

Result<int> connectNonBlocking(const SockAddr& addr) {
  UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(ErrorSource::kInternal, errno, std::string("socket: ") + strerror(errno));
  setNoDelay(fd.get());
  if (::connect(fd.get(), addr.get(), addr.len) != 0 && errno != EINPROGRESS) {
    int e = errno;
    return fail(ErrorSource::kUpstream, e, std::string("connect: ") + strerror(e), true);
  }
  return fd.release();
}

int socketError(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

void setNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace tandem
