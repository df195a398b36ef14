#include "admin/process_stats.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

namespace tandem::admin {
namespace {

std::string readSmallFile(const char* path) {
  std::string out;
  FILE* f = std::fopen(path, "re");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

// Boot time from /proc/stat ("btime"), to turn the start time in clock ticks into Unix time.
double bootTime() {
  std::string stat = readSmallFile("/proc/stat");
  size_t at = stat.find("\nbtime ");
  if (at == std::string::npos) return 0;
  return std::strtod(stat.c_str() + at + 7, nullptr);
}

}  // namespace

ProcessStats readProcessStats() {
  ProcessStats p;
  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  static const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  static const double boot = bootTime();
  // /proc/self/stat: the command name may hold spaces, so fields are counted after its ')'.
  std::string stat = readSmallFile("/proc/self/stat");
  size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    const char* s = stat.c_str() + close + 2;  // field 3 (state)
    unsigned long long f[64] = {};
    int field = 3;
    while (*s && field < 64) {
      if (field != 3) f[field] = std::strtoull(s, nullptr, 10);
      while (*s && *s != ' ') ++s;
      while (*s == ' ') ++s;
      ++field;
    }
    p.cpu_seconds = static_cast<double>(f[14] + f[15]) / ticks;  // utime + stime
    p.threads = f[20];
    p.start_time_seconds = boot + static_cast<double>(f[22]) / ticks;
    p.virtual_bytes = f[23];
    p.resident_bytes = static_cast<uint64_t>(static_cast<double>(f[24]) * page);
  }
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') ++p.open_fds;
    }
    ::closedir(d);
    if (p.open_fds > 0) --p.open_fds;  // the directory stream's own descriptor
  }
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) p.max_fds = rl.rlim_cur;
  return p;
}

}  // namespace tandem::admin
