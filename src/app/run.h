#pragma once
// `tandem run`: the process's life (DESIGN §3): load the config, start the data plane, the admin
// server, the config source (file or etcd) and the leader election, apply reloads on the main
// thread, and drain on SIGTERM.
#include <string>

namespace tandem::app {

// Returns the process exit status.
int run(const std::string& config_path);

}  // namespace tandem::app
