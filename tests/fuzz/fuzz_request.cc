// libFuzzer target: see invariants.h for what is checked, and differential.h for the comparison
// with the strict RFC 9112 reference (accepted disagreements excluded).
#include <cstdio>
#include <cstdlib>

#include "differential.h"
#include "invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string err = tandem::http::fuzz::checkRequest(input);
  if (err.empty()) err = tandem::http::fuzz::differential(input).error;
  if (!err.empty()) {
    std::fprintf(stderr, "invariant violated: %s\n", err.c_str());
    std::abort();
  }
  return 0;
}
