#include "core/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <ctime>

namespace tandem::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<bool> g_json{false};

const char* levelName(Level l) {
  switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "?";
}

void appendJsonEscaped(std::string& out, std::string_view s) {
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
}
}  // namespace

void setLevel(Level l) { g_level.store(static_cast<int>(l)); }
void setJson(bool json) { g_json.store(json); }
bool enabled(Level l) { return static_cast<int>(l) >= g_level.load(std::memory_order_relaxed); }

void write(Level l, std::string_view msg) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm t;
  gmtime_r(&tv.tv_sec, &t);
  char ts[32];
  size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &t);
  std::string line;
  line.reserve(msg.size() + 64);
  if (g_json.load(std::memory_order_relaxed)) {
    line = fmt::format("{{\"time\":\"{}.{:03d}Z\",\"level\":\"{}\",\"msg\":\"",
                       std::string_view(ts, n), tv.tv_usec / 1000, levelName(l));
    appendJsonEscaped(line, msg);
    line += "\"}\n";
  } else {
    line = fmt::format("{}.{:03d}Z {} {}\n", std::string_view(ts, n), tv.tv_usec / 1000,
                       levelName(l), msg);
  }
  ssize_t unused = ::write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace tandem::log
