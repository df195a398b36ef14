// source_hash: HAProxy's map-based hash ("balance source" with hash-type map-based). The key hash
// is taken modulo the total weight and located on the prefix sums of the configured weights, so
// each server owns a share of keys proportional to its weight. The map is built from the
// configured weights, not from eligibility: a server going down moves only its own keys, which
// are re-hashed (same key -> same alternative on every instance) until they hit an eligible
// server. Changing weights or the server list remaps most keys; ring_hash and maglev exist for
// that case.
#include <memory>

#include "balance/detail.h"

namespace tandem::balance {
namespace {

class SourceHash final : public Balancer {
 public:
  explicit SourceHash(std::vector<uint32_t> weights)
      : weights_(std::move(weights)), index_(weights_) {}

  int pick(const PickContext& ctx) override {
    const uint64_t total = index_.total();
    if (total == 0) return kNoServer;
    size_t i = index_.find(ctx.hash % total);
    if (detail::usable(ctx, i, weights_[i])) return static_cast<int>(i);
    for (uint32_t attempt = 1; attempt <= detail::kMaxRehash; ++attempt) {
      i = index_.find(detail::rehash(ctx.hash, attempt) % total);
      if (detail::usable(ctx, i, weights_[i])) return static_cast<int>(i);
    }
    return detail::scanFrom(ctx, weights_, i);
  }

  std::string_view name() const override { return "source_hash"; }

 private:
  std::vector<uint32_t> weights_;
  detail::WeightedIndex index_;
};

}  // namespace

Result<std::unique_ptr<Balancer>> detail::makeSourceHash(std::vector<ServerSpec> servers,
                                                         const Options&, Random*) {
  return std::make_unique<SourceHash>(weightsOf(servers));
}

}  // namespace tandem::balance
