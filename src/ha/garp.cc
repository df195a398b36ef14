#include "ha/garp.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if_arp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tandem::ha {

std::array<uint8_t, kGarpFrameSize> garpFrame(const MacAddress& mac, uint32_t vip) {
  std::array<uint8_t, kGarpFrameSize> f{};
  uint8_t* p = f.data();
  auto put = [&p](std::initializer_list<uint8_t> bytes) {
    for (uint8_t b : bytes) *p++ = b;
  };
  auto putMac = [&p](const MacAddress& m) { p = std::copy(m.begin(), m.end(), p); };
  auto putIp = [&put](uint32_t a) {
    put({static_cast<uint8_t>(a >> 24), static_cast<uint8_t>(a >> 16), static_cast<uint8_t>(a >> 8),
         static_cast<uint8_t>(a)});
  };
  const MacAddress broadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  putMac(broadcast);  // Ethernet destination
  putMac(mac);        // Ethernet source
  put({0x08, 0x06});  // EtherType ARP
  put({0x00, 0x01});  // hardware type Ethernet
  put({0x08, 0x00});  // protocol type IPv4
  put({6, 4});        // address lengths
  put({0x00, ARPOP_REQUEST});
  putMac(mac);        // sender hardware address
  putIp(vip);         // sender protocol address
  putMac(broadcast);  // target hardware address, as keepalived
  putIp(vip);         // target protocol address = sender: gratuitous
  return f;
}

Result<std::unique_ptr<GarpSender>> GarpSender::open(int ifindex) {
  // Protocol 0: a send-only packet socket, nothing is ever queued for us to read.
  const int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const int err = errno;
    return fail(ErrorSource::kInternal, err,
                fmt::format("garp: packet socket: {}{}", strerror(err),
                            err == EPERM || err == EACCES ? " (needs CAP_NET_RAW)" : ""));
  }
  return std::unique_ptr<GarpSender>(new GarpSender(fd, ifindex));
}

GarpSender::~GarpSender() { ::close(fd_); }

Result<void> GarpSender::send(const MacAddress& mac, uint32_t vip) {
  const auto frame = garpFrame(mac, vip);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex_;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_halen = ETH_ALEN;
  memset(to.sll_addr, 0xff, ETH_ALEN);
  if (::sendto(fd_, frame.data(), frame.size(), 0, reinterpret_cast<const sockaddr*>(&to),
               sizeof to) < 0) {
    const int err = errno;
    return fail(ErrorSource::kInternal, err, fmt::format("garp: send: {}", strerror(err)));
  }
  return {};
}

// ---- GarpSchedule ----

void GarpSchedule::startBurst(int64_t now_ms) {
  if (count_ == 0) return;
  if (rounds_left_ == 0) next_round_ms_ = now_ms;  // a new burst starts at once
  rounds_left_ = count_;                           // a running one is topped up (merged)
}

void GarpSchedule::request(int64_t now_ms) {
  if (count_ == 0) return;
  startBurst(now_ms);
  if (repeat_ms_ > 0) repeat_at_ms_ = now_ms + repeat_ms_;
}

void GarpSchedule::cancel() {
  rounds_left_ = 0;
  repeat_at_ms_.reset();
}

bool GarpSchedule::takeRound(int64_t now_ms) {
  if (repeat_at_ms_ && now_ms >= *repeat_at_ms_) {
    repeat_at_ms_.reset();
    startBurst(now_ms);  // the repeat schedules no repeat of its own
  }
  if (rounds_left_ == 0 || now_ms < next_round_ms_) return false;
  --rounds_left_;
  next_round_ms_ = now_ms + spacing_ms_;
  return true;
}

std::optional<int64_t> GarpSchedule::nextDeadline() const {
  std::optional<int64_t> next;
  if (rounds_left_ > 0) next = next_round_ms_;
  if (repeat_at_ms_ && (!next || *repeat_at_ms_ < *next)) next = repeat_at_ms_;
  return next;
}

}  // namespace tandem::ha
