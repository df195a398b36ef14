#pragma once
// VRRPv3 advertisements for IPv4 (RFC 5798 §5): encoding, validation and decoding. Pure functions
// without I/O, safe to call from any thread.
//
// Addresses (IPv4) are uint32_t in HOST byte order everywhere in this module: 198.18.0.100 is
// 0xC6120064. So comparing two of them as integers is the RFC's "greater primary address" test
// (§6.4.3), and tests can write them as hex literals. Convert with ntohl()/htonl() at the socket.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.h"

namespace tandem::ha {

inline constexpr uint8_t kVrrpProtocol = 112;           // IPv4 protocol number (RFC 5798 §5.1.1.3)
inline constexpr uint32_t kVrrpMulticast = 0xE0000012;  // 224.0.0.18 (§5.1.1.2)
inline constexpr uint8_t kVrrpTtl = 255;                // §5.1.1.3; anything else is discarded
inline constexpr uint8_t kVrrpVersion = 3;
inline constexpr uint8_t kVrrpTypeAdvert = 1;
inline constexpr size_t kVrrpHeaderSize = 8;            // fixed part before the addresses (§5.2)
inline constexpr size_t kVrrpMaxAddresses = 255;        // "Count IPvX Addr" is one byte
inline constexpr uint16_t kVrrpMaxIntervalCs = 0x0fff;  // 12-bit Max Adver Int (§5.2.7)

// One advertisement. priority 0 means "the master is stopping" (§5.2.4), 255 the address owner.
struct Advert {
  uint8_t vrid = 0;
  uint8_t priority = 0;
  uint16_t interval_cs = 0;         // Max Adver Int, centiseconds, 1..4095
  std::vector<uint32_t> addresses;  // host byte order (see above)

  bool operator==(const Advert&) const = default;
};

// Why a received packet was dropped. Error::code of a failed decode()/checkIpHeader() holds one of
// these (use rejectOf()), so the receive path can keep one counter per reason (§7.1: "log the
// event"). Append only: the values index counter arrays and metric labels.
enum class Reject : int {
  kTooShort = 0,  // fewer bytes than a fixed header, or than the IPv4 total length says
  kIpHeader,      // not IPv4, IHL < 5, total length < IHL, or a fragment
  kTtl,           // TTL != 255: sent from off-link (§5.1.1.3, §7.1)
  kProtocol,      // IPv4 protocol != 112
  kVersion,       // VRRP version != 3 (§7.1)
  kType,          // type != 1 ADVERTISEMENT (§5.2.2: unknown types are discarded)
  kLength,        // VRRP length != 8 + 4 × Count IPvX Addr (§7.1: the packet must be complete)
  kChecksum,      // one's-complement sum with the pseudo-header is wrong (§5.2.8)
  kAddressCount,  // Count IPvX Addr is 0: an advertisement names at least one address
  kInterval,      // Max Adver Int is 0: a backup would declare the master down at once
};
inline constexpr size_t kRejectCount = static_cast<size_t>(Reject::kInterval) + 1;

// Stable lower-case name ("too_short", "checksum", ...) for logs and metric labels.
const char* rejectName(Reject reason);
// The Reject carried by an error from decode()/checkIpHeader().
inline Reject rejectOf(const Error& error) { return static_cast<Reject>(error.code); }

// The VRRP payload of `advert` with its checksum computed over the IPv4 pseudo-header (§5.2.8):
// src_ip, dst_ip (224.0.0.18 in multicast mode, the peer's address in unicast mode), zero,
// protocol 112 and the VRRP length. Reserved bits are zero.
// Preconditions ("cannot happen": config validation guarantees them; violating one aborts):
// 1..255 addresses and 1 <= interval_cs <= 4095.
std::vector<uint8_t> encode(const Advert& advert, uint32_t src_ip, uint32_t dst_ip);

// Validates a received VRRP payload (everything after the IPv4 header) whose IPv4 header carried
// src_ip and dst_ip, and decodes it. Checks, in this order: size >= 8 (kTooShort), version 3,
// type 1, size == 8 + 4 × count (kLength), checksum, count >= 1, interval >= 1. The reserved bits
// are ignored (§5.2.6). The result fails with ErrorSource::kDownstream (untrusted input from the
// wire), retryable false, code = Reject, and a message naming the reason and the offending value.
// Whether the VRID is ours and the sender is not ourselves is the state machine's business.
Result<Advert> decode(std::span<const uint8_t> vrrp_payload, uint32_t src_ip, uint32_t dst_ip);

// A received IPv4 datagram whose header passed checkIpHeader(). `payload` points into the caller's
// buffer and stops at the IPv4 total length (link-layer padding is cut off).
struct IpPacket {
  uint32_t src_ip = 0;  // host byte order
  uint32_t dst_ip = 0;  // host byte order
  std::span<const uint8_t> payload;
};

// Checks the IPv4 header of a packet read from a raw IPPROTO_VRRP socket (which delivers the IP
// header): version 4, 5 <= IHL, total length within the buffer, not a fragment, protocol 112 and
// TTL 255 (§7.1: a VRRP router must discard packets whose TTL is not 255, which proves the sender
// is on the link). The IPv4 header checksum is not verified: the kernel drops bad ones before a raw
// socket sees them. Failures carry a Reject like decode().
Result<IpPacket> checkIpHeader(std::span<const uint8_t> ip_packet);

}  // namespace tandem::ha
