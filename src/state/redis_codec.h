#pragma once
// How Records look in Redis (used by RedisReplicator; pure functions, no I/O, so they are unit
// tested without a server).
//
// Keys: `<prefix><kind>:<escaped key>`, kind one of "sticky", "rate", "health"; the key bytes are
// percent-encoded (everything but [A-Za-z0-9._~-] becomes %XX), so the \x1f separators, glob
// characters and newlines never reach Redis key names, SCAN patterns or change messages, and
// `redis-cli --scan` output stays readable ("tandem:sticky:app%1Fuser42").
//
// Values: one hash per record.
// - register kinds: v = version as 20 zero-padded digits (so string order = numeric order, also
//   inside Lua where numbers are doubles), o = origin, x = expires_ms (0 = never),
//   w = written_us, d = value;
// - counter kinds: c:<node> = that node's absolute count, x = expires_ms, w = newest written_us.
// Every key carries a Redis expiry equal to the record's expires_ms (PEXPIREAT), so Redis drops
// what the tables drop.
//
// Change messages on `<prefix>changes`: "<escaped origin>\n<suffix>\n<suffix>..." where a suffix
// is a key without the prefix ("sticky:app%1Fuser42").
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "state/record.h"

namespace tandem::state::redis {

std::string_view kindName(Kind kind);
std::optional<Kind> kindFromName(std::string_view name);

std::string escape(std::string_view bytes);
std::optional<std::string> unescape(std::string_view text);

// "<kind>:<escaped key>": a Redis key without the prefix.
std::string keySuffix(Kind kind, std::string_view key);
// Inverse of keySuffix; nothing for anything we did not write (unknown kind, bad escape).
std::optional<std::pair<Kind, std::string>> parseKeySuffix(std::string_view suffix);

// SCAN MATCH pattern for every key under `prefix` (glob characters in the prefix escaped).
std::string scanPattern(std::string_view prefix);

// 20 digits, zero-padded.
std::string versionText(uint64_t version);

// A record from the field/value pairs of HGETALL; nothing if malformed (missing or bad numbers).
using HashFields = std::vector<std::pair<std::string_view, std::string_view>>;
std::optional<Record> recordFromHash(Kind kind, std::string key, const HashFields& fields);

std::string changeMessage(std::string_view origin, const std::vector<std::string>& suffixes);
struct ChangeMessage {
  std::string origin;
  std::vector<std::string_view> suffixes;  // into the parsed text
};
std::optional<ChangeMessage> parseChangeMessage(std::string_view text);

// KEYS[1] = key; ARGV = version (versionText), origin, expires_ms, written_us, value.
// Writes the record only if it wins over the stored one (record.h wins(): higher version, ties
// broken by origin compared bytewise like std::string); returns 1 if written, 0 if stale.
extern const char* const kRegisterScript;
// KEYS[1] = key; ARGV = expires_ms, written_us, then node, count pairs. Each node's count becomes
// the larger of the stored and the given one; expiry the later one (0 = never wins); returns 1
// if anything rose, 0 otherwise.
extern const char* const kCounterScript;

}  // namespace tandem::state::redis
