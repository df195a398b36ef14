#pragma once
// Invariants of the VRRP receive path (src/ha/vrrp_packet.h), shared by fuzz_vrrp and the corpus
// replay unit test (tests/unit/ha). Input: an IPv4 packet as a raw IPPROTO_VRRP socket delivers
// it. Returns an empty string when the input behaves, or the first violation.
#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ha/vrrp_packet.h"
#include "ha/vrrp_state.h"

namespace tandem::ha::fuzz {

inline std::string checkRejection(const Error& error) {
  if (error.code < 0 || static_cast<size_t>(error.code) >= kRejectCount) {
    return "rejection code out of range";
  }
  if (error.message.empty()) return "rejection without a message";
  if (error.source != ErrorSource::kDownstream || error.retryable) return "wrong error kind";
  return {};
}

// A decoded advert must re-encode to the same bytes (the reserved bits aside, which encode clears
// and which the checksum covers), and decode again to itself.
inline std::string checkAccepted(std::span<const uint8_t> payload, const Advert& advert,
                                 uint32_t src, uint32_t dst) {
  if (advert.addresses.empty() || advert.addresses.size() > kVrrpMaxAddresses) {
    return "accepted a bad address count";
  }
  if (advert.interval_cs == 0 || advert.interval_cs > kVrrpMaxIntervalCs) {
    return "accepted a bad interval";
  }
  if (payload.size() != kVrrpHeaderSize + 4 * advert.addresses.size()) {
    return "accepted a wrong length";
  }
  const std::vector<uint8_t> again = encode(advert, src, dst);
  if ((payload[4] & 0xf0) == 0) {
    std::vector<uint8_t> expected(payload.begin(), payload.end());
    // One's-complement arithmetic has two zeros (RFC 1071): a checksum of 0xffff verifies like the
    // 0x0000 that encode writes.
    if (expected[6] == 0xff && expected[7] == 0xff) expected[6] = expected[7] = 0;
    if (again != expected) return "re-encoding differs";
  }
  auto redecoded = decode(again, src, dst);
  if (!redecoded || !(*redecoded == advert)) return "encode/decode round trip differs";
  return {};
}

// The state machine takes any accepted advert without breaking its own rules.
inline std::string checkStateMachine(const Advert& advert, uint32_t src) {
  for (const bool master : {false, true}) {
    VrrpRouter router(
        VrrpConfig{advert.vrid == 0 ? uint8_t{1} : advert.vrid, 100, 10, true, 0, 0xC612000Bu});
    router.startup(0);
    if (master) router.tick(router.masterDownIntervalMs());
    const State before = router.state();
    const Actions actions = router.receive(1000, advert, src);
    const State after = router.state();
    if (before == State::kBackup && after != State::kBackup) return "backup left on an advert";
    if (after == State::kMaster && !router.nextDeadline()) return "master without Adver_Timer";
    if (after == State::kBackup && !router.nextDeadline()) return "backup without timer";
    if (before != after && (actions.empty() || !std::holds_alternative<Transition>(actions[0]))) {
      return "state changed without a Transition first";
    }
  }
  return {};
}

inline std::string checkVrrp(std::span<const uint8_t> input) {
  auto ip = checkIpHeader(input);
  std::span<const uint8_t> payload = input;
  uint32_t src = 0xC612000Bu;  // when the IP header is refused, try the bytes as a VRRP payload
  uint32_t dst = kVrrpMulticast;
  if (ip) {
    if (ip->payload.data() < input.data() ||
        ip->payload.data() + ip->payload.size() > input.data() + input.size()) {
      return "payload outside the packet";
    }
    payload = ip->payload;
    src = ip->src_ip;
    dst = ip->dst_ip;
  } else if (auto e = checkRejection(ip.error()); !e.empty()) {
    return "ip: " + e;
  }
  auto advert = decode(payload, src, dst);
  if (advert) {
    if (auto e = checkAccepted(payload, *advert, src, dst); !e.empty()) return e;
    if (auto e = checkStateMachine(*advert, src); !e.empty()) return e;
  } else {
    if (auto e = checkRejection(advert.error()); !e.empty()) return e;
  }
  // Random bytes rarely carry a right checksum: decode once more with it fixed up, to reach the
  // checks behind it.
  if (payload.size() >= kVrrpHeaderSize) {
    std::vector<uint8_t> fixed(payload.begin(), payload.end());
    fixed[6] = fixed[7] = 0;
    uint64_t sum =
        (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + kVrrpProtocol + fixed.size();
    for (size_t i = 0; i < fixed.size(); i += 2) {
      sum += (uint32_t{fixed[i]} << 8) | (i + 1 < fixed.size() ? fixed[i + 1] : 0);
    }
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    fixed[6] = static_cast<uint8_t>(~sum >> 8);
    fixed[7] = static_cast<uint8_t>(~sum);
    auto fixed_advert = decode(fixed, src, dst);
    if (fixed_advert) {
      if (auto e = checkAccepted(fixed, *fixed_advert, src, dst); !e.empty()) return "fixed: " + e;
      if (auto e = checkStateMachine(*fixed_advert, src); !e.empty()) return "fixed: " + e;
    } else {
      if (auto e = checkRejection(fixed_advert.error()); !e.empty()) return "fixed: " + e;
      if (rejectOf(fixed_advert.error()) == Reject::kChecksum) return "fixed checksum refused";
    }
  }
  return {};
}

}  // namespace tandem::ha::fuzz
