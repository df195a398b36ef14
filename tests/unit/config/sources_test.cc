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
  EXPECT_THAT(errorsOf(with(
                  "config_source: {type: etcd, etcd: {endpoints: [\"http://127.0.0.1:1/v3\"]}}\n")),
              ElementsAre(Err(3, "must be http://host:port")));
  EXPECT_THAT(
      errorsOf(with(
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
  EXPECT_THAT(errorsOf(with("cluster: {mode: active-active}\n")),
              ElementsAre(Err(3, "'mode' must be standalone, active_passive or active_active")));
  EXPECT_THAT(errorsOf(with("cluster: {mode: active_passive}\n")),
              ElementsAre(Err(3, "needs a 'vrrp' section")));
}

TEST(Vrrp, FullSection) {
  const Config c = mustLoad(with(R"(cluster:
  mode: active_passive
  vrrp:
    interface: veth-lb1
    vrid: 51
    priority: 150
    advert_interval: 100ms
    preempt: false
    preempt_delay: 2s
    virtual_ips: [198.18.0.100/24, 198.18.0.101]
    unicast_peers: [198.18.0.12]
    garp_count: 3
    garp_repeat: 0s
    track: {no_healthy_backends: -60, backends: [app], listener_down: -50, listeners: [web]}
)"));
  const Vrrp& v = c.cluster.vrrp;
  EXPECT_EQ(c.cluster.mode, "active_passive");
  EXPECT_EQ(v.interface, "veth-lb1");
  EXPECT_EQ(v.vrid, 51u);
  EXPECT_EQ(v.priority, 150u);
  EXPECT_EQ(v.advert_interval, 100ms);
  EXPECT_FALSE(v.preempt);
  EXPECT_EQ(v.preempt_delay, 2s);
  ASSERT_EQ(v.virtual_ips.size(), 2u);
  EXPECT_EQ(v.virtual_ips[0].address, "198.18.0.100");
  EXPECT_EQ(v.virtual_ips[0].prefix, 24);
  EXPECT_EQ(v.virtual_ips[1].prefix, 32);
  EXPECT_THAT(v.unicast_peers, ElementsAre("198.18.0.12"));
  EXPECT_EQ(v.garp_count, 3u);
  EXPECT_EQ(v.garp_repeat, 0ms);
  EXPECT_EQ(v.track_no_healthy_backends, -60);
  EXPECT_THAT(v.track_backends, ElementsAre("app"));
  EXPECT_EQ(v.track_listener_down, -50);
  EXPECT_THAT(v.track_listeners, ElementsAre("web"));
}

TEST(Vrrp, Errors) {
  auto ap = [](std::string_view vrrp) {
    return with("cluster:\n  mode: active_passive\n  vrrp: " + std::string(vrrp) + "\n");
  };
  EXPECT_THAT(errorsOf(ap("{vrid: 51, virtual_ips: [198.18.0.100]}")),
              ElementsAre(Err(5, "'vrrp' is missing 'interface'")));
  EXPECT_THAT(errorsOf(ap("{interface: e0, vrid: 0, virtual_ips: [198.18.0.100]}")),
              ElementsAre(Err(5, "'vrid' must be an integer in 1..255")));
  EXPECT_THAT(errorsOf(ap("{interface: e0, vrid: 1, advert_interval: 15ms, "
                          "virtual_ips: [198.18.0.100]}")),
              ElementsAre(Err(5, "whole centiseconds")));
  EXPECT_THAT(errorsOf(ap("{interface: e0, vrid: 1, virtual_ips: [198.18.0.100/33]}")),
              ElementsAre(Err(5, "bad prefix length")));
  EXPECT_THAT(errorsOf(ap("{interface: e0, vrid: 1, virtual_ips: [\"::1\"]}")),
              ElementsAre(Err(5, "not an IPv4 address")));
  EXPECT_THAT(errorsOf(ap("{interface: e0, vrid: 1, virtual_ips: [198.18.0.100], "
                          "track: {no_healthy_backends: 10}}")),
              ElementsAre(Err(5, "-254..0")));
  EXPECT_THAT(errorsOf(ap("{interface: e0, vrid: 1, virtual_ips: [198.18.0.100], "
                          "track: {backends: [apq]}}")),
              ElementsAre(Err(5, "vrrp.track: backend 'apq' is not defined; did you mean 'app'?")));
  EXPECT_THAT(errorsOf(ap("{interface: e0, vrid: 1, virtual_ips: [198.18.0.100], "
                          "track: {listener_down: -300}}")),
              ElementsAre(Err(5, "'listener_down' must be a priority change in -254..0")));
  EXPECT_THAT(
      errorsOf(ap("{interface: e0, vrid: 1, virtual_ips: [198.18.0.100], "
                  "track: {listeners: [wen]}}")),
      ElementsAre(Err(5, "vrrp.track: listener 'wen' is not defined; did you mean 'web'?")));
  EXPECT_THAT(errorsOf(ap("{interface: e0, vrid: 1, virtual_ips: [127.0.0.1], "
                          "track: {listeners: [web]}}")),
              ElementsAre(Err(5, "'web' is bound to a virtual IP and cannot be probed")));
  EXPECT_THAT(
      errorsOf(with("cluster: {vrrp: {interface: e0, vrid: 1, virtual_ips: [198.18.0.1]}}\n")),
      ElementsAre(Err(3, "only used with mode: active_passive")));
}

TEST(Load, RelativePathsResolveAgainstTheBasePath) {
  auto c = loadString(with("access_log: {path: logs/a.log}\n"), "etcd:/tandem/config@7",
                      "/etc/tandem/boot.yaml");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->access_log.path, "/etc/tandem/logs/a.log");
}

}  // namespace
}  // namespace tandem::config
