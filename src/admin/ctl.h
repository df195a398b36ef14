#pragma once
// `tandem ctl`: the admin API from a shell (DESIGN §3). A blocking HTTP/1.1 client, one request
// per connection; prints the response body (JSON) on stdout.
#include <cstdint>
#include <string>
#include <vector>

namespace tandem::admin {

struct CtlOptions {
  std::string admin = "http://127.0.0.1:9900";  // $TANDEM_ADMIN
  std::string token;                            // $TANDEM_TOKEN, or read from token_file
  std::string token_file;
  std::vector<std::string> args;  // command and its operands
  int timeout_ms = 5000;
  uint64_t max_events = 0;  // `events`: stop after this many (0 = until the stream ends)
};

// Exit codes: 0 = 2xx, 1 = the API answered with an error, 2 = usage or connection error.
int runCtl(const CtlOptions& opts);

}  // namespace tandem::admin
