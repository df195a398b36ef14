// libFuzzer target: loadString on arbitrary bytes must never crash, throw or hang, and whatever it
// accepts must satisfy the invariants the rest of Tandem relies on.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem::config;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // No try/catch on purpose: an exception escaping loadString is a bug the fuzzer must report.
  auto result = loadString(text, "fuzz.yaml");
  if (!result) {
    if (result.error().empty()) __builtin_trap();  // failure must say why
    for (const ConfigError& error : result.error()) {
      if (error.line < 0 || error.reason.empty()) __builtin_trap();
    }
    return 0;
  }
  const Config& config = *result;
  if (config.listeners.empty()) __builtin_trap();
  for (const Listener& listener : config.listeners) {
    if (listener.listen.port == 0 || config.findBackend(listener.backend) == nullptr) {
      __builtin_trap();
    }
  }
  for (const Backend& backend : config.backends) {
    bool has_primary = false;
    for (const Server& server : backend.servers) {
      if (server.weight < 1 || server.weight > 256 || server.address.port == 0) __builtin_trap();
      has_primary |= !server.backup;
    }
    if (!has_primary || !isKnownBalance(backend.balance)) __builtin_trap();
    if (backend.balance == "maglev" && !isPrime(backend.maglev_table_size)) __builtin_trap();
  }
  return 0;
}
