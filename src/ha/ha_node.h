#pragma once
// HaNode: the ha thread of DESIGN §1. It drives one VrrpRouter (vrrp_state.h) with real time and
// real packets, and performs its actions: adverts on the VRRP socket, VIPs through rtnetlink,
// gratuitous ARP bursts.
//
// Loop: a plain ppoll() over three descriptors (VRRP socket, RTNLGRP_LINK subscription, an eventfd
// for stop()/setTrackPenalty()) with a timeout to the earliest deadline (the router's
// nextDeadline() or the next GARP round), in microseconds. Not the worker EventLoop: its timers
// come in fixed-duration lists with a coarse clock, while VRRP deadlines move with every advert
// (Master_Down_Interval depends on the learned interval and on the priority), and three fds do not
// need epoll. Nothing else runs on this thread, so nothing can delay an advert; the only blocking
// calls are netlink requests, bounded by Netlink::kRequestTimeoutMs.
// Within one wake-up, queued adverts are handled before due timers: an advert that arrived before
// Master_Down_Timer expired must not lose to it just because the thread woke late.
//
// Network namespaces: make() opens every socket (netlink, link monitor, VRRP, packet) in the
// namespace of the thread that calls it, and nothing is opened later. So to run a node inside a
// namespace, call make() on a thread that has setns()'d into it; start(), stop() and the rest may
// be called from any thread, and the ha thread itself may sit in any namespace.
//
// Addresses are host byte order (vrrp_packet.h).
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"
#include "ha/garp.h"
#include "ha/netlink.h"
#include "ha/vrrp_packet.h"
#include "ha/vrrp_state.h"

namespace tandem::ha {

class VrrpSocket;

struct VrrpSettings {
  std::string interface;
  uint8_t vrid = 51;
  uint8_t priority = 100;  // 1..254, 255 = address owner
  uint16_t advert_interval_cs = 100;
  bool preempt = true;
  int64_t preempt_delay_ms = 0;
  std::vector<std::pair<uint32_t, uint8_t>> vips;  // host order address, prefix length
  std::vector<uint32_t> unicast_peers;             // empty: multicast 224.0.0.18
  uint32_t garp_count = 5;                         // per burst
  int64_t garp_repeat_ms = 5000;  // a second burst this long after taking over (0 = none)
};

class HaNode {
 public:
  using OnTransition = std::function<void(State from, State to, Reason why)>;  // on the HA thread

  // Validates the settings, resolves the interface (index, MAC, link state) and our primary IPv4
  // address (the VRRP source and tie-breaker; a VIP is never taken for it), and opens the sockets,
  // all in the calling thread's network namespace (see above). Errors say what is wrong; missing
  // privileges give EPERM and "needs CAP_NET_RAW/CAP_NET_ADMIN".
  static Result<std::unique_ptr<HaNode>> make(VrrpSettings settings, OnTransition on_transition);
  ~HaNode();  // stop()
  HaNode(const HaNode&) = delete;
  HaNode& operator=(const HaNode&) = delete;

  // VIP hygiene first (DESIGN §6: remove our VIPs if present, we do not own them yet; done when
  // start() returns), then the Startup event on the new ha thread. Once only; later calls do
  // nothing.
  void start();
  // Graceful: a master sends priority 0 and removes the VIPs (§6.4.3); joins the thread.
  // Idempotent; also fine before start().
  void stop();
  // Thread-safe. Effective priority = max(1, priority - penalty), at most 254; an owner (255)
  // ignores it. A master advertises a changed priority at once.
  void setTrackPenalty(int penalty);

  State state() const { return state_.load(std::memory_order_acquire); }  // thread-safe

  struct Counters {
    uint64_t adverts_sent = 0;      // packets (one per unicast peer)
    uint64_t adverts_received = 0;  // passed every check; handed to the state machine
    uint64_t transitions = 0;
    uint64_t garps_sent = 0;                        // frames
    std::array<uint64_t, kRejectCount> rejected{};  // by Reject
    uint64_t unknown_peer = 0;  // unicast mode: valid adverts from addresses that are no peer
  };
  Counters counters() const;                                                        // thread-safe
  uint32_t masterIp() const { return master_ip_.load(std::memory_order_relaxed); }  // thread-safe
  uint32_t ownIp() const { return own_ip_; }

 private:
  struct Resources;
  HaNode(VrrpSettings settings, OnTransition on_transition, std::unique_ptr<Resources> res,
         LinkInfo link, uint32_t own_ip);

  void run();
  void execute(const Actions& actions, int64_t now_ms);
  void sendAdvert(uint8_t priority);
  void addVips();
  void removeVips();
  void sendGarpRound();
  void handleLink(int64_t now_ms);
  void handleLinkState(const LinkInfo& link, int64_t now_ms);
  void receiveAdverts(int64_t now_ms);
  uint8_t effectivePriority() const;
  void wake();

  // Immutable after make().
  const VrrpSettings settings_;
  const OnTransition on_transition_;
  const std::unique_ptr<Resources> res_;
  const int ifindex_;
  const uint32_t own_ip_;

  // Owned by the ha thread (and by start() before the thread exists).
  VrrpRouter router_;
  GarpSchedule garp_;
  MacAddress mac_;
  bool link_up_;
  bool send_error_logged_ = false;

  // Cross-thread.
  std::mutex lifecycle_mu_;
  std::thread thread_;
  bool started_ = false;
  std::atomic<bool> stop_requested_{false};
  std::atomic<int> penalty_{0};
  std::atomic<State> state_{State::kInit};
  std::atomic<uint32_t> master_ip_{0};
  std::atomic<uint64_t> adverts_sent_{0}, adverts_received_{0}, transitions_{0}, garps_sent_{0};
};

}  // namespace tandem::ha
