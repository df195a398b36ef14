#pragma once
// The VRRP socket of one interface: a raw IPv4 socket for protocol 112 (RFC 5798 §5.1).
//
// Sending: IP TOS 0xc0 (internetwork control, as keepalived), TTL 255 for unicast and multicast
// (§5.1.1.3), source = our primary address (IP_PKTINFO, so a VIP added to the interface never
// becomes the source and the checksum's pseudo-header is right), to 224.0.0.18 or to each unicast
// peer (each with its own pseudo-header checksum). Never blocks: a full queue drops the advert.
// Receiving: whole IPv4 packets (raw sockets deliver the header), bound to the interface
// (SO_BINDTODEVICE); checkIpHeader() then decode() (TTL 255, version, checksum, ...). Every
// rejection is counted by its Reject reason and goes no further. In unicast mode adverts from
// addresses that are not configured peers are counted and dropped too.
//
// Multicast mode joins 224.0.0.18 on the interface, with IP_MULTICAST_LOOP off (our own adverts do
// not come back). Unicast mode joins nothing and sets IP_MULTICAST_ALL off, so it never sees the
// group's traffic even when another socket on the host joined it.
//
// Like every socket of the ha module it lives in the network namespace of the thread that opened
// it (see netlink.h). Not thread-safe except the counters.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "ha/vrrp_packet.h"

namespace tandem::ha {

inline constexpr int kVrrpTos = 0xc0;

struct VrrpSocketOptions {
  int ifindex = 0;
  std::string ifname;
  uint32_t own_ip = 0;                  // source of our adverts, host byte order
  std::vector<uint32_t> unicast_peers;  // empty: multicast 224.0.0.18; own_ip is skipped
};

class VrrpSocket {
 public:
  // EPERM/EACCES: the message says CAP_NET_RAW is needed.
  static Result<std::unique_ptr<VrrpSocket>> open(VrrpSocketOptions options);
  ~VrrpSocket();
  VrrpSocket(const VrrpSocket&) = delete;
  VrrpSocket& operator=(const VrrpSocket&) = delete;

  int fd() const { return fd_; }
  bool unicast() const { return !options_.unicast_peers.empty(); }
  const VrrpSocketOptions& options() const { return options_; }

  // Sends `advert` to the group or to every peer. Returns how many packets left; fails with the
  // last errno when none did.
  Result<size_t> send(const Advert& advert);

  struct Received {
    enum class Kind {
      kNone,         // nothing queued (EAGAIN)
      kAdvert,       // advert and src_ip are set
      kRejected,     // reject is set (and counted)
      kUnknownPeer,  // unicast mode, src_ip is not a configured peer (counted)
      kError,        // a receive error (errno in `error`); nothing to process
    };
    Kind kind = Kind::kNone;
    Advert advert;
    uint32_t src_ip = 0;
    Reject reject = Reject::kTooShort;
    int error = 0;
  };
  // Reads and checks one queued packet, without blocking.
  Received receive();

  // Thread-safe (relaxed atomics; one writer, the owner).
  uint64_t rejected(Reject reason) const {
    return rejected_[static_cast<size_t>(reason)].load(std::memory_order_relaxed);
  }
  uint64_t unknownPeer() const { return unknown_peer_.load(std::memory_order_relaxed); }

 private:
  VrrpSocket(int fd, VrrpSocketOptions options);
  Result<void> sendTo(const Advert& advert, uint32_t dst_ip);
  void count(std::atomic<uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  int fd_;
  VrrpSocketOptions options_;
  std::array<std::atomic<uint64_t>, kRejectCount> rejected_{};
  std::atomic<uint64_t> unknown_peer_{0};
  std::vector<uint8_t> buf_;
};

}  // namespace tandem::ha
