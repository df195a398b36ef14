#include "config/etcd_source.h"

#include "core/log.h"

namespace tandem::config {

Result<std::unique_ptr<EtcdSource>> EtcdSource::make(EtcdSourceOptions options, OnConfig on_config,
                                                     OnState on_state) {
  auto worker = EtcdWorker::make({.backoff_initial = options.backoff_initial,
                                  .backoff_max = options.backoff_max,
                                  .restartable = false});
  if (!worker) return tl::unexpected(worker.error());
  auto client = (*worker)->makeClient({.endpoints = options.endpoints, .timeout = options.timeout});
  if (!client) return tl::unexpected(client.error());
  return std::unique_ptr<EtcdSource>(new EtcdSource(std::move(options), std::move(*worker),
                                                    std::move(*client), std::move(on_config),
                                                    std::move(on_state)));
}

EtcdSource::EtcdSource(EtcdSourceOptions options, std::unique_ptr<EtcdWorker> worker,
                       EtcdClient client, OnConfig on_config, OnState on_state)
    : options_(std::move(options)),
      worker_(std::move(worker)),
      client_(std::move(client)),
      on_config_(std::move(on_config)),
      on_state_(std::move(on_state)) {}

EtcdSource::~EtcdSource() { stop(); }

void EtcdSource::start() {
  worker_->start([this] { run(); });
}

void EtcdSource::stop() { worker_->stop(); }

int64_t EtcdSource::lastRevision() const { return last_revision_.load(std::memory_order_acquire); }

void EtcdSource::setReachable(bool reachable, const std::string& why) {
  if (reachable) worker_->resetBackoff();  // the next failure starts over
  if (reachable_ == int(reachable)) return;
  reachable_ = int(reachable);
  if (reachable) {
    log::info("etcd config source: {}", why);
  } else {
    log::warn("etcd config source: {}", why);
  }
  if (on_state_) on_state_(reachable, why);
}

void EtcdSource::deliver(std::string text, int64_t revision) {
  last_revision_.store(revision, std::memory_order_release);
  if (on_config_) on_config_(std::move(text), revision);
}

void EtcdSource::run() {
  const std::string& key = options_.key;
  // The watch resumes at watch_from: one past the newest revision we have fully seen (the header
  // revision of the last read, or the last event), which is at least last delivered + 1.
  int64_t watch_from = 0;
  bool need_read = true;
  const std::function<bool()> stop_hook = [this] { return stopping(); };
  const auto on_event = [&](const EtcdWatchEvent& ev) {
    watch_from = ev.mod_revision + 1;
    if (ev.deleted) {
      log::warn("etcd config source: {} deleted at revision {}; keeping the running config", key,
                ev.mod_revision);
      if (on_state_) on_state_(true, "key deleted; keeping the running config");
      return;
    }
    deliver(ev.value, ev.mod_revision);
  };
  const auto on_created = [&](int64_t) { setReachable(true, "watching " + key); };

  while (!stopping()) {
    if (need_read) {
      auto r = client_.range(key);
      if (stopping()) break;
      if (!r) {
        setReachable(false, r.error().message);
        worker_->backoff();
        continue;
      }
      setReachable(true, "watching " + key);
      if (r->kv.found) {
        if (r->kv.mod_revision != lastRevision())
          deliver(std::move(r->kv.value), r->kv.mod_revision);
      } else if (on_state_) {
        on_state_(true, "key " + key + " does not exist yet");
      }
      watch_from = r->revision + 1;
      need_read = false;
    }
    auto w = client_.watch(key, watch_from, on_event, stop_hook,
                           std::chrono::steady_clock::time_point::max(), on_created);
    if (stopping()) break;
    if (!w) {
      setReachable(false, w.error().message);
      worker_->backoff();
      continue;  // resume the watch from watch_from
    }
    switch (w->reason) {
      case WatchEnd::Reason::kCancelled:
        break;
      case WatchEnd::Reason::kCompacted:
        log::info("etcd config source: {}; re-reading {}", w->message, key);
        need_read = true;
        break;
      case WatchEnd::Reason::kServerCancelled:
        log::warn("etcd config source: {}; re-reading {}", w->message, key);
        need_read = true;
        worker_->backoff();
        break;
    }
  }
}

}  // namespace tandem::config
