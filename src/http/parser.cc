// Strict HTTP/1.1 head parser (RFC 9112). See parser.h for the contract.
//
// Two phases. scanHead() looks only at line ends (memchr for LF) and remembers in ParseState how
// far it got, so a trickled head costs O(new bytes); it rejects a bare LF as soon as it arrives and
// stops at the first empty line that follows a non-empty one (earlier empty lines are the leading
// CRLFs RFC 9112 §2.2 lets a server skip). Once the head is complete,
// parseRequest()/parseResponse() validate it in a single pass. Both phases depend only on the
// head's bytes, so any way of delivering the same bytes gives the same result.
//
// The full parse relies on the head ending in CRLFCRLF: every scanning loop stops at a CR (no
// character class contains CR), so none reads past the head.
#include "http/parser.h"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "http/chars.h"

namespace tandem::http {

using detail::eqLower;
using detail::is;
using detail::kDigitChar;
using detail::kFieldChar;
using detail::kHostChar;
using detail::kLower;
using detail::kTargetChar;
using detail::kTchar;
using detail::kWsChar;

bool isTokenChar(unsigned char c) { return is(c, kTchar); }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (kLower[static_cast<unsigned char>(a[i])] != kLower[static_cast<unsigned char>(b[i])]) {
      return false;
    }
  }
  return true;
}

const Header* MessageHead::find(std::string_view name) const {
  for (size_t i = 0; i < header_count; ++i) {
    if (headers[i].name.size() == name.size() && iequals(headers[i].name, name)) {
      return &headers[i];
    }
  }
  return nullptr;
}

int statusFor(ParseError e) {
  switch (e) {
    case ParseError::kHeadTooLarge:
    case ParseError::kTooManyHeaders:
      return 431;
    case ParseError::kUnsupportedVersion:
      return 505;
    case ParseError::kBadTransferEncoding:
      return 501;  // RFC 9112 §6.1: a transfer coding we do not implement
    default:
      return 400;
  }
}

std::string_view describe(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return "no error";
    case ParseError::kHeadTooLarge:
      return "message head too large";
    case ParseError::kBadRequestLine:
      return "malformed request line";
    case ParseError::kBadStatusLine:
      return "malformed status line";
    case ParseError::kUnsupportedVersion:
      return "unsupported HTTP version";
    case ParseError::kBadHeaderName:
      return "malformed header name";
    case ParseError::kBadHeaderValue:
      return "invalid character in header value";
    case ParseError::kObsFold:
      return "obsolete line folding";
    case ParseError::kBareCrOrLf:
      return "bare CR or LF";
    case ParseError::kTooManyHeaders:
      return "too many header fields";
    case ParseError::kBadContentLength:
      return "invalid Content-Length";
    case ParseError::kContentLengthAndTransferEncoding:
      return "both Content-Length and Transfer-Encoding";
    case ParseError::kBadTransferEncoding:
      return "unsupported Transfer-Encoding";
    case ParseError::kMissingHost:
      return "missing or repeated Host";
    case ParseError::kBadChunk:
      return "malformed chunked body";
  }
  return "unknown error";
}

namespace {

struct ScanResult {
  ParseStatus status;
  ParseError error;
  size_t head_length;  // kDone: bytes of the head
};

// Checks the LF at j (all earlier LFs already checked). Returns kIncomplete to keep scanning.
inline ScanResult onLineFeed(const char* p, size_t j) {
  if (j == 0 || p[j - 1] != '\r') return {ParseStatus::kError, ParseError::kBareCrOrLf, j};
  if (j >= 4 && p[j - 2] == '\n' && p[j - 4] != '\n') {
    return {ParseStatus::kDone, ParseError::kNone, j};
  }
  return {ParseStatus::kIncomplete, ParseError::kNone, 0};
}

// Finds the end of the head in buf[0, min(size, limit)), resuming at st.scan. Every LF must follow
// a CR. An empty line (CRLF right after an LF) ends the head if the line before it was not empty.
// On a verdict, st.scan stays at the deciding LF so that a repeated call reaches the same verdict.
ScanResult scanHead(std::string_view buf, size_t limit, ParseState& st) {
  const char* p = buf.data();
  const size_t lim = std::min(buf.size(), limit);
  size_t i = st.scan <= buf.size() ? std::min(st.scan, lim) : 0;  // defensive: shrunk buffer
  const auto verdict = [&st](ScanResult r) {
    st.scan = r.head_length;  // the LF's index
    if (r.status == ParseStatus::kDone) ++r.head_length;
    return r;
  };
#if defined(__SSE2__)
  // One pass over 16-byte blocks instead of a memchr call per line: heads have short lines.
  const __m128i lf = _mm_set1_epi8('\n');
  for (; i + 16 <= lim; i += 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    for (unsigned m = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, lf))); m != 0;
         m &= m - 1) {
      const ScanResult r = onLineFeed(p, i + static_cast<size_t>(__builtin_ctz(m)));
      if (r.status != ParseStatus::kIncomplete) return verdict(r);
    }
  }
#endif
  while (i < lim) {
    const void* hit = std::memchr(p + i, '\n', lim - i);
    if (hit == nullptr) {
      i = lim;
      break;
    }
    const size_t j = static_cast<size_t>(static_cast<const char*>(hit) - p);
    const ScanResult r = onLineFeed(p, j);
    if (r.status != ParseStatus::kIncomplete) return verdict(r);
    i = j + 1;
  }
  st.scan = i;
  if (buf.size() > limit) return {ParseStatus::kError, ParseError::kHeadTooLarge, 0};
  return {ParseStatus::kIncomplete, ParseError::kNone, 0};
}

// The error for an unexpected byte at p: a CR without LF is a bare CR, anything else `fallback`.
inline ParseError unexpected(const char* p, ParseError fallback) {
  return (p[0] == '\r' && p[1] != '\n') ? ParseError::kBareCrOrLf : fallback;
}

inline void markHop(MessageHead& h, size_t i) {
  if (i < 64) {
    h.hop_mask_lo |= uint64_t{1} << i;
  } else {
    h.hop_mask_hi |= uint64_t{1} << (i - 64);
  }
}

inline std::string_view view(const char* b, const char* e) {
  return {b, static_cast<size_t>(e - b)};
}

inline std::string_view trimOws(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is(s[b], kWsChar)) ++b;
  while (e > b && is(s[e - 1], kWsChar)) --e;
  return s.substr(b, e - b);
}

// Calls fn(element) for every non-empty, OWS-trimmed element of a comma-separated list.
template <typename Fn>
inline void forEachListElement(std::string_view v, Fn&& fn) {
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    if (comma == std::string_view::npos) comma = v.size();
    std::string_view el = trimOws(v.substr(start, comma - start));
    if (!el.empty()) fn(el);
    start = comma + 1;
  }
}

inline bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is(c, kTchar)) return false;
  }
  return true;
}

// Everything learnt from the header fields that decides framing and connection handling.
struct Fields {
  size_t host_count = 0;
  std::string_view host;
  bool has_cl = false;
  uint64_t cl = 0;
  bool has_te = false;
  bool te_malformed = false;     // empty element or non-token coding
  bool te_other = false;         // a coding other than chunked
  bool te_last_chunked = false;  // the final coding seen so far is chunked
  uint32_t te_chunked = 0;       // how often chunked appears
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool conn_upgrade = false;
  bool expect_continue = false;
  // Connection options name headers to drop; a few fit here, more fall back to re-reading them.
  static constexpr size_t kMaxTokens = 16;
  std::string_view conn_tokens[kMaxTokens];
  size_t conn_token_count = 0;
  bool conn_tokens_overflow = false;
};

// Content-Length = 1*DIGIT; a list ("5, 5") or repeated field is fine only if all values agree.
// Values above INT64_MAX are rejected: most backends parse into a signed 64-bit integer.
ParseError parseContentLength(std::string_view v, Fields& f) {
  size_t i = 0;
  const size_t n = v.size();
  for (;;) {
    const size_t start = i;
    uint64_t x = 0;
    while (i < n && is(v[i], kDigitChar)) {
      const uint64_t d = static_cast<uint64_t>(v[i] - '0');
      if (x > (uint64_t{INT64_MAX} - d) / 10) return ParseError::kBadContentLength;
      x = x * 10 + d;
      ++i;
    }
    if (i == start) return ParseError::kBadContentLength;  // empty element, sign, junk
    if (f.has_cl && f.cl != x) return ParseError::kBadContentLength;
    f.has_cl = true;
    f.cl = x;
    while (i < n && is(v[i], kWsChar)) ++i;
    if (i == n) return ParseError::kNone;
    if (v[i] != ',') return ParseError::kBadContentLength;
    ++i;
    while (i < n && is(v[i], kWsChar)) ++i;
  }
}

// Transfer-Encoding: strict list syntax (no empty elements, tokens only; "chunked;x=y" fails).
void parseTransferEncoding(std::string_view v, Fields& f) {
  f.has_te = true;
  size_t start = 0;
  for (;;) {
    size_t comma = v.find(',', start);
    const bool last = comma == std::string_view::npos;
    if (last) comma = v.size();
    const std::string_view el = trimOws(v.substr(start, comma - start));
    if (!isToken(el)) {
      f.te_malformed = true;
      return;
    }
    if (eqLower(el, "chunked")) {
      ++f.te_chunked;
      f.te_last_chunked = true;
    } else {
      f.te_other = true;
      f.te_last_chunked = false;
    }
    if (last) return;
    start = comma + 1;
  }
}

void parseConnection(std::string_view v, Fields& f) {
  forEachListElement(v, [&f](std::string_view tok) {
    if (eqLower(tok, "close")) {
      f.conn_close = true;
    } else if (eqLower(tok, "keep-alive")) {
      f.conn_keep_alive = true;
    } else if (eqLower(tok, "upgrade")) {
      f.conn_upgrade = true;
    }
    if (f.conn_token_count < Fields::kMaxTokens) {
      f.conn_tokens[f.conn_token_count++] = tok;
    } else {
      f.conn_tokens_overflow = true;
    }
  });
}

// Hop-by-hop by name (RFC 9110 §7.6.1). Content-Length and Transfer-Encoding are never dropped,
// even when a Connection option names them: stripping framing is a classic desync trick.
void classifyHeader(MessageHead& h, size_t idx, Fields& f, bool request, ParseError& err) {
  const std::string_view name = h.headers[idx].name;
  const std::string_view value = h.headers[idx].value;
  switch (name.size()) {
    case 2:
      if (eqLower(name, "te")) markHop(h, idx);
      break;
    case 4:
      if (request && eqLower(name, "host")) {
        if (f.host_count++ == 0) f.host = value;
      }
      break;
    case 6:
      if (request && eqLower(name, "expect") && eqLower(value, "100-continue")) {
        f.expect_continue = true;
      }
      break;
    case 7:
      if (eqLower(name, "trailer")) {
        markHop(h, idx);
      } else if (eqLower(name, "upgrade")) {
        markHop(h, idx);
        if (h.upgrade.empty()) h.upgrade = value;
      }
      break;
    case 10:
      if (eqLower(name, "connection")) {
        markHop(h, idx);
        parseConnection(value, f);
      } else if (eqLower(name, "keep-alive")) {
        markHop(h, idx);
      }
      break;
    case 14:
      if (eqLower(name, "content-length")) err = parseContentLength(value, f);
      break;
    case 16:
      if (eqLower(name, "proxy-connection")) markHop(h, idx);
      break;
    case 17:
      if (eqLower(name, "transfer-encoding")) parseTransferEncoding(value, f);
      break;
    default:
      break;
  }
}

bool namedByConnection(const MessageHead& h, const Fields& f, std::string_view name) {
  if (!f.conn_tokens_overflow) {
    for (size_t t = 0; t < f.conn_token_count; ++t) {
      if (f.conn_tokens[t].size() == name.size() && iequals(f.conn_tokens[t], name)) return true;
    }
    return false;
  }
  bool found = false;
  for (size_t i = 0; i < h.header_count && !found; ++i) {
    if (!eqLower(h.headers[i].name, "connection")) continue;
    forEachListElement(h.headers[i].value, [&](std::string_view tok) {
      if (tok.size() == name.size() && iequals(tok, name)) found = true;
    });
  }
  return found;
}

void markConnectionNamed(MessageHead& h, const Fields& f) {
  if (f.conn_token_count == 0) return;
  for (size_t i = 0; i < h.header_count; ++i) {
    if (h.isHopByHop(i)) continue;
    const std::string_view name = h.headers[i].name;
    // Framing and Host are never dropped on a client's say-so: without them the backend would
    // read a different message than the one we validated.
    if (namedByConnection(h, f, name) && !eqLower(name, "content-length") &&
        !eqLower(name, "transfer-encoding") && !eqLower(name, "host")) {
      markHop(h, i);
    }
  }
}

// Returns the first byte at or after p that is not a field-value char (stops at the line's CR).
inline const char* skipFieldChars(const char* p, const char* end) {
#if defined(__SSE2__)
  // Values are most of a head's bytes: check 16 at a time for controls (< 0x20) and DEL; an HTAB
  // is the only such byte allowed and is stepped over.
  const __m128i sp = _mm_set1_epi8(0x20);
  const __m128i del = _mm_set1_epi8(0x7f);
  while (end - p >= 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i printable = _mm_cmpeq_epi8(_mm_max_epu8(x, sp), x);  // x >= 0x20 unsigned
    const unsigned special = static_cast<unsigned>(_mm_movemask_epi8(
        _mm_or_si128(_mm_xor_si128(printable, _mm_set1_epi8(-1)), _mm_cmpeq_epi8(x, del))));
    if (special == 0) {
      p += 16;
      continue;
    }
    p += __builtin_ctz(special);
    if (*p != '\t') return p;
    ++p;
  }
#else
  (void)end;
#endif
  while (is(*p, kFieldChar)) ++p;
  return p;
}

// Returns the first byte at or after p that may not appear in a request-target.
inline const char* skipTargetChars(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i lo = _mm_set1_epi8(0x20);
  const __m128i hi = _mm_set1_epi8(0x7f);
  const __m128i hash = _mm_set1_epi8('#');
  while (end - p >= 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // Signed compares: obs-text (>= 0x80) is negative and so fails "> 0x20".
    const __m128i ok = _mm_andnot_si128(
        _mm_cmpeq_epi8(x, hash), _mm_and_si128(_mm_cmpgt_epi8(x, lo), _mm_cmplt_epi8(x, hi)));
    const unsigned bad = static_cast<unsigned>(_mm_movemask_epi8(ok)) ^ 0xffffu;
    if (bad != 0) return p + __builtin_ctz(bad);
    p += 16;
  }
#else
  (void)end;
#endif
  while (is(*p, kTargetChar)) ++p;
  return p;
}

// Parses header lines from p up to and including the final empty line, which ends at `end`.
ParseError parseFields(const char* p, const char* end, MessageHead& h, Fields& f, bool request) {
  for (;;) {
    if (*p == '\r') {
      if (p[1] == '\n') return ParseError::kNone;  // the empty line ending the head
      return ParseError::kBareCrOrLf;
    }
    if (is(*p, kWsChar)) return ParseError::kObsFold;
    const char* name_begin = p;
    while (is(*p, kTchar)) ++p;
    if (*p != ':' || p == name_begin) return unexpected(p, ParseError::kBadHeaderName);
    const char* name_end = p++;
    while (is(*p, kWsChar)) ++p;
    const char* value_begin = p;
    p = skipFieldChars(p, end);
    if (*p != '\r') return ParseError::kBadHeaderValue;  // NUL, DEL or another control char
    if (p[1] != '\n') return ParseError::kBareCrOrLf;
    const char* value_end = p;
    while (value_end > value_begin && is(value_end[-1], kWsChar)) --value_end;
    p += 2;

    if (h.header_count == kMaxHeaders) return ParseError::kTooManyHeaders;
    const size_t idx = h.header_count++;
    h.headers[idx] = Header{view(name_begin, name_end), view(value_begin, value_end)};
    ParseError err = ParseError::kNone;
    classifyHeader(h, idx, f, request, err);
    if (err != ParseError::kNone) return err;
  }
}

void resetHead(MessageHead& h) {
  h.header_count = 0;
  h.head_length = 0;
  h.version_minor = 1;
  h.body = BodyKind::kNone;
  h.content_length = 0;
  h.keep_alive = true;
  h.connection_upgrade = false;
  h.upgrade = {};
  h.hop_mask_lo = 0;
  h.hop_mask_hi = 0;
}

// Reads "HTTP/" DIGIT "." DIGIT at p. Returns false if the bytes are not of that shape.
inline bool readVersion(const char* p, int& major, int& minor) {
  // Short-circuit evaluation stops at the first mismatch; the line's CR always mismatches.
  if (!(p[0] == 'H' && p[1] == 'T' && p[2] == 'T' && p[3] == 'P' && p[4] == '/' &&
        is(p[5], kDigitChar) && p[6] == '.' && is(p[7], kDigitChar))) {
    return false;
  }
  major = p[5] - '0';
  minor = p[7] - '0';
  return true;
}

Method methodFrom(std::string_view m) {
  switch (m.size()) {
    case 3:
      if (m == "GET") return Method::kGet;
      if (m == "PUT") return Method::kPut;
      break;
    case 4:
      if (m == "HEAD") return Method::kHead;
      if (m == "POST") return Method::kPost;
      break;
    case 5:
      if (m == "TRACE") return Method::kTrace;
      if (m == "PATCH") return Method::kPatch;
      break;
    case 6:
      if (m == "DELETE") return Method::kDelete;
      break;
    case 7:
      if (m == "OPTIONS") return Method::kOptions;
      if (m == "CONNECT") return Method::kConnect;
      break;
    default:
      break;
  }
  return Method::kOther;
}

// authority-form (CONNECT only): uri-host ":" port, no userinfo, path, query or fragment.
bool isAuthorityForm(std::string_view t) {
  const size_t colon = t.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == t.size()) return false;
  if (t.size() - colon - 1 > 5) return false;
  for (size_t i = colon + 1; i < t.size(); ++i) {
    if (!is(t[i], kDigitChar)) return false;
  }
  for (size_t i = 0; i < colon; ++i) {
    if (!is(t[i], kHostChar)) return false;
  }
  return true;
}

// absolute-form: scheme ":" hier-part (RFC 3986 scheme syntax; the rest is checked char-wise).
bool isAbsoluteForm(std::string_view t) {
  const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (t.empty() || !alpha(t[0])) return false;
  size_t i = 1;
  while (i < t.size() &&
         (alpha(t[i]) || is(t[i], kDigitChar) || t[i] == '+' || t[i] == '-' || t[i] == '.')) {
    ++i;
  }
  return i < t.size() && t[i] == ':' && i + 1 < t.size();
}

bool isHostValue(std::string_view v) {
  for (char c : v) {
    if (!is(c, kHostChar)) return false;
  }
  return true;
}

void finishConnection(MessageHead& h, const Fields& f) {
  h.keep_alive = h.version_minor >= 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
  h.connection_upgrade = f.conn_upgrade;
  markConnectionNamed(h, f);
}

ParseError parseRequest(const char* b, size_t len, RequestHead& out) {
  resetHead(out);
  out.method = Method::kOther;
  out.method_text = {};
  out.target = {};
  out.host = {};
  out.expect_continue = false;
  out.head_length = len;

  const char* p = b;
  while (p[0] == '\r' && p[1] == '\n') p += 2;  // leading empty lines (RFC 9112 §2.2)

  const char* m = p;
  while (is(*p, kTchar)) ++p;
  if (p == m || *p != ' ') return unexpected(p, ParseError::kBadRequestLine);
  out.method_text = view(m, p);
  out.method = methodFrom(out.method_text);
  ++p;

  const char* t = p;
  p = skipTargetChars(p, b + len);
  if (p == t || *p != ' ') return unexpected(p, ParseError::kBadRequestLine);
  out.target = view(t, p);
  ++p;

  int major = 0, minor = 0;
  if (!readVersion(p, major, minor)) return unexpected(p, ParseError::kBadRequestLine);
  p += 8;
  if (*p != '\r') return unexpected(p, ParseError::kBadRequestLine);
  if (p[1] != '\n') return ParseError::kBareCrOrLf;
  if (major != 1 || minor > 1) return ParseError::kUnsupportedVersion;
  out.version_minor = static_cast<uint8_t>(minor);
  p += 2;

  const std::string_view target = out.target;
  if (out.method == Method::kConnect) {
    if (!isAuthorityForm(target)) return ParseError::kBadRequestLine;
  } else if (target == "*") {
    if (out.method != Method::kOptions) return ParseError::kBadRequestLine;
  } else if (target[0] != '/' && !isAbsoluteForm(target)) {
    return ParseError::kBadRequestLine;
  }

  Fields f;
  if (ParseError e = parseFields(p, b + len, out, f, /*request=*/true); e != ParseError::kNone)
    return e;

  if (f.host_count > 1 || (f.host_count == 0 && out.version_minor == 1)) {
    return ParseError::kMissingHost;
  }
  if (!isHostValue(f.host)) return ParseError::kBadHeaderValue;
  out.host = f.host;

  if (f.has_te) {
    if (f.has_cl) return ParseError::kContentLengthAndTransferEncoding;
    // Only "chunked", exactly once; HTTP/1.0 has no transfer codings (RFC 9112 §6.1).
    if (out.version_minor == 0 || f.te_malformed || f.te_other || f.te_chunked != 1) {
      return ParseError::kBadTransferEncoding;
    }
    out.body = BodyKind::kChunked;
  } else if (f.has_cl && f.cl > 0) {
    out.body = BodyKind::kContentLength;
    out.content_length = f.cl;
  }
  out.expect_continue = f.expect_continue && out.version_minor == 1;
  finishConnection(out, f);
  return ParseError::kNone;
}

ParseError parseResponse(const char* b, size_t len, Method request_method, ResponseHead& out) {
  resetHead(out);
  out.status = 0;
  out.reason = {};
  out.head_length = len;

  const char* p = b;
  int major = 0, minor = 0;
  if (!readVersion(p, major, minor)) return unexpected(p, ParseError::kBadStatusLine);
  p += 8;
  if (*p != ' ') return unexpected(p, ParseError::kBadStatusLine);
  if (major != 1 || minor > 1) return ParseError::kUnsupportedVersion;
  out.version_minor = static_cast<uint8_t>(minor);
  ++p;
  if (!(p[0] >= '1' && p[0] <= '5' && is(p[1], kDigitChar) && is(p[2], kDigitChar))) {
    return unexpected(p, ParseError::kBadStatusLine);
  }
  out.status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
  p += 3;
  if (*p == ' ') {
    const char* r = ++p;
    while (is(*p, kFieldChar)) ++p;
    out.reason = view(r, p);
  }
  // A missing reason phrase without its SP ("HTTP/1.1 200\r\n") is tolerated.
  if (*p != '\r') return ParseError::kBadStatusLine;
  if (p[1] != '\n') return ParseError::kBareCrOrLf;
  p += 2;

  Fields f;
  if (ParseError e = parseFields(p, b + len, out, f, /*request=*/false); e != ParseError::kNone)
    return e;
  if (f.has_te && f.has_cl) return ParseError::kContentLengthAndTransferEncoding;
  if (f.has_te && (f.te_malformed || f.te_chunked > 1)) return ParseError::kBadTransferEncoding;

  finishConnection(out, f);
  const int s = out.status;
  if (request_method == Method::kHead || (s >= 100 && s < 200) || s == 204 || s == 304) {
    out.body = BodyKind::kNone;
  } else if (request_method == Method::kConnect && s >= 200 && s < 300) {
    out.body = BodyKind::kNone;  // the connection becomes a tunnel
    out.connection_upgrade = false;
  } else if (f.has_te) {
    // RFC 9112 §6.3: chunked not last => the body runs until the server closes.
    out.body = f.te_last_chunked ? BodyKind::kChunked : BodyKind::kUntilClose;
  } else if (f.has_cl) {
    out.body = f.cl > 0 ? BodyKind::kContentLength : BodyKind::kNone;
    out.content_length = f.cl;
  } else {
    out.body = BodyKind::kUntilClose;
  }
  // Until-close framing ends the connection; an HTTP/1.0 response with Transfer-Encoding has
  // suspect framing (RFC 9112 §6.1), so do not reuse the connection after it either.
  if (out.body == BodyKind::kUntilClose || (f.has_te && out.version_minor == 0)) {
    out.keep_alive = false;
  }
  return ParseError::kNone;
}

}  // namespace

ParseResult parseRequestHead(std::string_view buf, size_t max_head_bytes, ParseState& st,
                             RequestHead& out) {
  const ScanResult sc = scanHead(buf, max_head_bytes, st);
  if (sc.status != ParseStatus::kDone) return {sc.status, sc.error};
  const ParseError e = parseRequest(buf.data(), sc.head_length, out);
  if (e != ParseError::kNone) return {ParseStatus::kError, e};
  return {ParseStatus::kDone, ParseError::kNone};
}

ParseResult parseResponseHead(std::string_view buf, size_t max_head_bytes, Method request_method,
                              ParseState& st, ResponseHead& out) {
  const ScanResult sc = scanHead(buf, max_head_bytes, st);
  if (sc.status != ParseStatus::kDone) return {sc.status, sc.error};
  const ParseError e = parseResponse(buf.data(), sc.head_length, request_method, out);
  if (e != ParseError::kNone) return {ParseStatus::kError, e};
  return {ParseStatus::kDone, ParseError::kNone};
}

}  // namespace tandem::http
