#pragma once
// Wire format of peer replication (issue 6). Pure functions and one small codec class: no sockets,
// no clocks, so every rule below is unit-tested and fuzzed without a network.
//
// A frame on the TCP stream:
//   u32 length (big endian) of everything after it: kMinFrameBody..kMaxFrame bytes
//   u8  version   (kProtocolVersion; anything else closes the connection)
//   u8  type      (FrameType)
//   ... payload   (per type, below; integers big endian, strings u8/u16 length + bytes)
//   32  tag       HMAC-SHA256(secret, "tandem-peer" | sender nonce | receiver nonce | u64 seq |
//                             length | version | type | payload)
// `seq` counts the frames of one direction of one connection, from 0 (the HELLO); it is implicit
// (never sent), so a replayed, dropped, reordered or reflected frame fails its MAC. The HELLO is
// sealed with all-zero nonces (neither side knows the other's yet): a replayed HELLO gets no
// further, because every later frame must be bound to the receiver's fresh nonce.
//
// Payloads:
//   HELLO     u8 protocol version, u8 id length (1..255), id, 16-byte random nonce
//   RECORDS   u8 flags (bit 0: part of a full sync), u32 count, count × record:
//               u8 kind (1..kMaxKind), u16 key length (<= kMaxKey), key, u8 origin length, origin,
//               u64 version, i64 expires_ms, i64 written_us, u16 value length (<= kMaxValue),
//               value, u16 counts (<= kMaxCounts), counts × (u8 node length (1..255), node, u64)
//   SYNC_DONE u64 records sent in the full sync
//   PING      u64 sender's monotonic µs            PONG  u64 echoed PING value, i64 unix µs
// Every payload must be consumed exactly: trailing bytes make a frame malformed.
#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "state/record.h"

namespace tandem::cluster {

inline constexpr uint8_t kProtocolVersion = 1;
inline constexpr size_t kNonceSize = 16;
inline constexpr size_t kTagSize = 32;
inline constexpr size_t kLengthSize = 4;
inline constexpr size_t kMinFrameBody = 2 + kTagSize;  // version, type, tag: an empty payload
inline constexpr size_t kMaxFrame = 1 << 20;           // the length field's upper bound
inline constexpr size_t kMaxNodeId = 255;
inline constexpr size_t kMaxKey = 32 * 1024;
inline constexpr size_t kMaxValue = 32 * 1024;
inline constexpr size_t kMaxCounts = 1024;
// The smallest encoded record: bounds a RECORDS count before anything is allocated for it.
inline constexpr size_t kMinRecordSize = 1 + 2 + 1 + 8 + 8 + 8 + 2 + 2;

enum class FrameType : uint8_t { kHello = 1, kRecords = 2, kSyncDone = 3, kPing = 4, kPong = 5 };
inline constexpr uint8_t kMaxFrameType = 5;

using Nonce = std::array<uint8_t, kNonceSize>;
using Tag = std::array<uint8_t, kTagSize>;

struct Hello {
  uint8_t version = kProtocolVersion;
  std::string node_id;
  Nonce nonce{};
  bool operator==(const Hello&) const = default;
};
struct RecordBatch {
  bool full_sync = false;
  std::vector<state::Record> records;
};
struct SyncDone {
  uint64_t records = 0;
};
struct Ping {
  uint64_t sent_us = 0;
};
struct Pong {
  uint64_t echo_us = 0;
  int64_t unix_us = 0;
};

// ---- payloads (no framing, no MAC) ----
std::string encodeHello(const Hello& h);
std::optional<Hello> decodeHello(std::string_view payload);

// Appends one record to a RECORDS payload under construction; false (nothing appended) if it
// breaks a limit above (such a record cannot be replicated and is skipped by the sender).
bool appendRecord(std::string& payload, const state::Record& r);
// A RECORDS payload: beginRecords() writes the flags and a count placeholder that
// finishRecords() fills in.
void beginRecords(std::string& payload, bool full_sync);
void finishRecords(std::string& payload, uint32_t count);
std::string encodeRecords(const RecordBatch& batch);  // records over a limit are skipped
// Strict: false on any violation; `out` is then unspecified.
bool decodeRecords(std::string_view payload, RecordBatch& out);

std::string encodeSyncDone(const SyncDone& s);
std::optional<SyncDone> decodeSyncDone(std::string_view payload);
std::string encodePing(const Ping& p);
std::optional<Ping> decodePing(std::string_view payload);
std::string encodePong(const Pong& p);
std::optional<Pong> decodePong(std::string_view payload);

// ---- framing ----
enum class FrameStatus {
  kOk,
  kIncomplete,  // need more bytes (never an error by itself)
  kBadLength,   // length field outside kMinFrameBody..kMaxFrame
  kBadVersion,  // unknown protocol version
  kBadType,     // unknown frame type
  kBadMac,
};
const char* describe(FrameStatus s);

// A frame's parts, viewing the input.
struct RawFrame {
  uint8_t version = 0;
  uint8_t type = 0;
  std::string_view payload;
  std::string_view tag;
  size_t size = 0;  // bytes of the input the frame takes, length prefix included
};
// Splits the frame at the start of `in` without checking its MAC (the codec checks it); checks
// length, version and type, in that order.
FrameStatus splitFrame(std::string_view in, RawFrame& out);

// Authenticates one connection's frames: holds the secret, both nonces and both directions'
// sequence numbers. One per connection, used by one thread.
class FrameCodec {
 public:
  explicit FrameCodec(std::string_view secret);
  ~FrameCodec();
  FrameCodec(const FrameCodec&) = delete;
  FrameCodec& operator=(const FrameCodec&) = delete;

  // After both HELLOs: later frames are bound to both nonces.
  void setNonces(const Nonce& local, const Nonce& remote);
  // Appends a sealed frame (payload.size() must fit kMaxFrame).
  void seal(std::string& out, FrameType type, std::string_view payload);
  // Opens the frame at the start of `in`; on kOk, `out` views `in` and the receive sequence
  // advances. Any status but kOk and kIncomplete means the connection must close.
  FrameStatus open(std::string_view in, RawFrame& out);

  uint64_t sent() const { return send_seq_; }
  uint64_t received() const { return recv_seq_; }

 private:
  Tag mac(const Nonce& from, const Nonce& to, uint64_t seq, std::string_view header,
          std::string_view payload);

  std::unique_ptr<EVP_MAC_CTX, void (*)(EVP_MAC_CTX*)> ctx_;
  Nonce local_{};
  Nonce remote_{};
  uint64_t send_seq_ = 0;
  uint64_t recv_seq_ = 0;
};

// A fresh random nonce (RAND_bytes); false if the generator failed.
bool randomNonce(Nonce& out);

}  // namespace tandem::cluster
