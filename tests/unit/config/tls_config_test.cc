// Listener `tls`: both shapes, relative paths, and certificate problems as FILE:LINE errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "../core/tls_test_util.h"
#include "config/config.h"
#include "config_test_util.h"
#include "core/tls.h"

namespace tandem::config {
namespace {

using test_util::doc;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using tls::test_util::KeyPair;
using tls::test_util::makeCert;
using tls::test_util::TempDir;

// Certificate files next to the config (as `tls/NAME.pem`); the config is loaded from that folder
// so that relative paths are exercised.
class TlsConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    makeCert(a_, "a", {"a.example.test"});
    makeCert(b_, "b", {"*.b.test"});
    sub_ = dir_.file("tls");
    ASSERT_EQ(::mkdir(sub_.c_str(), 0700), 0);
    dir_.write("tls/a.pem", a_.certPem());
    dir_.write("tls/a.key", a_.keyPem());
    dir_.write("tls/b.pem", b_.certPem());
    dir_.write("tls/b.key", b_.keyPem());
    dir_.write("tls/garbage", "garbage\n");
  }
  std::string path() const { return dir_.path() + "/t.yaml"; }
  tl::expected<Config, std::vector<ConfigError>> load(std::string_view text) {
    return loadString(doc(text), path());
  }
  std::vector<ConfigError> errors(std::string_view text) {
    auto r = load(text);
    return r ? std::vector<ConfigError>{} : r.error();
  }

  TempDir dir_;
  std::string sub_;
  KeyPair a_, b_;
};

auto Err(int line, std::string reason) {
  return ::testing::AllOf(
      ::testing::Field("line", &ConfigError::line, line),
      ::testing::Field("reason", &ConfigError::reason, ::testing::HasSubstr(reason)));
}

TEST_F(TlsConfig, OneCertificateWithRelativePaths) {
  auto c = load(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8443, backend: app, tls: {cert: tls/a.pem, key: tls/a.key}}
  - {name: plain, listen: 127.0.0.1:8080, backend: app}
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)");
  ASSERT_TRUE(c) << c.error()[0].text();
  const ListenerTls& t = c->listeners[0].tls;
  ASSERT_EQ(t.certificates.size(), 1u);
  EXPECT_EQ(t.certificates[0].cert_file, dir_.path() + "/tls/a.pem");
  EXPECT_EQ(t.certificates[0].key_file, dir_.path() + "/tls/a.key");
  ASSERT_TRUE(t.context);
  EXPECT_EQ(t.context->names(0), (std::vector<std::string>{"a.example.test"}));
  EXPECT_FALSE(c->listeners[1].tls.context);
  EXPECT_TRUE(c->listeners[1].tls.certificates.empty());
}

TEST_F(TlsConfig, SeveralCertificatesChosenBySniAndTcpListeners) {
  auto c = load(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8443
    backend: app
    tls:
      certificates:
        - {cert: tls/a.pem, key: tls/a.key}
        - cert: tls/b.pem
          key: tls/b.key
  - name: db
    listen: 127.0.0.1:5433
    mode: tcp
    backend: app
    limits: {header_timeout: 2s}      # bounds the TLS handshake on a TCP listener
    tls: {cert: tls/b.pem, key: tls/b.key}
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)");
  ASSERT_TRUE(c) << c.error()[0].text();
  const tls::ServerContext& ctx = *c->listeners[0].tls.context;
  ASSERT_EQ(ctx.size(), 2u);
  EXPECT_EQ(ctx.select("x.b.test"), 1u);
  EXPECT_EQ(ctx.select("a.example.test"), 0u);
  EXPECT_EQ(ctx.select("other"), 0u);
  EXPECT_EQ(c->listeners[1].limits.header_timeout, Duration{2000});
  EXPECT_TRUE(c->listeners[1].tls.context);
}

TEST_F(TlsConfig, HeaderTimeoutOnAPlainTcpListenerIsStillAnError) {
  EXPECT_THAT(errors(R"(
listeners:
  - {name: db, listen: 127.0.0.1:5433, mode: tcp, backend: app, limits: {header_timeout: 2s}}
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)"),
              ElementsAre(Err(2, "'header_timeout' applies only to http listeners")));
}

TEST_F(TlsConfig, FileProblemsPointAtTheirLine) {
  EXPECT_THAT(errors(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8443
    backend: app
    tls:
      certificates:
        - {cert: tls/a.pem, key: tls/a.key}
        - cert: tls/missing.pem       # L8
          key: tls/b.key
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)"),
              ElementsAre(Err(8, "'cert': cannot open " + dir_.path() + "/tls/missing.pem")));
  EXPECT_THAT(errors(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8443
    backend: app
    tls:
      cert: tls/a.pem
      key: tls/b.key                  # L7
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)"),
              ElementsAre(Err(7, "'key': " + dir_.path() +
                                     "/tls/b.key: the key does not match the certificate")));
  EXPECT_THAT(errors(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8443, backend: app, tls: {cert: tls/garbage, key: tls/a.key}}
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)"),
              ElementsAre(Err(2, "no PEM certificate")));
  EXPECT_THAT(errors(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8443, backend: app, tls: {cert: tls/a.pem, key: tls/garbage}}
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)"),
              ElementsAre(Err(2, "no PEM private key")));
}

TEST_F(TlsConfig, ShapeErrors) {
  EXPECT_THAT(errors(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8443
    backend: app
    tls:                              # L5
      key: tls/a.key
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)"),
              ElementsAre(Err(5, "'tls' is missing 'cert'")));
  EXPECT_THAT(errors(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8443
    backend: app
    tls:
      cert: tls/a.pem                 # L6
      key: tls/a.key
      certificates:
        - {cert: tls/b.pem}           # L9
        - tls/b.pem                   # L10
      ciphers: x                      # L11
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)"),
              ElementsAre(Err(6, "'tls' has 'certificates' and also 'cert'/'key'"),
                          Err(9, "a tls certificate is missing 'key'"),
                          Err(10, "a tls certificate must be a map"),
                          Err(11, "unknown key 'ciphers' in tls")));
  EXPECT_THAT(
      errors(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8443, backend: app, tls: {certificates: []}}
  - {name: web2, listen: 127.0.0.1:8444, backend: app, tls: on}
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)"),
      ElementsAre(Err(2, "'certificates' must not be empty"), Err(3, "'tls' must be a map")));
}

TEST_F(TlsConfig, AReloadBuildsNewContexts) {
  const char* text = R"(
listeners:
  - {name: web, listen: 127.0.0.1:8443, backend: app, tls: {cert: tls/a.pem, key: tls/a.key}}
backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]
)";
  auto first = load(text);
  auto second = load(text);
  ASSERT_TRUE(first && second);
  // One context per load (config generation): connections keep theirs across a reload.
  EXPECT_NE(first->listeners[0].tls.context, second->listeners[0].tls.context);
}

}  // namespace
}  // namespace tandem::config
