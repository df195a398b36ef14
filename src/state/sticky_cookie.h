#pragma once
// Cookie-mode sticky sessions: the cookie names the server and carries a MAC of it under the
// cluster secret, so every instance with the same secret honours it without shared state, and a
// client cannot pick a server by writing the cookie itself (it can only replay one it was given).
#include <string>
#include <string_view>

namespace tandem::state {

// "SERVER.MAC": MAC = the first 12 bytes of HMAC-SHA256(secret, backend 0x1f server), in hex.
std::string stickyCookieValue(std::string_view secret, std::string_view backend,
                              std::string_view server);

// A secret of 32 random bytes (hex) for a node without cluster.secret_file: its cookies are then
// honoured by this process only.
std::string randomSecret();

}  // namespace tandem::state
