// Response-head parsing: status line, body rules per request method and status, framing errors.
#include <string>

#include "http/parser.h"
#include "http_test_util.h"

namespace tandem::http {
namespace {

using test::err;
using test::kMore;
using test::kOk;
using test::req;

class ResponseTest : public ::testing::Test {
 protected:
  // Parses a copy kept alive in the fixture, so the head's views stay valid after the call.
  ParseResult parse(std::string_view s, Method m = Method::kGet, size_t limit = 8192) {
    owned_.assign(s);
    st_ = {};
    return parseResponseHead(owned_, limit, m, st_, h_);
  }
  std::string owned_;
  ParseState st_;
  ResponseHead h_;
};

TEST_F(ResponseTest, OkWithContentLength) {
  const std::string head = req("HTTP/1.1 200 OK", {"Content-Length: 5", "Server: t"});
  ASSERT_EQ(parse(head + "hello"), kOk);
  EXPECT_EQ(h_.status, 200);
  EXPECT_EQ(h_.reason, "OK");
  EXPECT_EQ(h_.version_minor, 1);
  EXPECT_EQ(h_.body, BodyKind::kContentLength);
  EXPECT_EQ(h_.content_length, 5u);
  EXPECT_EQ(h_.head_length, head.size());
  EXPECT_TRUE(h_.keep_alive);
  EXPECT_EQ(h_.header_count, 2u);
}

TEST_F(ResponseTest, ReasonPhraseMayBeEmptyOrMissing) {
  ASSERT_EQ(parse(req("HTTP/1.1 200", {"Content-Length: 0"})), kOk);
  EXPECT_EQ(h_.status, 200);
  EXPECT_EQ(h_.reason, "");
  ASSERT_EQ(parse(req("HTTP/1.1 404 ", {"Content-Length: 0"})), kOk);
  EXPECT_EQ(h_.reason, "");
  ASSERT_EQ(parse(req("HTTP/1.1 503 Service \tUnavailable \xe2\x9c\x93", {"Content-Length: 0"})),
            kOk);
  EXPECT_EQ(h_.reason, "Service \tUnavailable \xe2\x9c\x93");
}

TEST_F(ResponseTest, MalformedStatusLines) {
  const char* bad[] = {
      "HTTP/1.1 20 OK",      "HTTP/1.1 2000 OK", "HTTP/1.1 099 X",  "HTTP/1.1 600 X",
      "HTTP/1.1  200 OK",    "http/1.1 200 OK",  "HTTP/1.1 2x0 OK", "HTTP/1.1",
      "HTTP/1.1 200 O\x01K", "HTTP/1.1\t200 OK", "ICY 200 OK",
  };
  for (const char* line : bad) {
    EXPECT_EQ(parse(req(line, {"Content-Length: 0"})), err(ParseError::kBadStatusLine)) << line;
  }
  EXPECT_EQ(parse("\r\n" + req("HTTP/1.1 200 OK", {})), err(ParseError::kBadStatusLine));
  EXPECT_EQ(parse("HTTP/1.1 200 OK\rX\r\n\r\n"), err(ParseError::kBareCrOrLf));
  EXPECT_EQ(parse("HTTP/1.1 200 OK\nX: y\r\n\r\n"), err(ParseError::kBareCrOrLf));
}

TEST_F(ResponseTest, UnsupportedVersion) {
  EXPECT_EQ(parse(req("HTTP/2.0 200 OK", {})), err(ParseError::kUnsupportedVersion));
  EXPECT_EQ(parse(req("HTTP/1.2 200 OK", {})), err(ParseError::kUnsupportedVersion));
}

TEST_F(ResponseTest, HeadResponsesHaveNoBody) {
  ASSERT_EQ(parse(req("HTTP/1.1 200 OK", {"Content-Length: 1234"}), Method::kHead), kOk);
  EXPECT_EQ(h_.body, BodyKind::kNone);
  EXPECT_EQ(h_.content_length, 0u);
  ASSERT_EQ(parse(req("HTTP/1.1 200 OK", {"Transfer-Encoding: chunked"}), Method::kHead), kOk);
  EXPECT_EQ(h_.body, BodyKind::kNone);
  ASSERT_EQ(parse(req("HTTP/1.1 200 OK", {}), Method::kHead), kOk);
  EXPECT_EQ(h_.body, BodyKind::kNone);
  EXPECT_TRUE(h_.keep_alive);
}

TEST_F(ResponseTest, NoBodyStatuses) {
  for (int status : {100, 101, 103, 199, 204, 304}) {
    const std::string line = "HTTP/1.1 " + std::to_string(status) + " X";
    ASSERT_EQ(parse(req(line, {"Content-Length: 10"})), kOk) << status;
    EXPECT_EQ(h_.status, status);
    EXPECT_EQ(h_.body, BodyKind::kNone) << status;
    EXPECT_TRUE(h_.keep_alive) << status;
  }
  ASSERT_EQ(parse(req("HTTP/1.1 205 Reset Content", {"Content-Length: 0"})), kOk);
  EXPECT_EQ(h_.body, BodyKind::kNone);
}

TEST_F(ResponseTest, InterimResponseThenFinal) {
  const std::string interim = req("HTTP/1.1 100 Continue", {});
  const std::string s = interim + req("HTTP/1.1 201 Created", {"Content-Length: 2"}) + "ok";
  ASSERT_EQ(parse(s), kOk);
  EXPECT_EQ(h_.status, 100);
  ASSERT_EQ(h_.head_length, interim.size());
  ASSERT_EQ(parse(std::string_view(s).substr(h_.head_length)), kOk);
  EXPECT_EQ(h_.status, 201);
  EXPECT_EQ(h_.body, BodyKind::kContentLength);
}

TEST_F(ResponseTest, SwitchingProtocols) {
  ASSERT_EQ(
      parse(req("HTTP/1.1 101 Switching Protocols", {"Upgrade: websocket", "Connection: Upgrade"})),
      kOk);
  EXPECT_EQ(h_.body, BodyKind::kNone);
  EXPECT_TRUE(h_.connection_upgrade);
  EXPECT_EQ(h_.upgrade, "websocket");
}

TEST_F(ResponseTest, ConnectSuccessIsATunnel) {
  ASSERT_EQ(
      parse(req("HTTP/1.1 200 Connection established", {"Connection: upgrade"}), Method::kConnect),
      kOk);
  EXPECT_EQ(h_.body, BodyKind::kNone);
  EXPECT_FALSE(h_.connection_upgrade);
  ASSERT_EQ(parse(req("HTTP/1.1 407 Auth", {"Content-Length: 3"}), Method::kConnect), kOk);
  EXPECT_EQ(h_.body, BodyKind::kContentLength);
  EXPECT_EQ(h_.content_length, 3u);
}

TEST_F(ResponseTest, UntilCloseWithoutLength) {
  ASSERT_EQ(parse(req("HTTP/1.1 200 OK", {"Server: x"}) + "body..."), kOk);
  EXPECT_EQ(h_.body, BodyKind::kUntilClose);
  EXPECT_FALSE(h_.keep_alive);
  ASSERT_EQ(parse(req("HTTP/1.1 200 OK", {"Content-Length: 0"})), kOk);
  EXPECT_EQ(h_.body, BodyKind::kNone);
  EXPECT_TRUE(h_.keep_alive);
}

TEST_F(ResponseTest, TransferCodings) {
  ASSERT_EQ(parse(req("HTTP/1.1 200 OK", {"Transfer-Encoding: chunked"})), kOk);
  EXPECT_EQ(h_.body, BodyKind::kChunked);
  EXPECT_TRUE(h_.keep_alive);
  ASSERT_EQ(
      parse(req("HTTP/1.1 200 OK", {"Transfer-Encoding: gzip", "Transfer-Encoding: Chunked"})),
      kOk);
  EXPECT_EQ(h_.body, BodyKind::kChunked);
  ASSERT_EQ(parse(req("HTTP/1.1 200 OK", {"Transfer-Encoding: chunked, gzip"})), kOk);
  EXPECT_EQ(h_.body, BodyKind::kUntilClose);
  EXPECT_FALSE(h_.keep_alive);
  ASSERT_EQ(parse(req("HTTP/1.1 200 OK", {"Transfer-Encoding: gzip"})), kOk);
  EXPECT_EQ(h_.body, BodyKind::kUntilClose);
  EXPECT_EQ(parse(req("HTTP/1.1 200 OK", {"Transfer-Encoding: chunked, chunked"})),
            err(ParseError::kBadTransferEncoding));
  EXPECT_EQ(parse(req("HTTP/1.1 200 OK", {"Transfer-Encoding: chunked,"})),
            err(ParseError::kBadTransferEncoding));
}

TEST_F(ResponseTest, FramingErrorsBecome502) {
  EXPECT_EQ(parse(req("HTTP/1.1 200 OK", {"Content-Length: 3", "Transfer-Encoding: chunked"})),
            err(ParseError::kContentLengthAndTransferEncoding));
  EXPECT_EQ(parse(req("HTTP/1.1 200 OK", {"Content-Length: 3", "Content-Length: 4"})),
            err(ParseError::kBadContentLength));
  EXPECT_EQ(parse(req("HTTP/1.1 200 OK", {"Content-Length: -1"})),
            err(ParseError::kBadContentLength));
  EXPECT_EQ(parse(req("HTTP/1.1 200 OK", {"Content Length: 1"})), err(ParseError::kBadHeaderName));
  EXPECT_EQ(parse(req("HTTP/1.1 200 OK", {"X: a", " b"})), err(ParseError::kObsFold));
}

TEST_F(ResponseTest, Http10Responses) {
  ASSERT_EQ(parse(req("HTTP/1.0 200 OK", {"Content-Length: 2"})), kOk);
  EXPECT_EQ(h_.version_minor, 0);
  EXPECT_FALSE(h_.keep_alive);
  ASSERT_EQ(parse(req("HTTP/1.0 200 OK", {"Connection: keep-alive", "Content-Length: 2"})), kOk);
  EXPECT_TRUE(h_.keep_alive);
  ASSERT_EQ(parse(req("HTTP/1.0 200 OK", {"Connection: keep-alive", "Transfer-Encoding: chunked"})),
            kOk);
  EXPECT_EQ(h_.body, BodyKind::kChunked);
  EXPECT_FALSE(h_.keep_alive);  // suspect framing: never reuse
}

TEST_F(ResponseTest, HopByHopAndConnectionClose) {
  ASSERT_EQ(parse(req("HTTP/1.1 200 OK", {"Connection: close, X-Internal", "X-Internal: 1",
                                          "Content-Length: 0", "Keep-Alive: timeout=5"})),
            kOk);
  EXPECT_FALSE(h_.keep_alive);
  EXPECT_TRUE(h_.isHopByHop(0));
  EXPECT_TRUE(h_.isHopByHop(1));
  EXPECT_FALSE(h_.isHopByHop(2));
  EXPECT_TRUE(h_.isHopByHop(3));
}

TEST_F(ResponseTest, IncrementalAndLimit) {
  const std::string s = req("HTTP/1.1 200 OK", {"Content-Length: 0", "X-Pad: 0123456789"});
  ParseState st;
  ParseResult r = kMore;
  size_t n = 0;
  while (r == kMore && n < s.size()) {
    r = parseResponseHead(std::string_view(s).substr(0, ++n), 8192, Method::kGet, st, h_);
  }
  EXPECT_EQ(r, kOk);
  EXPECT_EQ(n, s.size());
  EXPECT_EQ(parse(s, Method::kGet, s.size() - 1), err(ParseError::kHeadTooLarge));
}

}  // namespace
}  // namespace tandem::http
