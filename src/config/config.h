#pragma once
// Tandem's configuration (DESIGN §4): plain structs produced by the YAML loader, validated, and
// then treated as immutable (shared read-only by workers through snapshots).
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace tandem::tls {
class ServerContext;
}

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
  // Minimum data rate (slow POST, slow read): while a request waits on its client - body bytes
  // owed, or response bytes the client does not take - the client must move at least
  // min_rate_bytes per min_rate_period, else it is cut off (checked on the period's timer).
  uint64_t min_rate_bytes = 1024;  // 0 = off
  Duration min_rate_period{20'000};
};

// TLS termination on a listener (`tls: {cert: F, key: F}` or `tls: {certificates: [...]}`).
struct TlsCertificate {
  std::string cert_file;  // resolved against the config file's folder
  std::string key_file;
  int cert_line = 0;  // where each was given, for messages
  int key_line = 0;
};
struct ListenerTls {
  std::vector<TlsCertificate> certificates;  // empty = plain; the first is the default (no SNI)
  // Built by the loader from the files (so a bad one is a config error): one per config
  // generation, shared read-only by the workers; connections keep the one they started with.
  std::shared_ptr<const tls::ServerContext> context;
};

struct Listener {
  std::string name;
  SocketAddress listen;
  ListenerMode mode = ListenerMode::kHttp;
  std::string backend;  // name of a Backend (validated to exist)
  ListenerLimits limits;
  ListenerTls tls;
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
  uint32_t max_idle_per_server = 1024;  // idle keep-alive upstream connections kept per worker
};

// Active health checks (issue 3), run by the control thread.
enum class CheckType { kTcp, kHttp };
struct StatusRange {
  int low = 200;
  int high = 399;
  bool operator==(const StatusRange&) const = default;
};
struct ActiveHealth {
  bool enabled = false;  // true once `health.active` is present
  CheckType type = CheckType::kTcp;
  std::string method = "GET";  // http: a token
  std::string path = "/";      // http: origin-form, starts with '/'
  std::string host;            // http: Host header; empty = the server's address text
  std::vector<StatusRange> expect{{200, 399}};  // "200", "200-399", or a list of them
  std::string body_contains;  // http: optional substring of the first 64 KiB of the body
  Duration interval{2'000};
  Duration fast_interval{0};     // while down or changing; 0 = interval / 4 (at least 50ms)
  uint32_t jitter_percent = 10;  // each interval is randomised by +-jitter_percent (0..50)
  Duration timeout{1'000};       // must be <= interval
  uint32_t rise = 2;             // 1..100
  uint32_t fall = 3;             // 1..100
  bool initial_up = false;       // `initial: up|down`: verdict before the first check
};

// Passive outlier detection (issue 3), fed by the proxy.
struct PassiveHealth {
  bool enabled = false;               // true once `health.passive` is present
  uint32_t consecutive_failures = 5;  // 1..1000: connect failures, resets, 5xx in a row
  bool gateway_errors_only = false;   // count 502/503/504 (and connect/reset), not other 5xx
  Duration base_ejection{30'000};
  Duration max_ejection{300'000};      // >= base_ejection
  uint32_t max_ejection_percent = 10;  // 0..100
};

// Retries (issue 3): to a different server, idempotent requests only unless nothing was sent.
struct Retries {
  uint32_t attempts = 1;  // retries after the first try, 0..10
  bool on_connect_failure = true;
  bool on_reset = true;          // reset/close before any response byte
  std::vector<int> on_statuses;  // e.g. 502, 503, 504 (each 500..599)
  uint32_t budget_percent = 20;  // 0..100 of the requests in flight
  uint32_t min_retry_concurrency = 3;
  Duration per_try_timeout{0};  // 0 = limits.timeout
};

// Sticky sessions (issue 6). Cookie mode needs no shared state: the cookie names the server and is
// signed with the cluster secret. Table mode keeps key -> server in the shared state table.
enum class StickyMode { kNone, kCookie, kTable };
struct Sticky {
  StickyMode mode = StickyMode::kNone;
  std::string cookie = "TANDEM";  // cookie mode: its name
  HashKey key;                    // table mode: source_ip, header:NAME or cookie:NAME (not uri)
  Duration ttl{3'600'000};        // table mode: an entry lives this long after its last use
  int line = 0;
};

// Rate limiting per key (issue 6), cluster-wide with peers or Redis: at most `rate` requests per
// second and key on average, bursts up to `burst`. Over it: 429 with Retry-After.
struct RateLimit {
  bool enabled = false;
  HashKey key;         // source_ip or header:NAME
  double rate = 0;     // requests per second ("100/s", "6000/m")
  uint32_t burst = 0;  // 0 = one second's worth of `rate`
  int line = 0;
};

struct Backend {
  std::string name;
  Sticky sticky;
  RateLimit rate_limit;
  std::string balance = "round_robin";
  HashKey hash_key;
  uint32_t ring_points = 1000;         // ring_hash: points per unit of weight (~+-5% spread)
  uint32_t maglev_table_size = 65537;  // maglev: prime
  std::vector<Server> servers;
  BackendLimits limits;
  ActiveHealth active;
  PassiveHealth passive;
  Retries retries;
  Duration slow_start{0};                // 0 = off
  uint32_t panic_threshold_percent = 0;  // 0 = off; "50%" in YAML
  int line = 0;
};

// The admin HTTP server (issue 4): API, metrics, dashboard.
struct Admin {
  bool enabled = true;
  SocketAddress listen{"127.0.0.1", 9900};
  std::string token_file;  // resolved against the config file's folder
  std::string token;       // its content (trimmed); empty = mutations refused (no token set)
  int line = 0;
};

// Alert rules (issue 4). Rates and latencies are evaluated per backend over a trailing window.
struct ThresholdRule {
  bool enabled = false;
  double above = 0;            // error_rate: fraction 0..1; p99_latency: milliseconds
  Duration window{30'000};     // `for`: the trailing window the value is computed over
  uint32_t min_requests = 20;  // fewer responses than this in the window: no verdict
};
struct AlertRules {
  bool server_down = true;
  bool backend_down = true;   // a backend without any healthy server
  ThresholdRule error_rate;   // share of 5xx responses
  ThresholdRule p99_latency;  // request duration
};
struct Webhook {
  std::string url;  // http://host:port/path (IP literal or localhost; plain HTTP)
  SocketAddress address;
  std::string path = "/";
  Duration timeout{5'000};
  uint32_t max_attempts = 6;  // delivery attempts per notification, with exponential backoff
};
struct Alerts {
  std::vector<Webhook> webhooks;
  AlertRules rules;
};

// One JSON line per request (issue 4), written by a thread of its own.
struct AccessLog {
  bool enabled = false;
  std::string path;  // resolved against the config file's folder; "stderr"/"stdout" allowed
  uint64_t buffer_bytes = 1 << 20;  // per worker; lines that do not fit are dropped and counted
};

// Where the running config comes from (issue 7). With etcd, the local file is the bootstrap: it
// names the key and serves until etcd delivers (and whenever etcd has nothing usable).
struct ConfigSource {
  bool etcd = false;                   // type: file (default) | etcd
  std::vector<std::string> endpoints;  // http://host:port, tried in order
  std::string key = "/tandem/config";
  int line = 0;
};

// Leader election through etcd leases (issue 7): one active instance of a group; the leader is
// also the one that delivers fleet-wide alerts to webhooks.
struct Election {
  bool enabled = false;                // election: etcd
  std::vector<std::string> endpoints;  // default: config_source's
  std::string key = "/tandem/leader";
  Duration ttl{2'000};  // whole seconds, >= 1s
};

// VRRPv3 active-passive (issue 5): the master of a virtual router holds the virtual IPs.
struct VirtualIp {
  std::string address;  // IPv4 literal
  uint8_t prefix = 32;
};
struct Vrrp {
  std::string interface;
  uint32_t vrid = 0;                // 1..255, required
  uint32_t priority = 100;          // 1..254, 255 = the address owner
  Duration advert_interval{1'000};  // 10ms..40950ms, whole centiseconds
  bool preempt = true;
  Duration preempt_delay{0};
  std::vector<VirtualIp> virtual_ips;      // at least one
  std::vector<std::string> unicast_peers;  // IPv4 literals; empty = multicast 224.0.0.18
  uint32_t garp_count = 5;                 // gratuitous ARPs per burst
  Duration garp_repeat{5'000};             // a second burst this long after taking over; 0 = none
  // Tracking: this priority change (<= 0) while a tracked backend has no healthy server.
  int32_t track_no_healthy_backends = 0;
  std::vector<std::string> track_backends;  // the backends tracked; empty = all
  // This priority change (<= 0) while a tracked listener does not accept connections (probed).
  int32_t track_listener_down = 0;
  std::vector<std::string> track_listeners;  // empty = all not bound to a virtual IP
  int line = 0;
};

struct Peer {
  std::string id;
  SocketAddress address;
};

struct Cluster {
  std::string mode = "standalone";  // standalone | active_passive | active_active
  Vrrp vrrp;
  Election election;
  // Peer replication of the shared state (issue 6).
  SocketAddress listen;             // port 0 = no peer listener
  std::vector<Peer> peers;          // every node's; the entry of node.id is skipped
  std::string secret_file;          // resolved against the config file's folder
  std::string secret;               // its content (trimmed); signs cookies, authenticates peers
  bool act_on_peer_health = false;  // peer_health: act | observe
  int line = 0;
};

// Where the shared state lives (issue 6): memory (replicated to the peers) or Redis.
struct StateStore {
  bool redis = false;
  SocketAddress redis_address{"127.0.0.1", 6379};
  std::string redis_prefix = "tandem:";
  int line = 0;
};

struct Config {
  std::string source_path;  // file it came from
  std::string node_id = "tandem";
  uint32_t workers = 0;  // 0 = auto (one per core)
  Duration drain_timeout{10'000};
  std::vector<Listener> listeners;
  std::vector<Backend> backends;
  Admin admin;
  Alerts alerts;
  AccessLog access_log;
  ConfigSource config_source;
  Cluster cluster;
  StateStore state;
  // Least privilege (app/privileges.h): after binding, a process started as root switches to
  // this user (and group; default: the user's primary group). Empty = stays as started.
  std::string user;
  std::string group;

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
// Same, from text (path used only in messages). Relative paths in the config resolve against the
// folder of `path`, or of `base_path` when given (a config from etcd: the bootstrap file's).
tl::expected<Config, std::vector<ConfigError>> loadString(std::string_view yaml,
                                                          const std::string& path,
                                                          const std::string& base_path = {});

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

// Parses "http://host[:port][/path]" (port 80 by default, path "/" by default). Hosts as in
// parseAddress; no https, no userinfo, no fragment.
struct HttpUrl {
  SocketAddress address;
  std::string path = "/";
};
tl::expected<HttpUrl, std::string> parseHttpUrl(std::string_view text);

// The balance algorithms the loader accepts (DESIGN §4), and the subset that uses hash_key.
bool isKnownBalance(std::string_view balance);
bool isHashBalance(std::string_view balance);  // source_hash, ring_hash, maglev

// Trial division; used to validate maglev.table_size (small numbers only, so this is cheap).
bool isPrime(uint64_t n);

}  // namespace tandem::config
