#include "ha/listener_probe.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "../support/listening_socket.h"

namespace tandem::ha {
namespace {

using namespace std::chrono_literals;

using tandem::testing::ListeningSocket;

TEST(ListenerProbe, ConnectsToWildcardThroughLoopbackAndSeesRefusal) {
  ListeningSocket l;
  EXPECT_EQ(ListenerProbe::probeOnce({"web", "0.0.0.0", l.port}, 500ms), "");
  EXPECT_EQ(ListenerProbe::probeOnce({"web", "127.0.0.1", l.port}, 500ms), "");
  l.close();
  EXPECT_EQ(ListenerProbe::probeOnce({"web", "127.0.0.1", l.port}, 500ms),
            "connect: Connection refused");
}

TEST(ListenerProbe, ReportsDownAfterFallFailuresAndUpAfterOneSuccess) {
  ListeningSocket l;
  std::atomic<bool> listening{true};
  std::mutex mu;
  std::vector<std::pair<bool, std::string>> changes;
  const uint16_t port = l.port;
  ListenerProbe probe(
      [&] {
        return std::vector<ProbeTarget>{{"web", "127.0.0.1", port}};
      },
      10ms, 200ms, 2,
      [&](bool down, const std::string& detail) {
        std::lock_guard lock(mu);
        changes.emplace_back(down, detail);
      });
  auto count = [&] {
    std::lock_guard lock(mu);
    return changes.size();
  };
  auto waitFor = [&](size_t n) {
    for (int i = 0; i < 500 && count() < n; ++i) std::this_thread::sleep_for(5ms);
    return count();
  };
  probe.start();
  std::this_thread::sleep_for(100ms);  // ~10 rounds against a live listener: no change
  EXPECT_EQ(count(), 0u);
  l.close();
  ASSERT_EQ(waitFor(1), 1u);
  {
    std::lock_guard lock(mu);
    EXPECT_TRUE(changes[0].first);
    EXPECT_EQ(changes[0].second, "listener web: connect: Connection refused");
  }
  // The same port listens again: up after one good round.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  ASSERT_EQ(waitFor(2), 2u);
  probe.stop();
  ::close(fd);
  std::lock_guard lock(mu);
  EXPECT_FALSE(changes[1].first);
}

}  // namespace
}  // namespace tandem::ha
