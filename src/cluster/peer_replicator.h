#pragma once
// Peer replication (DESIGN §6, issue 6): this instance's Table, kept in step with every configured
// peer over authenticated TCP links (wire format: peer_protocol.h).
//
// One thread with its own EventLoop owns every socket. Per link:
// - Dialing rule: of two peers, the one whose id is smaller (byte-wise) dials, the other only
//   accepts, so a pair never holds two links. An inbound HELLO from a larger id is refused. A new
//   authenticated link from a peer replaces its old one (the peer restarted before we noticed).
// - Handshake: both sides send HELLO (id, version, random nonce) at once; a side that accepts the
//   other's HELLO answers with a PING bound to both nonces. The link is up when the first such
//   frame arrives and verifies: only then is the observer told and anything replicated.
// - Then a full sync (Table::forEach, in RECORDS frames of up to `batch` records, then
//   SYNC_DONE), then incremental updates: local writes (Table::drain, woken by the table's wake
//   callback) go to every up link at once; received records are merged (Table::merge).
// - PING every `heartbeat`, answered with PONG (RTT); no frame at all for `dead_after`
//   heartbeats closes the link, and so does a peer that has not read anything for as long.
// - Flow control: at most `out_high_water` bytes wait in a link's output buffer; records beyond
//   wait in its queue (at most `max_queue` records: over it, the queue is dropped, counted in
//   queue_overflows, and a full sync is sent when the peer catches up). The thread never blocks on
//   a peer. A full sync holds the encoded table (roughly 60-100 bytes a record) until it is sent.
// - Reconnect: the dialer retries after `backoff_initial`, doubling to `backoff_max`, ±20% jitter.
// - The table is expired once a second on this thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "state/replicator.h"
#include "state/table.h"

namespace tandem::cluster {

struct PeerEndpoint {
  std::string id;
  std::string host;   // numeric IP
  uint16_t port = 0;  // only needed for the peers this node dials (larger ids)
};

struct PeerReplicatorOptions {
  std::string node_id;  // 1..255 bytes
  std::string listen_host = "0.0.0.0";
  uint16_t listen_port = 0;         // 0: no listener (unless listen_ephemeral)
  bool listen_ephemeral = false;    // tests: bind port 0 and read it back with listenPort()
  std::vector<PeerEndpoint> peers;  // the same list on every node; this node's entry is skipped
  std::string secret;               // the shared HMAC key: at least 16 bytes
  std::chrono::milliseconds heartbeat{500};
  int dead_after = 3;  // heartbeats without any frame before a link is closed
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  size_t max_queue = 100'000;          // records waiting for one peer; over it: full resync
  size_t out_high_water = 256 * 1024;  // bytes buffered per link before records queue up
  size_t max_output = 16 << 20;        // a link buffering more than this is closed
  size_t batch = 512;                  // records per RECORDS frame (and ~60 KiB at most)
  // A peer not reached since start is reported down (to the observer: an alert) only after this
  // long, so a pair that starts together does not alert each time; a link lost later is
  // reported at once.
  std::chrono::milliseconds startup_grace{10'000};
  state::ReplicatorObserver observer;
  // Tests and benchmarks: called on the replicator's thread with the lag (now - written_us, µs)
  // of every incremental record that changed the table.
  std::function<void(int64_t lag_us)> on_lag;
};

class PeerReplicator final : public state::Replicator {
 public:
  // `table` must outlive this object. Nothing happens until start().
  PeerReplicator(state::Table& table, PeerReplicatorOptions options);
  ~PeerReplicator() override;  // stops
  PeerReplicator(const PeerReplicator&) = delete;
  PeerReplicator& operator=(const PeerReplicator&) = delete;

  // Validates the options, binds the listener and starts the thread. Installs the table's wake
  // callback (Table::setWake), so call it before other threads write to the table. Once only.
  // Validates the options and binds the peer listener (before a privilege drop); start() does it
  // if it was not done.
  Result<void> bind() override;
  Result<void> start() override;
  // Closes every link and joins the thread; idempotent. Links are closed without a "down" report.
  void stop() override;
  // Thread-safe.
  state::ReplicationStatus status() const override;
  // The bound peer port after start() (0 without a listener).
  uint16_t listenPort() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::cluster
