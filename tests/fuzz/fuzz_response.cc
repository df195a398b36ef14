// libFuzzer target: see invariants.h for what is checked.
#include <cstdio>
#include <cstdlib>

#include "invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string err =
      tandem::http::fuzz::checkResponse({reinterpret_cast<const char*>(data), size});
  if (!err.empty()) {
    std::fprintf(stderr, "invariant violated: %s\n", err.c_str());
    std::abort();
  }
  return 0;
}
