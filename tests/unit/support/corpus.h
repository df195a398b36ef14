#pragma once
// The files of a fuzzer's seed corpus (tests/fuzz/corpus/<target>/), read whole, for the unit tests
// that replay them through the fuzzers' invariant checks without clang/libFuzzer.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace tandem::testing {

struct CorpusFile {
  std::filesystem::path path;
  std::string data;
};

// Every regular file in `dir`, in directory order.
inline std::vector<CorpusFile> readCorpus(const std::filesystem::path& dir) {
  std::vector<CorpusFile> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    files.push_back({entry.path(), std::string((std::istreambuf_iterator<char>(in)),
                                               std::istreambuf_iterator<char>())});
  }
  return files;
}

}  // namespace tandem::testing
