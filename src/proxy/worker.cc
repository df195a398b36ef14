#include "proxy/worker.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/log.h"
#include "proxy/session.h"
#include "proxy/upstream.h"
#include "state/sticky_cookie.h"

namespace tandem::proxy {
namespace {
// Without health checks, a server that refused a connection is skipped by this worker for a while;
// with them, the control thread's verdict decides.
constexpr int64_t kConnectFailureHoldMs = 2000;
// How long a worker holds a server out after reporting a failure streak, until the verdict arrives.
constexpr int64_t kProvisionalEjectionMs = 250;
// Slow start needs weight resolution below 1: weights are scaled by this while it is configured.
constexpr uint32_t kSlowStartWeightUnit = 20;
constexpr int64_t kAcceptBackoffMs = 100;  // after EMFILE/ENFILE
}  // namespace

// Accepts connections on this worker's SO_REUSEPORT socket for one listener. On a reload that
// keeps the listener's address, the acceptor (and its socket) stays and is pointed at the new
// generation's listener.
class Worker::Acceptor final : public IoHandler, public TimerHandler {
 public:
  Acceptor(Worker& w, int fd) : w_(w), fd_(fd), backoff_(this, 0) {
    w_.loop().add(fd_, this, EPOLLIN | EPOLLET);
  }
  ~Acceptor() { stop(); }

  void retarget(ListenerShared* ls, ListenerStats* stats) {
    ls_ = ls;
    stats_ = stats;
  }
  int fd() const { return fd_; }

  void stop() {
    if (fd_ < 0) return;
    backoff_.cancel();
    w_.loop().remove(fd_);
    ::close(fd_);
    fd_ = -1;
  }

  // While backing off, new connections' edges are ignored: each would only meet EMFILE again
  // (and log it), a busy loop driven by the flood. The timer retries, and the edge-triggered
  // socket is drained then.
  void onIo(uint32_t) override {
    if (!backoff_.armed()) acceptAll();
  }
  void onTimer(int) override { acceptAll(); }

 private:
  void acceptAll() {
    while (fd_ >= 0) {
      SockAddr peer;
      peer.len = sizeof peer.ss;
      int c = ::accept4(fd_, peer.get(), &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: pause instead of spinning on a socket that stays readable.
          // Logged once per episode, not once per retry.
          if (!exhausted_) {
            log::warn("listener {}: accept: {}; retrying every {} ms until descriptors free up",
                      ls_->cfg->name, strerror(errno), kAcceptBackoffMs);
          }
          exhausted_ = true;
          backoff_.arm(w_.loop().timers(kAcceptBackoffMs));
        }
        return;
      }
      if (exhausted_) {
        exhausted_ = false;
        log::info("listener {}: accepting again", ls_->cfg->name);
      }
      std::atomic<uint32_t>& open = *ls_->connections;
      if (open.fetch_add(1, std::memory_order_relaxed) >= ls_->cfg->limits.max_connections) {
        open.fetch_sub(1, std::memory_order_relaxed);
        ::close(c);
        stats_->rejected.add();
        continue;
      }
      stats_->connections.add();  // TCP_NODELAY comes from the listening socket
      auto* s = new Session(w_, *w_.current(), *ls_, c, peer);
      s->start();
    }
  }

  Worker& w_;
  ListenerShared* ls_ = nullptr;
  ListenerStats* stats_ = nullptr;
  int fd_;
  Timer backoff_;
  bool exhausted_ = false;  // out of descriptors since the last successful accept
};

Worker::Worker(int id, unsigned worker_count, uint64_t seed)
    : id_(id), rng_(seed), worker_count_(worker_count ? worker_count : 1) {
  loop_.setWakeHandler([this] {
    std::shared_ptr<const Snapshot> snap;
    std::vector<int> fds;
    std::shared_ptr<const health::HealthView> v;
    {
      std::lock_guard<std::mutex> g(mailbox_mu_);
      snap.swap(pending_snap_);
      fds.swap(pending_fds_);
      v.swap(pending_health_);
    }
    // A snapshot first: a health view that came with it belongs to the new generation.
    if (snap) apply(std::move(snap), std::move(fds));
    if (v && gen_ && v->source == gen_->snap->health.get()) {
      gen_->health = v;  // the previous view is released here, on the worker's own thread
      applyHealth(*gen_, *gen_->health);
    }
    if (drain_requested_.load() && !draining_) onDrain();
  });
}

void Worker::init(std::shared_ptr<const Snapshot> snap, std::vector<int> listen_fds) {
  apply(std::move(snap), std::move(listen_fds));
}

void Worker::publishSnapshot(std::shared_ptr<const Snapshot> snap, std::vector<int> listen_fds) {
  {
    std::lock_guard<std::mutex> g(mailbox_mu_);
    // A later snapshot replaces one not applied yet; its sockets are a superset (kept ones keep
    // their numbers), so only listeners of the skipped one that the later one drops are lost,
    // and those are closed by the server.
    pending_snap_ = std::move(snap);
    pending_fds_ = std::move(listen_fds);
  }
  loop_.wake();
}

std::unique_ptr<Generation> Worker::build(std::shared_ptr<const Snapshot> snap) {
  auto gen = std::make_unique<Generation>();
  gen->snap = std::move(snap);
  const config::Config& cfg = *gen->snap->cfg;
  for (const config::Listener& l : cfg.listeners)
    gen->listener_stats.push_back(stats_.listener(l.name));
  gen->backends.resize(cfg.backends.size());
  for (size_t bi = 0; bi < cfg.backends.size(); ++bi) {
    const config::Backend& bc = cfg.backends[bi];
    BackendRt& b = gen->backends[bi];
    b.cfg = &bc;
    b.index = static_cast<int>(bi);
    b.gen = gen.get();
    b.stats = stats_.backend(bc.name);
    b.hashed = balance::isHashAlgorithm(bc.balance);
    b.servers.resize(bc.servers.size());
    // Limits are per process; each worker takes its share (rounded up, at least 1).
    auto share = [this](uint32_t limit) {
      return limit == 0 ? 0u : std::max(1u, (limit + worker_count_ - 1) / worker_count_);
    };
    b.max_in_flight_per_server = share(bc.limits.max_connections_per_server);
    b.max_pending = share(bc.limits.max_pending);
    b.retry_budget = std::make_unique<health::RetryBudget>(bc.retries.budget_percent,
                                                           bc.retries.min_retry_concurrency);
    if (bc.rate_limit.enabled && state_) {
      b.rate_limiter =
          std::make_unique<state::RateLimiter>(bc.rate_limit.rate, bc.rate_limit.burst);
    }
    for (size_t si = 0; si < bc.servers.size(); ++si) {
      const config::Server& sc = bc.servers[si];
      ServerRt& s = b.servers[si];
      s.cfg = &sc;
      s.stats = stats_.server(bc.name, sc);
      s.health.weight = static_cast<uint16_t>(sc.weight);
      auto addr = parseAddress(sc.address.host, sc.address.port);
      if (addr) s.addr = *addr;  // validated by the config loader
      s.group = sc.backup ? 1 : 0;
      if (bc.sticky.mode == config::StickyMode::kCookie) {
        s.sticky_cookie = state::stickyCookieValue(cookie_secret_, bc.name, sc.name);
        s.set_cookie = bc.sticky.cookie + "=" + s.sticky_cookie + "; Path=/; HttpOnly";
      }
      s.position = static_cast<int>(b.groups[s.group].members.size());
      b.groups[s.group].members.push_back(static_cast<int>(si));
    }
    for (GroupRt& grp : b.groups) {
      grp.eligible.assign(grp.members.size(), 1);
      grp.active.assign(grp.members.size(), 0);
    }
  }
  if (gen->snap->health) gen->health = gen->snap->health->current();
  if (gen->health) {
    applyHealth(*gen, *gen->health);
  } else {
    for (BackendRt& b : gen->backends) rebuildBalancers(b);
  }
  return gen;
}

void Worker::apply(std::shared_ptr<const Snapshot> snap, std::vector<int> fds) {
  auto gen = build(std::move(snap));
  // Acceptors: keep those whose socket is still in the list, open the new ones, close the rest.
  std::vector<std::unique_ptr<Acceptor>> next;
  for (size_t i = 0; i < fds.size(); ++i) {
    std::unique_ptr<Acceptor> a;
    for (auto& old : acceptors_) {
      if (old && old->fd() == fds[i]) a = std::move(old);
    }
    if (!a) a = std::make_unique<Acceptor>(*this, fds[i]);
    a->retarget(gen->snap->listeners[i].get(), gen->listener_stats[i]);
    next.push_back(std::move(a));
  }
  acceptors_ = std::move(next);  // the ones left behind close their sockets
  if (draining_) {
    for (auto& a : acceptors_) a->stop();
  }
  if (gen_) retire(std::move(gen_));
  gen_ = std::move(gen);
  applied_.store(gen_->snap->id);
}

void Worker::retire(std::unique_ptr<Generation> g) {
  g->retired = true;
  // Idle upstream connections belong to the old balancers and pools: close them now (nothing is
  // in flight on them); busy ones are closed when their request ends (putIdle).
  for (BackendRt& b : g->backends) {
    for (ServerRt& s : b.servers) {
      std::vector<UpstreamConn*> idle;
      idle.swap(s.idle);
      for (UpstreamConn* c : idle) c->close();
    }
  }
  if (g->sessions == 0) return;  // freed here (the snapshot's health manager with it, maybe)
  retired_.push_back(std::move(g));
}

void Worker::release(Generation* g) {
  if (!g->retired || g->sessions > 0) return;
  for (auto& r : retired_) {
    if (r.get() != g) continue;
    // Deferred: the session that let go of it may still be on the stack.
    struct Grave : Deferred {
      explicit Grave(std::unique_ptr<Generation> g) : g(std::move(g)) {}
      std::unique_ptr<Generation> g;
    };
    loop_.destroyLater(std::make_unique<Grave>(std::move(r)));
    r = std::move(retired_.back());
    retired_.pop_back();
    return;
  }
}

void Worker::publishHealth(std::shared_ptr<const health::HealthView> view) {
  {
    std::lock_guard<std::mutex> g(mailbox_mu_);
    pending_health_ = std::move(view);
  }
  loop_.wake();
}

void Worker::applyHealth(Generation& g, const health::HealthView& view) {
  for (size_t bi = 0; bi < g.backends.size() && bi < view.backends.size(); ++bi) {
    BackendRt& b = g.backends[bi];
    const health::BackendView& bv = view.backends[bi];
    b.panic = bv.panic;
    bool weights_changed = false;
    for (size_t si = 0; si < b.servers.size() && si < bv.servers.size(); ++si) {
      ServerRt& s = b.servers[si];
      const health::ServerView& nv = bv.servers[si];
      weights_changed |= s.health.weight_permille != nv.weight_permille ||
                         s.health.weight != nv.weight || !b.groups[s.group].lb;
      if (s.health.healthy != nv.healthy) {
        // A new verdict starts a new count everywhere: an ejection (or a return) forgets the
        // failures other workers had counted, and a server back up is not held out locally.
        s.consecutive_failures = 0;
        s.failed_until_ms = 0;
      }
      s.health = nv;
    }
    if (weights_changed) rebuildBalancers(b);
  }
}

void Worker::rebuildBalancers(BackendRt& b) {
  const config::Backend& bc = *b.cfg;
  const uint32_t unit = bc.slow_start.count() > 0 ? kSlowStartWeightUnit : 1;
  balance::Options opts;
  opts.ring_points_per_weight = std::max<uint32_t>(1, bc.ring_points / unit);  // same ring size
  opts.maglev_table_size = bc.maglev_table_size;
  for (GroupRt& grp : b.groups) {
    if (grp.members.empty()) continue;
    std::vector<balance::ServerSpec> specs;
    for (int si : grp.members) {
      const ServerRt& s = b.servers[si];
      specs.push_back(
          {s.cfg->name, health::scaledWeight(s.health.weight * unit, s.health.weight_permille)});
    }
    auto lb = balance::makeBalancer(bc.balance, std::move(specs), opts, &rng_);
    if (!lb) {
      log::error("backend {}: {}", bc.name, lb.error().message);  // validated at load
      continue;
    }
    grp.lb = std::move(*lb);
  }
}

Worker::~Worker() {
  acceptors_.clear();
  // Sessions and upstream connections are owned by the loop's graveyard or closed by drain.
  auto freeIdle = [](Generation* g) {
    if (!g) return;
    for (BackendRt& b : g->backends) {
      for (ServerRt& s : b.servers) {
        for (UpstreamConn* c : s.idle) delete c;
        s.idle.clear();
      }
    }
  };
  freeIdle(gen_.get());
  for (auto& g : retired_) freeIdle(g.get());
}

void Worker::start() {
  thread_ = std::thread([this] {
    log::debug("worker {} running", id_);
    loop_.run();
    log::debug("worker {} stopped", id_);
  });
}

void Worker::drain() {
  drain_requested_.store(true);
  loop_.wake();
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::onDrain() {
  draining_ = true;
  for (auto& a : acceptors_) a->stop();
  // Copy: drainNow() may close (and unlist) the session.
  std::vector<Session*> copy = sessions_;
  for (Session* s : copy) s->drainNow();
  maybeFinish();
}

void Worker::maybeFinish() {
  if (draining_ && sessions_.empty()) loop_.stop();
}

int Worker::pickServer(BackendRt& b, uint64_t hash, const PickExclusions& ex, PickFailure* why,
                       int preferred) {
  const int64_t now = loop_.now();
  if (preferred >= 0 && static_cast<size_t>(preferred) < b.servers.size()) {
    // Sticky: the same rules as below for one server, without asking the balancer.
    const ServerRt& s = b.servers[static_cast<size_t>(preferred)];
    const GroupRt& grp = b.groups[s.group];
    if (!s.health.disabled && !s.health.draining &&
        ((s.health.healthy && s.failed_until_ms <= now) || b.panic) && !ex.has(preferred) &&
        !(b.max_in_flight_per_server &&
          grp.active[static_cast<size_t>(s.position)] >= b.max_in_flight_per_server)) {
      return preferred;
    }
  }
  bool capped = false;
  for (int g = 0; g < 2; ++g) {
    GroupRt& grp = b.groups[g];
    if (!grp.lb) continue;
    bool any = false;
    for (size_t i = 0; i < grp.members.size(); ++i) {
      int si = grp.members[i];
      const ServerRt& s = b.servers[si];
      // Panic ignores health verdicts, never admin states or this request's own failed tries.
      bool ok = !s.health.disabled && !s.health.draining &&
                ((s.health.healthy && s.failed_until_ms <= now) || b.panic) && !ex.has(si);
      if (ok && b.max_in_flight_per_server && grp.active[i] >= b.max_in_flight_per_server) {
        ok = false;  // circuit breaker: this server has all the requests it may take
        capped = true;
      }
      grp.eligible[i] = ok;
      any |= ok;
    }
    if (!any) continue;
    balance::PickContext ctx{hash, grp.eligible, grp.active};
    int pos = grp.lb->pick(ctx);
    if (pos >= 0) return grp.members[pos];
  }
  if (why) *why = capped ? PickFailure::kAtCapacity : PickFailure::kNoHealthyServer;
  return -1;
}

void Worker::recordOutcome(BackendRt& b, int server, bool ok) {
  ServerRt& s = b.servers[server];
  if (ok) {
    s.consecutive_failures = 0;
    return;
  }
  s.stats->failures.add();
  health::HealthManager* manager = b.gen->snap->health.get();
  if (!b.cfg->passive.enabled || !manager) return;
  if (++s.consecutive_failures >= b.cfg->passive.consecutive_failures) {
    s.consecutive_failures = 0;
    // Provisional: this worker stops sending right away instead of waiting for the round trip
    // through the control thread; the verdict (or this short hold's end) decides after that.
    s.failed_until_ms = loop_.now() + kProvisionalEjectionMs;
    manager->reportFailureStreak(b.index, server);
  }
}

bool Worker::isFailureStatus(const config::Backend& b, int status) {
  if (b.passive.gateway_errors_only) return status >= 502 && status <= 504;
  return status >= 500 && status <= 599;
}

void Worker::requestStarted(BackendRt& b, int server) {
  ServerRt& s = b.servers[server];
  ++b.groups[s.group].active[s.position];
  s.stats->active.add();
}

void Worker::requestFinished(BackendRt& b, int server) {
  ServerRt& s = b.servers[server];
  --b.groups[s.group].active[s.position];
  s.stats->active.sub();
}

void Worker::markConnectFailure(BackendRt& b, int server) {
  if (b.cfg->active.enabled || b.cfg->passive.enabled) return;
  b.servers[server].failed_until_ms = loop_.now() + kConnectFailureHoldMs;
}

UpstreamConn* Worker::takeIdle(ServerRt& s) {
  while (!s.idle.empty()) {
    UpstreamConn* c = s.idle.back();
    s.idle.pop_back();
    if (!c->closed()) return c;
  }
  return nullptr;
}

void Worker::putIdle(UpstreamConn* c) {
  ServerRt& s = c->backend().servers[c->server()];
  if (draining_ || c->backend().gen->retired ||
      s.idle.size() >= c->backend().cfg->limits.max_idle_per_server) {
    c->close();
    return;
  }
  c->in().releaseIfEmpty();
  s.idle.push_back(c);
}

void Worker::upstreamClosed(UpstreamConn* c) {
  ServerRt& s = c->backend().servers[c->server()];
  for (size_t i = 0; i < s.idle.size(); ++i) {
    if (s.idle[i] == c) {
      s.idle[i] = s.idle.back();
      s.idle.pop_back();
      break;
    }
  }
}

void Worker::sessionOpened(Session* s, Generation* g) {
  s->worker_index = sessions_.size();
  sessions_.push_back(s);
  ++g->sessions;
}

void Worker::sessionMoved(Generation* from, Generation* to) {
  ++to->sessions;
  --from->sessions;
  release(from);
}

void Worker::sessionClosed(Session* s, Generation* g) {
  size_t i = s->worker_index;
  if (i < sessions_.size() && sessions_[i] == s) {
    sessions_[i] = sessions_.back();
    sessions_[i]->worker_index = i;
    sessions_.pop_back();
  }
  --g->sessions;
  release(g);
  maybeFinish();
}

}  // namespace tandem::proxy
