#pragma once
// Differential check of Tandem's request-head parser (src/http) against the strict reference
// reading of RFC 9112 (rfc9112_reference.h). Used by fuzz_request (so the fuzzer hunts for
// disagreements) and by tests/unit/http/differential_test.cc (corpus + mutated variants).
//
// Both must agree on incomplete / reject / accept and, for accepted heads, on the head length,
// method, request-target, version and body framing, except for the accepted disagreements below.
// docs/http-strictness.md lists the same disagreements with their reasons; keep the two in step.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "http/parser.h"
#include "rfc9112_reference.h"

namespace tandem::http::fuzz {

// Accepted disagreements (docs/http-strictness.md). The first three: Tandem accepts what a strict
// reading rejects; the rest: Tandem rejects what the RFC allows.
enum class Disagreement : uint8_t {
  kNone,
  // Tandem checks the request-target by character class only (VCHAR except '#'): RFC 3986
  // structure, %HH and the excluded characters `"<>\^`{|}` are left to the backend, which gets
  // the target verbatim. An http(s) absolute-form without a host or with userinfo passes too.
  kTargetSyntax,
  // Tandem checks Host by character class only (authority characters), not uri-host [":" port].
  kHostSyntax,
  // A Content-Length repeated with one value ("5, 5" or two lines of 5) is taken as that value
  // (RFC 9110 §8.6 allows it; the strict reading rejects).
  kLengthList,
  // At most kMaxHeaders (128) field lines: 431.
  kFieldLimit,
  // HTTP/1.2..1.9 get 505; RFC 9110 §2.5 says to process them as HTTP/1.1.
  kMinorVersion,
  // Only the chunked transfer coding is implemented: any other coding gets 501 (RFC 9112 §6.1:
  // SHOULD 501 for a coding the server does not understand).
  kOtherCoding,
  // Empty Transfer-Encoding list elements ("chunked, ") are rejected; RFC 9110 §5.6.1 says to
  // ignore them. Framing headers are where lenient list parsing becomes request smuggling.
  kEmptyListElement,
  // Content-Length values at or above 2^63 are rejected (backends parse into signed 64 bits).
  kHugeLength,
  // A CONNECT port has at most 5 digits ("host:00080" is rejected).
  kLongPort,
  // An absolute-form "scheme:" with an empty hier-part is rejected.
  kEmptyHierPart,
};

inline const char* disagreementName(Disagreement d) {
  switch (d) {
    case Disagreement::kNone:
      return "none";
    case Disagreement::kTargetSyntax:
      return "target-syntax";
    case Disagreement::kHostSyntax:
      return "host-syntax";
    case Disagreement::kLengthList:
      return "content-length-list";
    case Disagreement::kFieldLimit:
      return "field-limit";
    case Disagreement::kMinorVersion:
      return "minor-version";
    case Disagreement::kOtherCoding:
      return "other-coding";
    case Disagreement::kEmptyListElement:
      return "empty-list-element";
    case Disagreement::kHugeLength:
      return "huge-length";
    case Disagreement::kLongPort:
      return "long-port";
    case Disagreement::kEmptyHierPart:
      return "empty-hier-part";
  }
  return "?";
}

struct DiffResult {
  std::string error;                            // non-empty: an unaccepted disagreement, described
  Disagreement accepted = Disagreement::kNone;  // the accepted disagreement that applied, if any
};

// Which accepted disagreement explains Tandem rejecting with `e` a head the reference accepts.
inline Disagreement stricterBecause(uint32_t notes, ParseError e) {
  using namespace tandem::reference;
  if ((notes & kNoteManyFields) && e == ParseError::kTooManyHeaders) {
    return Disagreement::kFieldLimit;
  }
  if ((notes & kNoteMinorVersion) && e == ParseError::kUnsupportedVersion) {
    return Disagreement::kMinorVersion;
  }
  if ((notes & kNoteOtherCoding) && e == ParseError::kBadTransferEncoding) {
    return Disagreement::kOtherCoding;
  }
  if ((notes & kNoteEmptyListElement) && e == ParseError::kBadTransferEncoding) {
    return Disagreement::kEmptyListElement;
  }
  if ((notes & kNoteHugeLength) && e == ParseError::kBadContentLength) {
    return Disagreement::kHugeLength;
  }
  if ((notes & kNoteLongPort) && e == ParseError::kBadRequestLine) return Disagreement::kLongPort;
  if ((notes & kNoteEmptyHierPart) && e == ParseError::kBadRequestLine) {
    return Disagreement::kEmptyHierPart;
  }
  return Disagreement::kNone;
}

// Which accepted disagreement explains Tandem accepting a head the reference rejects only for
// `soft` rules (the first in this order).
inline Disagreement lenientBecause(uint32_t soft) {
  using namespace tandem::reference;
  if (soft & kSoftTargetSyntax) return Disagreement::kTargetSyntax;
  if (soft & kSoftHostSyntax) return Disagreement::kHostSyntax;
  if (soft & kSoftLengthList) return Disagreement::kLengthList;
  return Disagreement::kNone;
}

inline std::string statusName(ParseResult r) {
  if (r.status == ParseStatus::kIncomplete) return "incomplete";
  if (r.status == ParseStatus::kDone) return "accept";
  return std::string("reject (") + std::string(describe(r.error)) + ")";
}

inline DiffResult differential(std::string_view buf) {
  namespace ref = tandem::reference;
  auto head = std::make_unique<RequestHead>();
  ParseState st;
  // No head-size limit: the reference has none; the limit is exercised by checkRequest.
  const ParseResult r = parseRequestHead(buf, SIZE_MAX, st, *head);
  const ref::Verdict v = ref::readRequestHead(buf);
  DiffResult out;
  const auto fail = [&](const std::string& what) {
    out.error = what + ": tandem " + statusName(r) + ", reference ";
    out.error += v.status == ref::Status::kIncomplete ? "incomplete"
                 : v.status == ref::Status::kAccept
                     ? "accept"
                     : std::string("reject (") + ref::ruleName(v.rule) + ")";
    return out;
  };
  const bool ref_incomplete = v.status == ref::Status::kIncomplete;
  if ((r.status == ParseStatus::kIncomplete) != ref_incomplete) return fail("completeness");
  if (ref_incomplete) return out;
  const bool hard_reject = v.status == ref::Status::kReject && v.rule != ref::Rule::kNone;
  if (r.status == ParseStatus::kError) {
    if (v.status == ref::Status::kReject) return out;  // both reject (soft or hard)
    out.accepted = stricterBecause(v.notes, r.error);
    if (out.accepted == Disagreement::kNone) return fail("verdict");
    return out;
  }
  // Tandem accepted.
  if (hard_reject) return fail("verdict");
  if (v.status == ref::Status::kReject) out.accepted = lenientBecause(v.soft);
  if (head->head_length != v.head_length) return fail("head length");
  if (head->method_text != v.method) return fail("method");
  if (head->target != v.target) return fail("target");
  if (head->version_minor != v.minor) return fail("version");
  const bool framing_ok =
      v.framing == ref::Framing::kNone ? head->body == BodyKind::kNone
      : v.framing == ref::Framing::kLength
          ? head->body == BodyKind::kContentLength && head->content_length == v.length
          : head->body == BodyKind::kChunked;
  if (!framing_ok) return fail("framing");
  return out;
}

}  // namespace tandem::http::fuzz
