#pragma once
// Leader election through an etcd lease (`cluster.election: etcd`, DESIGN §4/§6): the active
// instance is the one whose node id is stored under `key`, attached to a lease it keeps alive.
//
// - Campaign: a txn "if the key does not exist, put our id under our lease, else read it". We are
//   the leader iff our txn created the key, or the key already holds our id under our current
//   lease (a retried txn whose first answer was lost).
// - Leader: keeps the lease alive every ttl/3 and watches its own key in between (so a deleted or
//   overwritten key, e.g. a lease revoked from outside, is noticed at once). A leader that has not
//   refreshed the lease successfully for ttl - margin steps down by itself (local deadline, started
//   when the last successful keepalive was *sent*), so two leaders never coexist beyond clock drift
//   between this host and etcd: etcd deletes the key no earlier than ttl after that send.
// - Follower: watches the key and campaigns as soon as it disappears (resignation, lease expiry);
//   re-reads it every `recheck` as a safety net for a silently dead watch.
// - etcd unreachable: retries with backoff (100 ms doubling to 1 s). A leader that stepped down
//   for want of keepalives keeps its lease id: if etcd still has the lease when it is reachable
//   again, the key is still ours and we lead again at once.
// - A key holding our id under a lease that is not ours (a previous run of this node that died)
//   is treated as someone else's: we follow "ourselves" until that lease expires.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/etcd_client.h"
#include "config/etcd_worker.h"

namespace tandem::config {

struct EtcdElectionOptions {
  std::vector<std::string> endpoints;  // http://host:port, tried in order
  std::string key = "/tandem/leader";
  std::string node_id;                   // must be unique among the candidates; not empty
  std::chrono::seconds ttl{2};           // lease TTL (etcd counts in whole seconds; >= 1)
  std::chrono::milliseconds margin{0};   // step down this long before ttl; 0 = ttl/5 in [100ms, 1s]
  std::chrono::milliseconds timeout{0};  // per request; 0 = max(ttl/3, 300ms)
  std::chrono::milliseconds recheck{10'000};  // follower: re-read the key this often
};

class EtcdElection {
 public:
  // Role changes: (true, own id) on winning; (false, id of the leader, or "" when unknown) on
  // losing, stepping down or following another leader. Called on the election thread (and on the
  // caller's thread inside stop()/resign()), only when (leader, leader_id) changes.
  using OnRole = std::function<void(bool leader, std::string leader_id)>;

  // Fails on bad endpoint URLs, an empty node id or a ttl under 1 s.
  static Result<std::unique_ptr<EtcdElection>> make(EtcdElectionOptions options, OnRole on_role);
  ~EtcdElection();  // stop()
  EtcdElection(const EtcdElection&) = delete;
  EtcdElection& operator=(const EtcdElection&) = delete;

  // Starts campaigning on a thread of its own. May be called again after stop()/resign().
  void start();
  // Stops campaigning without touching etcd, as a crash would: a leader stops refreshing its lease
  // and reports (false, ""); its key disappears when the lease expires. Returns in about a
  // millisecond (an eventfd wakes the blocked call).
  void stop();
  // Graceful hand-over: stops campaigning, reports (false, ""), deletes our key if it still holds
  // our id under our lease (followers take over at once) and revokes the lease. Bounded by the
  // request timeout. Returns false if etcd could not be told (the lease then expires by itself).
  bool resign();

  bool isLeader() const { return leader_flag_.load(std::memory_order_acquire); }
  // The current leader's id as last seen ("" if unknown). Thread-safe.
  std::string leader() const;
  const std::string& nodeId() const { return options_.node_id; }

 private:
  EtcdElection(EtcdElectionOptions options, std::unique_ptr<EtcdWorker> worker, EtcdClient client,
               EtcdClient plain, OnRole on_role);
  void run();
  // Ensures a live lease (keepalive of the one we hold, else a new grant); false on failure.
  bool ensureLease();
  // Leader phase, from the txn's revision; returns when we are no longer the leader.
  void lead(int64_t revision);
  // Follower phase; returns when the key is gone or must be re-checked by a campaign.
  void follow(int64_t from_revision);
  void setRole(bool leader, const std::string& leader_id);
  void revokeLease();
  bool stopping() const { return worker_->stopping(); }

  EtcdElectionOptions options_;
  std::unique_ptr<EtcdWorker> worker_;  // the election thread; stopped by stop()/resign()
  EtcdClient client_;                   // cancelled by stop()/resign()
  EtcdClient plain_;                    // for resign() after the thread has stopped
  OnRole on_role_;

  mutable std::mutex mu_;
  std::atomic<bool> leader_flag_{false};
  std::string leader_id_;  // guarded by mu_

  // Election thread only (and the caller of stop()/resign() once the thread has been joined).
  int64_t lease_ = 0;
  std::chrono::milliseconds lease_ttl_{0};            // effective: min(asked, granted)
  std::chrono::steady_clock::time_point deadline_{};  // step down at this time without keepalive
};

}  // namespace tandem::config
