#include "config/config_push.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "config/config.h"
#include "config/etcd_client.h"

namespace tandem::config {

int pushConfig(const std::string& file, const std::vector<std::string>& endpoints,
               const std::string& key) {
  auto loaded = loadFile(file);
  if (!loaded) {
    for (const ConfigError& e : loaded.error()) std::fprintf(stderr, "%s\n", e.text().c_str());
    return 1;
  }
  // The text as written (comments and all) is what goes to etcd, not a re-serialisation.
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.is_open() || in.bad()) {
    std::fprintf(stderr, "%s: cannot read the file\n", file.c_str());
    return 1;
  }
  if (key.empty()) {
    std::fprintf(stderr, "tandem config push: empty etcd key\n");
    return 2;
  }
  EtcdClientOptions options;
  options.endpoints = endpoints;
  options.timeout = std::chrono::milliseconds{5'000};
  auto client = EtcdClient::make(std::move(options));
  if (!client) {
    std::fprintf(stderr, "tandem config push: %s\n", client.error().message.c_str());
    return 2;
  }
  auto revision = client->put(key, text.str());
  if (!revision) {
    std::fprintf(stderr, "tandem config push: %s\n", revision.error().message.c_str());
    return 2;
  }
  std::printf("pushed %s to %s at revision %lld\n", file.c_str(), key.c_str(),
              static_cast<long long>(*revision));
  std::fflush(stdout);
  return 0;
}

}  // namespace tandem::config
