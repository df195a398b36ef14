// libFuzzer target: the VRRP receive path (checkIpHeader, decode, and the state machine on what
// decode accepts) on arbitrary bytes; see vrrp_invariants.h for what is checked.
#include <cstdio>
#include <cstdlib>

#include "vrrp_invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string err = tandem::ha::fuzz::checkVrrp({data, size});
  if (!err.empty()) {
    std::fprintf(stderr, "invariant violated: %s\n", err.c_str());
    std::abort();
  }
  return 0;
}
