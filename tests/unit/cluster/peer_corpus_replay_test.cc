// Replays the fuzz_peer seed corpus (tests/fuzz/corpus/fuzz_peer/) through the fuzzer's invariant
// checks, so `ctest` covers them without clang/libFuzzer.
#include <gtest/gtest.h>

#include <filesystem>

#include "../support/corpus.h"
#include "peer_invariants.h"

namespace tandem::cluster {
namespace {

namespace fs = std::filesystem;

TEST(PeerCorpusReplay, FuzzPeer) {
  size_t files = 0;
  size_t opened = 0;
  for (const auto& [path, data] :
       tandem::testing::readCorpus(fs::path(TANDEM_FUZZ_CORPUS) / "fuzz_peer")) {
    EXPECT_EQ(fuzz::checkPeer(data), "") << path;
    FrameCodec rx(fuzz::kSecret);
    RawFrame f;
    opened += rx.open(data, f) == FrameStatus::kOk;
    ++files;
  }
  EXPECT_GE(files, 8u);
  EXPECT_GE(opened, 6u);  // one valid sealed frame of each type, and a whole stream
}

}  // namespace
}  // namespace tandem::cluster
