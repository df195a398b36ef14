#pragma once
// Internal helpers shared by the algorithm files of src/balance. Not part of the public API: only
// src/balance/*.cc include this.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "balance/balancer.h"

namespace tandem::balance::detail {

// Re-hash attempts before hash-based algorithms fall back to a deterministic scan. Each attempt
// lands on a server with probability ~ its share, so 16 misses in a row only happen when almost
// everything is ineligible, where the O(n) scan is the cheaper way anyway.
inline constexpr uint32_t kMaxRehash = 16;

// murmur3 fmix64: a bijective finalizer with full avalanche.
inline uint64_t fmix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// Derives the `attempt`-th alternative hash of a key hash. Deterministic, so every instance
// re-hashes a key to the same place; the golden-ratio step keeps attempts of one key and first
// tries of neighbouring keys apart before the finalizer mixes them.
inline uint64_t rehash(uint64_t hash, uint32_t attempt) {
  return fmix64(hash + uint64_t{attempt} * 0x9e3779b97f4a7c15ULL);
}

// Maps a uniform 64-bit value onto [0, n) with one multiply (Lemire). The bias is below n / 2^64,
// far under anything a balancer can observe, and it avoids a 64-bit division per random draw.
inline uint64_t scaleTo(uint64_t r, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(r) * n) >> 64);
}

// Whether a pick may take server i. Spans shorter than the server list are a caller bug; the
// missing servers count as ineligible instead of being read out of bounds.
inline bool usable(const PickContext& ctx, size_t i, uint32_t weight) {
  return weight != 0 && i < ctx.eligible.size() && ctx.eligible[i] != 0;
}

inline uint32_t activeOf(const PickContext& ctx, size_t i) {
  return i < ctx.active.size() ? ctx.active[i] : 0;
}

// True when some server can be picked at all; lets hash algorithms stop early instead of walking
// a whole ring or table when every server is down.
inline bool anyUsable(const PickContext& ctx, std::span<const uint32_t> weights) {
  for (size_t i = 0; i < weights.size(); ++i) {
    if (usable(ctx, i, weights[i])) return true;
  }
  return false;
}

// First usable server after `from` in index order (wrapping), or kNoServer. The last resort of the
// re-hashing algorithms: deterministic, so all instances agree even there.
inline int scanFrom(const PickContext& ctx, std::span<const uint32_t> weights, size_t from) {
  const size_t n = weights.size();
  for (size_t k = 1; k <= n; ++k) {
    const size_t i = (from + k) % n;
    if (usable(ctx, i, weights[i])) return static_cast<int>(i);
  }
  return kNoServer;
}

// Prefix sums of the configured weights: maps a point of [0, total) to the server owning it in
// O(log n). Zero-weight servers own no point.
class WeightedIndex {
 public:
  explicit WeightedIndex(std::span<const uint32_t> weights) {
    ends_.reserve(weights.size());
    uint64_t sum = 0;
    for (uint32_t w : weights) {
      sum += w;
      ends_.push_back(sum);
    }
  }

  uint64_t total() const { return ends_.empty() ? 0 : ends_.back(); }

  // Precondition: point < total().
  size_t find(uint64_t point) const {
    return static_cast<size_t>(std::upper_bound(ends_.begin(), ends_.end(), point) - ends_.begin());
  }

 private:
  std::vector<uint64_t> ends_;  // ends_[i] = weights[0] + ... + weights[i]
};

// Draws a usable server other than `exclude` with probability proportional to its weight, or
// kNoServer if there is none. Tries rejection sampling on the static prefix sums first (O(log n),
// succeeds at once when everything is eligible); each accepted draw already has exactly the
// target distribution, and so does the exact O(n) fallback, so the result is exact either way.
int sampleWeighted(const PickContext& ctx, std::span<const uint32_t> weights,
                   const WeightedIndex& index, Random& rng, int exclude);

// Makers of the algorithms, registered by name in factory.cc. Options are validated by each maker.
using MakerFn = Result<std::unique_ptr<Balancer>> (*)(std::vector<ServerSpec> servers,
                                                      const Options& opts, Random* rng);
Result<std::unique_ptr<Balancer>> makeRoundRobin(std::vector<ServerSpec> servers,
                                                 const Options& opts, Random* rng);
Result<std::unique_ptr<Balancer>> makeLeastConn(std::vector<ServerSpec> servers,
                                                const Options& opts, Random* rng);
Result<std::unique_ptr<Balancer>> makeP2c(std::vector<ServerSpec> servers, const Options& opts,
                                          Random* rng);
Result<std::unique_ptr<Balancer>> makeRandom(std::vector<ServerSpec> servers, const Options& opts,
                                             Random* rng);
Result<std::unique_ptr<Balancer>> makeSourceHash(std::vector<ServerSpec> servers,
                                                 const Options& opts, Random* rng);
Result<std::unique_ptr<Balancer>> makeRingHash(std::vector<ServerSpec> servers, const Options& opts,
                                               Random* rng);
Result<std::unique_ptr<Balancer>> makeMaglev(std::vector<ServerSpec> servers, const Options& opts,
                                             Random* rng);

inline std::vector<uint32_t> weightsOf(const std::vector<ServerSpec>& servers) {
  std::vector<uint32_t> w;
  w.reserve(servers.size());
  for (const auto& s : servers) w.push_back(s.weight);
  return w;
}

// Server indices with weight > 0, ordered by name (then index): hash tables built in this order
// do not depend on the order servers are listed in.
std::vector<uint32_t> weightedByName(const std::vector<ServerSpec>& servers);

// Hash tables use names as identity; two servers with one name would share every hash point.
Result<void> checkUniqueNames(const std::vector<ServerSpec>& servers, std::string_view algorithm);

}  // namespace tandem::balance::detail
