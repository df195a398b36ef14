// Shared helpers of the algorithm files (see detail.h).
#include "balance/detail.h"

#include <algorithm>
#include <cerrno>
#include <string>
#include <unordered_set>

namespace tandem::balance::detail {

int sampleWeighted(const PickContext& ctx, std::span<const uint32_t> weights,
                   const WeightedIndex& index, Random& rng, int exclude) {
  // A handful of tries: with everything eligible the first one succeeds (p2c's second draw
  // collides with the first with probability ~ its share); when many servers are out, the exact
  // scan below is cheaper than hoping.
  constexpr int kTries = 4;
  const uint64_t total = index.total();
  if (total == 0) return kNoServer;
  for (int t = 0; t < kTries; ++t) {
    const size_t i = index.find(scaleTo(rng(), total));
    if (static_cast<int>(i) != exclude && usable(ctx, i, weights[i])) return static_cast<int>(i);
  }
  uint64_t usable_total = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (static_cast<int>(i) != exclude && usable(ctx, i, weights[i])) usable_total += weights[i];
  }
  if (usable_total == 0) return kNoServer;
  uint64_t point = scaleTo(rng(), usable_total);
  for (size_t i = 0; i < weights.size(); ++i) {
    if (static_cast<int>(i) == exclude || !usable(ctx, i, weights[i])) continue;
    if (point < weights[i]) return static_cast<int>(i);
    point -= weights[i];
  }
  return kNoServer;  // cannot happen: point < usable_total
}

std::vector<uint32_t> weightedByName(const std::vector<ServerSpec>& servers) {
  std::vector<uint32_t> order;
  order.reserve(servers.size());
  for (size_t i = 0; i < servers.size(); ++i) {
    if (servers[i].weight != 0) order.push_back(static_cast<uint32_t>(i));
  }
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    if (servers[a].name != servers[b].name) return servers[a].name < servers[b].name;
    return a < b;
  });
  return order;
}

Result<void> checkUniqueNames(const std::vector<ServerSpec>& servers, std::string_view algorithm) {
  std::unordered_set<std::string_view> seen;
  for (const auto& s : servers) {
    if (!seen.insert(s.name).second) {
      return fail(ErrorSource::kConfig, EINVAL,
                  std::string(algorithm) + ": duplicate server name '" + s.name +
                      "' (server names are the identity hash-based balancing is built on)");
    }
  }
  return {};
}

}  // namespace tandem::balance::detail
