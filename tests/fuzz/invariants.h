#pragma once
// Invariants shared by the libFuzzer targets and the corpus replay unit test. Each check returns
// an empty string when the input behaves, or a description of the first violation.
//
// The central invariant: the parsers depend only on the bytes, never on how they arrived. So a
// head parsed from growing prefixes (including one byte at a time) must equal the one-shot parse,
// and a chunked body fed in pieces must give the same verdict as fed whole.
#include <cstdint>
#include <cstring>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>

#include "http/parser.h"

namespace tandem::http::fuzz {

inline constexpr size_t kFuzzHeadLimit = 8192;

// Deterministic step sizes derived from the input (xorshift seeded by FNV-1a).
class Steps {
 public:
  explicit Steps(std::string_view data) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : data) h = (h ^ c) * 1099511628211ull;
    s_ = h | 1;
  }
  size_t next(size_t max) {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 7;
    s_ ^= s_ << 17;
    return max == 0 ? 0 : 1 + static_cast<size_t>(s_ % max);
  }

 private:
  uint64_t s_;
};

inline std::string sameView(const char* what, std::string_view a, std::string_view b) {
  if (a.data() == b.data() && a.size() == b.size()) return {};
  if (a.empty() && b.empty()) return {};
  return std::string(what) + " differs: '" + std::string(a) + "' vs '" + std::string(b) + "'";
}

inline std::string compareCommon(const MessageHead& a, const MessageHead& b) {
  if (a.header_count != b.header_count) return "header_count differs";
  for (size_t i = 0; i < a.header_count; ++i) {
    if (auto e = sameView("header name", a.headers[i].name, b.headers[i].name); !e.empty())
      return e;
    if (auto e = sameView("header value", a.headers[i].value, b.headers[i].value); !e.empty()) {
      return e;
    }
  }
  if (a.head_length != b.head_length) return "head_length differs";
  if (a.version_minor != b.version_minor) return "version differs";
  if (a.body != b.body || a.content_length != b.content_length) return "framing differs";
  if (a.keep_alive != b.keep_alive) return "keep_alive differs";
  if (a.connection_upgrade != b.connection_upgrade) return "connection_upgrade differs";
  if (auto e = sameView("upgrade", a.upgrade, b.upgrade); !e.empty()) return e;
  if (a.hop_mask_lo != b.hop_mask_lo || a.hop_mask_hi != b.hop_mask_hi) return "hop mask differs";
  return {};
}

inline std::string compare(const RequestHead& a, const RequestHead& b) {
  if (auto e = compareCommon(a, b); !e.empty()) return e;
  if (auto e = sameView("method", a.method_text, b.method_text); !e.empty()) return e;
  if (auto e = sameView("target", a.target, b.target); !e.empty()) return e;
  if (auto e = sameView("host", a.host, b.host); !e.empty()) return e;
  if (a.method != b.method || a.expect_continue != b.expect_continue) return "request differs";
  return {};
}

inline std::string compare(const ResponseHead& a, const ResponseHead& b) {
  if (auto e = compareCommon(a, b); !e.empty()) return e;
  if (auto e = sameView("reason", a.reason, b.reason); !e.empty()) return e;
  if (a.status != b.status) return "status differs";
  return {};
}

inline bool within(std::string_view v, std::string_view buf, size_t len) {
  return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + len);
}

// Structural properties of any successfully parsed head.
inline std::string checkHead(const MessageHead& h, std::string_view buf, size_t limit) {
  if (h.head_length < 4 || h.head_length > buf.size() || h.head_length > limit) {
    return "head_length out of range";
  }
  if (buf.substr(h.head_length - 4, 4) != "\r\n\r\n") return "head does not end in CRLFCRLF";
  if (h.header_count > kMaxHeaders) return "too many headers accepted";
  for (size_t i = 0; i < h.header_count; ++i) {
    const Header& f = h.headers[i];
    if (f.name.empty() || !within(f.name, buf, h.head_length) ||
        !within(f.value, buf, h.head_length)) {
      return "header view outside the head";
    }
    for (char c : f.name) {
      if (!isTokenChar(static_cast<unsigned char>(c))) return "non-token char in a header name";
    }
    for (char c : f.value) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
        return "control char in a header value";
      }
    }
    if (!f.value.empty() && (f.value.front() == ' ' || f.value.back() == ' ' ||
                             f.value.front() == '\t' || f.value.back() == '\t')) {
      return "value not trimmed";
    }
  }
  if (h.body == BodyKind::kContentLength && h.content_length == 0) return "kContentLength with 0";
  if (h.body != BodyKind::kContentLength && h.content_length != 0) return "stray content_length";
  if (h.body == BodyKind::kUntilClose && h.keep_alive) return "until-close but keep-alive";
  return {};
}

// Feeds `body` to a fresh decoder in pieces whose sizes come from `next(remaining)`.
struct ChunkVerdict {
  size_t consumed = 0;
  bool done = false;
  bool error = false;
  uint64_t data = 0;
  bool operator==(const ChunkVerdict&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const ChunkVerdict& v) {
    return os << "{consumed=" << v.consumed << " done=" << v.done << " error=" << v.error
              << " data=" << v.data << "}";
  }
};

template <typename NextFn>
ChunkVerdict feedChunked(std::string_view body, NextFn&& next) {
  ChunkedDecoder d;
  ChunkVerdict v;
  size_t pos = 0;
  while (pos < body.size()) {
    const size_t n = next(body.size() - pos);
    const auto step = d.feed(body.substr(pos, n));
    v.consumed += step.consumed;
    if (step.done || step.error) {
      v.done = step.done;
      v.error = step.error;
      break;
    }
    if (step.consumed != n) {
      v.error = true;  // consumed less without finishing: a contract violation, caught below
      v.consumed = SIZE_MAX;
      break;
    }
    pos += n;
  }
  v.data = d.dataBytes();
  return v;
}

inline std::string checkChunked(std::string_view body) {
  const ChunkVerdict whole = feedChunked(body, [](size_t rest) { return rest; });
  if (whole.consumed > body.size()) return "chunked: consumed more than given";
  if (!whole.done && !whole.error && whole.consumed != body.size()) {
    return "chunked: stopped early without verdict";
  }
  if (whole.done && (whole.consumed < 5 || body.substr(whole.consumed - 2, 2) != "\r\n")) {
    return "chunked: done but body does not end with CRLF";
  }
  if (whole.data > whole.consumed) return "chunked: more data than consumed";
  Steps steps(body);
  if (!(feedChunked(body, [&](size_t rest) { return steps.next(rest); }) == whole)) {
    return "chunked: random split differs from whole";
  }
  if (body.size() > 1) {
    const size_t cut = Steps(body).next(body.size() - 1);
    bool first = true;
    auto two = [&](size_t rest) {
      if (!first) return rest;
      first = false;
      return cut;
    };
    if (!(feedChunked(body, two) == whole)) return "chunked: split in two differs from whole";
  }
  if (body.size() <= 4096 && !(feedChunked(body, [](size_t) { return size_t{1}; }) == whole)) {
    return "chunked: byte-at-a-time differs from whole";
  }
  // Feeding again after the verdict changes nothing.
  ChunkedDecoder d;
  const auto s1 = d.feed(body);
  const auto s2 = d.feed(body);
  if ((s1.done || s1.error) && (s2.consumed != 0 || s2.done != s1.done || s2.error != s1.error)) {
    return "chunked: feed after verdict is not idempotent";
  }
  return {};
}

// Parses with `parse(buf, state, head)` one-shot, from growing prefixes (random steps and, for
// small inputs, one byte at a time), and checks that all agree.
template <typename Head, typename ParseFn>
std::string checkIncremental(std::string_view buf, size_t limit, ParseFn&& parse) {
  auto one = std::make_unique<Head>();
  auto inc = std::make_unique<Head>();
  ParseState st;
  const ParseResult r1 = parse(buf, limit, st, *one);
  if (r1.status == ParseStatus::kIncomplete && buf.size() > limit) return "incomplete over limit";
  if ((r1.status == ParseStatus::kError) != (r1.error != ParseError::kNone)) {
    return "status/error mismatch";
  }
  if (r1.status == ParseStatus::kDone) {
    if (auto e = checkHead(*one, buf, limit); !e.empty()) return e;
    // The verdict depends on the head only.
    ParseState st2;
    auto again = std::make_unique<Head>();
    const ParseResult r2 = parse(buf.substr(0, one->head_length), limit, st2, *again);
    if (r2.status != ParseStatus::kDone) return "head alone does not parse";
    if (auto e = compare(*one, *again); !e.empty()) return "head alone: " + e;
  }
  // A repeated call with the same buffer and state repeats the verdict.
  const ParseResult rr = parse(buf, limit, st, *inc);
  if (rr.status != r1.status || rr.error != r1.error) return "repeated call differs";
  if (r1.status == ParseStatus::kDone) {
    if (auto e = compare(*one, *inc); !e.empty()) return "repeated call: " + e;
  }

  for (int mode = 0; mode < 2; ++mode) {
    if (mode == 1 && buf.size() > 2048) break;
    Steps steps(buf);
    ParseState s;
    ParseResult r;
    size_t len = 0;
    do {
      len += mode == 0 ? steps.next(buf.size() - len) : 1;
      r = parse(buf.substr(0, len), limit, s, *inc);
    } while (r.status == ParseStatus::kIncomplete && len < buf.size());
    if (r.status != r1.status || r.error != r1.error) {
      return std::string(mode == 0 ? "random steps" : "byte at a time") +
             ": verdict differs from one-shot";
    }
    if (r.status == ParseStatus::kDone) {
      if (auto e = compare(*one, *inc); !e.empty()) return "incremental: " + e;
    }
  }
  return {};
}

inline std::string checkRequest(std::string_view buf) {
  auto parse = [](std::string_view b, size_t limit, ParseState& st, RequestHead& h) {
    return parseRequestHead(b, limit, st, h);
  };
  if (auto e = checkIncremental<RequestHead>(buf, kFuzzHeadLimit, parse); !e.empty()) return e;
  // A small limit exercises kHeadTooLarge on the same bytes.
  if (auto e = checkIncremental<RequestHead>(buf, buf.size() / 2, parse); !e.empty()) {
    return "small limit: " + e;
  }
  // Bodies that follow a parsed head go through the chunked decoder.
  auto head = std::make_unique<RequestHead>();
  ParseState st;
  if (parseRequestHead(buf, kFuzzHeadLimit, st, *head).status == ParseStatus::kDone &&
      head->body == BodyKind::kChunked) {
    return checkChunked(buf.substr(head->head_length));
  }
  return {};
}

inline Method fuzzMethod(unsigned char c) {
  switch (c % 4) {
    case 0:
      return Method::kGet;
    case 1:
      return Method::kHead;
    case 2:
      return Method::kConnect;
    default:
      return Method::kPost;
  }
}

// Input: one byte choosing the request method ('G'=GET, 'H'=HEAD, 'C'=CONNECT, else by value),
// then the response bytes.
inline std::string checkResponse(std::string_view input) {
  if (input.empty()) return {};
  const unsigned char sel = static_cast<unsigned char>(input[0]);
  const Method m = sel == 'G'   ? Method::kGet
                   : sel == 'H' ? Method::kHead
                   : sel == 'C' ? Method::kConnect
                                : fuzzMethod(sel);
  const std::string_view buf = input.substr(1);
  auto parse = [m](std::string_view b, size_t limit, ParseState& st, ResponseHead& h) {
    return parseResponseHead(b, limit, m, st, h);
  };
  if (auto e = checkIncremental<ResponseHead>(buf, kFuzzHeadLimit, parse); !e.empty()) return e;
  if (auto e = checkIncremental<ResponseHead>(buf, buf.size() / 2, parse); !e.empty()) {
    return "small limit: " + e;
  }
  auto head = std::make_unique<ResponseHead>();
  ParseState st;
  if (parseResponseHead(buf, kFuzzHeadLimit, m, st, *head).status == ParseStatus::kDone) {
    if (head->status < 100 || head->status > 599) return "status out of range";
    if (head->body == BodyKind::kChunked) return checkChunked(buf.substr(head->head_length));
  }
  return {};
}

}  // namespace tandem::http::fuzz
