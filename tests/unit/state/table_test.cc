#include "state/table.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

namespace tandem::state {
namespace {

constexpr int64_t kT0us = 1'700'000'000'000'000;  // a fixed "now" in unix µs
constexpr int64_t kT0ms = kT0us / 1000;

Table::Options opts(std::string id, size_t max_dirty = 262'144) {
  Table::Options o;
  o.node_id = std::move(id);
  o.max_dirty = max_dirty;
  return o;
}

Record reg(std::string key, std::string value, std::string origin, uint64_t version,
           int64_t expires_ms = 0) {
  Record r;
  r.kind = Kind::kSticky;
  r.key = std::move(key);
  r.value = std::move(value);
  r.origin = std::move(origin);
  r.version = version;
  r.expires_ms = expires_ms;
  r.written_us = static_cast<int64_t>(version);
  return r;
}

std::vector<Record> drainAll(Table& t) {
  std::vector<Record> out;
  t.drain(out, 1'000'000);
  return out;
}

TEST(Table, LastWriterWinsOnVersion) {
  Table t(opts("a"));
  EXPECT_TRUE(t.merge(reg("k", "old", "b", 100), kT0ms));
  EXPECT_TRUE(t.merge(reg("k", "new", "b", 200), kT0ms));
  EXPECT_FALSE(t.merge(reg("k", "older", "z", 150), kT0ms));  // a later origin does not help
  EXPECT_EQ(t.get(Kind::kSticky, "k", kT0ms), "new");
  EXPECT_FALSE(t.merge(reg("k", "new", "b", 200), kT0ms));  // a duplicate changes nothing
  EXPECT_EQ(t.stats().merged, 2u);
  EXPECT_EQ(t.stats().stale, 2u);
}

TEST(Table, VersionTiesBreakOnOriginInAnyOrder) {
  const Record from_a = reg("k", "by-a", "a", 500);
  const Record from_b = reg("k", "by-b", "b", 500);
  Table x(opts("x")), y(opts("y"));
  x.merge(from_a, kT0ms);
  x.merge(from_b, kT0ms);
  y.merge(from_b, kT0ms);
  y.merge(from_a, kT0ms);
  EXPECT_EQ(x.get(Kind::kSticky, "k", kT0ms), "by-b");
  EXPECT_EQ(y.get(Kind::kSticky, "k", kT0ms), "by-b");
}

TEST(Table, LocalWriteBumpsPastAFutureVersion) {
  Table t(opts("a"));
  t.merge(reg("k", "remote", "b", kT0us + 5'000'000), kT0ms);  // a peer whose clock runs ahead
  t.put(Kind::kSticky, "k", "local", 0, kT0us);
  auto out = drainAll(t);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].value, "local");
  EXPECT_EQ(out[0].origin, "a");
  EXPECT_EQ(out[0].version, static_cast<uint64_t>(kT0us + 5'000'001));
}

TEST(Table, CountersTakeTheMaximumPerNodeAndSum) {
  Table a(opts("a")), b(opts("b"));
  a.add(Kind::kRate, "r", 3, 60'000, kT0us);
  b.add(Kind::kRate, "r", 5, 60'000, kT0us);
  const Record ra = drainAll(a).at(0);
  const Record rb = drainAll(b).at(0);
  EXPECT_TRUE(a.merge(rb, kT0ms));
  EXPECT_TRUE(b.merge(ra, kT0ms));
  EXPECT_EQ(a.total(Kind::kRate, "r", kT0ms), 8u);
  EXPECT_EQ(b.total(Kind::kRate, "r", kT0ms), 8u);
  // Re-delivery and an older count change nothing.
  EXPECT_FALSE(a.merge(rb, kT0ms));
  Record older = rb;
  older.counts = {{"b", 1}};
  EXPECT_FALSE(a.merge(older, kT0ms));
  EXPECT_EQ(a.total(Kind::kRate, "r", kT0ms), 8u);
  // Each node only raises its own count.
  EXPECT_EQ(a.add(Kind::kRate, "r", 2, 60'000, kT0us), 10u);
  EXPECT_TRUE(b.merge(drainAll(a).at(0), kT0ms));
  EXPECT_EQ(b.total(Kind::kRate, "r", kT0ms), 10u);
}

TEST(Table, CounterMergeSortsAndDeduplicatesWhatItReceives) {
  Table t(opts("x"));
  Record r;
  r.kind = Kind::kRate;
  r.key = "r";
  r.counts = {{"c", 1}, {"a", 4}, {"c", 3}};
  EXPECT_TRUE(t.merge(r, kT0ms));
  std::vector<Record> seen;
  t.forEach([&](const Record& rec) { seen.push_back(rec); }, kT0ms);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].counts, (std::vector<std::pair<std::string, uint64_t>>{{"a", 4}, {"c", 3}}));
}

TEST(Table, ExpiryHidesThenDropsRecords) {
  Table t(opts("a"));
  t.put(Kind::kSticky, "k", "v", 1000, kT0us);
  t.add(Kind::kRate, "r", 7, 1000, kT0us);
  EXPECT_EQ(t.get(Kind::kSticky, "k", kT0ms + 999), "v");
  EXPECT_EQ(t.total(Kind::kRate, "r", kT0ms + 999), 7u);
  EXPECT_EQ(t.get(Kind::kSticky, "k", kT0ms + 1000), std::nullopt);
  EXPECT_EQ(t.total(Kind::kRate, "r", kT0ms + 1000), 0u);
  size_t live = 0;
  t.forEach([&](const Record&) { ++live; }, kT0ms + 1000);
  EXPECT_EQ(live, 0u);
  EXPECT_EQ(t.expire(kT0ms + 999), 0u);
  EXPECT_EQ(t.expire(kT0ms + 1000), 2u);
  EXPECT_EQ(t.stats().entries, 0u);
  EXPECT_EQ(t.stats().expired, 2u);
  // An expired record from elsewhere is not taken.
  EXPECT_FALSE(t.merge(reg("k", "v", "b", 1, kT0ms - 1), kT0ms));
  EXPECT_EQ(t.stats().entries, 0u);
}

TEST(Table, AddOnAnExpiredCounterStartsOver) {
  Table t(opts("a"));
  t.add(Kind::kRate, "r", 7, 1000, kT0us);
  // Expired, not swept yet: the old count must not come back to life.
  EXPECT_EQ(t.add(Kind::kRate, "r", 1, 1000, kT0us + 2'000'000), 1u);
  EXPECT_EQ(t.total(Kind::kRate, "r", kT0ms + 2000), 1u);
}

TEST(Table, CounterExpiryTakesTheLaterDeadlineAndNeverWins) {
  Table t(opts("a"));
  t.add(Kind::kRate, "r", 1, 1000, kT0us);
  t.add(Kind::kRate, "r", 1, 500, kT0us);  // an earlier deadline does not shorten it
  EXPECT_EQ(t.total(Kind::kRate, "r", kT0ms + 900), 2u);
  t.add(Kind::kRate, "r", 1, 0, kT0us);  // 0 = never, as a merged record with 0 would say
  EXPECT_EQ(t.total(Kind::kRate, "r", kT0ms + 10'000'000), 3u);
  t.add(Kind::kRate, "r", 1, 1000, kT0us);  // and a deadline does not bring it back
  EXPECT_EQ(t.total(Kind::kRate, "r", kT0ms + 10'000'000), 4u);
}

TEST(Table, DrainSendsEachDirtyKeyOnceWithItsLatestState) {
  Table t(opts("a"));
  int wakes = 0;
  t.setWake([&] { ++wakes; });
  t.put(Kind::kSticky, "k1", "v1", 0, kT0us);
  t.put(Kind::kSticky, "k1", "v2", 0, kT0us + 1);
  t.put(Kind::kSticky, "k2", "v", 0, kT0us + 2);
  EXPECT_EQ(wakes, 1);  // only the first write after a drain wakes the replicator
  std::vector<Record> out;
  EXPECT_TRUE(t.drain(out, 1));  // a partial drain
  EXPECT_EQ(out.size(), 1u);
  EXPECT_TRUE(t.drain(out, 10));
  ASSERT_EQ(out.size(), 2u);
  std::set<std::string> values;
  for (const auto& r : out) values.insert(r.key + "=" + r.value);
  EXPECT_EQ(values, (std::set<std::string>{"k1=v2", "k2=v"}));
  EXPECT_TRUE(drainAll(t).empty());
  t.put(Kind::kSticky, "k3", "v", 0, kT0us + 3);
  EXPECT_EQ(wakes, 2);
  EXPECT_EQ(t.stats().local_writes, 4u);
}

TEST(Table, MergedRecordsAreNotQueuedForReplication) {
  Table t(opts("a"));
  t.merge(reg("k", "v", "b", 10), kT0ms);
  EXPECT_TRUE(drainAll(t).empty());
}

TEST(Table, DirtyOverflowAsksForAFullSync) {
  Table t(opts("a", 2));
  t.put(Kind::kSticky, "k1", "v", 0, kT0us);
  t.put(Kind::kSticky, "k2", "v", 0, kT0us);
  t.put(Kind::kSticky, "k3", "v", 0, kT0us);  // over max_dirty: lost from the queue
  std::vector<Record> out;
  EXPECT_FALSE(t.drain(out, 100));
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(t.stats().dirty_overflows, 1u);
  out.clear();
  EXPECT_TRUE(t.drain(out, 100));  // reported once
  // The lost write is still in the table for the full sync.
  EXPECT_EQ(t.get(Kind::kSticky, "k3", kT0ms), "v");
}

TEST(Table, TouchDoesNotRewriteAFreshSameValue) {
  Table t(opts("a"));
  EXPECT_TRUE(t.touch(Kind::kSticky, "k", "s1", 10'000, kT0us));
  drainAll(t);
  EXPECT_FALSE(t.touch(Kind::kSticky, "k", "s1", 10'000, kT0us + 4'000'000));  // 6 s of 10 left
  EXPECT_TRUE(drainAll(t).empty());
  EXPECT_TRUE(t.touch(Kind::kSticky, "k", "s2", 10'000, kT0us + 4'000'000));  // new value
  EXPECT_EQ(drainAll(t).size(), 1u);
  // Less than half of the TTL left: refreshed (and replicated) so peers do not expire it.
  EXPECT_TRUE(t.touch(Kind::kSticky, "k", "s2", 10'000, kT0us + 9'500'000));
  auto out = drainAll(t);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].expires_ms, kT0ms + 9'500 + 10'000);
  // No TTL: the same value is never rewritten.
  EXPECT_TRUE(t.touch(Kind::kSticky, "p", "s", 0, kT0us));
  EXPECT_FALSE(t.touch(Kind::kSticky, "p", "s", 0, kT0us + 1'000'000'000));
}

TEST(Table, EvictsWhenFull) {
  Table::Options o = opts("a");
  o.max_entries = 64;  // one entry per shard
  Table t(o);
  for (int i = 0; i < 1000; ++i) t.put(Kind::kSticky, "k" + std::to_string(i), "v", 0, kT0us);
  EXPECT_LE(t.stats().entries, 64u);
  EXPECT_GE(t.stats().evictions, 1000u - 64u);
  drainAll(t);  // the dirty bookkeeping survived the evictions
  EXPECT_TRUE(drainAll(t).empty());
}

// Writers racing a wake-driven drainer: every write must be drained without another write to
// wake the drainer (a write landing behind the drain's cursor used to be stranded).
TEST(Table, WakeDrivenDrainMissesNoConcurrentWrite) {
  Table t(opts("a"));
  std::mutex mu;
  std::condition_variable cv;
  bool woken = false;
  t.setWake([&] {
    std::lock_guard l(mu);
    woken = true;
    cv.notify_one();
  });
  constexpr int kWrites = 20'000;
  std::thread writer([&] {
    for (int i = 0; i < kWrites; ++i) t.put(Kind::kSticky, "k" + std::to_string(i), "v", 0, kT0us);
  });
  std::set<std::string> seen;
  std::vector<Record> out;
  for (;;) {
    std::unique_lock l(mu);
    if (!cv.wait_for(l, std::chrono::seconds(5), [&] { return woken; })) break;
    woken = false;
    l.unlock();
    do {
      out.clear();
      t.drain(out, 256);
      for (const auto& r : out) seen.insert(r.key);
    } while (out.size() == 256);
    if (seen.size() == kWrites) break;
  }
  writer.join();
  EXPECT_EQ(seen.size(), static_cast<size_t>(kWrites));
}

}  // namespace
}  // namespace tandem::state
