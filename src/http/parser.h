#pragma once
// Strict HTTP/1.1 message-head parser (RFC 9112), zero-copy and incremental.
//
// Zero-copy: every string_view in a parsed head points into the caller's buffer, which must stay
// unchanged while the head is used. Incremental: the caller calls parse*Head() each time more bytes
// arrive; it returns kIncomplete until the terminating CRLFCRLF is present, remembering in `scan`
// how far it has already looked so repeated calls cost O(new bytes) until the head is complete.
// Strictness: anything RFC 9112 does not allow, or allows but is a known smuggling vector, is an
// error (see ParseError); the proxy answers 400/431/501 and closes, forwarding nothing.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tandem::http {

enum class ParseStatus : uint8_t { kIncomplete, kDone, kError };

enum class ParseError : uint8_t {
  kNone,
  kHeadTooLarge,    // request line + headers over the limit (431 for requests)
  kBadRequestLine,  // method/target/version malformed
  kBadStatusLine,
  kUnsupportedVersion,  // not HTTP/1.0 or HTTP/1.1 (505)
  kBadHeaderName,       // empty, non-token chars, or whitespace before the colon
  kBadHeaderValue,      // control characters (except HTAB) in a value
  kObsFold,             // a header line starting with SP/HTAB
  kBareCrOrLf,          // CR not followed by LF, or LF not preceded by CR
  kTooManyHeaders,      // over kMaxHeaders (431 for requests)
  kBadContentLength,    // not 1*DIGIT, overflow, or several differing values
  kContentLengthAndTransferEncoding,
  kBadTransferEncoding,  // chunked not last (request), unknown coding, chunked twice
  kMissingHost,          // HTTP/1.1 request without exactly one Host
  kBadChunk,             // chunked body: bad size, extension, missing CRLF, bad trailer
};

// HTTP status the proxy should answer for a request-side error.
int statusFor(ParseError e);
std::string_view describe(ParseError e);

struct Header {
  std::string_view name;   // as received (case preserved)
  std::string_view value;  // leading/trailing OWS trimmed
};

inline constexpr size_t kMaxHeaders = 128;

enum class BodyKind : uint8_t {
  kNone,           // no body (no CL/TE on a request; HEAD/1xx/204/304 responses, CL: 0)
  kContentLength,  // exactly content_length bytes
  kChunked,        // chunked transfer coding; use ChunkedDecoder
  kUntilClose,     // response without length: body runs until the backend closes
};

// Fields common to requests and responses, filled by the parsers.
struct MessageHead {
  Header headers[kMaxHeaders];
  size_t header_count = 0;
  size_t head_length = 0;     // bytes of the head including the final CRLFCRLF
  uint8_t version_minor = 1;  // HTTP/1.x
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;           // from version + Connection: close/keep-alive
  bool connection_upgrade = false;  // Connection contains the "upgrade" token
  std::string_view upgrade;         // Upgrade header value, if any
  // Indices into headers[] of hop-by-hop headers that a proxy must not forward: Connection,
  // Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade(unless tunnelling), Transfer-Encoding is
  // NOT in this list (the proxy forwards chunked framing as is), plus every header named by
  // a Connection token. Bit i set <=> headers[i] is hop-by-hop.
  uint64_t hop_mask_lo = 0, hop_mask_hi = 0;  // 128 bits, one per header slot
  bool isHopByHop(size_t i) const {
    return i < 64 ? (hop_mask_lo >> i) & 1 : (hop_mask_hi >> (i - 64)) & 1;
  }
  // First header with this name (ASCII case-insensitive), or nullptr.
  const Header* find(std::string_view name) const;
};

enum class Method : uint8_t {
  kGet,
  kHead,
  kPost,
  kPut,
  kDelete,
  kOptions,
  kTrace,
  kConnect,
  kPatch,
  kOther
};

struct RequestHead : MessageHead {
  std::string_view method_text;
  Method method = Method::kOther;
  std::string_view target;       // origin-form or absolute-form as received
  std::string_view host;         // Host header value
  bool expect_continue = false;  // Expect: 100-continue
};

struct ResponseHead : MessageHead {
  int status = 0;
  std::string_view reason;
};

// State carried between incremental calls for one message. Reset (= {}) before each new message.
struct ParseState {
  size_t scan = 0;  // bytes already searched for the end of the head
};

struct ParseResult {
  ParseStatus status = ParseStatus::kIncomplete;
  ParseError error = ParseError::kNone;
};

// Parses a request head at the start of `buf`. `max_head_bytes` bounds the request line + headers
// (kHeadTooLarge once exceeded, even while incomplete).
ParseResult parseRequestHead(std::string_view buf, size_t max_head_bytes, ParseState& st,
                             RequestHead& out);

// Parses a response head. `request_method` decides the body rules (HEAD => no body; CONNECT 2xx =>
// tunnel, reported as kNone with connection_upgrade=false). 1xx responses have BodyKind::kNone.
ParseResult parseResponseHead(std::string_view buf, size_t max_head_bytes, Method request_method,
                              ParseState& st, ResponseHead& out);

// Streaming validator for a chunked body. Feed it the bytes after the head; it reports how many
// of them belong to the body (chunk framing + data + trailers) so the proxy can forward them
// verbatim, and when the final CRLF after the last chunk/trailers has been seen.
class ChunkedDecoder {
 public:
  struct Step {
    size_t consumed = 0;  // bytes of `in` that belong to the body (forward these)
    bool done = false;    // the whole chunked body, including trailers, has been consumed
    bool error = false;   // malformed; ParseError::kBadChunk
  };
  // Consumes as much of `in` as belongs to the body. Never consumes past the end of the body.
  Step feed(std::string_view in);
  uint64_t dataBytes() const { return data_bytes_; }  // payload bytes seen so far
  void reset() { *this = ChunkedDecoder{}; }

 private:
  // One state per position in the RFC 9112 §7.1 grammar; see chunked.cc, which relies on the
  // order (chunk-line states up to kSizeLf, trailer states kTrailerStart..kFinalLf).
  enum class S : uint8_t {
    kSize,
    kExtBws,
    kExtNameStart,
    kExtName,
    kExtValueStart,
    kExtToken,
    kExtQuoted,
    kExtQuotedPair,
    kExtAfterQuoted,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailerStart,
    kTrailerName,
    kTrailerValue,
    kTrailerLf,
    kFinalLf,
    kDone,
    kError
  };
  S s_ = S::kSize;
  uint64_t remaining_ = 0;  // data bytes left in the current chunk / chunk size being read
  uint32_t size_digits_ = 0;
  uint32_t line_bytes_ = 0;  // bytes of the current chunk line, or of the whole trailer section
  uint64_t data_bytes_ = 0;
  // The trailer field name being read, matched byte by byte against the names forbidden there.
  uint8_t name_len_ = 0;
  uint8_t name_match_ = 0;  // bit i: still equal to a prefix of kForbiddenTrailers[i]
  void matchTrailerName(unsigned char c);
  bool forbiddenTrailerName() const;
};

// True if `c` is a tchar (RFC 9110 token character).
bool isTokenChar(unsigned char c);

// ASCII case-insensitive comparison.
bool iequals(std::string_view a, std::string_view b);

}  // namespace tandem::http
