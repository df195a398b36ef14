// maglev: the lookup table of Maglev (Eisenbud et al., NSDI 2016, section 3.4), weighted as in
// Envoy. Each server walks its own permutation of the M slots (offset + j * skip mod M, M prime so
// every skip generates all slots) and, in turn, claims its next free preferred slot until the
// table is full. A key's server is table[hash % M]: O(1), an even spread, and removing one of N
// servers moves little more than 1/N of keys.
//
// Weights: a server takes its turn in round r only while r * weight >= turns_taken * max_weight,
// i.e. it fills weight/max_weight of the rounds (Envoy's normalized weights, kept in integers so
// every build on every machine is identical).
//
// The table is a pure function of the (name, weight) set: servers are filled in name order, so
// listing order does not matter (the paper fills in listing order; sorting is cheap and spares
// operators a surprise when they reorder a config).
#include <cerrno>
#include <limits>
#include <memory>
#include <string>

#include "balance/detail.h"

namespace tandem::balance {
namespace {

// Table entries are uint16_t (half the cache footprint of uint32_t; 128 KiB at the default size).
constexpr size_t kMaxServers = std::numeric_limits<uint16_t>::max();  // 65535 is the empty mark
constexpr uint16_t kEmpty = std::numeric_limits<uint16_t>::max();
constexpr uint32_t kMaxTableSize = uint32_t{1} << 24;  // 32 MiB per balancer is already a lot
// Seeds of the two independent name hashes (ASCII "maglevof", "maglevsk"). Part of the
// cross-instance contract, like hash64: never change.
constexpr uint64_t kOffsetSeed = 0x6d61676c65766f66ULL;
constexpr uint64_t kSkipSeed = 0x6d61676c6576736bULL;

bool isPrime(uint32_t m) {
  if (m < 2) return false;
  if (m % 2 == 0) return m == 2;
  for (uint64_t d = 3; d * d <= m; d += 2) {
    if (m % d == 0) return false;
  }
  return true;
}

class Maglev final : public Balancer {
 public:
  Maglev(std::vector<uint32_t> weights, std::vector<uint16_t> table)
      : weights_(std::move(weights)), table_(std::move(table)) {}

  int pick(const PickContext& ctx) override {
    const uint64_t m = table_.size();
    if (m == 0) return kNoServer;
    size_t i = table_[ctx.hash % m];
    if (detail::usable(ctx, i, weights_[i])) return static_cast<int>(i);
    // Re-hashing (rather than walking the table) spreads an ineligible server's keys over the
    // others by their table share, the same way on every instance.
    for (uint32_t attempt = 1; attempt <= detail::kMaxRehash; ++attempt) {
      i = table_[detail::rehash(ctx.hash, attempt) % m];
      if (detail::usable(ctx, i, weights_[i])) return static_cast<int>(i);
    }
    return detail::scanFrom(ctx, weights_, i);
  }

  std::string_view name() const override { return "maglev"; }

 private:
  std::vector<uint32_t> weights_;
  std::vector<uint16_t> table_;  // slot -> server index; empty when no server has weight
};

std::vector<uint16_t> buildTable(const std::vector<ServerSpec>& servers, uint32_t m) {
  struct Entry {
    uint16_t server;
    uint64_t weight;
    uint32_t skip;
    uint32_t pos;         // current slot of this server's permutation
    uint64_t target = 0;  // turns taken so far * max_weight
  };
  std::vector<Entry> entries;
  uint64_t max_weight = 0;
  for (uint32_t s : detail::weightedByName(servers)) {
    const std::string& name = servers[s].name;
    const auto offset = static_cast<uint32_t>(hash64(name, kOffsetSeed) % m);
    const auto skip = static_cast<uint32_t>(hash64(name, kSkipSeed) % (m - 1) + 1);
    entries.push_back({static_cast<uint16_t>(s), servers[s].weight, skip, offset});
    max_weight = std::max<uint64_t>(max_weight, servers[s].weight);
  }
  if (entries.empty()) return {};

  std::vector<uint16_t> table(m, kEmpty);
  uint32_t filled = 0;
  // The max-weight server takes a turn every round, so this ends within m rounds.
  for (uint64_t round = 1; filled < m; ++round) {
    for (Entry& e : entries) {
      if (round * e.weight < e.target) continue;
      e.target += max_weight;
      while (table[e.pos] != kEmpty) {
        e.pos += e.skip;  // pos + skip < 2m < 2^32
        if (e.pos >= m) e.pos -= m;
      }
      table[e.pos] = e.server;
      if (++filled == m) break;
    }
  }
  return table;
}

}  // namespace

Result<std::unique_ptr<Balancer>> detail::makeMaglev(std::vector<ServerSpec> servers,
                                                     const Options& opts, Random*) {
  const uint32_t m = opts.maglev_table_size;
  if (!isPrime(m) || m > kMaxTableSize) {
    return fail(ErrorSource::kConfig, EINVAL,
                "maglev: table size " + std::to_string(m) +
                    " must be a prime <= " + std::to_string(kMaxTableSize) + " (e.g. 65537)");
  }
  if (servers.size() > kMaxServers) {
    return fail(ErrorSource::kConfig, EINVAL,
                "maglev: at most " + std::to_string(kMaxServers) + " servers per group");
  }
  if (m <= servers.size()) {
    return fail(ErrorSource::kConfig, EINVAL,
                "maglev: table size " + std::to_string(m) + " must exceed the number of servers (" +
                    std::to_string(servers.size()) + "); use a prime about 100x larger");
  }
  if (auto ok = checkUniqueNames(servers, "maglev"); !ok) return tl::unexpected(ok.error());
  std::vector<uint16_t> table = buildTable(servers, m);
  return std::make_unique<Maglev>(weightsOf(servers), std::move(table));
}

}  // namespace tandem::balance
