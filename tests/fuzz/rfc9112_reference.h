#pragma once
// A deliberately simple, strict reading of RFC 9112 request heads, written independently of
// src/http (it shares no code or tables with it) so that the differential check (differential.h)
// compares two readings of the RFC rather than one with itself. It favours obviousness over speed:
// find the head, split it into lines, check each rule in the order the RFC states it.
//
// Where the RFC lets a recipient choose (bare LF, bare CR, obs-fold, whitespace in the request
// line, repeated Content-Length values), it takes the strict choice: reject. Where the RFC requires
// a recipient to accept something, it accepts it. Two more outputs describe the request for the
// comparison: `soft` names strict rules the request breaks that only a structural (not
// character-class) check can see, and `notes` names valid properties a stricter parser may refuse.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tandem::reference {

enum class Status : uint8_t { kIncomplete, kReject, kAccept };

// The first rule a rejected head breaks (RFC 9112 unless said otherwise).
enum class Rule : uint8_t {
  kNone,
  kBareLf,             // §2.2: every line ends in CRLF (strict: a bare LF is not a terminator)
  kBareCr,             // §2.2: a bare CR is invalid (strict: reject rather than replace by SP)
  kRequestLine,        // §3: method SP request-target SP HTTP-version, single SPs
  kMethod,             // §3.1: method = token
  kVersion,            // §2.3: HTTP-version syntax; RFC 9110 §2.5: only major version 1
  kTarget,             // §3.2: a character no request-target form allows, or no form fits
  kFieldLineSpace,     // §2.2, §5.2: whitespace at the start of a field line (obs-fold)
  kFieldName,          // §5.1: field-name = token, no whitespace before ':'
  kFieldValue,         // RFC 9110 §5.5: field-vchar / SP / HTAB only
  kHost,               // §3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0; its chars
  kContentLength,      // RFC 9110 §8.6: 1*DIGIT, differing values, unrepresentable value
  kTransferEncoding,   // §6.1, §7: coding syntax, chunked not final or applied twice
  kLengthAndEncoding,  // §6.1, §6.3: Content-Length with Transfer-Encoding (strict: reject)
  kEncodingInHttp10,   // §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing
};

// Strict rules broken that need more than a character-class check to see. The strict verdict on a
// head with any of these is kReject; `rule` stays kNone when these are the only problems, and the
// rest of the head is still read (framing etc.), so a comparison can excuse exactly these.
enum Soft : uint32_t {
  kSoftTargetSyntax = 1u << 0,  // request-target chars allowed by VCHAR but not by RFC 3986
                                // (`"<>\^`{|}`), bad %HH, malformed authority, an http(s)
                                // absolute-form without a host or with userinfo (RFC 9110 §4.2)
  kSoftHostSyntax = 1u << 1,    // Host not uri-host [":" port] although all its chars are
                                // authority chars (RFC 9110 §7.2)
  kSoftLengthList = 1u << 2,    // Content-Length repeated (as a list or in several lines) with
                                // one value: RFC 9110 §8.6 lets a recipient reject or accept it
};

// Valid requests with a property a stricter implementation may refuse.
enum Note : uint32_t {
  kNoteManyFields = 1u << 0,        // more than 128 field lines (the RFC sets no limit)
  kNoteMinorVersion = 1u << 1,      // HTTP/1.x with x >= 2: RFC 9110 §2.5, process as HTTP/1.1
  kNoteOtherCoding = 1u << 2,       // a transfer coding other than chunked (before the final
                                    // chunked): valid framing, §6.1 says SHOULD 501 if unknown
  kNoteEmptyListElement = 1u << 3,  // an empty Transfer-Encoding list element, which RFC 9110
                                    // §5.6.1 says a recipient MUST ignore
  kNoteHugeLength = 1u << 4,        // Content-Length at or above 2^63 (below 2^64)
  kNoteLongPort = 1u << 5,          // authority-form port of more than 5 digits (e.g. "00080")
  kNoteEmptyHierPart = 1u << 6,     // absolute-form "scheme:" with nothing after the colon
};

enum class Framing : uint8_t { kNone, kLength, kChunked };

struct Verdict {
  Status status = Status::kIncomplete;
  Rule rule = Rule::kNone;  // kReject: the first hard rule broken (kNone if only `soft`)
  uint32_t soft = 0;        // Soft bits
  uint32_t notes = 0;       // Note bits
  size_t head_length = 0;   // bytes up to and including the CRLFCRLF ending the head
  // Filled when no hard rule is broken (status kAccept, or kReject with only soft rules broken):
  std::string_view method;
  std::string_view target;
  int minor = 0;  // HTTP/1.minor as received
  Framing framing = Framing::kNone;
  uint64_t length = 0;  // Framing::kLength: > 0
};

// Reads the request head at the start of `bytes` (what follows the head is ignored).
Verdict readRequestHead(std::string_view bytes);

const char* ruleName(Rule rule);

}  // namespace tandem::reference
