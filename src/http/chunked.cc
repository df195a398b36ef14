// Streaming validator for the chunked transfer coding (RFC 9112 §7.1).
//
// The state lives entirely in the decoder and every byte is examined on its own (chunk data is
// skipped in bulk), so any split of the input gives the same result as feeding it whole.
//
// Strictness choices, each closing a known request-smuggling vector:
//  - chunk-size is 1*16HEXDIG (leading zeros count towards the 16): no sign, no "0x", no overflow.
//  - Whitespace in a chunk line is accepted only as BWS directly before a ';' ("5 ;x=y"), which
//    RFC 9112 requires recipients to accept. "5 \r\n", "5; x", "5;x = y" are rejected: parsers
//    disagree about them.
//  - Extensions are ';' token [ '=' ( token / quoted-string ) ]; a CR or LF inside a quoted string
//    is an error (a lenient peer might end the line there).
//  - Every line ends with CRLF; a bare CR or LF is an error. A chunk line is at most
//    kMaxChunkLineBytes, the trailer section at most kMaxTrailerBytes.
//  - Trailer fields are validated like header fields (token name, no whitespace before ':', no
//    control characters but HTAB in the value, no obs-fold).
//  - A trailer field that frames or routes the message (Content-Length, Transfer-Encoding, Host)
//    is an error: RFC 9110 §6.5.1 forbids sending them there and lets a recipient treat them as
//    one, and a peer that merges trailers into the header section would act on them.
#include <algorithm>
#include <iterator>
#include <string_view>

#include "http/chars.h"
#include "http/parser.h"

namespace tandem::http {

namespace {
constexpr uint32_t kMaxChunkLineBytes = 4096;
constexpr uint32_t kMaxTrailerBytes = 16384;
constexpr uint32_t kMaxSizeDigits = 16;

constexpr std::string_view kForbiddenTrailers[] = {"content-length", "transfer-encoding", "host"};
static_assert(std::size(kForbiddenTrailers) <= 8, "name_match_ has 8 bits");

inline uint64_t hexValue(unsigned char c) {
  if (c <= '9') return c - '0';
  return (c | 0x20) - 'a' + 10;
}
}  // namespace

using detail::is;
using detail::kFieldChar;
using detail::kHexChar;
using detail::kQdTextChar;
using detail::kTchar;
using detail::kWsChar;

void ChunkedDecoder::matchTrailerName(unsigned char c) {
  // The names are lowercase letters and '-'; no other tchar becomes one of those with | 0x20.
  const unsigned char lc = c | 0x20;
  for (size_t i = 0; i < std::size(kForbiddenTrailers); ++i) {
    const std::string_view name = kForbiddenTrailers[i];
    if (name_len_ >= name.size() || name[name_len_] != lc) name_match_ &= ~(1u << i);
  }
  if (name_len_ < 255) ++name_len_;
}

bool ChunkedDecoder::forbiddenTrailerName() const {
  for (size_t i = 0; i < std::size(kForbiddenTrailers); ++i) {
    if ((name_match_ & (1u << i)) && kForbiddenTrailers[i].size() == name_len_) return true;
  }
  return false;
}

ChunkedDecoder::Step ChunkedDecoder::feed(std::string_view in) {
  Step step;
  if (s_ == S::kDone) {
    step.done = true;
    return step;
  }
  if (s_ == S::kError) {
    step.error = true;
    return step;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  size_t i = 0;
  while (i < n) {
    if (s_ == S::kData) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, n - i));
      i += take;
      remaining_ -= take;
      data_bytes_ += take;
      if (remaining_ == 0) s_ = S::kDataCr;
      continue;
    }
    const unsigned char c = p[i];
    bool ok = true;
    if (s_ <= S::kSizeLf) {
      ok = ++line_bytes_ <= kMaxChunkLineBytes;
    } else if (s_ >= S::kTrailerStart && s_ <= S::kFinalLf) {
      ok = ++line_bytes_ <= kMaxTrailerBytes;
    }
    // After a chunk-size or extension element: what may follow it.
    const auto afterElement = [&]() {
      if (c == ';') {
        s_ = S::kExtNameStart;
      } else if (is(c, kWsChar)) {
        s_ = S::kExtBws;
      } else if (c == '\r') {
        s_ = S::kSizeLf;
      } else {
        ok = false;
      }
    };
    if (ok) {
      switch (s_) {
        case S::kSize:
          if (is(c, kHexChar)) {
            ok = size_digits_++ < kMaxSizeDigits;
            remaining_ = (remaining_ << 4) | hexValue(c);
          } else {
            ok = size_digits_ > 0;
            if (ok) afterElement();
          }
          break;
        case S::kExtBws:
          if (c == ';') {
            s_ = S::kExtNameStart;
          } else {
            ok = is(c, kWsChar);
          }
          break;
        case S::kExtNameStart:
          ok = is(c, kTchar);
          s_ = S::kExtName;
          break;
        case S::kExtName:
          if (c == '=') {
            s_ = S::kExtValueStart;
          } else if (!is(c, kTchar)) {
            afterElement();
          }
          break;
        case S::kExtValueStart:
          if (c == '"') {
            s_ = S::kExtQuoted;
          } else {
            ok = is(c, kTchar);
            s_ = S::kExtToken;
          }
          break;
        case S::kExtToken:
          if (!is(c, kTchar)) afterElement();
          break;
        case S::kExtQuoted:
          if (c == '"') {
            s_ = S::kExtAfterQuoted;
          } else if (c == '\\') {
            s_ = S::kExtQuotedPair;
          } else {
            ok = is(c, kQdTextChar);
          }
          break;
        case S::kExtQuotedPair:
          ok = is(c, kFieldChar);
          s_ = S::kExtQuoted;
          break;
        case S::kExtAfterQuoted:
          afterElement();
          break;
        case S::kSizeLf:
          ok = c == '\n';
          if (remaining_ == 0) {
            s_ = S::kTrailerStart;  // last-chunk
            line_bytes_ = 0;
          } else {
            s_ = S::kData;
          }
          break;
        case S::kDataCr:
          ok = c == '\r';
          s_ = S::kDataLf;
          break;
        case S::kDataLf:
          ok = c == '\n';
          s_ = S::kSize;
          size_digits_ = 0;
          line_bytes_ = 0;
          break;
        case S::kTrailerStart:
          if (c == '\r') {
            s_ = S::kFinalLf;
          } else {
            ok = is(c, kTchar);  // rejects obs-fold (SP/HTAB) and an empty name
            s_ = S::kTrailerName;
            name_len_ = 0;
            name_match_ = 0xff;
            matchTrailerName(c);
          }
          break;
        case S::kTrailerName:
          if (c == ':') {
            ok = !forbiddenTrailerName();
            s_ = S::kTrailerValue;
          } else {
            ok = is(c, kTchar);
            matchTrailerName(c);
          }
          break;
        case S::kTrailerValue:
          if (c == '\r') {
            s_ = S::kTrailerLf;
          } else {
            ok = is(c, kFieldChar);
          }
          break;
        case S::kTrailerLf:
          ok = c == '\n';
          s_ = S::kTrailerStart;
          break;
        case S::kFinalLf:
          ok = c == '\n';
          s_ = S::kDone;
          break;
        case S::kData:
        case S::kDone:
        case S::kError:
          ok = false;  // cannot happen: handled above
          break;
      }
    }
    if (!ok) {
      s_ = S::kError;
      step.consumed = i;
      step.error = true;
      return step;
    }
    ++i;
    if (s_ == S::kDone) {
      step.consumed = i;
      step.done = true;
      return step;
    }
  }
  step.consumed = n;
  return step;
}

}  // namespace tandem::http
