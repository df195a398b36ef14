#pragma once
// What workers know of server health: an immutable snapshot built by the control thread and
// handed to every worker (workers never lock to read it; they swap it in on their own thread).
#include <cstdint>
#include <vector>

namespace tandem::health {

struct ServerView {
  bool healthy = true;    // active verdict and not ejected by outlier detection
  bool ejected = false;   // out because of outlier detection (or waiting for a check after it)
  bool draining = false;  // admin: no new requests, in-flight ones finish
  bool disabled = false;  // admin: nothing at all
  uint16_t weight = 1;    // configured weight, or the admin's override
  uint16_t weight_permille = 1000;  // slow start: effective weight = weight x permille / 1000
  bool operator==(const ServerView&) const = default;
};

struct BackendView {
  std::vector<ServerView> servers;  // same order as config::Backend::servers
  bool panic = false;               // too few healthy servers: balance over all of them
};

struct HealthView {
  uint64_t version = 0;
  const void* source = nullptr;       // the HealthManager that built it (one per config generation)
  std::vector<BackendView> backends;  // same order as config::Config::backends
};

}  // namespace tandem::health
