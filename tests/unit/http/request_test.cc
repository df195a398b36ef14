// Request-head parsing: forms, strict rejections (with smuggling-style inputs), framing,
// connection handling, hop-by-hop mask, incremental behaviour.
#include <memory>
#include <string>
#include <vector>

#include "http/parser.h"
#include "http_test_util.h"

namespace tandem::http {
namespace {

using test::err;
using test::kMore;
using test::kOk;
using test::req;

class RequestTest : public ::testing::Test {
 protected:
  // Parses a copy kept alive in the fixture, so the head's views stay valid after the call.
  ParseResult parse(std::string_view s, size_t limit = 8192) {
    owned_.assign(s);
    st_ = {};
    return parseRequestHead(owned_, limit, st_, h_);
  }
  // Parses a head made of the Host header plus `headers`.
  ParseResult withHeaders(std::initializer_list<std::string_view> headers) {
    buf_ = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (auto h : headers) {
      buf_ += h;
      buf_ += "\r\n";
    }
    buf_ += "\r\n";
    return parse(buf_);
  }
  std::string buf_;
  std::string owned_;
  ParseState st_;
  RequestHead h_;
};

TEST_F(RequestTest, SimpleGet) {
  const std::string s = req("GET /index.html HTTP/1.1", {"Host: example.com", "Accept: */*"});
  ASSERT_EQ(parse(s), kOk);
  EXPECT_EQ(h_.method, Method::kGet);
  EXPECT_EQ(h_.method_text, "GET");
  EXPECT_EQ(h_.target, "/index.html");
  EXPECT_EQ(h_.host, "example.com");
  EXPECT_EQ(h_.version_minor, 1);
  EXPECT_EQ(h_.header_count, 2u);
  EXPECT_EQ(h_.headers[1].name, "Accept");
  EXPECT_EQ(h_.headers[1].value, "*/*");
  EXPECT_EQ(h_.head_length, s.size());
  EXPECT_EQ(h_.body, BodyKind::kNone);
  EXPECT_TRUE(h_.keep_alive);
  EXPECT_FALSE(h_.expect_continue);
}

TEST_F(RequestTest, ViewsPointIntoTheBuffer) {
  const std::string s = req("GET /x HTTP/1.1", {"Host: h"});
  ParseState st;
  ASSERT_EQ(parseRequestHead(s, 8192, st, h_), kOk);
  EXPECT_EQ(h_.target.data(), s.data() + 4);
  EXPECT_EQ(h_.host.data(), s.data() + s.find("h\r\n"));
}

TEST_F(RequestTest, IncompleteUntilTheEmptyLine) {
  const std::string s = req("GET / HTTP/1.1", {"Host: a"});
  for (size_t n = 0; n < s.size(); ++n) {
    ParseState st;
    EXPECT_EQ(parseRequestHead(std::string_view(s).substr(0, n), 8192, st, h_), kMore) << n;
  }
  EXPECT_EQ(parse(s), kOk);
}

TEST_F(RequestTest, OneByteAtATimeEqualsOneShot) {
  const std::string s =
      req("POST /p?q=1 HTTP/1.1", {"Host: a", "Content-Length: 3", "Connection: x-a", "X-A: 1"}) +
      "abc";
  ASSERT_EQ(parse(s), kOk);
  const RequestHead one = h_;
  ParseState st;
  ParseResult r = kMore;
  size_t n = 0;
  while (r == kMore && n < s.size()) r = parseRequestHead(s.substr(0, ++n), 8192, st, h_);
  ASSERT_EQ(r, kOk);
  EXPECT_EQ(n, one.head_length);  // done exactly when the final LF arrives
  EXPECT_EQ(h_.head_length, one.head_length);
  EXPECT_EQ(h_.content_length, 3u);
  EXPECT_EQ(h_.hop_mask_lo, one.hop_mask_lo);
  EXPECT_EQ(h_.header_count, one.header_count);
}

TEST_F(RequestTest, ScanStateAdvancesAndRepeatedCallsAgree) {
  const std::string s = req("GET / HTTP/1.1", {"Host: a", "X-Long: 0123456789"});
  ParseState st;
  EXPECT_EQ(parseRequestHead(std::string_view(s).substr(0, 20), 8192, st, h_), kMore);
  EXPECT_EQ(st.scan, 20u);  // next call starts where this one stopped
  EXPECT_EQ(parseRequestHead(std::string_view(s).substr(0, 20), 8192, st, h_), kMore);
  EXPECT_EQ(parseRequestHead(s, 8192, st, h_), kOk);
  EXPECT_EQ(parseRequestHead(s, 8192, st, h_), kOk);  // same buffer again: same verdict
  EXPECT_EQ(h_.head_length, s.size());
}

TEST_F(RequestTest, PipelinedBytesAreNotPartOfTheHead) {
  const std::string first = req("GET /1 HTTP/1.1", {"Host: a"});
  const std::string s = first + req("GET /2 HTTP/1.1", {"Host: a"});
  ASSERT_EQ(parse(s), kOk);
  EXPECT_EQ(h_.head_length, first.size());
  EXPECT_EQ(h_.target, "/1");
}

TEST_F(RequestTest, LeadingEmptyLinesAreSkippedAndCounted) {
  const std::string s = "\r\n\r\n" + req("GET / HTTP/1.1", {"Host: a"});
  ASSERT_EQ(parse(s), kOk);
  EXPECT_EQ(h_.method_text, "GET");
  EXPECT_EQ(h_.head_length, s.size());
  EXPECT_EQ(parse("\r\n\r\n"), kMore);
  EXPECT_EQ(parse("\n" + req("GET / HTTP/1.1", {"Host: a"})), err(ParseError::kBareCrOrLf));
  EXPECT_EQ(parse("\r\r\n" + req("GET / HTTP/1.1", {"Host: a"})), err(ParseError::kBareCrOrLf));
}

TEST_F(RequestTest, AbsoluteForm) {
  ASSERT_EQ(parse(req("GET http://example.com/a?b=c HTTP/1.1", {"Host: example.com"})), kOk);
  EXPECT_EQ(h_.target, "http://example.com/a?b=c");
  EXPECT_EQ(parse(req("GET 1http://x/ HTTP/1.1", {"Host: a"})), err(ParseError::kBadRequestLine));
  EXPECT_EQ(parse(req("GET http: HTTP/1.1", {"Host: a"})), err(ParseError::kBadRequestLine));
  EXPECT_EQ(parse(req("GET example.com HTTP/1.1", {"Host: a"})), err(ParseError::kBadRequestLine));
}

TEST_F(RequestTest, AuthorityFormOnlyForConnect) {
  ASSERT_EQ(parse(req("CONNECT example.com:443 HTTP/1.1", {"Host: example.com:443"})), kOk);
  EXPECT_EQ(h_.method, Method::kConnect);
  EXPECT_EQ(h_.target, "example.com:443");
  EXPECT_EQ(parse(req("CONNECT [::1]:8443 HTTP/1.1", {"Host: [::1]:8443"})), kOk);
  EXPECT_EQ(parse(req("CONNECT /x HTTP/1.1", {"Host: a"})), err(ParseError::kBadRequestLine));
  EXPECT_EQ(parse(req("CONNECT example.com HTTP/1.1", {"Host: a"})),
            err(ParseError::kBadRequestLine));
  EXPECT_EQ(parse(req("CONNECT u@example.com:443 HTTP/1.1", {"Host: a"})),
            err(ParseError::kBadRequestLine));
  EXPECT_EQ(parse(req("CONNECT a:123456 HTTP/1.1", {"Host: a"})), err(ParseError::kBadRequestLine));
  // "example.com:443" is also a syntactically valid absolute URI (scheme "example.com"), so a
  // GET with it is accepted as absolute-form; a target without a scheme is not.
  EXPECT_EQ(parse(req("GET :443 HTTP/1.1", {"Host: a"})), err(ParseError::kBadRequestLine));
}

TEST_F(RequestTest, AsteriskFormOnlyForOptions) {
  ASSERT_EQ(parse(req("OPTIONS * HTTP/1.1", {"Host: a"})), kOk);
  EXPECT_EQ(h_.method, Method::kOptions);
  EXPECT_EQ(h_.target, "*");
  EXPECT_EQ(parse(req("GET * HTTP/1.1", {"Host: a"})), err(ParseError::kBadRequestLine));
}

TEST_F(RequestTest, MethodsAreCaseSensitiveTokens) {
  const std::pair<const char*, Method> cases[] = {
      {"GET", Method::kGet},        {"HEAD", Method::kHead},     {"POST", Method::kPost},
      {"PUT", Method::kPut},        {"DELETE", Method::kDelete}, {"OPTIONS", Method::kOptions},
      {"TRACE", Method::kTrace},    {"PATCH", Method::kPatch},   {"get", Method::kOther},
      {"PROPFIND", Method::kOther},
  };
  for (const auto& [text, m] : cases) {
    ASSERT_EQ(parse(req(std::string(text) + " / HTTP/1.1", {"Host: a"})), kOk) << text;
    EXPECT_EQ(h_.method, m) << text;
    EXPECT_EQ(h_.method_text, text);
  }
  EXPECT_EQ(parse(req("G(T / HTTP/1.1", {"Host: a"})), err(ParseError::kBadRequestLine));
}

TEST_F(RequestTest, MalformedRequestLines) {
  const char* bad[] = {
      "GET  / HTTP/1.1",            // two spaces
      "GET / HTTP/1.1 ",            // trailing space
      "GET\t/ HTTP/1.1",            // HTAB separator
      " GET / HTTP/1.1",            // leading space
      "GET /a b HTTP/1.1",          // space in target
      "GET / http/1.1",             // version name is case-sensitive
      "GET / HTTP/1.10",            // three-digit version
      "GET / HTTP/1",               // no minor
      "GET /",                      // HTTP/0.9
      "GET",                        // method only
      "GET /#frag HTTP/1.1",        // fragments never appear in a request-target (CVE-2023-45539)
      "GET /caf\xc3\xa9 HTTP/1.1",  // raw non-ASCII in the target
      "GET /\x7f HTTP/1.1",         // DEL in the target
  };
  for (const char* line : bad) {
    EXPECT_EQ(parse(req(line, {"Host: a"})), err(ParseError::kBadRequestLine)) << line;
  }
  std::string nul = "GET /";
  nul += '\0';
  nul += " HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(parse(nul), err(ParseError::kBadRequestLine));
  // Short heads take the scalar path for the target, long ones the 16-byte one: test both.
  EXPECT_EQ(parse("GET /# HTTP/1.0\r\n\r\n"), err(ParseError::kBadRequestLine));
  EXPECT_EQ(parse("GET /a\x80 HTTP/1.0\r\n\r\n"), err(ParseError::kBadRequestLine));
  EXPECT_EQ(parse(req("GET /" + std::string(40, 'a') + "#" + std::string(40, 'b') + " HTTP/1.1",
                      {"Host: a"})),
            err(ParseError::kBadRequestLine));
  EXPECT_EQ(parse("GET /a HTTP/1.0\r\n\r\n"), kOk);
}

TEST_F(RequestTest, UnsupportedVersionsAre505) {
  EXPECT_EQ(parse(req("GET / HTTP/2.0", {"Host: a"})), err(ParseError::kUnsupportedVersion));
  EXPECT_EQ(parse(req("GET / HTTP/1.2", {"Host: a"})), err(ParseError::kUnsupportedVersion));
  EXPECT_EQ(parse(req("GET / HTTP/0.9", {"Host: a"})), err(ParseError::kUnsupportedVersion));
  EXPECT_EQ(parse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), err(ParseError::kUnsupportedVersion));
  EXPECT_EQ(statusFor(ParseError::kUnsupportedVersion), 505);
}

TEST_F(RequestTest, Http10KeepAliveRules) {
  ASSERT_EQ(parse(req("GET / HTTP/1.0", {})), kOk);  // Host is optional in 1.0
  EXPECT_EQ(h_.version_minor, 0);
  EXPECT_FALSE(h_.keep_alive);
  ASSERT_EQ(parse(req("GET / HTTP/1.0", {"Connection: Keep-Alive"})), kOk);
  EXPECT_TRUE(h_.keep_alive);
  ASSERT_EQ(parse(req("GET / HTTP/1.0", {"Connection: keep-alive, close"})), kOk);
  EXPECT_FALSE(h_.keep_alive);
}

TEST_F(RequestTest, Http11ConnectionClose) {
  ASSERT_EQ(withHeaders({"Connection: close"}), kOk);
  EXPECT_FALSE(h_.keep_alive);
  ASSERT_EQ(withHeaders({"Connection: foo, CLOSE"}), kOk);
  EXPECT_FALSE(h_.keep_alive);
  ASSERT_EQ(withHeaders({"Connection: foo", "Connection: close"}), kOk);
  EXPECT_FALSE(h_.keep_alive);
  ASSERT_EQ(withHeaders({"Connection: closed"}), kOk);
  EXPECT_TRUE(h_.keep_alive);
}

TEST_F(RequestTest, ValuesAreTrimmedAndMayBeEmpty) {
  ASSERT_EQ(withHeaders({"X-A: \t v a l \t ", "X-B:", "X-C:   "}), kOk);
  EXPECT_EQ(h_.headers[1].value, "v a l");
  EXPECT_EQ(h_.headers[2].value, "");
  EXPECT_EQ(h_.headers[3].value, "");
}

TEST_F(RequestTest, BadHeaderNames) {
  EXPECT_EQ(withHeaders({"Transfer-Encoding : chunked"}), err(ParseError::kBadHeaderName));
  EXPECT_EQ(withHeaders({"X-A\t: b"}), err(ParseError::kBadHeaderName));
  EXPECT_EQ(withHeaders({": b"}), err(ParseError::kBadHeaderName));
  EXPECT_EQ(withHeaders({"NoColon"}), err(ParseError::kBadHeaderName));
  EXPECT_EQ(withHeaders({"X(A): b"}), err(ParseError::kBadHeaderName));
  EXPECT_EQ(withHeaders({"X A: b"}), err(ParseError::kBadHeaderName));
}

TEST_F(RequestTest, ObsFoldIsRejected) {
  EXPECT_EQ(withHeaders({"X-A: b", " c"}), err(ParseError::kObsFold));
  EXPECT_EQ(withHeaders({"X-A: b", "\tc"}), err(ParseError::kObsFold));
  EXPECT_EQ(parse("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), err(ParseError::kObsFold));
}

TEST_F(RequestTest, ControlCharactersInValues) {
  EXPECT_EQ(withHeaders({std::string_view("X-A: b\0c", 8)}), err(ParseError::kBadHeaderValue));
  EXPECT_EQ(withHeaders({"X-A: b\x7f"}), err(ParseError::kBadHeaderValue));
  EXPECT_EQ(withHeaders({"X-A: \x01"}), err(ParseError::kBadHeaderValue));
  EXPECT_EQ(withHeaders({"X-A: a\x1b[0m"}), err(ParseError::kBadHeaderValue));
  // Long values take the 16-byte path, short ones the scalar loop: test both.
  const std::string pad(40, 'v');
  EXPECT_EQ(withHeaders({"X-A: " + pad + "\x01" + pad}), err(ParseError::kBadHeaderValue));
  EXPECT_EQ(withHeaders({"X-A: " + pad + "\x7f" + pad}), err(ParseError::kBadHeaderValue));
  EXPECT_EQ(withHeaders({"X-A: " + pad + "\r" + pad}), err(ParseError::kBareCrOrLf));
  ASSERT_EQ(withHeaders({"X-A: " + pad + "\t\t\xfe" + pad, "X-B: 1"}), kOk);
  EXPECT_EQ(h_.headers[1].value.size(), 83u);
  ASSERT_EQ(withHeaders({"X-A: a\tb", "X-B: caf\xc3\xa9 \xff"}), kOk);  // HTAB and obs-text
  EXPECT_EQ(h_.headers[1].value, "a\tb");
  EXPECT_EQ(h_.headers[2].value, "caf\xc3\xa9 \xff");
}

TEST_F(RequestTest, BareLfIsRejectedAsSoonAsItArrives) {
  EXPECT_EQ(parse("GET / HTTP/1.1\nHost: a\n\n"), err(ParseError::kBareCrOrLf));
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\n\r\n"), err(ParseError::kBareCrOrLf));
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\n\n"), err(ParseError::kBareCrOrLf));
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nX: a\nb"), err(ParseError::kBareCrOrLf));  // head incomplete
}

TEST_F(RequestTest, BareCrIsRejected) {
  EXPECT_EQ(withHeaders({"X-A: a\rb"}), err(ParseError::kBareCrOrLf));
  EXPECT_EQ(withHeaders({"X-A: a\r"}), err(ParseError::kBareCrOrLf));
  EXPECT_EQ(withHeaders({"X-A\r: a"}), err(ParseError::kBareCrOrLf));
  EXPECT_EQ(parse("GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), err(ParseError::kBareCrOrLf));
  EXPECT_EQ(parse("GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"), err(ParseError::kBareCrOrLf));
}

TEST_F(RequestTest, HeadTooLargeIsReportedBeforeTheHeadCompletes) {
  const std::string s = req("GET / HTTP/1.1", {"Host: a", "X-Big: " + std::string(100, 'x')});
  EXPECT_EQ(parse(s, s.size()), kOk);  // exactly at the limit
  EXPECT_EQ(parse(s, s.size() - 1), err(ParseError::kHeadTooLarge));
  EXPECT_EQ(parse(std::string_view(s).substr(0, 65), 64), err(ParseError::kHeadTooLarge));
  EXPECT_EQ(parse(std::string_view(s).substr(0, 64), 64), kMore);
  EXPECT_EQ(statusFor(ParseError::kHeadTooLarge), 431);
}

TEST_F(RequestTest, HeaderCountLimit) {
  std::string s = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (size_t i = 1; i < kMaxHeaders; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
  ASSERT_EQ(parse(s + "\r\n"), kOk);
  EXPECT_EQ(h_.header_count, kMaxHeaders);
  EXPECT_EQ(parse(s + "X-129: v\r\n\r\n"), err(ParseError::kTooManyHeaders));
  EXPECT_EQ(statusFor(ParseError::kTooManyHeaders), 431);
}

TEST_F(RequestTest, ContentLengthValid) {
  ASSERT_EQ(withHeaders({"Content-Length: 42"}), kOk);
  EXPECT_EQ(h_.body, BodyKind::kContentLength);
  EXPECT_EQ(h_.content_length, 42u);
  ASSERT_EQ(withHeaders({"Content-Length: 0"}), kOk);
  EXPECT_EQ(h_.body, BodyKind::kNone);
  ASSERT_EQ(withHeaders({"Content-Length: 5", "content-length: 5"}), kOk);
  EXPECT_EQ(h_.content_length, 5u);
  ASSERT_EQ(withHeaders({"Content-Length: 5 , 5,5"}), kOk);
  EXPECT_EQ(h_.content_length, 5u);
  ASSERT_EQ(withHeaders({"Content-Length: 9223372036854775807"}), kOk);
  EXPECT_EQ(h_.content_length, 9223372036854775807u);
}

TEST_F(RequestTest, ContentLengthSmuggling) {
  const char* bad[] = {
      "Content-Length: +5",
      "Content-Length: -5",
      "Content-Length: 5, 6",
      "Content-Length: 5 5",
      "Content-Length: 0x5",
      "Content-Length:",
      "Content-Length: 5,",
      "Content-Length: ,5",
      "Content-Length: 5;q",
      "Content-Length: 1e3",
      "Content-Length: 9223372036854775808",
      "Content-Length: 99999999999999999999999",
  };
  for (const char* h : bad) EXPECT_EQ(withHeaders({h}), err(ParseError::kBadContentLength)) << h;
  EXPECT_EQ(withHeaders({"Content-Length: 5", "Content-Length: 6"}),
            err(ParseError::kBadContentLength));
}

TEST_F(RequestTest, ContentLengthWithTransferEncoding) {
  EXPECT_EQ(withHeaders({"Content-Length: 4", "Transfer-Encoding: chunked"}),
            err(ParseError::kContentLengthAndTransferEncoding));
  EXPECT_EQ(withHeaders({"Transfer-Encoding: chunked", "Content-Length: 0"}),
            err(ParseError::kContentLengthAndTransferEncoding));
}

TEST_F(RequestTest, TransferEncodingChunked) {
  ASSERT_EQ(withHeaders({"Transfer-Encoding: chunked"}), kOk);
  EXPECT_EQ(h_.body, BodyKind::kChunked);
  EXPECT_FALSE(h_.isHopByHop(1));  // forwarded verbatim
  ASSERT_EQ(withHeaders({"transfer-encoding: ChUnKeD "}), kOk);
  EXPECT_EQ(h_.body, BodyKind::kChunked);
}

TEST_F(RequestTest, TransferEncodingSmuggling) {
  const std::vector<std::vector<std::string_view>> bad = {
      {"Transfer-Encoding: chunked, identity"},
      {"Transfer-Encoding: gzip, chunked"},
      {"Transfer-Encoding: identity"},
      {"Transfer-Encoding: chunked, chunked"},
      {"Transfer-Encoding: chunked", "Transfer-Encoding: chunked"},
      {"Transfer-Encoding: gzip", "Transfer-Encoding: chunked"},
      {"Transfer-Encoding: chunked;q=1"},
      {"Transfer-Encoding: chunked,"},
      {"Transfer-Encoding: ,chunked"},
      {"Transfer-Encoding:"},
      {"Transfer-Encoding: \"chunked\""},
      {"Transfer-Encoding: xchunked"},
  };
  for (const auto& hs : bad) {
    buf_ = "POST / HTTP/1.1\r\nHost: a\r\n";
    for (auto h : hs) (buf_ += h) += "\r\n";
    buf_ += "\r\n";
    EXPECT_EQ(parse(buf_), err(ParseError::kBadTransferEncoding)) << buf_;
  }
  EXPECT_EQ(parse(req("POST / HTTP/1.0", {"Transfer-Encoding: chunked"})),
            err(ParseError::kBadTransferEncoding));
  EXPECT_EQ(statusFor(ParseError::kBadTransferEncoding), 501);
}

TEST_F(RequestTest, HostRules) {
  EXPECT_EQ(parse(req("GET / HTTP/1.1", {})), err(ParseError::kMissingHost));
  EXPECT_EQ(parse(req("GET / HTTP/1.1", {"Host: a", "Host: b"})), err(ParseError::kMissingHost));
  EXPECT_EQ(parse(req("GET / HTTP/1.1", {"Host: a", "host: a"})), err(ParseError::kMissingHost));
  EXPECT_EQ(parse(req("GET / HTTP/1.0", {"Host: a", "Host: b"})), err(ParseError::kMissingHost));
  EXPECT_EQ(parse(req("GET / HTTP/1.1", {"Host: a b"})), err(ParseError::kBadHeaderValue));
  EXPECT_EQ(parse(req("GET / HTTP/1.1", {"Host: a/b"})), err(ParseError::kBadHeaderValue));
  EXPECT_EQ(parse(req("GET / HTTP/1.1", {"Host: u@a"})), err(ParseError::kBadHeaderValue));
  ASSERT_EQ(parse(req("GET / HTTP/1.1", {"hOsT:  [::1]:8080 "})), kOk);
  EXPECT_EQ(h_.host, "[::1]:8080");
  ASSERT_EQ(parse(req("GET / HTTP/1.1", {"Host:"})), kOk);  // empty authority is allowed
  EXPECT_EQ(h_.host, "");
  EXPECT_EQ(statusFor(ParseError::kMissingHost), 400);
}

TEST_F(RequestTest, ExpectContinue) {
  ASSERT_EQ(withHeaders({"Expect: 100-Continue"}), kOk);
  EXPECT_TRUE(h_.expect_continue);
  ASSERT_EQ(withHeaders({"Expect: 200-ok"}), kOk);
  EXPECT_FALSE(h_.expect_continue);
  ASSERT_EQ(parse(req("PUT / HTTP/1.0", {"Expect: 100-continue"})), kOk);
  EXPECT_FALSE(h_.expect_continue);  // RFC 9110 §10.1.1: ignored for HTTP/1.0
}

TEST_F(RequestTest, WebSocketUpgrade) {
  ASSERT_EQ(withHeaders({"Upgrade: websocket", "Connection: keep-alive, Upgrade"}), kOk);
  EXPECT_TRUE(h_.connection_upgrade);
  EXPECT_EQ(h_.upgrade, "websocket");
  EXPECT_TRUE(h_.keep_alive);
  EXPECT_TRUE(h_.isHopByHop(1));
  EXPECT_TRUE(h_.isHopByHop(2));
  ASSERT_EQ(withHeaders({"Upgrade: websocket"}), kOk);
  EXPECT_FALSE(h_.connection_upgrade);
}

TEST_F(RequestTest, HopByHopStandardHeaders) {
  ASSERT_EQ(withHeaders({"Connection: keep-alive", "Keep-Alive: timeout=5", "Proxy-Connection: x",
                         "TE: trailers", "Trailer: X-Sum", "Upgrade: h2c", "Content-Length: 1",
                         "X-Other: 1"}),
            kOk);
  EXPECT_FALSE(h_.isHopByHop(0));  // Host
  for (size_t i = 1; i <= 6; ++i) EXPECT_TRUE(h_.isHopByHop(i)) << h_.headers[i].name;
  EXPECT_FALSE(h_.isHopByHop(7));  // Content-Length
  EXPECT_FALSE(h_.isHopByHop(8));
  EXPECT_EQ(h_.hop_mask_lo, 0b1111110u);
}

TEST_F(RequestTest, HopByHopHeadersNamedByConnection) {
  ASSERT_EQ(withHeaders({"X-Foo: 1", "Connection: x-foo, X-BAR", "X-Bar: 2", "X-Baz: 3"}), kOk);
  EXPECT_TRUE(h_.isHopByHop(1));  // named before the Connection header that names it
  EXPECT_TRUE(h_.isHopByHop(2));
  EXPECT_TRUE(h_.isHopByHop(3));
  EXPECT_FALSE(h_.isHopByHop(4));
  EXPECT_FALSE(h_.isHopByHop(0));
}

TEST_F(RequestTest, ConnectionCannotStripFraming) {
  ASSERT_EQ(withHeaders({"Connection: Content-Length, Transfer-Encoding", "Content-Length: 3"}),
            kOk);
  EXPECT_TRUE(h_.isHopByHop(1));
  EXPECT_FALSE(h_.isHopByHop(2));
  ASSERT_EQ(withHeaders({"Connection: transfer-encoding", "Transfer-Encoding: chunked"}), kOk);
  EXPECT_FALSE(h_.isHopByHop(2));
}

TEST_F(RequestTest, ConnectionCannotStripHost) {
  ASSERT_EQ(withHeaders({"Connection: host"}), kOk);
  EXPECT_TRUE(h_.isHopByHop(1));   // the Connection header itself
  EXPECT_FALSE(h_.isHopByHop(0));  // Host (added first by withHeaders) stays
}

TEST_F(RequestTest, HopMaskAbove64AndManyConnectionTokens) {
  std::string conn = "Connection: x-100";
  for (int i = 0; i < 20; ++i) conn += ", t" + std::to_string(i);  // overflows the token cache
  std::vector<std::string> lines;
  for (int i = 1; i < 100; ++i) lines.push_back("X-" + std::to_string(i) + ": v");
  lines.push_back("X-100: v");
  lines.push_back("T19: v");
  lines.push_back(conn);
  buf_ = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (const auto& l : lines) buf_ += l + "\r\n";
  buf_ += "\r\n";
  ASSERT_EQ(parse(buf_), kOk);
  ASSERT_EQ(h_.header_count, 103u);
  EXPECT_TRUE(h_.isHopByHop(100));  // X-100
  EXPECT_TRUE(h_.isHopByHop(101));  // T19, found by the slow path
  EXPECT_TRUE(h_.isHopByHop(102));  // Connection
  EXPECT_FALSE(h_.isHopByHop(99));  // X-99
  EXPECT_EQ(h_.hop_mask_lo, 0u);
  EXPECT_EQ(h_.hop_mask_hi, uint64_t{0b111} << 36);
}

TEST_F(RequestTest, FindIsCaseInsensitiveAndReturnsTheFirst) {
  ASSERT_EQ(withHeaders({"X-Dup: 1", "x-dup: 2"}), kOk);
  const Header* h = h_.find("X-DUP");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->value, "1");
  EXPECT_EQ(h_.find("X-Du"), nullptr);
  EXPECT_EQ(h_.find("X-Dupe"), nullptr);
  ASSERT_NE(h_.find("host"), nullptr);
}

TEST_F(RequestTest, HeadIsFullyResetBetweenMessages) {
  ASSERT_EQ(withHeaders({"Content-Length: 5", "Connection: close, x", "X: 1", "Upgrade: a",
                         "Expect: 100-continue"}),
            kOk);
  ASSERT_EQ(parse(req("GET /2 HTTP/1.1", {"Host: b"})), kOk);
  EXPECT_EQ(h_.header_count, 1u);
  EXPECT_EQ(h_.body, BodyKind::kNone);
  EXPECT_EQ(h_.content_length, 0u);
  EXPECT_TRUE(h_.keep_alive);
  EXPECT_EQ(h_.hop_mask_lo, 0u);
  EXPECT_EQ(h_.upgrade, "");
  EXPECT_FALSE(h_.expect_continue);
}

TEST(HttpChars, TokenCharsAndCaseInsensitiveEquality) {
  EXPECT_TRUE(isTokenChar('a'));
  EXPECT_TRUE(isTokenChar('~'));
  EXPECT_TRUE(isTokenChar('!'));
  EXPECT_FALSE(isTokenChar(':'));
  EXPECT_FALSE(isTokenChar(' '));
  EXPECT_FALSE(isTokenChar('"'));
  EXPECT_FALSE(isTokenChar(0x80));
  EXPECT_FALSE(isTokenChar(0));
  EXPECT_TRUE(iequals("Content-Length", "content-LENGTH"));
  EXPECT_FALSE(iequals("Content-Length", "Content-Lengt"));
  EXPECT_FALSE(iequals("a", "b"));
  EXPECT_FALSE(iequals("[", "{"));  // only letters fold
}

TEST(HttpErrors, StatusAndDescription) {
  for (int i = 1; i <= static_cast<int>(ParseError::kBadChunk); ++i) {
    const auto e = static_cast<ParseError>(i);
    EXPECT_FALSE(describe(e).empty());
    EXPECT_NE(describe(e), describe(ParseError::kNone));
    const int s = statusFor(e);
    EXPECT_TRUE(s == 400 || s == 431 || s == 501 || s == 505) << s;
  }
  EXPECT_EQ(statusFor(ParseError::kBareCrOrLf), 400);
  EXPECT_EQ(statusFor(ParseError::kContentLengthAndTransferEncoding), 400);
}

}  // namespace
}  // namespace tandem::http
