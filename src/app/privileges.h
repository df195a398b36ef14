#pragma once
// Least privilege: after the listeners and the admin socket are bound (and the access log is
// open), a process started as root switches to `user:` and keeps only the capabilities the HA
// thread needs. See docs/privileges.md.
//
// Threading: call on the main thread before any other thread exists. Capabilities are per
// thread and threads inherit them from their creator, so dropping first and then starting the
// workers, health, admin and HA threads gives every thread the same, reduced set. It refuses
// (an error) if the process already has more than one thread.
#include <string>

#include "config/config.h"
#include "core/error.h"

namespace tandem::app {

// What the drop keeps: CAP_NET_ADMIN (VIPs via rtnetlink) and CAP_NET_RAW (VRRP raw socket,
// gratuitous ARP) with cluster.mode active_passive; nothing otherwise.
bool needsHaCapabilities(const config::Config& cfg);

// Does nothing without `user:`, or (with a log line) when not started as root. Otherwise:
// bounding set reduced to the kept capabilities, supplementary groups dropped,
// setresgid/setresuid to the user, the kept capabilities (permitted + effective, nothing
// inheritable or ambient), no_new_privs; then checks that root cannot be regained.
Result<void> dropPrivileges(const config::Config& cfg);

}  // namespace tandem::app
