#include "core/event_loop.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

namespace tandem {
namespace {

// Ends loop.run() when its timer fires: bounds a test's loop.
struct Stopper : TimerHandler {
  explicit Stopper(EventLoop* l) : loop(l) {}
  EventLoop* loop;
  void onTimer(int) override { loop->stop(); }
};

struct Recorder : TimerHandler {
  std::vector<int> fired;
  void onTimer(int tag) override { fired.push_back(tag); }
};

TEST(TimerList, FiresInDeadlineOrderAndHonoursCancel) {
  EventLoop loop;
  Recorder r;
  Timer a(&r, 1), b(&r, 2), c(&r, 3);
  TimerList& short_list = loop.timers(5);
  TimerList& long_list = loop.timers(40);
  EXPECT_EQ(&short_list, &loop.timers(5));  // one list per duration
  c.arm(long_list);
  a.arm(short_list);
  b.arm(short_list);
  b.cancel();
  EXPECT_FALSE(b.armed());
  EXPECT_TRUE(a.armed());
  Stopper stopper{&loop};
  Timer stop(&stopper, 9);
  stop.arm(loop.timers(80));
  loop.run();
  EXPECT_EQ(r.fired, (std::vector<int>{1, 3}));
}

TEST(TimerList, RearmMovesToTail) {
  EventLoop loop;
  Recorder r;
  Timer a(&r, 1), b(&r, 2);
  TimerList& l = loop.timers(10);
  a.arm(l);
  b.arm(l);
  a.arm(l);  // now after b
  Stopper stopper{&loop};
  Timer stop(&stopper, 9);
  stop.arm(loop.timers(50));
  loop.run();
  EXPECT_EQ(r.fired, (std::vector<int>{2, 1}));
}

TEST(EventLoop, WakeRunsHandlerOnLoopThread) {
  EventLoop loop;
  std::thread::id ran_on;
  loop.setWakeHandler([&] {
    ran_on = std::this_thread::get_id();
    loop.stop();
  });
  std::thread t([&] { loop.run(); });
  auto loop_thread = t.get_id();
  loop.wake();
  t.join();
  EXPECT_EQ(ran_on, loop_thread);
}

TEST(EventLoop, DeliversEdgeTriggeredReadiness) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  EventLoop loop;
  struct H : IoHandler {
    EventLoop* loop;
    int fd;
    std::string got;
    void onIo(uint32_t) override {
      char buf[64];
      ssize_t n;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) got.append(buf, n);
      if (got == "ping") loop->stop();
    }
  } h;
  h.loop = &loop;
  h.fd = sv[0];
  ASSERT_TRUE(loop.add(sv[0], &h));
  ASSERT_EQ(::write(sv[1], "ping", 4), 4);
  loop.run();
  EXPECT_EQ(h.got, "ping");
  ::close(sv[0]);
  ::close(sv[1]);
}

}  // namespace
}  // namespace tandem

namespace tandem {
namespace {

// Regression: a callback that arms a timer on a list of a new duration grows the list vector
// while expired timers are being run (this crashed a worker on a connect timeout).
TEST(TimerList, CallbackMayCreateNewLists) {
  EventLoop loop;
  struct Chain : TimerHandler {
    EventLoop* loop;
    Timer next{this, 2};
    std::vector<int> fired;
    void onTimer(int tag) override {
      fired.push_back(tag);
      if (tag == 1) {
        for (int d = 100; d < 140; ++d) loop->timers(d);  // force the vector to reallocate
        next.arm(loop->timers(3));
      } else {
        loop->stop();
      }
    }
  } chain;
  chain.loop = &loop;
  Timer first(&chain, 1);
  first.arm(loop.timers(2));
  loop.run();
  EXPECT_EQ(chain.fired, (std::vector<int>{1, 2}));
}

}  // namespace
}  // namespace tandem
