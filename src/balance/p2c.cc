// p2c: power of two choices (Mitzenmacher). Draw two distinct eligible servers, each with
// probability proportional to weight, and take the one with fewer in-flight requests per unit of
// weight; a tie is settled by a coin flip. Nearly as good as least_conn at avoiding hot servers,
// O(log n) instead of O(n), and it does not herd every worker onto the same "least" server.
#include <cerrno>
#include <memory>

#include "balance/detail.h"

namespace tandem::balance {
namespace {

class P2c final : public Balancer {
 public:
  P2c(std::vector<uint32_t> weights, Random* rng)
      : weights_(std::move(weights)), index_(weights_), rng_(rng) {}

  int pick(const PickContext& ctx) override {
    const int a = detail::sampleWeighted(ctx, weights_, index_, *rng_, kNoServer);
    if (a == kNoServer) return kNoServer;
    const int b = detail::sampleWeighted(ctx, weights_, index_, *rng_, a);
    if (b == kNoServer) return a;  // the only eligible server
    // active[a] / weight[a] vs active[b] / weight[b], cross-multiplied.
    const uint64_t load_a = uint64_t{detail::activeOf(ctx, a)} * weights_[b];
    const uint64_t load_b = uint64_t{detail::activeOf(ctx, b)} * weights_[a];
    if (load_a != load_b) return load_a < load_b ? a : b;
    return ((*rng_)() & 1) != 0 ? a : b;
  }

  std::string_view name() const override { return "p2c"; }

 private:
  std::vector<uint32_t> weights_;
  detail::WeightedIndex index_;
  Random* rng_;  // the worker's engine; outlives the balancer
};

}  // namespace

Result<std::unique_ptr<Balancer>> detail::makeP2c(std::vector<ServerSpec> servers, const Options&,
                                                  Random* rng) {
  if (rng == nullptr) return fail(ErrorSource::kInternal, EINVAL, "p2c: no Random engine given");
  return std::make_unique<P2c>(weightsOf(servers), rng);
}

}  // namespace tandem::balance
