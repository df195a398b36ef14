// ChunkedDecoder: valid bodies, strict rejections, and split-independence.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "http/parser.h"
#include "invariants.h"

namespace tandem::http {
namespace {

using fuzz::ChunkVerdict;
using fuzz::feedChunked;

ChunkVerdict whole(std::string_view body) {
  return feedChunked(body, [](size_t rest) { return rest; });
}

ChunkVerdict byteByByte(std::string_view body) {
  return feedChunked(body, [](size_t) { return size_t{1}; });
}

// Every way of cutting `body` in two, plus one byte at a time, gives the same verdict.
void expectSplitIndependent(std::string_view body) {
  const ChunkVerdict w = whole(body);
  EXPECT_EQ(byteByByte(body), w) << body;
  for (size_t cut = 1; cut < body.size(); ++cut) {
    bool first = true;
    const ChunkVerdict v = feedChunked(body, [&](size_t rest) {
      if (!first) return rest;
      first = false;
      return cut;
    });
    ASSERT_EQ(v, w) << "cut at " << cut << " of " << body;
  }
}

bool accepts(std::string_view body) {
  const ChunkVerdict v = whole(body);
  return v.done && !v.error && v.consumed == body.size();
}

bool rejects(std::string_view body) { return whole(body).error; }

TEST(ChunkedDecoder, SimpleBody) {
  ChunkedDecoder d;
  const std::string body = "5\r\nhello\r\n0\r\n\r\n";
  const auto step = d.feed(body);
  EXPECT_TRUE(step.done);
  EXPECT_FALSE(step.error);
  EXPECT_EQ(step.consumed, body.size());
  EXPECT_EQ(d.dataBytes(), 5u);
}

TEST(ChunkedDecoder, StopsAtTheEndOfTheBody) {
  const std::string body = "3\r\nabc\r\n0\r\n\r\n";
  const std::string next = "GET / HTTP/1.1\r\n\r\n";
  ChunkedDecoder d;
  const auto step = d.feed(body + next);
  EXPECT_TRUE(step.done);
  EXPECT_EQ(step.consumed, body.size());
  const auto again = d.feed(next);  // after the end: nothing more belongs to the body
  EXPECT_TRUE(again.done);
  EXPECT_EQ(again.consumed, 0u);
}

TEST(ChunkedDecoder, IncompleteBodyConsumesEverything) {
  ChunkedDecoder d;
  auto step = d.feed("a\r\n0123");
  EXPECT_FALSE(step.done);
  EXPECT_FALSE(step.error);
  EXPECT_EQ(step.consumed, 7u);
  EXPECT_EQ(d.dataBytes(), 4u);
  step = d.feed("456789\r\n0\r\n\r");
  EXPECT_FALSE(step.done);
  EXPECT_EQ(d.dataBytes(), 10u);
  step = d.feed("\nX");
  EXPECT_TRUE(step.done);
  EXPECT_EQ(step.consumed, 1u);
}

TEST(ChunkedDecoder, HexSizes) {
  EXPECT_TRUE(accepts("A\r\n0123456789\r\n0\r\n\r\n"));
  EXPECT_TRUE(accepts("a\r\n0123456789\r\n0\r\n\r\n"));
  EXPECT_TRUE(accepts("0005\r\nhello\r\n000\r\n\r\n"));
  EXPECT_EQ(whole("10\r\n" + std::string(16, 'x') + "\r\n0\r\n\r\n").data, 16u);
}

TEST(ChunkedDecoder, BadSizes) {
  for (const char* body : {"\r\n", "g\r\n", "-5\r\n", "+5\r\n", "0x5\r\n", " 5\r\n", "5 \r\n",
                           "5\t\r\n", ";a\r\n", "5\r\r\n", "5\n"}) {
    EXPECT_TRUE(rejects(body)) << body;
  }
}

TEST(ChunkedDecoder, SizeOverflow) {
  ChunkedDecoder d;
  EXPECT_FALSE(d.feed("ffffffffffffffff\r\n").error);  // 16 digits: the maximum
  EXPECT_TRUE(rejects("10000000000000000\r\n"));       // 17 digits
  EXPECT_TRUE(rejects("00000000000000001\r\n"));       // leading zeros count too
  EXPECT_FALSE(whole("000000000000000f\r\n").error);
}

TEST(ChunkedDecoder, Extensions) {
  EXPECT_TRUE(accepts("5;a\r\nhello\r\n0\r\n\r\n"));
  EXPECT_TRUE(accepts("5;a=b;c;d=e\r\nhello\r\n0;z\r\n\r\n"));
  EXPECT_TRUE(accepts("5;a=\"q \\\" x;y\"\r\nhello\r\n0\r\n\r\n"));
  EXPECT_TRUE(accepts("5 ;a\r\nhello\r\n0\t;b=\"\"\r\n\r\n"));  // BWS before ';' only
  EXPECT_TRUE(accepts("5;a=\"x\" ;b\r\nhello\r\n0\r\n\r\n"));
}

TEST(ChunkedDecoder, BadExtensions) {
  for (const char* body :
       {"5;\r\n", "5;=b\r\n", "5; a\r\n", "5;a =b\r\n", "5;a= b\r\n", "5;a=\r\n", "5;a=b c\r\n",
        "5;a=\"x\r\n", "5;a=\"x\ny\"\r\n", "5;a=\"x\"y\r\n", "5;a=\"\\\x01\"\r\n", "5;a\x01\r\n",
        "5;a=\"\x7f\"\r\n", "5;a\n", "5 ;a \r\n", "5;(a)\r\n"}) {
    EXPECT_TRUE(rejects(body)) << body;
  }
}

TEST(ChunkedDecoder, ChunkLineLengthIsBounded) {
  const std::string ok = "5;a=" + std::string(4096 - 6, 'x') + "\r\nhello\r\n0\r\n\r\n";
  EXPECT_TRUE(accepts(ok));  // size line of exactly 4096 bytes including CRLF
  const std::string bad = "5;a=" + std::string(4096 - 5, 'x') + "\r\n";
  EXPECT_TRUE(rejects(bad));
  EXPECT_TRUE(rejects("0;a=" + std::string(100000, 'x')));  // never finishes the line
}

TEST(ChunkedDecoder, DataMustEndWithCrlf) {
  EXPECT_TRUE(rejects("5\r\nhelloX\r\n0\r\n\r\n"));
  EXPECT_TRUE(rejects("5\r\nhello\n0\r\n\r\n"));
  EXPECT_TRUE(rejects("5\r\nhello\rX0\r\n\r\n"));
  EXPECT_TRUE(rejects("5\r\nhello world\r\n0\r\n\r\n"));  // longer than announced
}

TEST(ChunkedDecoder, FinalCrlf) {
  EXPECT_TRUE(rejects("0\r\n\n"));
  EXPECT_TRUE(rejects("0\r\n\rX"));
  EXPECT_TRUE(rejects("0\n\r\n"));
  const ChunkVerdict v = whole("0\r\n\r");
  EXPECT_FALSE(v.done);
  EXPECT_FALSE(v.error);
}

TEST(ChunkedDecoder, Trailers) {
  EXPECT_TRUE(accepts("3\r\nabc\r\n0\r\nX-Sum: 123\r\nX-Empty:\r\nX-B: a\tb \xc3\xa9\r\n\r\n"));
  EXPECT_EQ(whole("3\r\nabc\r\n0\r\nX: 1\r\n\r\nNEXT").consumed, 19u);
}

TEST(ChunkedDecoder, BadTrailers) {
  for (const char* body : {"0\r\nX-A: b\r\n c\r\n\r\n", "0\r\nX-A : b\r\n\r\n", "0\r\n: b\r\n\r\n",
                           "0\r\nX-A\r\n\r\n", "0\r\nX-A: b\x01\r\n\r\n", "0\r\nX-A: b\n\r\n",
                           "0\r\nX-A: b\rc\r\n\r\n", "0\r\n\tX: b\r\n\r\n"}) {
    EXPECT_TRUE(rejects(body)) << body;
  }
  EXPECT_TRUE(rejects("0\r\nX: " + std::string(20000, 'v') + "\r\n\r\n"));  // bounded section
}

// Framing and routing fields are forbidden in trailers (RFC 9110 §6.5.1): an error in any case and
// however the input is split, while names that only share a prefix with them pass.
TEST(ChunkedDecoder, FramingFieldsInTrailersAreErrors) {
  for (const char* body : {"0\r\nContent-Length: 5\r\n\r\n", "0\r\ncontent-length:5\r\n\r\n",
                           "0\r\nX-A: 1\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
                           "0\r\nHost: evil.test\r\n\r\n", "3\r\nabc\r\n0\r\nhOsT:\r\n\r\n"}) {
    EXPECT_TRUE(rejects(body)) << body;
    expectSplitIndependent(body);
  }
  for (const char* body :
       {"0\r\nContent-Length-X: 5\r\n\r\n", "0\r\nContent-Lengt: 5\r\n\r\n",
        "0\r\nHosts: a\r\n\r\n", "0\r\nX-Host: a\r\n\r\n", "0\r\nX: Content-Length\r\n\r\n"}) {
    EXPECT_TRUE(accepts(body)) << body;
  }
}

TEST(ChunkedDecoder, ErrorReportsTheOffendingOffset) {
  ChunkedDecoder d;
  auto step = d.feed("5\r\nhello\r\nz");
  EXPECT_TRUE(step.error);
  EXPECT_EQ(step.consumed, 10u);
  step = d.feed("0\r\n\r\n");  // stays failed
  EXPECT_TRUE(step.error);
  EXPECT_EQ(step.consumed, 0u);
  d.reset();
  step = d.feed("0\r\n\r\n");
  EXPECT_TRUE(step.done);
  EXPECT_EQ(d.dataBytes(), 0u);
}

TEST(ChunkedDecoder, LargeChunkStreamsInPieces) {
  ChunkedDecoder d;
  EXPECT_EQ(d.feed("100000\r\n").consumed, 8u);
  const std::string piece(4096, 'x');
  for (int i = 0; i < 256; ++i) {
    const auto step = d.feed(piece);
    ASSERT_EQ(step.consumed, piece.size());
    ASSERT_FALSE(step.done || step.error);
  }
  EXPECT_EQ(d.dataBytes(), 0x100000u);
  EXPECT_TRUE(d.feed("\r\n0\r\n\r\n").done);
}

TEST(ChunkedDecoder, EverySplitGivesTheSameVerdict) {
  const std::vector<std::string> bodies = {
      "5\r\nhello\r\n0\r\n\r\n",
      "5;a=\"q \\\" x\";b\r\nhello\r\n6 ;c=d\r\n world\r\n0\r\nX-T: v\r\nY: w\r\n\r\nNEXT",
      "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
      "5\r\nhelloX\r\n",
      "5\r\nhello\r\n0\r\nX-A : b\r\n\r\n",
      "ffffffffffffffff0\r\n",
      "4\r\nwiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n",
  };
  for (const auto& b : bodies) expectSplitIndependent(b);
  EXPECT_EQ(whole(bodies[6]).data, 23u);
}

TEST(ChunkedDecoder, FuzzInvariantsHoldOnHandPickedInputs) {
  for (const char* b : {"", "0", "0\r\n\r\n", "1\r\n\r\n\r\n", "5;a=\"", "0\r\nA:\r\n\r\nB"}) {
    EXPECT_EQ(fuzz::checkChunked(b), "") << b;
  }
}

}  // namespace
}  // namespace tandem::http
