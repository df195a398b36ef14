#pragma once
// Gratuitous ARP for the VIPs of a new master (RFC 5798 §6.4.2: "broadcast a gratuitous ARP
// request containing the virtual router MAC address for each IP address"; we use the interface's
// own MAC, as keepalived does without use_vmac).
//
// The frame is keepalived's (vrrp_arp.c, FACTS.md "keepalived on the wire"): an ARP REQUEST to the
// Ethernet broadcast address, sender MAC = the interface's MAC, sender IP = target IP = the VIP,
// target MAC ff:ff:ff:ff:ff:ff. Receivers update an existing neighbour entry for the VIP (Linux
// even within its locktime, since the sender and target IP are equal).
#include <array>
#include <cstdint>
#include <memory>
#include <optional>

#include "core/error.h"
#include "ha/netlink.h"

namespace tandem::ha {

inline constexpr size_t kGarpFrameSize = 42;  // Ethernet header 14 + ARP for IPv4 over Ethernet 28

// The whole Ethernet frame of one gratuitous ARP request for `vip` (host byte order).
std::array<uint8_t, kGarpFrameSize> garpFrame(const MacAddress& mac, uint32_t vip);

// An AF_PACKET socket that only sends (protocol 0: the kernel queues nothing to it).
class GarpSender {
 public:
  // In the calling thread's network namespace (see netlink.h); needs CAP_NET_RAW.
  static Result<std::unique_ptr<GarpSender>> open(int ifindex);
  ~GarpSender();
  GarpSender(const GarpSender&) = delete;
  GarpSender& operator=(const GarpSender&) = delete;

  // One frame; never blocks (a full device queue drops it: the next round follows).
  Result<void> send(const MacAddress& mac, uint32_t vip);

 private:
  GarpSender(int fd, int ifindex) : fd_(fd), ifindex_(ifindex) {}
  int fd_;
  int ifindex_;
};

// When gratuitous ARP rounds are due; pure, on injected milliseconds, owned by the ha thread.
// A round is one frame per VIP; a burst is `count` rounds, the first at once (right after the
// master's first advert and AddVips), the others `spacing_ms` apart. keepalived sends its five
// back to back (vrrp_garp_interval 0); we spread them a little so that one short loss (a bridge
// port still learning, a full queue) cannot swallow the whole burst, which still ends within
// 4 × spacing.
// - A request while a burst runs merges into it: the burst goes on, topped up to `count` rounds
//   from now, instead of a second burst running alongside (every worse advert a master hears
//   asks for GARP, see vrrp_state.h).
// - Each request (re)schedules ONE repeat burst `repeat_ms` later (keepalived's
//   vrrp_garp_master_delay, 5 s; 0 = none): a repeat only moves later, there is never a queue.
// - cancel() when leaving Master: the VIPs are gone, announcing them would pull clients back.
class GarpSchedule {
 public:
  static constexpr int64_t kDefaultSpacingMs = 10;

  GarpSchedule(uint32_t count, int64_t repeat_ms, int64_t spacing_ms = kDefaultSpacingMs)
      : count_(count), repeat_ms_(repeat_ms), spacing_ms_(spacing_ms) {}

  void request(int64_t now_ms);
  void cancel();
  // true when a round is due now (consumes it). Call in a loop: with spacing 0 a whole burst is
  // due at once. A late call sends one round and keeps the spacing from now (no catch-up flood).
  bool takeRound(int64_t now_ms);
  // The next time takeRound() has work; nullopt when idle.
  std::optional<int64_t> nextDeadline() const;
  bool idle() const { return rounds_left_ == 0 && !repeat_at_ms_; }

 private:
  void startBurst(int64_t now_ms);

  uint32_t count_;
  int64_t repeat_ms_;
  int64_t spacing_ms_;
  uint32_t rounds_left_ = 0;
  int64_t next_round_ms_ = 0;
  std::optional<int64_t> repeat_at_ms_;
};

}  // namespace tandem::ha
