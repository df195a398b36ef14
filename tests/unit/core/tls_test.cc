#include "core/tls.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tls_test_util.h"

namespace tandem::tls {
namespace {

using test_util::KeyPair;
using test_util::makeCert;
using test_util::TempDir;

TEST(NormalizeHostName, LowercasesAndDropsTheTrailingDot) {
  EXPECT_EQ(normalizeHostName("WWW.Example.TEST."), "www.example.test");
  EXPECT_EQ(normalizeHostName("a.b"), "a.b");
  EXPECT_EQ(normalizeHostName(""), "");
}

TEST(SniTable, ExactNamesAndOneLabelWildcards) {
  SniTable t;
  t.add({"a.example.test", "*.wild.test"}, 0);
  t.add({"B.Example.Test"}, 1);
  EXPECT_EQ(t.find("a.example.test"), 0);
  EXPECT_EQ(t.find("b.example.test"), 1);
  EXPECT_EQ(t.find("B.EXAMPLE.TEST."), 1);  // case and a trailing dot do not matter
  EXPECT_EQ(t.find("x.wild.test"), 0);
  EXPECT_EQ(t.find("X.Wild.Test"), 0);
  EXPECT_EQ(t.find("wild.test"), -1);      // the wildcard needs one more label
  EXPECT_EQ(t.find("a.b.wild.test"), -1);  // ... and exactly one
  EXPECT_EQ(t.find(".wild.test"), -1);
  EXPECT_EQ(t.find("c.example.test"), -1);
  EXPECT_EQ(t.find(""), -1);
}

TEST(SniTable, ExactBeatsWildcardAndTheFirstCertificateWins) {
  SniTable t;
  t.add({"*.example.test"}, 0);
  t.add({"api.example.test", "dup.test"}, 1);
  t.add({"dup.test", "*.example.test"}, 2);
  EXPECT_EQ(t.find("api.example.test"), 1);  // exact, although an earlier wildcard matches
  EXPECT_EQ(t.find("www.example.test"), 0);  // the first wildcard
  EXPECT_EQ(t.find("dup.test"), 1);
}

TEST(SniTable, IgnoresPartialAndBareWildcards) {
  SniTable t;
  t.add({"f*o.example.test", "*", "*.", "a.*.test"}, 0);
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.find("foo.example.test"), -1);
  EXPECT_EQ(t.find("x"), -1);
}

// A CA, a leaf for a.example.test, a wildcard leaf, a leaf with only a CN, all as files.
class TlsFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    makeCert(ca_, "Tandem Test CA", {}, nullptr, true);
    makeCert(a_, "a", {"a.example.test", "alt.example.test"}, &ca_);
    makeCert(w_, "w", {"*.wild.test"}, &ca_);
    makeCert(cn_, "cn-only.test", {}, &ca_);
    a_cert_ = dir_.write("a.pem", a_.certPem() + ca_.certPem());  // leaf + chain
    a_key_ = dir_.write("a.key", a_.keyPem());
    w_cert_ = dir_.write("w.pem", w_.certPem());
    w_key_ = dir_.write("w.key", w_.keyPem());
    cn_cert_ = dir_.write("cn.pem", cn_.certPem());
    cn_key_ = dir_.write("cn.key", cn_.keyPem());
  }

  TempDir dir_;
  KeyPair ca_, a_, w_, cn_;
  std::string a_cert_, a_key_, w_cert_, w_key_, cn_cert_, cn_key_;
};

TEST_F(TlsFiles, LoadsCertificatesAndTheirNames) {
  auto ctx = ServerContext::load({{a_cert_, a_key_}, {w_cert_, w_key_}, {cn_cert_, cn_key_}}, {});
  ASSERT_TRUE(ctx) << ctx.error().reason;
  const ServerContext& c = **ctx;
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c.names(0), (std::vector<std::string>{"a.example.test", "alt.example.test"}));
  EXPECT_EQ(c.names(1), (std::vector<std::string>{"*.wild.test"}));
  EXPECT_EQ(c.names(2), (std::vector<std::string>{"cn-only.test"}));  // CN without SANs
  EXPECT_EQ(c.select("alt.example.test"), 0u);
  EXPECT_EQ(c.select("x.wild.test"), 1u);
  EXPECT_EQ(c.select("CN-ONLY.test"), 2u);
  EXPECT_EQ(c.select("unknown.test"), 0u);  // the first is the default
  EXPECT_EQ(c.select(""), 0u);
}

TEST_F(TlsFiles, OneCertificateIsServedForAnyName) {
  auto ctx = ServerContext::load({{w_cert_, w_key_}}, {});
  ASSERT_TRUE(ctx);
  EXPECT_EQ((*ctx)->select("other.test"), 0u);
}

TEST_F(TlsFiles, ReportsWhichFileIsWrong) {
  auto missing = ServerContext::load({{a_cert_, a_key_}, {dir_.path() + "/nope.pem", w_key_}}, {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().index, 1u);
  EXPECT_FALSE(missing.error().key);
  EXPECT_NE(missing.error().reason.find("cannot open"), std::string::npos);

  auto mismatch = ServerContext::load({{a_cert_, w_key_}}, {});
  ASSERT_FALSE(mismatch);
  EXPECT_TRUE(mismatch.error().key);
  EXPECT_NE(mismatch.error().reason.find("does not match"), std::string::npos);

  const std::string garbage = dir_.write("garbage.pem", "not a certificate\n");
  auto bad_cert = ServerContext::load({{garbage, a_key_}}, {});
  ASSERT_FALSE(bad_cert);
  EXPECT_FALSE(bad_cert.error().key);
  EXPECT_NE(bad_cert.error().reason.find("no PEM certificate"), std::string::npos);

  auto bad_key = ServerContext::load({{a_cert_, garbage}}, {});
  ASSERT_FALSE(bad_key);
  EXPECT_TRUE(bad_key.error().key);
  EXPECT_NE(bad_key.error().reason.find("no PEM private key"), std::string::npos);

  const std::string encrypted = dir_.write("enc.key", a_.encryptedKeyPem());
  auto enc = ServerContext::load({{a_cert_, encrypted}}, {});
  ASSERT_FALSE(enc);
  EXPECT_TRUE(enc.error().key);
  EXPECT_NE(enc.error().reason.find("encrypted"), std::string::npos);

  auto folder = ServerContext::load({{dir_.path(), a_key_}}, {});
  ASSERT_FALSE(folder);
  EXPECT_NE(folder.error().reason.find("not a regular file"), std::string::npos);
}

// A server Conn and an OpenSSL client over a non-blocking socketpair, stepped in turn.
class TlsConn : public TlsFiles {
 protected:
  void SetUp() override {
    TlsFiles::SetUp();
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    server_fd_ = sv[0];
    client_fd_ = sv[1];
    client_ctx_ = SSL_CTX_new(TLS_client_method());
  }
  void TearDown() override {
    server_.reset();
    if (client_) SSL_free(client_);
    SSL_CTX_free(client_ctx_);
    ::close(server_fd_);
    ::close(client_fd_);
  }

  // Returns the server's verdict; the client's own result is left in client_done_.
  Conn::Handshake connect(const char* sni, const std::vector<unsigned char>& alpn,
                          std::vector<CertificateFiles> certs = {}) {
    if (certs.empty()) certs = {{a_cert_, a_key_}, {w_cert_, w_key_}};
    auto ctx = ServerContext::load(certs, {});
    EXPECT_TRUE(ctx);
    server_ = Conn::make(*ctx, server_fd_, pool_);
    client_ = SSL_new(client_ctx_);
    SSL_set_fd(client_, client_fd_);
    if (sni) SSL_set_tlsext_host_name(client_, sni);
    if (!alpn.empty())
      SSL_set_alpn_protos(client_, alpn.data(), static_cast<unsigned>(alpn.size()));
    SSL_set_connect_state(client_);
    Conn::Handshake verdict = Conn::Handshake::kWait;
    for (int i = 0; i < 50 && verdict == Conn::Handshake::kWait; ++i) {
      if (!client_done_) client_done_ = SSL_do_handshake(client_) == 1;
      readable_ = writable_ = true;
      verdict = server_->handshake(readable_, writable_);
    }
    for (int i = 0; i < 5 && !client_done_; ++i) client_done_ = SSL_do_handshake(client_) == 1;
    ERR_clear_error();
    return verdict;
  }

  std::string servedCommonName() {
    X509* peer = SSL_get1_peer_certificate(client_);
    if (!peer) return "";
    char cn[256] = {};
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    X509_free(peer);
    return cn;
  }

  BufferPool pool_;
  int server_fd_ = -1, client_fd_ = -1;
  SSL_CTX* client_ctx_ = nullptr;
  SSL* client_ = nullptr;
  std::unique_ptr<Conn> server_;
  bool client_done_ = false;
  bool readable_ = true, writable_ = true;
};

const std::vector<unsigned char> kH2AndHttp11 = {2,   'h', '2', 8,   'h', 't',
                                                 't', 'p', '/', '1', '.', '1'};
const std::vector<unsigned char> kH2Only = {2, 'h', '2'};

TEST_F(TlsConn, HandshakeSelectsHttp11AndTheCertificateBySni) {
  ASSERT_EQ(connect("x.wild.test", kH2AndHttp11), Conn::Handshake::kDone);
  EXPECT_TRUE(client_done_);
  EXPECT_EQ(server_->alpn(), "http/1.1");
  EXPECT_EQ(server_->version(), "TLSv1.3");
  EXPECT_EQ(servedCommonName(), "w");
  EXPECT_TRUE(server_->receivedAny());
}

TEST_F(TlsConn, DefaultCertificateWithoutSniOrForAnUnknownName) {
  ASSERT_EQ(connect(nullptr, {}), Conn::Handshake::kDone);
  EXPECT_EQ(servedCommonName(), "a");
  EXPECT_EQ(server_->alpn(), "");  // no ALPN offered: none selected (HTTP/1.1 by default)
}

TEST_F(TlsConn, UnknownNameGetsTheDefault) {
  ASSERT_EQ(connect("nobody.test", {}), Conn::Handshake::kDone);
  EXPECT_EQ(servedCommonName(), "a");
}

TEST_F(TlsConn, OnlyH2OfferedFailsTheHandshake) {
  EXPECT_EQ(connect("a.example.test", kH2Only), Conn::Handshake::kFailed);
  EXPECT_FALSE(client_done_);
  EXPECT_FALSE(server_->failure().empty());
}

TEST_F(TlsConn, Tls11IsRefused) {
  SSL_CTX_set_min_proto_version(client_ctx_, TLS1_VERSION);
  SSL_CTX_set_max_proto_version(client_ctx_, TLS1_1_VERSION);
  SSL_CTX_set_security_level(client_ctx_, 0);  // let the client offer it at all
  SSL_CTX_set_cipher_list(client_ctx_, "DEFAULT:@SECLEVEL=0");
  EXPECT_EQ(connect("a.example.test", {}), Conn::Handshake::kFailed);
  EXPECT_TRUE(server_->receivedAny());
}

TEST_F(TlsConn, PlainHttpFailsTheHandshake) {
  auto ctx = ServerContext::load({{a_cert_, a_key_}}, {});
  ASSERT_TRUE(ctx);
  server_ = Conn::make(*ctx, server_fd_, pool_);
  const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(::write(client_fd_, request.data(), request.size()),
            static_cast<ssize_t>(request.size()));
  EXPECT_EQ(server_->handshake(readable_, writable_), Conn::Handshake::kFailed);
  EXPECT_TRUE(server_->receivedAny());
}

TEST_F(TlsConn, ClosedWithoutAByteIsNotCountedAsReceived) {
  auto ctx = ServerContext::load({{a_cert_, a_key_}}, {});
  ASSERT_TRUE(ctx);
  server_ = Conn::make(*ctx, server_fd_, pool_);
  ::shutdown(client_fd_, SHUT_WR);
  EXPECT_EQ(server_->handshake(readable_, writable_), Conn::Handshake::kFailed);
  EXPECT_FALSE(server_->receivedAny());
}

TEST_F(TlsConn, CarriesDataBothWaysAndHalfClosesWithCloseNotify) {
  ASSERT_EQ(connect("a.example.test", kH2AndHttp11), Conn::Handshake::kDone);
  ASSERT_TRUE(client_done_);
  const std::string request = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  ASSERT_EQ(SSL_write(client_, request.data(), static_cast<int>(request.size())),
            static_cast<int>(request.size()));
  Buffer in(pool_);
  readable_ = true;
  while (in.size() < request.size() && readable_) {
    ASSERT_GT(server_->read(in, readable_, writable_), 0);
  }
  EXPECT_EQ(in.view(), request);
  EXPECT_EQ(server_->read(in, readable_, writable_), -1);  // nothing more: would block
  EXPECT_FALSE(readable_);

  // A head and a body larger than one record: taken a record at a time.
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n";
  const std::string body(40000, 'x');
  size_t sent = 0;
  std::string got;
  char buf[65536];
  for (int i = 0; i < 100 && sent < head.size() + body.size(); ++i) {
    std::string_view a = sent < head.size() ? std::string_view(head).substr(sent) : "";
    std::string_view b = std::string_view(body).substr(sent < head.size() ? 0 : sent - head.size());
    writable_ = true;
    const ssize_t n = server_->write(a, b, writable_);
    ASSERT_NE(n, -2);
    if (n > 0) sent += static_cast<size_t>(n);
    int r;
    while ((r = SSL_read(client_, buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(r));
    ERR_clear_error();
  }
  EXPECT_EQ(got, head + body);

  writable_ = true;
  server_->shutdownWrite(writable_);
  EXPECT_FALSE(server_->pending());
  EXPECT_EQ(SSL_read(client_, buf, sizeof buf), 0);
  EXPECT_EQ(SSL_get_error(client_, 0), SSL_ERROR_ZERO_RETURN);  // a clean close_notify
  ERR_clear_error();
}

}  // namespace
}  // namespace tandem::tls
