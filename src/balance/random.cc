// random: weighted random over the eligible servers, drawn from the worker's injected engine.
#include <cerrno>
#include <memory>

#include "balance/detail.h"

namespace tandem::balance {
namespace {

class RandomBalancer final : public Balancer {
 public:
  RandomBalancer(std::vector<uint32_t> weights, Random* rng)
      : weights_(std::move(weights)), index_(weights_), rng_(rng) {}

  int pick(const PickContext& ctx) override {
    return detail::sampleWeighted(ctx, weights_, index_, *rng_, kNoServer);
  }

  std::string_view name() const override { return "random"; }

 private:
  std::vector<uint32_t> weights_;
  detail::WeightedIndex index_;
  Random* rng_;  // the worker's engine; outlives the balancer
};

}  // namespace

Result<std::unique_ptr<Balancer>> detail::makeRandom(std::vector<ServerSpec> servers,
                                                     const Options&, Random* rng) {
  if (rng == nullptr) return fail(ErrorSource::kInternal, EINVAL, "random: no Random engine given");
  return std::make_unique<RandomBalancer>(weightsOf(servers), rng);
}

}  // namespace tandem::balance
