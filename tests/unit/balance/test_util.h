#pragma once
// Helpers shared by the balancer tests.
#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "balance/balancer.h"

namespace tandem::balance::testing {

inline std::vector<ServerSpec> specs(const std::vector<uint32_t>& weights,
                                     const std::string& prefix = "10.0.0.") {
  std::vector<ServerSpec> out;
  for (size_t i = 0; i < weights.size(); ++i) {
    out.push_back({prefix + std::to_string(i + 1) + ":8080", weights[i]});
  }
  return out;
}

inline std::unique_ptr<Balancer> make(std::string_view algorithm, std::vector<ServerSpec> servers,
                                      Random* rng, const Options& opts = {}) {
  auto b = makeBalancer(algorithm, std::move(servers), opts, rng);
  EXPECT_TRUE(b.has_value()) << (b ? "" : b.error().message);
  return b ? std::move(*b) : nullptr;
}

// The hash a proxy would compute for the k-th distinct client key.
inline uint64_t keyHash(uint64_t k) { return hash64("client-" + std::to_string(k)); }

// Eligibility and in-flight counts of a pool, as the proxy would pass them.
struct Pool {
  explicit Pool(size_t n) : eligible(n, 1), active(n, 0) {}
  PickContext ctx(uint64_t hash = 0) const { return {hash, eligible, active}; }
  std::vector<uint8_t> eligible;
  std::vector<uint32_t> active;
};

// Runs `picks` requests through `b`, each staying in flight until `in_flight` later requests have
// been picked (FIFO completion), so load-aware algorithms see realistic active counts. Hash
// algorithms get a distinct key per request. Returns picks per server.
inline std::vector<uint64_t> simulate(Balancer& b, Pool& pool, int picks, size_t in_flight = 32) {
  std::vector<uint64_t> counts(pool.active.size(), 0);
  std::deque<int> queue;
  for (int k = 0; k < picks; ++k) {
    if (queue.size() == in_flight) {
      --pool.active[queue.front()];
      queue.pop_front();
    }
    const int s = b.pick(pool.ctx(keyHash(k)));
    if (s == kNoServer) {
      ADD_FAILURE() << "no server picked";
      return counts;
    }
    ++counts[s];
    ++pool.active[s];
    queue.push_back(s);
  }
  for (int s : queue) --pool.active[s];
  return counts;
}

inline const std::vector<std::string> kAllAlgorithms = {
    "round_robin", "least_conn", "p2c", "random", "source_hash", "ring_hash", "maglev"};

}  // namespace tandem::balance::testing
