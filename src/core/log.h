#pragma once
// Minimal leveled logger to stderr (text or JSON lines). Thread-safe: one write(2) per line.
#include <fmt/format.h>

#include <string_view>

namespace tandem::log {

enum class Level { kDebug, kInfo, kWarn, kError };

void setLevel(Level l);
void setJson(bool json);
bool enabled(Level l);
void write(Level l, std::string_view msg);

template <typename... A>
void debug(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::kDebug)) write(Level::kDebug, fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void info(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::kInfo)) write(Level::kInfo, fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void warn(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::kWarn)) write(Level::kWarn, fmt::format(f, std::forward<A>(a)...));
}
template <typename... A>
void error(fmt::format_string<A...> f, A&&... a) {
  if (enabled(Level::kError)) write(Level::kError, fmt::format(f, std::forward<A>(a)...));
}

}  // namespace tandem::log
