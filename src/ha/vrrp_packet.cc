#include "ha/vrrp_packet.h"

#include <fmt/format.h>

#include <cstdlib>

namespace tandem::ha {
namespace {

uint16_t load16(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint16_t>((b[at] << 8) | b[at + 1]);
}

uint32_t load32(std::span<const uint8_t> b, size_t at) {
  return (uint32_t{b[at]} << 24) | (uint32_t{b[at + 1]} << 16) | (uint32_t{b[at + 2]} << 8) |
         uint32_t{b[at + 3]};
}

void store16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}

void store32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  b[at] = static_cast<uint8_t>(v >> 24);
  b[at + 1] = static_cast<uint8_t>(v >> 16);
  b[at + 2] = static_cast<uint8_t>(v >> 8);
  b[at + 3] = static_cast<uint8_t>(v);
}

// The Internet checksum (RFC 1071) of the IPv4 pseudo-header followed by `vrrp` (RFC 5798 §5.2.8,
// which points at the upper-layer pseudo-header of RFC 2460 §8.1; for IPv4 it is the one of
// UDP/TCP). Over a message whose checksum field is filled in, a correct packet gives 0.
uint16_t checksum(std::span<const uint8_t> vrrp, uint32_t src_ip, uint32_t dst_ip) {
  uint64_t sum = (src_ip >> 16) + (src_ip & 0xffff) + (dst_ip >> 16) + (dst_ip & 0xffff) +
                 kVrrpProtocol + vrrp.size();
  size_t i = 0;
  for (; i + 1 < vrrp.size(); i += 2) sum += load16(vrrp, i);
  if (i < vrrp.size()) sum += uint32_t{vrrp[i]} << 8;  // odd length: pad with a zero byte
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

tl::unexpected<Error> reject(Reject reason, std::string detail) {
  return fail(ErrorSource::kDownstream, static_cast<int>(reason),
              fmt::format("vrrp: {}: {}", rejectName(reason), detail));
}

}  // namespace

const char* rejectName(Reject reason) {
  switch (reason) {
    case Reject::kTooShort:
      return "too_short";
    case Reject::kIpHeader:
      return "ip_header";
    case Reject::kTtl:
      return "ttl";
    case Reject::kProtocol:
      return "protocol";
    case Reject::kVersion:
      return "version";
    case Reject::kType:
      return "type";
    case Reject::kLength:
      return "length";
    case Reject::kChecksum:
      return "checksum";
    case Reject::kAddressCount:
      return "address_count";
    case Reject::kInterval:
      return "interval";
  }
  return "unknown";
}

std::vector<uint8_t> encode(const Advert& advert, uint32_t src_ip, uint32_t dst_ip) {
  if (advert.addresses.empty() || advert.addresses.size() > kVrrpMaxAddresses ||
      advert.interval_cs == 0 || advert.interval_cs > kVrrpMaxIntervalCs) {
    std::abort();  // config validation keeps these in range; a wrong packet must never leave
  }
  std::vector<uint8_t> out(kVrrpHeaderSize + 4 * advert.addresses.size());
  out[0] = static_cast<uint8_t>((kVrrpVersion << 4) | kVrrpTypeAdvert);
  out[1] = advert.vrid;
  out[2] = advert.priority;
  out[3] = static_cast<uint8_t>(advert.addresses.size());
  store16(out, 4, advert.interval_cs);  // the 4 reserved bits above it stay 0 (§5.2.6)
  for (size_t i = 0; i < advert.addresses.size(); ++i) store32(out, 8 + 4 * i, advert.addresses[i]);
  store16(out, 6, checksum(out, src_ip, dst_ip));  // computed with the field still 0
  return out;
}

Result<Advert> decode(std::span<const uint8_t> p, uint32_t src_ip, uint32_t dst_ip) {
  if (p.size() < kVrrpHeaderSize)
    return reject(Reject::kTooShort, fmt::format("{} bytes", p.size()));
  if (const int version = p[0] >> 4; version != kVrrpVersion) {
    return reject(Reject::kVersion, fmt::format("version {}", version));
  }
  if (const int type = p[0] & 0x0f; type != kVrrpTypeAdvert) {
    return reject(Reject::kType, fmt::format("type {}", type));
  }
  const size_t count = p[3];
  if (p.size() != kVrrpHeaderSize + 4 * count) {
    return reject(Reject::kLength, fmt::format("{} bytes for {} addresses", p.size(), count));
  }
  if (checksum(p, src_ip, dst_ip) != 0) {
    return reject(Reject::kChecksum, fmt::format("checksum {:#06x}", load16(p, 6)));
  }
  if (count == 0) return reject(Reject::kAddressCount, "no addresses");
  Advert advert;
  advert.vrid = p[1];
  advert.priority = p[2];
  advert.interval_cs = load16(p, 4) & kVrrpMaxIntervalCs;  // ignore the reserved bits (§5.2.6)
  if (advert.interval_cs == 0) return reject(Reject::kInterval, "max advert interval 0");
  advert.addresses.reserve(count);
  for (size_t i = 0; i < count; ++i) advert.addresses.push_back(load32(p, 8 + 4 * i));
  return advert;
}

Result<IpPacket> checkIpHeader(std::span<const uint8_t> ip) {
  constexpr size_t kMinIpHeader = 20;
  if (ip.size() < kMinIpHeader)
    return reject(Reject::kTooShort, fmt::format("{} bytes", ip.size()));
  if (const int version = ip[0] >> 4; version != 4) {
    return reject(Reject::kIpHeader, fmt::format("IP version {}", version));
  }
  const size_t header_len = size_t{ip[0] & 0x0fu} * 4;
  const size_t total_len = load16(ip, 2);
  if (header_len < kMinIpHeader || total_len < header_len) {
    return reject(Reject::kIpHeader,
                  fmt::format("IHL {} bytes, total length {}", header_len, total_len));
  }
  if (total_len > ip.size()) {
    return reject(Reject::kTooShort,
                  fmt::format("total length {} but {} bytes received", total_len, ip.size()));
  }
  // More-fragments flag or an offset: raw sockets see reassembled datagrams, so this is garbage.
  if ((load16(ip, 6) & 0x3fff) != 0) return reject(Reject::kIpHeader, "fragment");
  if (ip[8] != kVrrpTtl) return reject(Reject::kTtl, fmt::format("TTL {}", ip[8]));
  if (ip[9] != kVrrpProtocol) return reject(Reject::kProtocol, fmt::format("protocol {}", ip[9]));
  return IpPacket{load32(ip, 12), load32(ip, 16), ip.subspan(header_len, total_len - header_len)};
}

}  // namespace tandem::ha
