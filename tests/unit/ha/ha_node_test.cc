// HaNode on real sockets (issue 5, second part): two nodes in their own network namespaces elect a
// master over a bridge, move a VIP, announce it with gratuitous ARP, survive malformed adverts,
// a stop(), a cut cable and a link down.
//
// Topology (DESIGN §7), made per test and removed in TearDown (also when the test fails):
//   thn-<pid>-<tag>-sw   switch namespace: bridge br0 (no address)
//   thn-<pid>-<tag>-a    lb a  198.18.0.11/24 on eth-a   } veth pairs to br0 (sw-a, sw-b, sw-c)
//   thn-<pid>-<tag>-b    lb b  198.18.0.12/24 on eth-b   }
//   thn-<pid>-<tag>-c    client 198.18.0.2/24 on eth-c (watches ARP, injects packets)
// VIP 198.18.0.100/24. Nothing is created in the root namespace and no 198.18 packet starts there:
// every socket that sends is opened by a thread that setns()'d into one of these namespaces (an
// HaNode's sockets too: HaNode::make() runs on such a thread). Namespaces left behind by a test
// binary that crashed are recognised by the dead PID in their name and removed by the next run.
//
// Skipped (GTEST_SKIP) only when not root or when `ip netns` does not work; CI runs as root.
#include "ha/ha_node.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "ha/garp.h"
#include "ha/netlink.h"
#include "ha/vrrp_packet.h"
#include "ha/vrrp_socket.h"

namespace tandem::ha {
namespace {

constexpr uint32_t kIpA = 0xC612000B;       // 198.18.0.11
constexpr uint32_t kIpB = 0xC612000C;       // 198.18.0.12
constexpr uint32_t kIpClient = 0xC6120002;  // 198.18.0.2
constexpr uint32_t kVip = 0xC6120064;       // 198.18.0.100
constexpr uint16_t kIntervalCs = 10;        // 100 ms adverts: Master_Down 361 ms at priority 100
constexpr int64_t kGarpRepeatMs = 500;      // short, so the test sees the repeat burst

// ---- Running commands (ip) without a shell ----

struct CmdResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

CmdResult runCmd(const std::vector<std::string>& args) {
  CmdResult out;
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return out;
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    const int null = ::open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(pipefd[1], 1);
    dup2(pipefd[1], 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(pipefd[1]);
  if (pid < 0) {
    ::close(pipefd[0]);
    return out;
  }
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0)
    out.output.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  out.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

std::string ipBinary() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return {};
}

std::string randomHex(int digits) {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < digits; ++i) s += "0123456789abcdef"[rd() % 16];
  return s;
}

constexpr const char* kNsPrefix = "thn-";

// Namespaces named thn-<pid>-... whose process is gone: left by a crashed run of this binary.
void sweepStaleNamespaces(const std::string& ip) {
  DIR* dir = opendir("/run/netns");
  if (dir == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name.rfind(kNsPrefix, 0) != 0) continue;
    const long pid = strtol(name.c_str() + strlen(kNsPrefix), nullptr, 10);
    if (pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) stale.push_back(name);
  }
  closedir(dir);
  for (const std::string& ns : stale) runCmd({ip, "netns", "del", ns});
}

// Why these tests cannot run here; nullopt when they can. Checked once per process.
std::optional<std::string> netnsUnavailable() {
  static const std::optional<std::string> why = []() -> std::optional<std::string> {
    if (geteuid() != 0) return "needs root (network namespaces, raw sockets); CI runs as root";
    const std::string ip = ipBinary();
    if (ip.empty()) return "the ip command (Debian iproute2) is missing";
    sweepStaleNamespaces(ip);
    const std::string probe = std::string(kNsPrefix) + std::to_string(getpid()) + "-probe";
    CmdResult r = runCmd({ip, "netns", "add", probe});
    if (r.status != 0) return "`ip netns add` does not work here: " + r.output;
    runCmd({ip, "netns", "del", probe});
    return std::nullopt;
  }();
  return why;
}

// Runs fn() on a fresh thread inside network namespace `ns`; nullopt (and a test failure) when
// the thread cannot enter it: fn() must never run in the root namespace.
template <typename F>
auto inNetns(const std::string& ns, F&& fn) -> std::optional<decltype(fn())> {
  std::optional<decltype(fn())> result;
  std::string error;
  std::thread t([&] {
    const int fd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
      error = strerror(errno);
      if (fd >= 0) ::close(fd);
      return;
    }
    ::close(fd);
    result.emplace(fn());
  });
  t.join();
  if (!result) ADD_FAILURE() << "cannot enter namespace " << ns << ": " << error;
  return result;
}

// ---- The topology ----

class Topology {
 public:
  Topology() : ip_(ipBinary()) {
    prefix_ = std::string(kNsPrefix) + std::to_string(getpid()) + "-" + randomHex(6) + "-";
    switch_ = prefix_ + "sw";
    ok_ = cmd({ip_, "netns", "add", switch_}) && sw({"link", "add", "br0", "type", "bridge"}) &&
          sw({"link", "set", "br0", "type", "bridge", "mcast_snooping", "0"}) &&
          sw({"link", "set", "br0", "up"});
  }
  ~Topology() {
    // Deleting a namespace destroys its interfaces, and a veth pair goes with either end.
    for (const std::string& ns : namespaces_) runCmd({ip_, "netns", "del", ns});
    runCmd({ip_, "netns", "del", switch_});
  }

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }

  // A host namespace joined to br0; returns its namespace name.
  std::string addHost(const std::string& host, uint32_t address) {
    const std::string ns = prefix_ + host;
    const std::string ifname = "eth-" + host, swname = "sw-" + host;
    namespaces_.push_back(ns);
    ok_ = ok_ && cmd({ip_, "netns", "add", ns}) &&
          sw({"link", "add", ifname, "type", "veth", "peer", "name", swname}) &&
          sw({"link", "set", ifname, "netns", ns}) &&
          sw({"link", "set", swname, "master", "br0"}) && sw({"link", "set", swname, "up"}) &&
          in(host, {"link", "set", "lo", "up"}) &&
          in(host, {"addr", "add", formatIpv4(address) + "/24", "dev", ifname}) &&
          in(host, {"link", "set", ifname, "up"});
    return ns;
  }
  std::string ns(const std::string& host) const { return prefix_ + host; }

  bool sw(std::vector<std::string> args) {
    args.insert(args.begin(), {ip_, "-n", switch_});
    return cmd(args);
  }
  bool in(const std::string& host, std::vector<std::string> args) {
    args.insert(args.begin(), {ip_, "-n", ns(host)});
    return cmd(args);
  }
  CmdResult output(const std::string& host, std::vector<std::string> args) {
    args.insert(args.begin(), {ip_, "-n", ns(host)});
    return runCmd(args);
  }

  // The host's cable stays plugged (carrier up on its side) but the switch forgets the port:
  // the host is cut off without noticing, like a dead host or a partition.
  bool partition(const std::string& host, bool cut) {
    return cut ? sw({"link", "set", "sw-" + host, "nomaster"})
               : sw({"link", "set", "sw-" + host, "master", "br0"});
  }

 private:
  bool cmd(const std::vector<std::string>& args) {
    CmdResult r = runCmd(args);
    if (r.status == 0) return true;
    std::string line;
    for (const std::string& a : args) line += a + " ";
    error_ += line + "-> " + std::to_string(r.status) + ": " + r.output + "\n";
    return false;
  }

  std::string ip_;
  std::string prefix_;
  std::string switch_;
  std::vector<std::string> namespaces_;
  bool ok_ = false;
  std::string error_;
};

// ---- Observing a node ----

struct TransitionRecord {
  int64_t us;
  State from, to;
  Reason why;
};

class TransitionLog {
 public:
  void add(State from, State to, Reason why) {
    std::lock_guard lock(mu_);
    records_.push_back({monoUs(), from, to, why});
  }
  // The first transition into `to` at or after `since_us`.
  std::optional<TransitionRecord> firstTo(State to, int64_t since_us) const {
    std::lock_guard lock(mu_);
    for (const TransitionRecord& r : records_) {
      if (r.to == to && r.us >= since_us) return r;
    }
    return std::nullopt;
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return records_.size();
  }

 private:
  mutable std::mutex mu_;
  std::vector<TransitionRecord> records_;
};

struct TestNode {
  std::string host;
  std::string ns;
  std::string ifname;
  uint32_t ip = 0;
  std::shared_ptr<TransitionLog> log = std::make_shared<TransitionLog>();
  std::unique_ptr<HaNode> ha;
};

bool waitUntil(const std::function<bool()>& pred, int64_t timeout_ms) {
  const int64_t deadline = monoUs() + timeout_ms * 1000;
  while (!pred()) {
    if (monoUs() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// The node's first transition into `to` at or after since_us. The callback runs right after the
// state becomes visible through state(), so give it a moment.
std::optional<TransitionRecord> awaitTransition(const TestNode& n, State to, int64_t since_us) {
  std::optional<TransitionRecord> r;
  waitUntil([&] { return (r = n.log->firstTo(to, since_us)).has_value(); }, 1000);
  return r;
}

// The IPv4 addresses on an interface, read with our Netlink from inside the namespace.
std::vector<uint32_t> addressesIn(const std::string& ns, const std::string& ifname) {
  auto r = inNetns(ns, [&]() -> std::vector<uint32_t> {
    auto nl = Netlink::open();
    if (!nl) return {};
    auto link = (*nl)->link(ifname);
    if (!link) return {};
    auto all = (*nl)->addresses(link->index);
    std::vector<uint32_t> out;
    if (all) {
      for (const Ipv4Address& a : *all) out.push_back(a.address);
    }
    return out;
  });
  return r ? *r : std::vector<uint32_t>{};
}

bool holdsVip(const TestNode& n) {
  auto a = addressesIn(n.ns, n.ifname);
  return std::find(a.begin(), a.end(), kVip) != a.end();
}

std::optional<MacAddress> macOf(const std::string& ns, const std::string& ifname) {
  auto r = inNetns(ns, [&]() -> std::optional<MacAddress> {
    auto nl = Netlink::open();
    if (!nl) return std::nullopt;
    auto link = (*nl)->link(ifname);
    if (!link) return std::nullopt;
    return link->mac;
  });
  return r ? *r : std::nullopt;
}

// ---- Frames seen by the client: a packet socket in its namespace ----

struct Frame {
  int64_t us;
  std::vector<uint8_t> bytes;
};

class Capture {
 public:
  Capture(const std::string& ns, const std::string& ifname) {
    std::atomic<int> ready{0};  // 1 ok, -1 failed
    thread_ = std::thread([this, ns, ifname, &ready] {
      const int nsfd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
      if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
        ready = -1;
        return;
      }
      ::close(nsfd);
      const int fd = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
      sockaddr_ll sll{};
      sll.sll_family = AF_PACKET;
      sll.sll_protocol = htons(ETH_P_ALL);
      sll.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
      if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
        ready = -1;
        return;
      }
      ready = 1;
      std::vector<uint8_t> buf(2048);
      while (!stop_.load()) {
        pollfd pfd{fd, POLLIN, 0};
        if (poll(&pfd, 1, 10) <= 0) continue;
        sockaddr_ll from{};
        socklen_t len = sizeof from;
        const ssize_t n =
            recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n <= 0 || from.sll_pkttype == PACKET_OUTGOING) continue;
        std::lock_guard lock(mu_);
        if (frames_.size() < 100000) {
          frames_.push_back({monoUs(), std::vector<uint8_t>(buf.begin(), buf.begin() + n)});
        }
      }
      ::close(fd);
    });
    while (ready.load() == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    ok_ = ready.load() == 1;
  }
  ~Capture() {
    stop_ = true;
    thread_.join();
  }
  bool ok() const { return ok_; }

  // Gratuitous ARP requests for `vip`: (time, sender MAC).
  std::vector<std::pair<int64_t, MacAddress>> garps(uint32_t vip) const {
    std::vector<std::pair<int64_t, MacAddress>> out;
    std::lock_guard lock(mu_);
    for (const Frame& f : frames_) {
      const auto& b = f.bytes;
      if (b.size() < kGarpFrameSize || b[12] != 0x08 || b[13] != 0x06) continue;  // ARP
      const uint32_t sip = (uint32_t{b[28]} << 24) | (b[29] << 16) | (b[30] << 8) | b[31];
      const uint32_t tip = (uint32_t{b[38]} << 24) | (b[39] << 16) | (b[40] << 8) | b[41];
      if (b[21] != 1 || sip != vip || tip != vip) continue;  // REQUEST, sender = target = VIP
      MacAddress sha;
      std::copy(b.begin() + 22, b.begin() + 28, sha.begin());
      out.emplace_back(f.us, sha);
    }
    return out;
  }
  // VRRP packets (Ethernet onward).
  std::vector<Frame> vrrp() const {
    std::vector<Frame> out;
    std::lock_guard lock(mu_);
    for (const Frame& f : frames_) {
      const auto& b = f.bytes;
      if (b.size() >= 34 && b[12] == 0x08 && b[13] == 0x00 && b[23] == kVrrpProtocol) {
        out.push_back(f);
      }
    }
    return out;
  }

 private:
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool ok_ = false;
  mutable std::mutex mu_;
  std::vector<Frame> frames_;
};

// ---- Crafted packets, sent from the client's namespace ----

uint16_t internetChecksum(const std::vector<uint8_t>& data, uint64_t sum = 0) {
  for (size_t i = 0; i + 1 < data.size(); i += 2) sum += (data[i] << 8) | data[i + 1];
  if (data.size() % 2) sum += data.back() << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Recomputes the VRRP checksum (RFC 5798 §5.2.8) after a test changed a field.
void fixVrrpChecksum(std::vector<uint8_t>& vrrp, uint32_t src, uint32_t dst) {
  vrrp[6] = vrrp[7] = 0;
  const uint64_t pseudo =
      (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + kVrrpProtocol + vrrp.size();
  const uint16_t c = internetChecksum(vrrp, pseudo);
  vrrp[6] = static_cast<uint8_t>(c >> 8);
  vrrp[7] = static_cast<uint8_t>(c);
}

std::vector<uint8_t> advertBytes(uint8_t priority, uint32_t src, uint32_t dst) {
  return encode(Advert{51, priority, kIntervalCs, {kVip}}, src, dst);
}

// Sends one IPv4 packet with our own header (IP_HDRINCL) from inside `ns`.
bool injectIp(const std::string& ns, const std::string& ifname, uint32_t src, uint32_t dst,
              uint8_t ttl, const std::vector<uint8_t>& payload) {
  auto r = inNetns(ns, [&]() -> bool {
    const int fd = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);  // IP_HDRINCL
    if (fd < 0) return false;
    bool ok = setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname.c_str(),
                         static_cast<socklen_t>(ifname.size())) == 0;
    ip_mreqn mreq{};
    mreq.imr_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
    ok = ok && setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &mreq, sizeof mreq) == 0;
    std::vector<uint8_t> pkt(20);
    pkt[0] = 0x45;
    pkt[1] = kVrrpTos;
    const size_t total = 20 + payload.size();
    pkt[2] = static_cast<uint8_t>(total >> 8);
    pkt[3] = static_cast<uint8_t>(total);
    pkt[8] = ttl;
    pkt[9] = kVrrpProtocol;
    for (int i = 0; i < 4; ++i) {
      pkt[12 + i] = static_cast<uint8_t>(src >> (24 - 8 * i));
      pkt[16 + i] = static_cast<uint8_t>(dst >> (24 - 8 * i));
    }
    const uint16_t c = internetChecksum(pkt);
    pkt[10] = static_cast<uint8_t>(c >> 8);
    pkt[11] = static_cast<uint8_t>(c);
    pkt.insert(pkt.end(), payload.begin(), payload.end());
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(dst);
    ok = ok && sendto(fd, pkt.data(), pkt.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
                   static_cast<ssize_t>(pkt.size());
    ::close(fd);
    return ok;
  });
  return r && *r;
}

// ---- Fixture ----

class HaNodeNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = netnsUnavailable()) GTEST_SKIP() << *why;
    topo_ = std::make_unique<Topology>();
    topo_->addHost("a", kIpA);
    topo_->addHost("b", kIpB);
    topo_->addHost("c", kIpClient);
    ASSERT_TRUE(topo_->ok()) << "topology:\n" << topo_->error();
  }

  void TearDown() override {
    // Nodes first (their stop() still talks to their namespaces), then the captures, then the
    // namespaces themselves.
    for (TestNode* n : {&a_, &b_}) {
      if (n->ha) n->ha->stop();
      n->ha.reset();
    }
    capture_.reset();
    topo_.reset();
  }

  VrrpSettings settings(const std::string& host, uint8_t priority) {
    VrrpSettings s;
    s.interface = "eth-" + host;
    s.vrid = 51;
    s.priority = priority;
    s.advert_interval_cs = kIntervalCs;
    s.vips = {{kVip, 24}};
    s.garp_count = 5;
    s.garp_repeat_ms = kGarpRepeatMs;
    return s;
  }

  // HaNode::make() on a thread inside the host's namespace.
  void makeNode(TestNode& node, const std::string& host, uint32_t ip, VrrpSettings s) {
    node.host = host;
    node.ns = topo_->ns(host);
    node.ifname = s.interface;
    node.ip = ip;
    auto log = node.log;
    auto made = inNetns(node.ns, [&] {
      return HaNode::make(std::move(s),
                          [log](State from, State to, Reason why) { log->add(from, to, why); });
    });
    ASSERT_TRUE(made.has_value());
    ASSERT_TRUE(made->has_value()) << made->error().message;
    node.ha = std::move(**made);
    EXPECT_EQ(node.ha->ownIp(), ip);
  }

  // a (priority 150) and b (100), started b first; waits for a to be master.
  void electAOverB(VrrpSettings sa, VrrpSettings sb) {
    makeNode(a_, "a", kIpA, std::move(sa));
    makeNode(b_, "b", kIpB, std::move(sb));
    ASSERT_TRUE(a_.ha && b_.ha);
    b_.ha->start();
    a_.ha->start();
    ASSERT_TRUE(waitUntil(
        [&] { return a_.ha->state() == State::kMaster && b_.ha->state() == State::kBackup; }, 3000))
        << "a " << stateName(a_.ha->state()) << ", b " << stateName(b_.ha->state());
    ASSERT_TRUE(waitUntil([&] { return holdsVip(a_); }, 1000));
    EXPECT_FALSE(holdsVip(b_));
    EXPECT_TRUE(waitUntil([&] { return b_.ha->masterIp() == kIpA; }, 500));
  }

  // The client's neighbour entry for the VIP (ip neigh), if it has a link-layer address.
  std::optional<MacAddress> clientNeighbour() {
    CmdResult r = topo_->output("c", {"neigh", "show", formatIpv4(kVip), "dev", "eth-c"});
    const size_t at = r.output.find("lladdr ");
    if (r.status != 0 || at == std::string::npos) return std::nullopt;
    unsigned m[6];
    if (sscanf(r.output.c_str() + at + 7, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4],
               &m[5]) != 6) {
      return std::nullopt;
    }
    MacAddress mac;
    for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(m[i]);
    return mac;
  }

  // The client talks to the VIP once (a UDP datagram), which makes it resolve the VIP's MAC.
  void clientTouchesVip() {
    auto sent = inNetns(topo_->ns("c"), [] {
      const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(9);
      to.sin_addr.s_addr = htonl(kVip);
      const bool ok =
          fd >= 0 && sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) == 1;
      if (fd >= 0) ::close(fd);
      return ok;
    });
    ASSERT_TRUE(sent && *sent);
  }

  MacAddress mac(const TestNode& n) {
    auto m = macOf(n.ns, n.ifname);
    EXPECT_TRUE(m.has_value());
    return m.value_or(MacAddress{});
  }

  std::unique_ptr<Topology> topo_;
  TestNode a_, b_;
  std::unique_ptr<Capture> capture_;
};

double ms(int64_t us) { return static_cast<double>(us) / 1000.0; }

// ---- Pure pieces ----

TEST(GarpFrame, IsKeepalivedsGratuitousRequest) {
  const MacAddress mac{0x02, 0x42, 0x67, 0xad, 0xe2, 0xfe};
  const auto f = garpFrame(mac, kVip);
  const std::array<uint8_t, kGarpFrameSize> want{
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x42, 0x67, 0xad, 0xe2, 0xfe,  // Ethernet
      0x08, 0x06,                                                              // ARP
      0x00, 0x01, 0x08, 0x00, 6,    4,    0x00, 0x01,                          // request
      0x02, 0x42, 0x67, 0xad, 0xe2, 0xfe, 0xc6, 0x12, 0x00, 0x64,              // sender
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc6, 0x12, 0x00, 0x64};             // target
  EXPECT_EQ(f, want);
}

TEST(GarpSchedule, BurstMergeRepeatCancel) {
  GarpSchedule g(5, 5000, 10);
  EXPECT_TRUE(g.idle());
  EXPECT_FALSE(g.nextDeadline());
  g.request(1000);
  int rounds = 0;
  while (g.takeRound(1000)) ++rounds;
  EXPECT_EQ(rounds, 1);  // the first round at once, the others spaced
  EXPECT_EQ(g.nextDeadline(), 1010);
  EXPECT_TRUE(g.takeRound(1010));
  EXPECT_FALSE(g.takeRound(1015));
  // A request during the burst merges: topped up to 5 rounds from now, not a second burst.
  g.request(1015);
  EXPECT_EQ(g.nextDeadline(), 1020);
  for (int64_t t = 1020; t <= 1060; t += 10) EXPECT_TRUE(g.takeRound(t)) << t;
  EXPECT_FALSE(g.takeRound(1070));
  // One repeat, moved to 5 s after the latest request.
  EXPECT_EQ(g.nextDeadline(), 6015);
  EXPECT_FALSE(g.takeRound(6014));
  for (int64_t t = 6015; t <= 6055; t += 10) EXPECT_TRUE(g.takeRound(t)) << t;
  EXPECT_FALSE(g.takeRound(6065));
  EXPECT_TRUE(g.idle());  // the repeat does not repeat
  // cancel() drops both the running burst and the repeat.
  g.request(7000);
  EXPECT_TRUE(g.takeRound(7000));
  g.cancel();
  EXPECT_TRUE(g.idle());
  EXPECT_FALSE(g.takeRound(20000));
  // spacing 0: the whole burst at once (keepalived's default).
  GarpSchedule fast(5, 0, 0);
  fast.request(0);
  rounds = 0;
  while (fast.takeRound(0)) ++rounds;
  EXPECT_EQ(rounds, 5);
  EXPECT_TRUE(fast.idle());
  GarpSchedule none(0, 5000);
  none.request(0);
  EXPECT_TRUE(none.idle());
}

// ---- Netlink against a real namespace ----

TEST_F(HaNodeNetTest, NetlinkLinkAddressesAndMonitor) {
  auto ok = inNetns(topo_->ns("a"), [&]() -> bool {
    auto nl = Netlink::open();
    EXPECT_TRUE(nl.has_value());
    if (!nl) return false;
    Netlink& n = **nl;
    auto missing = n.link("nope0");
    EXPECT_FALSE(missing.has_value());
    if (!missing) {
      EXPECT_EQ(missing.error().code, ENODEV);
      EXPECT_NE(missing.error().message.find("no interface named 'nope0'"), std::string::npos);
    }
    auto link = n.link("eth-a");
    EXPECT_TRUE(link.has_value());
    if (!link) return false;
    EXPECT_GT(link->index, 0);
    EXPECT_EQ(link->name, "eth-a");
    EXPECT_TRUE(link->up());
    EXPECT_NE(link->mac, MacAddress{});
    EXPECT_EQ(n.interfaceIndex("eth-a").value_or(-1), link->index);

    auto primary = n.primaryAddress(link->index);
    EXPECT_EQ(primary.value_or(Ipv4Address{}), (Ipv4Address{kIpA, 24, false}));
    // Idempotent add and remove.
    EXPECT_EQ(n.addAddress(link->index, kVip, 24).value_or(false), true);
    EXPECT_EQ(n.addAddress(link->index, kVip, 24).value_or(true), false);
    auto all = n.addresses(link->index);
    EXPECT_TRUE(all && all->size() == 2 && (*all)[1] == (Ipv4Address{kVip, 24, true}));
    // A VIP never becomes the primary we advertise from.
    const uint32_t vips[] = {kVip};
    EXPECT_EQ(n.primaryAddress(link->index, vips).value_or(Ipv4Address{}).address, kIpA);
    EXPECT_EQ(n.removeAddress(link->index, kVip).value_or(false), true);
    EXPECT_EQ(n.removeAddress(link->index, kVip).value_or(true), false);
    // /32 works too, and removal does not need the prefix.
    EXPECT_EQ(n.addAddress(link->index, kVip, 32).value_or(false), true);
    EXPECT_EQ(n.removeAddress(link->index, kVip).value_or(false), true);
    EXPECT_EQ(n.addresses(link->index).value_or(std::vector<Ipv4Address>{}).size(), 1u);

    // Link changes reach the monitor.
    auto mon = LinkMonitor::open();
    EXPECT_TRUE(mon.has_value());
    if (!mon) return false;
    EXPECT_TRUE(n.setLinkUp(link->index, false).has_value());
    pollfd pfd{(*mon)->fd(), POLLIN, 0};
    EXPECT_EQ(poll(&pfd, 1, 1000), 1);
    auto d = (*mon)->drain(link->index);
    EXPECT_TRUE(d.latest && !d.latest->admin_up && !d.latest->up());
    EXPECT_FALSE(n.link(link->index).value_or(LinkInfo{}).admin_up);
    EXPECT_TRUE(n.setLinkUp(link->index, true).has_value());
    EXPECT_TRUE(waitUntil(
        [&] {
          auto dd = (*mon)->drain(link->index);
          return dd.latest && dd.latest->up();
        },
        2000));
    return true;
  });
  ASSERT_TRUE(ok && *ok);
}

TEST_F(HaNodeNetTest, MakeFailsClearly) {
  auto err = [&](VrrpSettings s) -> std::string {
    auto r = inNetns(topo_->ns("a"), [&] { return HaNode::make(std::move(s), nullptr); });
    if (!r || r->has_value()) return "(made)";
    return (*r).error().message;
  };
  EXPECT_NE(err(settings("zz", 100)).find("no interface named 'eth-zz'"), std::string::npos);
  VrrpSettings no_vips = settings("a", 100);
  no_vips.vips.clear();
  EXPECT_NE(err(no_vips).find("virtual_ips"), std::string::npos);
  VrrpSettings only_self = settings("a", 100);
  only_self.unicast_peers = {kIpA};
  EXPECT_NE(err(only_self).find("unicast_peers names only this node"), std::string::npos);
  VrrpSettings bad_interval = settings("a", 100);
  bad_interval.advert_interval_cs = 0;
  EXPECT_NE(err(bad_interval).find("advert_interval"), std::string::npos);
  ASSERT_TRUE(topo_->in("a", {"link", "add", "noip0", "type", "veth", "peer", "name", "noip1"}));
  VrrpSettings no_address = settings("a", 100);
  no_address.interface = "noip0";
  EXPECT_NE(err(no_address).find("has no IPv4 address"), std::string::npos);
}

// ---- Two nodes ----

// Election, VIP placement, hygiene, adverts on the wire, graceful stop with the client's ARP entry
// moving, and the timing of the GARP bursts.
TEST_F(HaNodeNetTest, ElectionGracefulStopAndGarp) {
  // A VIP left on b by an earlier life (kill -9): start() must remove it before anything else.
  ASSERT_TRUE(topo_->in("b", {"addr", "add", formatIpv4(kVip) + "/24", "dev", "eth-b"}));
  capture_ = std::make_unique<Capture>(topo_->ns("c"), "eth-c");
  ASSERT_TRUE(capture_->ok());
  makeNode(a_, "a", kIpA, settings("a", 150));
  makeNode(b_, "b", kIpB, settings("b", 100));
  ASSERT_TRUE(a_.ha && b_.ha);
  ASSERT_TRUE(holdsVip(b_));
  b_.ha->start();
  EXPECT_FALSE(holdsVip(b_)) << "VIP hygiene: start() removes VIPs we do not own yet";
  const int64_t started = monoUs();
  a_.ha->start();
  ASSERT_TRUE(waitUntil(
      [&] { return a_.ha->state() == State::kMaster && b_.ha->state() == State::kBackup; }, 3000));
  auto a_master = awaitTransition(a_, State::kMaster, 0);
  ASSERT_TRUE(a_master);
  EXPECT_EQ(a_master->why, Reason::kMasterDown);
  // Master_Down_Interval of a at priority 150: 300 + ceil(106 × 100 / 256) = 342 ms.
  printf("[ figures  ] election: a master %.1f ms after start (Master_Down_Interval %lld ms)\n",
         ms(a_master->us - started), static_cast<long long>(masterDownIntervalMs(150, 10)));
  ASSERT_TRUE(waitUntil([&] { return holdsVip(a_); }, 1000));
  EXPECT_FALSE(holdsVip(b_));
  EXPECT_TRUE(waitUntil([&] { return b_.ha->masterIp() == kIpA; }, 500));
  EXPECT_EQ(a_.ha->masterIp(), kIpA);

  // a's adverts as the client sees them: keepalived's format (FACTS.md).
  const MacAddress mac_a = mac(a_), mac_b = mac(b_);
  ASSERT_TRUE(waitUntil([&] { return capture_->vrrp().size() >= 2; }, 1000));
  const Frame advert = capture_->vrrp().back();
  const auto& f = advert.bytes;
  EXPECT_TRUE(std::equal(mac_a.begin(), mac_a.end(), f.begin() + 6));  // source MAC: interface's
  const std::vector<uint8_t> group_mac{0x01, 0x00, 0x5e, 0x00, 0x00, 0x12};
  EXPECT_TRUE(std::equal(group_mac.begin(), group_mac.end(), f.begin()));
  EXPECT_EQ(f[15], kVrrpTos);  // TOS 0xc0
  EXPECT_EQ(f[22], 255);       // TTL
  auto ip = checkIpHeader(std::span<const uint8_t>(f).subspan(14));
  ASSERT_TRUE(ip) << ip.error().message;
  EXPECT_EQ(ip->src_ip, kIpA);
  EXPECT_EQ(ip->dst_ip, kVrrpMulticast);
  auto decoded = decode(ip->payload, ip->src_ip, ip->dst_ip);
  ASSERT_TRUE(decoded) << decoded.error().message;
  EXPECT_EQ(*decoded, (Advert{51, 150, kIntervalCs, {kVip}}));
  // a's first GARP burst, right after its first advert.
  ASSERT_TRUE(waitUntil([&] { return capture_->garps(kVip).size() >= 5; }, 1000));
  for (const auto& g : capture_->garps(kVip)) EXPECT_EQ(g.second, mac_a);

  // The client learns the VIP's MAC: a's.
  clientTouchesVip();
  ASSERT_TRUE(waitUntil([&] { return clientNeighbour() == mac_a; }, 1000))
      << "client neighbour entry never showed a's MAC";

  // Graceful stop: priority 0, VIP removed at once; b takes over after its Skew_Time.
  const size_t garps_before = capture_->garps(kVip).size();
  const int64_t stop_at = monoUs();
  a_.ha->stop();
  const int64_t stop_returned = monoUs();
  EXPECT_EQ(a_.ha->state(), State::kInit);
  EXPECT_FALSE(holdsVip(a_)) << "a stopped master keeps no VIP";
  ASSERT_TRUE(waitUntil([&] { return b_.ha->state() == State::kMaster; }, 2000));
  auto b_master = awaitTransition(b_, State::kMaster, stop_at);
  ASSERT_TRUE(b_master);
  EXPECT_EQ(b_master->why, Reason::kMasterStopped);
  const int64_t skew_ms = skewTimeMs(100, kIntervalCs);  // 61 ms
  const double takeover = ms(b_master->us - stop_at);
  printf(
      "[ figures  ] graceful stop: stop() returned in %.2f ms; b master %.1f ms after stop() "
      "(Skew_Time %lld ms)\n",
      ms(stop_returned - stop_at), takeover, static_cast<long long>(skew_ms));
  EXPECT_GE(takeover, static_cast<double>(skew_ms) - 1.0);
  EXPECT_LE(takeover, static_cast<double>(skew_ms) + 40.0) << "takeover took too long";
  ASSERT_TRUE(waitUntil([&] { return holdsVip(b_); }, 500));

  // The client's neighbour entry moves to b's MAC, through the GARP alone (the client sends
  // nothing).
  ASSERT_TRUE(waitUntil([&] { return clientNeighbour() == mac_b; }, 1000))
      << "client neighbour entry did not move to b's MAC";

  // GARP timing: a burst of 5 right away, 10 ms apart, and a repeat burst kGarpRepeatMs later.
  ASSERT_TRUE(waitUntil([&] { return capture_->garps(kVip).size() >= garps_before + 10; },
                        kGarpRepeatMs + 1000));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto garps = capture_->garps(kVip);
  garps.erase(garps.begin(), garps.begin() + static_cast<std::ptrdiff_t>(garps_before));
  ASSERT_EQ(garps.size(), 10u) << "two bursts of 5, nothing more";
  for (const auto& g : garps) EXPECT_EQ(g.second, mac_b);
  const double first = ms(garps[0].first - b_master->us);
  const double burst = ms(garps[4].first - garps[0].first);
  const double repeat = ms(garps[5].first - garps[0].first);
  printf(
      "[ figures  ] GARP: first seen by the client %.2f ms after b's transition (%.1f ms after "
      "a's stop()); burst of 5 over %.1f ms; repeat burst %.1f ms after the first\n",
      first, ms(garps[0].first - stop_at), burst, repeat);
  EXPECT_LT(first, 20.0);
  EXPECT_LT(burst, 200.0);
  EXPECT_GE(repeat, static_cast<double>(kGarpRepeatMs) - 1.0);
  EXPECT_LT(repeat, static_cast<double>(kGarpRepeatMs) + 100.0);

  const HaNode::Counters cb = b_.ha->counters();
  EXPECT_EQ(cb.transitions, 2u);  // init -> backup -> master
  EXPECT_EQ(cb.garps_sent, 10u);
  EXPECT_GT(cb.adverts_received, 2u);
  EXPECT_GT(cb.adverts_sent, 0u);
  EXPECT_EQ(cb.rejected, (std::array<uint64_t, kRejectCount>{}));
  const HaNode::Counters ca = a_.ha->counters();
  EXPECT_EQ(ca.transitions, 3u);  // init -> backup -> master -> init
  EXPECT_EQ(b_.ha->masterIp(), kIpB);
  a_.ha->stop();  // idempotent
}

// Host death (a cut off without noticing) and the healed partition that follows.
TEST_F(HaNodeNetTest, HostDeathAndHealedPartition) {
  capture_ = std::make_unique<Capture>(topo_->ns("c"), "eth-c");
  ASSERT_TRUE(capture_->ok());
  electAOverB(settings("a", 150), settings("b", 100));
  const MacAddress mac_a = mac(a_), mac_b = mac(b_);
  clientTouchesVip();
  ASSERT_TRUE(waitUntil([&] { return clientNeighbour() == mac_a; }, 1000));

  const int64_t cut_at = monoUs();
  ASSERT_TRUE(topo_->partition("a", true));
  ASSERT_TRUE(waitUntil([&] { return b_.ha->state() == State::kMaster; }, 2000));
  auto b_master = awaitTransition(b_, State::kMaster, cut_at);
  ASSERT_TRUE(b_master);
  EXPECT_EQ(b_master->why, Reason::kMasterDown);
  const int64_t down_ms = masterDownIntervalMs(100, kIntervalCs);  // 361 ms
  const double takeover = ms(b_master->us - cut_at);
  printf(
      "[ figures  ] host death: b master %.1f ms after a was cut off (Master_Down_Interval "
      "%lld ms, counted from a's last advert)\n",
      takeover, static_cast<long long>(down_ms));
  EXPECT_GE(takeover, static_cast<double>(down_ms - kIntervalCs * 10) - 5.0);
  EXPECT_LE(takeover, static_cast<double>(down_ms) + 40.0);
  EXPECT_EQ(a_.ha->state(), State::kMaster);  // a does not know
  ASSERT_TRUE(waitUntil([&] { return clientNeighbour() == mac_b; }, 1000));

  // Heal: both are master; a (higher) answers b's advert with its own and GARP, b steps down.
  const int64_t heal_at = monoUs();
  ASSERT_TRUE(topo_->partition("a", false));
  ASSERT_TRUE(waitUntil([&] { return b_.ha->state() == State::kBackup; }, 2000));
  auto b_backup = awaitTransition(b_, State::kBackup, heal_at);
  ASSERT_TRUE(b_backup);
  EXPECT_EQ(b_backup->why, Reason::kHigherPriority);
  EXPECT_EQ(a_.ha->state(), State::kMaster);
  ASSERT_TRUE(waitUntil([&] { return clientNeighbour() == mac_a; }, 1000))
      << "the client still sends to b after the partition healed";
  const auto garps = capture_->garps(kVip);
  auto first_a = std::find_if(garps.begin(), garps.end(), [&](const auto& g) {
    return g.first >= heal_at && g.second == mac_a;
  });
  ASSERT_NE(first_a, garps.end());
  printf(
      "[ figures  ] healed partition: b backup %.1f ms and a's GARP at the client %.1f ms "
      "after the cable came back\n",
      ms(b_backup->us - heal_at), ms(first_a->first - heal_at));
  EXPECT_TRUE(waitUntil([&] { return !holdsVip(b_) && holdsVip(a_); }, 500));
}

// Link down on the master's own interface: FAULT, VIP removed; back up: it preempts again.
TEST_F(HaNodeNetTest, LinkDownFaultAndRecovery) {
  electAOverB(settings("a", 150), settings("b", 100));
  const int64_t down_at = monoUs();
  ASSERT_TRUE(topo_->in("a", {"link", "set", "eth-a", "down"}));
  ASSERT_TRUE(waitUntil([&] { return a_.ha->state() == State::kFault; }, 1000));
  auto a_fault = awaitTransition(a_, State::kFault, down_at);
  ASSERT_TRUE(a_fault);
  EXPECT_EQ(a_fault->why, Reason::kFault);
  EXPECT_FALSE(holdsVip(a_)) << "FAULT removes the VIP";
  ASSERT_TRUE(waitUntil([&] { return b_.ha->state() == State::kMaster; }, 2000));
  auto b_master = awaitTransition(b_, State::kMaster, down_at);
  ASSERT_TRUE(b_master);
  printf(
      "[ figures  ] link down: a in fault %.2f ms after `ip link set down`, b master %.1f ms "
      "after it\n",
      ms(a_fault->us - down_at), ms(b_master->us - down_at));
  EXPECT_TRUE(waitUntil([&] { return holdsVip(b_); }, 500));

  const uint64_t heard_before_up = a_.ha->counters().adverts_received;
  const int64_t up_at = monoUs();
  ASSERT_TRUE(topo_->in("a", {"link", "set", "eth-a", "up"}));
  ASSERT_TRUE(waitUntil([&] { return a_.ha->state() == State::kMaster; }, 3000));
  auto a_backup = awaitTransition(a_, State::kBackup, up_at);
  ASSERT_TRUE(a_backup);
  EXPECT_EQ(a_backup->why, Reason::kFaultCleared);
  auto a_master = awaitTransition(a_, State::kMaster, up_at);
  ASSERT_TRUE(a_master);
  EXPECT_EQ(a_master->why, Reason::kPreempt);
  // Back as a backup, a heard b's adverts (and discarded them to preempt): its membership of
  // 224.0.0.18 survived the link going down and up.
  EXPECT_GE(a_.ha->counters().adverts_received, heard_before_up + 2);
  EXPECT_TRUE(waitUntil([&] { return b_.ha->state() == State::kBackup; }, 1000));
  EXPECT_TRUE(waitUntil([&] { return holdsVip(a_) && !holdsVip(b_); }, 1000));
}

// Tracking: a penalty drops a below b, b preempts; clearing it gives the VIP back to a.
TEST_F(HaNodeNetTest, TrackPenaltyMovesMastership) {
  electAOverB(settings("a", 150), settings("b", 100));
  const int64_t t0 = monoUs();
  a_.ha->setTrackPenalty(100);  // 150 - 100 = 50 < 100
  ASSERT_TRUE(waitUntil(
      [&] { return b_.ha->state() == State::kMaster && a_.ha->state() == State::kBackup; }, 2000));
  auto b_master = awaitTransition(b_, State::kMaster, t0);
  ASSERT_TRUE(b_master);
  EXPECT_EQ(b_master->why, Reason::kPreempt);
  EXPECT_TRUE(waitUntil([&] { return holdsVip(b_) && !holdsVip(a_); }, 1000));
  const int64_t t1 = monoUs();
  a_.ha->setTrackPenalty(1000);  // clamped to priority 1, still a valid backup
  a_.ha->setTrackPenalty(0);
  ASSERT_TRUE(waitUntil(
      [&] { return a_.ha->state() == State::kMaster && b_.ha->state() == State::kBackup; }, 2000));
  auto a_master = awaitTransition(a_, State::kMaster, t1);
  ASSERT_TRUE(a_master);
  printf(
      "[ figures  ] tracking: b master %.1f ms after a's penalty, a back %.1f ms after it was "
      "cleared\n",
      ms(b_master->us - t0), ms(a_master->us - t1));
  EXPECT_TRUE(waitUntil([&] { return holdsVip(a_) && !holdsVip(b_); }, 1000));
}

// Malformed adverts from a third namespace are counted by reason and change nothing.
TEST_F(HaNodeNetTest, MalformedAdvertsAreCountedAndIgnored) {
  electAOverB(settings("a", 150), settings("b", 100));
  const HaNode::Counters a0 = a_.ha->counters(), b0 = b_.ha->counters();
  const size_t a_log = a_.log->size(), b_log = b_.log->size();
  const std::string c = topo_->ns("c");
  const uint32_t g = kVrrpMulticast;
  // Each would make a step down (priority 254) if it were accepted.
  std::vector<uint8_t> bad_checksum = advertBytes(254, kIpClient, g);
  bad_checksum[7] ^= 0x5a;
  std::vector<uint8_t> version2 = advertBytes(254, kIpClient, g);
  version2[0] = 0x21;
  fixVrrpChecksum(version2, kIpClient, g);
  std::vector<uint8_t> bad_length = advertBytes(254, kIpClient, g);
  bad_length[3] = 2;  // says two addresses, carries one
  fixVrrpChecksum(bad_length, kIpClient, g);
  std::vector<uint8_t> no_addresses = advertBytes(254, kIpClient, g);
  no_addresses.resize(kVrrpHeaderSize);
  no_addresses[3] = 0;
  fixVrrpChecksum(no_addresses, kIpClient, g);
  std::vector<uint8_t> zero_interval = advertBytes(254, kIpClient, g);
  zero_interval[4] &= 0xf0;
  zero_interval[5] = 0;
  fixVrrpChecksum(zero_interval, kIpClient, g);
  const std::vector<uint8_t> good = advertBytes(254, kIpClient, g);
  std::vector<uint8_t> runt = {0x31, 51};

  ASSERT_TRUE(injectIp(c, "eth-c", kIpClient, g, 255, bad_checksum));
  ASSERT_TRUE(injectIp(c, "eth-c", kIpClient, g, 64, good));  // TTL != 255: from off-link
  ASSERT_TRUE(injectIp(c, "eth-c", kIpClient, g, 255, version2));
  ASSERT_TRUE(injectIp(c, "eth-c", kIpClient, g, 255, bad_length));
  ASSERT_TRUE(injectIp(c, "eth-c", kIpClient, g, 255, no_addresses));
  ASSERT_TRUE(injectIp(c, "eth-c", kIpClient, g, 255, zero_interval));
  ASSERT_TRUE(injectIp(c, "eth-c", kIpClient, g, 255, runt));

  const std::vector<std::pair<Reject, const char*>> want = {
      {Reject::kChecksum, "checksum"},  {Reject::kTtl, "ttl"},
      {Reject::kVersion, "version"},    {Reject::kLength, "length"},
      {Reject::kAddressCount, "count"}, {Reject::kInterval, "interval"},
      {Reject::kTooShort, "too short"}};
  for (TestNode* n : {&a_, &b_}) {
    const HaNode::Counters before = n == &a_ ? a0 : b0;
    ASSERT_TRUE(waitUntil(
        [&] {
          const HaNode::Counters now = n->ha->counters();
          for (const auto& [reason, name] : want) {
            if (now.rejected[static_cast<size_t>(reason)] !=
                before.rejected[static_cast<size_t>(reason)] + 1) {
              return false;
            }
          }
          return true;
        },
        1000))
        << n->host << ": every malformed packet counted once by its reason";
  }
  // Longer than Master_Down_Interval: had b accepted any, it would now follow 198.18.0.2; had a,
  // it would have stepped down.
  std::this_thread::sleep_for(std::chrono::milliseconds(450));
  EXPECT_EQ(a_.ha->state(), State::kMaster);
  EXPECT_EQ(b_.ha->state(), State::kBackup);
  EXPECT_EQ(b_.ha->masterIp(), kIpA);
  EXPECT_EQ(a_.log->size(), a_log);
  EXPECT_EQ(b_.log->size(), b_log);
  EXPECT_TRUE(holdsVip(a_));
  const HaNode::Counters a1 = a_.ha->counters();
  size_t rejected = 0;
  for (size_t i = 0; i < kRejectCount; ++i) rejected += a1.rejected[i] - a0.rejected[i];
  EXPECT_EQ(rejected, want.size());
}

// Unicast mode: adverts go to the configured peers only; others are counted and dropped.
TEST_F(HaNodeNetTest, UnicastPeers) {
  capture_ = std::make_unique<Capture>(topo_->ns("c"), "eth-c");
  ASSERT_TRUE(capture_->ok());
  VrrpSettings sa = settings("a", 150), sb = settings("b", 100);
  sa.unicast_peers = sb.unicast_peers = {kIpA, kIpB};  // one list for both: own address skipped
  electAOverB(std::move(sa), std::move(sb));
  // The adverts are unicast: the client (on the same bridge) sees at most flooded copies of
  // frames to unknown MACs, never one addressed to 224.0.0.18.
  for (const Frame& f : capture_->vrrp()) {
    EXPECT_NE(f.bytes[30], 224) << "a multicast advert in unicast mode";
  }

  const HaNode::Counters a0 = a_.ha->counters();
  // A valid, better advert from a stranger: to a directly, and to the group.
  ASSERT_TRUE(
      injectIp(topo_->ns("c"), "eth-c", kIpClient, kIpA, 255, advertBytes(254, kIpClient, kIpA)));
  ASSERT_TRUE(injectIp(topo_->ns("c"), "eth-c", kIpClient, kVrrpMulticast, 255,
                       advertBytes(254, kIpClient, kVrrpMulticast)));
  ASSERT_TRUE(
      waitUntil([&] { return a_.ha->counters().unknown_peer == a0.unknown_peer + 1; }, 1000));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const HaNode::Counters a1 = a_.ha->counters();
  EXPECT_EQ(a1.unknown_peer, a0.unknown_peer + 1) << "the group's advert never reaches a";
  EXPECT_EQ(a_.ha->state(), State::kMaster);

  const int64_t stop_at = monoUs();
  a_.ha->stop();
  ASSERT_TRUE(waitUntil([&] { return b_.ha->state() == State::kMaster; }, 2000));
  auto b_master = awaitTransition(b_, State::kMaster, stop_at);
  ASSERT_TRUE(b_master);
  EXPECT_EQ(b_master->why, Reason::kMasterStopped);
  const double takeover = ms(b_master->us - stop_at);
  printf("[ figures  ] unicast graceful stop: b master %.1f ms after stop()\n", takeover);
  EXPECT_LE(takeover, static_cast<double>(skewTimeMs(100, kIntervalCs)) + 40.0);
  EXPECT_TRUE(waitUntil([&] { return holdsVip(b_) && !holdsVip(a_); }, 500));
}

}  // namespace
}  // namespace tandem::ha
