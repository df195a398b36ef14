// Replays the fuzzers' seed corpora (tests/fuzz/corpus/<target>/) through the same invariant
// checks the fuzzers run, so `ctest` covers them without clang/libFuzzer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "invariants.h"

namespace tandem::http {
namespace {

namespace fs = std::filesystem;

using CheckFn = std::string (*)(std::string_view);

// Returns how many files were replayed.
size_t replay(const char* target, CheckFn check) {
  const fs::path dir = fs::path(TANDEM_FUZZ_CORPUS) / target;
  size_t n = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(check(data), "") << entry.path();
    ++n;
  }
  return n;
}

TEST(CorpusReplay, Request) { EXPECT_GE(replay("request", fuzz::checkRequest), 10u); }
TEST(CorpusReplay, Response) { EXPECT_GE(replay("response", fuzz::checkResponse), 10u); }
TEST(CorpusReplay, Chunked) { EXPECT_GE(replay("chunked", fuzz::checkChunked), 10u); }

}  // namespace
}  // namespace tandem::http
