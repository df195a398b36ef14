// round_robin: smooth weighted round robin, NGINX's algorithm (ngx_http_upstream_round_robin.c).
// Every pick adds each eligible server's weight to its `current`, takes the largest, and
// subtracts the total from the winner. Picks spread evenly (weights 5,1,1 give a a b a c a a
// rather than a a a a a b c) and equal weights degrade to strict rotation. Ineligible servers
// neither gain nor lose, so they re-enter the rotation where they left it.
#include <memory>

#include "balance/detail.h"

namespace tandem::balance {
namespace {

class RoundRobin final : public Balancer {
 public:
  explicit RoundRobin(std::vector<uint32_t> weights)
      : weights_(std::move(weights)), current_(weights_.size(), 0) {}

  int pick(const PickContext& ctx) override {
    int best = kNoServer;
    int64_t total = 0;
    for (size_t i = 0; i < weights_.size(); ++i) {
      if (!detail::usable(ctx, i, weights_[i])) continue;
      current_[i] += weights_[i];
      total += weights_[i];
      // Strict '>' keeps the lowest index on ties, which gives equal weights the listed order.
      if (best == kNoServer || current_[i] > current_[best]) best = static_cast<int>(i);
    }
    if (best != kNoServer) current_[best] -= total;
    return best;
  }

  std::string_view name() const override { return "round_robin"; }

 private:
  std::vector<uint32_t> weights_;
  // Bounded by +-(sum of weights) * number of servers, far inside int64 even for uint32 weights.
  std::vector<int64_t> current_;
};

}  // namespace

Result<std::unique_ptr<Balancer>> detail::makeRoundRobin(std::vector<ServerSpec> servers,
                                                         const Options&, Random*) {
  return std::make_unique<RoundRobin>(weightsOf(servers));
}

}  // namespace tandem::balance
