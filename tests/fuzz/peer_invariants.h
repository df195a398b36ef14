#pragma once
// What fuzz_peer checks on arbitrary bytes, shared with tests/unit/cluster's corpus replay:
// - as a byte stream on a fresh connection (the fixed secret below, all-zero nonces, as before the
//   handshake), frames open in order until the first error; an opened frame lies inside the input;
// - ignoring MACs (so mutated payloads still reach the decoders), every frame the splitter accepts
//   has its payload decoded; whatever decodes re-encodes to the very same bytes (the encoding is
//   canonical), and a re-sealed copy opens on the receiving side with the same payload.
// Crashes, sanitizer reports and allocations beyond the input's size are the fuzzer's business.
#include <string>
#include <string_view>

#include "cluster/peer_protocol.h"

namespace tandem::cluster::fuzz {

inline constexpr std::string_view kSecret = "tandem fuzz secret, 32 bytes...";

// Decodes a payload of `type` and checks the canonical re-encoding; "" if fine (or undecodable).
inline std::string checkPayload(uint8_t type, std::string_view payload) {
  std::string again;
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello: {
      auto h = decodeHello(payload);
      if (!h) return {};
      again = encodeHello(*h);
      break;
    }
    case FrameType::kRecords: {
      RecordBatch b;
      if (!decodeRecords(payload, b)) return {};
      if (b.records.size() > payload.size() / kMinRecordSize) return "more records than bytes";
      again = encodeRecords(b);
      break;
    }
    case FrameType::kSyncDone: {
      auto s = decodeSyncDone(payload);
      if (!s) return {};
      again = encodeSyncDone(*s);
      break;
    }
    case FrameType::kPing: {
      auto p = decodePing(payload);
      if (!p) return {};
      again = encodePing(*p);
      break;
    }
    case FrameType::kPong: {
      auto p = decodePong(payload);
      if (!p) return {};
      again = encodePong(*p);
      break;
    }
    default:
      return "splitter accepted unknown type " + std::to_string(type);
  }
  if (again != payload) return "type " + std::to_string(type) + ": re-encoding differs";
  // Through the codecs: a sealed copy opens as the same frame.
  FrameCodec tx(kSecret), rx(kSecret);
  std::string wire;
  tx.seal(wire, static_cast<FrameType>(type), again);
  RawFrame f;
  if (rx.open(wire, f) != FrameStatus::kOk) return "re-sealed frame does not open";
  if (f.size != wire.size() || f.payload != again || f.type != type) return "re-sealed mismatch";
  return {};
}

inline std::string checkPeer(std::string_view data) {
  {
    FrameCodec rx(kSecret);
    size_t off = 0;
    while (off < data.size()) {
      RawFrame f;
      if (rx.open(data.substr(off), f) != FrameStatus::kOk) break;
      if (f.size < kLengthSize + kMinFrameBody || f.size > data.size() - off) {
        return "opened frame outside the input";
      }
      if (std::string err = checkPayload(f.type, f.payload); !err.empty()) return err;
      off += f.size;
    }
  }
  size_t off = 0;
  while (off < data.size()) {
    RawFrame f;
    if (splitFrame(data.substr(off), f) != FrameStatus::kOk) break;
    if (f.size > data.size() - off || f.payload.size() + kTagSize + 2 + kLengthSize != f.size) {
      return "split frame sizes inconsistent";
    }
    if (std::string err = checkPayload(f.type, f.payload); !err.empty()) return err;
    off += f.size;
  }
  return {};
}

}  // namespace tandem::cluster::fuzz
