// config_source and cluster (issue 7): etcd as the config source, leader election.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.h"
#include "config_test_util.h"

namespace tandem::config {
namespace {

using ::testing::ElementsAre;
using namespace ::tandem::config::test_util;
using namespace std::chrono_literals;

std::string with(std::string_view extra) {
  return "listeners: [{name: web, listen: 127.0.0.1:8080, backend: app}]\n"
         "backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]\n" +
         std::string(extra);
}

TEST(ConfigSource, FileByDefault) {
  const Config c = mustLoad(with(""));
  EXPECT_FALSE(c.config_source.etcd);
  EXPECT_FALSE(c.cluster.election.enabled);
}

TEST(ConfigSource, Etcd) {
  const Config c = mustLoad(with(R"(config_source:
  type: etcd
  etcd: {endpoints: ["http://127.0.0.1:2379", "http://127.0.0.1:22379"], key: /lb/config}
)"));
  EXPECT_TRUE(c.config_source.etcd);
  EXPECT_THAT(c.config_source.endpoints,
              ElementsAre("http://127.0.0.1:2379", "http://127.0.0.1:22379"));
  EXPECT_EQ(c.config_source.key, "/lb/config");
}

TEST(ConfigSource, Errors) {
  EXPECT_THAT(errorsOf(with("config_source: {type: consul}\n")),
              ElementsAre(Err(3, "'type' must be file or etcd")));
  EXPECT_THAT(errorsOf(with("config_source: {type: etcd}\n")),
              ElementsAre(Err(3, "needs etcd: {endpoints")));
  EXPECT_THAT(errorsOf(with("config_source: {type: etcd, etcd: {endpoints: [\"http://x:1\"]}}\n")),
              ElementsAre(Err(3, "must be http://host:port")));
  EXPECT_THAT(
      errorsOf(with("config_source: {type: etcd, etcd: {endpoints: [\"http://127.0.0.1:1/v3\"]}}\n")),
      ElementsAre(Err(3, "must be http://host:port")));
  EXPECT_THAT(errorsOf(with(
                  "config_source: {type: etcd, etcd: {endpoints: [\"http://127.0.0.1:1\"], key: x}}\n")),
              ElementsAre(Err(3, "'key' must start with '/'")));
}

TEST(Cluster, ElectionTakesTheSourceEndpointsByDefault) {
  const Config c = mustLoad(with(R"(cluster: {mode: standalone, election: etcd, etcd: {ttl: 3s}}
config_source: {type: file, etcd: {endpoints: ["http://127.0.0.1:2379"]}}
)"));
  EXPECT_TRUE(c.cluster.election.enabled);
  EXPECT_THAT(c.cluster.election.endpoints, ElementsAre("http://127.0.0.1:2379"));
  EXPECT_EQ(c.cluster.election.key, "/tandem/leader");
  EXPECT_EQ(c.cluster.election.ttl, 3s);
}

TEST(Cluster, Errors) {
  EXPECT_THAT(errorsOf(with("cluster: {election: etcd}\n")),
              ElementsAre(Err(3, "election etcd needs endpoints")));
  EXPECT_THAT(errorsOf(with("cluster: {election: raft}\n")),
              ElementsAre(Err(3, "'election' must be none or etcd")));
  EXPECT_THAT(errorsOf(with("cluster: {election: etcd, etcd: {endpoints: [\"http://127.0.0.1:1\"], "
                            "ttl: 1500ms}}\n")),
              ElementsAre(Err(3, "whole seconds")));
  EXPECT_THAT(errorsOf(with("cluster: {mode: active_passive}\n")),
              ElementsAre(Err(3, "'mode: active_passive' is not supported yet")));
  EXPECT_THAT(errorsOf(with("cluster: {vrrp: {vrid: 51}}\n")),
              ElementsAre(Err(3, "'vrrp' is not supported yet")));
}

TEST(Load, RelativePathsResolveAgainstTheBasePath) {
  auto c = loadString(with("access_log: {path: logs/a.log}\n"), "etcd:/tandem/config@7",
                      "/etc/tandem/boot.yaml");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->access_log.path, "/etc/tandem/logs/a.log");
}

}  // namespace
}  // namespace tandem::config
