// Balancer micro-benchmarks: cost of one pick per algorithm and pool size, and of building the
// hash tables (done once per worker and group on every snapshot change).
//   ./balance_bench --benchmark_filter=Pick
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "balance/balancer.h"

namespace tandem::balance {
namespace {

std::vector<ServerSpec> pool(int n) {
  std::vector<ServerSpec> s;
  for (int i = 0; i < n; ++i) {
    s.push_back({"10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ":8080",
                 static_cast<uint32_t>(1 + i % 4)});
  }
  return s;
}

// Args: servers, percent of them ineligible (spread over the pool).
void pickBench(benchmark::State& state, const char* algorithm) {
  const int n = static_cast<int>(state.range(0));
  const int down_pct = static_cast<int>(state.range(1));
  Random rng(1);
  auto b = makeBalancer(algorithm, pool(n), {}, &rng);
  if (!b) {
    state.SkipWithError(b.error().message.c_str());
    return;
  }
  std::vector<uint8_t> eligible(n, 1);
  std::vector<uint32_t> active(n, 0);
  for (int i = 0; i < n; ++i) {
    eligible[i] = down_pct > 0 && i % (100 / down_pct) == 0 ? 0 : 1;
    active[i] = static_cast<uint32_t>((i * 7) % 5);
  }
  // Pre-hashed keys: the pick, not hash64, is measured.
  std::vector<uint64_t> keys(4096);
  for (size_t k = 0; k < keys.size(); ++k) keys[k] = hash64("client-" + std::to_string(k));
  PickContext ctx{0, eligible, active};
  size_t k = 0;
  for (auto _ : state) {
    ctx.hash = keys[k++ & (keys.size() - 1)];
    const int s = (*b)->pick(ctx);
    benchmark::DoNotOptimize(s);
  }
  state.SetItemsProcessed(state.iterations());
}

void pickArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"servers", "down%"});
  for (int n : {10, 100}) {
    b->Args({n, 0});
    b->Args({n, 10});
  }
}

BENCHMARK_CAPTURE(pickBench, round_robin, "round_robin")->Apply(pickArgs);
BENCHMARK_CAPTURE(pickBench, least_conn, "least_conn")->Apply(pickArgs);
BENCHMARK_CAPTURE(pickBench, p2c, "p2c")->Apply(pickArgs);
BENCHMARK_CAPTURE(pickBench, random, "random")->Apply(pickArgs);
BENCHMARK_CAPTURE(pickBench, source_hash, "source_hash")->Apply(pickArgs);
BENCHMARK_CAPTURE(pickBench, ring_hash, "ring_hash")->Apply(pickArgs);
BENCHMARK_CAPTURE(pickBench, maglev, "maglev")->Apply(pickArgs);

void buildBench(benchmark::State& state, const char* algorithm) {
  const auto servers = pool(static_cast<int>(state.range(0)));
  Options opts;  // maglev: 65537 slots; ring_hash: 100 points per unit of weight
  for (auto _ : state) {
    auto b = makeBalancer(algorithm, servers, opts, nullptr);
    benchmark::DoNotOptimize(b);
  }
}
BENCHMARK_CAPTURE(buildBench, maglev_65537, "maglev")
    ->ArgName("servers")
    ->Arg(10)
    ->Arg(100)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(buildBench, ring_hash, "ring_hash")
    ->ArgName("servers")
    ->Arg(10)
    ->Arg(100)
    ->Unit(benchmark::kMillisecond);

void hashBench(benchmark::State& state) {
  const std::string key(static_cast<size_t>(state.range(0)), 'k');
  for (auto _ : state) benchmark::DoNotOptimize(hash64(key));
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(hashBench)->ArgName("bytes")->Arg(8)->Arg(16)->Arg(64)->Arg(1024);

}  // namespace
}  // namespace tandem::balance
