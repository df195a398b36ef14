// The Redis state store against real redis-server processes (one per test, free 127.0.0.1 port):
// two tables with two node ids share state through one Redis, survive its loss and resync.
// Waits poll the tables with deadlines; nothing sleeps to synchronise.
#include "state/redis_replicator.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "redis_server.h"
#include "state/redis_codec.h"
#include "state/table.h"

namespace tandem::state {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using tandem::testing::RedisServer;

constexpr auto kWait = 5s;

template <typename Pred>
bool waitUntil(Pred pred, std::chrono::milliseconds limit = kWait) {
  const auto end = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

struct ContextSwitches {
  long voluntary = 0;    // the thread blocked (a lock, a syscall that waits)
  long involuntary = 0;  // the scheduler preempted it
};
ContextSwitches contextSwitches() {
  rusage u{};
  ::getrusage(RUSAGE_THREAD, &u);
  return {u.ru_nvcsw, u.ru_nivcsw};
}

// What the observer heard, in order.
class LinkLog {
 public:
  ReplicatorObserver observer() {
    ReplicatorObserver o;
    o.link = [this](const std::string& peer, bool up, const std::string& detail) {
      std::lock_guard lock(mu_);
      events_.push_back({peer, up, detail});
    };
    return o;
  }
  struct Event {
    std::string peer;
    bool up;
    std::string detail;
  };
  std::vector<Event> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  size_t count(bool up) const {
    std::lock_guard lock(mu_);
    return static_cast<size_t>(
        std::count_if(events_.begin(), events_.end(), [&](const Event& e) { return e.up == up; }));
  }

 private:
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

// One instance: its table, its replicator, what its observer heard.
struct Node {
  Node(const std::string& id, uint16_t port)
      : table(Table::Options{.node_id = id}), rep(table, options(id, port), link.observer()) {}

  static RedisReplicatorOptions options(const std::string& id, uint16_t port) {
    RedisReplicatorOptions o;
    o.node_id = id;
    o.port = port;
    o.backoff_initial = 20ms;
    o.backoff_max = 200ms;
    o.ping_interval = 200ms;
    o.expire_interval = 50ms;
    return o;
  }
  PeerStatus peer() const { return rep.status().peers.at(0); }
  bool connected() const { return peer().state == "connected"; }
  std::optional<std::string> get(const std::string& key) const {
    return table.get(Kind::kSticky, key, unixMs());
  }

  LinkLog link;
  Table table;
  RedisReplicator rep;
};

std::map<std::string, std::string> hgetall(RedisServer& redis, const std::string& key) {
  std::map<std::string, std::string> m;
  auto r = redis.command({"HGETALL", key});
  if (!r || r->type != REDIS_REPLY_ARRAY) return m;
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    m[std::string(r->element[i]->str, r->element[i]->len)] =
        std::string(r->element[i + 1]->str, r->element[i + 1]->len);
  }
  return m;
}

long long integer(RedisServer& redis, const std::vector<std::string>& args) {
  auto r = redis.command(args);
  return r && r->type == REDIS_REPLY_INTEGER ? r->integer : -100;
}

const std::string kUser1 = std::string("app") + kSep + "user1";
const std::string kUser1Redis = "tandem:sticky:app%1Fuser1";
const std::string kWindow = std::string("app") + kSep + "198.18.0.1" + kSep + "7";
const std::string kWindowRedis = "tandem:rate:app%1F198.18.0.1%1F7";

class RedisReplicatorTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(redis_.start(), "") << "cannot run redis-server"; }

  // Two started nodes, both connected.
  void startPair() {
    a_ = std::make_unique<Node>("A", redis_.port());
    b_ = std::make_unique<Node>("B", redis_.port());
    ASSERT_TRUE(a_->rep.start());
    ASSERT_TRUE(b_->rep.start());
    ASSERT_TRUE(waitUntil([&] { return a_->connected() && b_->connected(); }));
  }

  RedisServer redis_;
  std::unique_ptr<Node> a_, b_;
};

// ---- codec (no server needed, but cheap enough to share the fixture-less suite) ----

TEST(RedisCodecTest, KeysRoundTripEveryByte) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  const std::string suffix = redis::keySuffix(Kind::kHealth, all);
  for (char c : suffix) {  // nothing a glob, a message line or redis-cli would trip on
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) ||
                std::string(":%._~-").find(c) != std::string::npos)
        << int(c);
  }
  auto back = redis::parseKeySuffix(suffix);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->first, Kind::kHealth);
  EXPECT_EQ(back->second, all);
  EXPECT_EQ(redis::keySuffix(Kind::kSticky, kUser1), "sticky:app%1Fuser1");
  EXPECT_FALSE(redis::parseKeySuffix("config:x"));
  EXPECT_FALSE(redis::parseKeySuffix("sticky:a%1"));
  EXPECT_FALSE(redis::parseKeySuffix("sticky:a%zz"));
  EXPECT_FALSE(redis::parseKeySuffix("sticky:a b"));
  EXPECT_FALSE(redis::parseKeySuffix("sticky"));
  EXPECT_EQ(redis::scanPattern("t*[x]:"), "t\\*\\[x\\]:*");
}

TEST(RedisCodecTest, VersionsSortAsText) {
  EXPECT_EQ(redis::versionText(42), "00000000000000000042");
  EXPECT_LT(redis::versionText(999), redis::versionText(1000));
  EXPECT_EQ(redis::versionText(UINT64_MAX).size(), 20u);
}

TEST(RedisCodecTest, RecordsFromHashes) {
  auto r = redis::recordFromHash(
      Kind::kSticky, "k",
      {{"v", "00000000000000000007"}, {"o", "A"}, {"x", "99"}, {"w", "5"}, {"d", "srv"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->version, 7u);
  EXPECT_EQ(r->origin, "A");
  EXPECT_EQ(r->expires_ms, 99);
  EXPECT_EQ(r->written_us, 5);
  EXPECT_EQ(r->value, "srv");
  auto c = redis::recordFromHash(Kind::kRate, "k", {{"c:B", "4"}, {"c:A", "3"}, {"x", "0"}});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->counts, (std::vector<std::pair<std::string, uint64_t>>{{"A", 3}, {"B", 4}}));
  EXPECT_FALSE(redis::recordFromHash(Kind::kSticky, "k", {{"d", "no version"}}));
  EXPECT_FALSE(redis::recordFromHash(Kind::kSticky, "k", {{"v", "12x"}}));
  EXPECT_FALSE(redis::recordFromHash(Kind::kRate, "k", {{"c:A", "-1"}}));
  EXPECT_FALSE(redis::recordFromHash(Kind::kRate, "k", {{"x", "5"}}));
}

TEST(RedisCodecTest, ChangeMessages) {
  const std::string text = redis::changeMessage("node\n1", {"sticky:a", "rate:b%1F1"});
  auto m = redis::parseChangeMessage(text);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->origin, "node\n1");
  ASSERT_EQ(m->suffixes.size(), 2u);
  EXPECT_EQ(m->suffixes[0], "sticky:a");
  EXPECT_EQ(m->suffixes[1], "rate:b%1F1");
  EXPECT_FALSE(redis::parseChangeMessage("bad origin\nsticky:a"));
}

// ---- against Redis ----

TEST_F(RedisReplicatorTest, StickyPutOnAIsReadOnB) {
  startPair();
  a_->table.put(Kind::kSticky, kUser1, "s1", 60'000, unixUs());
  ASSERT_TRUE(waitUntil([&] { return b_->get(kUser1) == "s1"; }));

  auto h = hgetall(redis_, kUser1Redis);
  EXPECT_EQ(h["d"], "s1");
  EXPECT_EQ(h["o"], "A");
  EXPECT_EQ(h["v"].size(), 20u);
  EXPECT_GT(a_->peer().records_sent, 0u);
  EXPECT_GT(b_->peer().records_received, 0u);
  EXPECT_EQ(b_->rep.status().store, "redis");
  EXPECT_EQ(b_->rep.status().lag.count(), 1u);
  EXPECT_EQ(a_->peer().full_syncs, 1u);
  EXPECT_EQ(a_->peer().connects, 1u);
  EXPECT_EQ(a_->peer().address, "127.0.0.1:" + std::to_string(redis_.port()));
  // Each side told its observer once that Redis is up, and nothing else.
  ASSERT_EQ(a_->link.events().size(), 1u);
  EXPECT_EQ(a_->link.events()[0].peer, "redis");
  EXPECT_TRUE(a_->link.events()[0].up);

  // B changes it back: A follows.
  b_->table.put(Kind::kSticky, kUser1, "s2", 60'000, unixUs());
  ASSERT_TRUE(waitUntil([&] { return a_->get(kUser1) == "s2"; }));
  EXPECT_EQ(hgetall(redis_, kUser1Redis)["o"], "B");
}

TEST_F(RedisReplicatorTest, CountersFromBothNodesSumOnBoth) {
  startPair();
  a_->table.add(Kind::kRate, kWindow, 3, 60'000, unixUs());
  b_->table.add(Kind::kRate, kWindow, 4, 60'000, unixUs());
  const auto total = [&](Node& n) { return n.table.total(Kind::kRate, kWindow, unixMs()); };
  ASSERT_TRUE(waitUntil([&] { return total(*a_) == 7 && total(*b_) == 7; }))
      << total(*a_) << " " << total(*b_);
  for (int i = 0; i < 50; ++i) {
    a_->table.add(Kind::kRate, kWindow, 1, 60'000, unixUs());
    b_->table.add(Kind::kRate, kWindow, 2, 60'000, unixUs());
  }
  ASSERT_TRUE(waitUntil([&] { return total(*a_) == 157 && total(*b_) == 157; }))
      << total(*a_) << " " << total(*b_);
  auto h = hgetall(redis_, kWindowRedis);
  EXPECT_EQ(h["c:A"], "53");
  EXPECT_EQ(h["c:B"], "104");
}

// Redis holds a newer version than a node writes (another instance's write whose notification
// has not arrived): the script refuses the older one and the node takes the newer one.
TEST_F(RedisReplicatorTest, OlderVersionNeverOverwritesNewer) {
  startPair();
  const int64_t t0 = unixUs();
  const auto store = [&](const std::string& version, const std::string& origin,
                         const std::string& value) {
    auto r = redis_.command({"HSET", kUser1Redis, "v", version, "o", origin, "x", "0", "w",
                             std::to_string(t0), "d", value});
    ASSERT_TRUE(r && r->type == REDIS_REPLY_INTEGER);
  };
  // Newer in Redis first, older write second.
  store(redis::versionText(t0 + 1000), "C", "newer");
  b_->table.put(Kind::kSticky, kUser1, "older", 60'000, t0);
  ASSERT_TRUE(waitUntil([&] { return b_->get(kUser1) == "newer"; })) << *b_->get(kUser1);
  EXPECT_EQ(hgetall(redis_, kUser1Redis)["d"], "newer");
  // Same version, lower origin ("B" < "C"): loses the tie as well.
  const std::string k2 = std::string("app") + kSep + "tie";
  redis_.command({"HSET", "tandem:sticky:app%1Ftie", "v", redis::versionText(t0), "o", "C", "x",
                  "0", "w", "1", "d", "C-wins"});
  b_->table.put(Kind::kSticky, k2, "B-loses", 60'000, t0);
  ASSERT_TRUE(waitUntil([&] { return b_->get(k2) == "C-wins"; }));
  EXPECT_EQ(hgetall(redis_, "tandem:sticky:app%1Ftie")["d"], "C-wins");

  // Older in Redis first, newer write second: replaced, and the other node follows.
  const std::string k3 = std::string("app") + kSep + "k3";
  redis_.command({"HSET", "tandem:sticky:app%1Fk3", "v", redis::versionText(t0 - 1000), "o", "Z",
                  "x", "0", "w", "1", "d", "old"});
  a_->table.put(Kind::kSticky, k3, "new", 60'000, t0);
  ASSERT_TRUE(waitUntil([&] { return b_->get(k3) == "new"; }));
  auto h = hgetall(redis_, "tandem:sticky:app%1Fk3");
  EXPECT_EQ(h["d"], "new");
  EXPECT_EQ(h["v"], redis::versionText(t0));

  // Concurrent writes through both nodes with different versions, in both orders: whatever the
  // timing, both tables and Redis end on one value, the same everywhere.
  for (int order = 0; order < 2; ++order) {
    const std::string k = std::string("app") + kSep + "race" + std::to_string(order);
    const int64_t now = unixUs();
    Node& first = order == 0 ? *a_ : *b_;
    Node& second = order == 0 ? *b_ : *a_;
    first.table.put(Kind::kSticky, k, "v-hi", 60'000, now + 5'000);
    second.table.put(Kind::kSticky, k, "v-lo", 60'000, now);
    const std::string rk = "tandem:" + redis::keySuffix(Kind::kSticky, k);
    ASSERT_TRUE(waitUntil([&] {
      auto va = a_->get(k), vb = b_->get(k);
      return va && va == vb && hgetall(redis_, rk)["d"] == *va;
    })) << order;
  }
}

TEST_F(RedisReplicatorTest, KeysCarryTtlsAndExpiredRecordsDisappear) {
  startPair();
  a_->table.put(Kind::kSticky, kUser1, "s1", 1000, unixUs());
  a_->table.add(Kind::kRate, kWindow, 1, 1000, unixUs());
  a_->table.put(Kind::kSticky, "forever", "s1", 0, unixUs());
  ASSERT_TRUE(waitUntil([&] {
    return b_->get(kUser1) == "s1" && b_->table.total(Kind::kRate, kWindow, unixMs()) == 1;
  }));
  const long long sticky_ttl = integer(redis_, {"PTTL", kUser1Redis});
  const long long rate_ttl = integer(redis_, {"PTTL", kWindowRedis});
  EXPECT_GT(sticky_ttl, 0);
  EXPECT_LE(sticky_ttl, 1000);
  EXPECT_GT(rate_ttl, 0);
  EXPECT_LE(rate_ttl, 1000);
  ASSERT_TRUE(waitUntil([&] { return b_->get("forever") == "s1"; }));
  EXPECT_EQ(integer(redis_, {"PTTL", "tandem:sticky:forever"}), -1);  // no expiry

  // Gone from Redis, from both tables' reads, and swept from both tables.
  ASSERT_TRUE(waitUntil([&] {
    return integer(redis_, {"EXISTS", kUser1Redis, kWindowRedis}) == 0 && !b_->get(kUser1) &&
           !a_->get(kUser1) && b_->table.total(Kind::kRate, kWindow, unixMs()) == 0;
  }));
  ASSERT_TRUE(
      waitUntil([&] { return a_->table.stats().entries == 1 && b_->table.stats().entries == 1; }));
}

// Redis dies (SIGKILL) and comes back empty on the same port: the nodes serve local state
// meanwhile (fast), report it, then reconnect, resync and exchange what was written meanwhile.
TEST_F(RedisReplicatorTest, RedisLossDegradesToLocalStateAndResyncsOnReturn) {
  startPair();
  a_->table.put(Kind::kSticky, kUser1, "before", 60'000, unixUs());
  ASSERT_TRUE(waitUntil([&] { return b_->get(kUser1) == "before"; }));

  redis_.kill();
  ASSERT_TRUE(waitUntil([&] { return a_->peer().state == "down" && b_->peer().state == "down"; }));
  EXPECT_FALSE(a_->peer().last_error.empty());
  ASSERT_TRUE(waitUntil([&] { return a_->link.count(false) == 1 && b_->link.count(false) == 1; }));
  EXPECT_EQ(a_->link.events().back().peer, "redis");

  // Local writes succeed and stay fast while Redis is away: each takes < 1 ms. On a loaded
  // machine the scheduler may take the CPU away in the middle of one; such a write is excused
  // only if the thread was preempted (involuntary switch) and never blocked (voluntary switch).
  int64_t slowest_ns = 0;
  int preempted = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string k = std::string("app") + kSep + "outage" + std::to_string(i);
    const ContextSwitches before = contextSwitches();
    const auto t = Clock::now();
    a_->table.put(Kind::kSticky, k, "a" + std::to_string(i), 60'000, unixUs());
    const auto took = Clock::now() - t;
    const ContextSwitches after = contextSwitches();
    if (took >= 1ms && after.involuntary > before.involuntary &&
        after.voluntary == before.voluntary) {
      ++preempted;
      continue;
    }
    slowest_ns = std::max<int64_t>(slowest_ns, std::chrono::nanoseconds(took).count());
    ASSERT_LT(took, 1ms) << "write " << i << " while Redis is down";
    ASSERT_EQ(a_->get(k), "a" + std::to_string(i));
  }
  std::printf(
      "[ measure  ] slowest of 1000 table writes while Redis is down: %.1f us (%d preempted "
      "writes excluded)\n",
      double(slowest_ns) / 1000, preempted);
  a_->table.add(Kind::kRate, kWindow, 5, 60'000, unixUs());
  b_->table.add(Kind::kRate, kWindow, 6, 60'000, unixUs());
  b_->table.put(Kind::kSticky, "from-b", "b", 60'000, unixUs());
  EXPECT_EQ(a_->peer().state, "down");  // nothing reconnected to a dead port

  ASSERT_EQ(redis_.start(), "");  // empty: no persistence
  ASSERT_TRUE(waitUntil([&] { return a_->peer().connects == 2 && b_->peer().connects == 2; }));
  const auto all_on_b = [&] {
    for (int i = 0; i < 1000; ++i) {
      const std::string k = std::string("app") + kSep + "outage" + std::to_string(i);
      if (b_->get(k) != "a" + std::to_string(i)) return false;
    }
    return true;
  };
  ASSERT_TRUE(waitUntil([&] {
    return all_on_b() && a_->get("from-b") == "b" &&
           a_->table.total(Kind::kRate, kWindow, unixMs()) == 11 &&
           b_->table.total(Kind::kRate, kWindow, unixMs()) == 11;
  }));
  EXPECT_EQ(b_->get(kUser1), "before");
  EXPECT_EQ(hgetall(redis_, "tandem:sticky:app%1Foutage500")["d"], "a500");
  EXPECT_EQ(hgetall(redis_, kUser1Redis)["d"], "before");
  EXPECT_EQ(hgetall(redis_, "tandem:sticky:from-b")["d"], "b");
  auto h = hgetall(redis_, kWindowRedis);
  EXPECT_EQ(h["c:A"], "5");
  EXPECT_EQ(h["c:B"], "6");
  EXPECT_EQ(a_->peer().state, "connected");
  EXPECT_EQ(a_->peer().full_syncs, 2u);
  EXPECT_EQ(a_->link.count(true), 2u);
}

// A node starting against a Redis that already holds state takes it all, and adds its own.
TEST_F(RedisReplicatorTest, ResyncWithExistingDataOnConnect) {
  {
    Node writer("W", redis_.port());
    ASSERT_TRUE(writer.rep.start());
    ASSERT_TRUE(waitUntil([&] { return writer.connected(); }));
    for (int i = 0; i < 2500; ++i) {  // several SCAN pages and write batches
      writer.table.put(Kind::kSticky, "w" + std::to_string(i), "v" + std::to_string(i), 60'000,
                       unixUs());
    }
    writer.table.add(Kind::kRate, kWindow, 9, 60'000, unixUs());
    ASSERT_TRUE(waitUntil([&] { return integer(redis_, {"DBSIZE"}) == 2501; }));
  }
  Node c("C", redis_.port());
  c.table.put(Kind::kSticky, "c-local", "c", 60'000, unixUs());  // written before the store is up
  c.table.put(Kind::kSticky, "w7", "c-newer", 60'000, unixUs() + 1'000'000);
  ASSERT_TRUE(c.rep.start());
  ASSERT_TRUE(waitUntil([&] { return c.connected(); }));
  // The resync is complete when the link is reported up.
  for (int i = 0; i < 2500; ++i) {
    if (i == 7) continue;
    ASSERT_EQ(c.get("w" + std::to_string(i)), "v" + std::to_string(i)) << i;
  }
  EXPECT_EQ(c.get("w7"), "c-newer");  // the newer local version won both ways
  EXPECT_EQ(hgetall(redis_, "tandem:sticky:w7")["d"], "c-newer");
  EXPECT_EQ(c.table.total(Kind::kRate, kWindow, unixMs()), 9u);
  EXPECT_EQ(hgetall(redis_, "tandem:sticky:c-local")["d"], "c");
  EXPECT_GE(c.peer().records_received, 2501u);
  EXPECT_EQ(c.peer().full_syncs, 1u);
  EXPECT_EQ(c.rep.status().lag.count(), 0u);  // a resync is not replication lag
}

TEST_F(RedisReplicatorTest, UnreachableAtStartIsReportedThenConnects) {
  RedisServer later;
  later.choosePort();
  Node a("A", later.port());
  a.table.put(Kind::kSticky, kUser1, "early", 60'000, unixUs());
  ASSERT_TRUE(a.rep.start());
  ASSERT_TRUE(waitUntil([&] { return a.peer().state == "down"; }));
  EXPECT_NE(a.peer().last_error.find("connect 127.0.0.1:"), std::string::npos)
      << a.peer().last_error;
  ASSERT_TRUE(waitUntil([&] { return a.link.count(false) == 1; }));
  EXPECT_EQ(a.get(kUser1), "early");

  ASSERT_EQ(later.start(), "");
  ASSERT_TRUE(waitUntil([&] { return a.connected(); }));
  EXPECT_EQ(hgetall(later, kUser1Redis)["d"], "early");
  EXPECT_EQ(a.link.count(false), 1u);  // one alert for the whole outage, not one per attempt
  EXPECT_EQ(a.link.count(true), 1u);
}

// A Redis that stops answering (SIGSTOP) is detected by the command timeout; stop() does not
// wait for it.
TEST_F(RedisReplicatorTest, HungRedisTimesOutAndStopIsPrompt) {
  auto a = std::make_unique<Node>("A", redis_.port());
  ASSERT_TRUE(a->rep.start());
  ASSERT_TRUE(waitUntil([&] { return a->connected(); }));
  redis_.pause();
  a->table.put(Kind::kSticky, kUser1, "x", 60'000, unixUs());
  ASSERT_TRUE(waitUntil([&] { return a->peer().state == "down"; }, 3s));
  EXPECT_NE(a->peer().last_error.find("within 500 ms"), std::string::npos) << a->peer().last_error;
  // The reconnect attempts now hang in the handshake (the kernel still accepts): stop anyway.
  const auto t = Clock::now();
  a->rep.stop();
  EXPECT_LT(Clock::now() - t, 100ms);
  redis_.resume();
}

// Propagation A -> B through Redis at 1,000 updates/s (one update per millisecond, each waited
// for on B by polling). Informational: prints p50/p99; asserts only that every update arrived.
TEST_F(RedisReplicatorTest, MeasurePropagationLatency) {
  startPair();
  constexpr int kUpdates = 2000;
  std::vector<double> us;
  us.reserve(kUpdates);
  auto next = Clock::now();
  for (int i = 0; i < kUpdates; ++i) {
    next += 1ms;
    const std::string k = std::string("app") + kSep + "m" + std::to_string(i % 100);
    const std::string v = std::to_string(i);
    const auto t = Clock::now();
    a_->table.put(Kind::kSticky, k, v, 60'000, unixUs());
    while (b_->table.get(Kind::kSticky, k, unixMs()) != v) {
      ASSERT_LT(Clock::now() - t, kWait) << "update " << i << " never reached B";
      std::this_thread::sleep_for(20us);  // leave the two cores to the replicators and Redis
    }
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
    std::this_thread::sleep_until(next);
  }
  std::sort(us.begin(), us.end());
  const auto lag = b_->rep.status().lag;
  std::printf(
      "[ measure  ] redis propagation A->B at 1000 updates/s over %d updates: p50 %.0f us, p99 "
      "%.0f us, max %.0f us (B's lag histogram: p50 %.0f us, p99 %.0f us)\n",
      kUpdates, us[us.size() / 2], us[us.size() * 99 / 100], us.back(), lag.quantileUs(0.5),
      lag.quantileUs(0.99));
}

}  // namespace
}  // namespace tandem::state
