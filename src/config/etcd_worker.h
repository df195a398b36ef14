#pragma once
// A background thread that talks to etcd and can be stopped promptly: the thread machinery of the
// etcd config source and the etcd election. stop() raises a flag that the clients bound to the
// worker poll as their cancel hook, and writes an eventfd they poll along with their socket, so a
// blocked etcd request returns at once (ECANCELED); a sleep on the thread (sleepUntil, backoff)
// ends at once too. Then stop() joins the thread.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "config/etcd_client.h"
#include "core/socket.h"

namespace tandem::config {

struct EtcdWorkerOptions {
  // After a failure the thread waits backoff_initial, doubling up to backoff_max, each wait +-20%
  // so that a fleet of balancers does not retry in lockstep (e.g. after an etcd restart).
  std::chrono::milliseconds backoff_initial{100};  // <= 0 counts as 1 ms
  std::chrono::milliseconds backoff_max{1'000};    // raised to backoff_initial if below it
  // start() after stop() runs the thread again; false: stop() is final and start() does nothing.
  bool restartable = true;
};

class EtcdWorker {
 public:
  using Clock = std::chrono::steady_clock;

  // Fails only if the eventfd cannot be created.
  static Result<std::unique_ptr<EtcdWorker>> make(EtcdWorkerOptions options);
  ~EtcdWorker();  // stop()
  EtcdWorker(const EtcdWorker&) = delete;
  EtcdWorker& operator=(const EtcdWorker&) = delete;

  // A client (EtcdClient::make(options)) whose calls stop() ends at once: its cancel hook and wake
  // fd are the worker's. The worker must outlive those calls.
  Result<EtcdClient> makeClient(EtcdClientOptions options) const;

  // Runs `body` on a thread of its own unless one is running (or stop() has been called and the
  // worker is not restartable). Starting again after stop() clears the stop request, drains the
  // eventfd and starts the backoff over.
  void start(std::function<void()> body);
  // Asks the thread to stop, wakes its blocked call or sleep and waits for it. Idempotent; not
  // from the thread itself.
  void stop();

  // On the thread: whether stop() has been asked for (the body should then return).
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }
  // On the thread: sleeps until t, or less if stop() is called.
  void sleepUntil(Clock::time_point t);
  // On the thread, after a failure: sleeps for the next backoff delay (see EtcdWorkerOptions), or
  // less if stop() is called.
  void backoff();
  // On the thread, after a success: the next failure backs off from backoff_initial again.
  void resetBackoff() { delay_ = std::chrono::milliseconds{0}; }

 private:
  EtcdWorker(EtcdWorkerOptions options, UniqueFd wake);

  const EtcdWorkerOptions options_;
  UniqueFd wake_;  // eventfd: written by stop() so that a blocked call returns at once
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stop_{false};  // written under mu_ (so that a sleeper cannot miss it)

  // The thread only (and start(), while no thread runs).
  std::chrono::milliseconds delay_{0};
  uint64_t rng_ = 0;
};

}  // namespace tandem::config
