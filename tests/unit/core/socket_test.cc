#include "core/socket.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tandem {
namespace {

int noDelay(int fd) {
  int v = -1;
  socklen_t len = sizeof v;
  EXPECT_EQ(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len), 0);
  return v;
}

// The worker no longer sets TCP_NODELAY on each accepted connection: it relies on the accepted
// socket inheriting it from the listener.
TEST(Socket, AcceptedConnectionsInheritNoDelayFromTheListener) {
  auto addr = parseAddress("127.0.0.1", 0);
  ASSERT_TRUE(addr);
  auto l = listenOn(*addr);
  ASSERT_TRUE(l) << l.error().message;
  UniqueFd listener(*l);
  SockAddr bound;
  bound.len = sizeof bound.ss;
  ASSERT_EQ(getsockname(listener.get(), bound.get(), &bound.len), 0);
  EXPECT_NE(portOf(bound), 0);
  EXPECT_EQ(localPort(listener.get()), portOf(bound));
  EXPECT_EQ(localPort(-1), 0);

  auto c = connectNonBlocking(bound);
  ASSERT_TRUE(c) << c.error().message;
  UniqueFd client(*c);
  pollfd p{listener.get(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 5000), 1);
  UniqueFd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted);
  EXPECT_EQ(noDelay(accepted.get()), 1);
  EXPECT_EQ(noDelay(client.get()), 1);  // connectNonBlocking sets it on its own
}

}  // namespace
}  // namespace tandem
