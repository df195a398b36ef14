// Replays the fuzz_vrrp seed corpus (tests/fuzz/corpus/fuzz_vrrp/) through the fuzzer's invariant
// checks, so `ctest` covers them without clang/libFuzzer.
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "../support/corpus.h"
#include "vrrp_invariants.h"

namespace tandem::ha {
namespace {

namespace fs = std::filesystem;

TEST(VrrpCorpusReplay, FuzzVrrp) {
  size_t files = 0;
  size_t accepted = 0;
  for (const auto& [path, bytes] :
       tandem::testing::readCorpus(fs::path(TANDEM_FUZZ_CORPUS) / "fuzz_vrrp")) {
    const std::vector<uint8_t> data(bytes.begin(), bytes.end());
    EXPECT_EQ(fuzz::checkVrrp(data), "") << path;
    auto ip = checkIpHeader(data);
    accepted += ip && decode(ip->payload, ip->src_ip, ip->dst_ip).has_value();
    ++files;
  }
  EXPECT_GE(files, 3u);
  EXPECT_GE(accepted, 3u);  // the seeds are valid packets: keepalived's, priority 0, unicast
}

}  // namespace
}  // namespace tandem::ha
