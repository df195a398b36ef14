#pragma once
// Prometheus text exposition (format 0.0.4) of a Totals plus process and control-plane facts.
// Names start with tandem_ and follow the conventions (_total, _seconds, _bytes; base units).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "admin/process_stats.h"
#include "admin/snapshot.h"
#include "config/config.h"
#include "state/replicator.h"
#include "state/table.h"

namespace tandem::admin {

// Facts of the control plane that are not in the data-plane snapshot.
struct ControlFacts {
  std::string version;
  std::string node;
  uint64_t config_revision = 0;
  int64_t config_source_revision = 0;  // etcd mod_revision of the config in use (0: a file)
  double config_loaded_seconds = 0;    // Unix time
  uint64_t events_total = 0;
  uint64_t alerts_firing = 0;
  uint64_t alerts_fired_total = 0;
  uint64_t webhook_delivered = 0;
  uint64_t webhook_failed = 0;
  uint64_t webhook_dropped = 0;
  uint64_t access_log_written = 0;
  uint64_t access_log_dropped = 0;
  uint64_t scrapes_total = 0;
  std::string role =
      "standalone";  // standalone | active | leader | follower | init | backup | master | fault
  bool vrrp = false;
  uint64_t vrrp_adverts_sent = 0;
  uint64_t vrrp_adverts_received = 0;
  uint64_t vrrp_transitions = 0;
  uint64_t vrrp_garps = 0;
  std::vector<std::pair<std::string, uint64_t>> vrrp_rejected;  // by reason
  bool state = false;  // the shared-state table (and a replicator, if `store` is set)
  state::Table::Stats table;
  std::string store;  // "memory" | "redis" | "" (no replicator)
  std::vector<state::PeerStatus> peers;
  HistogramSnapshot replication_lag;
};

std::string renderMetrics(const config::Config& cfg, const Totals& snap, const ProcessStats& proc,
                          const ControlFacts& facts);

}  // namespace tandem::admin
