// Shared state (issue 6): sticky sessions, rate limits, peers and the state store.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.h"
#include "config_test_util.h"

namespace tandem::config {
namespace {

using ::testing::ElementsAre;
using namespace ::tandem::config::test_util;
using namespace std::chrono_literals;

// A backend `app` whose extra keys start on line 3.
std::string backend(std::string_view keys) {
  return "listeners: [{name: web, listen: 127.0.0.1:8080, backend: app}]\n"
         "backends:\n"
         "  - {name: app, servers: [{name: a, address: 127.0.0.1:9001}], " +
         std::string(keys) + "}\n";
}

TEST(Sticky, CookieAndTableModes) {
  const Config cookie = mustLoad(backend("sticky: {mode: cookie, cookie: LB}"));
  EXPECT_EQ(cookie.backends[0].sticky.mode, StickyMode::kCookie);
  EXPECT_EQ(cookie.backends[0].sticky.cookie, "LB");
  const Config table = mustLoad(backend("sticky: {mode: table, key: header:X-User, ttl: 10m}"));
  const Sticky& t = table.backends[0].sticky;
  EXPECT_EQ(t.mode, StickyMode::kTable);
  EXPECT_EQ(t.key.kind, HashKeyKind::kHeader);
  EXPECT_EQ(t.key.name, "X-User");
  EXPECT_EQ(t.ttl, 600s);
  EXPECT_EQ(mustLoad(backend("")).backends[0].sticky.mode, StickyMode::kNone);
  EXPECT_EQ(mustLoad(backend("sticky: {mode: table}")).backends[0].sticky.key.kind,
            HashKeyKind::kSourceIp);
}

TEST(Sticky, Errors) {
  EXPECT_THAT(errorsOf(backend("sticky: {mode: session}")),
              ElementsAre(Err(3, "sticky 'mode' must be cookie or table")));
  EXPECT_THAT(errorsOf(backend("sticky: {cookie: X}")), ElementsAre(Err(3, "needs 'mode'")));
  EXPECT_THAT(errorsOf(backend("sticky: {mode: table, key: uri}")),
              ElementsAre(Err(3, "sticky 'key' must be source_ip, header:NAME or cookie:NAME")));
  EXPECT_THAT(errorsOf(backend("sticky: {mode: cookie, key: source_ip}")),
              ElementsAre(Err(3, "'key' and 'ttl' are for mode: table")));
  EXPECT_THAT(errorsOf(backend("sticky: {mode: table, cookie: X}")),
              ElementsAre(Err(3, "'cookie' is for mode: cookie")));
  EXPECT_THAT(errorsOf(backend("sticky: {mode: cookie, cookie: \"a;b\"}")),
              ElementsAre(Err(3, "'cookie' must be a cookie name")));
  EXPECT_THAT(errorsOf(backend("sticky: {mode: table, ttl: 10ms}")), ElementsAre(Err(3, "'ttl'")));
}

TEST(RateLimit, RatesAndKeys) {
  const RateLimit r = mustLoad(backend("rate_limit: {key: header:X-Key, rate: 6000/m, burst: 50}"))
                          .backends[0]
                          .rate_limit;
  EXPECT_TRUE(r.enabled);
  EXPECT_EQ(r.key.kind, HashKeyKind::kHeader);
  EXPECT_DOUBLE_EQ(r.rate, 100);
  EXPECT_EQ(r.burst, 50u);
  const RateLimit d = mustLoad(backend("rate_limit: {rate: 7.5/s}")).backends[0].rate_limit;
  EXPECT_EQ(d.key.kind, HashKeyKind::kSourceIp);
  EXPECT_DOUBLE_EQ(d.rate, 7.5);
  EXPECT_EQ(d.burst, 0u);
  EXPECT_FALSE(mustLoad(backend("")).backends[0].rate_limit.enabled);
}

TEST(RateLimit, Errors) {
  for (const char* bad : {"100", "100/d", "0/s", "-1/s", "x/s", "100/", "1e12/s"}) {
    EXPECT_THAT(errorsOf(backend("rate_limit: {rate: \"" + std::string(bad) + "\"}")),
                ElementsAre(Err(3, "'rate' must be a count per s, m or h")))
        << bad;
  }
  EXPECT_THAT(errorsOf(backend("rate_limit: {burst: 5}")), ElementsAre(Err(3, "needs 'rate'")));
  EXPECT_THAT(errorsOf(backend("rate_limit: {rate: 1/s, key: cookie:sid}")),
              ElementsAre(Err(3, "rate_limit 'key' must be source_ip or header:NAME")));
  EXPECT_THAT(errorsOf(backend("rate_limit: {rate: 1/s, burst: 0}")),
              ElementsAre(Err(3, "'burst'")));
}

TEST(Cluster, PeersSecretAndPeerHealth) {
  TempDir dir;
  dir.write("cluster.secret", "0123456789abcdef0123\n");
  auto c = loadString(doc(with(R"(cluster:
  mode: active_active
  listen: 127.0.0.1:7946
  peers: [{id: lb1, address: 127.0.0.1:7946}, {id: lb2, address: "[::1]:7947"}]
  secret_file: cluster.secret
  peer_health: act
)")),
                      dir.path() + "/t.yaml");
  ASSERT_TRUE(c) << c.error()[0].text();
  EXPECT_EQ(c->cluster.mode, "active_active");
  EXPECT_EQ(c->cluster.listen.text(), "127.0.0.1:7946");
  ASSERT_EQ(c->cluster.peers.size(), 2u);
  EXPECT_EQ(c->cluster.peers[1].id, "lb2");
  EXPECT_EQ(c->cluster.peers[1].address.text(), "[::1]:7947");
  EXPECT_EQ(c->cluster.secret, "0123456789abcdef0123");  // trimmed
  EXPECT_EQ(c->cluster.secret_file, dir.path() + "/cluster.secret");
  EXPECT_TRUE(c->cluster.act_on_peer_health);
  EXPECT_FALSE(mustLoad(with("")).cluster.act_on_peer_health);
}

TEST(Cluster, PeerErrors) {
  TempDir dir;
  dir.write("short.secret", "tooshort");
  auto errors = [&](std::string_view cluster) {
    auto c = loadString(doc(with(cluster)), dir.path() + "/t.yaml");
    return c ? std::vector<ConfigError>{} : c.error();
  };
  auto Err = [](int line, std::string reason) {
    return ::testing::AllOf(
        ::testing::Field("line", &ConfigError::line, line),
        ::testing::Field("reason", &ConfigError::reason, ::testing::HasSubstr(reason)));
  };
  EXPECT_THAT(errors("cluster: {listen: 127.0.0.1:7946, peers: [{id: a, address: 127.0.0.1:1}]}\n"),
              ElementsAre(Err(3, "'peers' need 'secret_file'")));
  EXPECT_THAT(errors("cluster: {listen: 127.0.0.1:7946, secret_file: short.secret}\n"),
              ElementsAre(Err(3, "the secret must be 16..4096 visible ASCII characters")));
  EXPECT_THAT(errors("cluster: {listen: 127.0.0.1:7946, secret_file: missing.secret}\n"),
              ElementsAre(Err(3, "cannot open")));
  EXPECT_THAT(errors("cluster: {listen: 127.0.0.1:7946, peers: [{id: a}]}\n"),
              ElementsAre(Err(3, "a peer needs 'id' and 'address'")));
  EXPECT_THAT(errors("cluster:\n  listen: 127.0.0.1:1\n  peers:\n"
                     "    - {id: a, address: 127.0.0.1:1}\n    - {id: a, address: 127.0.0.1:2}\n"),
              ElementsAre(Err(5, "'peers' need 'secret_file'"), Err(7, "duplicate peer id 'a'")));
  EXPECT_THAT(errors("cluster: {peer_health: maybe}\n"),
              ElementsAre(Err(3, "'peer_health' must be act or observe")));
}

TEST(StateStore, MemoryByDefaultOrRedis) {
  EXPECT_FALSE(mustLoad(with("")).state.redis);
  const Config c =
      mustLoad(with("state: {store: redis, redis: {address: 127.0.0.1:6380, prefix: \"lb:\"}}\n"));
  EXPECT_TRUE(c.state.redis);
  EXPECT_EQ(c.state.redis_address.text(), "127.0.0.1:6380");
  EXPECT_EQ(c.state.redis_prefix, "lb:");
  EXPECT_EQ(mustLoad(with("state: {store: redis}\n")).state.redis_address.text(), "127.0.0.1:6379");
  EXPECT_THAT(errorsOf(with("state: {store: memory, redis: {address: 127.0.0.1:1}}\n")),
              ElementsAre(Err(3, "'redis' is only used with store: redis")));
  EXPECT_THAT(errorsOf(with("state: {store: redis, redis: {prefix: \"a b\"}}\n")),
              ElementsAre(Err(3, "'prefix' must be up to 64 visible ASCII characters")));
}

}  // namespace
}  // namespace tandem::config
