// YAML -> Config. The only file that includes yaml-cpp: it parses the document, then walks it with
// a fixed schema (so cyclic aliases and deep nesting cannot make the walk recurse unboundedly),
// collecting every error with its line instead of stopping at the first.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <utility>

#include "config/config.h"
#include "core/tls.h"

namespace tandem::config {

namespace {

// A config is hand-written; anything this large is a mistake (or an attack on `tandem check`).
constexpr size_t kMaxFileBytes = 16 << 20;
// Timers convert to nanoseconds and add to "now"; a week is far beyond any sensible timeout and
// keeps that arithmetic far from overflow.
constexpr Duration kMaxDuration = std::chrono::hours(24 * 7);
constexpr size_t kMaxNameLength = 64;
constexpr size_t kMaxSuggestDistance = 2;
// YAML aliases let a few bytes repeat a map or list many times (`backends: [*b, *b, ...]` with
// `servers: [*s, *s, ...]` inside is quadratic in the input size), so the walk stops after this
// many errors and servers instead of building gigabytes of them.
constexpr size_t kMaxErrors = 100;
constexpr size_t kMaxServers = 100'000;

using KeyLines = std::map<std::string, int, std::less<>>;

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// "; did you mean 'listen'?" when one candidate is close enough, else "". Short words need a
// smaller distance, otherwise "id" would "match" every two-letter key.
std::string suggest(std::string_view word, const std::vector<std::string_view>& candidates) {
  std::string_view best;
  size_t best_distance = kMaxSuggestDistance + 1;
  for (std::string_view candidate : candidates) {
    const size_t limit = std::min(kMaxSuggestDistance, std::max<size_t>(1, candidate.size() / 2));
    const size_t distance = editDistance(word, candidate);
    if (distance <= limit && distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  if (best.empty()) return "";
  return "; did you mean '" + std::string(best) + "'?";
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "nothing";
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
  }
  return "an unknown node";
}

// 1-based line of a node. yaml-cpp marks a missing (null) value with the position of the *next*
// token, possibly lines further down, so such values are reported where their key is.
int lineOf(const YAML::Node& node, int fallback) {
  if (!node.IsDefined() || node.IsNull() || node.Mark().is_null()) return fallback;
  return node.Mark().line + 1;
}

bool isNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

// RFC 9110 token characters: header and cookie names must be tokens.
bool isTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Health checks put `path` into a request line and `host` into a Host header.
constexpr size_t kMaxCheckText = 1024;

bool isVisibleAscii(char c) { return c > ' ' && c < 0x7f; }

// RFC 3986 reg-name, IP literal and port characters.
bool isHostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("-._~!$&'()*+,;=:[]%").find(c) != std::string_view::npos;
}

std::string millis(Duration d) { return std::to_string(d.count()) + "ms"; }

// "200" or "200-399", statuses in 100..599.
tl::expected<StatusRange, std::string> parseStatusRange(std::string_view text) {
  auto number = [](std::string_view part, int& out) {
    const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), out);
    return !part.empty() && ec == std::errc() && ptr == part.data() + part.size();
  };
  const size_t dash = text.find('-');
  StatusRange range;
  if (!number(text.substr(0, dash), range.low) ||
      (dash != std::string_view::npos && !number(text.substr(dash + 1), range.high))) {
    return tl::unexpected<std::string>("expected a status (e.g. 200) or a range (e.g. 200-399)");
  }
  if (dash == std::string_view::npos) range.high = range.low;
  if (range.low < 100 || range.low > 599 || range.high < 100 || range.high > 599) {
    return tl::unexpected<std::string>("statuses must be in 100..599");
  }
  if (range.low > range.high) {
    return tl::unexpected<std::string>("the range is reversed");
  }
  return range;
}

int keyLine(const KeyLines& keys, std::string_view key, int fallback) {
  auto it = keys.find(key);
  return it == keys.end() ? fallback : it->second;
}

struct Field {
  std::string_view key;
  std::function<void(const YAML::Node& value, int line)> parse;
};

class Loader {
 public:
  Loader(const std::string& file, const std::string& base) : file_(file), base_(base) {}

  Config load(const YAML::Node& root);
  // Sorted by line, plus a final "too many errors" note once kMaxErrors was reached.
  std::vector<ConfigError> takeErrors();
  // True once the walk should stop (see kMaxErrors): the rest would only repeat itself.
  bool full() const { return stopped_ || errors_.size() >= kMaxErrors; }
  void error(int line, std::string reason) {
    if (errors_.size() >= kMaxErrors) return;
    errors_.push_back(ConfigError{file_, line, std::move(reason)});
  }

 private:
  KeyLines walkMap(const YAML::Node& map, int line, std::string_view where,
                   const std::vector<std::string_view>& unsupported,
                   const std::vector<Field>& fields);
  bool expectMap(const YAML::Node& node, int line, std::string_view key);
  bool expectList(const YAML::Node& node, int line, std::string_view key);

  std::optional<std::string> scalar(const YAML::Node& node, int line, std::string_view key);
  std::optional<std::string> name(const YAML::Node& node, int line, std::string_view key);
  std::optional<uint64_t> integer(const YAML::Node& node, int line, std::string_view key,
                                  uint64_t min, uint64_t max);
  std::optional<Duration> duration(const YAML::Node& node, int line, std::string_view key,
                                   Duration min);
  std::optional<uint64_t> size(const YAML::Node& node, int line, std::string_view key, uint64_t min,
                               uint64_t max);
  std::optional<bool> boolean(const YAML::Node& node, int line, std::string_view key);
  std::optional<SocketAddress> address(const YAML::Node& node, int line, std::string_view key);

  template <typename T>
  void setInteger(T& out, const YAML::Node& node, int line, std::string_view key, uint64_t min,
                  uint64_t max) {
    if (auto value = integer(node, line, key, min, max)) out = static_cast<T>(*value);
  }
  // A tracking priority change: an integer in -254..0.
  void trackChange(int32_t& out, const YAML::Node& node, int line, std::string_view key) {
    auto text = scalar(node, line, key);
    if (!text) return;
    int32_t value = 1;
    const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
    if (ec != std::errc() || ptr != text->data() + text->size() || value > 0 || value < -254) {
      error(line,
            "'" + std::string(key) + "' must be a priority change in -254..0, got '" + *text + "'");
      return;
    }
    out = value;
  }
  void setDuration(Duration& out, const YAML::Node& node, int line, std::string_view key,
                   Duration min) {
    if (auto value = duration(node, line, key, min)) out = *value;
  }

  void parseNode(const YAML::Node& node, int line, Config& config);
  void parseUser(const YAML::Node& node, int line, Config& config);
  void parseGroup(const YAML::Node& node, int line, Config& config);
  void parseWorkers(const YAML::Node& node, int line, Config& config);
  void parseListener(const YAML::Node& node, int line, Config& config);
  void parseListenerLimits(const YAML::Node& node, int line, ListenerLimits& limits,
                           KeyLines& http_only);
  void parseTls(const YAML::Node& node, int line, ListenerTls& tls);
  // One {cert, key} pair; `where` names it in messages.
  bool parseTlsCertificate(const YAML::Node& node, int line, std::string_view where,
                           TlsCertificate& out);
  // Reads and checks the certificates (once the listener's mode is known: ALPN is HTTP's).
  void loadTls(Listener& listener);
  void parseBackend(const YAML::Node& node, int line, Config& config);
  void parseHashKey(const YAML::Node& node, int line, HashKey& key);
  void parseServer(const YAML::Node& node, int line, Backend& backend, KeyLines& server_names);
  void parseBackendLimits(const YAML::Node& node, int line, BackendLimits& limits);
  void parseHealth(const YAML::Node& node, int line, Backend& backend);
  void parseActiveHealth(const YAML::Node& node, int line, ActiveHealth& active);
  void parseExpect(const YAML::Node& node, int line, std::vector<StatusRange>& expect);
  void parsePassiveHealth(const YAML::Node& node, int line, PassiveHealth& passive);
  void parseRetries(const YAML::Node& node, int line, Retries& retries, int& per_try_timeout_line);
  void parseRetryOn(const YAML::Node& node, int line, Retries& retries);
  void parsePanicThreshold(const YAML::Node& node, int line, uint32_t& percent);
  void parseAdmin(const YAML::Node& node, int line, Admin& admin);
  void parseAlerts(const YAML::Node& node, int line, Alerts& alerts);
  void parseWebhook(const YAML::Node& node, int line, Alerts& alerts);
  void parseThresholdRule(const YAML::Node& node, int line, std::string_view key,
                          ThresholdRule& rule);
  void parseAccessLog(const YAML::Node& node, int line, AccessLog& log);
  void parseConfigSource(const YAML::Node& node, int line, ConfigSource& source);
  void parseCluster(const YAML::Node& node, int line, Config& config);
  void parsePeers(const YAML::Node& node, int line, Cluster& cluster);
  void parseState(const YAML::Node& node, int line, StateStore& state);
  void parseSticky(const YAML::Node& node, int line, Sticky& sticky);
  void parseRateLimit(const YAML::Node& node, int line, RateLimit& limit);
  // Reads a secret (token) file: trailing blanks trimmed, `min`..`max` visible ASCII characters.
  std::optional<std::string> readSecretFile(const std::string& path, int line, std::string_view key,
                                            size_t min, size_t max);
  void parseVrrp(const YAML::Node& node, int line, Vrrp& vrrp);
  // {endpoints: [...], key: K[, ttl: D]} of config_source.etcd and cluster.etcd.
  void parseEtcd(const YAML::Node& node, int line, std::string_view where,
                 std::vector<std::string>& endpoints, std::string& key, Duration* ttl);
  // A path from the config, relative to the config file's folder.
  std::string resolvePath(const std::string& path) const;
  void checkReferences(const Config& config);

  const std::string& file_;
  const std::string& base_;  // relative paths resolve against its folder
  std::vector<ConfigError> errors_;
  bool stopped_ = false;
  size_t server_count_ = 0;  // across all backends, see kMaxServers
  // Parallel to Config::listeners / Config::backends: the line of each key, for cross-checks.
  std::vector<KeyLines> listener_keys_;
  std::vector<KeyLines> backend_keys_;
  int election_line_ = 0;
  int group_line_ = 0;
};

KeyLines Loader::walkMap(const YAML::Node& map, int line, std::string_view where,
                         const std::vector<std::string_view>& unsupported,
                         const std::vector<Field>& fields) {
  KeyLines seen;
  if (!map.IsMap()) return seen;
  // Copies, not references: yaml-cpp's iterator hands out a temporary pair, so `it->first` bound
  // to a reference dangles (ASan: stack-use-after-scope).
  for (const auto& entry : map) {
    if (full()) break;
    const YAML::Node key_node = entry.first;
    const YAML::Node value = entry.second;
    const int key_line = lineOf(key_node, line);
    if (!key_node.IsScalar()) {
      error(key_line,
            "keys in " + std::string(where) + " must be plain strings, got " + describe(key_node));
      continue;
    }
    const std::string& key = key_node.Scalar();
    if (auto previous = seen.find(key); previous != seen.end()) {
      error(key_line, "duplicate key '" + key + "' in " + std::string(where) + " (first at line " +
                          std::to_string(previous->second) + ")");
      continue;
    }
    seen.emplace(key, key_line);
    const Field* field = nullptr;
    for (const Field& f : fields) {
      if (f.key == key) field = &f;
    }
    if (field != nullptr) {
      // Errors about a value name its key, so they point at the key's line (a block list or map
      // value would otherwise be reported one line below the key it belongs to).
      field->parse(value, key_line);
      continue;
    }
    if (std::find(unsupported.begin(), unsupported.end(), key) != unsupported.end()) {
      error(key_line, "'" + key + "' is not supported yet");
      continue;
    }
    std::vector<std::string_view> candidates(unsupported.begin(), unsupported.end());
    for (const Field& f : fields) candidates.push_back(f.key);
    error(key_line,
          "unknown key '" + key + "' in " + std::string(where) + suggest(key, candidates));
  }
  return seen;
}

bool Loader::expectMap(const YAML::Node& node, int line, std::string_view key) {
  if (node.IsMap()) return true;
  error(line, "'" + std::string(key) + "' must be a map, got " + describe(node));
  return false;
}

bool Loader::expectList(const YAML::Node& node, int line, std::string_view key) {
  if (node.IsSequence()) return true;
  error(line, "'" + std::string(key) + "' must be a list, got " + describe(node));
  return false;
}

std::optional<std::string> Loader::scalar(const YAML::Node& node, int line, std::string_view key) {
  if (node.IsScalar()) return node.Scalar();
  if (node.IsNull()) {
    error(line, "'" + std::string(key) + "' needs a value");
  } else {
    error(line, "'" + std::string(key) + "' must be a single value, got " + describe(node));
  }
  return std::nullopt;
}

// Listener, backend and node names end up in metrics labels, admin URLs and log lines, so they are
// restricted to characters that need no quoting anywhere.
std::optional<std::string> Loader::name(const YAML::Node& node, int line, std::string_view key) {
  auto text = scalar(node, line, key);
  if (!text) return std::nullopt;
  if (text->empty() || text->size() > kMaxNameLength ||
      !std::all_of(text->begin(), text->end(), isNameChar)) {
    error(line, "'" + std::string(key) + "' must be 1.." + std::to_string(kMaxNameLength) +
                    " characters of A-Z a-z 0-9 _ - ., got '" + *text + "'");
    return std::nullopt;
  }
  return text;
}

std::optional<uint64_t> Loader::integer(const YAML::Node& node, int line, std::string_view key,
                                        uint64_t min, uint64_t max) {
  auto text = scalar(node, line, key);
  if (!text) return std::nullopt;
  uint64_t value = 0;
  const char* end = text->data() + text->size();
  const auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (text->empty() || ec != std::errc() || ptr != end || value < min || value > max) {
    error(line, "'" + std::string(key) + "' must be an integer in " + std::to_string(min) + ".." +
                    std::to_string(max) + ", got '" + *text + "'");
    return std::nullopt;
  }
  return value;
}

std::optional<Duration> Loader::duration(const YAML::Node& node, int line, std::string_view key,
                                         Duration min) {
  auto text = scalar(node, line, key);
  if (!text) return std::nullopt;
  auto value = parseDuration(*text);
  if (!value) {
    error(line, "'" + std::string(key) + "': invalid duration '" + *text + "': " + value.error());
    return std::nullopt;
  }
  if (*value < min) {
    error(line, "'" + std::string(key) + "' must be at least " + std::to_string(min.count()) +
                    "ms, got '" + *text + "'");
    return std::nullopt;
  }
  if (*value > kMaxDuration) {
    error(line, "'" + std::string(key) + "' must be at most 168h, got '" + *text + "'");
    return std::nullopt;
  }
  return *value;
}

std::optional<uint64_t> Loader::size(const YAML::Node& node, int line, std::string_view key,
                                     uint64_t min, uint64_t max) {
  auto text = scalar(node, line, key);
  if (!text) return std::nullopt;
  auto value = parseSize(*text);
  if (!value) {
    error(line, "'" + std::string(key) + "': invalid size '" + *text + "': " + value.error());
    return std::nullopt;
  }
  if (*value < min || *value > max) {
    error(line, "'" + std::string(key) + "' must be in " + std::to_string(min) + ".." +
                    std::to_string(max) + " bytes, got '" + *text + "'");
    return std::nullopt;
  }
  return *value;
}

// Only true/false: YAML 1.1's yes/no/on/off are a classic source of surprises.
std::optional<bool> Loader::boolean(const YAML::Node& node, int line, std::string_view key) {
  auto text = scalar(node, line, key);
  if (!text) return std::nullopt;
  if (*text == "true") return true;
  if (*text == "false") return false;
  error(line, "'" + std::string(key) + "' must be true or false, got '" + *text + "'");
  return std::nullopt;
}

std::optional<SocketAddress> Loader::address(const YAML::Node& node, int line,
                                             std::string_view key) {
  auto text = scalar(node, line, key);
  if (!text) return std::nullopt;
  auto value = parseAddress(*text);
  if (!value) {
    error(line, "'" + std::string(key) + "': invalid address '" + *text + "': " + value.error());
    return std::nullopt;
  }
  // Port 0 would mean "any port" for a listener and nothing at all for a server.
  if (value->port == 0) {
    error(line, "'" + std::string(key) + "': port must be in 1..65535, got '" + *text + "'");
    return std::nullopt;
  }
  return *value;
}

Config Loader::load(const YAML::Node& root) {
  Config config;
  config.source_path = file_;
  const int root_line = lineOf(root, 1);
  if (!root.IsMap()) {
    error(root_line, "the configuration must be a map of sections, got " + describe(root));
    return config;
  }
  bool has_listeners = false;
  const KeyLines seen = walkMap(
      root, root_line, "the top level", {},
      {
          {"state", [&](const YAML::Node& v, int l) { parseState(v, l, config.state); }},
          {"config_source",
           [&](const YAML::Node& v, int l) { parseConfigSource(v, l, config.config_source); }},
          {"cluster", [&](const YAML::Node& v, int l) { parseCluster(v, l, config); }},
          {"admin", [&](const YAML::Node& v, int l) { parseAdmin(v, l, config.admin); }},
          {"alerts", [&](const YAML::Node& v, int l) { parseAlerts(v, l, config.alerts); }},
          {"access_log",
           [&](const YAML::Node& v, int l) { parseAccessLog(v, l, config.access_log); }},
          {"node", [&](const YAML::Node& v, int l) { parseNode(v, l, config); }},
          {"user", [&](const YAML::Node& v, int l) { parseUser(v, l, config); }},
          {"group", [&](const YAML::Node& v, int l) { parseGroup(v, l, config); }},
          {"workers", [&](const YAML::Node& v, int l) { parseWorkers(v, l, config); }},
          {"drain_timeout",
           [&](const YAML::Node& v, int l) {
             setDuration(config.drain_timeout, v, l, "drain_timeout", Duration{0});
           }},
          {"listeners",
           [&](const YAML::Node& v, int l) {
             // A wrong type is reported once here, not again as "no listeners" below.
             has_listeners = !v.IsSequence() || v.size() > 0;
             if (!expectList(v, l, "listeners")) return;
             for (const YAML::Node& item : v) {
               if (full()) break;
               parseListener(item, l, config);
             }
           }},
          {"backends",
           [&](const YAML::Node& v, int l) {
             if (!expectList(v, l, "backends")) return;
             for (const YAML::Node& item : v) {
               if (full()) break;
               parseBackend(item, l, config);
             }
           }},
      });
  Election& e = config.cluster.election;
  if (e.enabled && e.endpoints.empty()) e.endpoints = config.config_source.endpoints;
  if (e.enabled && e.endpoints.empty() && !full()) {
    error(election_line_,
          "election etcd needs endpoints: set cluster.etcd.endpoints or config_source.etcd");
  }
  if (!config.group.empty() && config.user.empty() && !full()) {
    error(group_line_, "'group' is only used with 'user'");
  }
  if (!has_listeners && !full()) {
    auto it = seen.find("listeners");
    error(it == seen.end() ? 0 : it->second, "at least one listener is required");
  }
  checkReferences(config);
  return config;
}

// The account must exist when the config is loaded, so a typo fails `tandem check` and the
// start, not the privilege drop after binding.
void Loader::parseUser(const YAML::Node& node, int line, Config& config) {
  auto text = scalar(node, line, "user");
  if (!text) return;
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(text->c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found) {
    error(line, "'user': unknown user '" + *text + "'");
    return;
  }
  config.user = *text;
}

void Loader::parseGroup(const YAML::Node& node, int line, Config& config) {
  auto text = scalar(node, line, "group");
  if (!text) return;
  group gr{};
  group* found = nullptr;
  std::vector<char> buf(16384);
  if (::getgrnam_r(text->c_str(), &gr, buf.data(), buf.size(), &found) != 0 || !found) {
    error(line, "'group': unknown group '" + *text + "'");
    return;
  }
  config.group = *text;
  group_line_ = line;
}

void Loader::parseNode(const YAML::Node& node, int line, Config& config) {
  if (!expectMap(node, line, "node")) return;
  const KeyLines seen = walkMap(node, line, "node", {}, {{"id", [&](const YAML::Node& v, int l) {
                                                            if (auto id = name(v, l, "id"))
                                                              config.node_id = *id;
                                                          }}});
  if (!seen.contains("id")) error(line, "'node' is missing 'id'");
}

void Loader::parseWorkers(const YAML::Node& node, int line, Config& config) {
  static constexpr uint32_t kMaxWorkers = 256;
  if (node.IsScalar() && node.Scalar() == "auto") {
    config.workers = 0;
    return;
  }
  if (node.IsScalar()) {
    uint32_t value = 0;
    const std::string& text = node.Scalar();
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc() && ptr == text.data() + text.size() && value >= 1 &&
        value <= kMaxWorkers) {
      config.workers = value;
      return;
    }
  }
  error(line, "'workers' must be 'auto' or an integer in 1.." + std::to_string(kMaxWorkers) +
                  ", got " + describe(node));
}

void Loader::parseListener(const YAML::Node& node, int list_line, Config& config) {
  Listener listener;
  listener.line = lineOf(node, list_line);
  if (!node.IsMap()) {
    error(listener.line, "a listener must be a map, got " + describe(node));
    return;
  }
  KeyLines http_only;
  KeyLines seen =
      walkMap(node, listener.line, "listener", {},
              {
                  {"name",
                   [&](const YAML::Node& v, int l) {
                     if (auto value = name(v, l, "name")) listener.name = *value;
                   }},
                  {"listen",
                   [&](const YAML::Node& v, int l) {
                     if (auto value = address(v, l, "listen")) listener.listen = *value;
                   }},
                  {"mode",
                   [&](const YAML::Node& v, int l) {
                     auto mode = scalar(v, l, "mode");
                     if (!mode) return;
                     if (*mode == "http") {
                       listener.mode = ListenerMode::kHttp;
                     } else if (*mode == "tcp") {
                       listener.mode = ListenerMode::kTcp;
                     } else {
                       error(l, "'mode' must be http or tcp, got '" + *mode + "'");
                     }
                   }},
                  {"backend",
                   [&](const YAML::Node& v, int l) {
                     if (auto value = scalar(v, l, "backend")) listener.backend = *value;
                   }},
                  {"limits", [&](const YAML::Node& v,
                                 int l) { parseListenerLimits(v, l, listener.limits, http_only); }},
                  {"tls", [&](const YAML::Node& v, int l) { parseTls(v, l, listener.tls); }},
              });
  const std::string who =
      listener.name.empty() ? std::string("listener") : "listener '" + listener.name + "'";
  for (std::string_view required : {"name", "listen", "backend"}) {
    if (!seen.contains(required)) {
      error(listener.line, who + " is missing '" + std::string(required) + "'");
    }
  }
  // Silently ignoring an HTTP limit on a TCP listener would let someone believe it is enforced.
  if (listener.mode == ListenerMode::kTcp) {
    for (const auto& [key, key_line] : http_only) {
      // With TLS it bounds the handshake, which a TCP listener has too.
      if (key == "header_timeout" && !listener.tls.certificates.empty()) continue;
      error(key_line, "'" + key + "' applies only to http listeners");
    }
  }
  if (!listener.tls.certificates.empty()) loadTls(listener);
  config.listeners.push_back(std::move(listener));
  listener_keys_.push_back(std::move(seen));
}

// `tls: {cert: F, key: F}` (one certificate, served whatever the client asks for) or
// `tls: {certificates: [{cert: F, key: F}, ...]}` (chosen by SNI; the first is the default).
void Loader::parseTls(const YAML::Node& node, int line, ListenerTls& tls) {
  if (!expectMap(node, line, "tls")) return;
  TlsCertificate single;
  bool single_ok = true;
  const KeyLines seen = walkMap(node, line, "tls", {},
                                {
                                    {"cert",
                                     [&](const YAML::Node& v, int l) {
                                       single.cert_line = l;
                                       if (auto text = scalar(v, l, "cert"))
                                         single.cert_file = resolvePath(*text);
                                     }},
                                    {"key",
                                     [&](const YAML::Node& v, int l) {
                                       single.key_line = l;
                                       if (auto text = scalar(v, l, "key"))
                                         single.key_file = resolvePath(*text);
                                     }},
                                    {"certificates",
                                     [&](const YAML::Node& v, int l) {
                                       if (!expectList(v, l, "certificates")) return;
                                       if (v.size() == 0)
                                         error(l, "'certificates' must not be empty");
                                       for (const YAML::Node& item : v) {
                                         if (full()) break;
                                         TlsCertificate c;
                                         if (parseTlsCertificate(item, l, "a tls certificate", c)) {
                                           tls.certificates.push_back(std::move(c));
                                         }
                                       }
                                     }},
                                });
  const bool has_single = seen.contains("cert") || seen.contains("key");
  if (seen.contains("certificates")) {
    if (has_single) {
      error(keyLine(seen, seen.contains("cert") ? "cert" : "key", line),
            "'tls' has 'certificates' and also 'cert'/'key': list every certificate under "
            "'certificates'");
    }
    return;
  }
  for (std::string_view required : {"cert", "key"}) {
    if (!seen.contains(required)) {
      error(line, "'tls' is missing '" + std::string(required) + "'" +
                      (has_single ? "" : " (or 'certificates' for several)"));
      single_ok = false;
    }
  }
  if (single_ok && !single.cert_file.empty() && !single.key_file.empty()) {
    tls.certificates.push_back(std::move(single));
  }
}

bool Loader::parseTlsCertificate(const YAML::Node& node, int list_line, std::string_view where,
                                 TlsCertificate& out) {
  const int line = lineOf(node, list_line);
  if (!node.IsMap()) {
    error(line,
          std::string(where) + " must be a map {cert: FILE, key: FILE}, got " + describe(node));
    return false;
  }
  const KeyLines seen = walkMap(node, line, where, {},
                                {
                                    {"cert",
                                     [&](const YAML::Node& v, int l) {
                                       out.cert_line = l;
                                       if (auto text = scalar(v, l, "cert"))
                                         out.cert_file = resolvePath(*text);
                                     }},
                                    {"key",
                                     [&](const YAML::Node& v, int l) {
                                       out.key_line = l;
                                       if (auto text = scalar(v, l, "key"))
                                         out.key_file = resolvePath(*text);
                                     }},
                                });
  bool ok = true;
  for (std::string_view required : {"cert", "key"}) {
    if (!seen.contains(required)) {
      error(line, std::string(where) + " is missing '" + std::string(required) + "'");
      ok = false;
    }
  }
  return ok && !out.cert_file.empty() && !out.key_file.empty();
}

void Loader::loadTls(Listener& listener) {
  std::vector<tls::CertificateFiles> files;
  for (const TlsCertificate& c : listener.tls.certificates)
    files.push_back({c.cert_file, c.key_file});
  tls::ServerOptions options;
  options.alpn_http11 = listener.mode == ListenerMode::kHttp;
  auto context = tls::ServerContext::load(files, options);
  if (!context) {
    const TlsCertificate& c = listener.tls.certificates[context.error().index];
    if (context.error().key) {
      error(c.key_line, "'key': " + context.error().reason);
    } else {
      error(c.cert_line, "'cert': " + context.error().reason);
    }
    return;
  }
  listener.tls.context = std::move(*context);
}

void Loader::parseListenerLimits(const YAML::Node& node, int line, ListenerLimits& limits,
                                 KeyLines& http_only) {
  static constexpr uint64_t kMaxConnections = 1'000'000;
  if (!expectMap(node, line, "limits")) return;
  const KeyLines seen = walkMap(
      node, line, "listener limits", {},
      {
          {"max_header_bytes",
           [&](const YAML::Node& v, int l) {
             if (auto value = size(v, l, "max_header_bytes", 1 << 10, 1 << 20)) {
               limits.max_header_bytes = *value;
             }
           }},
          {"header_timeout",
           [&](const YAML::Node& v, int l) {
             setDuration(limits.header_timeout, v, l, "header_timeout", Duration{1});
           }},
          {"idle_timeout",
           [&](const YAML::Node& v, int l) {
             setDuration(limits.idle_timeout, v, l, "idle_timeout", Duration{1});
           }},
          {"max_connections",
           [&](const YAML::Node& v, int l) {
             setInteger(limits.max_connections, v, l, "max_connections", 1, kMaxConnections);
           }},
          {"max_body_bytes",
           [&](const YAML::Node& v, int l) {
             if (auto value = size(v, l, "max_body_bytes", 0, UINT64_MAX)) {
               limits.max_body_bytes = *value;
             }
           }},
          {"min_rate",
           [&](const YAML::Node& v, int l) {
             // {bytes: 1KiB, per: 20s}; bytes: 0 turns it off.
             if (!expectMap(v, l, "min_rate")) return;
             walkMap(v, l, "min_rate", {},
                     {{"bytes",
                       [&](const YAML::Node& b, int bl) {
                         if (auto value = size(b, bl, "bytes", 0, 1 << 30)) {
                           limits.min_rate_bytes = *value;
                         }
                       }},
                      {"per", [&](const YAML::Node& d, int dl) {
                         setDuration(limits.min_rate_period, d, dl, "per", Duration{100});
                       }}});
           }},
      });
  for (std::string_view key :
       {"max_header_bytes", "header_timeout", "max_body_bytes", "min_rate"}) {
    if (auto it = seen.find(key); it != seen.end()) http_only.insert(*it);
  }
}

void Loader::parseBackend(const YAML::Node& node, int list_line, Config& config) {
  static constexpr uint64_t kMaxRingPoints = 10'000;
  // Maglev's paper wants the table much larger than the server count; 101 is a floor against typos,
  // and Envoy's upper bound keeps the per-worker table (4 bytes a slot) around 20MB at most.
  static constexpr uint64_t kMinMaglevTable = 101;
  static constexpr uint64_t kMaxMaglevTable = 5'000'011;
  Backend backend;
  backend.line = lineOf(node, list_line);
  if (!node.IsMap()) {
    error(backend.line, "a backend must be a map, got " + describe(node));
    return;
  }
  bool balance_ok = true;
  int per_try_timeout_line = backend.line;
  KeyLines server_names;
  KeyLines seen = walkMap(
      node, backend.line, "backend", {},
      {
          {"sticky", [&](const YAML::Node& v, int l) { parseSticky(v, l, backend.sticky); }},
          {"rate_limit",
           [&](const YAML::Node& v, int l) { parseRateLimit(v, l, backend.rate_limit); }},
          {"name",
           [&](const YAML::Node& v, int l) {
             if (auto value = name(v, l, "name")) backend.name = *value;
           }},
          {"balance",
           [&](const YAML::Node& v, int l) {
             auto value = scalar(v, l, "balance");
             balance_ok = value && isKnownBalance(*value);
             if (balance_ok) {
               backend.balance = *value;
             } else if (value) {
               error(l, "unknown balance '" + *value +
                            "' (round_robin, least_conn, p2c, random, source_hash, ring_hash or "
                            "maglev)" +
                            suggest(*value, {"round_robin", "least_conn", "p2c", "random",
                                             "source_hash", "ring_hash", "maglev"}));
             }
           }},
          {"hash_key", [&](const YAML::Node& v, int l) { parseHashKey(v, l, backend.hash_key); }},
          {"ring_hash",
           [&](const YAML::Node& v, int l) {
             if (!expectMap(v, l, "ring_hash")) return;
             walkMap(v, l, "ring_hash", {}, {{"points", [&](const YAML::Node& pv, int pl) {
                                                setInteger(backend.ring_points, pv, pl, "points", 1,
                                                           kMaxRingPoints);
                                              }}});
           }},
          {"maglev",
           [&](const YAML::Node& v, int l) {
             if (!expectMap(v, l, "maglev")) return;
             walkMap(v, l, "maglev", {},
                     {{"table_size", [&](const YAML::Node& tv, int tl) {
                         auto value =
                             integer(tv, tl, "table_size", kMinMaglevTable, kMaxMaglevTable);
                         if (!value) return;
                         if (!isPrime(*value)) {
                           error(tl, "'table_size' must be a prime number (e.g. 65537), got " +
                                         std::to_string(*value));
                           return;
                         }
                         backend.maglev_table_size = static_cast<uint32_t>(*value);
                       }}});
           }},
          {"servers",
           [&](const YAML::Node& v, int l) {
             if (!expectList(v, l, "servers")) return;
             for (const YAML::Node& item : v) {
               if (full()) break;
               if (++server_count_ > kMaxServers) {
                 error(l, "more than " + std::to_string(kMaxServers) + " servers in total");
                 stopped_ = true;
                 break;
               }
               parseServer(item, l, backend, server_names);
             }
             const bool has_primary = std::any_of(backend.servers.begin(), backend.servers.end(),
                                                  [](const Server& s) { return !s.backup; });
             if (!has_primary && !full()) {
               error(l, "'servers' needs at least one server that is not a backup");
             }
           }},
          {"limits", [&](const YAML::Node& v, int l) { parseBackendLimits(v, l, backend.limits); }},
          {"health", [&](const YAML::Node& v, int l) { parseHealth(v, l, backend); }},
          {"retries", [&](const YAML::Node& v,
                          int l) { parseRetries(v, l, backend.retries, per_try_timeout_line); }},
          {"slow_start",
           [&](const YAML::Node& v, int l) {
             setDuration(backend.slow_start, v, l, "slow_start", Duration{0});
           }},
          {"panic_threshold",
           [&](const YAML::Node& v, int l) {
             parsePanicThreshold(v, l, backend.panic_threshold_percent);
           }},
      });
  const std::string who =
      backend.name.empty() ? std::string("backend") : "backend '" + backend.name + "'";
  // A try may not outlast the whole request's response timeout (limits may come after retries).
  if (backend.retries.per_try_timeout > backend.limits.timeout) {
    error(per_try_timeout_line, "'per_try_timeout' (" + millis(backend.retries.per_try_timeout) +
                                    ") must not be longer than the backend's 'timeout' (" +
                                    millis(backend.limits.timeout) + ")");
  }
  for (std::string_view required : {"name", "servers"}) {
    if (!seen.contains(required)) {
      error(backend.line, who + " is missing '" + std::string(required) + "'");
    }
  }
  // Options for an algorithm the backend does not use are almost certainly a mistake.
  if (balance_ok) {
    if (auto it = seen.find("hash_key"); it != seen.end() && !isHashBalance(backend.balance)) {
      error(it->second,
            "hash_key needs a hash algorithm (source_hash, ring_hash or maglev), but "
            "balance is '" +
                backend.balance + "'");
    }
    for (std::string_view algorithm : {"ring_hash", "maglev"}) {
      if (auto it = seen.find(algorithm); it != seen.end() && backend.balance != algorithm) {
        error(it->second, "'" + std::string(algorithm) +
                              "' options need balance: " + std::string(algorithm) +
                              ", but balance is '" + backend.balance + "'");
      }
    }
  }
  config.backends.push_back(std::move(backend));
  backend_keys_.push_back(std::move(seen));
}

void Loader::parseHashKey(const YAML::Node& node, int line, HashKey& key) {
  auto text = scalar(node, line, "hash_key");
  if (!text) return;
  if (*text == "source_ip") {
    key = HashKey{HashKeyKind::kSourceIp, ""};
    return;
  }
  if (*text == "uri") {
    key = HashKey{HashKeyKind::kUri, ""};
    return;
  }
  for (const auto& [prefix, kind] :
       {std::pair{std::string_view("header:"), HashKeyKind::kHeader},
        std::pair{std::string_view("cookie:"), HashKeyKind::kCookie}}) {
    if (!text->starts_with(prefix)) continue;
    const std::string field = text->substr(prefix.size());
    if (field.empty() || !std::all_of(field.begin(), field.end(), isTokenChar)) {
      error(line, "'hash_key': '" + field + "' is not a valid " +
                      std::string(prefix.substr(0, prefix.size() - 1)) + " name");
      return;
    }
    key = HashKey{kind, field};
    return;
  }
  error(line, "'hash_key' must be source_ip, uri, header:NAME or cookie:NAME, got '" + *text + "'");
}

void Loader::parseServer(const YAML::Node& node, int list_line, Backend& backend,
                         KeyLines& server_names) {
  static constexpr uint64_t kMaxWeight = 256;
  Server server;
  server.line = lineOf(node, list_line);
  if (!node.IsMap()) {
    error(server.line, "a server must be a map, got " + describe(node));
    return;
  }
  bool address_ok = false;
  int name_line = server.line;
  const KeyLines seen = walkMap(
      node, server.line, "server", {},
      {
          {"name",
           [&](const YAML::Node& v, int l) {
             name_line = l;
             auto value = scalar(v, l, "name");
             if (!value) return;
             // Server names appear in admin URLs (/backends/app/servers/NAME): no '/' or spaces.
             const bool ok = !value->empty() && value->size() <= 2 * kMaxNameLength &&
                             std::all_of(value->begin(), value->end(),
                                         [](char c) { return c > ' ' && c < 0x7f && c != '/'; });
             if (ok) {
               server.name = *value;
             } else {
               error(l, "'name' must be 1.." + std::to_string(2 * kMaxNameLength) +
                            " printable characters without spaces or '/', got '" + *value + "'");
             }
           }},
          {"address",
           [&](const YAML::Node& v, int l) {
             if (auto value = address(v, l, "address")) {
               server.address = *value;
               address_ok = true;
             }
           }},
          {"weight", [&](const YAML::Node& v,
                         int l) { setInteger(server.weight, v, l, "weight", 1, kMaxWeight); }},
          {"backup",
           [&](const YAML::Node& v, int l) {
             if (auto value = boolean(v, l, "backup")) server.backup = *value;
           }},
      });
  if (!seen.contains("address")) error(server.line, "server is missing 'address'");
  if (server.name.empty() && !seen.contains("name") && address_ok) {
    server.name = server.address.text();
  }
  if (!server.name.empty()) {
    auto [it, inserted] = server_names.emplace(server.name, name_line);
    if (!inserted) {
      error(name_line, "duplicate server name '" + server.name + "' (first at line " +
                           std::to_string(it->second) + ")" +
                           (seen.contains("name") ? "" : "; give the servers distinct names"));
    }
  }
  backend.servers.push_back(std::move(server));
}

void Loader::parseBackendLimits(const YAML::Node& node, int line, BackendLimits& limits) {
  static constexpr uint64_t kMaxConnections = 1'000'000;
  static constexpr uint64_t kMaxIdle = 10'000;
  if (!expectMap(node, line, "limits")) return;
  walkMap(
      node, line, "backend limits", {},
      {
          {"max_connections_per_server",
           [&](const YAML::Node& v, int l) {
             setInteger(limits.max_connections_per_server, v, l, "max_connections_per_server", 0,
                        kMaxConnections);
           }},
          {"max_pending",
           [&](const YAML::Node& v, int l) {
             setInteger(limits.max_pending, v, l, "max_pending", 0, kMaxConnections);
           }},
          {"connect_timeout",
           [&](const YAML::Node& v, int l) {
             setDuration(limits.connect_timeout, v, l, "connect_timeout", Duration{1});
           }},
          {"timeout", [&](const YAML::Node& v,
                          int l) { setDuration(limits.timeout, v, l, "timeout", Duration{1}); }},
          {"max_idle_per_server",
           [&](const YAML::Node& v, int l) {
             setInteger(limits.max_idle_per_server, v, l, "max_idle_per_server", 0, kMaxIdle);
           }},
      });
}

void Loader::parseHealth(const YAML::Node& node, int line, Backend& backend) {
  if (!expectMap(node, line, "health")) return;
  walkMap(
      node, line, "health", {},
      {
          {"active", [&](const YAML::Node& v, int l) { parseActiveHealth(v, l, backend.active); }},
          {"passive",
           [&](const YAML::Node& v, int l) { parsePassiveHealth(v, l, backend.passive); }},
      });
}

void Loader::parseActiveHealth(const YAML::Node& node, int line, ActiveHealth& active) {
  static constexpr uint64_t kMaxRiseFall = 100;
  static constexpr uint64_t kMaxJitterPercent = 50;
  static constexpr size_t kMaxMethodLength = 32;
  if (!expectMap(node, line, "active")) return;
  active.enabled = true;
  bool type_ok = true;
  const KeyLines seen = walkMap(
      node, line, "health.active", {},
      {
          {"type",
           [&](const YAML::Node& v, int l) {
             auto value = scalar(v, l, "type");
             type_ok = false;
             if (!value) return;
             if (*value == "tcp") {
               active.type = CheckType::kTcp;
             } else if (*value == "http") {
               active.type = CheckType::kHttp;
             } else {
               error(l, "'type' must be tcp or http, got '" + *value + "'");
               return;
             }
             type_ok = true;
           }},
          {"path",
           [&](const YAML::Node& v, int l) {
             auto value = scalar(v, l, "path");
             if (!value) return;
             if (value->empty() || value->front() != '/' || value->size() > kMaxCheckText ||
                 !std::all_of(value->begin(), value->end(), isVisibleAscii)) {
               error(l, "'path' must start with '/' and be at most " +
                            std::to_string(kMaxCheckText) +
                            " visible ASCII characters (no spaces or control characters; "
                            "percent-encode the rest), got '" +
                            *value + "'");
               return;
             }
             active.path = *value;
           }},
          {"method",
           [&](const YAML::Node& v, int l) {
             auto value = scalar(v, l, "method");
             if (!value) return;
             if (value->empty() || value->size() > kMaxMethodLength ||
                 !std::all_of(value->begin(), value->end(), isTokenChar)) {
               error(l, "'method' must be an HTTP method token (e.g. GET or HEAD), got '" + *value +
                            "'");
               return;
             }
             active.method = *value;
           }},
          {"host",
           [&](const YAML::Node& v, int l) {
             auto value = scalar(v, l, "host");
             if (!value) return;
             if (value->empty() || value->size() > kMaxCheckText ||
                 !std::all_of(value->begin(), value->end(), isHostChar)) {
               error(l,
                     "'host' must be a host name or HOST:PORT without spaces or control "
                     "characters, got '" +
                         *value + "'");
               return;
             }
             active.host = *value;
           }},
          {"expect", [&](const YAML::Node& v, int l) { parseExpect(v, l, active.expect); }},
          {"body_contains",
           [&](const YAML::Node& v, int l) {
             auto value = scalar(v, l, "body_contains");
             if (!value) return;
             if (value->empty() || value->size() > kMaxCheckText) {
               error(l, "'body_contains' must be 1.." + std::to_string(kMaxCheckText) +
                            " characters, got " + std::to_string(value->size()));
               return;
             }
             active.body_contains = *value;
           }},
          {"interval", [&](const YAML::Node& v,
                           int l) { setDuration(active.interval, v, l, "interval", Duration{1}); }},
          {"fast_interval",
           [&](const YAML::Node& v, int l) {
             setDuration(active.fast_interval, v, l, "fast_interval", Duration{1});
           }},
          {"jitter_percent",
           [&](const YAML::Node& v, int l) {
             setInteger(active.jitter_percent, v, l, "jitter_percent", 0, kMaxJitterPercent);
           }},
          {"timeout", [&](const YAML::Node& v,
                          int l) { setDuration(active.timeout, v, l, "timeout", Duration{1}); }},
          {"rise", [&](const YAML::Node& v,
                       int l) { setInteger(active.rise, v, l, "rise", 1, kMaxRiseFall); }},
          {"fall", [&](const YAML::Node& v,
                       int l) { setInteger(active.fall, v, l, "fall", 1, kMaxRiseFall); }},
          {"initial",
           [&](const YAML::Node& v, int l) {
             auto value = scalar(v, l, "initial");
             if (!value) return;
             if (*value == "up" || *value == "down") {
               active.initial_up = *value == "up";
             } else {
               error(l, "'initial' must be up or down, got '" + *value + "'");
             }
           }},
      });
  // Silently ignoring an HTTP option on a TCP check would let someone believe it is checked.
  if (type_ok && active.type == CheckType::kTcp) {
    for (std::string_view key : {"path", "method", "host", "expect", "body_contains"}) {
      if (auto it = seen.find(key); it != seen.end()) {
        error(it->second, "'" + std::string(key) + "' applies only to type: http checks");
      }
    }
  }
  // Compared as configured or defaulted, reported at whichever of the two keys was written.
  const int interval_line = keyLine(seen, "interval", line);
  if (active.timeout > active.interval) {
    error(keyLine(seen, "timeout", interval_line), "'timeout' (" + millis(active.timeout) +
                                                       ") must not be longer than 'interval' (" +
                                                       millis(active.interval) + ")");
  }
  if (active.fast_interval > active.interval) {
    error(keyLine(seen, "fast_interval", interval_line),
          "'fast_interval' (" + millis(active.fast_interval) +
              ") must not be longer than 'interval' (" + millis(active.interval) + ")");
  }
}

void Loader::parseExpect(const YAML::Node& node, int line, std::vector<StatusRange>& expect) {
  static constexpr size_t kMaxRanges = 32;
  std::vector<StatusRange> ranges;
  bool ok = true;
  auto one = [&](const YAML::Node& item, int item_line) {
    auto text = scalar(item, item_line, "expect");
    if (!text) {
      ok = false;
      return;
    }
    auto range = parseStatusRange(*text);
    if (!range) {
      error(item_line, "'expect': invalid status '" + *text + "': " + range.error());
      ok = false;
      return;
    }
    ranges.push_back(*range);
  };
  if (!node.IsSequence()) {
    one(node, line);
  } else if (node.size() == 0 || node.size() > kMaxRanges) {
    error(line, "'expect' must list 1.." + std::to_string(kMaxRanges) +
                    " statuses or ranges, got " + std::to_string(node.size()));
    return;
  } else {
    for (const YAML::Node& item : node) one(item, lineOf(item, line));
  }
  if (ok) expect = std::move(ranges);
}

void Loader::parsePassiveHealth(const YAML::Node& node, int line, PassiveHealth& passive) {
  static constexpr uint64_t kMaxConsecutiveFailures = 1000;
  if (!expectMap(node, line, "passive")) return;
  passive.enabled = true;
  const KeyLines seen =
      walkMap(node, line, "health.passive", {},
              {
                  {"consecutive_failures",
                   [&](const YAML::Node& v, int l) {
                     setInteger(passive.consecutive_failures, v, l, "consecutive_failures", 1,
                                kMaxConsecutiveFailures);
                   }},
                  {"gateway_errors_only",
                   [&](const YAML::Node& v, int l) {
                     if (auto value = boolean(v, l, "gateway_errors_only")) {
                       passive.gateway_errors_only = *value;
                     }
                   }},
                  {"base_ejection",
                   [&](const YAML::Node& v, int l) {
                     setDuration(passive.base_ejection, v, l, "base_ejection", Duration{1});
                   }},
                  {"max_ejection",
                   [&](const YAML::Node& v, int l) {
                     setDuration(passive.max_ejection, v, l, "max_ejection", Duration{1});
                   }},
                  {"max_ejection_percent",
                   [&](const YAML::Node& v, int l) {
                     setInteger(passive.max_ejection_percent, v, l, "max_ejection_percent", 0, 100);
                   }},
              });
  if (passive.max_ejection < passive.base_ejection) {
    error(keyLine(seen, "max_ejection", keyLine(seen, "base_ejection", line)),
          "'max_ejection' (" + millis(passive.max_ejection) +
              ") must be at least 'base_ejection' (" + millis(passive.base_ejection) + ")");
  }
}

void Loader::parseRetries(const YAML::Node& node, int line, Retries& retries,
                          int& per_try_timeout_line) {
  static constexpr uint64_t kMaxAttempts = 10;
  static constexpr uint64_t kMaxMinRetryConcurrency = 1000;
  if (!expectMap(node, line, "retries")) return;
  walkMap(node, line, "retries", {},
          {
              {"attempts",
               [&](const YAML::Node& v, int l) {
                 setInteger(retries.attempts, v, l, "attempts", 0, kMaxAttempts);
               }},
              {"retry_on", [&](const YAML::Node& v, int l) { parseRetryOn(v, l, retries); }},
              {"budget_percent",
               [&](const YAML::Node& v, int l) {
                 setInteger(retries.budget_percent, v, l, "budget_percent", 0, 100);
               }},
              {"min_retry_concurrency",
               [&](const YAML::Node& v, int l) {
                 setInteger(retries.min_retry_concurrency, v, l, "min_retry_concurrency", 0,
                            kMaxMinRetryConcurrency);
               }},
              {"per_try_timeout",
               [&](const YAML::Node& v, int l) {
                 per_try_timeout_line = l;
                 setDuration(retries.per_try_timeout, v, l, "per_try_timeout", Duration{0});
               }},
          });
}

// The list replaces the defaults: whatever it does not name is not retried.
void Loader::parseRetryOn(const YAML::Node& node, int line, Retries& retries) {
  if (!expectList(node, line, "retry_on")) return;
  bool ok = true;
  bool on_connect_failure = false;
  bool on_reset = false;
  std::vector<int> statuses;
  for (const YAML::Node& item : node) {
    if (full()) break;
    const int item_line = lineOf(item, line);
    auto text = scalar(item, item_line, "retry_on");
    if (!text) {
      ok = false;
      continue;
    }
    bool duplicate = false;
    if (*text == "connect_failure") {
      duplicate = std::exchange(on_connect_failure, true);
    } else if (*text == "reset") {
      duplicate = std::exchange(on_reset, true);
    } else {
      int status = 0;
      const char* end = text->data() + text->size();
      const auto [ptr, ec] = std::from_chars(text->data(), end, status);
      if (text->empty() || ec != std::errc() || ptr != end || status < 500 || status > 599) {
        error(item_line,
              "'retry_on' entries must be connect_failure, reset or a status in 500..599, got '" +
                  *text + "'" + suggest(*text, {"connect_failure", "reset"}));
        ok = false;
        continue;
      }
      duplicate = std::find(statuses.begin(), statuses.end(), status) != statuses.end();
      if (!duplicate) statuses.push_back(status);
    }
    if (duplicate) {
      error(item_line, "'retry_on' lists '" + *text + "' more than once");
      ok = false;
    }
  }
  if (!ok) return;
  std::sort(statuses.begin(), statuses.end());
  retries.on_connect_failure = on_connect_failure;
  retries.on_reset = on_reset;
  retries.on_statuses = std::move(statuses);
}

// "50%" (or a bare 50).
void Loader::parsePanicThreshold(const YAML::Node& node, int line, uint32_t& percent) {
  auto text = scalar(node, line, "panic_threshold");
  if (!text) return;
  std::string_view digits = *text;
  if (digits.ends_with('%')) digits.remove_suffix(1);
  uint32_t value = 0;
  const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || value > 100) {
    error(line,
          "'panic_threshold' must be a percentage in 0%..100% (e.g. 50%), got '" + *text + "'");
    return;
  }
  percent = value;
}

std::string Loader::resolvePath(const std::string& path) const {
  if (path.empty() || path.front() == '/') return path;
  const size_t slash = base_.rfind('/');
  if (slash == std::string::npos) return path;
  return base_.substr(0, slash + 1) + path;
}

bool isLoopback(const SocketAddress& a) { return a.host.starts_with("127.") || a.host == "::1"; }

void Loader::parseAdmin(const YAML::Node& node, int line, Admin& admin) {
  if (!expectMap(node, line, "admin")) return;
  admin.line = line;
  const KeyLines seen =
      walkMap(node, line, "admin", {},
              {
                  {"enabled",
                   [&](const YAML::Node& v, int l) {
                     if (auto b = boolean(v, l, "enabled")) admin.enabled = *b;
                   }},
                  {"listen",
                   [&](const YAML::Node& v, int l) {
                     if (auto a = address(v, l, "listen")) admin.listen = *a;
                   }},
                  {"token_file",
                   [&](const YAML::Node& v, int l) {
                     auto text = scalar(v, l, "token_file");
                     if (!text) return;
                     admin.token_file = resolvePath(*text);
                     auto token = readSecretFile(admin.token_file, l, "token_file", 16, 1024);
                     if (!token) return;
                     admin.token = std::move(*token);
                   }},
              });
  if (admin.enabled && !isLoopback(admin.listen) && admin.token.empty() && !full()) {
    error(keyLine(seen, "listen", line),
          "admin listens on " + admin.listen.text() +
              ", which is not a loopback address: set 'token_file' so that the API is guarded");
  }
}

void Loader::parseThresholdRule(const YAML::Node& node, int line, std::string_view key,
                                ThresholdRule& rule) {
  if (!expectMap(node, line, key)) return;
  rule.enabled = true;
  const bool is_rate = key == "error_rate";
  const KeyLines seen =
      walkMap(node, line, key, {},
              {
                  {"above",
                   [&](const YAML::Node& v, int l) {
                     auto text = scalar(v, l, "above");
                     if (!text) return;
                     if (is_rate) {
                       std::string_view digits = *text;
                       const bool percent = digits.ends_with('%');
                       if (percent) digits.remove_suffix(1);
                       double value = -1;
                       const auto [ptr, ec] =
                           std::from_chars(digits.data(), digits.data() + digits.size(), value);
                       if (!percent || digits.empty() || ec != std::errc() ||
                           ptr != digits.data() + digits.size() || value < 0 || value > 100) {
                         error(l, "'above' must be a percentage in 0%..100% (e.g. 5%), got '" +
                                      *text + "'");
                         return;
                       }
                       rule.above = value / 100.0;
                     } else if (auto d = duration(v, l, "above", Duration{1})) {
                       rule.above = static_cast<double>(d->count());
                     }
                   }},
                  {"for", [&](const YAML::Node& v,
                              int l) { setDuration(rule.window, v, l, "for", Duration{1'000}); }},
                  {"min_requests",
                   [&](const YAML::Node& v, int l) {
                     setInteger(rule.min_requests, v, l, "min_requests", 1, 1'000'000'000);
                   }},
              });
  if (!seen.contains("above") && !full()) {
    error(line, "'" + std::string(key) + "' is missing 'above'");
  }
}

void Loader::parseWebhook(const YAML::Node& node, int list_line, Alerts& alerts) {
  const int line = lineOf(node, list_line);
  if (!expectMap(node, line, "webhooks entry")) return;
  Webhook hook;
  const KeyLines seen = walkMap(
      node, line, "webhook", {},
      {
          {"url",
           [&](const YAML::Node& v, int l) {
             auto text = scalar(v, l, "url");
             if (!text) return;
             auto url = parseHttpUrl(*text);
             if (!url) {
               error(l, "'url': invalid URL '" + *text + "': " + url.error());
               return;
             }
             hook.url = *text;
             hook.address = url->address;
             hook.path = url->path;
           }},
          {"timeout", [&](const YAML::Node& v,
                          int l) { setDuration(hook.timeout, v, l, "timeout", Duration{10}); }},
          {"max_attempts",
           [&](const YAML::Node& v, int l) {
             setInteger(hook.max_attempts, v, l, "max_attempts", 1, 100);
           }},
      });
  if (!seen.contains("url") && !full()) error(line, "webhook is missing 'url'");
  alerts.webhooks.push_back(std::move(hook));
}

void Loader::parseAlerts(const YAML::Node& node, int line, Alerts& alerts) {
  if (!expectMap(node, line, "alerts")) return;
  walkMap(node, line, "alerts", {},
          {
              {"webhooks",
               [&](const YAML::Node& v, int l) {
                 if (!expectList(v, l, "webhooks")) return;
                 for (const YAML::Node& item : v) {
                   if (full()) break;
                   parseWebhook(item, l, alerts);
                 }
               }},
              {"rules",
               [&](const YAML::Node& v, int l) {
                 if (!expectMap(v, l, "rules")) return;
                 AlertRules& r = alerts.rules;
                 walkMap(v, l, "alerts.rules", {},
                         {
                             {"server_down",
                              [&](const YAML::Node& rv, int rl) {
                                if (auto b = boolean(rv, rl, "server_down")) r.server_down = *b;
                              }},
                             {"backend_down",
                              [&](const YAML::Node& rv, int rl) {
                                if (auto b = boolean(rv, rl, "backend_down")) r.backend_down = *b;
                              }},
                             {"error_rate",
                              [&](const YAML::Node& rv, int rl) {
                                parseThresholdRule(rv, rl, "error_rate", r.error_rate);
                              }},
                             {"p99_latency",
                              [&](const YAML::Node& rv, int rl) {
                                parseThresholdRule(rv, rl, "p99_latency", r.p99_latency);
                              }},
                         });
               }},
          });
}

void Loader::parseAccessLog(const YAML::Node& node, int line, AccessLog& log) {
  if (!expectMap(node, line, "access_log")) return;
  log.enabled = true;
  const KeyLines seen = walkMap(
      node, line, "access_log", {},
      {
          {"enabled",
           [&](const YAML::Node& v, int l) {
             if (auto b = boolean(v, l, "enabled")) log.enabled = *b;
           }},
          {"path",
           [&](const YAML::Node& v, int l) {
             auto text = scalar(v, l, "path");
             if (!text) return;
             log.path = (*text == "stderr" || *text == "stdout") ? *text : resolvePath(*text);
           }},
          {"buffer",
           [&](const YAML::Node& v, int l) {
             if (auto n = size(v, l, "buffer", 64 * 1024, uint64_t{1} << 30)) log.buffer_bytes = *n;
           }},
      });
  if (log.enabled && !seen.contains("path") && !full())
    error(line, "'access_log' is missing 'path'");
}

void Loader::parseEtcd(const YAML::Node& node, int line, std::string_view where,
                       std::vector<std::string>& endpoints, std::string& key, Duration* ttl) {
  if (!expectMap(node, line, where)) return;
  std::vector<Field> fields{
      {"endpoints",
       [&](const YAML::Node& v, int l) {
         if (!expectList(v, l, "endpoints")) return;
         for (const YAML::Node& item : v) {
           auto text = scalar(item, lineOf(item, l), "endpoints");
           if (!text) continue;
           auto url = parseHttpUrl(*text);
           if (!url || url->path != "/") {
             error(lineOf(item, l), "'endpoints': '" + *text + "' must be http://host:port" +
                                        (url ? "" : " (" + url.error() + ")"));
             continue;
           }
           endpoints.push_back(*text);
         }
         if (v.size() == 0) error(l, "'endpoints' must not be empty");
       }},
      {"key",
       [&](const YAML::Node& v, int l) {
         auto text = scalar(v, l, "key");
         if (!text) return;
         if (text->empty() || text->front() != '/' ||
             !std::all_of(text->begin(), text->end(), isVisibleAscii)) {
           error(l, "'key' must start with '/' and be visible ASCII, got '" + *text + "'");
           return;
         }
         key = *text;
       }},
  };
  if (ttl) {
    fields.push_back({"ttl", [&](const YAML::Node& v, int l) {
                        auto d = duration(v, l, "ttl", Duration{1'000});
                        if (!d) return;
                        if (d->count() % 1000 != 0) {
                          error(l, "'ttl' must be whole seconds (etcd leases count in seconds)");
                          return;
                        }
                        *ttl = *d;
                      }});
  }
  walkMap(node, line, where, {}, fields);
}

void Loader::parseConfigSource(const YAML::Node& node, int line, ConfigSource& source) {
  if (!expectMap(node, line, "config_source")) return;
  source.line = line;
  bool etcd_reported = false;
  const KeyLines seen =
      walkMap(node, line, "config_source", {},
              {
                  {"type",
                   [&](const YAML::Node& v, int l) {
                     auto text = scalar(v, l, "type");
                     if (!text) return;
                     if (*text != "file" && *text != "etcd") {
                       error(l, "'type' must be file or etcd, got '" + *text + "'");
                       return;
                     }
                     source.etcd = *text == "etcd";
                   }},
                  {"etcd",
                   [&](const YAML::Node& v, int l) {
                     const size_t before = errors_.size();
                     parseEtcd(v, l, "config_source.etcd", source.endpoints, source.key, nullptr);
                     etcd_reported = errors_.size() != before;
                   }},
              });
  // Not a second error when the endpoints given were already reported as invalid.
  if (source.etcd && source.endpoints.empty() && !etcd_reported && !full()) {
    error(keyLine(seen, "type", line), "config_source type etcd needs etcd: {endpoints: [...]}");
  }
}

std::optional<std::string> Loader::readSecretFile(const std::string& path, int l,
                                                  std::string_view key, size_t min, size_t max) {
  std::string secret;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error(l, "'" + std::string(key) + "': cannot open " + path + ": " + std::strerror(errno));
    return std::nullopt;
  }
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0 && secret.size() <= max) {
    secret.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r' ||
                             secret.back() == ' ' || secret.back() == '\t')) {
    secret.pop_back();
  }
  // Secrets travel in HTTP headers or sign cookies: visible ASCII only, and long enough not to be
  // guessed.
  if (secret.size() < min || secret.size() > max ||
      !std::all_of(secret.begin(), secret.end(), isVisibleAscii)) {
    error(l, "'" + std::string(key) + "' " + path + ": the secret must be " + std::to_string(min) +
                 ".." + std::to_string(max) + " visible ASCII characters");
    return std::nullopt;
  }
  return secret;
}

void Loader::parsePeers(const YAML::Node& node, int line, Cluster& cluster) {
  if (!expectList(node, line, "peers")) return;
  KeyLines ids;
  for (const YAML::Node& item : node) {
    const int l = lineOf(item, line);
    if (!expectMap(item, l, "a peer")) continue;
    Peer peer;
    const KeyLines seen = walkMap(item, l, "peer", {},
                                  {
                                      {"id",
                                       [&](const YAML::Node& v, int vl) {
                                         if (auto n = name(v, vl, "id")) peer.id = *n;
                                       }},
                                      {"address",
                                       [&](const YAML::Node& v, int vl) {
                                         if (auto a = address(v, vl, "address")) peer.address = *a;
                                       }},
                                  });
    if (full()) return;
    if (!seen.contains("id") || !seen.contains("address")) {
      error(l, "a peer needs 'id' and 'address'");
      continue;
    }
    if (peer.id.empty() || peer.address.port == 0) continue;  // reported by the field
    if (auto [it, inserted] = ids.emplace(peer.id, l); !inserted) {
      error(l, "duplicate peer id '" + peer.id + "' (first at line " + std::to_string(it->second) +
                   ")");
      continue;
    }
    cluster.peers.push_back(std::move(peer));
  }
}

void Loader::parseState(const YAML::Node& node, int line, StateStore& state) {
  if (!expectMap(node, line, "state")) return;
  state.line = line;
  bool redis_section = false;
  const KeyLines seen =
      walkMap(node, line, "state", {},
              {
                  {"store",
                   [&](const YAML::Node& v, int l) {
                     auto text = scalar(v, l, "store");
                     if (!text) return;
                     if (*text != "memory" && *text != "redis") {
                       error(l, "'store' must be memory or redis, got '" + *text + "'");
                       return;
                     }
                     state.redis = *text == "redis";
                   }},
                  {"redis",
                   [&](const YAML::Node& v, int l) {
                     if (!expectMap(v, l, "redis")) return;
                     redis_section = true;
                     walkMap(v, l, "state.redis", {},
                             {{"address",
                               [&](const YAML::Node& rv, int rl) {
                                 if (auto a = address(rv, rl, "address")) state.redis_address = *a;
                               }},
                              {"prefix", [&](const YAML::Node& rv, int rl) {
                                 auto text = scalar(rv, rl, "prefix");
                                 if (!text) return;
                                 if (text->size() > 64 ||
                                     !std::all_of(text->begin(), text->end(), isVisibleAscii)) {
                                   error(rl, "'prefix' must be up to 64 visible ASCII characters");
                                   return;
                                 }
                                 state.redis_prefix = *text;
                               }}});
                   }},
              });
  if (redis_section && !state.redis && !full()) {
    error(keyLine(seen, "redis", line), "'redis' is only used with store: redis");
  }
}

void Loader::parseSticky(const YAML::Node& node, int line, Sticky& sticky) {
  if (!expectMap(node, line, "sticky")) return;
  sticky.line = line;
  const KeyLines seen =
      walkMap(node, line, "sticky", {},
              {
                  {"mode",
                   [&](const YAML::Node& v, int l) {
                     auto text = scalar(v, l, "mode");
                     if (!text) return;
                     if (*text == "cookie") {
                       sticky.mode = StickyMode::kCookie;
                     } else if (*text == "table") {
                       sticky.mode = StickyMode::kTable;
                     } else {
                       error(l, "sticky 'mode' must be cookie or table, got '" + *text + "'");
                     }
                   }},
                  {"cookie",
                   [&](const YAML::Node& v, int l) {
                     auto text = scalar(v, l, "cookie");
                     if (!text) return;
                     if (text->empty() || text->size() > 64 ||
                         !std::all_of(text->begin(), text->end(), isTokenChar)) {
                       error(l, "'cookie' must be a cookie name (a token, up to 64 characters)");
                       return;
                     }
                     sticky.cookie = *text;
                   }},
                  {"key",
                   [&](const YAML::Node& v, int l) {
                     parseHashKey(v, l, sticky.key);
                     if (sticky.key.kind == HashKeyKind::kUri) {
                       error(l, "sticky 'key' must be source_ip, header:NAME or cookie:NAME");
                     }
                   }},
                  {"ttl", [&](const YAML::Node& v,
                              int l) { setDuration(sticky.ttl, v, l, "ttl", Duration{1'000}); }},
              });
  if (full()) return;
  if (!seen.contains("mode")) {
    error(line, "'sticky' needs 'mode' (cookie or table)");
  } else if (sticky.mode == StickyMode::kCookie && (seen.contains("key") || seen.contains("ttl"))) {
    error(keyLine(seen, seen.contains("key") ? "key" : "ttl", line),
          "'key' and 'ttl' are for mode: table (a cookie names its server itself)");
  } else if (sticky.mode == StickyMode::kTable && seen.contains("cookie")) {
    error(keyLine(seen, "cookie", line),
          "'cookie' is for mode: cookie (mode: table takes key: cookie:NAME)");
  }
}

void Loader::parseRateLimit(const YAML::Node& node, int line, RateLimit& limit) {
  if (!expectMap(node, line, "rate_limit")) return;
  limit.line = line;
  limit.enabled = true;
  const KeyLines seen = walkMap(
      node, line, "rate_limit", {},
      {
          {"key",
           [&](const YAML::Node& v, int l) {
             parseHashKey(v, l, limit.key);
             if (limit.key.kind != HashKeyKind::kSourceIp &&
                 limit.key.kind != HashKeyKind::kHeader) {
               error(l, "rate_limit 'key' must be source_ip or header:NAME");
             }
           }},
          {"rate",
           [&](const YAML::Node& v, int l) {
             auto text = scalar(v, l, "rate");
             if (!text) return;
             const size_t slash = text->find('/');
             double count = 0;
             const char* b = text->data();
             auto [ptr, ec] =
                 std::from_chars(b, b + (slash == std::string::npos ? text->size() : slash), count);
             const std::string unit = slash == std::string::npos ? "" : text->substr(slash + 1);
             const double per = unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : 0;
             if (ec != std::errc() || ptr != b + slash || per == 0 || !(count > 0) || count > 1e9) {
               error(l, "'rate' must be a count per s, m or h such as 100/s, got '" + *text + "'");
               return;
             }
             limit.rate = count / per;
           }},
          {"burst", [&](const YAML::Node& v,
                        int l) { setInteger(limit.burst, v, l, "burst", 1, 1'000'000'000); }},
      });
  if (!seen.contains("rate") && !full()) error(line, "'rate_limit' needs 'rate' (e.g. 100/s)");
}

void Loader::parseCluster(const YAML::Node& node, int line, Config& config) {
  if (!expectMap(node, line, "cluster")) return;
  Election& e = config.cluster.election;
  const KeyLines seen = walkMap(
      node, line, "cluster", {},
      {
          {"listen",
           [&](const YAML::Node& v, int l) {
             if (auto a = address(v, l, "listen")) config.cluster.listen = *a;
           }},
          {"peers", [&](const YAML::Node& v, int l) { parsePeers(v, l, config.cluster); }},
          {"secret_file",
           [&](const YAML::Node& v, int l) {
             auto text = scalar(v, l, "secret_file");
             if (!text) return;
             config.cluster.secret_file = resolvePath(*text);
             if (auto secret =
                     readSecretFile(config.cluster.secret_file, l, "secret_file", 16, 4096)) {
               config.cluster.secret = std::move(*secret);
             }
           }},
          {"peer_health",
           [&](const YAML::Node& v, int l) {
             auto text = scalar(v, l, "peer_health");
             if (!text) return;
             if (*text != "act" && *text != "observe") {
               error(l, "'peer_health' must be act or observe, got '" + *text + "'");
               return;
             }
             config.cluster.act_on_peer_health = *text == "act";
           }},
          {"mode",
           [&](const YAML::Node& v, int l) {
             auto text = scalar(v, l, "mode");
             if (!text) return;
             if (*text != "standalone" && *text != "active_passive" && *text != "active_active") {
               error(l, "'mode' must be standalone, active_passive or active_active, got '" +
                            *text + "'");
             } else {
               config.cluster.mode = *text;
             }
           }},
          {"vrrp", [&](const YAML::Node& v, int l) { parseVrrp(v, l, config.cluster.vrrp); }},
          {"election",
           [&](const YAML::Node& v, int l) {
             auto text = scalar(v, l, "election");
             if (!text) return;
             if (*text != "none" && *text != "etcd") {
               error(l, "'election' must be none or etcd, got '" + *text + "'");
               return;
             }
             e.enabled = *text == "etcd";
           }},
          {"etcd", [&](const YAML::Node& v,
                       int l) { parseEtcd(v, l, "cluster.etcd", e.endpoints, e.key, &e.ttl); }},
      });
  election_line_ = keyLine(seen, "election", line);
  config.cluster.line = line;
  if (!config.cluster.peers.empty() && !full()) {
    if (config.cluster.secret.empty() && !seen.contains("secret_file")) {
      error(keyLine(seen, "peers", line),
            "'peers' need 'secret_file' (the shared secret that authenticates them)");
    }
    if (config.cluster.listen.port == 0) {
      error(keyLine(seen, "peers", line),
            "'peers' need 'listen' (this node's peer-replication address)");
    }
  }
  const bool has_vrrp = seen.contains("vrrp");
  if (config.cluster.mode == "active_passive" && !has_vrrp && !full()) {
    error(keyLine(seen, "mode", line), "mode active_passive needs a 'vrrp' section");
  }
  if (has_vrrp && config.cluster.mode != "active_passive" && !full()) {
    error(keyLine(seen, "vrrp", line), "'vrrp' is only used with mode: active_passive");
  }
}

void Loader::parseVrrp(const YAML::Node& node, int line, Vrrp& vrrp) {
  if (!expectMap(node, line, "vrrp")) return;
  vrrp.line = line;
  bool vips_empty = false;
  auto ipv4 = [&](const YAML::Node& v, int l, std::string_view key) -> std::optional<std::string> {
    auto text = scalar(v, l, key);
    if (!text) return std::nullopt;
    auto a = parseAddress(*text + ":1");
    if (!a || a->host.find(':') != std::string::npos) {
      error(l, "'" + std::string(key) + "': '" + *text + "' is not an IPv4 address");
      return std::nullopt;
    }
    return a->host;
  };
  const KeyLines seen = walkMap(
      node, line, "vrrp", {},
      {
          {"interface",
           [&](const YAML::Node& v, int l) {
             auto text = scalar(v, l, "interface");
             if (!text) return;
             if (text->empty() || text->size() > 15 ||
                 !std::all_of(text->begin(), text->end(), isNameChar)) {
               error(l, "'interface' must be an interface name (1..15 characters), got '" + *text +
                            "'");
               return;
             }
             vrrp.interface = *text;
           }},
          {"vrid",
           [&](const YAML::Node& v, int l) { setInteger(vrrp.vrid, v, l, "vrid", 1, 255); }},
          {"priority", [&](const YAML::Node& v,
                           int l) { setInteger(vrrp.priority, v, l, "priority", 1, 255); }},
          {"advert_interval",
           [&](const YAML::Node& v, int l) {
             auto d = duration(v, l, "advert_interval", Duration{10});
             if (!d) return;
             if (d->count() % 10 != 0 || d->count() > 40'950) {
               error(l,
                     "'advert_interval' must be whole centiseconds up to 40950ms (VRRPv3 "
                     "counts in centiseconds), got '" +
                         v.Scalar() + "'");
               return;
             }
             vrrp.advert_interval = *d;
           }},
          {"preempt",
           [&](const YAML::Node& v, int l) {
             if (auto b = boolean(v, l, "preempt")) vrrp.preempt = *b;
           }},
          {"preempt_delay",
           [&](const YAML::Node& v, int l) {
             setDuration(vrrp.preempt_delay, v, l, "preempt_delay", Duration{0});
           }},
          {"virtual_ips",
           [&](const YAML::Node& v, int l) {
             if (!expectList(v, l, "virtual_ips")) return;
             vips_empty = v.size() == 0;  // (invalid entries are reported one by one)
             for (const YAML::Node& item : v) {
               const int il = lineOf(item, l);
               auto text = scalar(item, il, "virtual_ips");
               if (!text) continue;
               std::string ip = *text;
               uint32_t prefix = 32;
               if (size_t slash = ip.find('/'); slash != std::string::npos) {
                 const std::string bits = ip.substr(slash + 1);
                 ip.resize(slash);
                 const auto [ptr, ec] =
                     std::from_chars(bits.data(), bits.data() + bits.size(), prefix);
                 if (bits.empty() || ec != std::errc() || ptr != bits.data() + bits.size() ||
                     prefix > 32) {
                   error(il, "'virtual_ips': bad prefix length in '" + *text + "'");
                   continue;
                 }
               }
               YAML::Node plain(ip);
               if (auto a = ipv4(plain, il, "virtual_ips")) {
                 vrrp.virtual_ips.push_back({*a, static_cast<uint8_t>(prefix)});
               }
             }
           }},
          {"unicast_peers",
           [&](const YAML::Node& v, int l) {
             if (!expectList(v, l, "unicast_peers")) return;
             for (const YAML::Node& item : v) {
               if (auto a = ipv4(item, lineOf(item, l), "unicast_peers")) {
                 vrrp.unicast_peers.push_back(*a);
               }
             }
           }},
          {"garp_count", [&](const YAML::Node& v,
                             int l) { setInteger(vrrp.garp_count, v, l, "garp_count", 0, 100); }},
          {"garp_repeat",
           [&](const YAML::Node& v, int l) {
             setDuration(vrrp.garp_repeat, v, l, "garp_repeat", Duration{0});
           }},
          {"track",
           [&](const YAML::Node& v, int l) {
             if (!expectMap(v, l, "track")) return;
             walkMap(v, l, "vrrp.track", {},
                     {{"no_healthy_backends",
                       [&](const YAML::Node& tv, int tl) {
                         trackChange(vrrp.track_no_healthy_backends, tv, tl, "no_healthy_backends");
                       }},
                      {"listener_down",
                       [&](const YAML::Node& tv, int tl) {
                         trackChange(vrrp.track_listener_down, tv, tl, "listener_down");
                       }},
                      {"listeners",
                       [&](const YAML::Node& tv, int tl) {
                         if (!expectList(tv, tl, "listeners")) return;
                         for (const YAML::Node& item : tv) {
                           if (auto n = name(item, lineOf(item, tl), "listeners")) {
                             vrrp.track_listeners.push_back(*n);
                           }
                         }
                       }},
                      {"backends", [&](const YAML::Node& tv, int tl) {
                         if (!expectList(tv, tl, "backends")) return;
                         for (const YAML::Node& item : tv) {
                           if (auto n = name(item, lineOf(item, tl), "backends")) {
                             vrrp.track_backends.push_back(*n);
                           }
                         }
                       }}});
           }},
      });
  for (const char* required : {"interface", "vrid", "virtual_ips"}) {
    if (!seen.contains(required) && !full()) {
      error(line, "'vrrp' is missing '" + std::string(required) + "'");
    }
  }
  if (vips_empty && !full()) {
    error(keyLine(seen, "virtual_ips", line), "'virtual_ips' must not be empty");
  }
}

std::vector<ConfigError> Loader::takeErrors() {
  std::vector<ConfigError> errors = std::move(errors_);
  std::stable_sort(errors.begin(), errors.end(),
                   [](const ConfigError& a, const ConfigError& b) { return a.line < b.line; });
  if (errors.size() >= kMaxErrors) {
    errors.push_back(ConfigError{
        file_, 0, "too many errors; stopped after the first " + std::to_string(kMaxErrors)});
  }
  return errors;
}

// Two listeners conflict when the kernel would refuse (or, with SO_REUSEPORT, silently share) the
// second bind: same port and same host, or one of them is the wildcard of the same family.
bool listenConflict(const SocketAddress& a, const SocketAddress& b) {
  if (a.port != b.port || a.port == 0) return false;
  if (a.host == b.host) return true;
  const bool a_v6 = a.host.find(':') != std::string::npos;
  const bool b_v6 = b.host.find(':') != std::string::npos;
  if (a_v6 != b_v6) return false;
  const std::string_view wildcard = a_v6 ? "::" : "0.0.0.0";
  return a.host == wildcard || b.host == wildcard;
}

void Loader::checkReferences(const Config& config) {
  KeyLines listener_names;
  for (size_t i = 0; i < config.listeners.size() && !full(); ++i) {
    const Listener& listener = config.listeners[i];
    const KeyLines& keys = listener_keys_[i];
    if (!listener.name.empty()) {
      const int line = keyLine(keys, "name", listener.line);
      auto [it, inserted] = listener_names.emplace(listener.name, line);
      if (!inserted) {
        error(line, "duplicate listener name '" + listener.name + "' (first at line " +
                        std::to_string(it->second) + ")");
      }
    }
    if (listener.listen.port != 0) {
      for (size_t j = 0; j < i; ++j) {
        const Listener& other = config.listeners[j];
        if (!listenConflict(listener.listen, other.listen)) continue;
        error(keyLine(keys, "listen", listener.line),
              "'listen' " + listener.listen.text() + " conflicts with listener '" + other.name +
                  "' on " + other.listen.text() + " (line " +
                  std::to_string(keyLine(listener_keys_[j], "listen", other.line)) + ")");
        break;
      }
    }
    if (config.admin.enabled && listenConflict(listener.listen, config.admin.listen)) {
      error(keyLine(keys, "listen", listener.line),
            "'listen' " + listener.listen.text() + " conflicts with the admin server on " +
                config.admin.listen.text() +
                (config.admin.line ? "" : " (the default; see 'admin')"));
    }
    if (!listener.backend.empty() && config.findBackend(listener.backend) == nullptr) {
      std::vector<std::string_view> names;
      for (const Backend& backend : config.backends) names.push_back(backend.name);
      error(keyLine(keys, "backend", listener.line),
            "backend '" + listener.backend + "' is not defined" + suggest(listener.backend, names));
    }
  }
  for (const std::string& b : config.cluster.vrrp.track_backends) {
    if (config.findBackend(b) == nullptr && !full()) {
      std::vector<std::string_view> names;
      for (const Backend& backend : config.backends) names.push_back(backend.name);
      error(config.cluster.vrrp.line,
            "vrrp.track: backend '" + b + "' is not defined" + suggest(b, names));
    }
  }
  if (config.state.redis && !config.cluster.peers.empty() && !full()) {
    error(config.state.line,
          "state.store redis shares state through Redis: remove cluster 'peers' (they would be a "
          "second, competing replication)");
  }
  for (const std::string& l : config.cluster.vrrp.track_listeners) {
    if (full()) break;
    auto it = std::find_if(config.listeners.begin(), config.listeners.end(),
                           [&](const Listener& x) { return x.name == l; });
    if (it == config.listeners.end()) {
      std::vector<std::string_view> names;
      for (const Listener& x : config.listeners) names.push_back(x.name);
      error(config.cluster.vrrp.line,
            "vrrp.track: listener '" + l + "' is not defined" + suggest(l, names));
    } else if (std::any_of(config.cluster.vrrp.virtual_ips.begin(),
                           config.cluster.vrrp.virtual_ips.end(),
                           [&](const VirtualIp& v) { return v.address == it->listen.host; })) {
      error(config.cluster.vrrp.line,
            "vrrp.track: listener '" + l +
                "' is bound to a virtual IP and cannot be probed (a backup would reach the "
                "master): track a listener on a wildcard or local address");
    }
  }
  KeyLines backend_names;
  for (size_t i = 0; i < config.backends.size() && !full(); ++i) {
    const Backend& backend = config.backends[i];
    if (backend.name.empty()) continue;
    const int line = keyLine(backend_keys_[i], "name", backend.line);
    auto [it, inserted] = backend_names.emplace(backend.name, line);
    if (!inserted) {
      error(line, "duplicate backend name '" + backend.name + "' (first at line " +
                      std::to_string(it->second) + ")");
    }
  }
}

// Records where a document's first node is; a document with only a null root stays at 0.
class DocumentProbe : public YAML::EventHandler {
 public:
  int line = 0;

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { see(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    see(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    see(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    see(mark);
  }
  void OnMapEnd() override {}

 private:
  void see(const YAML::Mark& mark) {
    if (line == 0) line = mark.line + 1;
  }
};

// 1-based line where a second, non-empty YAML document starts, or 0. Not YAML::LoadAll: in
// yaml-cpp 0.7 it loops forever, allocating, on inputs as small as "," (jbeder/yaml-cpp#1040, fixed
// upstream by #1319), so this parses at most two documents and only looks at their events.
int secondDocumentLine(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentProbe first;
  if (!parser.HandleNextDocument(first)) return 0;
  DocumentProbe second;
  if (!parser.HandleNextDocument(second)) return 0;
  return second.line;
}

tl::unexpected<std::vector<ConfigError>> single(const std::string& path, int line,
                                                std::string reason) {
  return tl::unexpected<std::vector<ConfigError>>(
      std::vector<ConfigError>{ConfigError{path, line, std::move(reason)}});
}

}  // namespace

tl::expected<Config, std::vector<ConfigError>> loadString(std::string_view yaml,
                                                          const std::string& path,
                                                          const std::string& base_path) {
  // yaml-cpp reports everything by exception; this is the one place they are turned into errors.
  try {
    const std::string text(yaml);
    YAML::Node root;
    int second_document = 0;
    try {
      root = YAML::Load(text);
      second_document = secondDocumentLine(text);
    } catch (const YAML::Exception& e) {
      return single(path, e.mark.is_null() ? 0 : e.mark.line + 1, "invalid YAML: " + e.msg);
    }
    if (!root.IsDefined() || root.IsNull()) return single(path, 0, "the configuration is empty");
    Loader loader(path, base_path.empty() ? path : base_path);
    Config config = loader.load(root);
    if (second_document != 0) {
      loader.error(second_document, "expected one YAML document, found another one here");
    }
    std::vector<ConfigError> errors = loader.takeErrors();
    if (errors.empty()) return config;
    return tl::unexpected<std::vector<ConfigError>>(std::move(errors));
  } catch (const std::exception& e) {
    return single(path, 0, std::string("internal error while loading: ") + e.what());
  }
}

tl::expected<Config, std::vector<ConfigError>> loadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return single(path, 0, std::string("cannot open: ") + std::strerror(errno));
  std::string text;
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      ::close(fd);
      return single(path, 0, std::string("cannot read: ") + std::strerror(saved));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxFileBytes) {
      ::close(fd);
      return single(
          path, 0, "larger than " + std::to_string(kMaxFileBytes >> 20) + "MiB; not a config file");
    }
  }
  ::close(fd);
  return loadString(text, path);
}

}  // namespace tandem::config
