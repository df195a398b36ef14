// etcd client, config source, leader election and `config push`, against a real etcd started per
// test suite on free 127.0.0.1 ports (Debian etcd-server). A missing etcd binary fails the tests
// (CI installs it) unless TANDEM_SKIP_ETCD=1.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../support/child_process.h"
#include "config/config_push.h"
#include "config/etcd_client.h"
#include "config/etcd_election.h"
#include "config/etcd_source.h"

namespace tandem::config {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using tandem::testing::ChildProcess;
using tandem::testing::freeTcpPort;
using tandem::testing::ScratchDir;
using ::testing::HasSubstr;

// TANDEM_ETCD_BIN overrides the Debian path (another build of etcd, or a check of the failure).
std::string etcdBin() {
  const char* v = std::getenv("TANDEM_ETCD_BIN");
  return v != nullptr && *v != '\0' ? v : "/usr/bin/etcd";
}

bool skipEtcd() {
  const char* v = std::getenv("TANDEM_SKIP_ETCD");
  return v != nullptr && std::string(v) == "1";
}

template <typename Pred>
bool waitUntil(Pred pred, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// One etcd process: fresh ports and data dir on the first start, the same ones on restarts.
class EtcdServer {
 public:
  ~EtcdServer() { stop(); }

  // Starts etcd and waits until GET /health says true. Returns "" or why it failed.
  std::string start() {
    const std::string bin = etcdBin();
    if (::access(bin.c_str(), X_OK) != 0) {
      return bin +
             " not found: install Debian etcd-server (scripts/install-deps.sh), or set "
             "TANDEM_SKIP_ETCD=1 to skip the etcd tests";
    }
    if (proc_.running()) return "";
    if (!dir_.made()) {
      if (!dir_.make()) return "mkdtemp failed";
      client_port_ = freeTcpPort();
      peer_port_ = freeTcpPort();
      if (client_port_ == 0 || peer_port_ == 0 || client_port_ == peer_port_) return "no free port";
    }
    const std::string client = "http://127.0.0.1:" + std::to_string(client_port_);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    std::string why =
        proc_.spawn({bin, "--name=default", "--data-dir=" + dir_.path() + "/data",
                     "--listen-client-urls=" + client, "--advertise-client-urls=" + client,
                     "--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
                     "--initial-cluster=default=" + peer, "--heartbeat-interval=10",
                     "--election-timeout=100", "--logger=zap", "--log-outputs=stderr"},
                    logPath());
    if (!why.empty()) return why;
    EtcdClientOptions o;
    o.endpoints = {url()};
    o.timeout = 200ms;
    auto health = EtcdClient::make(o);
    if (!health) return health.error().message;
    why = proc_.waitReady(
        [&] {
          auto h = health->health();
          return h && *h;
        },
        15s, 10ms, "report healthy");
    if (!why.empty()) stop();
    return why;
  }

  // SIGTERM, then SIGKILL after 5 s; always reaps.
  void stop() { proc_.signalAndReap(SIGTERM); }
  // SIGKILL at once (a crash).
  void kill() { proc_.signalAndReap(SIGKILL); }
  void pause() { proc_.pause(); }
  void resume() { proc_.resume(); }
  bool running() const { return proc_.running(); }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_port_); }
  std::string logPath() const { return dir_.path() + "/etcd.log"; }

 private:
  ScratchDir dir_{"tandem-etcd"};
  uint16_t client_port_ = 0;
  uint16_t peer_port_ = 0;
  ChildProcess proc_;
};

class EtcdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new EtcdServer;
    start_error_ = skipEtcd() ? "" : server_->start();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (skipEtcd()) GTEST_SKIP() << "TANDEM_SKIP_ETCD=1: etcd tests skipped";
    ASSERT_EQ(start_error_, "") << "cannot run etcd";
    if (!server_->running()) {
      ASSERT_EQ(server_->start(), "");  // a previous test stopped it
    }
  }

  static EtcdClient client(std::chrono::milliseconds timeout = 2s) {
    EtcdClientOptions o;
    o.endpoints = {server_->url()};
    o.timeout = timeout;
    auto c = EtcdClient::make(o);
    EXPECT_TRUE(c);
    return std::move(*c);
  }
  static std::string testKey() {
    return std::string("/test/") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  static inline EtcdServer* server_ = nullptr;
  static inline std::string start_error_;
};

// -------------------------------------------------------------------------------------------------
// base64

TEST(EtcdBase64, RfcVectors) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {"/tandem/config", "L3RhbmRlbS9jb25maWc="},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64Encode(plain), encoded);
    auto decoded = base64Decode(encoded);
    ASSERT_TRUE(decoded) << encoded;
    EXPECT_EQ(*decoded, plain);
  }
}

TEST(EtcdBase64, AllBytesAllLengths) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  for (size_t len = 0; len <= all.size(); ++len) {
    for (size_t start : {size_t(0), size_t(255 - std::min<size_t>(len, 255))}) {
      std::string s = all.substr(start, len);
      auto back = base64Decode(base64Encode(s));
      ASSERT_TRUE(back) << len;
      EXPECT_EQ(*back, s) << len;
    }
  }
}

TEST(EtcdBase64, RejectsMalformed) {
  for (const char* bad : {"Zm9", "Zm9v!A==", "Zg=a", "Z===", "====", "Zm9=v===", "Zh==", "Zm9 ",
                          "Zm9v\n", "Zm-v", "Zm_v"}) {
    EXPECT_FALSE(base64Decode(bad)) << bad;
  }
}

// -------------------------------------------------------------------------------------------------
// EtcdClient

class EtcdClientTest : public EtcdTest {};

TEST_F(EtcdClientTest, PutRangeDeleteAndTxn) {
  EtcdClient c = client();
  const std::string key = testKey();
  auto missing = c.range(key);
  ASSERT_TRUE(missing) << missing.error().message;
  EXPECT_FALSE(missing->kv.found);
  EXPECT_GT(missing->revision, 0);

  auto rev = c.put(key, "v1");
  ASSERT_TRUE(rev) << rev.error().message;
  auto got = c.range(key);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_TRUE(got->kv.found);
  EXPECT_EQ(got->kv.value, "v1");
  EXPECT_EQ(got->kv.mod_revision, *rev);
  EXPECT_EQ(got->kv.create_revision, *rev);
  EXPECT_EQ(got->kv.version, 1);
  EXPECT_EQ(got->kv.lease, 0);
  EXPECT_EQ(got->revision, *rev);

  // Binary bytes and an empty value (omitted by the gateway) survive.
  const std::string binary("a\0b\xff\n\"\\", 7);
  ASSERT_TRUE(c.put(key, binary));
  EXPECT_EQ(c.range(key)->kv.value, binary);
  ASSERT_TRUE(c.put(key, ""));
  got = c.range(key);
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->kv.found);
  EXPECT_EQ(got->kv.value, "");
  EXPECT_EQ(got->kv.version, 3);

  // Create-if-absent under a lease, then compare-and-delete.
  const std::string lock = key + "/lock";
  auto lease = c.leaseGrant(5);
  ASSERT_TRUE(lease) << lease.error().message;
  EXPECT_GE(lease->ttl_s, 5);
  auto first = c.txnCreate(lock, "me", lease->id);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_TRUE(first->created);
  auto second = c.txnCreate(lock, "you", 0);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_FALSE(second->created);
  EXPECT_TRUE(second->existing.found);
  EXPECT_EQ(second->existing.value, "me");
  EXPECT_EQ(second->existing.lease, lease->id);
  EXPECT_EQ(second->existing.create_revision, first->revision);

  EXPECT_EQ(c.txnDeleteIfValue(lock, "you"), false);
  EXPECT_EQ(c.txnDeleteIfValue(lock, "me", lease->id + 1), false);
  EXPECT_TRUE(c.range(lock)->kv.found);
  EXPECT_EQ(c.txnDeleteIfValue(lock, "me", lease->id), true);
  EXPECT_FALSE(c.range(lock)->kv.found);

  EXPECT_EQ(c.del(key), 1);
  EXPECT_EQ(c.del(key), 0);
  EXPECT_TRUE(c.leaseRevoke(lease->id));
}

TEST_F(EtcdClientTest, LargeValuesCrossChunkBoundaries) {
  // Bigger than Go's response buffer: range answers and watch messages arrive chunked, split
  // across several reads.
  EtcdClient c = client();
  const std::string key = testKey();
  std::string big;
  for (int i = 0; i < 300 * 1024; ++i) big += char((i * 7 + i / 251) & 0xff);
  auto rev = c.put(key, big);
  ASSERT_TRUE(rev) << rev.error().message;
  auto got = c.range(key);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_TRUE(got->kv.value == big);
  std::string seen;
  auto end = c.watch(
      key, *rev, [&](const EtcdWatchEvent& ev) { seen = ev.value; }, [&] { return !seen.empty(); },
      Clock::now() + 5s);
  ASSERT_TRUE(end) << end.error().message;
  EXPECT_TRUE(seen == big);
}

TEST_F(EtcdClientTest, Leases) {
  EtcdClient c = client();
  const std::string key = testKey();
  auto lease = c.leaseGrant(1);
  ASSERT_TRUE(lease) << lease.error().message;
  EXPECT_NE(lease->id, 0);
  auto ttl = c.leaseKeepAlive(lease->id);
  ASSERT_TRUE(ttl) << ttl.error().message;
  EXPECT_GE(*ttl, 1);
  ASSERT_TRUE(c.put(key, "held", lease->id));
  EXPECT_EQ(c.range(key)->kv.lease, lease->id);

  ASSERT_TRUE(c.leaseRevoke(lease->id));
  EXPECT_FALSE(c.range(key)->kv.found);  // revoking deletes the keys attached
  ttl = c.leaseKeepAlive(lease->id);
  ASSERT_TRUE(ttl) << ttl.error().message;
  EXPECT_EQ(*ttl, 0);  // gone
  auto put = c.put(key, "x", lease->id);
  ASSERT_FALSE(put);
  EXPECT_THAT(put.error().message, HasSubstr("lease not found"));
  EXPECT_FALSE(put.error().retryable);
}

TEST_F(EtcdClientTest, ErrorsNameTheEndpointAndEndpointsFailOver) {
  auto bad = EtcdClient::make({{"ftp://127.0.0.1:1"}});
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("ftp://127.0.0.1:1"));

  const std::string dead = "http://127.0.0.1:" + std::to_string(freeTcpPort());
  auto down = EtcdClient::make({{dead}, 500ms});
  ASSERT_TRUE(down);
  auto r = down->range("/x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "etcd " + dead + ": connection refused");
  EXPECT_TRUE(r.error().retryable);

  auto two = EtcdClient::make({{dead, server_->url()}, 500ms});
  ASSERT_TRUE(two);
  auto ok = two->put(testKey(), "via the second endpoint");
  EXPECT_TRUE(ok) << ok.error().message;

  auto cancelled = EtcdClient::make({{server_->url()}, 2s, [] { return true; }});
  ASSERT_TRUE(cancelled);
  auto c = cancelled->range("/x");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ECANCELED);
}

TEST_F(EtcdClientTest, WatchDeliversPutsInOrderAndDelete) {
  EtcdClient c = client();
  const std::string key = testKey();
  std::atomic<bool> created{false};
  std::vector<int64_t> revisions;
  std::thread writer([&] {
    if (!waitUntil([&] { return created.load(); }, 5s)) return;
    for (int i = 0; i < 5; ++i) {
      auto r = c.put(key, "v" + std::to_string(i));
      revisions.push_back(r ? *r : -1);
    }
    c.del(key);
  });
  std::vector<EtcdWatchEvent> events;
  auto end = c.watch(
      key, 0, [&](const EtcdWatchEvent& ev) { events.push_back(ev); },
      [&] { return events.size() >= 6; }, Clock::now() + 10s,
      [&](int64_t revision) {
        EXPECT_GT(revision, 0);
        created = true;
      });
  writer.join();
  ASSERT_TRUE(end) << end.error().message;
  EXPECT_EQ(end->reason, WatchEnd::Reason::kCancelled);
  ASSERT_EQ(events.size(), 6u);
  ASSERT_EQ(revisions.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(events[i].deleted);
    EXPECT_EQ(events[i].value, "v" + std::to_string(i));
    EXPECT_EQ(events[i].mod_revision, revisions[i]);
  }
  EXPECT_TRUE(events[5].deleted);
  EXPECT_EQ(events[5].mod_revision, revisions[4] + 1);
}

TEST_F(EtcdClientTest, WatchFromACompactedRevisionReportsCompaction) {
  EtcdClient c = client();
  const std::string key = testKey();
  auto r1 = c.put(key, "a");
  ASSERT_TRUE(c.put(key, "b"));
  auto r3 = c.put(key, "c");
  ASSERT_TRUE(r1 && r3);
  auto compacted = c.compact(*r3);
  ASSERT_TRUE(compacted) << compacted.error().message;
  int events = 0;
  auto end = c.watch(
      key, *r1, [&](const EtcdWatchEvent&) { ++events; }, [] { return false; }, Clock::now() + 5s);
  ASSERT_TRUE(end) << end.error().message;
  EXPECT_EQ(end->reason, WatchEnd::Reason::kCompacted);
  EXPECT_EQ(end->compact_revision, *r3);
  EXPECT_EQ(events, 0);

  // From the compaction point on, the watch works (and replays the newest value).
  std::string seen;
  end = c.watch(
      key, *r3, [&](const EtcdWatchEvent& ev) { seen = ev.value; }, [&] { return !seen.empty(); },
      Clock::now() + 5s);
  ASSERT_TRUE(end) << end.error().message;
  EXPECT_EQ(end->reason, WatchEnd::Reason::kCancelled);
  EXPECT_EQ(seen, "c");
}

TEST_F(EtcdClientTest, WatchStopsPromptlyAndReportsALostConnection) {
  EtcdClient c = client();
  std::atomic<bool> created{false}, stop{false};
  Clock::time_point returned;
  std::thread watcher([&] {
    auto end = c.watch(
        testKey(), 0, [](const EtcdWatchEvent&) {}, [&] { return stop.load(); },
        Clock::time_point::max(), [&](int64_t) { created = true; });
    returned = Clock::now();
    EXPECT_TRUE(end);
  });
  ASSERT_TRUE(waitUntil([&] { return created.load(); }, 5s));
  const auto asked = Clock::now();
  stop = true;
  watcher.join();
  EXPECT_LT(returned - asked, 150ms) << ms(returned - asked) << " ms";

  // etcd dies under a watch: a retryable error naming the endpoint (the next test restarts etcd).
  created = false;
  Result<WatchEnd> lost = WatchEnd{};
  std::thread victim([&] {
    lost = c.watch(
        testKey(), 0, [](const EtcdWatchEvent&) {}, [] { return false; }, Clock::now() + 10s,
        [&](int64_t) { created = true; });
  });
  ASSERT_TRUE(waitUntil([&] { return created.load(); }, 5s));
  server_->kill();
  victim.join();
  ASSERT_FALSE(lost);
  EXPECT_TRUE(lost.error().retryable);
  EXPECT_THAT(lost.error().message, HasSubstr("etcd " + server_->url() + ": "));
}

TEST_F(EtcdClientTest, WatchLatencyFromPutToCallback) {
  EtcdClient c = client();
  const std::string key = testKey();
  constexpr int kPuts = 50;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Clock::time_point> arrived;
  std::atomic<bool> created{false}, stop{false};
  std::thread watcher([&] {
    auto end = c.watch(
        key, 0,
        [&](const EtcdWatchEvent&) {
          std::lock_guard lock(mu);
          arrived.push_back(Clock::now());
          cv.notify_all();
        },
        [&] { return stop.load(); }, Clock::now() + 30s, [&](int64_t) { created = true; });
    EXPECT_TRUE(end);
  });
  ASSERT_TRUE(waitUntil([&] { return created.load(); }, 5s));
  std::vector<double> latency_us, put_us;
  for (int i = 0; i < kPuts; ++i) {
    const auto sent = Clock::now();
    ASSERT_TRUE(c.put(key, "value " + std::to_string(i)));
    put_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - sent).count());
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 2s, [&] { return int(arrived.size()) > i; }));
    latency_us.push_back(std::chrono::duration<double, std::micro>(arrived[i] - sent).count());
  }
  stop = true;
  watcher.join();
  std::sort(latency_us.begin(), latency_us.end());
  std::sort(put_us.begin(), put_us.end());
  const double p50 = latency_us[kPuts / 2];
  const double p99 = latency_us[kPuts * 99 / 100];
  std::printf(
      "[ measure  ] etcd watch delivery, put -> callback over %d puts: p50 %.0f us, "
      "p99 %.0f us, max %.0f us (the put call alone: p50 %.0f us, p99 %.0f us)\n",
      kPuts, p50, p99, latency_us.back(), put_us[kPuts / 2], put_us[kPuts * 99 / 100]);
  EXPECT_LT(p99, 200'000);  // loopback: milliseconds, not hundreds of them
}

// -------------------------------------------------------------------------------------------------
// EtcdSource

struct SourceProbe {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<std::string, int64_t>> configs;
  std::vector<std::pair<bool, std::string>> states;

  EtcdSource::OnConfig onConfig() {
    return [this](std::string text, int64_t revision) {
      std::lock_guard lock(mu);
      configs.emplace_back(std::move(text), revision);
      cv.notify_all();
    };
  }
  EtcdSource::OnState onState() {
    return [this](bool reachable, std::string why) {
      std::lock_guard lock(mu);
      states.emplace_back(reachable, std::move(why));
      cv.notify_all();
    };
  }
  template <typename Pred>
  bool wait(Pred pred, std::chrono::milliseconds limit) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, limit, [&] { return pred(); });
  }
  bool waitConfigs(size_t n, std::chrono::milliseconds limit = 5s) {
    return wait([&] { return configs.size() >= n; }, limit);
  }
  // Waits for the newest state to say `reachable`.
  bool waitReachable(bool reachable, std::chrono::milliseconds limit) {
    return wait(
        [&] {
          for (auto it = states.rbegin(); it != states.rend(); ++it) {
            if (it->second.find("key ") == 0) continue;  // key events, not reachability
            return it->first == reachable;
          }
          return false;
        },
        limit);
  }
  std::pair<std::string, int64_t> at(size_t i) {
    std::lock_guard lock(mu);
    return i < configs.size() ? configs[i] : std::pair<std::string, int64_t>{};
  }
  size_t configCount() {
    std::lock_guard lock(mu);
    return configs.size();
  }
};

class EtcdSourceTest : public EtcdTest {
 protected:
  std::unique_ptr<EtcdSource> makeSource(SourceProbe& probe,
                                         std::chrono::milliseconds backoff = 100ms,
                                         std::chrono::milliseconds backoff_max = 5s) {
    EtcdSourceOptions o;
    o.endpoints = {server_->url()};
    o.key = testKey();
    o.timeout = 1s;
    o.backoff_initial = backoff;
    o.backoff_max = backoff_max;
    auto s = EtcdSource::make(o, probe.onConfig(), probe.onState());
    EXPECT_TRUE(s);
    return s ? std::move(*s) : nullptr;
  }
};

TEST_F(EtcdSourceTest, InitialReadLiveUpdatesAndADeletedKey) {
  EtcdClient c = client();
  const std::string key = testKey();
  auto r1 = c.put(key, "version: 1");
  ASSERT_TRUE(r1);
  SourceProbe probe;
  auto source = makeSource(probe);
  ASSERT_TRUE(source);
  source->start();
  ASSERT_TRUE(probe.waitConfigs(1));
  EXPECT_EQ(probe.at(0), std::make_pair(std::string("version: 1"), *r1));
  ASSERT_TRUE(probe.waitReachable(true, 1s));

  auto r2 = c.put(key, "version: 2");
  ASSERT_TRUE(probe.waitConfigs(2));
  EXPECT_EQ(probe.at(1), std::make_pair(std::string("version: 2"), *r2));

  ASSERT_EQ(c.del(key), 1);
  ASSERT_TRUE(probe.wait(
      [&] {
        return std::any_of(probe.states.begin(), probe.states.end(), [](const auto& s) {
          return s.first && s.second == "key deleted; keeping the running config";
        });
      },
      5s));
  auto r3 = c.put(key, "version: 3");
  ASSERT_TRUE(probe.waitConfigs(3));
  // The delete was never delivered: the next delivery is the next value.
  EXPECT_EQ(probe.at(2), std::make_pair(std::string("version: 3"), *r3));
  EXPECT_EQ(source->lastRevision(), *r3);

  const auto t0 = Clock::now();
  source->stop();
  EXPECT_LT(Clock::now() - t0, 200ms) << ms(Clock::now() - t0) << " ms";
  EXPECT_EQ(probe.configCount(), 3u);
}

TEST_F(EtcdSourceTest, AMissingKeyIsReportedThenDeliveredWhenCreated) {
  SourceProbe probe;
  auto source = makeSource(probe);
  source->start();
  ASSERT_TRUE(probe.wait(
      [&] {
        return std::any_of(probe.states.begin(), probe.states.end(), [](const auto& s) {
          return s.second.find("does not exist") != std::string::npos;
        });
      },
      5s));
  auto r = client().put(testKey(), "created later");
  ASSERT_TRUE(probe.waitConfigs(1));
  EXPECT_EQ(probe.at(0), std::make_pair(std::string("created later"), *r));
}

TEST_F(EtcdSourceTest, SurvivesAnEtcdRestart) {
  const std::string key = testKey();
  ASSERT_TRUE(client().put(key, "before"));
  SourceProbe probe;
  auto source = makeSource(probe);
  source->start();
  ASSERT_TRUE(probe.waitConfigs(1));
  ASSERT_TRUE(probe.waitReachable(true, 2s));

  server_->kill();
  ASSERT_TRUE(probe.waitReachable(false, 3s));
  {
    std::lock_guard lock(probe.mu);
    EXPECT_THAT(probe.states.back().second, HasSubstr("etcd " + server_->url()));
  }
  EXPECT_EQ(probe.configCount(), 1u);  // nothing delivered while etcd is away

  const auto restart = Clock::now();
  ASSERT_EQ(server_->start(), "");  // same ports, same data dir
  ASSERT_TRUE(probe.waitReachable(true, 10s));
  std::printf("[ measure  ] etcd source reachable again %.0f ms after etcd was restarted\n",
              ms(Clock::now() - restart));
  EXPECT_EQ(probe.configCount(), 1u);

  auto r = client().put(key, "after the restart");
  ASSERT_TRUE(r);
  ASSERT_TRUE(probe.waitConfigs(2));
  EXPECT_EQ(probe.at(1), std::make_pair(std::string("after the restart"), *r));
}

TEST_F(EtcdSourceTest, RereadsWhenItsRevisionWasCompactedWhileAway) {
  const std::string key = testKey();
  ASSERT_TRUE(client().put(key, "v1"));
  SourceProbe probe;
  // A fixed 2 s backoff leaves time to change and compact the history before the source returns.
  auto source = makeSource(probe, 2s, 2s);
  source->start();
  ASSERT_TRUE(probe.waitConfigs(1));

  server_->kill();
  ASSERT_TRUE(probe.waitReachable(false, 3s));
  const auto detected = Clock::now();
  ASSERT_EQ(server_->start(), "");
  EtcdClient c = client();
  auto r2 = c.put(key, "v2");
  ASSERT_TRUE(r2);
  int64_t last = *r2;
  for (int i = 0; i < 3; ++i) last = c.put(key + "/other", "noise").value_or(last);
  ASSERT_TRUE(c.compact(last));
  ASSERT_LT(Clock::now() - detected, 1500ms) << "etcd restarted too slowly for this test";
  EXPECT_EQ(probe.configCount(), 1u);

  ASSERT_TRUE(probe.waitConfigs(2, 6s));
  EXPECT_EQ(probe.at(1), std::make_pair(std::string("v2"), *r2));
  auto r3 = c.put(key, "v3");
  ASSERT_TRUE(probe.waitConfigs(3));
  EXPECT_EQ(probe.at(2), std::make_pair(std::string("v3"), *r3));
  EXPECT_EQ(probe.configCount(), 3u);  // v2 once
}

TEST_F(EtcdSourceTest, StopIsPromptWhileEtcdIsUnreachable) {
  SourceProbe probe;
  EtcdSourceOptions o;
  o.endpoints = {"http://127.0.0.1:" + std::to_string(freeTcpPort())};
  auto source = EtcdSource::make(o, probe.onConfig(), probe.onState());
  ASSERT_TRUE(source);
  (*source)->start();
  ASSERT_TRUE(probe.waitReachable(false, 3s));
  {
    std::lock_guard lock(probe.mu);
    EXPECT_THAT(probe.states.back().second, HasSubstr("connection refused"));
  }
  std::this_thread::sleep_for(800ms);  // let the backoff grow past a second
  const auto t0 = Clock::now();
  (*source)->stop();
  EXPECT_LT(Clock::now() - t0, 200ms);
  std::lock_guard lock(probe.mu);
  EXPECT_EQ(probe.states.size(), 1u);  // reported once, not on every retry
}

// -------------------------------------------------------------------------------------------------
// EtcdElection

struct RoleProbe {
  std::mutex mu;
  std::vector<std::pair<bool, std::string>> roles;
  EtcdElection::OnRole onRole() {
    return [this](bool leader, std::string id) {
      std::lock_guard lock(mu);
      roles.emplace_back(leader, std::move(id));
    };
  }
};

// Counts leaders every millisecond on a thread of its own; `max` is the most seen at once.
class LeaderSampler {
 public:
  LeaderSampler(const EtcdElection& a, const EtcdElection& b)
      : thread_([this, &a, &b] {
          while (!stop_) {
            const int n = int(a.isLeader()) + int(b.isLeader());
            max_ = std::max(max_.load(), n);
            std::this_thread::sleep_for(1ms);
          }
        }) {}
  ~LeaderSampler() { finish(); }
  int finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return max_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> max_{0};
  std::thread thread_;
};

class EtcdElectionTest : public EtcdTest {
 protected:
  std::unique_ptr<EtcdElection> makeElection(const std::string& id, RoleProbe& probe) {
    EtcdElectionOptions o;
    o.endpoints = {server_->url()};
    o.key = testKey();
    o.node_id = id;
    o.ttl = 1s;
    auto e = EtcdElection::make(o, probe.onRole());
    EXPECT_TRUE(e);
    return e ? std::move(*e) : nullptr;
  }
  static int leaders(const EtcdElection& a, const EtcdElection& b) {
    return int(a.isLeader()) + int(b.isLeader());
  }
};

TEST_F(EtcdElectionTest, ExactlyOneLeaderAndResignHandsOver) {
  RoleProbe pa, pb;
  auto a = makeElection("lb1", pa);
  auto b = makeElection("lb2", pb);
  ASSERT_TRUE(a && b);
  a->start();
  b->start();
  ASSERT_TRUE(waitUntil([&] { return leaders(*a, *b) == 1; }, 3s));
  LeaderSampler sampler(*a, *b);
  EtcdElection& leader = a->isLeader() ? *a : *b;
  EtcdElection& follower = a->isLeader() ? *b : *a;
  ASSERT_TRUE(waitUntil([&] { return follower.leader() == leader.nodeId(); }, 2s));
  // Steady state over several keepalive rounds: one leader, and both agree on who it is.
  for (int i = 0; i < 60; ++i) {
    ASSERT_EQ(leaders(*a, *b), 1) << "observation " << i;
    ASSERT_EQ(leader.leader(), leader.nodeId());
    ASSERT_EQ(follower.leader(), leader.nodeId());
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(client().range(testKey())->kv.value == leader.nodeId());

  const auto t0 = Clock::now();
  EXPECT_TRUE(leader.resign());
  EXPECT_FALSE(leader.isLeader());
  ASSERT_TRUE(waitUntil([&] { return follower.isLeader(); }, 1s));
  std::printf("[ measure  ] etcd election: hand-over after resign() took %.1f ms\n",
              ms(Clock::now() - t0));
  EXPECT_EQ(follower.leader(), follower.nodeId());
  EXPECT_EQ(sampler.finish(), 1) << "two leaders were observed at once";

  RoleProbe& lp = &leader == a.get() ? pa : pb;
  RoleProbe& fp = &leader == a.get() ? pb : pa;
  std::lock_guard l1(lp.mu), l2(fp.mu);
  ASSERT_GE(lp.roles.size(), 2u);
  EXPECT_EQ(lp.roles.front(), std::make_pair(true, leader.nodeId()));
  EXPECT_EQ(lp.roles.back(), std::make_pair(false, std::string()));
  ASSERT_GE(fp.roles.size(), 2u);
  EXPECT_EQ(fp.roles.front(), std::make_pair(false, leader.nodeId()));
  EXPECT_EQ(fp.roles.back(), std::make_pair(true, follower.nodeId()));
}

TEST_F(EtcdElectionTest, ARevokedLeaseHandsOverWithinTheTtl) {
  RoleProbe pa, pb;
  auto a = makeElection("lb1", pa);
  auto b = makeElection("lb2", pb);
  a->start();
  b->start();
  ASSERT_TRUE(waitUntil([&] { return leaders(*a, *b) == 1; }, 3s));
  EtcdElection& leader = a->isLeader() ? *a : *b;
  EtcdElection& follower = a->isLeader() ? *b : *a;
  ASSERT_TRUE(waitUntil([&] { return follower.leader() == leader.nodeId(); }, 2s));
  LeaderSampler sampler(*a, *b);
  auto held = client().range(testKey());
  ASSERT_TRUE(held && held->kv.found && held->kv.lease != 0);

  const auto t0 = Clock::now();
  ASSERT_TRUE(client().leaseRevoke(held->kv.lease));
  ASSERT_TRUE(waitUntil([&] { return follower.isLeader() && !leader.isLeader(); }, 1s));
  std::printf(
      "[ measure  ] etcd election: hand-over after the leader's lease was revoked took "
      "%.1f ms\n",
      ms(Clock::now() - t0));
  EXPECT_EQ(sampler.finish(), 1) << "two leaders were observed at once";
  // The old leader campaigns again and follows the new one.
  EXPECT_TRUE(waitUntil([&] { return leader.leader() == follower.nodeId(); }, 2s));
  EXPECT_EQ(leaders(*a, *b), 1);
}

TEST_F(EtcdElectionTest, ALeaderCutOffFromEtcdStepsDownWithinTheTtl) {
  RoleProbe pa, pb;
  auto a = makeElection("lb1", pa);
  auto b = makeElection("lb2", pb);
  a->start();
  b->start();
  ASSERT_TRUE(waitUntil([&] { return leaders(*a, *b) == 1; }, 3s));
  EtcdElection& leader = a->isLeader() ? *a : *b;
  std::this_thread::sleep_for(150ms);  // somewhere inside a keepalive period

  // SIGSTOP: connections hang instead of failing fast, as in a partition.
  server_->pause();
  const auto t0 = Clock::now();
  ASSERT_TRUE(waitUntil([&] { return !leader.isLeader(); }, 2s));
  const auto took = Clock::now() - t0;
  std::printf(
      "[ measure  ] etcd election: leader cut off from etcd stepped down after %.0f ms "
      "(ttl 1000 ms)\n",
      ms(took));
  EXPECT_LT(took, 1s);
  EXPECT_EQ(leaders(*a, *b), 0);  // the follower cannot win without etcd either

  server_->resume();
  EXPECT_TRUE(waitUntil([&] { return leaders(*a, *b) == 1; }, 5s));
  a->stop();
  b->stop();
  EXPECT_EQ(leaders(*a, *b), 0);
}

TEST_F(EtcdElectionTest, RejectsBadOptions) {
  RoleProbe p;
  EtcdElectionOptions o;
  o.endpoints = {server_->url()};
  EXPECT_FALSE(EtcdElection::make(o, p.onRole()));  // no node id
  o.node_id = "lb1";
  o.ttl = 0s;
  EXPECT_FALSE(EtcdElection::make(o, p.onRole()));
  o.ttl = 1s;
  o.endpoints = {"127.0.0.1:2379"};
  EXPECT_FALSE(EtcdElection::make(o, p.onRole()));
}

// -------------------------------------------------------------------------------------------------
// tandem config push

class ConfigPushTest : public EtcdTest {
 protected:
  void SetUp() override {
    EtcdTest::SetUp();
    char tmpl[] = "/tmp/tandem-push-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  std::string dir_;
};

constexpr const char* kGoodConfig = R"(# pushed by a test
listeners:
  - {name: web, listen: 127.0.0.1:8080, mode: http, backend: app}
backends:
  - name: app
    servers:
      - {name: a1, address: 127.0.0.1:9001}
)";

TEST_F(ConfigPushTest, PushesAValidFile) {
  const std::string file = write("good.yaml", kGoodConfig);
  const std::string key = testKey();
  ::testing::internal::CaptureStdout();
  const int rc = pushConfig(file, {server_->url()}, key);
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0);
  auto stored = client().range(key);
  ASSERT_TRUE(stored && stored->kv.found);
  EXPECT_EQ(stored->kv.value, kGoodConfig);
  EXPECT_EQ(out, "pushed " + file + " to " + key + " at revision " +
                     std::to_string(stored->kv.mod_revision) + "\n");
}

TEST_F(ConfigPushTest, RefusesAnInvalidFileWithoutWriting) {
  const std::string file = write("bad.yaml", R"(listeners:
  - {name: web, listen: 127.0.0.1:8080, mode: http, backend: nope}
bogus: 1
)");
  const std::string key = testKey();
  ::testing::internal::CaptureStderr();
  const int rc = pushConfig(file, {server_->url()}, key);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(err, HasSubstr(file + ":3: "));
  EXPECT_THAT(err, HasSubstr(file + ":2: "));
  auto stored = client().range(key);
  ASSERT_TRUE(stored);
  EXPECT_FALSE(stored->kv.found);
}

TEST_F(ConfigPushTest, ExitsTwoWhenEtcdIsUnreachable) {
  const std::string file = write("good.yaml", kGoodConfig);
  const std::string dead = "http://127.0.0.1:" + std::to_string(freeTcpPort());
  ::testing::internal::CaptureStderr();
  const int rc = pushConfig(file, {dead}, "/tandem/config");
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 2);
  EXPECT_THAT(err, HasSubstr("etcd " + dead + ": connection refused"));
}

}  // namespace
}  // namespace tandem::config
