#include "ha/vrrp_packet.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace tandem::ha {
namespace {

constexpr uint32_t kLb1 = 0xC612000B;  // 198.18.0.11
constexpr uint32_t kLb2 = 0xC612000C;  // 198.18.0.12
constexpr uint32_t kVip = 0xC6120064;  // 198.18.0.100

// keepalived 2.2.7, captured (FACTS.md): IPv4 header, then the 12 VRRP bytes.
const std::vector<uint8_t> kKeepalivedIp = {
    0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x14, 0x7d, 0xc6, 0x12, 0x00, 0x0b,
    0xe0, 0x00, 0x00, 0x12, 0x31, 0x33, 0x96, 0x01, 0x00, 0x0a, 0xcb, 0x9d, 0xc6, 0x12, 0x00, 0x64};
const std::vector<uint8_t> kKeepalivedVrrp(kKeepalivedIp.begin() + 20, kKeepalivedIp.end());

Advert keepalivedAdvert() { return Advert{51, 150, 10, {kVip}}; }

Reject rejectionOf(std::span<const uint8_t> payload, uint32_t src = kLb1,
                   uint32_t dst = kVrrpMulticast) {
  auto r = decode(payload, src, dst);
  EXPECT_FALSE(r.has_value());
  return r ? Reject::kTooShort : rejectOf(r.error());
}

// Re-computes the checksum after a test changed a field, so that the check under test is reached.
std::vector<uint8_t> withChecksum(std::vector<uint8_t> p, uint32_t src = kLb1,
                                  uint32_t dst = kVrrpMulticast) {
  p[6] = p[7] = 0;
  uint64_t sum = (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + 112 + p.size();
  for (size_t i = 0; i < p.size(); i += 2) {
    sum += (uint32_t{p[i]} << 8) | (i + 1 < p.size() ? p[i + 1] : 0);
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  p[6] = static_cast<uint8_t>((~sum >> 8) & 0xff);
  p[7] = static_cast<uint8_t>(~sum & 0xff);
  return p;
}

TEST(VrrpPacket, DecodesKeepalivedAdvert) {
  auto ip = checkIpHeader(kKeepalivedIp);
  ASSERT_TRUE(ip) << ip.error().message;
  EXPECT_EQ(ip->src_ip, kLb1);
  EXPECT_EQ(ip->dst_ip, kVrrpMulticast);
  ASSERT_EQ(ip->payload.size(), 12u);
  auto advert = decode(ip->payload, ip->src_ip, ip->dst_ip);
  ASSERT_TRUE(advert) << advert.error().message;
  EXPECT_EQ(advert->vrid, 51);
  EXPECT_EQ(advert->priority, 150);
  EXPECT_EQ(advert->interval_cs, 10);
  EXPECT_EQ(advert->addresses, std::vector<uint32_t>{kVip});
}

TEST(VrrpPacket, EncodesKeepalivedAdvertByteForByte) {
  const std::vector<uint8_t> bytes = encode(keepalivedAdvert(), kLb1, kVrrpMulticast);
  EXPECT_EQ(bytes, kKeepalivedVrrp);
  EXPECT_EQ(bytes[6], 0xcb);
  EXPECT_EQ(bytes[7], 0x9d);
}

TEST(VrrpPacket, UnicastChecksumUsesThePeerAddress) {
  const std::vector<uint8_t> unicast = encode(keepalivedAdvert(), kLb1, kLb2);
  EXPECT_NE(unicast, kKeepalivedVrrp);
  // Only the checksum differs, by the difference of the destination address in the pseudo-header.
  EXPECT_TRUE(std::equal(unicast.begin(), unicast.begin() + 6, kKeepalivedVrrp.begin()));
  EXPECT_TRUE(std::equal(unicast.begin() + 8, unicast.end(), kKeepalivedVrrp.begin() + 8));
  EXPECT_EQ(unicast[6], 0xe5);  // 0xe591, checked by hand and in the fuzz seed unicast_peer
  EXPECT_EQ(unicast[7], 0x91);
  ASSERT_TRUE(decode(unicast, kLb1, kLb2));
  EXPECT_EQ(rejectionOf(unicast, kLb1, kVrrpMulticast), Reject::kChecksum);
  EXPECT_EQ(rejectionOf(kKeepalivedVrrp, kLb1, kLb2), Reject::kChecksum);
  // The source counts too: the same bytes from another sender are refused.
  EXPECT_EQ(rejectionOf(kKeepalivedVrrp, kLb2, kVrrpMulticast), Reject::kChecksum);
}

TEST(VrrpPacket, PriorityZeroAndManyAddresses) {
  Advert stop = keepalivedAdvert();
  stop.priority = 0;
  auto back = decode(encode(stop, kLb1, kVrrpMulticast), kLb1, kVrrpMulticast);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, stop);

  Advert full{255, 255, kVrrpMaxIntervalCs, {}};
  for (uint32_t i = 0; i < kVrrpMaxAddresses; ++i) full.addresses.push_back(0x0A000000 + i);
  const auto bytes = encode(full, kLb1, kVrrpMulticast);
  EXPECT_EQ(bytes.size(), 8u + 4 * 255);
  EXPECT_EQ(bytes[3], 255);
  EXPECT_EQ(bytes[4], 0x0f);  // reserved bits zero, interval 4095 fills the 12 bits
  EXPECT_EQ(bytes[5], 0xff);
  back = decode(bytes, kLb1, kVrrpMulticast);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, full);
}

TEST(VrrpPacketDeathTest, EncodeAbortsOnImpossibleAdverts) {
  // Config validation keeps these out; a malformed advert must never reach the wire.
  EXPECT_DEATH(encode(Advert{51, 100, 10, {}}, kLb1, kVrrpMulticast), "");
  EXPECT_DEATH(encode(Advert{51, 100, 0, {kVip}}, kLb1, kVrrpMulticast), "");
  EXPECT_DEATH(encode(Advert{51, 100, 4096, {kVip}}, kLb1, kVrrpMulticast), "");
  EXPECT_DEATH(encode(Advert{51, 100, 10, std::vector<uint32_t>(256, kVip)}, kLb1, kVrrpMulticast),
               "");
}

TEST(VrrpPacket, ReservedBitsAreIgnoredOnReceive) {
  std::vector<uint8_t> p = kKeepalivedVrrp;
  p[4] |= 0xf0;
  auto advert = decode(withChecksum(p), kLb1, kVrrpMulticast);
  ASSERT_TRUE(advert);
  EXPECT_EQ(advert->interval_cs, 10);
}

TEST(VrrpPacket, ChecksumNegativeZeroIsAccepted) {
  // Find an advert whose checksum comes out as 0x0000; 0xffff is the same one's-complement zero
  // (RFC 1071), and keepalived accepts both. (Found by fuzz_vrrp.)
  Advert a = keepalivedAdvert();
  std::vector<uint8_t> bytes;
  for (uint32_t low = 0; low <= 0xffff; ++low) {
    a.addresses[0] = 0xC6120000 | low;
    bytes = encode(a, kLb1, kVrrpMulticast);
    if (bytes[6] == 0 && bytes[7] == 0) break;
  }
  ASSERT_EQ(bytes[6] | bytes[7], 0);
  EXPECT_TRUE(decode(bytes, kLb1, kVrrpMulticast));
  bytes[6] = bytes[7] = 0xff;
  auto back = decode(bytes, kLb1, kVrrpMulticast);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, a);
}

TEST(VrrpPacket, RejectsTooShort) {
  for (size_t n = 0; n < kVrrpHeaderSize; ++n) {
    EXPECT_EQ(rejectionOf(std::span(kKeepalivedVrrp).first(n)), Reject::kTooShort) << n;
  }
}

TEST(VrrpPacket, RejectsVersion) {
  for (uint8_t version : {0, 1, 2, 4, 15}) {
    std::vector<uint8_t> p = kKeepalivedVrrp;
    p[0] = static_cast<uint8_t>((version << 4) | 1);
    EXPECT_EQ(rejectionOf(withChecksum(p)), Reject::kVersion);
  }
}

TEST(VrrpPacket, RejectsType) {
  for (uint8_t type : {0, 2, 15}) {
    std::vector<uint8_t> p = kKeepalivedVrrp;
    p[0] = static_cast<uint8_t>(0x30 | type);
    EXPECT_EQ(rejectionOf(withChecksum(p)), Reject::kType);
  }
}

TEST(VrrpPacket, RejectsLengthThatDisagreesWithTheCount) {
  std::vector<uint8_t> p = kKeepalivedVrrp;
  p[3] = 2;  // says two addresses, carries one
  EXPECT_EQ(rejectionOf(withChecksum(p)), Reject::kLength);
  p = kKeepalivedVrrp;
  p.insert(p.end(), {1, 2, 3, 4});  // carries two, says one
  EXPECT_EQ(rejectionOf(withChecksum(p)), Reject::kLength);
  p = kKeepalivedVrrp;
  p.pop_back();  // truncated address
  EXPECT_EQ(rejectionOf(p), Reject::kLength);
  p = kKeepalivedVrrp;
  p.push_back(0);  // one stray byte
  EXPECT_EQ(rejectionOf(p), Reject::kLength);
}

TEST(VrrpPacket, RejectsChecksum) {
  for (size_t i = 0; i < kKeepalivedVrrp.size(); ++i) {
    std::vector<uint8_t> p = kKeepalivedVrrp;
    if (i == 0 || i == 3) continue;  // those reach version/type/length first
    p[i] ^= 0x01;
    EXPECT_EQ(rejectionOf(p), Reject::kChecksum) << "byte " << i;
  }
  auto r = decode(
      std::vector<uint8_t>{0x31, 0x33, 0x96, 0x01, 0x00, 0x0a, 0x12, 0x34, 0xc6, 0x12, 0x00, 0x64},
      kLb1, kVrrpMulticast);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "vrrp: checksum: checksum 0x1234");
  EXPECT_EQ(r.error().source, ErrorSource::kDownstream);
  EXPECT_FALSE(r.error().retryable);
}

TEST(VrrpPacket, RejectsZeroAddresses) {
  std::vector<uint8_t> p(kKeepalivedVrrp.begin(), kKeepalivedVrrp.begin() + 8);
  p[3] = 0;
  EXPECT_EQ(rejectionOf(withChecksum(p)), Reject::kAddressCount);
}

TEST(VrrpPacket, RejectsZeroInterval) {
  std::vector<uint8_t> p = kKeepalivedVrrp;
  p[4] = 0xf0;  // only reserved bits set: the interval itself is 0
  p[5] = 0;
  EXPECT_EQ(rejectionOf(withChecksum(p)), Reject::kInterval);
}

TEST(VrrpPacket, EveryRejectionHasAName) {
  for (size_t i = 0; i < kRejectCount; ++i) {
    EXPECT_STRNE(rejectName(static_cast<Reject>(i)), "unknown") << i;
  }
  EXPECT_STREQ(rejectName(Reject::kTooShort), "too_short");
  EXPECT_STREQ(rejectName(Reject::kAddressCount), "address_count");
}

// ---- IPv4 header ----

Reject ipRejection(const std::vector<uint8_t>& packet) {
  auto r = checkIpHeader(packet);
  EXPECT_FALSE(r.has_value());
  return r ? Reject::kTooShort : rejectOf(r.error());
}

TEST(VrrpIpHeader, RejectsTtlOtherThan255) {
  for (uint8_t ttl : {0, 1, 64, 254}) {
    std::vector<uint8_t> p = kKeepalivedIp;
    p[8] = ttl;
    EXPECT_EQ(ipRejection(p), Reject::kTtl) << int{ttl};
  }
}

TEST(VrrpIpHeader, RejectsOtherProtocols) {
  std::vector<uint8_t> p = kKeepalivedIp;
  p[9] = 17;
  EXPECT_EQ(ipRejection(p), Reject::kProtocol);
}

TEST(VrrpIpHeader, RejectsMalformedHeaders) {
  EXPECT_EQ(ipRejection({}), Reject::kTooShort);
  EXPECT_EQ(ipRejection(std::vector<uint8_t>(kKeepalivedIp.begin(), kKeepalivedIp.begin() + 19)),
            Reject::kTooShort);
  std::vector<uint8_t> p = kKeepalivedIp;
  p[0] = 0x65;  // IPv6 version nibble
  EXPECT_EQ(ipRejection(p), Reject::kIpHeader);
  p = kKeepalivedIp;
  p[0] = 0x44;  // IHL 16 bytes
  EXPECT_EQ(ipRejection(p), Reject::kIpHeader);
  p = kKeepalivedIp;
  p[3] = 19;  // total length shorter than the header
  EXPECT_EQ(ipRejection(p), Reject::kIpHeader);
  p = kKeepalivedIp;
  p[3] = 0x21;  // total length beyond what was received
  EXPECT_EQ(ipRejection(p), Reject::kTooShort);
  p = kKeepalivedIp;
  p[0] = 0x4f;  // IHL 60 bytes: longer than the packet
  EXPECT_EQ(ipRejection(p), Reject::kIpHeader);
  p = kKeepalivedIp;
  p[6] = 0x20;  // more fragments
  EXPECT_EQ(ipRejection(p), Reject::kIpHeader);
  p = kKeepalivedIp;
  p[7] = 0x01;  // fragment offset
  EXPECT_EQ(ipRejection(p), Reject::kIpHeader);
  p = kKeepalivedIp;
  p[6] = 0x40;  // don't-fragment is fine
  EXPECT_TRUE(checkIpHeader(p));
}

TEST(VrrpIpHeader, OptionsAndPaddingAreSkipped) {
  // IHL 6 (one option word), and 6 bytes of Ethernet padding past the total length.
  std::vector<uint8_t> p(kKeepalivedIp.begin(), kKeepalivedIp.begin() + 20);
  p[0] = 0x46;
  p[3] = 0x24;
  p.insert(p.end(), {0x94, 0x04, 0x00, 0x00});  // router alert
  p.insert(p.end(), kKeepalivedVrrp.begin(), kKeepalivedVrrp.end());
  p.insert(p.end(), 6, 0);
  auto ip = checkIpHeader(p);
  ASSERT_TRUE(ip) << ip.error().message;
  EXPECT_EQ(std::vector<uint8_t>(ip->payload.begin(), ip->payload.end()), kKeepalivedVrrp);
  EXPECT_TRUE(decode(ip->payload, ip->src_ip, ip->dst_ip));
}

TEST(VrrpPacket, RandomRoundTrips) {
  std::mt19937 rng(5798);
  for (int i = 0; i < 2000; ++i) {
    Advert a;
    a.vrid = static_cast<uint8_t>(rng());
    a.priority = static_cast<uint8_t>(rng());
    a.interval_cs = static_cast<uint16_t>(1 + rng() % kVrrpMaxIntervalCs);
    const size_t n = 1 + rng() % (i % 10 == 0 ? kVrrpMaxAddresses : 4);
    for (size_t k = 0; k < n; ++k) a.addresses.push_back(static_cast<uint32_t>(rng()));
    const uint32_t src = static_cast<uint32_t>(rng());
    const uint32_t dst = i % 2 ? kVrrpMulticast : static_cast<uint32_t>(rng());
    const auto bytes = encode(a, src, dst);
    ASSERT_EQ(bytes.size(), 8 + 4 * n);
    auto back = decode(bytes, src, dst);
    ASSERT_TRUE(back) << back.error().message;
    ASSERT_EQ(*back, a);
    // Any single flipped bit is caught, by an earlier check or by the checksum, which also covers
    // the reserved bits that decode otherwise ignores.
    std::vector<uint8_t> flipped = bytes;
    flipped[rng() % flipped.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    EXPECT_FALSE(decode(flipped, src, dst)) << "iteration " << i;
  }
}

}  // namespace
}  // namespace tandem::ha
