#include "cluster/peer_protocol.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tandem::cluster {
namespace {

constexpr std::string_view kSecret = "0123456789abcdef-cluster-secret";

state::Record sticky(std::string key, std::string value) {
  state::Record r;
  r.kind = state::Kind::kSticky;
  r.key = std::move(key);
  r.value = std::move(value);
  r.origin = "lb1";
  r.version = 1'700'000'000'000'123;
  r.expires_ms = 1'700'000'060'000;
  r.written_us = 1'700'000'000'000'100;
  return r;
}

state::Record counter() {
  state::Record r;
  r.kind = state::Kind::kRate;
  r.key = std::string("app") + state::kSep + "198.18.0.1" + state::kSep + "42";
  r.expires_ms = 1'700'000'001'000;
  r.written_us = 77;
  r.counts = {{"lb1", 3}, {"lb2", 1ull << 40}};
  return r;
}

Nonce nonceOf(uint8_t b) {
  Nonce n;
  n.fill(b);
  return n;
}

// Two ends of one connection after the handshake: a -> b and b -> a.
struct Link {
  FrameCodec a{kSecret}, b{kSecret};
  Link(const Nonce& na = nonceOf(1), const Nonce& nb = nonceOf(2)) {
    std::string wire;
    a.seal(wire, FrameType::kHello, encodeHello({kProtocolVersion, "a", na}));
    RawFrame f;
    EXPECT_EQ(b.open(wire, f), FrameStatus::kOk);
    wire.clear();
    b.seal(wire, FrameType::kHello, encodeHello({kProtocolVersion, "b", nb}));
    EXPECT_EQ(a.open(wire, f), FrameStatus::kOk);
    a.setNonces(na, nb);
    b.setNonces(nb, na);
  }
};

TEST(PeerProtocol, PayloadsRoundTrip) {
  Hello h{kProtocolVersion, "lb-east-1", nonceOf(7)};
  EXPECT_EQ(decodeHello(encodeHello(h)), h);

  RecordBatch batch;
  batch.full_sync = true;
  batch.records = {sticky("k1", "a1"), counter(), sticky("", "")};
  batch.records[2].kind = state::Kind::kHealth;
  RecordBatch out;
  ASSERT_TRUE(decodeRecords(encodeRecords(batch), out));
  EXPECT_TRUE(out.full_sync);
  EXPECT_EQ(out.records, batch.records);

  EXPECT_EQ(decodeSyncDone(encodeSyncDone({12345}))->records, 12345u);
  EXPECT_EQ(decodePing(encodePing({987654321}))->sent_us, 987654321u);
  auto pong = decodePong(encodePong({5, -6}));
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->echo_us, 5u);
  EXPECT_EQ(pong->unix_us, -6);
}

TEST(PeerProtocol, FramesRoundTripThroughTheCodecs) {
  Link l;
  RecordBatch batch;
  batch.records = {sticky("k", "v"), counter()};
  std::string wire;
  l.a.seal(wire, FrameType::kRecords, encodeRecords(batch));
  l.a.seal(wire, FrameType::kSyncDone, encodeSyncDone({2}));
  l.a.seal(wire, FrameType::kPing, encodePing({42}));
  std::string_view in = wire;
  std::vector<FrameType> types;
  while (!in.empty()) {
    RawFrame f;
    ASSERT_EQ(l.b.open(in, f), FrameStatus::kOk);
    types.push_back(static_cast<FrameType>(f.type));
    if (f.type == static_cast<uint8_t>(FrameType::kRecords)) {
      RecordBatch got;
      ASSERT_TRUE(decodeRecords(f.payload, got));
      EXPECT_EQ(got.records, batch.records);
    }
    in.remove_prefix(f.size);
  }
  EXPECT_EQ(types,
            (std::vector<FrameType>{FrameType::kRecords, FrameType::kSyncDone, FrameType::kPing}));
  // The other direction has its own sequence.
  wire.clear();
  l.b.seal(wire, FrameType::kPong, encodePong({42, 1}));
  RawFrame f;
  EXPECT_EQ(l.a.open(wire, f), FrameStatus::kOk);
}

TEST(PeerProtocol, EveryTruncationIsRejected) {
  RecordBatch batch;
  batch.records = {sticky("key", "value"), counter()};
  const std::string payloads[] = {encodeRecords(batch),
                                  encodeHello({kProtocolVersion, "node", nonceOf(3)}),
                                  encodeSyncDone({1}), encodePing({1}), encodePong({1, 2})};
  for (size_t i = 0; i < std::size(payloads); ++i) {
    for (size_t n = 0; n < payloads[i].size(); ++n) {
      const std::string_view cut(payloads[i].data(), n);
      RecordBatch b;
      const bool decoded = i == 0   ? decodeRecords(cut, b)
                           : i == 1 ? decodeHello(cut).has_value()
                           : i == 2 ? decodeSyncDone(cut).has_value()
                           : i == 3 ? decodePing(cut).has_value()
                                    : decodePong(cut).has_value();
      EXPECT_FALSE(decoded) << "payload " << i << " cut at " << n;
    }
  }
  // Trailing bytes are as bad as missing ones.
  EXPECT_FALSE(decodePing(encodePing({1}) + "x"));
  RecordBatch b;
  EXPECT_FALSE(decodeRecords(payloads[0] + "x", b));
  // A frame cut anywhere is incomplete, never a frame.
  FrameCodec tx(kSecret);
  std::string wire;
  tx.seal(wire, FrameType::kRecords, payloads[0]);
  for (size_t n = 0; n < wire.size(); ++n) {
    FrameCodec rx(kSecret);
    RawFrame f;
    EXPECT_EQ(rx.open(std::string_view(wire.data(), n), f), FrameStatus::kIncomplete) << n;
  }
}

TEST(PeerProtocol, ABadMacIsRejected) {
  FrameCodec tx(kSecret);
  std::string wire;
  tx.seal(wire, FrameType::kPing, encodePing({1}));
  // Any flipped bit: the header checks or the MAC catch it.
  for (size_t i = 0; i < wire.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = wire;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      FrameCodec rx(kSecret);
      RawFrame f;
      EXPECT_NE(rx.open(bad, f), FrameStatus::kOk) << i << "/" << bit;
    }
  }
  // The wrong secret.
  FrameCodec other("another secret of 16+ bytes");
  RawFrame f;
  EXPECT_EQ(other.open(wire, f), FrameStatus::kBadMac);
}

TEST(PeerProtocol, ReplayReorderAndCrossConnectionFramesAreRejected) {
  Link l;
  std::string f1, f2;
  l.a.seal(f1, FrameType::kPing, encodePing({1}));
  l.a.seal(f2, FrameType::kPing, encodePing({2}));
  {
    Link fresh;  // same secret, same nonces: order still matters
    FrameCodec& rx = fresh.b;
    RawFrame f;
    EXPECT_EQ(rx.open(f2, f), FrameStatus::kBadMac);  // reordered
  }
  RawFrame f;
  ASSERT_EQ(l.b.open(f1, f), FrameStatus::kOk);
  EXPECT_EQ(l.b.open(f1, f), FrameStatus::kBadMac);  // replayed (f2 was expected)
  // Moved to another connection (other nonces), at the very sequence it was sealed with.
  Link other(nonceOf(9), nonceOf(2));
  EXPECT_EQ(other.b.open(f1, f), FrameStatus::kBadMac);
  // Reflected back to its sender.
  Link l2;
  std::string g;
  l2.a.seal(g, FrameType::kPing, encodePing({1}));
  EXPECT_EQ(l2.a.open(g, f), FrameStatus::kBadMac);
  // A HELLO replayed into an established connection.
  std::string hello;
  FrameCodec(kSecret).seal(hello, FrameType::kHello, encodeHello({kProtocolVersion, "a", {}}));
  Link l3;
  EXPECT_EQ(l3.b.open(hello, f), FrameStatus::kBadMac);
}

TEST(PeerProtocol, HeaderViolationsAreNamed) {
  FrameCodec rx(kSecret);
  RawFrame f;
  // A length over the limit is refused from its first four bytes.
  EXPECT_EQ(rx.open(std::string("\x00\x10\x00\x01", 4), f), FrameStatus::kBadLength);
  EXPECT_EQ(rx.open(std::string("\x00\x00\x00\x05", 4), f), FrameStatus::kBadLength);
  EXPECT_EQ(rx.open(std::string("\x00\x00\x00\x40\x02", 5), f), FrameStatus::kBadVersion);
  EXPECT_EQ(rx.open(std::string("\x00\x00\x00\x40\x01\x09", 6), f), FrameStatus::kBadType);
  EXPECT_EQ(rx.open(std::string("\x00\x00\x00\x40\x01\x00", 6), f), FrameStatus::kBadType);
}

TEST(PeerProtocol, OversizeAndInconsistentPayloadsAreRejected) {
  state::Record big = sticky(std::string(kMaxKey + 1, 'k'), "v");
  std::string p;
  beginRecords(p, false);
  EXPECT_FALSE(appendRecord(p, big));
  big.key.resize(kMaxKey);
  big.value.assign(kMaxValue + 1, 'v');
  EXPECT_FALSE(appendRecord(p, big));
  state::Record many = counter();
  many.counts.assign(kMaxCounts + 1, {"n", 1});
  EXPECT_FALSE(appendRecord(p, many));
  state::Record bad_kind = sticky("k", "v");
  bad_kind.kind = static_cast<state::Kind>(9);
  EXPECT_FALSE(appendRecord(p, bad_kind));

  // Hand-made: a key length over the limit, a count promising more records than bytes, a kind
  // out of range, unknown flag bits, an empty node id.
  RecordBatch b;
  std::string key_too_long("\x00\x00\x00\x00\x01\x01\x80\x01", 8);
  key_too_long += std::string(40, 'x');
  EXPECT_FALSE(decodeRecords(key_too_long, b));
  EXPECT_FALSE(decodeRecords(std::string("\x00\xff\xff\xff\xff", 5) + std::string(64, '\0'), b));
  std::string ok = encodeRecords({false, {sticky("k", "v")}});
  std::string kind0 = ok;
  kind0[5] = 0;
  EXPECT_FALSE(decodeRecords(kind0, b));
  std::string flags = ok;
  flags[0] = 2;
  EXPECT_FALSE(decodeRecords(flags, b));
  EXPECT_FALSE(decodeHello(std::string("\x01\x00", 2) + std::string(kNonceSize, 'n')));
  // Counts: a node id of length 0.
  std::string zero_node = encodeRecords({false, {counter()}});
  const size_t at = zero_node.find("lb1");
  ASSERT_NE(at, std::string::npos);
  zero_node[at - 1] = 0;
  EXPECT_FALSE(decodeRecords(zero_node, b));
}

TEST(PeerProtocol, LargestRecordFitsAFrame) {
  state::Record r = sticky(std::string(kMaxKey, 'k'), std::string(kMaxValue, 'v'));
  r.origin.assign(kMaxNodeId, 'o');
  r.counts.assign(kMaxCounts, {std::string(kMaxNodeId, 'n'), 1});
  const std::string p = encodeRecords({false, {r}});
  EXPECT_LE(p.size() + kMinFrameBody, kMaxFrame);
  FrameCodec tx(kSecret), rx(kSecret);
  std::string wire;
  tx.seal(wire, FrameType::kRecords, p);
  RawFrame f;
  ASSERT_EQ(rx.open(wire, f), FrameStatus::kOk);
  RecordBatch b;
  ASSERT_TRUE(decodeRecords(f.payload, b));
  EXPECT_EQ(b.records.at(0), r);
}

TEST(PeerProtocol, NoncesAreFresh) {
  Nonce a, b;
  ASSERT_TRUE(randomNonce(a));
  ASSERT_TRUE(randomNonce(b));
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace tandem::cluster
