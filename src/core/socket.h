#pragma once
// Thin wrappers over BSD sockets: address resolution, listeners, non-blocking connect.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace tandem {

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&ss); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&ss); }
  int family() const { return ss.ss_family; }
};

// Numeric IPv4/IPv6 literal + port (no DNS on the data plane).
Result<SockAddr> parseAddress(std::string_view host, uint16_t port);
// The IP as text ("127.0.0.1", "::1"), without the port.
std::string ipText(const SockAddr& a);
// The port, in host order.
uint16_t portOf(const SockAddr& a);
// The local port a socket is bound to; 0 if it cannot be read.
uint16_t localPort(int fd);
// Raw address bytes (4 or 16), for hashing.
std::string_view ipBytes(const SockAddr& a);

// A non-blocking listening socket with SO_REUSEADDR and SO_REUSEPORT (one per worker).
// `freebind`: the address need not be on the host yet (a VRRP virtual IP held by another node).
Result<int> listenOn(const SockAddr& addr, int backlog = 4096, bool freebind = false);
// Starts a non-blocking connect; completion is signalled by EPOLLOUT (check with socketError()).
Result<int> connectNonBlocking(const SockAddr& addr);
int socketError(int fd);
void setNoDelay(int fd);

// Closes on scope exit unless released.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace tandem
