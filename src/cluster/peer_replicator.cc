#include "cluster/peer_replicator.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>

#include "cluster/peer_protocol.h"
#include "core/clock.h"
#include "core/event_loop.h"
#include "core/log.h"
#include "core/socket.h"
#include "core/stats.h"

namespace tandem::cluster {
namespace {

constexpr size_t kReadChunk = 64 * 1024;
// Per connection and wake-up: a peer streaming a large sync must not starve the others, nor our
// own heartbeats; the rest is picked up on the next loop iteration.
constexpr size_t kMaxReadPerTurn = 1 << 20;
constexpr size_t kMaxWritePerTurn = 4 << 20;
constexpr size_t kDrainBatch = 1024;
constexpr int kMaxDrainBatchesPerTurn = 64;
constexpr size_t kMaxPayload = 60 * 1024;  // per RECORDS frame (a single record may exceed it)
constexpr size_t kMaxPendingInbound = 64;  // accepted connections that have not said HELLO
constexpr int64_t kExpireEveryMs = 1000;

// A RECORDS payload shared by every link it is queued on (sealed per link when sent).
struct Chunk {
  std::string payload;
  uint32_t records = 0;
};
using ChunkPtr = std::shared_ptr<const Chunk>;

std::string errnoText(int e) { return std::strerror(e); }

}  // namespace

struct PeerReplicator::Impl final : TimerHandler {
  enum class Phase { kConnecting, kHello, kProving, kUp };

  class Conn final : public IoHandler {
   public:
    Conn(Impl& impl, int fd, std::string address, bool outbound, int peer, int64_t now)
        : impl_(impl),
          fd(fd),
          address(std::move(address)),
          outbound(outbound),
          peer(peer),
          codec(impl.opt.secret),
          opened_ms(now),
          last_heard_ms(now),
          last_progress_ms(now),
          last_ping_ms(now) {}
    ~Conn() {
      if (fd >= 0) {
        impl_.loop.remove(fd);
        ::close(fd);
      }
    }
    void onIo(uint32_t events) override { impl_.onConnIo(*this, events); }

    Impl& impl_;
    int fd;
    std::string address;
    bool outbound;
    int peer;  // index into peers; -1 until an inbound HELLO names it
    Phase phase = Phase::kHello;
    FrameCodec codec;
    Nonce local_nonce{}, remote_nonce{};
    std::string in;
    size_t in_off = 0;
    std::string out;
    size_t out_off = 0;
    bool readable = false, writable = false, dead = false, more = false;
    int64_t opened_ms, last_heard_ms, last_progress_ms, last_ping_ms;
    // Replication, once up.
    std::deque<ChunkPtr> queue;
    size_t queued_records = 0;
    bool sync_pending = false;  // a full sync is owed: built when the output has room
    bool syncing = false;       // sync chunks (then SYNC_DONE) still to send
    std::vector<ChunkPtr> sync;
    size_t sync_next = 0;
    uint64_t sync_records = 0;
    bool queue_turn = true;  // alternate queue and sync chunks so that neither starves

    size_t pending() const { return out.size() - out_off; }
    bool hasWork() const { return sync_pending || syncing || !queue.empty(); }
  };

  struct Peer {
    PeerEndpoint ep;
    SockAddr addr;
    bool dial = false;
    Conn* up = nullptr;       // the authenticated link
    Conn* dialing = nullptr;  // an outbound attempt not yet up
    int64_t next_dial_ms = 0;
    int64_t backoff_ms = 0;
    int reported = -1;         // last link state told to the observer: -1 never, 0 down, 1 up
    std::string pending_down;  // held back during the start-up grace
  };

  // Adapts epoll events on a descriptor to a member function.
  struct FdHandler final : IoHandler {
    std::function<void()> fn;
    void onIo(uint32_t) override { fn(); }
  };

  Impl(state::Table& t, PeerReplicatorOptions o)
      : table(t), opt(std::move(o)), tick(this, 0), rng(std::random_device{}()) {}

  // ---- lifecycle (caller's thread) ----
  Result<void> bind();
  Result<void> start();
  void stop();

  // ---- loop thread ----
  void onTimer(int) override;
  void onWake();
  void onAccept();
  void onTableWake();
  void drainTable();
  void fanOut(const std::vector<state::Record>& records);
  void dial(int p);
  void onConnIo(Conn& c, uint32_t events);
  void drive(Conn& c);
  void readSome(Conn& c);
  void process(Conn& c);
  void handleFrame(Conn& c, const RawFrame& f);
  void onHello(Conn& c, std::string_view payload);
  void establish(Conn& c);
  void onRecords(Conn& c, std::string_view payload);
  void pump(Conn& c);
  void buildSync(Conn& c);
  bool flush(Conn& c);
  void send(Conn& c, FrameType type, std::string_view payload);
  void resync(Conn& c);
  void sendPing(Conn& c);
  void drop(Conn& c, const std::string& why, bool auth = false, bool protocol = false);
  void close(Conn& c, const std::string& why, bool report = true);
  void scheduleDial(Peer& p, bool failed);
  void report(int p, bool up, const std::string& detail);
  int findPeer(std::string_view id) const;
  int64_t deadMs() const { return opt.heartbeat.count() * std::max(1, opt.dead_after); }
  template <typename F>
  void withStatus(int p, F&& fn) {
    if (p < 0) return;
    std::lock_guard lock(mu);
    fn(statuses[static_cast<size_t>(p)]);
  }

  state::Table& table;
  PeerReplicatorOptions opt;
  EventLoop loop;
  std::thread thread;
  std::atomic<bool> stopping{false};
  bool started = false;
  bool bound = false;  // options validated, listener bound (bind(), or the start of start())
  UniqueFd listen_fd;
  uint16_t port = 0;
  FdHandler acceptor, table_waker;
  // The table's wake callback holds a reference, so a writer that wakes a stopped (or destroyed)
  // replicator writes to a live descriptor that nobody reads.
  std::shared_ptr<UniqueFd> wake_fd;
  std::vector<Peer> peers;
  std::vector<Conn*> conns;  // owned; a closed one moves to the loop's graveyard
  Timer tick;
  int64_t tick_ms = 50;
  int64_t next_expire_ms = 0;
  int64_t started_ms = 0;  // loop time at start(), for the start-up grace
  bool drain_more = false;
  std::minstd_rand rng;
  Histogram lag;

  mutable std::mutex mu;  // guards statuses
  std::vector<state::PeerStatus> statuses;
};

// ---------------------------------------------------------------------------------------------
// lifecycle

Result<void> PeerReplicator::Impl::bind() {
  if (bound) return {};
  peers.clear();
  statuses.clear();
  if (opt.node_id.empty() || opt.node_id.size() > kMaxNodeId) {
    return fail(ErrorSource::kConfig, EINVAL, "cluster: node id must be 1..255 bytes");
  }
  if (opt.secret.size() < 16) {
    return fail(ErrorSource::kConfig, EINVAL, "cluster: the secret must be at least 16 bytes");
  }
  if (opt.heartbeat.count() <= 0 || opt.backoff_initial.count() <= 0 || opt.max_queue == 0 ||
      opt.batch == 0) {
    return fail(ErrorSource::kConfig, EINVAL, "cluster: heartbeat, backoff, queue and batch > 0");
  }
  opt.backoff_max = std::max(opt.backoff_max, opt.backoff_initial);
  for (const auto& ep : opt.peers) {
    if (ep.id == opt.node_id) continue;
    if (ep.id.empty() || ep.id.size() > kMaxNodeId) {
      return fail(ErrorSource::kConfig, EINVAL, "cluster: peer ids must be 1..255 bytes");
    }
    if (findPeer(ep.id) >= 0) {
      return fail(ErrorSource::kConfig, EINVAL, "cluster: peer " + ep.id + " listed twice");
    }
    Peer p;
    p.ep = ep;
    p.dial = opt.node_id < ep.id;
    if (p.dial) {
      auto a = parseAddress(ep.host, ep.port);
      if (!a || ep.port == 0) {
        return fail(ErrorSource::kConfig, EINVAL,
                    "cluster: peer " + ep.id + " needs a numeric address and a port");
      }
      p.addr = *a;
    }
    peers.push_back(std::move(p));
    state::PeerStatus st;
    st.id = ep.id;
    st.address = ep.host + ":" + std::to_string(ep.port);
    st.state = "down";
    st.since_unix_ms = unixMs();
    statuses.push_back(std::move(st));
  }

  if (opt.listen_port != 0 || opt.listen_ephemeral) {
    auto addr = parseAddress(opt.listen_host, opt.listen_port);
    if (!addr) return tl::unexpected(addr.error());
    // Not SO_REUSEPORT: a second instance on the same port must fail rather than share it.
    UniqueFd fd(::socket(addr->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return fail(ErrorSource::kInternal, errno, "cluster listener: " + errnoText(errno));
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), addr->get(), addr->len) != 0 || ::listen(fd.get(), 64) != 0) {
      const int e = errno;
      return fail(ErrorSource::kInternal, e,
                  "cluster listener on " + opt.listen_host + ":" + std::to_string(opt.listen_port) +
                      ": " + errnoText(e));
    }
    if (const uint16_t p = localPort(fd.get())) port = p;
    listen_fd = std::move(fd);
    acceptor.fn = [this] { onAccept(); };
    loop.add(listen_fd.get(), &acceptor, EPOLLIN | EPOLLET);
  }
  bound = true;
  return {};
}

Result<void> PeerReplicator::Impl::start() {
  if (started) return fail(ErrorSource::kInternal, EALREADY, "peer replication already started");
  if (auto r = bind(); !r) return r;
  wake_fd = std::make_shared<UniqueFd>(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!*wake_fd) return fail(ErrorSource::kInternal, errno, "eventfd: " + errnoText(errno));
  table_waker.fn = [this] { onTableWake(); };
  loop.add(wake_fd->get(), &table_waker, EPOLLIN | EPOLLET);
  table.setWake([w = wake_fd] {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(w->get(), &one, sizeof one);
  });
  {
    // Writes made before start() woke nobody: drain them once the loop runs.
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd->get(), &one, sizeof one);
  }

  tick_ms = std::clamp<int64_t>(opt.heartbeat.count() / 5, 5, 50);
  loop.setWakeHandler([this] { onWake(); });
  // The loop is not running yet: registering and dialing from this thread is safe, and the thread
  // start below publishes it all.
  loop.updateTime();
  started_ms = loop.now();
  next_expire_ms = loop.now() + kExpireEveryMs;
  for (size_t i = 0; i < peers.size(); ++i) {
    if (peers[i].dial) dial(static_cast<int>(i));
  }
  tick.arm(loop.timers(tick_ms));
  started = true;
  log::info("cluster: node {} replicating with {} peer(s){}", opt.node_id, peers.size(),
            port ? ", listening on port " + std::to_string(port) : std::string());
  thread = std::thread([this] { loop.run(); });
  return {};
}

void PeerReplicator::Impl::stop() {
  if (!thread.joinable()) return;
  stopping.store(true);
  loop.wake();
  thread.join();
  tick.cancel();
  for (Conn* c : conns) delete c;
  conns.clear();
  for (Peer& p : peers) p.up = p.dialing = nullptr;
  if (listen_fd) {
    loop.remove(listen_fd.get());
    listen_fd.reset();
  }
  if (wake_fd) loop.remove(wake_fd->get());
  std::lock_guard lock(mu);
  for (auto& st : statuses) {
    if (st.state != "down") {
      st.state = "down";
      st.since_unix_ms = unixMs();
      st.last_error = "stopped";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// loop thread: timers, wake-ups, accept, dial

void PeerReplicator::Impl::onWake() {
  if (stopping.load()) {
    loop.stop();
    return;
  }
  if (drain_more) drainTable();
  std::vector<Conn*> copy = conns;  // driving may close (and unlist) connections
  for (Conn* c : copy) {
    if (c->more && !c->dead) {
      c->more = false;
      drive(*c);
    }
  }
}

void PeerReplicator::Impl::onTimer(int) {
  const int64_t now = loop.now();
  const int64_t dead = deadMs();
  std::vector<Conn*> copy = conns;
  for (Conn* c : copy) {
    if (c->dead) continue;
    if (c->phase != Phase::kUp) {
      if (now - c->opened_ms > std::max<int64_t>(dead, 1000)) drop(*c, "handshake timed out");
      continue;
    }
    if (now - c->last_heard_ms > dead) {
      drop(*c, "nothing heard for " + std::to_string(now - c->last_heard_ms) + " ms");
      continue;
    }
    if (c->pending() > 0 && now - c->last_progress_ms > dead) {
      drop(*c, "peer has not read for " + std::to_string(now - c->last_progress_ms) + " ms");
      continue;
    }
    if (now - c->last_ping_ms >= opt.heartbeat.count()) sendPing(*c);
  }
  for (size_t i = 0; i < peers.size(); ++i) {
    Peer& p = peers[i];
    if (p.dial && !p.up && !p.dialing && now >= p.next_dial_ms) dial(static_cast<int>(i));
    if (!p.pending_down.empty() && now - started_ms >= opt.startup_grace.count()) {
      report(static_cast<int>(i), false, p.pending_down + " (since start)");
    }
  }
  if (now >= next_expire_ms) {
    next_expire_ms = now + kExpireEveryMs;
    table.expire(unixMs());
  }
  tick.arm(loop.timers(tick_ms));
}

void PeerReplicator::Impl::onAccept() {
  for (;;) {
    SockAddr from;
    from.len = sizeof from.ss;
    const int fd = ::accept4(listen_fd.get(), from.get(), &from.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        log::warn("cluster: accept: {}", errnoText(errno));
      }
      return;
    }
    const size_t pending_inbound = static_cast<size_t>(std::count_if(
        conns.begin(), conns.end(), [](const Conn* c) { return !c->outbound && c->peer < 0; }));
    if (pending_inbound >= kMaxPendingInbound) {
      ::close(fd);
      continue;
    }
    setNoDelay(fd);
    auto* c = new Conn(*this, fd, ipText(from) + ":" + std::to_string(portOf(from)), false, -1,
                       loop.now());
    c->writable = true;
    conns.push_back(c);
    loop.add(fd, c);
    if (!randomNonce(c->local_nonce)) {
      drop(*c, "no random nonce");
      continue;
    }
    send(*c, FrameType::kHello, encodeHello({kProtocolVersion, opt.node_id, c->local_nonce}));
    flush(*c);
  }
}

void PeerReplicator::Impl::dial(int pi) {
  Peer& p = peers[static_cast<size_t>(pi)];
  const std::string where = p.ep.host + ":" + std::to_string(p.ep.port);
  auto fd = connectNonBlocking(p.addr);
  if (!fd) {
    withStatus(pi, [&](state::PeerStatus& st) { st.last_error = fd.error().message; });
    scheduleDial(p, true);
    report(pi, false, "cannot connect to " + where + ": " + fd.error().message);
    return;
  }
  auto* c = new Conn(*this, *fd, where, true, pi, loop.now());
  c->phase = Phase::kConnecting;
  conns.push_back(c);
  p.dialing = c;
  withStatus(pi, [&](state::PeerStatus& st) {
    if (st.state != "connecting") {
      st.state = "connecting";
      st.since_unix_ms = unixMs();
    }
  });
  loop.add(*fd, c);
  if (!randomNonce(c->local_nonce)) return drop(*c, "no random nonce");
  // Queued now, written once the connection completes.
  send(*c, FrameType::kHello, encodeHello({kProtocolVersion, opt.node_id, c->local_nonce}));
}

void PeerReplicator::Impl::scheduleDial(Peer& p, bool failed) {
  if (!p.dial) return;
  p.backoff_ms = failed && p.backoff_ms > 0 ? std::min(p.backoff_ms * 2, opt.backoff_max.count())
                                            : opt.backoff_initial.count();
  // ±20% so that peers restarted together do not retry in lockstep.
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  p.next_dial_ms =
      loop.now() + std::max<int64_t>(1, static_cast<int64_t>(double(p.backoff_ms) * jitter(rng)));
}

void PeerReplicator::Impl::report(int pi, bool up, const std::string& detail) {
  Peer& p = peers[static_cast<size_t>(pi)];
  if (p.reported == int(up)) return;
  if (up) {
    p.pending_down.clear();
  } else if (p.reported == -1 && loop.now() - started_ms < opt.startup_grace.count()) {
    // Never reached yet, and still starting: the peer may simply be starting too (onTimer
    // reports it if the grace runs out first).
    if (p.pending_down.empty()) log::info("cluster: peer {} not reached yet: {}", p.ep.id, detail);
    p.pending_down = detail;
    return;
  }
  p.reported = int(up);
  p.pending_down.clear();
  if (up) {
    log::info("cluster: peer {} up: {}", p.ep.id, detail);
  } else {
    log::warn("cluster: peer {} down: {}", p.ep.id, detail);
  }
  if (opt.observer.link) opt.observer.link(p.ep.id, up, detail);
}

int PeerReplicator::Impl::findPeer(std::string_view id) const {
  for (size_t i = 0; i < peers.size(); ++i) {
    if (peers[i].ep.id == id) return static_cast<int>(i);
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// local writes -> peers

void PeerReplicator::Impl::onTableWake() {
  uint64_t v;
  while (::read(wake_fd->get(), &v, sizeof v) > 0) {
  }
  drainTable();
}

void PeerReplicator::Impl::drainTable() {
  drain_more = false;
  std::vector<state::Record> batch;
  bool lost = false;
  for (int i = 0;; ++i) {
    if (i == kMaxDrainBatchesPerTurn) {
      // Writers outpace us: let sockets and timers run, then continue.
      drain_more = true;
      loop.wake();
      break;
    }
    batch.clear();
    if (!table.drain(batch, kDrainBatch)) lost = true;
    if (!batch.empty()) fanOut(batch);
    if (batch.size() < kDrainBatch) break;
  }
  if (!lost) return;
  log::warn("cluster: local writes outran replication; full sync to every peer");
  std::vector<Conn*> copy = conns;
  for (Conn* c : copy) {
    if (c->dead || c->phase != Phase::kUp) continue;
    resync(*c);
    drive(*c);
  }
}

void PeerReplicator::Impl::fanOut(const std::vector<state::Record>& records) {
  bool any = false;
  for (const Conn* c : conns) any = any || (c->phase == Phase::kUp && !c->sync_pending);
  if (!any) return;  // nobody to tell: a link that comes up gets a full sync
  std::vector<ChunkPtr> chunks;
  auto chunk = std::make_shared<Chunk>();
  beginRecords(chunk->payload, false);
  for (const auto& r : records) {
    if (!appendRecord(chunk->payload, r)) {
      log::warn("cluster: record too large to replicate (key of {} bytes)", r.key.size());
      continue;
    }
    if (++chunk->records >= opt.batch || chunk->payload.size() >= kMaxPayload) {
      finishRecords(chunk->payload, chunk->records);
      chunks.push_back(std::move(chunk));
      chunk = std::make_shared<Chunk>();
      beginRecords(chunk->payload, false);
    }
  }
  if (chunk->records > 0) {
    finishRecords(chunk->payload, chunk->records);
    chunks.push_back(std::move(chunk));
  }
  std::vector<Conn*> copy = conns;
  for (Conn* c : copy) {
    // A pending sync is taken after this drain, so it already holds these records.
    if (c->dead || c->phase != Phase::kUp || c->sync_pending) continue;
    for (const ChunkPtr& ch : chunks) {
      c->queue.push_back(ch);
      c->queued_records += ch->records;
    }
    if (c->queued_records > opt.max_queue) {
      log::warn("cluster: peer {} fell {} records behind; dropping its queue for a full sync",
                peers[static_cast<size_t>(c->peer)].ep.id, c->queued_records);
      withStatus(c->peer, [](state::PeerStatus& st) { ++st.queue_overflows; });
      resync(*c);
    }
    drive(*c);
  }
}

void PeerReplicator::Impl::resync(Conn& c) {
  c.queue.clear();
  c.queued_records = 0;
  c.sync.clear();
  c.sync_next = 0;
  c.syncing = false;
  c.sync_pending = true;
}

// ---------------------------------------------------------------------------------------------
// connections

void PeerReplicator::Impl::onConnIo(Conn& c, uint32_t events) {
  if (c.dead) return;
  if (events & EPOLLOUT) c.writable = true;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c.readable = true;
  if (c.phase == Phase::kConnecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (const int e = socketError(c.fd); e != 0) return drop(c, "connect: " + errnoText(e));
    c.phase = Phase::kHello;
  }
  drive(c);
}

void PeerReplicator::Impl::drive(Conn& c) {
  if (c.dead || c.phase == Phase::kConnecting) return;
  if (c.readable) readSome(c);
  if (c.dead) return;
  size_t written = 0;
  for (;;) {
    pump(c);
    const size_t before = c.pending();
    if (!flush(c)) return;
    written += before - c.pending();
    if (!c.writable || !c.hasWork() || c.pending() >= opt.out_high_water) break;
    if (written >= kMaxWritePerTurn) {
      c.more = true;
      loop.wake();
      break;
    }
  }
}

void PeerReplicator::Impl::readSome(Conn& c) {
  size_t total = 0;
  while (total < kMaxReadPerTurn) {
    const size_t old = c.in.size();
    c.in.resize(old + kReadChunk);
    const ssize_t n = ::read(c.fd, c.in.data() + old, kReadChunk);
    c.in.resize(old + static_cast<size_t>(std::max<ssize_t>(n, 0)));
    if (n > 0) {
      total += static_cast<size_t>(n);
      process(c);
      if (c.dead) return;
      continue;
    }
    if (n == 0) return drop(c, "connection closed by peer");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      c.readable = false;
      return;
    }
    return drop(c, "read: " + errnoText(errno));
  }
  c.more = true;  // still readable: continue after the others had their turn
  loop.wake();
}

void PeerReplicator::Impl::process(Conn& c) {
  while (!c.dead) {
    RawFrame f;
    const std::string_view avail(c.in.data() + c.in_off, c.in.size() - c.in_off);
    const FrameStatus st = c.codec.open(avail, f);
    if (st == FrameStatus::kIncomplete) break;
    if (st != FrameStatus::kOk) {
      std::string why = describe(st);
      // A HELLO with a bad MAC: name the peer it claims to be, so the failure is counted there.
      if (st == FrameStatus::kBadMac && c.phase == Phase::kHello && c.peer < 0) {
        RawFrame raw;
        if (splitFrame(avail, raw) == FrameStatus::kOk &&
            raw.type == static_cast<uint8_t>(FrameType::kHello)) {
          if (auto h = decodeHello(raw.payload)) {
            c.peer = findPeer(h->node_id);
            why += " in HELLO from " + h->node_id;
          }
        }
      }
      return drop(c, why, st == FrameStatus::kBadMac, st != FrameStatus::kBadMac);
    }
    handleFrame(c, f);
    c.in_off += f.size;
  }
  if (c.dead) return;
  if (c.in_off == c.in.size()) {
    c.in.clear();
    c.in_off = 0;
  } else if (c.in_off > kReadChunk) {
    c.in.erase(0, c.in_off);
    c.in_off = 0;
  }
}

void PeerReplicator::Impl::handleFrame(Conn& c, const RawFrame& f) {
  const auto type = static_cast<FrameType>(f.type);
  c.last_heard_ms = loop.now();
  if (c.phase == Phase::kHello) {
    if (type != FrameType::kHello) return drop(c, "expected HELLO", false, true);
    return onHello(c, f.payload);
  }
  if (c.phase == Phase::kProving) establish(c);  // the first frame bound to both nonces
  if (c.dead) return;
  withStatus(c.peer, [](state::PeerStatus& st) { st.last_heard_unix_ms = unixMs(); });
  switch (type) {
    case FrameType::kHello:
      return drop(c, "second HELLO", false, true);
    case FrameType::kRecords:
      return onRecords(c, f.payload);
    case FrameType::kSyncDone: {
      auto s = decodeSyncDone(f.payload);
      if (!s) return drop(c, "malformed SYNC_DONE", false, true);
      log::debug("cluster: full sync from {} done ({} records)",
                 peers[static_cast<size_t>(c.peer)].ep.id, s->records);
      return;
    }
    case FrameType::kPing: {
      auto p = decodePing(f.payload);
      if (!p) return drop(c, "malformed PING", false, true);
      send(c, FrameType::kPong, encodePong({p->sent_us, unixUs()}));
      return;
    }
    case FrameType::kPong: {
      auto p = decodePong(f.payload);
      if (!p) return drop(c, "malformed PONG", false, true);
      const auto now = static_cast<uint64_t>(monoUs());
      if (p->echo_us <= now) {
        withStatus(c.peer, [&](state::PeerStatus& st) {
          st.rtt_us = static_cast<int64_t>(now - p->echo_us);
        });
      }
      return;
    }
  }
}

void PeerReplicator::Impl::onHello(Conn& c, std::string_view payload) {
  auto h = decodeHello(payload);
  if (!h) return drop(c, "malformed HELLO", false, true);
  if (h->version != kProtocolVersion) {
    return drop(c, "HELLO for protocol version " + std::to_string(h->version), false, true);
  }
  const int pi = findPeer(h->node_id);
  if (c.outbound) {
    if (pi != c.peer) {
      return drop(c,
                  "HELLO from " + h->node_id + " where " +
                      peers[static_cast<size_t>(c.peer)].ep.id + " was expected",
                  true);
    }
  } else {
    if (pi < 0) return drop(c, "HELLO from unknown node " + h->node_id, true);
    c.peer = pi;
    if (peers[static_cast<size_t>(pi)].dial) {
      return drop(c,
                  "HELLO from " + h->node_id + ", which should not dial " + opt.node_id +
                      " (the smaller id dials)",
                  false, true);
    }
  }
  if (h->nonce == c.local_nonce) return drop(c, "HELLO reflected back", true);
  c.remote_nonce = h->nonce;
  c.codec.setNonces(c.local_nonce, c.remote_nonce);
  c.phase = Phase::kProving;
  sendPing(c);  // proves we hold the secret, bound to this connection; also a first RTT
}

void PeerReplicator::Impl::establish(Conn& c) {
  Peer& p = peers[static_cast<size_t>(c.peer)];
  if (p.up && p.up != &c) close(*p.up, "replaced by a new connection", false);
  if (p.dialing == &c) p.dialing = nullptr;
  p.up = &c;
  p.backoff_ms = 0;
  c.phase = Phase::kUp;
  const std::string how = (c.outbound ? "connected to " : "connected from ") + c.address;
  withStatus(c.peer, [&](state::PeerStatus& st) {
    st.state = "connected";
    st.since_unix_ms = unixMs();
    st.last_error.clear();
    ++st.connects;
  });
  p.reported = -1;  // a replaced link may have reported up already: report the new one
  report(c.peer, true, how);
  resync(c);
}

void PeerReplicator::Impl::onRecords(Conn& c, std::string_view payload) {
  RecordBatch batch;
  if (!decodeRecords(payload, batch)) return drop(c, "malformed RECORDS", false, true);
  const int64_t now_ms = unixMs();
  const int64_t now_us = unixUs();
  for (const auto& r : batch.records) {
    if (!table.merge(r, now_ms) || batch.full_sync) continue;
    // Sync records may be hours old: only incremental ones measure replication lag.
    const int64_t l = std::max<int64_t>(0, now_us - r.written_us);
    lag.observe(static_cast<uint64_t>(l));
    if (opt.on_lag) opt.on_lag(l);
  }
  withStatus(c.peer, [&](state::PeerStatus& st) { st.records_received += batch.records.size(); });
}

void PeerReplicator::Impl::pump(Conn& c) {
  if (c.phase != Phase::kUp) return;
  uint64_t sent = 0;
  while (c.pending() < opt.out_high_water) {
    if (c.sync_pending) {
      buildSync(c);
      continue;
    }
    const bool have_sync = c.syncing;
    if (!c.queue.empty() && (c.queue_turn || !have_sync)) {
      const ChunkPtr ch = std::move(c.queue.front());
      c.queue.pop_front();
      c.queued_records -= ch->records;
      send(c, FrameType::kRecords, ch->payload);
      sent += ch->records;
      c.queue_turn = false;
      continue;
    }
    if (!have_sync) break;
    c.queue_turn = true;
    if (c.sync_next < c.sync.size()) {
      const ChunkPtr& ch = c.sync[c.sync_next++];
      send(c, FrameType::kRecords, ch->payload);
      sent += ch->records;
      continue;
    }
    send(c, FrameType::kSyncDone, encodeSyncDone({c.sync_records}));
    c.sync.clear();
    c.sync.shrink_to_fit();
    c.syncing = false;
  }
  if (sent > 0) withStatus(c.peer, [&](state::PeerStatus& st) { st.records_sent += sent; });
}

void PeerReplicator::Impl::buildSync(Conn& c) {
  c.sync_pending = false;
  c.syncing = true;
  c.sync.clear();
  c.sync_next = 0;
  c.sync_records = 0;
  auto chunk = std::make_shared<Chunk>();
  beginRecords(chunk->payload, true);
  const size_t batch = opt.batch;
  table.forEach(
      [&](const state::Record& r) {
        if (!appendRecord(chunk->payload, r)) return;
        ++c.sync_records;
        if (++chunk->records >= batch || chunk->payload.size() >= kMaxPayload) {
          finishRecords(chunk->payload, chunk->records);
          c.sync.push_back(std::move(chunk));
          chunk = std::make_shared<Chunk>();
          beginRecords(chunk->payload, true);
        }
      },
      unixMs());
  if (chunk->records > 0) {
    finishRecords(chunk->payload, chunk->records);
    c.sync.push_back(std::move(chunk));
  }
  withStatus(c.peer, [](state::PeerStatus& st) { ++st.full_syncs; });
  log::debug("cluster: full sync to {}: {} records", peers[static_cast<size_t>(c.peer)].ep.id,
             c.sync_records);
}

void PeerReplicator::Impl::send(Conn& c, FrameType type, std::string_view payload) {
  if (c.pending() == 0) c.last_progress_ms = loop.now();  // the stall clock starts now
  c.codec.seal(c.out, type, payload);
}

void PeerReplicator::Impl::sendPing(Conn& c) {
  c.last_ping_ms = loop.now();
  send(c, FrameType::kPing, encodePing({static_cast<uint64_t>(monoUs())}));
  flush(c);
}

bool PeerReplicator::Impl::flush(Conn& c) {
  if (c.dead) return false;
  if (c.pending() > opt.max_output) {
    drop(c, "output buffer over " + std::to_string(opt.max_output) + " bytes");
    return false;
  }
  while (c.writable && c.pending() > 0 && c.phase != Phase::kConnecting) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.pending(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      c.last_progress_ms = loop.now();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c.writable = false;
      break;
    }
    drop(c, "write: " + errnoText(errno));
    return false;
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out_off > opt.out_high_water) {
    c.out.erase(0, c.out_off);
    c.out_off = 0;
  }
  return true;
}

void PeerReplicator::Impl::drop(Conn& c, const std::string& why, bool auth, bool protocol) {
  if (c.dead) return;
  const std::string who = c.peer >= 0 ? peers[static_cast<size_t>(c.peer)].ep.id : "unknown peer";
  if (auth || protocol) {
    log::warn("cluster: {} ({}): {}; closing", c.address, who, why);
    withStatus(c.peer, [&](state::PeerStatus& st) {
      if (auth) ++st.auth_failures;
      if (protocol) ++st.protocol_errors;
    });
  }
  close(c, why);
}

void PeerReplicator::Impl::close(Conn& c, const std::string& why, bool report_down) {
  if (c.dead) return;
  c.dead = true;
  loop.remove(c.fd);
  ::close(c.fd);
  c.fd = -1;
  if (auto it = std::find(conns.begin(), conns.end(), &c); it != conns.end()) conns.erase(it);
  if (c.peer >= 0) {
    Peer& p = peers[static_cast<size_t>(c.peer)];
    const bool was_up = p.up == &c;
    if (was_up) p.up = nullptr;
    if (p.dialing == &c) p.dialing = nullptr;
    if (was_up || (c.outbound && !p.up)) {
      withStatus(c.peer, [&](state::PeerStatus& st) {
        st.state = "down";
        st.since_unix_ms = unixMs();
        st.last_error = why;
        st.rtt_us = was_up ? -1 : st.rtt_us;
      });
      if (report_down) report(c.peer, false, why + " (" + c.address + ")");
      scheduleDial(p, !was_up);
    } else if (!p.up) {
      withStatus(c.peer, [&](state::PeerStatus& st) { st.last_error = why; });
    }
  }
  struct Grave : Deferred {
    explicit Grave(Conn* c) : c(c) {}
    ~Grave() override { delete c; }
    Conn* c;
  };
  loop.destroyLater(std::make_unique<Grave>(&c));
}

// ---------------------------------------------------------------------------------------------
// public face

PeerReplicator::PeerReplicator(state::Table& table, PeerReplicatorOptions options)
    : impl_(std::make_unique<Impl>(table, std::move(options))) {}

PeerReplicator::~PeerReplicator() { stop(); }

Result<void> PeerReplicator::bind() { return impl_->bind(); }

Result<void> PeerReplicator::start() { return impl_->start(); }

void PeerReplicator::stop() { impl_->stop(); }

uint16_t PeerReplicator::listenPort() const { return impl_->port; }

state::ReplicationStatus PeerReplicator::status() const {
  state::ReplicationStatus st;
  st.store = "memory";
  {
    std::lock_guard lock(impl_->mu);
    st.peers = impl_->statuses;
  }
  st.lag.addFrom(impl_->lag);
  return st;
}

}  // namespace tandem::cluster
