// Scalar value parsers (durations, sizes, addresses) and the small Config helpers. No yaml-cpp
// here: these are reused by the admin API and tests without pulling in the YAML adapter.
#include <arpa/inet.h>

#include <array>
#include <charconv>
#include <limits>

#include "config/config.h"

namespace tandem::config {

namespace {

struct Unit {
  std::string_view suffix;
  uint64_t scale;
};

// Reads a run of decimal digits into `out`; false on overflow. Advances `pos`.
bool readDigits(std::string_view text, size_t& pos, uint64_t& out, size_t& count) {
  out = 0;
  count = 0;
  while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
    if (__builtin_mul_overflow(out, 10, &out) ||
        __builtin_add_overflow(out, static_cast<uint64_t>(text[pos] - '0'), &out)) {
      return false;
    }
    ++pos;
    ++count;
  }
  return true;
}

}  // namespace

tl::expected<Duration, std::string> parseDuration(std::string_view text) {
  static constexpr std::array<Unit, 4> kUnits{
      {{"ms", 1}, {"s", 1'000}, {"m", 60'000}, {"h", 3'600'000}}};
  // Cap fractional digits so the fixed-point arithmetic below cannot overflow on sane inputs.
  static constexpr size_t kMaxFractionDigits = 9;
  if (text.empty()) return tl::unexpected<std::string>("empty duration");
  if (text[0] == '-') return tl::unexpected<std::string>("must not be negative");
  size_t pos = 0;
  uint64_t whole = 0;
  size_t whole_digits = 0;
  if (!readDigits(text, pos, whole, whole_digits)) return tl::unexpected<std::string>("too large");
  if (whole_digits == 0) return tl::unexpected<std::string>("must start with a number");
  uint64_t fraction = 0;
  size_t fraction_digits = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    if (!readDigits(text, pos, fraction, fraction_digits) || fraction_digits > kMaxFractionDigits) {
      return tl::unexpected<std::string>("too many decimals");
    }
    if (fraction_digits == 0) return tl::unexpected<std::string>("missing digits after '.'");
  }
  const std::string_view suffix = text.substr(pos);
  if (suffix.empty()) return tl::unexpected<std::string>("missing unit (use ms, s, m or h)");
  const Unit* unit = nullptr;
  for (const Unit& u : kUnits) {
    if (u.suffix == suffix) unit = &u;
  }
  if (unit == nullptr) {
    return tl::unexpected<std::string>("unknown unit '" + std::string(suffix) +
                                       "' (use ms, s, m or h)");
  }
  uint64_t denominator = 1;
  for (size_t i = 0; i < fraction_digits; ++i) denominator *= 10;
  // value_ms = (whole + fraction / denominator) * scale, computed exactly in integers.
  uint64_t whole_ms = 0;
  uint64_t fraction_scaled = 0;
  if (__builtin_mul_overflow(whole, unit->scale, &whole_ms) ||
      __builtin_mul_overflow(fraction, unit->scale, &fraction_scaled)) {
    return tl::unexpected<std::string>("too large");
  }
  if (fraction_scaled % denominator != 0) {
    return tl::unexpected<std::string>("finer than the 1ms resolution");
  }
  uint64_t total = 0;
  if (__builtin_add_overflow(whole_ms, fraction_scaled / denominator, &total) ||
      total > static_cast<uint64_t>(std::numeric_limits<Duration::rep>::max())) {
    return tl::unexpected<std::string>("too large");
  }
  return Duration{static_cast<Duration::rep>(total)};
}

tl::expected<uint64_t, std::string> parseSize(std::string_view text) {
  static constexpr std::array<Unit, 4> kUnits{
      {{"", 1}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}}};
  if (text.empty()) return tl::unexpected<std::string>("empty size");
  if (text[0] == '-') return tl::unexpected<std::string>("must not be negative");
  size_t pos = 0;
  uint64_t number = 0;
  size_t digits = 0;
  if (!readDigits(text, pos, number, digits)) return tl::unexpected<std::string>("too large");
  if (digits == 0) return tl::unexpected<std::string>("must start with a number");
  const std::string_view suffix = text.substr(pos);
  for (const Unit& u : kUnits) {
    if (u.suffix != suffix) continue;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(number, u.scale, &bytes)) {
      return tl::unexpected<std::string>("too large");
    }
    return bytes;
  }
  if (!suffix.empty() && suffix[0] == '.') {
    return tl::unexpected<std::string>("must be a whole number (use a smaller unit)");
  }
  return tl::unexpected<std::string>("unknown unit '" + std::string(suffix) +
                                     "' (use a plain byte count, KiB, MiB or GiB)");
}

tl::expected<SocketAddress, std::string> parseAddress(std::string_view text) {
  std::string_view host;
  std::string_view port_text;
  bool bracketed = false;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return tl::unexpected<std::string>("missing ']'");
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest[0] != ':') {
      return tl::unexpected<std::string>("missing ':PORT' after ']'");
    }
    port_text = rest.substr(1);
    bracketed = true;
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return tl::unexpected<std::string>("expected HOST:PORT");
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return tl::unexpected<std::string>("IPv6 addresses must be written as [ADDR]:PORT");
    }
  }
  if (host.empty()) return tl::unexpected<std::string>("missing host");
  uint32_t port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return tl::unexpected<std::string>("port must be a number in 0..65535");
  }
  SocketAddress address;
  address.port = static_cast<uint16_t>(port);
  const std::string host_string(host);
  // inet_ntop gives the canonical spelling, so "[0::1]" and "[::1]" compare equal later.
  char canonical[INET6_ADDRSTRLEN] = {};
  if (bracketed) {
    in6_addr v6{};
    if (inet_pton(AF_INET6, host_string.c_str(), &v6) != 1) {
      return tl::unexpected<std::string>("'" + host_string + "' is not an IPv6 address");
    }
    inet_ntop(AF_INET6, &v6, canonical, sizeof(canonical));
  } else if (host == "localhost") {
    // Resolved here rather than by DNS so that the config means the same thing on every host.
    return SocketAddress{"127.0.0.1", address.port};
  } else {
    in_addr v4{};
    if (inet_pton(AF_INET, host_string.c_str(), &v4) != 1) {
      return tl::unexpected<std::string>(
          "'" + host_string +
          "' is not an IPv4 address (host names other than localhost are not "
          "supported)");
    }
    inet_ntop(AF_INET, &v4, canonical, sizeof(canonical));
  }
  address.host = canonical;
  return address;
}

std::string SocketAddress::text() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

tl::expected<HttpUrl, std::string> parseHttpUrl(std::string_view text) {
  constexpr std::string_view kScheme = "http://";
  if (!text.starts_with(kScheme)) {
    return tl::unexpected<std::string>("must start with http:// (https is not supported)");
  }
  std::string_view rest = text.substr(kScheme.size());
  HttpUrl url;
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) url.path = std::string(rest.substr(slash));
  if (authority.empty()) return tl::unexpected<std::string>("has no host");
  if (authority.find('@') != std::string_view::npos) {
    return tl::unexpected<std::string>("must not carry user information");
  }
  for (char c : url.path) {
    if (c <= ' ' || c >= 0x7f || c == '#') {
      return tl::unexpected<std::string>("path must be visible ASCII without '#'");
    }
  }
  // A port is present if the authority ends in ":digits" outside IPv6 brackets.
  const size_t colon = authority.rfind(':');
  const size_t bracket = authority.rfind(']');
  const bool has_port =
      colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket);
  std::string with_port(authority);
  if (!has_port) with_port += ":80";
  auto address = parseAddress(with_port);
  if (!address) return tl::unexpected<std::string>(address.error());
  if (address->port == 0) return tl::unexpected<std::string>("port must be in 1..65535");
  url.address = *address;
  return url;
}

namespace {
constexpr std::array<std::string_view, 7> kBalances{"round_robin", "least_conn", "p2c",   "random",
                                                    "source_hash", "ring_hash",  "maglev"};
}  // namespace

bool isKnownBalance(std::string_view balance) {
  for (std::string_view known : kBalances) {
    if (known == balance) return true;
  }
  return false;
}

bool isHashBalance(std::string_view balance) {
  return balance == "source_hash" || balance == "ring_hash" || balance == "maglev";
}

bool isPrime(uint64_t n) {
  if (n < 2) return false;
  if (n % 2 == 0) return n == 2;
  for (uint64_t d = 3; d <= n / d; d += 2) {
    if (n % d == 0) return false;
  }
  return true;
}

const Backend* Config::findBackend(std::string_view name) const {
  for (const Backend& backend : backends) {
    if (backend.name == name) return &backend;
  }
  return nullptr;
}

std::string ConfigError::text() const {
  if (line == 0) return file + ": " + reason;
  return file + ":" + std::to_string(line) + ": " + reason;
}

}  // namespace tandem::config
