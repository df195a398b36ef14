#include "ha/ha_node.h"

#include <linux/capability.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/clock.h"
#include "core/log.h"
#include "ha/vrrp_socket.h"

namespace tandem::ha {
namespace {

// Packets handled per wake-up before timers get their turn: a flood of (rejected) packets must
// not starve Adver_Timer.
constexpr int kMaxPacketsPerWake = 64;

int64_t nowMs() { return monoUs() / 1000; }

bool hasCapability(int cap) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return true;  // unknown: the sockets will tell
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

tl::unexpected<Error> configError(std::string msg) {
  return fail(ErrorSource::kConfig, EINVAL, "ha: " + std::move(msg));
}

Result<void> validate(const VrrpSettings& s) {
  if (s.interface.empty()) return configError("vrrp.interface is empty");
  if (s.vrid == 0) return configError("vrid must be 1..255");
  if (s.priority == 0)
    return configError("priority must be 1..255 (0 is reserved, RFC 5798 §5.2.4)");
  if (s.advert_interval_cs == 0 || s.advert_interval_cs > kVrrpMaxIntervalCs) {
    return configError("advert_interval must be 10ms..40950ms (1..4095 centiseconds)");
  }
  if (s.vips.empty() || s.vips.size() > kVrrpMaxAddresses) {
    return configError("virtual_ips must hold 1..255 addresses");
  }
  for (const auto& [address, prefix] : s.vips) {
    if (prefix > 32)
      return configError(fmt::format("{}/{}: bad prefix", formatIpv4(address), prefix));
    if (address == 0) return configError("virtual_ips: 0.0.0.0 is not an address");
  }
  if (s.preempt_delay_ms < 0) return configError("preempt_delay must not be negative");
  if (s.garp_repeat_ms < 0) return configError("garp repeat delay must not be negative");
  return {};
}

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace

struct HaNode::Resources {
  std::unique_ptr<LinkMonitor> monitor;
  std::unique_ptr<Netlink> netlink;
  std::unique_ptr<VrrpSocket> socket;
  std::unique_ptr<GarpSender> garp;
  int wake_fd = -1;
  ~Resources() {
    if (wake_fd >= 0) ::close(wake_fd);
  }
};

Result<std::unique_ptr<HaNode>> HaNode::make(VrrpSettings settings, OnTransition on_transition) {
  if (auto v = validate(settings); !v) return tl::unexpected(v.error());
  if (!hasCapability(CAP_NET_RAW) || !hasCapability(CAP_NET_ADMIN)) {
    return fail(ErrorSource::kConfig, EPERM,
                "ha: needs CAP_NET_RAW/CAP_NET_ADMIN (VRRP raw socket, gratuitous ARP, VIPs via "
                "netlink): run as root or grant both capabilities");
  }
  const std::string& ifname = settings.interface;
  auto withInterface = [&](const Error& e) {
    Error out = e;
    out.message = fmt::format("ha: interface '{}': {}", ifname, e.message);
    return tl::unexpected(out);
  };

  auto res = std::make_unique<Resources>();
  // The subscription first: a change after the query below is then queued, never lost.
  auto monitor = LinkMonitor::open();
  if (!monitor) return withInterface(monitor.error());
  res->monitor = std::move(*monitor);
  auto netlink = Netlink::open();
  if (!netlink) return withInterface(netlink.error());
  res->netlink = std::move(*netlink);

  auto link = res->netlink->link(ifname);
  if (!link) return withInterface(link.error());
  // A VIP left over from a crash must not become our source address. Only an address owner
  // (priority 255) has a VIP that is the interface's real address (RFC 5798 §1: "IP Address
  // Owner"), and then that VIP is never added or removed.
  std::vector<uint32_t> vip_addresses;
  if (settings.priority != 255) {
    for (const auto& vip : settings.vips) vip_addresses.push_back(vip.first);
  }
  auto primary = res->netlink->primaryAddress(link->index, vip_addresses);
  if (!primary) {
    if (primary.error().code == ENOENT) {
      // §5.1.1.1: the source of an advert is the primary IPv4 address of the interface.
      return fail(ErrorSource::kConfig, ENOENT,
                  fmt::format("ha: interface '{}' has no IPv4 address besides the VIPs (VRRP "
                              "sends from the interface's primary address, RFC 5798 §5.1.1.1)",
                              ifname));
    }
    return withInterface(primary.error());
  }

  if (!settings.unicast_peers.empty() &&
      std::all_of(settings.unicast_peers.begin(), settings.unicast_peers.end(),
                  [&](uint32_t peer) { return peer == primary->address; })) {
    return configError(fmt::format("unicast_peers names only this node ({}); list the others",
                                   formatIpv4(primary->address)));
  }
  auto socket = VrrpSocket::open(
      VrrpSocketOptions{link->index, ifname, primary->address, settings.unicast_peers});
  if (!socket) return withInterface(socket.error());
  res->socket = std::move(*socket);
  auto garp = GarpSender::open(link->index);
  if (!garp) return withInterface(garp.error());
  res->garp = std::move(*garp);
  res->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (res->wake_fd < 0) {
    return fail(ErrorSource::kInternal, errno, fmt::format("ha: eventfd: {}", strerror(errno)));
  }
  return std::unique_ptr<HaNode>(new HaNode(std::move(settings), std::move(on_transition),
                                            std::move(res), *link, primary->address));
}

HaNode::HaNode(VrrpSettings settings, OnTransition on_transition, std::unique_ptr<Resources> res,
               LinkInfo link, uint32_t own_ip)
    : settings_(std::move(settings)),
      on_transition_(std::move(on_transition)),
      res_(std::move(res)),
      ifindex_(link.index),
      own_ip_(own_ip),
      router_(VrrpConfig{settings_.vrid, settings_.priority, settings_.advert_interval_cs,
                         settings_.preempt, settings_.preempt_delay_ms, own_ip}),
      garp_(settings_.garp_count, settings_.garp_repeat_ms),
      mac_(link.mac),
      link_up_(link.up()) {}

HaNode::~HaNode() { stop(); }

void HaNode::start() {
  std::lock_guard lock(lifecycle_mu_);
  if (started_) return;
  started_ = true;
  // DESIGN §6, VIP hygiene: after a crash (even kill -9) the VIPs may still be on the interface,
  // but until the election says so they are not ours.
  removeVips();
  // A fault set in Initialize applies at startup (vrrp_state.h). Later link changes are queued
  // on the monitor since make() and handled by the first loop iteration.
  if (!link_up_) {
    log::warn("ha {}: link is down at start", settings_.interface);
    execute(router_.setFault(true, nowMs()), nowMs());
  }
  thread_ = std::thread([this] { run(); });
  pthread_setname_np(thread_.native_handle(), "tandem-ha");
}

void HaNode::stop() {
  std::lock_guard lock(lifecycle_mu_);
  started_ = true;  // a stopped node does not start again
  if (!thread_.joinable()) return;
  stop_requested_.store(true);
  wake();
  thread_.join();
}

void HaNode::setTrackPenalty(int penalty) {
  if (penalty_.exchange(penalty) != penalty) wake();
}

uint8_t HaNode::effectivePriority() const {
  if (settings_.priority == 255) return 255;  // the address owner is not tracked
  const int p = int{settings_.priority} - penalty_.load(std::memory_order_relaxed);
  return static_cast<uint8_t>(std::clamp(p, 1, 254));
}

void HaNode::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(res_->wake_fd, &one, sizeof one);
}

HaNode::Counters HaNode::counters() const {
  Counters c;
  c.adverts_sent = adverts_sent_.load(std::memory_order_relaxed);
  c.adverts_received = adverts_received_.load(std::memory_order_relaxed);
  c.transitions = transitions_.load(std::memory_order_relaxed);
  c.garps_sent = garps_sent_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kRejectCount; ++i) {
    c.rejected[i] = res_->socket->rejected(static_cast<Reject>(i));
  }
  c.unknown_peer = res_->socket->unknownPeer();
  return c;
}

// ---- The ha thread ----

void HaNode::run() {
  execute(router_.startup(nowMs()), nowMs());
  pollfd fds[3] = {{res_->socket->fd(), POLLIN, 0},
                   {res_->monitor->fd(), POLLIN, 0},
                   {res_->wake_fd, POLLIN, 0}};
  while (!stop_requested_.load()) {
    std::optional<int64_t> deadline_ms = router_.nextDeadline();
    if (auto g = garp_.nextDeadline(); g && (!deadline_ms || *g < *deadline_ms)) deadline_ms = g;
    timespec timeout{};
    timespec* timeout_p = nullptr;
    if (deadline_ms) {
      const int64_t wait_us = std::max<int64_t>(0, *deadline_ms * 1000 - monoUs());
      timeout.tv_sec = wait_us / 1'000'000;
      timeout.tv_nsec = (wait_us % 1'000'000) * 1000;
      timeout_p = &timeout;
    }
    if (::ppoll(fds, 3, timeout_p, nullptr) < 0 && errno != EINTR) {
      log::error("ha {}: ppoll: {}", settings_.interface, strerror(errno));
    }
    if (fds[2].revents & POLLIN) {
      uint64_t v;
      while (::read(res_->wake_fd, &v, sizeof v) > 0) {
      }
    }
    if (stop_requested_.load()) break;
    int64_t now = nowMs();
    if (const uint8_t p = effectivePriority(); p != router_.priority()) {
      log::info("ha {}: effective priority {} -> {}", settings_.interface, router_.priority(), p);
      execute(router_.setPriority(p, now), now);
    }
    if (fds[1].revents) handleLink(now);
    if (fds[0].revents) receiveAdverts(now);  // before the timers, see the header
    now = nowMs();
    execute(router_.tick(now), now);
    while (garp_.takeRound(now)) sendGarpRound();
  }
  const int64_t now = nowMs();
  execute(router_.shutdown(now), now);
  garp_.cancel();
}

void HaNode::receiveAdverts(int64_t now_ms) {
  for (int i = 0; i < kMaxPacketsPerWake; ++i) {
    VrrpSocket::Received r = res_->socket->receive();
    switch (r.kind) {
      case VrrpSocket::Received::Kind::kNone:
        return;
      case VrrpSocket::Received::Kind::kError:
        log::warn("ha {}: receive: {}", settings_.interface, strerror(r.error));
        return;
      case VrrpSocket::Received::Kind::kRejected:
        log::debug("ha {}: dropped a packet: {}", settings_.interface, rejectName(r.reject));
        break;
      case VrrpSocket::Received::Kind::kUnknownPeer:
        log::debug("ha {}: dropped an advert from {}: not a unicast peer", settings_.interface,
                   formatIpv4(r.src_ip));
        break;
      case VrrpSocket::Received::Kind::kAdvert:
        adverts_received_.fetch_add(1, std::memory_order_relaxed);
        execute(router_.receive(now_ms, r.advert, r.src_ip), now_ms);
        break;
    }
  }
}

void HaNode::handleLink(int64_t now_ms) {
  LinkMonitor::Drained d = res_->monitor->drain(ifindex_);
  if (d.overrun) {  // notifications were lost: ask for the current state
    auto link = res_->netlink->link(ifindex_);
    if (link) {
      handleLinkState(*link, now_ms);
      return;
    }
    log::warn("ha {}: {}", settings_.interface, link.error().message);
  }
  if (!d.latest) return;
  if (d.deleted) {
    log::error("ha {}: the interface was deleted; VRRP stays in fault until restarted",
               settings_.interface);
  }
  handleLinkState(*d.latest, now_ms);
}

void HaNode::handleLinkState(const LinkInfo& link, int64_t now_ms) {
  if (link.mac != MacAddress{}) mac_ = link.mac;
  const bool up = link.up();
  if (up == link_up_) return;
  link_up_ = up;
  log::warn("ha {}: link {}", settings_.interface, up ? "up" : "down");
  execute(router_.setFault(!up, now_ms), now_ms);
}

void HaNode::execute(const Actions& actions, int64_t now_ms) {
  std::vector<Transition> transitions;
  for (const Action& action : actions) {
    std::visit(Overloaded{
                   [&](const SendAdvert& a) { sendAdvert(a.priority); },
                   [&](const AddVips&) { addVips(); },
                   [&](const RemoveVips&) { removeVips(); },
                   [&](const SendGratuitousArp&) {
                     garp_.request(now_ms);
                     // The first round goes now, right after the advert and the VIPs.
                     while (garp_.takeRound(now_ms)) sendGarpRound();
                   },
                   [&](const Transition& t) {
                     // Leaving Master: the VIPs go, announcing them any more would mislead.
                     if (t.from == State::kMaster) garp_.cancel();
                     transitions.push_back(t);
                   },
               },
               action);
  }
  master_ip_.store(router_.masterIp(), std::memory_order_relaxed);
  // Observers see a state once its actions are done (a new master's advert sent, VIPs up).
  state_.store(router_.state(), std::memory_order_release);
  for (const Transition& t : transitions) {
    transitions_.fetch_add(1, std::memory_order_relaxed);
    log::info("ha {} vrid {}: {} -> {} ({})", settings_.interface, settings_.vrid,
              stateName(t.from), stateName(t.to), reasonName(t.reason));
    if (on_transition_) on_transition_(t.from, t.to, t.reason);
  }
}

void HaNode::sendAdvert(uint8_t priority) {
  Advert advert{settings_.vrid, priority, settings_.advert_interval_cs, {}};
  for (const auto& vip : settings_.vips) advert.addresses.push_back(vip.first);
  auto sent = res_->socket->send(advert);
  if (!sent) {
    // Logged once per outage: at 100 ms adverts a down link would flood the log.
    if (!send_error_logged_) log::warn("ha {}: {}", settings_.interface, sent.error().message);
    send_error_logged_ = true;
    return;
  }
  send_error_logged_ = false;
  adverts_sent_.fetch_add(*sent, std::memory_order_relaxed);
}

void HaNode::addVips() {
  for (const auto& [address, prefix] : settings_.vips) {
    if (address == own_ip_) continue;  // our own address (an owner's VIP) is never touched
    auto r = res_->netlink->addAddress(ifindex_, address, prefix);
    if (!r) log::error("ha {}: {}", settings_.interface, r.error().message);
  }
}

void HaNode::removeVips() {
  for (const auto& vip : settings_.vips) {
    if (vip.first == own_ip_) continue;
    auto r = res_->netlink->removeAddress(ifindex_, vip.first);
    if (!r) log::error("ha {}: {}", settings_.interface, r.error().message);
  }
}

void HaNode::sendGarpRound() {
  for (const auto& vip : settings_.vips) {
    auto r = res_->garp->send(mac_, vip.first);
    if (r) {
      garps_sent_.fetch_add(1, std::memory_order_relaxed);
    } else {
      log::warn("ha {}: gratuitous ARP for {}: {}", settings_.interface, formatIpv4(vip.first),
                r.error().message);
    }
  }
}

}  // namespace tandem::ha
