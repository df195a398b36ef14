// Replication lag between two PeerReplicators on loopback: node "a" writes sticky-style put()s of
// distinct keys at a steady rate; node "b" records, for every incremental record it merges,
// now - written_us (the writer's timestamp), and the run prints p50 / p99 / max.
//   replication_lag [rate_per_s=1000] [seconds=5]
// Both nodes share this process (and its clock), so the figure is write -> drain -> frame ->
// loopback -> merge, without clock skew.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster/peer_replicator.h"
#include "core/clock.h"
#include "state/table.h"

using namespace std::chrono_literals;
using tandem::cluster::PeerReplicator;
using tandem::cluster::PeerReplicatorOptions;

int main(int argc, char** argv) {
  const int rate = argc > 1 ? std::max(1, std::atoi(argv[1])) : 1000;
  const int seconds = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;
  const std::string secret = "replication lag benchmark secret";

  tandem::state::Table ta({"a"}), tb({"b"});
  std::mutex mu;
  std::vector<int64_t> lags;
  lags.reserve(static_cast<size_t>(rate) * static_cast<size_t>(seconds) + 16);

  auto options = [&](const char* id) {
    PeerReplicatorOptions o;
    o.node_id = id;
    o.listen_host = "127.0.0.1";
    o.listen_ephemeral = true;
    o.secret = secret;
    return o;
  };
  PeerReplicatorOptions ob = options("b");
  ob.peers = {{"a", "127.0.0.1", 0}};
  ob.on_lag = [&](int64_t us) {
    std::lock_guard l(mu);
    lags.push_back(us);
  };
  PeerReplicator rb(tb, ob);
  if (auto r = rb.start(); !r) {
    std::fprintf(stderr, "b: %s\n", r.error().message.c_str());
    return 1;
  }
  PeerReplicatorOptions oa = options("a");
  oa.peers = {{"b", "127.0.0.1", rb.listenPort()}};
  PeerReplicator ra(ta, oa);
  if (auto r = ra.start(); !r) {
    std::fprintf(stderr, "a: %s\n", r.error().message.c_str());
    return 1;
  }
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (ra.status().peers.at(0).state != "connected") {
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "the link did not come up\n");
      return 1;
    }
    std::this_thread::sleep_for(5ms);
  }

  const int total = rate * seconds;
  const auto period = std::chrono::nanoseconds(1'000'000'000LL / rate);
  auto next = std::chrono::steady_clock::now();
  for (int i = 0; i < total; ++i) {
    std::this_thread::sleep_until(next);
    next += period;
    ta.put(tandem::state::Kind::kSticky, "app\x1fuser-" + std::to_string(i), "server-3", 3'600'000,
           tandem::unixUs());
  }
  const auto settle = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    {
      std::lock_guard l(mu);
      if (lags.size() >= static_cast<size_t>(total)) break;
    }
    if (std::chrono::steady_clock::now() > settle) break;
    std::this_thread::sleep_for(5ms);
  }
  const auto st = rb.status();
  ra.stop();
  rb.stop();

  std::lock_guard l(mu);
  if (lags.empty()) {
    std::fprintf(stderr, "nothing arrived\n");
    return 1;
  }
  std::sort(lags.begin(), lags.end());
  auto pct = [&](double q) {
    return lags[std::min(lags.size() - 1, static_cast<size_t>(q * double(lags.size())))];
  };
  std::printf("replication lag, %d updates/s for %d s: %zu of %d records arrived\n", rate, seconds,
              lags.size(), total);
  std::printf("  p50 %lld us   p99 %lld us   p99.9 %lld us   max %lld us\n",
              static_cast<long long>(pct(0.50)), static_cast<long long>(pct(0.99)),
              static_cast<long long>(pct(0.999)), static_cast<long long>(lags.back()));
  std::printf("  status().lag histogram: p50 %.0f us, p99 %.0f us (bucket-interpolated)\n",
              st.lag.quantileUs(0.50), st.lag.quantileUs(0.99));
  return lags.size() == static_cast<size_t>(total) ? 0 : 1;
}
