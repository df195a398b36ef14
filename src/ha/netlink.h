#pragma once
// rtnetlink (NETLINK_ROUTE) through libmnl, for the ha thread (DESIGN §6: the master adds the VIPs,
// a backup removes them): interface lookup, link state, IPv4 addresses, and a subscription to link
// changes. Addresses are host byte order, as in vrrp_packet.h.
//
// Network namespaces: a netlink socket speaks to the namespace of the thread that opened it, for
// its whole life. Open these objects on a thread in the namespace you mean. They never open a
// socket afterwards (a request that timed out is not retried on a fresh socket: its late reply is
// skipped by sequence number), so whichever thread uses them later cannot reach another namespace.
//
// Requests block for at most kRequestTimeoutMs (the kernel answers in microseconds; the bound is
// for the ha thread, which must not stall an advert). Not thread-safe: one user at a time.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"

struct mnl_socket;
struct nlmsghdr;

namespace tandem::ha {

using MacAddress = std::array<uint8_t, 6>;

std::string formatMac(const MacAddress& mac);  // "02:42:67:ad:e2:fe"
std::string formatIpv4(uint32_t address);      // host order -> "198.18.0.100"

struct LinkInfo {
  int index = 0;
  std::string name;
  bool admin_up = false;  // IFF_UP
  bool running = false;   // IFF_RUNNING: carrier and operational state up
  MacAddress mac{};       // zero when the link has no 6-byte hardware address
  // Usable for VRRP: keepalived also wants both flags before it leaves FAULT.
  bool up() const { return admin_up && running; }
};

struct Ipv4Address {
  uint32_t address = 0;  // IFA_LOCAL, host byte order
  uint8_t prefix_len = 32;
  bool secondary = false;  // IFA_F_SECONDARY: another address of this subnet came first
  bool operator==(const Ipv4Address&) const = default;
};

class Netlink {
 public:
  static constexpr int kRequestTimeoutMs = 250;

  // Opens a request socket in the calling thread's network namespace.
  static Result<std::unique_ptr<Netlink>> open();
  ~Netlink();
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;

  Result<LinkInfo> link(const std::string& name);  // ENODEV: no such interface
  Result<LinkInfo> link(int index);
  Result<int> interfaceIndex(const std::string& name) {
    return link(name).map([](const LinkInfo& l) { return l.index; });
  }
  // Brings the link administratively up or down (ip link set dev X up|down).
  Result<void> setLinkUp(int index, bool up);

  // The IPv4 addresses on the interface, in the kernel's order (primaries first per subnet).
  Result<std::vector<Ipv4Address>> addresses(int index);
  // The first primary address that is not in `except` (the VIPs, which may be left over from a
  // previous run and must not become our VRRP source address). ENOENT when there is none.
  Result<Ipv4Address> primaryAddress(int index, std::span<const uint32_t> except = {});
  // Adds address/prefix_len. true: added; false: it was already there (not an error).
  Result<bool> addAddress(int index, uint32_t address, uint8_t prefix_len);
  // Removes every copy of the address, whatever its prefix length. true: something was removed;
  // false: it was not there (not an error).
  Result<bool> removeAddress(int index, uint32_t address);

 private:
  explicit Netlink(mnl_socket* nl);
  using OnMessage = std::function<void(const nlmsghdr*)>;
  // Sends the request in buf_ and reads its answers until ACK/error or NLMSG_DONE, skipping
  // messages of other (stale) sequence numbers. The error's code is the kernel's errno.
  Result<void> request(nlmsghdr* req, const OnMessage& on_message);

  mnl_socket* nl_;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
  std::vector<char> buf_;
};

// A subscription to RTNLGRP_LINK: the ha loop polls fd() and calls drain() when it is readable.
class LinkMonitor {
 public:
  // Subscribes in the calling thread's namespace. Open it BEFORE reading the initial link state,
  // so that no change between the two is lost.
  static Result<std::unique_ptr<LinkMonitor>> open();
  ~LinkMonitor();
  LinkMonitor(const LinkMonitor&) = delete;
  LinkMonitor& operator=(const LinkMonitor&) = delete;

  int fd() const;

  struct Drained {
    std::optional<LinkInfo> latest;  // the last RTM_NEWLINK for the index, if any came
    bool deleted = false;            // an RTM_DELLINK for the index came last
    bool overrun = false;  // ENOBUFS: the kernel dropped notifications; query the link again
  };
  // Reads every queued notification without blocking and reports those about `index`.
  Drained drain(int index);

 private:
  explicit LinkMonitor(mnl_socket* nl);
  mnl_socket* nl_;
  std::vector<char> buf_;
};

}  // namespace tandem::ha
