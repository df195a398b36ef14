// Corpus replay driver: a main() for a libFuzzer entry point in builds without libFuzzer (g++,
// the normal test build). Calls LLVMFuzzerTestOneInput once per regular file in each directory
// given (sorted, so runs are repeatable); a directory that does not exist is skipped, but at least
// one input must be found. An invariant violation aborts, after naming the input being replayed.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
// Present only in sanitizer builds: lets an ASan/UBSan report name the input too.
extern "C" void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

namespace {

char g_current[4096];  // the input being replayed, for the crash report

void nameInput() {
  const char prefix[] = "\nreplay: crashed on input ";
  (void)!write(2, prefix, sizeof(prefix) - 1);
  (void)!write(2, g_current, std::strlen(g_current));
  (void)!write(2, "\n", 1);
}

void onSignal(int sig) {
  nameInput();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  for (int sig : {SIGABRT, SIGSEGV, SIGILL, SIGFPE, SIGBUS}) std::signal(sig, onSignal);
  if (__sanitizer_set_death_callback != nullptr) __sanitizer_set_death_callback(nameInput);
  size_t total = 0;
  for (int a = 1; a < argc; ++a) {
    std::error_code ec;
    if (!fs::is_directory(argv[a], ec)) continue;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(argv[a])) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      std::snprintf(g_current, sizeof(g_current), "%s", file.c_str());
      std::ifstream in(file, std::ios::binary);
      const std::string data((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    }
    std::printf("%s: %zu inputs\n", argv[a], files.size());
    total += files.size();
  }
  if (total == 0) {
    std::fprintf(stderr, "replay: no inputs found\n");
    return 1;
  }
  std::printf("replayed %zu inputs, no invariant violated\n", total);
  return 0;
}
