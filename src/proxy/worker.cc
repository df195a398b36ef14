#include "proxy/worker.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/log.h"
#include "proxy/session.h"
#include "proxy/upstream.h"

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

// Accepts connections on this worker's SO_REUSEPORT socket for one listener.
class Worker::Acceptor final : public IoHandler, public TimerHandler {
 public:
  Acceptor(Worker& w, ListenerShared& ls, int fd) : w_(w), ls_(ls), fd_(fd), backoff_(this, 0) {
    w_.loop().add(fd_, this, EPOLLIN | EPOLLET);
  }
  ~Acceptor() { stop(); }

  void stop() {
    if (fd_ < 0) return;
    backoff_.cancel();
    w_.loop().remove(fd_);
    ::close(fd_);
    fd_ = -1;
  }

  void onIo(uint32_t) override { acceptAll(); }
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
          log::warn("listener {}: accept: {}; pausing {} ms", ls_.cfg->name, strerror(errno),
                    kAcceptBackoffMs);
          backoff_.arm(w_.loop().timers(kAcceptBackoffMs));
        }
        return;
      }
      if (ls_.connections.fetch_add(1, std::memory_order_relaxed) >=
          ls_.cfg->limits.max_connections) {
        ls_.connections.fetch_sub(1, std::memory_order_relaxed);
        ::close(c);
        continue;
      }
      setNoDelay(c);
      w_.stats().listeners[ls_.index].connections.add();
      auto* s = new Session(w_, ls_, c, peer);
      s->start();
    }
  }

  Worker& w_;
  ListenerShared& ls_;
  int fd_;
  Timer backoff_;
};

Worker::Worker(int id, unsigned worker_count, std::shared_ptr<const config::Config> cfg,
               std::vector<ListenerShared*> shared, std::vector<int> listen_fds, uint64_t seed,
               health::HealthManager* health)
    : id_(id),
      cfg_(std::move(cfg)),
      rng_(seed),
      stats_(*cfg_),
      health_manager_(health),
      worker_count_(worker_count ? worker_count : 1) {
  backends_.resize(cfg_->backends.size());
  for (size_t bi = 0; bi < cfg_->backends.size(); ++bi) {
    const config::Backend& bc = cfg_->backends[bi];
    BackendRt& b = backends_[bi];
    b.cfg = &bc;
    b.stats = &stats_.backends[bi];
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
    for (size_t si = 0; si < bc.servers.size(); ++si) {
      const config::Server& sc = bc.servers[si];
      ServerRt& s = b.servers[si];
      s.cfg = &sc;
      s.stats = &b.stats->servers[si];
      s.health.weight = static_cast<uint16_t>(sc.weight);
      auto addr = parseAddress(sc.address.host, sc.address.port);
      if (addr) s.addr = *addr;  // validated by the config loader
      s.group = sc.backup ? 1 : 0;
      s.position = static_cast<int>(b.groups[s.group].members.size());
      b.groups[s.group].members.push_back(static_cast<int>(si));
    }
    for (GroupRt& grp : b.groups) {
      grp.eligible.assign(grp.members.size(), 1);
      grp.active.assign(grp.members.size(), 0);
    }
  }
  if (health_manager_) health_ = health_manager_->current();
  if (health_) {
    applyHealth(*health_);
  } else {
    for (BackendRt& b : backends_) rebuildBalancers(b);
  }
  for (size_t i = 0; i < shared.size(); ++i) {
    acceptors_.push_back(std::make_unique<Acceptor>(*this, *shared[i], listen_fds[i]));
  }
  loop_.setWakeHandler([this] {
    std::shared_ptr<const health::HealthView> v;
    {
      std::lock_guard<std::mutex> g(health_mu_);
      v.swap(pending_health_);
    }
    if (v) {
      health_ = v;  // the previous snapshot is released here, on the worker's own thread
      applyHealth(*health_);
    }
    if (drain_requested_.load() && !draining_) onDrain();
  });
}

void Worker::publishHealth(std::shared_ptr<const health::HealthView> view) {
  {
    std::lock_guard<std::mutex> g(health_mu_);
    pending_health_ = std::move(view);
  }
  loop_.wake();
}

void Worker::applyHealth(const health::HealthView& view) {
  for (size_t bi = 0; bi < backends_.size() && bi < view.backends.size(); ++bi) {
    BackendRt& b = backends_[bi];
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
  for (BackendRt& b : backends_) {
    for (ServerRt& s : b.servers) {
      for (UpstreamConn* c : s.idle) delete c;
      s.idle.clear();
    }
  }
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

int Worker::pickServer(BackendRt& b, uint64_t hash, const PickExclusions& ex, PickFailure* why) {
  const int64_t now = loop_.now();
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
  if (!b.cfg->passive.enabled || !health_manager_) return;
  if (++s.consecutive_failures >= b.cfg->passive.consecutive_failures) {
    s.consecutive_failures = 0;
    // Provisional: this worker stops sending right away instead of waiting for the round trip
    // through the control thread; the verdict (or this short hold's end) decides after that.
    s.failed_until_ms = loop_.now() + kProvisionalEjectionMs;
    health_manager_->reportFailureStreak(static_cast<int>(&b - backends_.data()), server);
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
  if (draining_ || s.idle.size() >= c->backend().cfg->limits.max_idle_per_server) {
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

void Worker::sessionOpened(Session* s) {
  s->worker_index = sessions_.size();
  sessions_.push_back(s);
}

void Worker::sessionClosed(Session* s) {
  size_t i = s->worker_index;
  if (i < sessions_.size() && sessions_[i] == s) {
    sessions_[i] = sessions_.back();
    sessions_[i]->worker_index = i;
    sessions_.pop_back();
  }
  maybeFinish();
}

}  // namespace tandem::proxy
