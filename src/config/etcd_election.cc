#include "config/etcd_election.h"

#include <algorithm>
#include <cerrno>

#include "core/log.h"

namespace tandem::config {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

Result<std::unique_ptr<EtcdElection>> EtcdElection::make(EtcdElectionOptions options,
                                                         OnRole on_role) {
  if (options.node_id.empty()) {
    return fail(ErrorSource::kConfig, EINVAL, "etcd election: empty node id");
  }
  if (options.ttl.count() < 1) {
    return fail(ErrorSource::kConfig, EINVAL, "etcd election: ttl must be at least 1s");
  }
  const milliseconds ttl = options.ttl;
  if (options.margin.count() <= 0) {
    options.margin = std::clamp<milliseconds>(ttl / 5, milliseconds{100}, milliseconds{1'000});
  }
  options.margin = std::min<milliseconds>(options.margin, ttl / 2);
  if (options.timeout.count() <= 0) {
    options.timeout = std::max<milliseconds>(ttl / 3, milliseconds{300});
  }
  if (options.recheck.count() <= 0) options.recheck = milliseconds{10'000};

  auto worker = EtcdWorker::make({.backoff_initial = milliseconds{100},
                                  .backoff_max = milliseconds{1'000},
                                  .restartable = true});
  if (!worker) return tl::unexpected(worker.error());
  const EtcdClientOptions co{.endpoints = options.endpoints, .timeout = options.timeout};
  auto plain = EtcdClient::make(co);
  if (!plain) return tl::unexpected(plain.error());
  auto client = (*worker)->makeClient(co);
  if (!client) return tl::unexpected(client.error());
  return std::unique_ptr<EtcdElection>(new EtcdElection(std::move(options), std::move(*worker),
                                                        std::move(*client), std::move(*plain),
                                                        std::move(on_role)));
}

EtcdElection::EtcdElection(EtcdElectionOptions options, std::unique_ptr<EtcdWorker> worker,
                           EtcdClient client, EtcdClient plain, OnRole on_role)
    : options_(std::move(options)),
      worker_(std::move(worker)),
      client_(std::move(client)),
      plain_(std::move(plain)),
      on_role_(std::move(on_role)) {}

EtcdElection::~EtcdElection() { stop(); }

void EtcdElection::start() {
  worker_->start([this] { run(); });
}

void EtcdElection::stop() {
  worker_->stop();
  // The lease is left to expire; forget it so that a restart grants a fresh one.
  if (isLeader()) log::warn("etcd election: {} stopped while leader", options_.node_id);
  setRole(false, isLeader() ? std::string() : leader());
  lease_ = 0;
}

bool EtcdElection::resign() {
  worker_->stop();
  const bool was_leader = isLeader();
  // Not the leader any more *before* the key goes, so that the next leader never overlaps us.
  setRole(false, was_leader ? std::string() : leader());
  if (lease_ == 0) return true;
  bool ok = true;
  auto del = plain_.txnDeleteIfValue(options_.key, options_.node_id, lease_);
  if (!del) {
    ok = false;
    log::warn("etcd election: resign: {}", del.error().message);
  }
  auto rev = plain_.leaseRevoke(lease_);
  if (!rev) {
    ok = false;
    log::warn("etcd election: resign: revoking the lease: {}", rev.error().message);
  }
  if (was_leader) log::info("etcd election: {} resigned", options_.node_id);
  lease_ = 0;
  return ok;
}

std::string EtcdElection::leader() const {
  std::lock_guard lock(mu_);
  return leader_id_;
}

void EtcdElection::setRole(bool leader, const std::string& leader_id) {
  {
    std::lock_guard lock(mu_);
    if (leader == leader_flag_.load(std::memory_order_relaxed) && leader_id == leader_id_) return;
    leader_id_ = leader_id;
    leader_flag_.store(leader, std::memory_order_release);
  }
  if (leader) {
    log::info("etcd election: {} is the leader ({})", options_.node_id, options_.key);
  } else {
    log::info("etcd election: {} follows {}", options_.node_id,
              leader_id.empty() ? "(unknown)" : leader_id);
  }
  if (on_role_) on_role_(leader, leader_id);
}

void EtcdElection::revokeLease() {
  if (lease_ == 0) return;
  if (auto r = client_.leaseRevoke(lease_); !r && !stopping()) {
    log::debug("etcd election: revoking lease {}: {}", lease_, r.error().message);
  }
  lease_ = 0;
}

bool EtcdElection::ensureLease() {
  const milliseconds asked = options_.ttl;
  if (lease_ != 0) {
    // A lease we still hold (e.g. after stepping down while etcd was away): if etcd kept it, our
    // key may still be there under it, and we can carry on without waiting for it to expire.
    const auto sent = Clock::now();
    auto r = client_.leaseKeepAlive(lease_);
    if (!r) {
      log::debug("etcd election: keepalive of lease {}: {}", lease_, r.error().message);
      return false;
    }
    if (*r > 0) {
      deadline_ = sent + lease_ttl_ - options_.margin;
      return true;
    }
    lease_ = 0;  // gone
  }
  const auto sent = Clock::now();
  auto g = client_.leaseGrant(options_.ttl.count());
  if (!g) {
    log::debug("etcd election: lease grant: {}", g.error().message);
    return false;
  }
  lease_ = g->id;
  // etcd raises a TTL below its minimum; our deadline keeps to the smaller value (safe side).
  lease_ttl_ = std::min<milliseconds>(asked, std::chrono::seconds{std::max<int64_t>(g->ttl_s, 1)});
  deadline_ = sent + lease_ttl_ - options_.margin;
  return true;
}

void EtcdElection::run() {
  while (!stopping()) {
    if (!ensureLease()) {
      if (stopping()) break;
      worker_->backoff();
      continue;
    }
    auto c = client_.txnCreate(options_.key, options_.node_id, lease_);
    if (stopping()) break;
    if (!c) {
      log::debug("etcd election: campaign: {}", c.error().message);
      if (!c.error().retryable) lease_ = 0;  // e.g. "requested lease not found"
      worker_->backoff();
      continue;
    }
    worker_->resetBackoff();
    const EtcdKeyValue& kv = c->existing;
    if (c->created || (kv.found && kv.value == options_.node_id && kv.lease == lease_)) {
      lead(c->revision);
      continue;
    }
    // Someone else leads: we would only keep our lease alive for nothing.
    revokeLease();
    if (!kv.found) continue;  // gone between the compare and the read: campaign again
    setRole(false, kv.value);
    follow(c->revision + 1);
  }
}

void EtcdElection::lead(int64_t revision) {
  setRole(true, options_.node_id);
  const milliseconds interval = lease_ttl_ / 3;
  const milliseconds retry =
      std::clamp<milliseconds>(lease_ttl_ / 10, milliseconds{20}, milliseconds{100});
  auto next_keepalive = Clock::now() + interval;
  int64_t watch_from = revision + 1;
  bool watch_ok = true;
  std::string lost;  // why we are not the leader any more, set by the watch
  const auto on_event = [&](const EtcdWatchEvent& ev) {
    watch_from = ev.mod_revision + 1;
    if (ev.deleted) {
      lost = "our key was deleted (lease revoked or key removed)";
    } else if (ev.value != options_.node_id) {
      lost = "our key was overwritten with '" + ev.value + "'";
    }
  };
  const std::function<bool()> stop_hook = [&] { return stopping() || !lost.empty(); };

  for (;;) {
    if (stopping()) return;  // stop()/resign() report the role change
    const auto wake = std::min(next_keepalive, deadline_);
    if (watch_ok) {
      auto w = client_.watch(options_.key, watch_from, on_event, stop_hook, wake);
      if (!w) {
        watch_ok = false;  // retried after the next successful keepalive
      } else if (w->reason == WatchEnd::Reason::kCompacted ||
                 w->reason == WatchEnd::Reason::kServerCancelled) {
        // Events may be lost: check the key itself.
        auto r = client_.range(options_.key);
        if (r && !(r->kv.found && r->kv.value == options_.node_id && r->kv.lease == lease_)) {
          lost = "our key changed while the watch was compacted";
        } else if (r) {
          watch_from = r->revision + 1;
        } else {
          watch_ok = false;
        }
      }
    }
    if (!watch_ok && lost.empty()) worker_->sleepUntil(wake);
    if (stopping()) return;
    if (!lost.empty()) {
      log::warn("etcd election: {} steps down: {}", options_.node_id, lost);
      setRole(false, "");
      revokeLease();
      // Whoever deleted or revoked our key wants a hand-over, and the followers watching it
      // campaign at once: give them a head start instead of racing them to win straight back.
      worker_->sleepUntil(Clock::now() + std::clamp<milliseconds>(lease_ttl_ / 4, milliseconds{50},
                                                                  milliseconds{500}));
      return;
    }
    auto now = Clock::now();
    if (now >= deadline_) {
      log::warn("etcd election: {} steps down: lease not refreshed within {} ms", options_.node_id,
                (lease_ttl_ - options_.margin).count());
      setRole(false, "");
      return;  // lease_ kept: if etcd still has it when it comes back, we lead again at once
    }
    if (now < next_keepalive) continue;
    const auto remaining = std::chrono::duration_cast<milliseconds>(deadline_ - now);
    auto r = client_.leaseKeepAlive(lease_, std::min(options_.timeout, remaining));
    if (stopping()) return;
    if (r && *r > 0) {
      deadline_ = now + lease_ttl_ - options_.margin;
      next_keepalive = now + interval;
      watch_ok = true;
    } else if (r) {
      log::warn("etcd election: {} steps down: lease {} expired", options_.node_id, lease_);
      setRole(false, "");
      lease_ = 0;
      return;
    } else {
      log::debug("etcd election: keepalive: {}", r.error().message);
      next_keepalive = Clock::now() + retry;
    }
  }
}

void EtcdElection::follow(int64_t from_revision) {
  int64_t watch_from = from_revision;
  bool gone = false;
  const auto on_event = [&](const EtcdWatchEvent& ev) {
    watch_from = ev.mod_revision + 1;
    if (ev.deleted) {
      gone = true;
    } else {
      setRole(false, ev.value);
    }
  };
  const std::function<bool()> stop_hook = [&] { return stopping() || gone; };
  for (;;) {
    auto w = client_.watch(options_.key, watch_from, on_event, stop_hook,
                           Clock::now() + options_.recheck);
    if (gone || stopping()) return;
    if (!w) {
      log::debug("etcd election: follower watch: {}", w.error().message);
      worker_->backoff();
      return;  // campaign: it re-reads the key (and backs off while etcd is away)
    }
    // Recheck, compaction or a cancelled watch: read the key itself.
    auto r = client_.range(options_.key);
    if (stopping() || !r || !r->kv.found) return;
    setRole(false, r->kv.value);
    watch_from = r->revision + 1;
  }
}

}  // namespace tandem::config
