// Replays the fuzz_vrrp seed corpus (tests/fuzz/corpus/fuzz_vrrp/) through the fuzzer's invariant
// checks, so `ctest` covers them without clang/libFuzzer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "vrrp_invariants.h"

namespace tandem::ha {
namespace {

namespace fs = std::filesystem;

TEST(VrrpCorpusReplay, FuzzVrrp) {
  size_t files = 0;
  size_t accepted = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(TANDEM_FUZZ_CORPUS) / "fuzz_vrrp")) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)),
                                    std::istreambuf_iterator<char>());
    EXPECT_EQ(fuzz::checkVrrp(data), "") << entry.path();
    auto ip = checkIpHeader(data);
    accepted += ip && decode(ip->payload, ip->src_ip, ip->dst_ip).has_value();
    ++files;
  }
  EXPECT_GE(files, 3u);
  EXPECT_GE(accepted, 3u);  // the seeds are valid packets: keepalived's, priority 0, unicast
}

}  // namespace
}  // namespace tandem::ha
