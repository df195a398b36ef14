#include "app/privileges.h"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "core/log.h"

namespace tandem::app {
namespace {

tl::unexpected<Error> failure(const std::string& what, int err = errno) {
  return fail(ErrorSource::kInternal, err,
              "cannot drop privileges: " + what + (err ? std::string(": ") + strerror(err) : ""));
}

// Threads of this process (entries of /proc/self/task); -1 if unknown.
int threadCount() {
  DIR* d = ::opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  while (dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

}  // namespace

bool needsHaCapabilities(const config::Config& cfg) { return cfg.cluster.mode == "active_passive"; }

Result<void> dropPrivileges(const config::Config& cfg) {
  if (cfg.user.empty()) return {};
  if (::geteuid() != 0) {
    log::info("user: {} ignored: not started as root (running as uid {})", cfg.user, ::geteuid());
    return {};
  }
  // A thread started before this point would keep root's credentials and capabilities.
  if (int n = threadCount(); n != 1) {
    return failure(std::to_string(n) + " threads already running (must be done before any starts)",
                   0);
  }
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* user = nullptr;
  if (::getpwnam_r(cfg.user.c_str(), &pw, buf.data(), buf.size(), &user) != 0 || !user) {
    return failure("unknown user '" + cfg.user + "'", 0);
  }
  const uid_t uid = user->pw_uid;
  gid_t gid = user->pw_gid;
  if (!cfg.group.empty()) {
    std::vector<char> gbuf(16384);
    group gr{};
    group* g = nullptr;
    if (::getgrnam_r(cfg.group.c_str(), &gr, gbuf.data(), gbuf.size(), &g) != 0 || !g) {
      return failure("unknown group '" + cfg.group + "'", 0);
    }
    gid = g->gr_gid;
  }
  if (uid == 0) return failure("user '" + cfg.user + "' is root", 0);

  std::vector<cap_value_t> keep;
  if (needsHaCapabilities(cfg)) keep = {CAP_NET_ADMIN, CAP_NET_RAW};
  auto kept = [&keep](cap_value_t c) {
    for (cap_value_t k : keep) {
      if (k == c) return true;
    }
    return false;
  };
  // The bounding set first: shrinking it needs CAP_SETPCAP, which goes with root below.
  for (cap_value_t c = 0; c <= CAP_LAST_CAP; ++c) {
    if (!kept(c) && CAP_IS_SUPPORTED(c) && cap_drop_bound(c) != 0) {
      return failure("bounding set");
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return failure("ambient capabilities");
  }
  // Without KEEPCAPS, leaving uid 0 clears the permitted set; with it, the set below survives.
  if (!keep.empty() && ::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return failure("keepcaps");
  if (::setgroups(0, nullptr) != 0) return failure("setgroups");
  if (::setresgid(gid, gid, gid) != 0) return failure("setresgid");
  if (::setresuid(uid, uid, uid) != 0) return failure("setresuid");
  if (!keep.empty()) ::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);

  cap_t caps = cap_init();  // everything clear
  if (!caps) return failure("cap_init");
  bool ok = true;
  if (!keep.empty()) {
    ok =
        cap_set_flag(caps, CAP_PERMITTED, static_cast<int>(keep.size()), keep.data(), CAP_SET) ==
            0 &&
        cap_set_flag(caps, CAP_EFFECTIVE, static_cast<int>(keep.size()), keep.data(), CAP_SET) == 0;
  }
  ok = ok && cap_set_proc(caps) == 0;
  const int err = errno;
  cap_free(caps);
  if (!ok) return failure("capabilities", err);
  // Nothing exec'd later (there is nothing to exec) may gain privileges back.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return failure("no_new_privs");

  // Paranoia: root must be gone for good.
  if (::setuid(0) == 0 || ::setgid(0) == 0 || ::geteuid() == 0) {
    return failure("root could be regained", 0);
  }
  log::info("privileges dropped: uid {} ({}), gid {}; capabilities kept: {}", uid, cfg.user, gid,
            keep.empty() ? "none" : "CAP_NET_ADMIN, CAP_NET_RAW (VRRP)");
  return {};
}

}  // namespace tandem::app
