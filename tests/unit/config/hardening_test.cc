// Config of abuse resistance (listener limits: min_rate) and least privilege (user, group).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.h"
#include "config_test_util.h"

namespace tandem::config {
namespace {

using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;
using namespace std::chrono_literals;
using namespace ::tandem::config::test_util;

TEST(MinRate, DefaultsNeverHurtANormalClient) {
  Config c = mustLoad(kMinimal);
  ASSERT_EQ(c.listeners.size(), 1u);
  // 1 KiB per 20 s: about 51 bytes/s, and only while the client is the one holding things up.
  EXPECT_EQ(c.listeners[0].limits.min_rate_bytes, 1024u);
  EXPECT_EQ(c.listeners[0].limits.min_rate_period, 20s);
}

TEST(MinRate, ParsedAndTurnedOff) {
  Config c = mustLoad(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: app
    limits: {min_rate: {bytes: 4KiB, per: 5s}}
  - name: off
    listen: 127.0.0.1:8081
    backend: app
    limits: {min_rate: {bytes: 0}}
backends:
  - name: app
    servers:
      - address: 127.0.0.1:9001
)");
  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[0].limits.min_rate_bytes, 4096u);
  EXPECT_EQ(c.listeners[0].limits.min_rate_period, 5s);
  EXPECT_EQ(c.listeners[1].limits.min_rate_bytes, 0u);
  EXPECT_EQ(c.listeners[1].limits.min_rate_period, 20s);
}

TEST(MinRate, Errors) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: app
    limits:
      min_rate: {bytes: 1KiB, per: 50ms}
backends:
  - name: app
    servers:
      - address: 127.0.0.1:9001
)"),
              ElementsAre(Err(6, "per")));
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: app
    limits:
      min_rate: {bytes: 1KB, rate: 1s}
backends:
  - name: app
    servers:
      - address: 127.0.0.1:9001
)"),
              UnorderedElementsAre(Err(6, "bytes"), Err(6, "'rate'")));
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: app
    limits:
      min_rate: 1KiB
backends:
  - name: app
    servers:
      - address: 127.0.0.1:9001
)"),
              ElementsAre(Err(6, "min_rate")));
}

TEST(MinRate, HttpOnly) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: db
    listen: 127.0.0.1:5433
    mode: tcp
    backend: app
    limits: {min_rate: {bytes: 1KiB, per: 10s}}
backends:
  - name: app
    servers:
      - address: 127.0.0.1:9001
)"),
              ElementsAre(Err(6, "min_rate")));
}

TEST(User, ParsedWhenTheAccountExists) {
  Config c = mustLoad(std::string("user: nobody\ngroup: nogroup\n") + doc(kMinimal));
  EXPECT_EQ(c.user, "nobody");
  EXPECT_EQ(c.group, "nogroup");
  Config none = mustLoad(kMinimal);
  EXPECT_EQ(none.user, "");
  EXPECT_EQ(none.group, "");
}

TEST(User, UnknownAccountsAreErrorsAtTheirLine) {
  EXPECT_THAT(errorsOf(std::string("node: {id: a}\nuser: no-such-user-xyz\n") + doc(kMinimal)),
              ElementsAre(Err(2, "unknown user 'no-such-user-xyz'")));
  EXPECT_THAT(errorsOf(std::string("user: nobody\ngroup: no-such-group-xyz\n") + doc(kMinimal)),
              ElementsAre(Err(2, "unknown group 'no-such-group-xyz'")));
  EXPECT_THAT(errorsOf(std::string("user: [a, b]\n") + doc(kMinimal)), ElementsAre(Err(1, "user")));
}

TEST(User, GroupNeedsUser) {
  EXPECT_THAT(errorsOf(std::string("node: {id: a}\ngroup: nogroup\n") + doc(kMinimal)),
              ElementsAre(Err(2, "'group' is only used with 'user'")));
}

}  // namespace
}  // namespace tandem::config
