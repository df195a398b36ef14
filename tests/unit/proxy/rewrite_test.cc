#include "proxy/rewrite.h"

#include <gtest/gtest.h>

#include <string>

namespace tandem::proxy {
namespace {

std::string rewriteRequest(std::string_view raw, RequestRewrite rw = {"192.0.2.7", false}) {
  http::RequestHead h;
  http::ParseState st;
  auto r = http::parseRequestHead(raw, 16384, st, h);
  EXPECT_EQ(r.status, http::ParseStatus::kDone);
  BufferPool pool;
  Buffer out(pool);
  writeRequestHead(h, rw, out);
  return std::string(out.view());
}

TEST(Rewrite, RemovesHopByHopAndAddsForwardingHeaders) {
  std::string out = rewriteRequest(
      "GET /a?b HTTP/1.1\r\nHost: ex\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
      "Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Forwarded-For: 203.0.113.7\r\n"
      "X-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(out.rfind("GET /a?b HTTP/1.1\r\n", 0), 0u);
  EXPECT_NE(out.find("Host: ex\r\n"), std::string::npos);
  EXPECT_NE(out.find("Accept: */*\r\n"), std::string::npos);
  EXPECT_EQ(out.find("X-Secret"), std::string::npos);
  EXPECT_EQ(out.find("Keep-Alive"), std::string::npos);
  EXPECT_EQ(out.find("TE:"), std::string::npos);
  EXPECT_EQ(out.find("Connection"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-For: 203.0.113.7, 192.0.2.7\r\n"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-Proto: http\r\n"), std::string::npos);
  EXPECT_EQ(out.find("https"), std::string::npos);
  EXPECT_NE(out.find("Via: 1.1 tandem\r\n"), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n");
}

TEST(Rewrite, ForwardedProtoIsHttpsForTlsClientsWhateverTheyClaim) {
  std::string out = rewriteRequest("GET / HTTP/1.1\r\nHost: ex\r\nX-Forwarded-Proto: http\r\n\r\n",
                                   {"192.0.2.7", false, true});
  EXPECT_NE(out.find("X-Forwarded-Proto: https\r\n"), std::string::npos);
  EXPECT_EQ(out.find("X-Forwarded-Proto: http\r\n"), std::string::npos);
}

TEST(Rewrite, KeepsUpgradeHeadersWhenTunnelling) {
  std::string out = rewriteRequest(
      "GET /ws HTTP/1.1\r\nHost: ex\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
      {"127.0.0.1", true});
  EXPECT_NE(out.find("Connection: Upgrade\r\n"), std::string::npos);
  EXPECT_NE(out.find("Upgrade: websocket\r\n"), std::string::npos);
}

TEST(Rewrite, Http10IsForwardedAsHttp10WithKeepAlive) {
  std::string out = rewriteRequest("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(out.rfind("GET / HTTP/1.0\r\n", 0), 0u);
  EXPECT_NE(out.find("Connection: keep-alive\r\n"), std::string::npos);
  EXPECT_NE(out.find("Via: 1.0 tandem\r\n"), std::string::npos);
}

TEST(Rewrite, ResponseHeadGetsViaAndConnectionClose) {
  std::string raw =
      "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=4\r\n"
      "Content-Length: 2\r\n\r\n";
  http::ResponseHead h;
  http::ParseState st;
  ASSERT_EQ(http::parseResponseHead(raw, 65536, http::Method::kGet, st, h).status,
            http::ParseStatus::kDone);
  BufferPool pool;
  Buffer out(pool);
  writeResponseHead(raw, h, {true, false, false}, out);
  std::string s(out.view());
  EXPECT_EQ(s.rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  EXPECT_EQ(s.find("Keep-Alive"), std::string::npos);
  EXPECT_NE(s.find("Content-Length: 2\r\n"), std::string::npos);
  EXPECT_NE(s.find("Via: 1.0 tandem\r\n"), std::string::npos);
  EXPECT_NE(s.find("Connection: close\r\n"), std::string::npos);
}

TEST(Rewrite, ErrorResponsesAreWellFramed) {
  for (int status : {400, 408, 413, 431, 501, 502, 503, 504, 505}) {
    std::string_view r = errorResponse(status);
    http::ResponseHead h;
    http::ParseState st;
    ASSERT_EQ(http::parseResponseHead(r, 65536, http::Method::kGet, st, h).status,
              http::ParseStatus::kDone)
        << status;
    EXPECT_EQ(h.status, status);
    EXPECT_EQ(h.body, http::BodyKind::kContentLength);
    EXPECT_EQ(h.content_length, r.size() - h.head_length) << status;
    EXPECT_FALSE(h.keep_alive);
  }
}

TEST(Rewrite, HashKeys) {
  std::string raw =
      "GET /p HTTP/1.1\r\nHost: h\r\nX-User: alice\r\nCookie: a=1; sid=xyz; b=2\r\n\r\n";
  http::RequestHead h;
  http::ParseState st;
  ASSERT_EQ(http::parseRequestHead(raw, 16384, st, h).status, http::ParseStatus::kDone);
  EXPECT_EQ(hashKeyOf(h, {config::HashKeyKind::kHeader, "x-user"}, "ip"), "alice");
  EXPECT_EQ(hashKeyOf(h, {config::HashKeyKind::kCookie, "sid"}, "ip"), "xyz");
  EXPECT_EQ(hashKeyOf(h, {config::HashKeyKind::kCookie, "nope"}, "ip"), "");
  EXPECT_EQ(hashKeyOf(h, {config::HashKeyKind::kUri, ""}, "ip"), "/p");
  EXPECT_EQ(hashKeyOf(h, {config::HashKeyKind::kSourceIp, ""}, "ip"), "ip");
}

}  // namespace
}  // namespace tandem::proxy
