#pragma once
// Helpers shared by the http unit tests: comparable/printable ParseResult and short constructors.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <string_view>

#include "http/parser.h"

namespace tandem::http {

inline bool operator==(ParseResult a, ParseResult b) {
  return a.status == b.status && a.error == b.error;
}

inline std::ostream& operator<<(std::ostream& os, ParseResult r) {
  const char* s = r.status == ParseStatus::kDone         ? "done"
                  : r.status == ParseStatus::kIncomplete ? "incomplete"
                                                         : "error";
  return os << s << "(" << describe(r.error) << ")";
}

inline void PrintTo(ParseError e, std::ostream* os) { *os << describe(e); }

namespace test {

inline constexpr ParseResult kOk{ParseStatus::kDone, ParseError::kNone};
inline constexpr ParseResult kMore{ParseStatus::kIncomplete, ParseError::kNone};
inline constexpr ParseResult err(ParseError e) { return {ParseStatus::kError, e}; }

// Builds a request head: request line, then each header line, then the empty line.
inline std::string req(std::string_view line, std::initializer_list<std::string_view> headers) {
  std::string s(line);
  s += "\r\n";
  for (auto h : headers) {
    s += h;
    s += "\r\n";
  }
  s += "\r\n";
  return s;
}

}  // namespace test
}  // namespace tandem::http
