#pragma once
// Per-worker event loop: edge-triggered epoll, O(1) timers, deferred destruction.
//
// Threading: an EventLoop and everything registered with it belong to one thread. The only
// cross-thread entry point is wake(), which makes run() call the wake handler on the loop thread.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace tandem {

// Receives epoll events for one file descriptor (edge-triggered: handlers must read/write until
// EAGAIN or remember that the fd is still ready).
class IoHandler {
 public:
  virtual void onIo(uint32_t events) = 0;

 protected:
  ~IoHandler() = default;
};

class TimerList;

// Receives timer expirations. `tag` tells the owner which of its timers fired.
class TimerHandler {
 public:
  virtual void onTimer(int tag) = 0;

 protected:
  ~TimerHandler() = default;
};

// An intrusive timer node owned by its handler. Every TimerList has a single fixed duration, so
// arming appends at the tail and the list stays sorted by deadline: arm, cancel and expiry are O(1)
// without a heap. Timeouts in a proxy come from a handful of configured durations, so the number of
// lists stays small.
class Timer {
 public:
  Timer(TimerHandler* owner, int tag) : owner_(owner), tag_(tag) {}
  ~Timer() { cancel(); }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void arm(TimerList& list);  // (re)starts the timer at list.duration() from the loop's now
  void cancel();
  bool armed() const { return list_ != nullptr; }

 private:
  friend class TimerList;
  friend class EventLoop;
  TimerHandler* owner_;
  int tag_;
  int64_t deadline_ms_ = 0;
  TimerList* list_ = nullptr;
  Timer* prev_ = nullptr;
  Timer* next_ = nullptr;
};

class EventLoop;

class TimerList {
 public:
  TimerList(EventLoop& loop, int64_t duration_ms) : loop_(loop), duration_ms_(duration_ms) {}
  int64_t duration() const { return duration_ms_; }

 private:
  friend class Timer;
  friend class EventLoop;
  void push(Timer* t);
  void remove(Timer* t);
  EventLoop& loop_;
  int64_t duration_ms_;
  Timer* head_ = nullptr;
  Timer* tail_ = nullptr;
};

// Objects whose destruction must wait until the current batch of events has been dispatched
// (another event in the same batch may still point at them).
class Deferred {
 public:
  virtual ~Deferred() = default;
};

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers fd for EPOLLIN|EPOLLOUT|EPOLLRDHUP edge-triggered (or only `events` if given).
  bool add(int fd, IoHandler* h, uint32_t events = 0);
  bool modify(int fd, IoHandler* h, uint32_t events);
  void remove(int fd);

  // The list for timers of this duration (created on first use, lives as long as the loop).
  TimerList& timers(int64_t duration_ms);

  // Destroys `obj` after the current dispatch batch.
  void destroyLater(std::unique_ptr<Deferred> obj) { graveyard_.push_back(std::move(obj)); }

  // Runs until stop() is called on the loop thread.
  void run();
  void stop() { running_ = false; }

  // Thread-safe: wakes the loop, which then calls the wake handler on its own thread.
  void wake();
  void setWakeHandler(std::function<void()> fn) { on_wake_ = std::move(fn); }

  // Monotonic milliseconds, refreshed once per loop iteration (cheap, coarse).
  int64_t now() const { return now_ms_; }
  void updateTime();

 private:
  int nextTimeoutMs() const;
  void runTimers();
  class WakeHandler;

  int epfd_ = -1;
  int wakefd_ = -1;
  bool running_ = false;
  int64_t now_ms_ = 0;
  std::vector<std::unique_ptr<TimerList>> lists_;
  std::vector<std::unique_ptr<Deferred>> graveyard_;
  std::function<void()> on_wake_;
  std::unique_ptr<WakeHandler> wake_handler_;
};

}  // namespace tandem
