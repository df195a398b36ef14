// PeerReplicator on 127.0.0.1 with ephemeral ports: two or three replicators in this process,
// each with its own Table. Waits poll with deadlines; nothing sleeps to synchronise.
#include "cluster/peer_replicator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/clock.h"

namespace tandem::cluster {
namespace {

using namespace std::chrono_literals;
using state::Kind;
using state::Record;

constexpr std::string_view kSecret = "replication test secret, long enough";
constexpr int64_t kTtlMs = 600'000;

template <typename Pred>
bool waitFor(Pred pred, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// The table's content, comparable across nodes (a counter's written_us is local bookkeeping).
std::vector<Record> dump(const state::Table& t) {
  std::vector<Record> out;
  t.forEach(
      [&](const Record& r) {
        out.push_back(r);
        if (state::isCounter(r.kind)) out.back().written_us = 0;
      },
      unixMs());
  std::sort(out.begin(), out.end(), [](const Record& a, const Record& b) {
    return std::tie(a.kind, a.key) < std::tie(b.kind, b.key);
  });
  return out;
}

// A gate a test can close to hold a replicator's thread inside its observer callback (so that
// it stops reading its sockets), and open again.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool closed = false;
  bool holding = false;
  void hold() {
    std::unique_lock l(mu);
    if (!closed) return;
    holding = true;
    cv.notify_all();
    cv.wait(l, [&] { return !closed; });
    holding = false;
  }
  void open() {
    std::lock_guard l(mu);
    closed = false;
    cv.notify_all();
  }
  bool isHolding() {
    std::lock_guard l(mu);
    return holding;
  }
};

struct Node {
  std::string id;
  std::unique_ptr<state::Table> table;
  std::unique_ptr<PeerReplicator> rep;
  uint16_t port = 0;
  std::mutex mu;
  std::vector<std::string> links;  // "b up", "b down", in order
  Gate gate;

  std::vector<std::string> linkEvents() {
    std::lock_guard l(mu);
    return links;
  }
  state::PeerStatus peer(const std::string& pid) const {
    for (const auto& p : rep->status().peers) {
      if (p.id == pid) return p;
    }
    ADD_FAILURE() << id << " has no peer " << pid;
    return {};
  }
  bool connectedTo(const std::string& pid) const { return peer(pid).state == "connected"; }
};

// A cluster of nodes on loopback. The smaller id dials, so nodes start from the largest id: each
// dialer then knows the ephemeral ports of the peers it dials.
class Cluster {
 public:
  using Tweak = std::function<void(const std::string& id, PeerReplicatorOptions&)>;

  explicit Cluster(std::vector<std::string> ids, Tweak tweak = {}) : tweak_(std::move(tweak)) {
    std::sort(ids.begin(), ids.end());
    for (const auto& id : ids) {
      auto n = std::make_unique<Node>();
      n->id = id;
      state::Table::Options to;
      to.node_id = id;
      n->table = std::make_unique<state::Table>(to);
      nodes_.push_back(std::move(n));
    }
  }
  ~Cluster() {
    for (auto& n : nodes_) {
      n->gate.open();
      if (n->rep) n->rep->stop();
    }
  }

  Node& operator[](const std::string& id) {
    for (auto& n : nodes_) {
      if (n->id == id) return *n;
    }
    std::abort();
  }

  void start() {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) startNode(**it);
  }

  // (Re)starts a node with its table; a restarted node keeps its port.
  void startNode(Node& n) {
    PeerReplicatorOptions o;
    o.node_id = n.id;
    o.listen_host = "127.0.0.1";
    o.listen_port = n.port;
    o.listen_ephemeral = n.port == 0;
    o.secret = std::string(kSecret);
    o.heartbeat = 50ms;
    o.dead_after = 40;  // 2 s: sanitizer builds on a busy machine must not flap
    o.backoff_initial = 20ms;
    o.backoff_max = 200ms;
    for (const auto& p : nodes_) o.peers.push_back({p->id, "127.0.0.1", p->port});
    Node* np = &n;
    o.observer.link = [np](const std::string& peer, bool up, const std::string&) {
      {
        std::lock_guard l(np->mu);
        np->links.push_back(peer + (up ? " up" : " down"));
      }
      np->gate.hold();
    };
    if (tweak_) tweak_(n.id, o);
    n.rep = std::make_unique<PeerReplicator>(*n.table, o);
    auto r = n.rep->start();
    ASSERT_TRUE(r) << r.error().message;
    n.port = n.rep->listenPort();
    ASSERT_NE(n.port, 0);
  }

  void stopNode(Node& n) { n.rep->stop(); }

  bool converged() {
    const auto first = dump(*nodes_[0]->table);
    for (size_t i = 1; i < nodes_.size(); ++i) {
      if (dump(*nodes_[i]->table) != first) return false;
    }
    return true;
  }
  bool allConnected() {
    for (auto& n : nodes_) {
      for (auto& p : nodes_) {
        if (p != n && !n->connectedTo(p->id)) return false;
      }
    }
    return true;
  }

 private:
  Tweak tweak_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

void putMany(state::Table& t, const std::string& prefix, int n, size_t value_size = 8) {
  const std::string value(value_size, 'v');
  for (int i = 0; i < n; ++i) {
    t.put(Kind::kSticky, prefix + std::to_string(i), value + std::to_string(i), kTtlMs, unixUs());
  }
}

TEST(PeerReplicator, FullSyncOnConnect) {
  Cluster c({"a", "b"});
  putMany(*c["a"].table, "app\x1fuser-a-", 300);
  putMany(*c["b"].table, "app\x1fuser-b-", 50);
  c["b"].table->add(Kind::kRate,
                    "app\x1fip\x1f"
                    "1",
                    4, kTtlMs, unixUs());
  c.start();
  ASSERT_TRUE(waitFor([&] { return c.allConnected(); }));
  ASSERT_TRUE(waitFor([&] { return c.converged(); }));
  EXPECT_EQ(dump(*c["a"].table).size(), 351u);
  EXPECT_EQ(c["a"].table->total(Kind::kRate,
                                "app\x1fip\x1f"
                                "1",
                                unixMs()),
            4u);
  const auto st = c["a"].peer("b");
  EXPECT_EQ(st.connects, 1u);
  EXPECT_GE(st.full_syncs, 1u);
  EXPECT_GE(st.records_sent, 300u);
  EXPECT_GE(st.records_received, 51u);
  EXPECT_EQ(st.auth_failures, 0u);
  EXPECT_EQ(c["a"].linkEvents(), std::vector<std::string>{"b up"});
  EXPECT_EQ(c["b"].linkEvents(), std::vector<std::string>{"a up"});
  EXPECT_EQ(c["a"].rep->status().store, "memory");
}

TEST(PeerReplicator, IncrementalUpdatesArrive) {
  Cluster c({"a", "b"});
  c.start();
  ASSERT_TRUE(waitFor([&] { return c.allConnected(); }));
  // An observation made on one node (e.g. an ejection) reaches the other.
  c["a"].table->put(Kind::kHealth,
                    "app\x1fs1\x1f"
                    "a",
                    "ejected", kTtlMs, unixUs());
  ASSERT_TRUE(waitFor([&] {
    return c["b"].table->get(Kind::kHealth,
                             "app\x1fs1\x1f"
                             "a",
                             unixMs()) == "ejected";
  }));
  c["b"].table->put(Kind::kSticky, "app\x1fu1", "s2", kTtlMs, unixUs());
  ASSERT_TRUE(
      waitFor([&] { return c["a"].table->get(Kind::kSticky, "app\x1fu1", unixMs()) == "s2"; }));
  // The latest write wins everywhere.
  c["a"].table->put(Kind::kSticky, "app\x1fu1", "s3", kTtlMs, unixUs());
  ASSERT_TRUE(
      waitFor([&] { return c["b"].table->get(Kind::kSticky, "app\x1fu1", unixMs()) == "s3"; }));
  ASSERT_TRUE(waitFor([&] { return c.converged(); }));
  EXPECT_GE(c["b"].rep->status().lag.count(), 2u);
  EXPECT_GE(c["a"].rep->status().lag.count(), 1u);
}

TEST(PeerReplicator, HeartbeatsMeasureRtt) {
  Cluster c({"a", "b"});
  c.start();
  ASSERT_TRUE(waitFor([&] { return c.allConnected(); }));
  ASSERT_TRUE(
      waitFor([&] { return c["a"].peer("b").rtt_us >= 0 && c["b"].peer("a").rtt_us >= 0; }));
  const int64_t t0 = unixMs();
  // Later heartbeats keep the link fresh.
  ASSERT_TRUE(waitFor([&] { return c["a"].peer("b").last_heard_unix_ms > t0 + 100; }));
  EXPECT_LT(c["a"].peer("b").rtt_us, 2'000'000);
  EXPECT_EQ(c["a"].peer("b").connects, 1u);
}

TEST(PeerReplicator, WrongSecretNeverMerges) {
  Cluster c({"a", "b"}, [](const std::string& id, PeerReplicatorOptions& o) {
    if (id == "b") o.secret = "a different secret, also long";
  });
  putMany(*c["a"].table, "k", 10);
  putMany(*c["b"].table, "j", 10);
  c.start();
  ASSERT_TRUE(waitFor([&] { return c["a"].peer("b").auth_failures >= 2; }));
  ASSERT_TRUE(waitFor([&] { return c["b"].peer("a").auth_failures >= 1; }));
  EXPECT_EQ(c["a"].table->stats().merged, 0u);
  EXPECT_EQ(c["b"].table->stats().merged, 0u);
  EXPECT_EQ(c["a"].table->stats().entries, 10u);
  EXPECT_NE(c["a"].peer("b").state, "connected");
  EXPECT_EQ(c["a"].peer("b").connects, 0u);
  EXPECT_EQ(c["b"].peer("a").connects, 0u);
  for (const auto& e : c["a"].linkEvents()) EXPECT_EQ(e, "b down");
  EXPECT_TRUE(c["b"].linkEvents().empty());
  EXPECT_NE(c["a"].peer("b").last_error.find("MAC"), std::string::npos);
}

TEST(PeerReplicator, UnknownOrUnexpectedIdsAreRefused) {
  // "b" only knows "a"; "a0" is not in its list, yet dials it.
  state::Table tb({"b"}), ta0({"a0"}), tc({"c"});
  putMany(ta0, "x", 5);
  PeerReplicatorOptions ob;
  ob.node_id = "b";
  ob.listen_host = "127.0.0.1";
  ob.listen_ephemeral = true;
  ob.secret = std::string(kSecret);
  ob.peers = {{"a", "127.0.0.1", 0}};
  PeerReplicator rb(tb, ob);
  ASSERT_TRUE(rb.start());
  // "c" listens where "a0" expects "b".
  PeerReplicatorOptions oc = ob;
  oc.node_id = "c";
  oc.peers = {{"a0", "127.0.0.1", 0}};
  PeerReplicator rc(tc, oc);
  ASSERT_TRUE(rc.start());

  PeerReplicatorOptions oa = ob;
  oa.node_id = "a0";
  oa.listen_ephemeral = false;
  oa.backoff_initial = 20ms;
  oa.backoff_max = 100ms;
  oa.peers = {{"b", "127.0.0.1", rb.listenPort()}, {"c", "127.0.0.1", rc.listenPort()}};
  // Swap the addresses: a0 reaches c when it dials b, and b when it dials c.
  std::swap(oa.peers[0].port, oa.peers[1].port);
  PeerReplicator ra(ta0, oa);
  ASSERT_TRUE(ra.start());
  auto peer = [](const PeerReplicator& r, const std::string& id) {
    for (const auto& p : r.status().peers) {
      if (p.id == id) return p;
    }
    return state::PeerStatus{};
  };
  ASSERT_TRUE(waitFor([&] {
    return peer(ra, "b").auth_failures >= 2 &&
           peer(ra, "c").last_error.find("expected") != std::string::npos;
  }));
  EXPECT_NE(peer(ra, "b").last_error.find("where b was expected"), std::string::npos);
  EXPECT_EQ(peer(ra, "b").connects + peer(ra, "c").connects, 0u);
  EXPECT_EQ(peer(rb, "a").connects, 0u);
  EXPECT_EQ(tb.stats().merged + tc.stats().merged + ta0.stats().merged, 0u);
  ra.stop();
  rb.stop();
  rc.stop();
}

TEST(PeerReplicator, ListenerThatReturnsIsReconnectedAndResynced) {
  Cluster c({"a", "b"});
  putMany(*c["a"].table, "a-", 20);
  c.start();
  ASSERT_TRUE(waitFor([&] { return c.converged() && c.allConnected(); }));
  c.stopNode(c["b"]);
  ASSERT_TRUE(waitFor([&] { return !c["a"].connectedTo("b"); }));
  // Both sides change while apart.
  putMany(*c["a"].table, "a-late-", 30);
  putMany(*c["b"].table, "b-late-", 7);
  c["b"].table->put(Kind::kSticky, "a-3", "b-wins", kTtlMs, unixUs());
  c.startNode(c["b"]);
  ASSERT_TRUE(waitFor([&] { return c.allConnected() && c.converged(); }));
  EXPECT_EQ(c["a"].table->get(Kind::kSticky, "a-3", unixMs()), "b-wins");
  EXPECT_EQ(dump(*c["a"].table).size(), 57u);
  EXPECT_EQ(c["a"].peer("b").connects, 2u);
  EXPECT_GE(c["a"].peer("b").full_syncs, 2u);
  EXPECT_EQ(c["a"].linkEvents(), (std::vector<std::string>{"b up", "b down", "b up"}));
}

TEST(PeerReplicator, DialerThatReturnsReconnectsAndResyncs) {
  Cluster c({"a", "b"});
  c.start();
  ASSERT_TRUE(waitFor([&] { return c.allConnected(); }));
  c.stopNode(c["a"]);
  ASSERT_TRUE(waitFor([&] { return !c["b"].connectedTo("a"); }));
  putMany(*c["b"].table, "b-", 40);
  putMany(*c["a"].table, "a-", 15);
  c.startNode(c["a"]);
  ASSERT_TRUE(waitFor([&] { return c.allConnected() && c.converged(); }));
  EXPECT_EQ(dump(*c["b"].table).size(), 55u);
  EXPECT_EQ(c["b"].peer("a").connects, 2u);
}

TEST(PeerReplicator, SilentPeerIsDroppedThenReconnected) {
  Cluster c({"a", "b"}, [](const std::string&, PeerReplicatorOptions& o) { o.dead_after = 4; });
  c["b"].gate.closed = true;  // b's thread stops in its first link-up report
  c.start();
  ASSERT_TRUE(waitFor([&] { return c["b"].gate.isHolding(); }));
  // a hears nothing for 4 heartbeats and drops the link.
  ASSERT_TRUE(waitFor([&] {
    const auto ev = c["a"].linkEvents();
    return std::find(ev.begin(), ev.end(), "b down") != ev.end();
  }));
  EXPECT_NE(c["a"].peer("b").last_error.find("nothing heard"), std::string::npos);
  c["b"].gate.open();
  c["a"].table->put(Kind::kSticky, "k", "v", kTtlMs, unixUs());
  ASSERT_TRUE(waitFor([&] { return c.allConnected() && c.converged(); }));
  EXPECT_GE(c["a"].peer("b").connects, 2u);
}

TEST(PeerReplicator, QueueOverflowFallsBackToAFullSync) {
  Cluster c({"a", "b"}, [](const std::string& id, PeerReplicatorOptions& o) {
    o.heartbeat = 500ms;  // b is held for a while: no heartbeat verdicts meanwhile
    o.dead_after = 60;
    if (id == "a") {
      o.max_queue = 1000;
      o.out_high_water = 16 * 1024;
    }
  });
  c["b"].gate.closed = true;
  c.start();
  ASSERT_TRUE(waitFor([&] { return c["b"].gate.isHolding() && c["a"].connectedTo("b"); }));
  // b reads nothing: once the socket buffers are full, a's queue overflows.
  int bursts = 0;
  while (c["a"].peer("b").queue_overflows == 0 && bursts < 200) {
    putMany(*c["a"].table, "burst" + std::to_string(bursts++) + "-", 1000, 2048);
    std::this_thread::sleep_for(5ms);  // let a's thread drain the table
  }
  ASSERT_GE(c["a"].peer("b").queue_overflows, 1u);
  putMany(*c["a"].table, "after-", 100);
  c["b"].gate.open();
  ASSERT_TRUE(waitFor([&] { return c.converged(); }, 60s));
  EXPECT_EQ(dump(*c["b"].table).size(), static_cast<size_t>(bursts) * 1000 + 100);
  EXPECT_GE(c["a"].peer("b").full_syncs, 2u);
  EXPECT_EQ(c["a"].peer("b").connects, 1u);  // the link itself survived
}

TEST(PeerReplicator, CountersFromThreeNodesSumEverywhere) {
  Cluster c({"a", "b", "c"});
  c.start();
  ASSERT_TRUE(waitFor([&] { return c.allConnected(); }));
  const std::string key =
      "api\x1f"
      "198.18.1.1\x1f"
      "77";
  uint64_t expected = 0;
  for (int round = 0; round < 5; ++round) {
    for (const char* id : {"a", "b", "c"}) {
      const uint64_t n = 1 + static_cast<uint64_t>(round) + (id[0] - 'a');
      c[id].table->add(Kind::kRate, key, n, kTtlMs, unixUs());
      expected += n;
    }
  }
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(waitFor([&] { return c[id].table->total(Kind::kRate, key, unixMs()) == expected; }))
        << id << " has " << c[id].table->total(Kind::kRate, key, unixMs()) << " of " << expected;
  }
  ASSERT_TRUE(waitFor([&] { return c.converged(); }));
}

TEST(PeerReplicator, StartValidatesOptions) {
  state::Table t({"a"});
  PeerReplicatorOptions o;
  o.node_id = "a";
  o.secret = "short";
  EXPECT_FALSE(PeerReplicator(t, o).start());
  o.secret = std::string(kSecret);
  o.peers = {{"b", "not-an-ip", 7946}};
  EXPECT_FALSE(PeerReplicator(t, o).start());
  o.peers = {{"b", "127.0.0.1", 0}};  // a dials b: it needs b's port
  EXPECT_FALSE(PeerReplicator(t, o).start());
  o.peers = {{"0", "127.0.0.1", 0}, {"0", "127.0.0.1", 0}};
  EXPECT_FALSE(PeerReplicator(t, o).start());
  o.peers = {{"0", "127.0.0.1", 0}, {"a", "127.0.0.1", 0}};  // its own entry is skipped
  PeerReplicator r(t, o);
  EXPECT_TRUE(r.start());
  EXPECT_EQ(r.status().peers.size(), 1u);
  EXPECT_EQ(r.listenPort(), 0);
  r.stop();
  r.stop();
}

}  // namespace
}  // namespace tandem::cluster

namespace tandem::cluster {
namespace {

// A peer that was never reached is reported down only when the start-up grace runs out (a pair
// starting together must not alert); with no grace, at the first failed dial.
TEST(PeerReplicator, NeverReachedPeerIsReportedAfterTheStartupGrace) {
  for (auto grace : {0ms, 400ms}) {
    state::Table table(state::Table::Options{"a"});
    std::mutex mu;
    std::vector<std::pair<std::string, int64_t>> downs;  // (detail, ms since start)
    PeerReplicatorOptions o;
    o.node_id = "a";
    o.secret = "0123456789abcdef0123";
    o.backoff_initial = 20ms;
    o.backoff_max = 50ms;
    o.startup_grace = grace;
    o.peers.push_back({"b", "127.0.0.1", 1});  // port 1: nothing listens, the dial is refused
    const int64_t t0 = monoUs();
    o.observer.link = [&](const std::string& peer, bool up, const std::string& detail) {
      std::lock_guard l(mu);
      if (peer == "b" && !up) downs.emplace_back(detail, (monoUs() - t0) / 1000);
    };
    PeerReplicator rep(table, o);
    ASSERT_TRUE(rep.start());
    ASSERT_TRUE(waitFor(
        [&] {
          std::lock_guard l(mu);
          return !downs.empty();
        },
        5s));
    std::this_thread::sleep_for(200ms);  // more failed dials: still one report
    rep.stop();
    std::lock_guard l(mu);
    ASSERT_EQ(downs.size(), 1u);
    EXPECT_NE(downs[0].first.find("refused"), std::string::npos) << downs[0].first;
    if (grace > 0ms) {
      EXPECT_GE(downs[0].second, grace.count());
      EXPECT_NE(downs[0].first.find("(since start)"), std::string::npos);
    } else {
      EXPECT_LT(downs[0].second, 300);
    }
  }
}

}  // namespace
}  // namespace tandem::cluster
