#include "ha/vrrp_socket.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "ha/netlink.h"

namespace tandem::ha {
namespace {

// The largest valid advert is 20 + 40 (IP options) + 8 + 4 × 255 bytes; anything longer is
// truncated and then fails checkIpHeader() as too short.
constexpr size_t kReceiveBuffer = 2048;

tl::unexpected<Error> sysFail(int err, const std::string& what) {
  const bool perm = err == EPERM || err == EACCES;
  return fail(ErrorSource::kInternal, err,
              fmt::format("vrrp socket: {}: {}{}", what, strerror(err),
                          perm ? " (needs CAP_NET_RAW/CAP_NET_ADMIN)" : ""));
}

template <typename T>
bool setOpt(int fd, int level, int name, const T& value) {
  return setsockopt(fd, level, name, &value, sizeof value) == 0;
}

}  // namespace

Result<std::unique_ptr<VrrpSocket>> VrrpSocket::open(VrrpSocketOptions options) {
  std::erase(options.unicast_peers, options.own_ip);  // one peer list for every node is fine
  const int fd = ::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, kVrrpProtocol);
  if (fd < 0) return sysFail(errno, "socket(AF_INET, SOCK_RAW, 112)");
  std::unique_ptr<VrrpSocket> s(new VrrpSocket(fd, std::move(options)));
  const VrrpSocketOptions& o = s->options_;
  const bool multicast = o.unicast_peers.empty();

  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o.ifname.c_str(),
                 static_cast<socklen_t>(o.ifname.size())) != 0) {
    return sysFail(errno, fmt::format("bind to device {}", o.ifname));
  }
  const int tos = kVrrpTos, ttl = kVrrpTtl, off = 0;
  const unsigned char mttl = kVrrpTtl, loop = 0;
  if (!setOpt(fd, IPPROTO_IP, IP_TOS, tos)) return sysFail(errno, "IP_TOS");
  if (!setOpt(fd, IPPROTO_IP, IP_TTL, ttl)) return sysFail(errno, "IP_TTL");
  if (!setOpt(fd, IPPROTO_IP, IP_MULTICAST_TTL, mttl)) return sysFail(errno, "IP_MULTICAST_TTL");
  if (!setOpt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, loop)) {
    return sysFail(errno, "IP_MULTICAST_LOOP");
  }
  ip_mreqn mreq{};
  mreq.imr_ifindex = o.ifindex;
  if (!setOpt(fd, IPPROTO_IP, IP_MULTICAST_IF, mreq)) return sysFail(errno, "IP_MULTICAST_IF");
  if (multicast) {
    mreq.imr_multiaddr.s_addr = htonl(kVrrpMulticast);  // §5.1.1.2
    if (!setOpt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, mreq)) {
      return sysFail(errno, fmt::format("join 224.0.0.18 on {}", o.ifname));
    }
  } else if (!setOpt(fd, IPPROTO_IP, IP_MULTICAST_ALL, off)) {
    return sysFail(errno, "IP_MULTICAST_ALL");
  }
  return s;
}

VrrpSocket::VrrpSocket(int fd, VrrpSocketOptions options)
    : fd_(fd), options_(std::move(options)), buf_(kReceiveBuffer) {}

VrrpSocket::~VrrpSocket() { ::close(fd_); }

Result<void> VrrpSocket::sendTo(const Advert& advert, uint32_t dst_ip) {
  const std::vector<uint8_t> payload = encode(advert, options_.own_ip, dst_ip);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(dst_ip);
  iovec iov{const_cast<uint8_t*>(payload.data()), payload.size()};
  // IP_PKTINFO pins the source address (and the interface) that the checksum was computed with.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(in_pktinfo))] = {};
  msghdr msg{};
  msg.msg_name = &to;
  msg.msg_namelen = sizeof to;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = IPPROTO_IP;
  c->cmsg_type = IP_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
  in_pktinfo info{};
  info.ipi_ifindex = options_.ifindex;
  info.ipi_spec_dst.s_addr = htonl(options_.own_ip);
  memcpy(CMSG_DATA(c), &info, sizeof info);
  if (::sendmsg(fd_, &msg, MSG_DONTWAIT) < 0) {
    const int err = errno;
    return fail(ErrorSource::kInternal, err,
                fmt::format("vrrp: send to {}: {}", formatIpv4(dst_ip), strerror(err)));
  }
  return {};
}

Result<size_t> VrrpSocket::send(const Advert& advert) {
  if (!unicast()) {
    auto r = sendTo(advert, kVrrpMulticast);
    if (!r) return tl::unexpected(r.error());
    return size_t{1};
  }
  size_t sent = 0;
  std::optional<Error> last;
  for (uint32_t peer : options_.unicast_peers) {
    auto r = sendTo(advert, peer);
    if (r) {
      ++sent;
    } else {
      last = r.error();
    }
  }
  if (sent == 0 && last) return tl::unexpected(*last);
  return sent;
}

VrrpSocket::Received VrrpSocket::receive() {
  Received out;
  ssize_t n;
  do {
    n = ::recv(fd_, buf_.data(), buf_.size(), MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      out.kind = Received::Kind::kError;
      out.error = errno;
    }
    return out;
  }
  auto rejectWith = [&](const Error& e) {
    out.kind = Received::Kind::kRejected;
    out.reject = rejectOf(e);
    count(rejected_[static_cast<size_t>(out.reject)]);
    return out;
  };
  auto ip = checkIpHeader(std::span<const uint8_t>(buf_.data(), static_cast<size_t>(n)));
  if (!ip) return rejectWith(ip.error());
  auto advert = decode(ip->payload, ip->src_ip, ip->dst_ip);
  if (!advert) return rejectWith(advert.error());
  out.src_ip = ip->src_ip;
  if (unicast() && std::find(options_.unicast_peers.begin(), options_.unicast_peers.end(),
                             ip->src_ip) == options_.unicast_peers.end()) {
    out.kind = Received::Kind::kUnknownPeer;
    count(unknown_peer_);
    return out;
  }
  out.kind = Received::Kind::kAdvert;
  out.advert = std::move(*advert);
  return out;
}

}  // namespace tandem::ha
