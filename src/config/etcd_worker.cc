#include "config/etcd_worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

namespace tandem::config {

using std::chrono::milliseconds;

Result<std::unique_ptr<EtcdWorker>> EtcdWorker::make(EtcdWorkerOptions options) {
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return fail(ErrorSource::kInternal, errno, "eventfd failed");
  if (options.backoff_initial.count() <= 0) options.backoff_initial = milliseconds{1};
  options.backoff_max = std::max(options.backoff_max, options.backoff_initial);
  return std::unique_ptr<EtcdWorker>(new EtcdWorker(options, std::move(wake)));
}

EtcdWorker::EtcdWorker(EtcdWorkerOptions options, UniqueFd wake)
    : options_(options), wake_(std::move(wake)), rng_(std::random_device{}()) {}

EtcdWorker::~EtcdWorker() { stop(); }

Result<EtcdClient> EtcdWorker::makeClient(EtcdClientOptions options) const {
  options.cancelled = [this] { return stopping(); };
  options.wake_fd = wake_.get();
  return EtcdClient::make(std::move(options));
}

void EtcdWorker::start(std::function<void()> body) {
  std::lock_guard lock(mu_);
  if (thread_.joinable() || (stopping() && !options_.restartable)) return;
  stop_.store(false, std::memory_order_relaxed);
  uint64_t drained = 0;
  [[maybe_unused]] ssize_t n = ::read(wake_.get(), &drained, sizeof drained);
  delay_ = milliseconds{0};
  thread_ = std::thread(std::move(body));
}

void EtcdWorker::stop() {
  {
    std::lock_guard lock(mu_);
    stop_.store(true, std::memory_order_relaxed);
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void EtcdWorker::sleepUntil(Clock::time_point t) {
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, t, [this] { return stopping(); });
}

void EtcdWorker::backoff() {
  delay_ =
      delay_.count() == 0 ? options_.backoff_initial : std::min(delay_ * 2, options_.backoff_max);
  rng_ = rng_ * 6364136223846793005ULL + 1442695040888963407ULL;
  const double factor = 0.8 + 0.4 * double(rng_ >> 11) / double(1ULL << 53);
  sleepUntil(Clock::now() +
             milliseconds{std::max<int64_t>(1, int64_t(double(delay_.count()) * factor))});
}

}  // namespace tandem::config
