#include "state/redis_codec.h"

#include <algorithm>
#include <charconv>

namespace tandem::state::redis {

namespace {

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '~' || c == '-';
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

template <typename T>
bool parseNumber(std::string_view text, T& out) {
  if (text.empty()) return false;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && p == text.data() + text.size();
}

}  // namespace

std::string_view kindName(Kind kind) {
  switch (kind) {
    case Kind::kSticky:
      return "sticky";
    case Kind::kRate:
      return "rate";
    case Kind::kHealth:
      return "health";
  }
  return "unknown";
}

std::optional<Kind> kindFromName(std::string_view name) {
  if (name == "sticky") return Kind::kSticky;
  if (name == "rate") return Kind::kRate;
  if (name == "health") return Kind::kHealth;
  return std::nullopt;
}

std::string escape(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(bytes.size() + 8);
  for (char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (unreserved(c)) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::optional<std::string> unescape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c != '%') {
      if (!unreserved(static_cast<unsigned char>(c))) return std::nullopt;
      out.push_back(c);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int hi = hexValue(text[i + 1]);
    const int lo = hexValue(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string keySuffix(Kind kind, std::string_view key) {
  std::string s(kindName(kind));
  s.push_back(':');
  s += escape(key);
  return s;
}

std::optional<std::pair<Kind, std::string>> parseKeySuffix(std::string_view suffix) {
  const size_t colon = suffix.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto kind = kindFromName(suffix.substr(0, colon));
  if (!kind) return std::nullopt;
  auto key = unescape(suffix.substr(colon + 1));
  if (!key) return std::nullopt;
  return std::pair{*kind, std::move(*key)};
}

std::string scanPattern(std::string_view prefix) {
  std::string p;
  for (char c : prefix) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') p.push_back('\\');
    p.push_back(c);
  }
  p.push_back('*');
  return p;
}

std::string versionText(uint64_t version) {
  std::string digits = std::to_string(version);
  return std::string(20 - std::min<size_t>(20, digits.size()), '0') + digits;
}

std::optional<Record> recordFromHash(Kind kind, std::string key, const HashFields& fields) {
  Record r;
  r.kind = kind;
  r.key = std::move(key);
  bool has_version = false;
  for (const auto& [field, value] : fields) {
    if (field == "x") {
      if (!parseNumber(value, r.expires_ms)) return std::nullopt;
    } else if (field == "w") {
      if (!parseNumber(value, r.written_us)) return std::nullopt;
    } else if (isCounter(kind)) {
      if (field.starts_with("c:")) {
        uint64_t count = 0;
        if (!parseNumber(value, count)) return std::nullopt;
        r.counts.emplace_back(std::string(field.substr(2)), count);
      }
    } else if (field == "v") {
      if (!parseNumber(value, r.version)) return std::nullopt;
      has_version = true;
    } else if (field == "o") {
      r.origin.assign(value);
    } else if (field == "d") {
      r.value.assign(value);
    }
  }
  if (isCounter(kind)) {
    if (r.counts.empty()) return std::nullopt;
    std::sort(r.counts.begin(), r.counts.end());
  } else if (!has_version) {
    return std::nullopt;
  }
  return r;
}

std::string changeMessage(std::string_view origin, const std::vector<std::string>& suffixes) {
  std::string m = escape(origin);
  for (const std::string& s : suffixes) {
    m.push_back('\n');
    m += s;
  }
  return m;
}

std::optional<ChangeMessage> parseChangeMessage(std::string_view text) {
  ChangeMessage m;
  size_t nl = text.find('\n');
  auto origin = unescape(text.substr(0, nl));
  if (!origin) return std::nullopt;
  m.origin = std::move(*origin);
  while (nl != std::string_view::npos) {
    const size_t start = nl + 1;
    nl = text.find('\n', start);
    std::string_view s =
        text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (!s.empty()) m.suffixes.push_back(s);
  }
  return m;
}

// Lua compares strings with strcoll (locale-dependent), so origins are compared byte by byte to
// agree with std::string's order; versions are fixed-width digits, compared the same way.
const char* const kRegisterScript = R"lua(
local function cmp(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then if x < y then return -1 else return 1 end end
  end
  if #a < #b then return -1 else return 1 end
end
local cur = redis.call('HMGET', KEYS[1], 'v', 'o')
if cur[1] then
  local c = cmp(ARGV[1], cur[1])
  if c < 0 then return 0 end
  if c == 0 and cmp(ARGV[2], cur[2] or '') <= 0 then return 0 end
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'o', ARGV[2], 'x', ARGV[3], 'w', ARGV[4], 'd', ARGV[5])
if ARGV[3] == '0' then redis.call('PERSIST', KEYS[1]) else redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
return 1
)lua";

// Counts are per node and per rate window, far below 2^53, so Lua's doubles compare them exactly.
const char* const kCounterScript = R"lua(
local key = KEYS[1]
local changed = 0
local x = ARGV[1]
local cx = redis.call('HGET', key, 'x')
if cx then
  if cx == '0' or x == '0' then x = '0'
  elseif tonumber(cx) >= tonumber(x) then x = cx end
end
if x ~= cx then changed = 1 end
local w = redis.call('HGET', key, 'w')
if not w or tonumber(w) < tonumber(ARGV[2]) then w = ARGV[2] end
for i = 3, #ARGV, 2 do
  local f = 'c:' .. ARGV[i]
  local cur = redis.call('HGET', key, f)
  if not cur or tonumber(cur) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', key, f, ARGV[i + 1])
    changed = 1
  end
end
redis.call('HSET', key, 'x', x, 'w', w)
if x == '0' then redis.call('PERSIST', key) else redis.call('PEXPIREAT', key, x) end
return changed
)lua";

}  // namespace tandem::state::redis
