// The monitoring sections (issue 4): admin, alerts, access_log, and parseHttpUrl.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/config.h"
#include "config_test_util.h"

namespace tandem::config {
namespace {

using ::testing::ElementsAre;
using namespace ::tandem::config::test_util;
using namespace std::chrono_literals;

constexpr std::string_view kBase = R"(
listeners: [{name: web, listen: 127.0.0.1:8080, backend: app}]
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)";

TEST(Admin, DefaultsToLoopback9900WithoutToken) {
  const Config c = mustLoad(kBase);
  EXPECT_TRUE(c.admin.enabled);
  EXPECT_EQ(c.admin.listen.text(), "127.0.0.1:9900");
  EXPECT_TRUE(c.admin.token.empty());
}

TEST(Admin, ReadsTheTokenFileRelativeToTheConfig) {
  TempDir dir;
  dir.write("admin.token", "0123456789abcdef-token\n");
  std::string yaml = with("admin: {listen: 0.0.0.0:9911, token_file: admin.token}\n");
  auto c = loadString(doc(yaml), dir.path() + "/t.yaml");
  ASSERT_TRUE(c) << c.error()[0].text();
  EXPECT_EQ(c->admin.token, "0123456789abcdef-token");
  EXPECT_EQ(c->admin.token_file, dir.path() + "/admin.token");
  EXPECT_EQ(c->admin.listen.port, 9911);
}

TEST(Admin, NonLoopbackWithoutTokenIsRefused) {
  EXPECT_THAT(errorsOf(with("admin: {listen: 0.0.0.0:9900}\n")),
              ElementsAre(Err(3, "not a loopback address: set 'token_file'")));
  EXPECT_THAT(errorsOf(with("admin:\n  enabled: false\n  listen: 0.0.0.0:9900\n")), ElementsAre());
}

TEST(Admin, BadTokenFiles) {
  TempDir dir;
  dir.write("short", "abc\n");
  dir.write("ctl", std::string("0123456789abcdef\x01zz"));
  auto errs = [&](const std::string& file) {
    auto c = loadString(doc(with("admin: {token_file: " + file + "}\n")), dir.path() + "/t.yaml");
    std::vector<ConfigError> out = c ? std::vector<ConfigError>{} : c.error();
    for (ConfigError& e : out) e.file = "t.yaml";  // the matcher compares the file name too
    return out;
  };
  EXPECT_THAT(errs("short"), ElementsAre(Err(3, "16..1024")));
  EXPECT_THAT(errs("ctl"), ElementsAre(Err(3, "visible ASCII")));
  EXPECT_THAT(errs("absent"), ElementsAre(Err(3, "cannot open")));
}

TEST(Admin, ConflictWithAListener) {
  EXPECT_THAT(errorsOf(with("admin: {listen: 127.0.0.1:8080}\n")),
              ElementsAre(Err(1, "conflicts with the admin server on 127.0.0.1:8080")));
}

TEST(Alerts, FullSection) {
  const Config c = mustLoad(with(R"(alerts:
  webhooks:
    - {url: "http://127.0.0.1:9999/hook", timeout: 2s, max_attempts: 3}
    - {url: "http://localhost"}
  rules:
    server_down: false
    error_rate: {above: 5%, for: 30s, min_requests: 50}
    p99_latency: {above: 500ms, for: 1m}
)"));
  ASSERT_EQ(c.alerts.webhooks.size(), 2u);
  EXPECT_EQ(c.alerts.webhooks[0].address.text(), "127.0.0.1:9999");
  EXPECT_EQ(c.alerts.webhooks[0].path, "/hook");
  EXPECT_EQ(c.alerts.webhooks[0].timeout, 2s);
  EXPECT_EQ(c.alerts.webhooks[0].max_attempts, 3u);
  EXPECT_EQ(c.alerts.webhooks[1].address.text(), "127.0.0.1:80");
  EXPECT_EQ(c.alerts.webhooks[1].path, "/");
  EXPECT_FALSE(c.alerts.rules.server_down);
  EXPECT_TRUE(c.alerts.rules.backend_down);
  EXPECT_TRUE(c.alerts.rules.error_rate.enabled);
  EXPECT_DOUBLE_EQ(c.alerts.rules.error_rate.above, 0.05);
  EXPECT_EQ(c.alerts.rules.error_rate.window, 30s);
  EXPECT_EQ(c.alerts.rules.error_rate.min_requests, 50u);
  EXPECT_DOUBLE_EQ(c.alerts.rules.p99_latency.above, 500);
  EXPECT_EQ(c.alerts.rules.p99_latency.window, 60s);
}

TEST(Alerts, Errors) {
  EXPECT_THAT(errorsOf(with("alerts: {webhooks: [{url: \"https://x:1/\"}]}\n")),
              ElementsAre(Err(3, "https is not supported")));
  EXPECT_THAT(errorsOf(with("alerts: {webhooks: [{url: \"http://example.com/\"}]}\n")),
              ElementsAre(Err(3, "not an IPv4 address")));
  EXPECT_THAT(errorsOf(with("alerts: {webhooks: [{timeout: 1s}]}\n")),
              ElementsAre(Err(3, "webhook is missing 'url'")));
  EXPECT_THAT(errorsOf(with("alerts: {rules: {error_rate: {above: 5}}}\n")),
              ElementsAre(Err(3, "percentage")));
  EXPECT_THAT(errorsOf(with("alerts: {rules: {error_rate: {for: 5s}}}\n")),
              ElementsAre(Err(3, "'error_rate' is missing 'above'")));
  EXPECT_THAT(errorsOf(with("alerts: {rules: {p99_latency: {above: 5%}}}\n")),
              ElementsAre(Err(3, "invalid duration")));
  EXPECT_THAT(errorsOf(with("alerts: {rules: {cpu: {above: 5%}}}\n")),
              ElementsAre(Err(3, "unknown key 'cpu'")));
}

TEST(AccessLog, PathsAndErrors) {
  auto c = loadString(doc(with("access_log: {path: logs/access.log, buffer: 256KiB}\n")),
                      "/etc/tandem/t.yaml");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->access_log.enabled);
  EXPECT_EQ(c->access_log.path, "/etc/tandem/logs/access.log");
  EXPECT_EQ(c->access_log.buffer_bytes, 256u * 1024);
  EXPECT_EQ(mustLoad(with("access_log: {path: stderr}\n")).access_log.path, "stderr");
  EXPECT_FALSE(mustLoad(kBase).access_log.enabled);
  EXPECT_THAT(errorsOf(with("access_log: {buffer: 1MiB}\n")),
              ElementsAre(Err(3, "'access_log' is missing 'path'")));
  EXPECT_THAT(errorsOf(with("access_log: {path: a.log, buffer: 1KiB}\n")),
              ElementsAre(Err(3, "'buffer' must be in")));
}

TEST(HttpUrl, Parses) {
  auto u = parseHttpUrl("http://127.0.0.1:2379/v3/kv/range");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->address.text(), "127.0.0.1:2379");
  EXPECT_EQ(u->path, "/v3/kv/range");
  EXPECT_EQ(parseHttpUrl("http://[::1]:8080")->address.text(), "[::1]:8080");
  EXPECT_EQ(parseHttpUrl("http://[::1]")->address.port, 80);
  EXPECT_FALSE(parseHttpUrl("ftp://x"));
  EXPECT_FALSE(parseHttpUrl("http://"));
  EXPECT_FALSE(parseHttpUrl("http://u:p@127.0.0.1/"));
  EXPECT_FALSE(parseHttpUrl("http://127.0.0.1:0/"));
  EXPECT_FALSE(parseHttpUrl("http://127.0.0.1/a b"));
  EXPECT_FALSE(parseHttpUrl("http://127.0.0.1/a#frag"));
}

}  // namespace
}  // namespace tandem::config
