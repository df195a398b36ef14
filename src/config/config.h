#pragma once
// Tandem's configuration (DESIGN §4): plain structs produced by the YAML loader, validated, and
// then treated as immutable (shared read-only by workers through snapshots).
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace tandem::config {

using Duration = std::chrono::milliseconds;

struct SocketAddress {
  std::string host;  // numeric IPv4/IPv6 literal or "localhost" resolved at load time to 127.0.0.1
  uint16_t port = 0;
  std::string text() const;  // "host:port" ("[v6]:port")
  bool operator==(const SocketAddress&) const = default;
};

enum class ListenerMode { kHttp, kTcp };

struct ListenerLimits {
  uint64_t max_header_bytes = 16 * 1024;
  Duration header_timeout{10'000};
  Duration idle_timeout{60'000};
  uint32_t max_connections = 20'000;  // per process
  uint64_t max_body_bytes = 0;        // 0 = unlimited; over it: 413
};

struct Listener {
  std::string name;
  SocketAddress listen;
  ListenerMode mode = ListenerMode::kHttp;
  std::string backend;  // name of a Backend (validated to exist)
  ListenerLimits limits;
  int line = 0;  // where it was defined, for messages
};

struct Server {
  std::string name;  // unique within the backend; defaults to the address text
  SocketAddress address;
  uint32_t weight = 1;  // 1..256
  bool backup = false;
  int line = 0;  // where it was defined, for messages
};

enum class HashKeyKind { kSourceIp, kHeader, kCookie, kUri };
struct HashKey {
  HashKeyKind kind = HashKeyKind::kSourceIp;
  std::string name;  // header or cookie name for kHeader/kCookie
};

struct BackendLimits {
  uint32_t max_connections_per_server = 0;  // 0 = unlimited
  uint32_t max_pending = 0;                 // 0 = unlimited
  Duration connect_timeout{2'000};
  Duration timeout{30'000};  // waiting for the response head (and idle during a response) -> 504
  uint32_t max_idle_per_server = 64;  // idle keep-alive upstream connections kept per worker
};

struct Backend {
  std::string name;
  std::string balance = "round_robin";
  HashKey hash_key;
  uint32_t ring_points = 100;          // ring_hash: points per unit of weight
  uint32_t maglev_table_size = 65537;  // maglev: prime
  std::vector<Server> servers;
  BackendLimits limits;
  int line = 0;
};

struct Config {
  std::string source_path;  // file it came from
  std::string node_id = "tandem";
  uint32_t workers = 0;  // 0 = auto (one per core)
  Duration drain_timeout{10'000};
  std::vector<Listener> listeners;
  std::vector<Backend> backends;

  // nullptr if there is no backend of that name. The pointer is valid while the Config lives.
  const Backend* findBackend(std::string_view name) const;
};

struct ConfigError {
  std::string file;
  int line = 0;  // 1-based; 0 if unknown
  std::string reason;
  std::string text() const;  // "FILE:LINE: reason", or "FILE: reason" when line is 0
};

// Loads and validates a YAML config file. On failure returns every error found (not just the
// first), sorted by line. Never throws: YAML syntax errors and unreadable files come back as
// ConfigErrors. Called on the main thread only (startup, SIGHUP, `tandem check`).
tl::expected<Config, std::vector<ConfigError>> loadFile(const std::string& path);
// Same, from text (path used only in messages).
tl::expected<Config, std::vector<ConfigError>> loadString(std::string_view yaml,
                                                          const std::string& path);

// Parses "250ms", "2s", "1.5s", "1m", "1h". The unit is required (a bare "10" is ambiguous); values
// that are negative, finer than 1ms or too large for Duration are rejected.
tl::expected<Duration, std::string> parseDuration(std::string_view text);
// Parses "16KiB", "1MiB", "512", "2GiB" into bytes. Only plain bytes and KiB/MiB/GiB are accepted:
// "KB"/"MB" are rejected rather than guessed (1000 or 1024?).
tl::expected<uint64_t, std::string> parseSize(std::string_view text);

// Parses "127.0.0.1:80", "[::1]:80" or "localhost:80" (-> 127.0.0.1). Hosts must be IP literals
// (no DNS at load time); the host is stored in canonical form without brackets, so equal addresses
// compare equal. Port 0 is accepted here; callers decide whether it is meaningful.
tl::expected<SocketAddress, std::string> parseAddress(std::string_view text);

// The balance algorithms the loader accepts (DESIGN §4), and the subset that uses hash_key.
bool isKnownBalance(std::string_view balance);
bool isHashBalance(std::string_view balance);  // source_hash, ring_hash, maglev

// Trial division; used to validate maglev.table_size (small numbers only, so this is cheap).
bool isPrime(uint64_t n);

}  // namespace tandem::config
