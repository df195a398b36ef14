// Registry of balancing algorithms. A new policy is a new file defining its maker (declared in
// detail.h) plus one line in kAlgorithms. An explicit table rather than self-registering statics:
// objects of a static library that nothing references are dropped by the linker.
#include <array>
#include <cerrno>
#include <string>

#include "balance/detail.h"

namespace tandem::balance {
namespace {

struct Algorithm {
  std::string_view name;
  bool hash_based;  // uses PickContext::hash; deterministic across instances
  detail::MakerFn make;
};

constexpr std::array kAlgorithms = {
    Algorithm{"round_robin", false, &detail::makeRoundRobin},
    Algorithm{"least_conn", false, &detail::makeLeastConn},
    Algorithm{"p2c", false, &detail::makeP2c},
    Algorithm{"random", false, &detail::makeRandom},
    Algorithm{"source_hash", true, &detail::makeSourceHash},
    Algorithm{"ring_hash", true, &detail::makeRingHash},
    Algorithm{"maglev", true, &detail::makeMaglev},
};

const Algorithm* find(std::string_view name) {
  for (const Algorithm& a : kAlgorithms) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

}  // namespace

Result<std::unique_ptr<Balancer>> makeBalancer(std::string_view algorithm,
                                               std::vector<ServerSpec> servers, const Options& opts,
                                               Random* rng) {
  const Algorithm* a = find(algorithm);
  if (a == nullptr) {
    std::string known;
    for (const Algorithm& k : kAlgorithms) {
      if (!known.empty()) known += ", ";
      known += k.name;
    }
    return fail(
        ErrorSource::kConfig, EINVAL,
        "unknown balance algorithm '" + std::string(algorithm) + "' (known: " + known + ")");
  }
  return a->make(std::move(servers), opts, rng);
}

bool isKnownAlgorithm(std::string_view algorithm) { return find(algorithm) != nullptr; }

bool isHashAlgorithm(std::string_view algorithm) {
  const Algorithm* a = find(algorithm);
  return a != nullptr && a->hash_based;
}

}  // namespace tandem::balance
