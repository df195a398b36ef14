#include "core/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "core/log.h"

namespace tandem {

void TimerList::push(Timer* t) {
  t->list_ = this;
  t->prev_ = tail_;
  t->next_ = nullptr;
  if (tail_) {
    tail_->next_ = t;
  } else {
    head_ = t;
  }
  tail_ = t;
}

void TimerList::remove(Timer* t) {
  if (t->prev_) {
    t->prev_->next_ = t->next_;
  } else {
    head_ = t->next_;
  }
  if (t->next_) {
    t->next_->prev_ = t->prev_;
  } else {
    tail_ = t->prev_;
  }
  t->prev_ = t->next_ = nullptr;
  t->list_ = nullptr;
}

void Timer::arm(TimerList& list) {
  cancel();
  deadline_ms_ = list.loop_.now() + list.duration_ms_;
  list.push(this);
}

void Timer::cancel() {
  if (list_) list_->remove(this);
}

class EventLoop::WakeHandler final : public IoHandler {
 public:
  explicit WakeHandler(EventLoop& loop) : loop_(loop) {}
  void onIo(uint32_t) override {
    uint64_t v;
    while (::read(loop_.wakefd_, &v, sizeof v) > 0) {
    }
    if (loop_.on_wake_) loop_.on_wake_();
  }

 private:
  EventLoop& loop_;
};

EventLoop::EventLoop() {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  wakefd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || wakefd_ < 0) {
    log::error("event loop: cannot create epoll/eventfd: errno {}", errno);
    std::abort();  // cannot happen short of fd exhaustion at startup
  }
  wake_handler_ = std::make_unique<WakeHandler>(*this);
  add(wakefd_, wake_handler_.get(), EPOLLIN | EPOLLET);
  updateTime();
}

EventLoop::~EventLoop() {
  graveyard_.clear();
  ::close(wakefd_);
  ::close(epfd_);
}

bool EventLoop::add(int fd, IoHandler* h, uint32_t events) {
  epoll_event ev{};
  ev.events = events ? events : (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
  ev.data.ptr = h;
  return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
}

bool EventLoop::modify(int fd, IoHandler* h, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = h;
  return epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) == 0;
}

void EventLoop::remove(int fd) { epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }

TimerList& EventLoop::timers(int64_t duration_ms) {
  for (auto& l : lists_) {
    if (l->duration() == duration_ms) return *l;
  }
  lists_.push_back(std::make_unique<TimerList>(*this, duration_ms));
  return *lists_.back();
}

void EventLoop::wake() {
  uint64_t one = 1;
  ssize_t n = ::write(wakefd_, &one, sizeof one);
  (void)n;
}

void EventLoop::updateTime() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  now_ms_ = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

int EventLoop::nextTimeoutMs() const {
  int64_t best = -1;
  for (const auto& l : lists_) {
    if (!l->head_) continue;
    int64_t d = l->head_->deadline_ms_ - now_ms_;
    if (d < 0) d = 0;
    if (best < 0 || d < best) best = d;
  }
  // The coarse clock ticks every few ms; round up so we do not spin just before a deadline.
  if (best > 0) best += 1;
  return best > 60'000 ? 60'000 : static_cast<int>(best);
}

void EventLoop::runTimers() {
  // By index: a callback may create a list (timers()) and so grow the vector.
  for (size_t i = 0; i < lists_.size(); ++i) {
    TimerList* l = lists_[i].get();
    while (l->head_ && l->head_->deadline_ms_ <= now_ms_) {
      Timer* t = l->head_;
      l->remove(t);
      t->owner_->onTimer(t->tag_);
    }
  }
}

void EventLoop::run() {
  running_ = true;
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  while (running_) {
    int n = epoll_wait(epfd_, events, kMaxEvents, nextTimeoutMs());
    updateTime();
    if (n < 0 && errno != EINTR) {
      log::error("epoll_wait failed: errno {}", errno);
      break;
    }
    for (int i = 0; i < n; ++i) {
      static_cast<IoHandler*>(events[i].data.ptr)->onIo(events[i].events);
    }
    runTimers();
    graveyard_.clear();
  }
  graveyard_.clear();
}

}  // namespace tandem
