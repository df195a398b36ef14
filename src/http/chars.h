#pragma once
// Character classes of RFC 9110/9112 as one 256-entry table, shared by the head parser and the
// chunked decoder. Internal to src/http.
#include <array>
#include <cstdint>
#include <string_view>

namespace tandem::http::detail {

enum CharClass : uint8_t {
  kTchar = 1 << 0,       // token character
  kFieldChar = 1 << 1,   // allowed in a field value / reason phrase: HTAB, SP, VCHAR, obs-text
  kTargetChar = 1 << 2,  // allowed in a request-target: VCHAR except '#'
  kDigitChar = 1 << 3,
  kHexChar = 1 << 4,
  kWsChar = 1 << 5,      // SP or HTAB (OWS/BWS)
  kQdTextChar = 1 << 6,  // qdtext of a quoted-string
  kHostChar = 1 << 7,    // unreserved / sub-delims / ":" / "[" / "]" / "%" (uri-host [":" port])
};

constexpr std::array<uint8_t, 256> makeClassTable() {
  std::array<uint8_t, 256> t{};
  constexpr std::string_view kTokenPunct = "!#$%&'*+-.^_`|~";
  constexpr std::string_view kHostPunct = "-._~!$&'()*+,;=:[]%";
  for (int c = 0; c < 256; ++c) {
    uint8_t v = 0;
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    if (alpha || digit || kTokenPunct.find(static_cast<char>(c)) != std::string_view::npos) {
      v |= kTchar;
    }
    if (c == '\t' || (c >= 0x20 && c != 0x7f)) v |= kFieldChar;
    if (c > 0x20 && c < 0x7f && c != '#') v |= kTargetChar;
    if (digit) v |= kDigitChar;
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= kHexChar;
    if (c == ' ' || c == '\t') v |= kWsChar;
    if (c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
        (c >= 0x5d && c <= 0x7e) || c >= 0x80) {
      v |= kQdTextChar;
    }
    if (alpha || digit || kHostPunct.find(static_cast<char>(c)) != std::string_view::npos) {
      v |= kHostChar;
    }
    t[c] = v;
  }
  return t;
}

inline constexpr std::array<uint8_t, 256> kClass = makeClassTable();

constexpr std::array<uint8_t, 256> makeLowerTable() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = static_cast<uint8_t>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return t;
}

inline constexpr std::array<uint8_t, 256> kLower = makeLowerTable();

inline bool is(unsigned char c, uint8_t cls) { return (kClass[c] & cls) != 0; }
inline bool is(char c, uint8_t cls) { return is(static_cast<unsigned char>(c), cls); }

// Case-insensitive equality with a literal that is already lower case.
inline bool eqLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (kLower[static_cast<unsigned char>(s[i])] != static_cast<unsigned char>(lower[i])) {
      return false;
    }
  }
  return true;
}

}  // namespace tandem::http::detail
