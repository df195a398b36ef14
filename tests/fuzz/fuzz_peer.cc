// libFuzzer target: the peer replication receive path (src/cluster/peer_protocol): framing, MAC
// check and every payload decoder on arbitrary bytes; see peer_invariants.h for what is checked.
#include <cstdio>
#include <cstdlib>

#include "peer_invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string err =
      tandem::cluster::fuzz::checkPeer({reinterpret_cast<const char*>(data), size});
  if (!err.empty()) {
    std::fprintf(stderr, "invariant violated: %s\n", err.c_str());
    std::abort();
  }
  return 0;
}
