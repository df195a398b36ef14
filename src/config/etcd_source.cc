#include "config/etcd_source.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include "core/log.h"

namespace tandem::config {

Result<std::unique_ptr<EtcdSource>> EtcdSource::make(EtcdSourceOptions options, OnConfig on_config,
                                                     OnState on_state) {
  auto flag = std::make_shared<std::atomic<bool>>(false);
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return fail(ErrorSource::kInternal, errno, "eventfd failed");
  EtcdClientOptions co;
  co.endpoints = options.endpoints;
  co.timeout = options.timeout;
  co.cancelled = [flag] { return flag->load(std::memory_order_relaxed); };
  co.wake_fd = wake.get();
  auto client = EtcdClient::make(std::move(co));
  if (!client) return tl::unexpected(client.error());
  if (options.backoff_initial.count() <= 0) options.backoff_initial = std::chrono::milliseconds{1};
  options.backoff_max = std::max(options.backoff_max, options.backoff_initial);
  return std::unique_ptr<EtcdSource>(new EtcdSource(std::move(options), std::move(*client),
                                                    std::move(flag), std::move(wake),
                                                    std::move(on_config), std::move(on_state)));
}

EtcdSource::EtcdSource(EtcdSourceOptions options, EtcdClient client,
                       std::shared_ptr<std::atomic<bool>> flag, UniqueFd wake, OnConfig on_config,
                       OnState on_state)
    : options_(std::move(options)),
      client_(std::move(client)),
      on_config_(std::move(on_config)),
      on_state_(std::move(on_state)),
      stop_flag_(std::move(flag)),
      wake_(std::move(wake)),
      rng_(std::random_device{}()) {}

EtcdSource::~EtcdSource() { stop(); }

void EtcdSource::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] { run(); });
}

void EtcdSource::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    stop_flag_->store(true, std::memory_order_relaxed);
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t EtcdSource::lastRevision() const { return last_revision_.load(std::memory_order_acquire); }

bool EtcdSource::stopping() const { return stop_flag_->load(std::memory_order_relaxed); }

void EtcdSource::setReachable(bool reachable, const std::string& why) {
  if (reachable) delay_ = std::chrono::milliseconds{0};  // the next failure starts over
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

void EtcdSource::backoff() {
  using std::chrono::milliseconds;
  delay_ =
      delay_.count() == 0 ? options_.backoff_initial : std::min(delay_ * 2, options_.backoff_max);
  // +-20% so that a fleet of balancers does not reconnect in lockstep after an etcd restart.
  rng_ = rng_ * 6364136223846793005ULL + 1442695040888963407ULL;
  const double factor = 0.8 + 0.4 * double(rng_ >> 11) / double(1ULL << 53);
  const milliseconds wait{std::max<int64_t>(1, int64_t(double(delay_.count()) * factor))};
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, wait, [this] { return stop_; });
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
        backoff();
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
      backoff();
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
        backoff();
        break;
    }
  }
}

}  // namespace tandem::config
