// Scalar parsers and small helpers: table tests, one row per accepted or rejected spelling.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.h"

namespace tandem::config {
namespace {

using ::testing::HasSubstr;

struct DurationCase {
  std::string_view text;
  int64_t ms;
};

TEST(ParseDuration, AcceptsUnitsAndFractions) {
  const DurationCase cases[] = {
      {"250ms", 250},    {"2s", 2'000},           {"1m", 60'000},
      {"1h", 3'600'000}, {"1.5s", 1'500},         {"0s", 0},
      {"0ms", 0},        {"0.25s", 250},          {"1.5m", 90'000},
      {"0.001s", 1},     {"10s", 10'000},         {"2.5h", 9'000'000},
      {"007ms", 7},      {"1.000000000s", 1'000},
  };
  for (const auto& c : cases) {
    auto result = parseDuration(c.text);
    ASSERT_TRUE(result.has_value()) << c.text << ": " << result.error();
    EXPECT_EQ(result->count(), c.ms) << c.text;
  }
}

struct RejectCase {
  std::string_view text;
  std::string_view why;
};

TEST(ParseDuration, RejectsBadSpellings) {
  const RejectCase cases[] = {
      {"", "empty"},
      {"10", "missing unit"},
      {"1.5", "missing unit"},
      {"s", "must start with a number"},
      {".5s", "must start with a number"},
      {"-1s", "negative"},
      {"1.s", "missing digits"},
      {"1.5ms", "1ms resolution"},
      {"0.0001s", "1ms resolution"},
      {"1.0000000001s", "too many decimals"},
      {"1d", "unknown unit 'd'"},
      {"1 s", "unknown unit ' s'"},
      {"1sec", "unknown unit 'sec'"},
      {"1S", "unknown unit 'S'"},
      {"1e3ms", "unknown unit 'e3ms'"},
      {"99999999999999999999s", "too large"},
      {"9223372036854775807s", "too large"},
      {"9223372036854775808ms", "too large"},
  };
  for (const auto& c : cases) {
    auto result = parseDuration(c.text);
    ASSERT_FALSE(result.has_value()) << "'" << c.text << "' parsed as " << result->count() << "ms";
    EXPECT_THAT(result.error(), HasSubstr(std::string(c.why))) << c.text;
  }
}

TEST(ParseDuration, LargestValueFits) {
  auto result = parseDuration("9223372036854775807ms");
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->count(), INT64_MAX);
}

struct SizeCase {
  std::string_view text;
  uint64_t bytes;
};

TEST(ParseSize, AcceptsBytesAndBinaryUnits) {
  const SizeCase cases[] = {
      {"0", 0},
      {"512", 512},
      {"16KiB", 16 * 1024},
      {"1MiB", 1024 * 1024},
      {"2GiB", 2ull * 1024 * 1024 * 1024},
      {"1024KiB", 1024 * 1024},
      {"0KiB", 0},
      {"18446744073709551615", UINT64_MAX},
  };
  for (const auto& c : cases) {
    auto result = parseSize(c.text);
    ASSERT_TRUE(result.has_value()) << c.text << ": " << result.error();
    EXPECT_EQ(*result, c.bytes) << c.text;
  }
}

TEST(ParseSize, RejectsEverythingElse) {
  const RejectCase cases[] = {
      {"", "empty"},
      {"1KB", "unknown unit 'KB'"},
      {"1kb", "unknown unit 'kb'"},
      {"1MB", "unknown unit 'MB'"},
      {"1kib", "unknown unit 'kib'"},
      {"1B", "unknown unit 'B'"},
      {"1TiB", "unknown unit 'TiB'"},
      {"1 KiB", "unknown unit ' KiB'"},
      {"1.5MiB", "whole number"},
      {"-1", "negative"},
      {"KiB", "must start with a number"},
      {"18446744073709551616", "too large"},
      {"17179869184GiB", "too large"},
  };
  for (const auto& c : cases) {
    auto result = parseSize(c.text);
    ASSERT_FALSE(result.has_value()) << "'" << c.text << "' parsed as " << *result;
    EXPECT_THAT(result.error(), HasSubstr(std::string(c.why))) << c.text;
  }
}

struct AddressCase {
  std::string_view text;
  std::string_view host;
  uint16_t port;
  std::string_view canonical;
};

TEST(ParseAddress, AcceptsLiteralsAndLocalhost) {
  const AddressCase cases[] = {
      {"127.0.0.1:80", "127.0.0.1", 80, "127.0.0.1:80"},
      {"0.0.0.0:65535", "0.0.0.0", 65535, "0.0.0.0:65535"},
      {"localhost:8080", "127.0.0.1", 8080, "127.0.0.1:8080"},
      {"[::1]:443", "::1", 443, "[::1]:443"},
      {"[0:0::1]:1", "::1", 1, "[::1]:1"},
      {"[::]:9000", "::", 9000, "[::]:9000"},
      {"[2001:DB8::1]:53", "2001:db8::1", 53, "[2001:db8::1]:53"},
      {"198.18.2.3:0", "198.18.2.3", 0, "198.18.2.3:0"},  // the loader, not the parser, rejects port 0
  };
  for (const auto& c : cases) {
    auto result = parseAddress(c.text);
    ASSERT_TRUE(result.has_value()) << c.text << ": " << result.error();
    EXPECT_EQ(result->host, c.host) << c.text;
    EXPECT_EQ(result->port, c.port) << c.text;
    EXPECT_EQ(result->text(), c.canonical) << c.text;
  }
}

TEST(ParseAddress, RejectsMalformed) {
  const RejectCase cases[] = {
      {"127.0.0.1", "HOST:PORT"},
      {"127.0.0.1:", "port"},
      {":80", "missing host"},
      {"127.0.0.1:65536", "port"},
      {"127.0.0.1:-1", "port"},
      {"127.0.0.1:+1", "port"},
      {"127.0.0.1:80x", "port"},
      {"::1:80", "[ADDR]:PORT"},
      {"[::1]80", "missing ':PORT'"},
      {"[::1", "missing ']'"},
      {"[]:80", "missing host"},
      {"256.0.0.1:80", "not an IPv4 address"},
      {"example.com:80", "host names other than localhost"},
      {"[127.0.0.1]:80", "not an IPv6 address"},
      {"[localhost]:80", "not an IPv6 address"},
  };
  for (const auto& c : cases) {
    auto result = parseAddress(c.text);
    ASSERT_FALSE(result.has_value()) << "'" << c.text << "' parsed as " << result->text();
    EXPECT_THAT(result.error(), HasSubstr(std::string(c.why))) << c.text;
  }
}

TEST(IsPrime, SmallAndMaglevSizes) {
  for (uint64_t n : {2, 3, 5, 101, 7919, 65537, 5000011}) EXPECT_TRUE(isPrime(n)) << n;
  for (uint64_t n : {0, 1, 4, 9, 100, 561, 65536, 5000013}) EXPECT_FALSE(isPrime(n)) << n;
}

TEST(Balance, KnownAndHashAlgorithms) {
  for (std::string_view b :
       {"round_robin", "least_conn", "p2c", "random", "source_hash", "ring_hash", "maglev"}) {
    EXPECT_TRUE(isKnownBalance(b)) << b;
  }
  EXPECT_FALSE(isKnownBalance("roundrobin"));
  EXPECT_FALSE(isKnownBalance(""));
  for (std::string_view b : {"source_hash", "ring_hash", "maglev"}) EXPECT_TRUE(isHashBalance(b));
  for (std::string_view b : {"round_robin", "least_conn", "p2c", "random", "x"}) {
    EXPECT_FALSE(isHashBalance(b)) << b;
  }
}

TEST(ConfigError, TextWithAndWithoutLine) {
  EXPECT_EQ((ConfigError{"lb.yaml", 7, "bad"}).text(), "lb.yaml:7: bad");
  EXPECT_EQ((ConfigError{"lb.yaml", 0, "empty"}).text(), "lb.yaml: empty");
}

TEST(Config, FindBackend) {
  Config config;
  config.backends.push_back(Backend{.name = "app"});
  config.backends.push_back(Backend{.name = "pg"});
  ASSERT_NE(config.findBackend("pg"), nullptr);
  EXPECT_EQ(config.findBackend("pg"), &config.backends[1]);
  EXPECT_EQ(config.findBackend("app"), &config.backends[0]);
  EXPECT_EQ(config.findBackend("ap"), nullptr);
  EXPECT_EQ(config.findBackend(""), nullptr);
}

}  // namespace
}  // namespace tandem::config
