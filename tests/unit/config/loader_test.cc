// The YAML loader: round trip of every field, defaults, and each error with its exact line.
// Test documents mark the lines that matter with a "# L<n>" comment so the asserted numbers can be
// checked by eye.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <ostream>

#include "config/config.h"
#include "config_test_util.h"

namespace tandem::config {

// Readable failure output for ConfigError vectors.
void PrintTo(const ConfigError& error, std::ostream* os) { *os << error.text(); }

namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

using namespace std::chrono_literals;

using namespace ::tandem::config::test_util;

TEST(Load, FullConfigRoundTrip) {
  const Config config = mustLoad(R"(
node: {id: lb-7}
workers: 4
drain_timeout: 1.5s
listeners:
  - name: web                                  # L5
    listen: 0.0.0.0:8080
    mode: http
    backend: app
    limits:
      max_header_bytes: 32KiB
      header_timeout: 5s
      idle_timeout: 2m
      max_connections: 5000
      max_body_bytes: 10MiB
  - {name: db, listen: "[::1]:5433", mode: tcp, backend: pg, limits: {idle_timeout: 1h}}  # L15
backends:
  - name: app                                  # L17
    balance: ring_hash
    hash_key: cookie:sid
    ring_hash: {points: 200}
    servers:
      - {name: a1, address: 127.0.0.1:9001, weight: 3}   # L22
      - {address: localhost:9002, backup: true, weight: 256}
    limits:
      max_connections_per_server: 100
      max_pending: 10
      connect_timeout: 250ms
      timeout: 1h
      max_idle_per_server: 0
  - name: pg                                   # L30
    balance: maglev
    hash_key: header:X-User
    maglev: {table_size: 101}
    servers:
      - address: "[::1]:9003"                  # L35
  - name: src
    balance: source_hash
    hash_key: uri
    servers: [{address: 127.0.0.1:9004, backup: false}]
  - name: srcip
    balance: source_hash
    hash_key: source_ip
    servers: [{address: 127.0.0.1:9005}]
)");
  EXPECT_EQ(config.source_path, "t.yaml");
  EXPECT_EQ(config.node_id, "lb-7");
  EXPECT_EQ(config.workers, 4u);
  EXPECT_EQ(config.drain_timeout, 1500ms);

  ASSERT_THAT(config.listeners, SizeIs(2));
  const Listener& web = config.listeners[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.listen.host, "0.0.0.0");
  EXPECT_EQ(web.listen.port, 8080);
  EXPECT_EQ(web.mode, ListenerMode::kHttp);
  EXPECT_EQ(web.backend, "app");
  EXPECT_EQ(web.limits.max_header_bytes, 32u * 1024);
  EXPECT_EQ(web.limits.header_timeout, 5s);
  EXPECT_EQ(web.limits.idle_timeout, 2min);
  EXPECT_EQ(web.limits.max_connections, 5000u);
  EXPECT_EQ(web.limits.max_body_bytes, 10u * 1024 * 1024);
  EXPECT_EQ(web.line, 5);
  const Listener& db = config.listeners[1];
  EXPECT_EQ(db.name, "db");
  EXPECT_EQ(db.listen.text(), "[::1]:5433");
  EXPECT_EQ(db.mode, ListenerMode::kTcp);
  EXPECT_EQ(db.backend, "pg");
  EXPECT_EQ(db.limits.idle_timeout, 1h);
  EXPECT_EQ(db.line, 15);

  ASSERT_THAT(config.backends, SizeIs(4));
  const Backend& app = config.backends[0];
  EXPECT_EQ(app.name, "app");
  EXPECT_EQ(app.balance, "ring_hash");
  EXPECT_EQ(app.hash_key.kind, HashKeyKind::kCookie);
  EXPECT_EQ(app.hash_key.name, "sid");
  EXPECT_EQ(app.ring_points, 200u);
  EXPECT_EQ(app.line, 17);
  ASSERT_THAT(app.servers, SizeIs(2));
  EXPECT_EQ(app.servers[0].name, "a1");
  EXPECT_EQ(app.servers[0].address.text(), "127.0.0.1:9001");
  EXPECT_EQ(app.servers[0].weight, 3u);
  EXPECT_FALSE(app.servers[0].backup);
  EXPECT_EQ(app.servers[0].line, 22);
  EXPECT_EQ(app.servers[1].name, "127.0.0.1:9002");  // defaulted from the resolved address
  EXPECT_EQ(app.servers[1].address.host, "127.0.0.1");
  EXPECT_EQ(app.servers[1].address.port, 9002);
  EXPECT_EQ(app.servers[1].weight, 256u);
  EXPECT_TRUE(app.servers[1].backup);
  EXPECT_EQ(app.limits.max_connections_per_server, 100u);
  EXPECT_EQ(app.limits.max_pending, 10u);
  EXPECT_EQ(app.limits.connect_timeout, 250ms);
  EXPECT_EQ(app.limits.timeout, 1h);
  EXPECT_EQ(app.limits.max_idle_per_server, 0u);

  const Backend& pg = config.backends[1];
  EXPECT_EQ(pg.balance, "maglev");
  EXPECT_EQ(pg.hash_key.kind, HashKeyKind::kHeader);
  EXPECT_EQ(pg.hash_key.name, "X-User");
  EXPECT_EQ(pg.maglev_table_size, 101u);
  EXPECT_EQ(pg.line, 30);
  ASSERT_THAT(pg.servers, SizeIs(1));
  EXPECT_EQ(pg.servers[0].name, "[::1]:9003");
  EXPECT_EQ(pg.servers[0].line, 35);

  EXPECT_EQ(config.backends[2].hash_key.kind, HashKeyKind::kUri);
  EXPECT_FALSE(config.backends[2].servers[0].backup);
  EXPECT_EQ(config.backends[3].hash_key.kind, HashKeyKind::kSourceIp);
  EXPECT_EQ(config.findBackend("pg"), &config.backends[1]);
}

TEST(Load, Defaults) {
  const Config config = mustLoad(kMinimal);
  EXPECT_EQ(config.node_id, "tandem");
  EXPECT_EQ(config.workers, 0u);
  EXPECT_EQ(config.drain_timeout, 10s);
  ASSERT_THAT(config.listeners, SizeIs(1));
  const Listener& web = config.listeners[0];
  EXPECT_EQ(web.mode, ListenerMode::kHttp);
  EXPECT_EQ(web.limits.max_header_bytes, 16u * 1024);
  EXPECT_EQ(web.limits.header_timeout, 10s);
  EXPECT_EQ(web.limits.idle_timeout, 60s);
  EXPECT_EQ(web.limits.max_connections, 20'000u);
  EXPECT_EQ(web.limits.max_body_bytes, 0u);
  ASSERT_THAT(config.backends, SizeIs(1));
  const Backend& app = config.backends[0];
  EXPECT_EQ(app.balance, "round_robin");
  EXPECT_EQ(app.hash_key.kind, HashKeyKind::kSourceIp);
  EXPECT_EQ(app.ring_points, 1000u);
  EXPECT_EQ(app.maglev_table_size, 65537u);
  EXPECT_EQ(app.limits.max_connections_per_server, 0u);
  EXPECT_EQ(app.limits.max_pending, 0u);
  EXPECT_EQ(app.limits.connect_timeout, 2s);
  EXPECT_EQ(app.limits.timeout, 30s);
  EXPECT_EQ(app.limits.max_idle_per_server, 1024u);
  ASSERT_THAT(app.servers, SizeIs(1));
  EXPECT_EQ(app.servers[0].name, "127.0.0.1:9001");
  EXPECT_EQ(app.servers[0].weight, 1u);
  EXPECT_FALSE(app.servers[0].backup);
}

TEST(Load, WorkersAutoAndBounds) {
  EXPECT_EQ(mustLoad("workers: auto\n" + std::string(kMinimal.substr(1))).workers, 0u);
  EXPECT_EQ(mustLoad("workers: 1\n" + std::string(kMinimal.substr(1))).workers, 1u);
  EXPECT_EQ(mustLoad("workers: 256\n" + std::string(kMinimal.substr(1))).workers, 256u);
  for (std::string_view bad : {"0", "257", "abc", "-1", "[1]", "", "Auto"}) {
    EXPECT_THAT(errorsOf("workers: " + std::string(bad) + "\n" + std::string(kMinimal.substr(1))),
                ElementsAre(Err(1, "'workers' must be 'auto' or an integer in 1..256")))
        << bad;
  }
}

TEST(Load, UnknownKeyWithSuggestion) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: web
    lisen: 127.0.0.1:8080      # L3
    backend: app
backends:
  - name: app
    servers:
      - address: 127.0.0.1:9001
)"),
              ElementsAre(Err(2, "listener 'web' is missing 'listen'"),
                          Err(3, "unknown key 'lisen' in listener; did you mean 'listen'?")));
}

TEST(Load, UnknownKeysEverywhere) {
  EXPECT_THAT(errorsOf(R"(
frobnicate: 1                  # L1
node: {id: a, name: b}         # L2
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: app
    limits: {max_conections: 5}  # L7
backends:
  - name: app
    balanse: p2c               # L10
    servers:
      - {address: 127.0.0.1:9001, wieght: 2}   # L12
    limits: {timeout: 1s, retries: 3}        # L13
    maglev: {size: 101}        # L14
)"),
              ElementsAre(Err(1, "unknown key 'frobnicate' in the top level"),
                          Err(2, "unknown key 'name' in node"),
                          Err(7,
                              "unknown key 'max_conections' in listener limits; did you mean "
                              "'max_connections'?"),
                          Err(10, "unknown key 'balanse' in backend; did you mean 'balance'?"),
                          Err(12, "unknown key 'wieght' in server; did you mean 'weight'?"),
                          Err(13, "unknown key 'retries' in backend limits"),
                          Err(14, "unknown key 'size' in maglev"),
                          // maglev options without balance: maglev are reported too
                          Err(14, "'maglev' options need balance: maglev")));
}

TEST(Load, NoSuggestionWhenNothingIsClose) {
  const auto errors = errorsOf("zzz: 1\n" + std::string(kMinimal.substr(1)));
  ASSERT_THAT(errors, ElementsAre(Err(1, "unknown key 'zzz' in the top level")));
  EXPECT_THAT(errors[0].reason, Not(HasSubstr("did you mean")));
}

// More in tls_config_test.cc (with certificate files).
TEST(Load, TlsInsideListenerListNeedsAKey) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8443
    backend: app
    tls:                          # L5
      cert: cert.pem
backends:
  - name: app
    servers: [{address: 127.0.0.1:9001}]
)"),
              ElementsAre(Err(5, "'tls' is missing 'key'")));
}

TEST(Load, DuplicateNamesAndAddresses) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: app}     # L2
  - {name: web, listen: 127.0.0.1:8081, backend: app}     # L3
  - {name: other, listen: 127.0.0.1:8080, backend: app}   # L4
  - {name: v6a, listen: "[::1]:80", backend: app}
  - {name: v6b, listen: "[0:0::1]:80", backend: app}      # L6
  - {name: any, listen: 0.0.0.0:9000, backend: app}       # L7
  - {name: one, listen: localhost:9000, backend: app}     # L8
  - {name: fine, listen: 127.0.0.2:8080, backend: app}
  - {name: fine6, listen: "[::]:9000", backend: app}
backends:
  - name: app                                               # L12
    servers: [{address: 127.0.0.1:9001}]
  - name: app                                               # L14
    servers: [{address: 127.0.0.1:9001}]
)"),
              ElementsAre(Err(3, "duplicate listener name 'web' (first at line 2)"),
                          Err(4,
                              "'listen' 127.0.0.1:8080 conflicts with listener 'web' on "
                              "127.0.0.1:8080 (line 2)"),
                          Err(6, "'listen' [::1]:80 conflicts with listener 'v6a'"),
                          Err(8,
                              "'listen' 127.0.0.1:9000 conflicts with listener 'any' on "
                              "0.0.0.0:9000 (line 7)"),
                          Err(14, "duplicate backend name 'app' (first at line 12)")));
}

TEST(Load, BackendMustExist) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: ap                 # L4
  - {name: x, listen: 127.0.0.1:8081, backend: nothing_like_it}   # L5
backends:
  - name: app
    servers: [{address: 127.0.0.1:9001}]
)"),
              ElementsAre(Err(4, "backend 'ap' is not defined; did you mean 'app'?"),
                          Err(5, "backend 'nothing_like_it' is not defined")));
}

TEST(Load, WrongTypes) {
  EXPECT_THAT(errorsOf(R"(
drain_timeout: [1s]             # L1
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: app
    limits: [1, 2]              # L6
  - name: [a, b]                # L7
    listen: {host: x}           # L8
    backend: app
  - just-a-string               # L10
backends:
  - name: app
    servers:
      - {address: 127.0.0.1:9001, weight: -1}     # L14
      - {address: 127.0.0.1:9002, weight: abc}    # L15
      - {address: 127.0.0.1:9003, weight: 0}      # L16
      - {address: 127.0.0.1:9004, weight: 257}    # L17
      - {address: 127.0.0.1:9005, weight: 1.5}    # L18
      - {address: 127.0.0.1:9006, backup: yes}    # L19
      - 127.0.0.1:9007                            # L20
    limits:
      max_pending: "many"                         # L22
  - name: b
    servers: {address: 127.0.0.1:9001}            # L24
)"),
              ElementsAre(Err(1, "'drain_timeout' must be a single value, got a list"),
                          Err(6, "'limits' must be a map, got a list"),
                          Err(7, "'name' must be a single value, got a list"),
                          Err(8, "'listen' must be a single value, got a map"),
                          Err(10, "a listener must be a map, got 'just-a-string'"),
                          Err(14, "'weight' must be an integer in 1..256, got '-1'"),
                          Err(15, "'weight' must be an integer in 1..256, got 'abc'"),
                          Err(16, "'weight' must be an integer in 1..256, got '0'"),
                          Err(17, "'weight' must be an integer in 1..256, got '257'"),
                          Err(18, "'weight' must be an integer in 1..256, got '1.5'"),
                          Err(19, "'backup' must be true or false, got 'yes'"),
                          Err(20, "a server must be a map, got '127.0.0.1:9007'"),
                          Err(22, "'max_pending' must be an integer in 0..1000000, got 'many'"),
                          Err(24, "'servers' must be a list, got a map")));
}

TEST(Load, ListenersMustBeAList) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  web: {listen: 127.0.0.1:8080}
backends: []
)"),
              ElementsAre(Err(1, "'listeners' must be a list, got a map")));
}

TEST(Load, MissingValueReportedAtItsKey) {
  // yaml-cpp marks an empty value with the position of the next token; we want the key's line.
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend:                     # L4


backends:
  - name: app
    servers: [{address: 127.0.0.1:9001}]
)"),
              ElementsAre(Err(4, "'backend' needs a value")));
}

TEST(Load, AddressErrors) {
  EXPECT_THAT(
      errorsOf(R"(
listeners:
  - {name: a, listen: 127.0.0.1:0, backend: app}          # L2
  - {name: b, listen: 127.0.0.1:65536, backend: app}      # L3
  - {name: c, listen: example.com:80, backend: app}       # L4
  - {name: d, listen: "::1:80", backend: app}             # L5
  - {name: e, listen: 127.0.0.1, backend: app}            # L6
backends:
  - name: app
    servers:
      - address: 127.0.0.1:0                              # L10
      - address: 127.0.0.1:9001
)"),
      ElementsAre(Err(2, "'listen': port must be in 1..65535, got '127.0.0.1:0'"),
                  Err(3, "'listen': invalid address '127.0.0.1:65536'"),
                  Err(4, "host names other than localhost are not supported"),
                  Err(5, "IPv6 addresses must be written as [ADDR]:PORT"),
                  Err(6, "expected HOST:PORT"), Err(10, "'address': port must be in 1..65535")));
}

TEST(Load, ListenerFieldErrors) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: "web 1"                  # L2
    listen: 127.0.0.1:8080
    mode: udp                      # L4
    backend: app
    limits:
      max_header_bytes: 512        # L7
      header_timeout: 0s           # L8
      idle_timeout: 10             # L9
      max_connections: 0           # L10
      max_body_bytes: 1KB          # L11
  - name: b
    listen: 127.0.0.1:8081
    backend: app
    limits: {max_header_bytes: 2MiB, idle_timeout: 8d, max_connections: 1000001}   # L15
  - {name: c, listen: 127.0.0.1:8082, backend: app, limits: {idle_timeout: 169h}}  # L16
backends:
  - name: app
    servers: [{address: 127.0.0.1:9001}]
)"),
              ElementsAre(Err(2,
                              "'name' must be 1..64 characters of A-Z a-z 0-9 _ - ., got "
                              "'web 1'"),
                          Err(4, "'mode' must be http or tcp, got 'udp'"),
                          Err(7, "'max_header_bytes' must be in 1024..1048576 bytes, got '512'"),
                          Err(8, "'header_timeout' must be at least 1ms, got '0s'"),
                          Err(9, "'idle_timeout': invalid duration '10': missing unit"),
                          Err(10, "'max_connections' must be an integer in 1..1000000, got '0'"),
                          Err(11, "'max_body_bytes': invalid size '1KB': unknown unit 'KB'"),
                          Err(15, "'max_header_bytes' must be in 1024..1048576 bytes, got '2MiB'"),
                          Err(15, "'idle_timeout': invalid duration '8d': unknown unit 'd'"),
                          Err(15, "'max_connections' must be an integer in 1..1000000"),
                          Err(16, "'idle_timeout' must be at most 168h, got '169h'")));
}

TEST(Load, HttpLimitsOnTcpListener) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: db
    listen: 127.0.0.1:5433
    limits:
      max_header_bytes: 16KiB     # L5
      idle_timeout: 1m
      header_timeout: 1s          # L7
    mode: tcp
    backend: app
backends:
  - name: app
    servers: [{address: 127.0.0.1:9001}]
)"),
              ElementsAre(Err(5, "'max_header_bytes' applies only to http listeners"),
                          Err(7, "'header_timeout' applies only to http listeners")));
}

TEST(Load, BackendErrors) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    balance: round_robbin          # L5
    servers: [{address: 127.0.0.1:9001}]
  - name: b
    balance: least_conn
    hash_key: source_ip            # L9
    servers: [{address: 127.0.0.1:9001}]
  - name: c
    balance: maglev
    hash_key: ip                   # L13
    ring_hash: {points: 10}        # L14
    servers: [{address: 127.0.0.1:9001}]
  - name: d
    balance: ring_hash
    hash_key: "header:"            # L18
    ring_hash: {points: 0}         # L19
    servers: [{address: 127.0.0.1:9001}]
  - name: e
    balance: maglev
    hash_key: "cookie:a b"         # L23
    maglev: {table_size: 100}      # L24
    servers: [{address: 127.0.0.1:9001}]
  - name: f
    balance: maglev
    maglev: {table_size: 65536}    # L28
    servers: [{address: 127.0.0.1:9001}]
)"),
              ElementsAre(Err(5, "unknown balance 'round_robbin'"),
                          Err(9, "hash_key needs a hash algorithm"),
                          Err(13, "'hash_key' must be source_ip, uri, header:NAME or cookie:NAME"),
                          Err(14,
                              "'ring_hash' options need balance: ring_hash, but balance is "
                              "'maglev'"),
                          Err(18, "'hash_key': '' is not a valid header name"),
                          Err(19, "'points' must be an integer in 1..10000, got '0'"),
                          Err(23, "'hash_key': 'a b' is not a valid cookie name"),
                          Err(24, "'table_size' must be an integer in 101..5000011, got '100'"),
                          Err(28, "'table_size' must be a prime number (e.g. 65537), got 65536")));
}

TEST(Load, UnknownBalanceSuggests) {
  const auto errors = errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    balance: round_robbin          # L5
    servers: [{address: 127.0.0.1:9001}]
)");
  ASSERT_THAT(errors, SizeIs(1));
  EXPECT_THAT(errors[0].reason, HasSubstr("did you mean 'round_robin'?"));
}

TEST(Load, ServerListErrors) {
  EXPECT_THAT(
      errorsOf(R"(
listeners:
  - {name: web, listen: 127.0.0.1:8080, backend: a}
backends:
  - name: a
    servers: []                                     # L5
  - name: b
    servers:                                        # L7
      - {address: 127.0.0.1:9001, backup: true}
  - name: c
    servers:
      - {name: s1, address: 127.0.0.1:9001}         # L11
      - {name: s1, address: 127.0.0.1:9002}         # L12
      - {address: 127.0.0.1:9003}                   # L13
      - {address: 127.0.0.1:9003}                   # L14
      - {name: "x/y", address: 127.0.0.1:9005}      # L15
      - {name: s2}                                  # L16
  - balance: random                                 # L17
)"),
      ElementsAre(Err(5, "'servers' needs at least one server that is not a backup"),
                  Err(7, "'servers' needs at least one server that is not a backup"),
                  Err(12, "duplicate server name 's1' (first at line 11)"),
                  Err(14,
                      "duplicate server name '127.0.0.1:9003' (first at line 13); "
                      "give the servers distinct names"),
                  Err(15,
                      "'name' must be 1..128 printable characters without spaces or "
                      "'/', got 'x/y'"),
                  Err(16, "server is missing 'address'"), Err(17, "backend is missing 'name'"),
                  Err(17, "backend is missing 'servers'")));
}

TEST(Load, MissingRequiredListenerKeys) {
  EXPECT_THAT(
      errorsOf(R"(
listeners:
  - mode: tcp                  # L2
backends:
  - name: app
    servers: [{address: 127.0.0.1:9001}]
)"),
      ElementsAre(Err(2, "listener is missing 'name'"), Err(2, "listener is missing 'listen'"),
                  Err(2, "listener is missing 'backend'")));
}

TEST(Load, NodeErrors) {
  EXPECT_THAT(errorsOf("node: {}\n" + std::string(kMinimal.substr(1))),
              ElementsAre(Err(1, "'node' is missing 'id'")));
  EXPECT_THAT(errorsOf("node: {id: \"lb 1\"}\n" + std::string(kMinimal.substr(1))),
              ElementsAre(Err(1, "'id' must be 1..64 characters")));
  EXPECT_THAT(errorsOf("node: lb1\n" + std::string(kMinimal.substr(1))),
              ElementsAre(Err(1, "'node' must be a map, got 'lb1'")));
}

TEST(Load, DrainTimeout) {
  EXPECT_EQ(mustLoad("drain_timeout: 0s\n" + std::string(kMinimal.substr(1))).drain_timeout, 0ms);
  EXPECT_EQ(mustLoad("drain_timeout: 1m\n" + std::string(kMinimal.substr(1))).drain_timeout, 60s);
  EXPECT_THAT(errorsOf("drain_timeout: 10\n" + std::string(kMinimal.substr(1))),
              ElementsAre(Err(1, "'drain_timeout': invalid duration '10': missing unit")));
  EXPECT_THAT(errorsOf("drain_timeout: -1s\n" + std::string(kMinimal.substr(1))),
              ElementsAre(Err(1, "must not be negative")));
}

TEST(Load, DuplicateYamlKey) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    listen: 127.0.0.1:8081       # L4
    backend: app
backends:
  - name: app
    servers: [{address: 127.0.0.1:9001}]
)"),
              ElementsAre(Err(4, "duplicate key 'listen' in listener (first at line 3)")));
}

TEST(Load, NonStringKey) {
  EXPECT_THAT(errorsOf("? [a, b]\n: 1\n" + std::string(kMinimal.substr(1))),
              ElementsAre(Err(1, "keys in the top level must be plain strings, got a list")));
}

TEST(Load, YamlSyntaxErrorHasLineAndMessage) {
  EXPECT_THAT(errorsOf(R"(
listeners:
  - name: web
    listen: [127.0.0.1:8080
backends: []
)"),
              ElementsAre(Err(4, "invalid YAML: end of sequence flow not found")));
  EXPECT_THAT(errorsOf("a: b: c\n"), ElementsAre(Err(1, "invalid YAML: ")));
}

TEST(Load, EmptyAndNonMapDocuments) {
  for (std::string_view empty : {"", "\n\n", "# only a comment\n", "~\n", "---\n"}) {
    EXPECT_THAT(errorsOf(empty), ElementsAre(Err(0, "the configuration is empty"))) << empty;
  }
  EXPECT_THAT(errorsOf("- a\n- b\n"),
              ElementsAre(Err(1, "the configuration must be a map of sections, got a list")));
  EXPECT_THAT(errorsOf("# comment\n\nhello\n"),
              ElementsAre(Err(3, "the configuration must be a map of sections, got 'hello'")));
}

TEST(Load, NoListeners) {
  EXPECT_THAT(errorsOf("workers: 2\n"), ElementsAre(Err(0, "at least one listener is required")));
  EXPECT_THAT(errorsOf("workers: 2\nlisteners: []\n"),
              ElementsAre(Err(2, "at least one listener is required")));
}

TEST(Load, MultipleDocumentsRejected) {
  EXPECT_THAT(errorsOf(std::string(kMinimal.substr(1)) + "---\nworkers: 2\n"),
              ElementsAre(Err(10, "expected one YAML document, found another one here")));
  // A trailing "---" starts an empty document: harmless.
  EXPECT_EQ(mustLoad(std::string(kMinimal.substr(1)) + "---\n").listeners.size(), 1u);
  // A syntax error in the second document is still a syntax error.
  EXPECT_THAT(errorsOf(std::string(kMinimal.substr(1)) + "---\na: b: c\n"),
              ElementsAre(Err(10, "invalid YAML: ")));
}

TEST(Load, StrayCommaTerminates) {
  // yaml-cpp 0.7's LoadAll loops forever (allocating) on these (jbeder/yaml-cpp#1040); found by
  // fuzz_config. yaml-cpp accepts them as an empty document.
  for (std::string_view text : {",", ", a", ",\na: 1\n"}) {
    EXPECT_THAT(errorsOf(text), ElementsAre(Err(0, "the configuration is empty"))) << text;
  }
}

TEST(Load, CollectsAllErrorsSortedByLine) {
  const auto errors = errorsOf(R"(
workers: many                    # L1
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: nope                # L5
    limits: {idle_timeout: 5}    # L6
backends:
  - name: app
    balance: fastest             # L9
    servers:
      - {address: 127.0.0.1:9001, weight: 0}   # L11
    sticky: {}                   # L12
state: {store: disk}             # L13
)");
  EXPECT_THAT(errors, ElementsAre(Err(1, "'workers'"), Err(5, "backend 'nope' is not defined"),
                                  Err(6, "'idle_timeout'"), Err(9, "unknown balance 'fastest'"),
                                  Err(11, "'weight'"), Err(12, "'sticky' needs 'mode'"),
                                  Err(13, "'store' must be memory or redis")));
  for (const ConfigError& e : errors) EXPECT_THAT(e.text(), testing::StartsWith("t.yaml:"));
}

TEST(Load, CyclicAliasDoesNotHang) {
  // yaml-cpp builds a self-referential node for this; the fixed-schema walk must not recurse into
  // it.
  EXPECT_THAT(errorsOf("listeners: &a [*a]\n"),
              ElementsAre(Err(1, "a listener must be a map, got a list")));
}

TEST(Load, StopsAfterTooManyErrors) {
  std::string text = doc(kMinimal);
  for (int i = 0; i < 150; ++i) text += "unknown_" + std::to_string(i) + ": 1\n";  // L9..L158
  const auto errors = errorsOf(text);
  ASSERT_THAT(errors, SizeIs(101));
  EXPECT_THAT(errors[0], Err(9, "unknown key 'unknown_0'"));
  EXPECT_THAT(errors[99], Err(108, "unknown key 'unknown_99'"));
  EXPECT_THAT(errors[100], Err(0, "too many errors; stopped after the first 100"));
}

TEST(Load, AliasAmplificationIsBounded) {
  // 1000 distinct servers, reused by 101 backends through an alias: 101000 servers from ~40KB.
  std::string text = "pool: &pool\n";  // L1
  for (int i = 0; i < 1000; ++i) {     // L2..L1001
    text += "  - {address: 127.0.0.1:" + std::to_string(1000 + i) + "}\n";
  }
  text += "listeners: [{name: web, listen: 127.0.0.1:80, backend: b0}]\n";  // L1002
  text += "backends:\n";                                                    // L1003
  for (int i = 0; i < 101; ++i) {                                           // L1004..L1104
    text += "  - {name: b" + std::to_string(i) + ", servers: *pool}\n";
  }
  // "pool" itself is an unknown top-level key; the cap trips on the 101st backend (L1104).
  EXPECT_THAT(errorsOf(text), ElementsAre(Err(1, "unknown key 'pool'"),
                                          Err(1104, "more than 100000 servers in total")));
}

TEST(LoadFile, ReadsFileAndReportsItsPath) {
  TempDir dir;
  const std::string good = dir.write("good.yaml", doc(kMinimal));
  auto config = loadFile(good);
  ASSERT_TRUE(config.has_value());
  EXPECT_EQ(config->source_path, good);
  EXPECT_EQ(config->listeners.at(0).name, "web");

  const std::string bad = dir.write("bad.yaml", "workers: 0\n" + doc(kMinimal));
  auto errors = loadFile(bad);
  ASSERT_FALSE(errors.has_value());
  ASSERT_THAT(errors.error(), SizeIs(1));
  EXPECT_EQ(errors.error()[0].text(),
            bad + ":1: 'workers' must be 'auto' or an integer in 1..256, got '0'");
}

TEST(LoadFile, UnreadableFilesGiveStrerror) {
  TempDir dir;
  auto missing = loadFile(dir.path() + "/missing.yaml");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().at(0).text(),
            dir.path() + "/missing.yaml: cannot open: No such file or directory");
  auto directory = loadFile(dir.path());
  ASSERT_FALSE(directory.has_value());
  EXPECT_EQ(directory.error().at(0).text(), dir.path() + ": cannot read: Is a directory");
  auto empty = loadFile(dir.write("empty.yaml", ""));
  ASSERT_FALSE(empty.has_value());
  EXPECT_THAT(empty.error(),
              ElementsAre(Field(&ConfigError::reason, "the configuration is empty")));
}

TEST(Examples, AllLoad) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(TANDEM_EXAMPLES_DIR)) {
    if (entry.path().extension() != ".yaml") continue;
    ++count;
    auto result = loadFile(entry.path().string());
    std::string all;
    if (!result) {
      for (const ConfigError& e : result.error()) all += e.text() + "\n";
    }
    EXPECT_TRUE(result.has_value()) << all;
    if (!result) continue;
    for (const Listener& listener : result->listeners) {
      EXPECT_TRUE(listener.listen.host == "127.0.0.1" || listener.listen.host == "::1")
          << entry.path() << ": examples must listen on loopback only, got "
          << listener.listen.text();
    }
  }
  EXPECT_GE(count, 2);
}

TEST(Examples, BasicAndHashingHaveWhatTheyPromise) {
  auto basic = loadFile(TANDEM_EXAMPLES_DIR "/basic.yaml");
  ASSERT_TRUE(basic.has_value());
  ASSERT_THAT(basic->listeners, SizeIs(2));
  EXPECT_EQ(basic->listeners[0].mode, ListenerMode::kHttp);
  EXPECT_EQ(basic->listeners[1].mode, ListenerMode::kTcp);
  auto hashing = loadFile(TANDEM_EXAMPLES_DIR "/hashing.yaml");
  ASSERT_TRUE(hashing.has_value());
  ASSERT_THAT(hashing->backends, SizeIs(1));
  EXPECT_EQ(hashing->backends[0].balance, "maglev");
  EXPECT_EQ(hashing->backends[0].hash_key.kind, HashKeyKind::kHeader);
  EXPECT_EQ(hashing->backends[0].hash_key.name, "X-User");
}

}  // namespace
}  // namespace tandem::config
