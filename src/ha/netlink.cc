#include "ha/netlink.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/clock.h"

namespace tandem::ha {
namespace {

// Receive buffer: a dump of a few hundred addresses fits; the kernel never splits a message.
constexpr size_t kBufferSize = 32 * 1024;

tl::unexpected<Error> sysFail(int err, std::string what) {
  return fail(ErrorSource::kInternal, err, fmt::format("netlink: {}: {}", what, strerror(err)));
}

// Attribute table for mnl_attr_parse (a plain C callback).
struct Attrs {
  explicit Attrs(size_t max) : tb(max + 1, nullptr) {}
  std::vector<const nlattr*> tb;
  const nlattr* operator[](size_t type) const { return type < tb.size() ? tb[type] : nullptr; }
};

int collectAttr(const nlattr* attr, void* data) {
  auto* attrs = static_cast<Attrs*>(data);
  const uint16_t type = mnl_attr_get_type(attr);
  if (type < attrs->tb.size()) attrs->tb[type] = attr;
  return MNL_CB_OK;
}

LinkInfo parseLink(const nlmsghdr* nlh) {
  const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
  Attrs attrs(IFLA_MAX);
  mnl_attr_parse(nlh, sizeof(*ifi), collectAttr, &attrs);
  LinkInfo info;
  info.index = ifi->ifi_index;
  info.admin_up = (ifi->ifi_flags & IFF_UP) != 0;
  info.running = (ifi->ifi_flags & IFF_RUNNING) != 0;
  if (const nlattr* a = attrs[IFLA_IFNAME]; a && mnl_attr_validate(a, MNL_TYPE_NUL_STRING) >= 0) {
    info.name = mnl_attr_get_str(a);
  }
  if (const nlattr* a = attrs[IFLA_ADDRESS]; a && mnl_attr_get_payload_len(a) == info.mac.size()) {
    memcpy(info.mac.data(), mnl_attr_get_payload(a), info.mac.size());
  }
  return info;
}

}  // namespace

std::string formatMac(const MacAddress& m) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4],
                     m[5]);
}

std::string formatIpv4(uint32_t a) {
  return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

// ---- Netlink ----

Result<std::unique_ptr<Netlink>> Netlink::open() {
  mnl_socket* nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (nl == nullptr) return sysFail(errno, "socket");
  if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int err = errno;
    mnl_socket_close(nl);
    return sysFail(err, "bind");
  }
  return std::unique_ptr<Netlink>(new Netlink(nl));
}

Netlink::Netlink(mnl_socket* nl)
    : nl_(nl), portid_(mnl_socket_get_portid(nl)), seq_(static_cast<uint32_t>(monoUs())) {
  buf_.resize(kBufferSize);
}

Netlink::~Netlink() { mnl_socket_close(nl_); }

Result<void> Netlink::request(nlmsghdr* req, const OnMessage& on_message) {
  const uint32_t seq = ++seq_;
  req->nlmsg_seq = seq;
  if (mnl_socket_sendto(nl_, req, req->nlmsg_len) < 0) return sysFail(errno, "send");
  const int64_t deadline_us = monoUs() + int64_t{kRequestTimeoutMs} * 1000;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf_.data(), buf_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return sysFail(errno, "receive");
      const int64_t left_us = deadline_us - monoUs();
      if (left_us <= 0) return sysFail(ETIMEDOUT, "no answer from the kernel");
      pollfd pfd{mnl_socket_get_fd(nl_), POLLIN, 0};
      poll(&pfd, 1, static_cast<int>((left_us + 999) / 1000));
      continue;
    }
    int len = static_cast<int>(n);
    for (const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf_.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      // The answer to an earlier request that timed out: not ours any more.
      if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != portid_) continue;
      if (nlh->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (e->error == 0) return {};  // ACK
        return fail(ErrorSource::kInternal, -e->error, strerror(-e->error));
      }
      if (nlh->nlmsg_type == NLMSG_DONE) return {};
      if (nlh->nlmsg_type < NLMSG_MIN_TYPE) continue;  // NOOP, OVERRUN
      on_message(nlh);
    }
  }
}

Result<LinkInfo> Netlink::link(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return fail(ErrorSource::kConfig, EINVAL, fmt::format("interface name '{}' is invalid", name));
  }
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf_.data());
  nlh->nlmsg_type = RTM_GETLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  std::optional<LinkInfo> found;
  auto r = request(nlh, [&](const nlmsghdr* m) {
    if (m->nlmsg_type == RTM_NEWLINK) found = parseLink(m);
  });
  if (!r) {
    if (r.error().code == ENODEV) {
      return fail(ErrorSource::kConfig, ENODEV, fmt::format("no interface named '{}'", name));
    }
    return sysFail(r.error().code, fmt::format("look up interface '{}'", name));
  }
  if (!found) return sysFail(ENODEV, fmt::format("look up interface '{}'", name));
  return *found;
}

Result<LinkInfo> Netlink::link(int index) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf_.data());
  nlh->nlmsg_type = RTM_GETLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = index;
  std::optional<LinkInfo> found;
  auto r = request(nlh, [&](const nlmsghdr* m) {
    if (m->nlmsg_type == RTM_NEWLINK) found = parseLink(m);
  });
  if (!r) return sysFail(r.error().code, fmt::format("look up interface index {}", index));
  if (!found) return sysFail(ENODEV, fmt::format("look up interface index {}", index));
  return *found;
}

Result<void> Netlink::setLinkUp(int index, bool up) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf_.data());
  nlh->nlmsg_type = RTM_NEWLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = index;
  ifi->ifi_change = IFF_UP;
  ifi->ifi_flags = up ? IFF_UP : 0;
  auto r = request(nlh, [](const nlmsghdr*) {});
  if (!r) {
    return sysFail(r.error().code, fmt::format("set interface {} {}", index, up ? "up" : "down"));
  }
  return {};
}

Result<std::vector<Ipv4Address>> Netlink::addresses(int index) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf_.data());
  nlh->nlmsg_type = RTM_GETADDR;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;  // a dump ends with NLMSG_DONE
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_INET;
  std::vector<Ipv4Address> out;
  auto r = request(nlh, [&](const nlmsghdr* m) {
    if (m->nlmsg_type != RTM_NEWADDR) return;
    const auto* a = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(m));
    if (a->ifa_family != AF_INET || static_cast<int>(a->ifa_index) != index) return;
    Attrs attrs(IFA_MAX);
    mnl_attr_parse(m, sizeof(*a), collectAttr, &attrs);
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS differs only on point-to-point.
    const nlattr* addr = attrs[IFA_LOCAL] ? attrs[IFA_LOCAL] : attrs[IFA_ADDRESS];
    if (addr == nullptr || mnl_attr_get_payload_len(addr) != 4) return;
    uint32_t flags = a->ifa_flags;
    if (const nlattr* f = attrs[IFA_FLAGS]; f && mnl_attr_get_payload_len(f) == 4) {
      flags = mnl_attr_get_u32(f);
    }
    out.push_back(Ipv4Address{ntohl(mnl_attr_get_u32(addr)), a->ifa_prefixlen,
                              (flags & IFA_F_SECONDARY) != 0});
  });
  if (!r) return sysFail(r.error().code, fmt::format("list addresses of interface {}", index));
  return out;
}

Result<Ipv4Address> Netlink::primaryAddress(int index, std::span<const uint32_t> except) {
  auto all = addresses(index);
  if (!all) return tl::unexpected(all.error());
  for (const Ipv4Address& a : *all) {
    if (a.secondary || std::find(except.begin(), except.end(), a.address) != except.end()) {
      continue;
    }
    return a;
  }
  return fail(ErrorSource::kConfig, ENOENT,
              fmt::format("interface {} has no IPv4 address of its own", index));
}

Result<bool> Netlink::addAddress(int index, uint32_t address, uint8_t prefix_len) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf_.data());
  nlh->nlmsg_type = RTM_NEWADDR;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = prefix_len;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = static_cast<uint32_t>(index);
  mnl_attr_put_u32(nlh, IFA_LOCAL, htonl(address));
  mnl_attr_put_u32(nlh, IFA_ADDRESS, htonl(address));
  auto r = request(nlh, [](const nlmsghdr*) {});
  if (r) return true;
  if (r.error().code == EEXIST) return false;
  return sysFail(r.error().code,
                 fmt::format("add {}/{} on interface {}", formatIpv4(address), prefix_len, index));
}

Result<bool> Netlink::removeAddress(int index, uint32_t address) {
  // With only IFA_LOCAL the kernel deletes the first entry with that address whatever its prefix
  // (inet_rtm_deladdr), so a leftover with another prefix goes too. Repeat for duplicates.
  bool removed = false;
  for (int i = 0; i < 4; ++i) {
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf_.data());
    nlh->nlmsg_type = RTM_DELADDR;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
    ifa->ifa_family = AF_INET;
    ifa->ifa_index = static_cast<uint32_t>(index);
    mnl_attr_put_u32(nlh, IFA_LOCAL, htonl(address));
    auto r = request(nlh, [](const nlmsghdr*) {});
    if (!r) {
      if (r.error().code == EADDRNOTAVAIL) return removed;
      return sysFail(r.error().code,
                     fmt::format("remove {} from interface {}", formatIpv4(address), index));
    }
    removed = true;
  }
  return removed;
}

// ---- LinkMonitor ----

Result<std::unique_ptr<LinkMonitor>> LinkMonitor::open() {
  mnl_socket* nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (nl == nullptr) return sysFail(errno, "socket");
  if (mnl_socket_bind(nl, RTMGRP_LINK, MNL_SOCKET_AUTOPID) < 0) {
    const int err = errno;
    mnl_socket_close(nl);
    return sysFail(err, "subscribe to link changes");
  }
  return std::unique_ptr<LinkMonitor>(new LinkMonitor(nl));
}

LinkMonitor::LinkMonitor(mnl_socket* nl) : nl_(nl) { buf_.resize(kBufferSize); }

LinkMonitor::~LinkMonitor() { mnl_socket_close(nl_); }

int LinkMonitor::fd() const { return mnl_socket_get_fd(nl_); }

LinkMonitor::Drained LinkMonitor::drain(int index) {
  Drained out;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf_.data(), buf_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {  // the socket overflowed; it keeps working
        out.overrun = true;
        continue;
      }
      return out;  // EAGAIN: all read
    }
    int len = static_cast<int>(n);
    for (const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf_.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type != RTM_NEWLINK && nlh->nlmsg_type != RTM_DELLINK) continue;
      const auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
      if (ifi->ifi_index != index) continue;
      out.deleted = nlh->nlmsg_type == RTM_DELLINK;
      out.latest = parseLink(nlh);
      if (out.deleted) out.latest->admin_up = out.latest->running = false;
    }
  }
}

}  // namespace tandem::ha
