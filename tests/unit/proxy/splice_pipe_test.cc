#include "proxy/splice_pipe.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace tandem::proxy {
namespace {

TEST(PipePool, CapsLivePipesAndReusesEmptyOnes) {
  PipePool pool(2);
  Pipe a = pool.acquire();
  Pipe b = pool.acquire();
  ASSERT_GE(a.r, 0);
  ASSERT_GE(b.r, 0);
  EXPECT_LT(pool.acquire().r, 0);  // cap reached: the caller falls back to copying
  pool.release(a, true);
  Pipe c = pool.acquire();
  EXPECT_EQ(c.r, a.r);  // an empty pipe is reused
  pool.release(c, false);  // a pipe with bytes left is closed, freeing its slot
  EXPECT_GE(pool.acquire().r, 0);
  pool.release(b, true);
}

TEST(SpliceLane, MovesBytesBetweenSocketsAndReportsEof) {
  int src[2], dst[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, src), 0);
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, dst), 0);
  PipePool pool(4);
  SpliceLane lane;
  lane.attach(pool.acquire());
  ASSERT_TRUE(lane.active());
  const std::string payload(100000, 'x');
  size_t sent = 0, got = 0;
  char buf[65536];
  bool readable = true, writable = true;
  while (got < payload.size()) {
    if (sent < payload.size()) {
      ssize_t n = ::write(src[1], payload.data() + sent, payload.size() - sent);
      if (n > 0) sent += static_cast<size_t>(n);
    }
    readable = true;
    if (lane.empty()) {
      ASSERT_NE(lane.fill(src[0], readable), -2);
    }
    writable = true;
    if (!lane.empty()) {
      ASSERT_NE(lane.drain(dst[0], writable), -2);
    }
    ssize_t n;
    while ((n = ::read(dst[1], buf, sizeof buf)) > 0) got += static_cast<size_t>(n);
  }
  EXPECT_EQ(got, payload.size());
  ::shutdown(src[1], SHUT_WR);
  readable = true;
  EXPECT_EQ(lane.fill(src[0], readable), 0);  // EOF
  pool.release(lane.detach(), true);
  for (int fd : {src[0], src[1], dst[0], dst[1]}) ::close(fd);
}

}  // namespace
}  // namespace tandem::proxy
