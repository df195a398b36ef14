#pragma once
// The unit of shared state (DESIGN §6): sticky entries, rate-limit counters and health
// observations are all Records, so one table, one replication protocol and one Redis mapping carry
// them all. Merging is deterministic and order-independent, so every instance that has seen the
// same records holds the same state, whatever order they arrived in:
// - register kinds (sticky, health): the record with the higher (version, origin) wins;
// - counter kinds (rate): a G-counter, one count per node, merged by taking the maximum of each
//   node's count; the value is the sum. Each node only ever raises its own count.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tandem::state {

enum class Kind : uint8_t {
  kSticky = 1,  // key "backend\x1f" + sticky key          -> value: server name
  kRate = 2,    // key "backend\x1f" + limit key "\x1f" + window index -> counts per node
  kHealth = 3,  // key "backend\x1fserver\x1f" + origin node -> value: observation (health.h)
};
inline constexpr uint8_t kMaxKind = 3;
inline bool isCounter(Kind k) { return k == Kind::kRate; }
inline constexpr char kSep = '\x1f';  // joins the parts of a key (never in names or header values)

struct Record {
  Kind kind = Kind::kSticky;
  std::string key;         // identity within the kind
  std::string origin;      // register kinds: the node that wrote this version
  uint64_t version = 0;    // register kinds: unix µs of the write, bumped past the previous one
  int64_t expires_ms = 0;  // unix ms after which the record is dropped; 0 = never
  int64_t written_us = 0;  // unix µs of the newest local write it carries (replication lag)
  std::string value;       // register kinds
  std::vector<std::pair<std::string, uint64_t>> counts;  // counter kinds: (node, count), sorted

  bool operator==(const Record&) const = default;
};

// Register kinds: does `a` win over `b` (same kind and key)? Ties on version break on origin, so
// two nodes writing in the same microsecond still agree on the winner.
inline bool wins(const Record& a, const Record& b) {
  if (a.version != b.version) return a.version > b.version;
  return a.origin > b.origin;
}

// The cluster-wide value of a counter record.
inline uint64_t total(const Record& r) {
  uint64_t sum = 0;
  for (const auto& c : r.counts) sum += c.second;
  return sum;
}

}  // namespace tandem::state
