#pragma once
// A Replicator moves records between this instance's Table and the other instances: through
// direct TCP links to peers (src/cluster, the embedded default) or through Redis
// (state/redis_store). It runs on a thread of its own and never blocks a worker; when the other
// side is unreachable the table simply keeps serving local state.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/stats.h"

namespace tandem::state {

struct PeerStatus {
  std::string id;                  // peer node id (Redis: "redis")
  std::string address;             // host:port
  std::string state;               // "connected" | "connecting" | "down"
  int64_t since_unix_ms = 0;       // when it entered that state
  int64_t last_heard_unix_ms = 0;  // last frame received (0 = never)
  int64_t rtt_us = -1;             // last heartbeat round trip; -1 = unknown
  uint64_t records_sent = 0;
  uint64_t records_received = 0;
  uint64_t full_syncs = 0;       // full syncs sent (connects and overflows)
  uint64_t queue_overflows = 0;  // the outbound queue was full: dropped, then a full resync
  uint64_t auth_failures = 0;    // frames with a bad HMAC / handshake failures (connection closed)
  uint64_t protocol_errors = 0;  // malformed frames, unknown versions (connection closed)
  uint64_t connects = 0;         // successful connections (reconnects = connects - 1)
  std::string last_error;
};

struct ReplicationStatus {
  std::string store;  // "memory" (peers) | "redis"
  std::vector<PeerStatus> peers;
  // now - written_us of each record received from elsewhere, in µs (core/stats.h buckets).
  HistogramSnapshot lag;
};

// How a replicator reports to the rest of the process (wired to the admin server's events and
// alerts). Called from the replicator's thread; implementations must be thread-safe and quick.
struct ReplicatorObserver {
  // A peer (or Redis) became reachable (`up`) or was lost; `detail` says why.
  std::function<void(const std::string& peer, bool up, const std::string& detail)> link;
};

class Replicator {
 public:
  virtual ~Replicator() = default;
  // Opens what needs privileges (the peer listener), before the process drops them; no thread.
  virtual Result<void> bind() { return {}; }
  // Starts the thread (binding first if bind() was not called: an error if it cannot).
  virtual Result<void> start() = 0;
  // Stops and joins; idempotent.
  virtual void stop() = 0;
  // Thread-safe.
  virtual ReplicationStatus status() const = 0;
};

}  // namespace tandem::state
