#pragma once
// `tandem config push FILE --etcd URL [--key K]` (DESIGN §6 "Central config"): validates a config
// file locally and stores its text under the etcd key that every balancer's etcd config source
// watches.
#include <string>
#include <vector>

namespace tandem::config {

// Validates `file` with loadFile(); on errors prints each as "FILE:LINE: reason" to stderr and
// returns 1 without writing anything. Otherwise puts the file's text under `key` (trying the
// endpoints in order), prints "pushed FILE to KEY at revision N" to stdout and returns 0. Returns 2
// (message on stderr) if no endpoint is usable: a bad URL, etcd unreachable, or etcd refusing the
// write. Blocking; for the CLI (main thread).
int pushConfig(const std::string& file, const std::vector<std::string>& endpoints,
               const std::string& key);

}  // namespace tandem::config
