#include "cluster/peer_protocol.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/log.h"

namespace tandem::cluster {
namespace {

constexpr std::string_view kMacLabel = "tandem-peer";

void putU8(std::string& out, uint8_t v) { out.push_back(static_cast<char>(v)); }
void putU16(std::string& out, uint16_t v) {
  putU8(out, static_cast<uint8_t>(v >> 8));
  putU8(out, static_cast<uint8_t>(v));
}
void putU32(std::string& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) putU8(out, static_cast<uint8_t>(v >> s));
}
void putU64(std::string& out, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) putU8(out, static_cast<uint8_t>(v >> s));
}

uint64_t readBE(const char* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// Bounds-checked reader: every read fails (and keeps failing) once the input is short.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }
  size_t left() const { return in_.size() - pos_; }

  uint64_t uint(size_t n) {
    if (!take(n)) return 0;
    return readBE(in_.data() + pos_ - n, n);
  }
  std::string_view bytes(size_t n) {
    if (!take(n)) return {};
    return in_.substr(pos_ - n, n);
  }
  // A string with a length prefix of `len_bytes` bytes, at most `max` (and at least `min`) long.
  bool str(size_t len_bytes, size_t min, size_t max, std::string& out) {
    const uint64_t n = uint(len_bytes);
    if (!ok_ || n < min || n > max) return fail();
    std::string_view b = bytes(static_cast<size_t>(n));
    if (!ok_) return false;
    out.assign(b);
    return true;
  }
  bool fail() {
    ok_ = false;
    return false;
  }

 private:
  bool take(size_t n) {
    if (!ok_ || left() < n) return fail();
    pos_ += n;
    return true;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

EVP_MAC* hmacAlgorithm() {
  static EVP_MAC* const mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

[[noreturn]] void cryptoFailure(const char* what) {
  log::error("peer protocol: OpenSSL {} failed", what);
  std::abort();  // cannot happen with a working libcrypto
}

}  // namespace

// ---- payloads ----

std::string encodeHello(const Hello& h) {
  std::string out;
  putU8(out, h.version);
  const size_t n = std::min(h.node_id.size(), kMaxNodeId);  // ids are validated at start
  putU8(out, static_cast<uint8_t>(n));
  out.append(h.node_id, 0, n);
  out.append(reinterpret_cast<const char*>(h.nonce.data()), h.nonce.size());
  return out;
}

std::optional<Hello> decodeHello(std::string_view payload) {
  Reader r(payload);
  Hello h;
  h.version = static_cast<uint8_t>(r.uint(1));
  if (!r.str(1, 1, kMaxNodeId, h.node_id)) return std::nullopt;
  std::string_view n = r.bytes(kNonceSize);
  if (!r.done()) return std::nullopt;
  std::memcpy(h.nonce.data(), n.data(), kNonceSize);
  return h;
}

bool appendRecord(std::string& out, const state::Record& rec) {
  const auto kind = static_cast<uint8_t>(rec.kind);
  if (kind == 0 || kind > state::kMaxKind || rec.key.size() > kMaxKey ||
      rec.origin.size() > kMaxNodeId || rec.value.size() > kMaxValue ||
      rec.counts.size() > kMaxCounts) {
    return false;
  }
  for (const auto& c : rec.counts) {
    if (c.first.empty() || c.first.size() > kMaxNodeId) return false;
  }
  putU8(out, kind);
  putU16(out, static_cast<uint16_t>(rec.key.size()));
  out.append(rec.key);
  putU8(out, static_cast<uint8_t>(rec.origin.size()));
  out.append(rec.origin);
  putU64(out, rec.version);
  putU64(out, static_cast<uint64_t>(rec.expires_ms));
  putU64(out, static_cast<uint64_t>(rec.written_us));
  putU16(out, static_cast<uint16_t>(rec.value.size()));
  out.append(rec.value);
  putU16(out, static_cast<uint16_t>(rec.counts.size()));
  for (const auto& [node, count] : rec.counts) {
    putU8(out, static_cast<uint8_t>(node.size()));
    out.append(node);
    putU64(out, count);
  }
  return true;
}

void beginRecords(std::string& payload, bool full_sync) {
  payload.clear();
  putU8(payload, full_sync ? 1 : 0);
  putU32(payload, 0);
}

void finishRecords(std::string& payload, uint32_t count) {
  for (int i = 0; i < 4; ++i) payload[1 + i] = static_cast<char>(count >> (24 - 8 * i));
}

std::string encodeRecords(const RecordBatch& batch) {
  std::string out;
  beginRecords(out, batch.full_sync);
  uint32_t n = 0;
  for (const auto& r : batch.records) n += appendRecord(out, r) ? 1 : 0;
  finishRecords(out, n);
  return out;
}

bool decodeRecords(std::string_view payload, RecordBatch& out) {
  Reader r(payload);
  const uint64_t flags = r.uint(1);
  const uint64_t count = r.uint(4);
  if (!r.ok() || (flags & ~uint64_t{1}) != 0) return false;
  // The count cannot promise more records than the bytes left could hold.
  if (count > r.left() / kMinRecordSize) return false;
  out.full_sync = flags & 1;
  out.records.clear();
  out.records.reserve(static_cast<size_t>(count));
  for (uint64_t i = 0; i < count; ++i) {
    state::Record rec;
    const auto kind = static_cast<uint8_t>(r.uint(1));
    if (!r.ok() || kind == 0 || kind > state::kMaxKind) return false;
    rec.kind = static_cast<state::Kind>(kind);
    if (!r.str(2, 0, kMaxKey, rec.key) || !r.str(1, 0, kMaxNodeId, rec.origin)) return false;
    rec.version = r.uint(8);
    rec.expires_ms = static_cast<int64_t>(r.uint(8));
    rec.written_us = static_cast<int64_t>(r.uint(8));
    if (!r.str(2, 0, kMaxValue, rec.value)) return false;
    const uint64_t ncounts = r.uint(2);
    // Each entry takes at least 1 + 1 + 8 bytes.
    if (!r.ok() || ncounts > kMaxCounts || ncounts > r.left() / 10) return false;
    rec.counts.reserve(static_cast<size_t>(ncounts));
    for (uint64_t c = 0; c < ncounts; ++c) {
      std::string node;
      if (!r.str(1, 1, kMaxNodeId, node)) return false;
      const uint64_t v = r.uint(8);
      if (!r.ok()) return false;
      rec.counts.emplace_back(std::move(node), v);
    }
    out.records.push_back(std::move(rec));
  }
  return r.done();
}

std::string encodeSyncDone(const SyncDone& s) {
  std::string out;
  putU64(out, s.records);
  return out;
}

std::optional<SyncDone> decodeSyncDone(std::string_view payload) {
  Reader r(payload);
  SyncDone s{r.uint(8)};
  if (!r.done()) return std::nullopt;
  return s;
}

std::string encodePing(const Ping& p) {
  std::string out;
  putU64(out, p.sent_us);
  return out;
}

std::optional<Ping> decodePing(std::string_view payload) {
  Reader r(payload);
  Ping p{r.uint(8)};
  if (!r.done()) return std::nullopt;
  return p;
}

std::string encodePong(const Pong& p) {
  std::string out;
  putU64(out, p.echo_us);
  putU64(out, static_cast<uint64_t>(p.unix_us));
  return out;
}

std::optional<Pong> decodePong(std::string_view payload) {
  Reader r(payload);
  Pong p;
  p.echo_us = r.uint(8);
  p.unix_us = static_cast<int64_t>(r.uint(8));
  if (!r.done()) return std::nullopt;
  return p;
}

// ---- framing ----

const char* describe(FrameStatus s) {
  switch (s) {
    case FrameStatus::kOk:
      return "ok";
    case FrameStatus::kIncomplete:
      return "incomplete frame";
    case FrameStatus::kBadLength:
      return "bad frame length";
    case FrameStatus::kBadVersion:
      return "unknown protocol version";
    case FrameStatus::kBadType:
      return "unknown frame type";
    case FrameStatus::kBadMac:
      return "bad MAC (wrong secret, replayed or reordered frame)";
  }
  return "?";
}

FrameStatus splitFrame(std::string_view in, RawFrame& out) {
  if (in.size() < kLengthSize) return FrameStatus::kIncomplete;
  const uint64_t len = readBE(in.data(), kLengthSize);
  if (len < kMinFrameBody || len > kMaxFrame) return FrameStatus::kBadLength;
  // Version and type are judged as soon as they arrive: a peer speaking another protocol is told
  // so without waiting for a frame that may never complete.
  if (in.size() > kLengthSize && static_cast<uint8_t>(in[kLengthSize]) != kProtocolVersion) {
    return FrameStatus::kBadVersion;
  }
  if (in.size() > kLengthSize + 1) {
    const auto type = static_cast<uint8_t>(in[kLengthSize + 1]);
    if (type == 0 || type > kMaxFrameType) return FrameStatus::kBadType;
  }
  if (in.size() < kLengthSize + len) return FrameStatus::kIncomplete;
  out.version = static_cast<uint8_t>(in[kLengthSize]);
  out.type = static_cast<uint8_t>(in[kLengthSize + 1]);
  out.size = kLengthSize + static_cast<size_t>(len);
  out.payload = in.substr(kLengthSize + 2, static_cast<size_t>(len) - 2 - kTagSize);
  out.tag = in.substr(out.size - kTagSize, kTagSize);
  return FrameStatus::kOk;
}

FrameCodec::FrameCodec(std::string_view secret) : ctx_(nullptr, EVP_MAC_CTX_free) {
  EVP_MAC* alg = hmacAlgorithm();
  if (!alg) cryptoFailure("EVP_MAC_fetch(HMAC)");
  ctx_.reset(EVP_MAC_CTX_new(alg));
  if (!ctx_) cryptoFailure("EVP_MAC_CTX_new");
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_END};
  // HMAC pads keys with zeros, so an empty secret is the same key as one zero byte (OpenSSL
  // refuses an empty key). The replicator requires at least 16 bytes anyway.
  static const unsigned char kZero = 0;
  const auto* key = secret.empty() ? &kZero : reinterpret_cast<const unsigned char*>(secret.data());
  if (EVP_MAC_init(ctx_.get(), key, secret.empty() ? 1 : secret.size(), params) != 1) {
    cryptoFailure("EVP_MAC_init");
  }
}

FrameCodec::~FrameCodec() = default;

void FrameCodec::setNonces(const Nonce& local, const Nonce& remote) {
  local_ = local;
  remote_ = remote;
}

Tag FrameCodec::mac(const Nonce& from, const Nonce& to, uint64_t seq, std::string_view header,
                    std::string_view payload) {
  std::string pre;
  pre.reserve(kMacLabel.size() + 2 * kNonceSize + 8 + header.size());
  pre.append(kMacLabel);
  pre.append(reinterpret_cast<const char*>(from.data()), from.size());
  pre.append(reinterpret_cast<const char*>(to.data()), to.size());
  putU64(pre, seq);
  pre.append(header);
  EVP_MAC_CTX* c = ctx_.get();
  Tag tag{};
  size_t n = 0;
  // A null key re-initialises with the key given at construction.
  if (EVP_MAC_init(c, nullptr, 0, nullptr) != 1 ||
      EVP_MAC_update(c, reinterpret_cast<const unsigned char*>(pre.data()), pre.size()) != 1 ||
      EVP_MAC_update(c, reinterpret_cast<const unsigned char*>(payload.data()), payload.size()) !=
          1 ||
      EVP_MAC_final(c, tag.data(), &n, tag.size()) != 1 || n != kTagSize) {
    cryptoFailure("HMAC");
  }
  return tag;
}

void FrameCodec::seal(std::string& out, FrameType type, std::string_view payload) {
  std::string header;
  putU32(header, static_cast<uint32_t>(2 + payload.size() + kTagSize));
  putU8(header, kProtocolVersion);
  putU8(header, static_cast<uint8_t>(type));
  const Tag tag = mac(local_, remote_, send_seq_++, header, payload);
  out.reserve(out.size() + header.size() + payload.size() + kTagSize);
  out.append(header);
  out.append(payload);
  out.append(reinterpret_cast<const char*>(tag.data()), tag.size());
}

FrameStatus FrameCodec::open(std::string_view in, RawFrame& out) {
  RawFrame f;
  const FrameStatus st = splitFrame(in, f);
  if (st != FrameStatus::kOk) return st;
  const Tag want = mac(remote_, local_, recv_seq_, in.substr(0, kLengthSize + 2), f.payload);
  if (CRYPTO_memcmp(want.data(), f.tag.data(), kTagSize) != 0) return FrameStatus::kBadMac;
  ++recv_seq_;
  out = f;
  return FrameStatus::kOk;
}

bool randomNonce(Nonce& out) { return RAND_bytes(out.data(), static_cast<int>(out.size())) == 1; }

}  // namespace tandem::cluster
