// Replays the fuzzers' seed corpora (tests/fuzz/corpus/<target>/) through the same invariant
// checks the fuzzers run, so `ctest` covers them without clang/libFuzzer.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "../support/corpus.h"
#include "invariants.h"

namespace tandem::http {
namespace {

namespace fs = std::filesystem;

using CheckFn = std::string (*)(std::string_view);

// Returns how many files were replayed.
size_t replay(const char* target, CheckFn check) {
  size_t n = 0;
  for (const auto& [path, data] :
       tandem::testing::readCorpus(fs::path(TANDEM_FUZZ_CORPUS) / target)) {
    EXPECT_EQ(check(data), "") << path;
    ++n;
  }
  return n;
}

TEST(CorpusReplay, Request) { EXPECT_GE(replay("request", fuzz::checkRequest), 10u); }
TEST(CorpusReplay, Response) { EXPECT_GE(replay("response", fuzz::checkResponse), 10u); }
TEST(CorpusReplay, Chunked) { EXPECT_GE(replay("chunked", fuzz::checkChunked), 10u); }

}  // namespace
}  // namespace tandem::http
