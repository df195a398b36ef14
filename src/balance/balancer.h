#pragma once
// Balancer: picks one server of a pool for a request. One implementation per algorithm, each in its
// own file, registered by name in factory.cc.
//
// Threading: a Balancer belongs to one worker (its mutable state, e.g. the round-robin position, is
// not shared); build one per worker from the same ServerSpec list. Hash-based algorithms
// (source_hash, ring_hash, maglev) must be deterministic functions of the ServerSpec list (names,
// weights, order) and the key hash, so that two instances with the same config choose the same
// server for the same key.
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace tandem::balance {

struct ServerSpec {
  std::string name;     // stable identity used by hash-based algorithms
  uint32_t weight = 1;  // >= 1 (0 is treated as "never picked")
};

// What a pick may look at. `eligible[i]` false => server i must not be picked (down, draining,
// already tried by this request). `active[i]` is the number of in-flight requests on server i
// (per worker). `hash` is the request's key hash (hash_key), used only by hash-based algorithms.
struct PickContext {
  uint64_t hash = 0;
  std::span<const uint8_t> eligible;  // size == number of servers
  std::span<const uint32_t> active;   // size == number of servers
};

inline constexpr int kNoServer = -1;

class Balancer {
 public:
  virtual ~Balancer() = default;
  // Returns the index of an eligible server, or kNoServer if none is eligible.
  // Hash-based algorithms: if the server the key maps to is not eligible, pick another eligible
  // one deterministically (ring_hash walks the ring; maglev and source_hash re-hash).
  virtual int pick(const PickContext& ctx) = 0;
  virtual std::string_view name() const = 0;
};

// Randomness is injected (tests seed it); one engine per worker.
using Random = std::mt19937_64;

struct Options {
  uint32_t ring_points_per_weight = 100;  // ring_hash: points per unit of weight
  uint32_t maglev_table_size = 65537;     // maglev: must be prime
};

// Names: round_robin, least_conn, p2c, random, source_hash, ring_hash, maglev.
// Errors (unknown name, bad option) come back as Error with ErrorSource::kConfig.
Result<std::unique_ptr<Balancer>> makeBalancer(std::string_view algorithm,
                                               std::vector<ServerSpec> servers,
                                               const Options& opts, Random* rng);
bool isKnownAlgorithm(std::string_view algorithm);
bool isHashAlgorithm(std::string_view algorithm);  // source_hash, ring_hash, maglev

// Stable 64-bit hash (same value on every instance and build): used for keys and server names.
uint64_t hash64(std::string_view data, uint64_t seed = 0);

}  // namespace tandem::balance
