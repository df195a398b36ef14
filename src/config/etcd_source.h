#pragma once
// The etcd config source (DESIGN §6 "Central config"): a thread of its own that reads one key,
// delivers its value, then watches the key and delivers every new value. Validation and applying
// are the caller's business (the callbacks); this class only moves text and revisions.
//
// Failure handling: when etcd cannot be reached the source retries with exponential backoff
// (100 ms doubling to 5 s, +-20% jitter) and resumes the watch after the last revision it has
// seen, so no change is missed; if that revision has been compacted meanwhile it re-reads the key
// and delivers it only if its mod_revision differs from the last one delivered. A deleted key is
// never delivered as a config: the running config stays and the state callback says so.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/etcd_client.h"
#include "config/etcd_worker.h"

namespace tandem::config {

struct EtcdSourceOptions {
  std::vector<std::string> endpoints;  // http://host:port, tried in order
  std::string key = "/tandem/config";
  std::chrono::milliseconds timeout{2'000};  // per request
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5'000};
};

class EtcdSource {
 public:
  // A new value of the key: its text and mod_revision. Called on the source's thread, in revision
  // order, never twice for the same revision.
  using OnConfig = std::function<void(std::string text, int64_t revision)>;
  // Called on the source's thread when reachability changes (the first call says how the first
  // attempt went), and with reachable = true for notable events on the key: "key deleted; keeping
  // the running config", "key K does not exist yet".
  using OnState = std::function<void(bool reachable, std::string why)>;

  // Fails only on bad endpoint URLs.
  static Result<std::unique_ptr<EtcdSource>> make(EtcdSourceOptions options, OnConfig on_config,
                                                  OnState on_state);
  ~EtcdSource();  // stop()
  EtcdSource(const EtcdSource&) = delete;
  EtcdSource& operator=(const EtcdSource&) = delete;

  // Starts the thread (once).
  void start();
  // Stops the thread and waits for it: returns in about a millisecond (an eventfd wakes a blocked
  // call). No callback runs after stop() returns. Idempotent; do not call from a callback.
  void stop();

  // Last delivered mod_revision (0 = none yet). Thread-safe.
  int64_t lastRevision() const;

 private:
  EtcdSource(EtcdSourceOptions options, std::unique_ptr<EtcdWorker> worker, EtcdClient client,
             OnConfig on_config, OnState on_state);
  void run();
  void setReachable(bool reachable, const std::string& why);
  void deliver(std::string text, int64_t revision);
  bool stopping() const { return worker_->stopping(); }

  EtcdSourceOptions options_;
  std::unique_ptr<EtcdWorker> worker_;  // the source's thread (not restartable)
  EtcdClient client_;                   // cancelled by stop()
  OnConfig on_config_;
  OnState on_state_;
  std::atomic<int64_t> last_revision_{0};

  // Source thread only.
  int reachable_ = -1;  // -1 unknown, 0 no, 1 yes
};

}  // namespace tandem::config
