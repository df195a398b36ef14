// least_conn: the eligible server with the fewest in-flight requests per unit of weight
// (active[i] / weight[i], compared cross-multiplied in 64 bits, so no floats and no overflow for
// uint32 inputs). Servers tied at the minimum are picked by smooth weighted round robin among
// themselves, as NGINX does: equal load (e.g. an idle pool where every request has finished)
// then still spreads, and in proportion to weight, instead of always landing on the first index.
#include <memory>

#include "balance/detail.h"

namespace tandem::balance {
namespace {

class LeastConn final : public Balancer {
 public:
  explicit LeastConn(std::vector<uint32_t> weights)
      : weights_(std::move(weights)), current_(weights_.size(), 0) {}

  int pick(const PickContext& ctx) override {
    const size_t n = weights_.size();
    int best = kNoServer;
    uint64_t best_active = 0;
    uint64_t best_weight = 1;
    int ties = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!detail::usable(ctx, i, weights_[i])) continue;
      const uint64_t a = detail::activeOf(ctx, i);
      const uint64_t w = weights_[i];
      // a / w < best_active / best_weight, without dividing.
      const uint64_t lhs = a * best_weight;
      const uint64_t rhs = best_active * w;
      if (best == kNoServer || lhs < rhs) {
        best = static_cast<int>(i);
        best_active = a;
        best_weight = w;
        ties = 1;
      } else if (lhs == rhs) {
        ++ties;
      }
    }
    if (ties <= 1) return best;

    int chosen = kNoServer;
    int64_t total = 0;
    for (size_t i = static_cast<size_t>(best); i < n; ++i) {
      if (!detail::usable(ctx, i, weights_[i])) continue;
      if (uint64_t{detail::activeOf(ctx, i)} * best_weight != best_active * weights_[i]) continue;
      current_[i] += weights_[i];
      total += weights_[i];
      if (chosen == kNoServer || current_[i] > current_[chosen]) chosen = static_cast<int>(i);
    }
    current_[chosen] -= total;
    return chosen;
  }

  std::string_view name() const override { return "least_conn"; }

 private:
  std::vector<uint32_t> weights_;
  std::vector<int64_t> current_;  // smooth round-robin state for breaking ties
};

}  // namespace

Result<std::unique_ptr<Balancer>> detail::makeLeastConn(std::vector<ServerSpec> servers,
                                                        const Options&, Random*) {
  return std::make_unique<LeastConn>(weightsOf(servers));
}

}  // namespace tandem::balance
