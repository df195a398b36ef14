// ring_hash: ketama-style consistent hashing. Server s gets weight * ring_points_per_weight points
// at hash64(name + "-" + i); a key belongs to the first point at or after its hash (wrapping).
// Removing a server moves only the keys of its points; an ineligible server's keys walk clockwise
// to the next eligible server's point, so they spread over the others instead of piling onto one.
//
// The ring is a pure function of the (name, weight) set: points depend on names only and equal
// hashes are ordered by name, so the listed order of servers does not matter.
#include <algorithm>
#include <cerrno>
#include <memory>
#include <string>
#include <utility>

#include "balance/detail.h"

namespace tandem::balance {
namespace {

// Caps the ring at 2^20 points (12 MiB: 8-byte hash + 4-byte owner) per balancer, i.e. per worker
// and group. Above it every server's points are scaled down proportionally (at least one each),
// which keeps shares proportional while weights * points_per_weight grows without bound.
constexpr uint64_t kMaxRingPoints = uint64_t{1} << 20;

class RingHash final : public Balancer {
 public:
  RingHash(std::vector<uint32_t> weights, std::vector<uint64_t> hashes,
           std::vector<uint32_t> owners)
      : weights_(std::move(weights)), hashes_(std::move(hashes)), owners_(std::move(owners)) {}

  int pick(const PickContext& ctx) override {
    const size_t size = hashes_.size();
    if (size == 0) return kNoServer;
    size_t pos = static_cast<size_t>(std::lower_bound(hashes_.begin(), hashes_.end(), ctx.hash) -
                                     hashes_.begin());
    if (pos == size) pos = 0;
    uint32_t owner = owners_[pos];
    if (detail::usable(ctx, owner, weights_[owner])) return static_cast<int>(owner);
    // Without this check, every request to a fully-down group would walk the whole ring.
    if (!detail::anyUsable(ctx, weights_)) return kNoServer;
    for (;;) {  // terminates: some server with points is usable
      if (++pos == size) pos = 0;
      owner = owners_[pos];
      if (detail::usable(ctx, owner, weights_[owner])) return static_cast<int>(owner);
    }
  }

  std::string_view name() const override { return "ring_hash"; }

 private:
  std::vector<uint32_t> weights_;
  std::vector<uint64_t> hashes_;  // sorted point hashes (a separate array keeps the search dense)
  std::vector<uint32_t> owners_;  // owners_[k] = server index of point hashes_[k]
};

}  // namespace

Result<std::unique_ptr<Balancer>> detail::makeRingHash(std::vector<ServerSpec> servers,
                                                       const Options& opts, Random*) {
  if (opts.ring_points_per_weight == 0) {
    return fail(ErrorSource::kConfig, EINVAL, "ring_hash: ring_points_per_weight must be >= 1");
  }
  if (auto ok = checkUniqueNames(servers, "ring_hash"); !ok) return tl::unexpected(ok.error());

  const std::vector<uint32_t> order = weightedByName(servers);
  uint64_t wanted = 0;
  for (uint32_t s : order) wanted += uint64_t{servers[s].weight} * opts.ring_points_per_weight;
  auto pointsOf = [&](uint32_t s) -> uint64_t {
    const uint64_t p = uint64_t{servers[s].weight} * opts.ring_points_per_weight;
    if (wanted <= kMaxRingPoints) return p;
    const auto scaled =
        static_cast<uint64_t>(static_cast<unsigned __int128>(p) * kMaxRingPoints / wanted);
    return std::max<uint64_t>(scaled, 1);
  };

  struct Point {
    uint64_t hash;
    uint32_t rank;  // position in name order: breaks hash ties independently of listing order
  };
  std::vector<Point> points;
  points.reserve(std::min(wanted, kMaxRingPoints + order.size()));
  std::string key;
  for (uint32_t rank = 0; rank < order.size(); ++rank) {
    const ServerSpec& s = servers[order[rank]];
    const uint64_t n = pointsOf(order[rank]);
    for (uint64_t i = 0; i < n; ++i) {
      key.assign(s.name);
      key += '-';
      key += std::to_string(i);
      points.push_back({hash64(key), rank});
    }
  }
  std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.rank < b.rank;
  });
  std::vector<uint64_t> hashes;
  std::vector<uint32_t> owners;
  hashes.reserve(points.size());
  owners.reserve(points.size());
  for (const Point& p : points) {
    hashes.push_back(p.hash);
    owners.push_back(order[p.rank]);
  }
  return std::make_unique<RingHash>(weightsOf(servers), std::move(hashes), std::move(owners));
}

}  // namespace tandem::balance
