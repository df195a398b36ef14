// Differential test: Tandem's request parser against the strict RFC 9112 reference
// (tests/fuzz/rfc9112_reference.h) on the request seed corpus, on mutated variants of it, and on
// hand-written requests. Every disagreement must be one of the accepted ones (differential.h,
// docs/http-strictness.md), and each accepted one is shown to exist, so the list stays true.
#include "differential.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../support/corpus.h"

namespace tandem::http::fuzz {
namespace {

namespace fs = std::filesystem;
namespace ref = tandem::reference;

std::vector<std::pair<std::string, std::string>> requestInputs() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const char* dir : {"corpus/request", "regressions/request"}) {
    const fs::path path = fs::path(TANDEM_FUZZ_DIR) / dir;
    if (!fs::is_directory(path)) continue;
    for (auto& [file, data] : tandem::testing::readCorpus(path)) {
      out.emplace_back(file.string(), std::move(data));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Differential, SeedCorpusAgrees) {
  const auto inputs = requestInputs();
  ASSERT_GE(inputs.size(), 20u);
  size_t accepted = 0, rejected = 0;
  std::map<std::string, int> excused;
  for (const auto& [path, data] : inputs) {
    const DiffResult d = differential(data);
    EXPECT_EQ(d.error, "") << path;
    if (d.accepted != Disagreement::kNone) ++excused[disagreementName(d.accepted)];
    const ref::Verdict v = ref::readRequestHead(data);
    accepted += v.status == ref::Status::kAccept;
    rejected += v.status == ref::Status::kReject;
  }
  // The corpus holds both sides of the line, not only valid requests.
  EXPECT_GE(accepted, 8u);
  EXPECT_GE(rejected, 8u);
  for (const auto& [name, n] : excused)
    std::printf("accepted disagreement %s: %d\n", name.c_str(), n);
}

// Every seed with one byte replaced (by bytes that matter to the grammar), deleted or inserted.
TEST(Differential, MutatedVariantsAgree) {
  static constexpr char kByteList[] =
      "\r\n \t:,;=\"\\/?#%@[]\x7f\x80"
      "xX0-9.";
  std::string bytes(kByteList, sizeof(kByteList) - 1);
  bytes.push_back('\0');
  size_t variants = 0, both_accept = 0, failures = 0;
  std::map<std::string, int> excused;
  const auto check = [&](const std::string& data, const std::string& from) {
    ++variants;
    const DiffResult d = differential(data);
    if (!d.error.empty() && ++failures <= 20) {
      ADD_FAILURE() << d.error << " (mutated from " << from << "): '" << data << "'";
    }
    if (d.accepted != Disagreement::kNone) ++excused[disagreementName(d.accepted)];
    both_accept += d.error.empty() && d.accepted == Disagreement::kNone &&
                   ref::readRequestHead(data).status == ref::Status::kAccept;
  };
  for (const auto& [path, data] : requestInputs()) {
    if (data.size() > 512) continue;  // keeps the test quick; the fuzzer covers larger heads
    for (size_t i = 0; i < data.size(); ++i) {
      for (char c : bytes) {
        std::string m = data;
        m[i] = c;
        check(m, path);
        m = data;
        m.insert(m.begin() + static_cast<ptrdiff_t>(i), c);
        check(m, path);
      }
      std::string m = data;
      m.erase(i, 1);
      check(m, path);
    }
  }
  EXPECT_EQ(failures, 0u);
  EXPECT_GE(variants, 50000u);
  EXPECT_GE(both_accept, 1000u);  // the variants are not all rejected by both
  std::printf("%zu variants, %zu accepted by both\n", variants, both_accept);
  for (const auto& [name, n] : excused)
    std::printf("accepted disagreement %s: %d\n", name.c_str(), n);
}

DiffResult diff(std::string_view head) { return differential(head); }

std::string withHost(std::string_view line, std::string_view fields = "") {
  return std::string(line) + "\r\nHost: a\r\n" + std::string(fields) + "\r\n";
}

// Each accepted disagreement occurs, and is recognised as itself.
TEST(Differential, AcceptedDisagreementsExist) {
  const std::pair<std::string, Disagreement> cases[] = {
      {withHost("GET /a|b HTTP/1.1"), Disagreement::kTargetSyntax},
      {withHost("GET /%zz HTTP/1.1"), Disagreement::kTargetSyntax},
      {withHost("GET http:///x HTTP/1.1"), Disagreement::kTargetSyntax},
      {withHost("GET http://user@h/ HTTP/1.1"), Disagreement::kTargetSyntax},
      {withHost("CONNECT a:b:443 HTTP/1.1"), Disagreement::kTargetSyntax},
      {"GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n", Disagreement::kHostSyntax},
      {"GET / HTTP/1.1\r\nHost: %zz\r\n\r\n", Disagreement::kHostSyntax},
      {withHost("POST / HTTP/1.1", "Content-Length: 5, 5\r\n"), Disagreement::kLengthList},
      {withHost("POST / HTTP/1.1", "Content-Length: 5\r\nContent-Length: 5\r\n"),
       Disagreement::kLengthList},
      {withHost("GET / HTTP/1.2"), Disagreement::kMinorVersion},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding: gzip, chunked\r\n"),
       Disagreement::kOtherCoding},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding: chunked,\r\n"),
       Disagreement::kEmptyListElement},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding: , chunked\r\n"),
       Disagreement::kEmptyListElement},
      {withHost("POST / HTTP/1.1", "Content-Length: 9223372036854775808\r\n"),
       Disagreement::kHugeLength},
      {withHost("CONNECT a:000443 HTTP/1.1"), Disagreement::kLongPort},
      {withHost("GET urn: HTTP/1.1"), Disagreement::kEmptyHierPart},
  };
  for (const auto& [head, expected] : cases) {
    const DiffResult d = diff(head);
    EXPECT_EQ(d.error, "") << head;
    EXPECT_STREQ(disagreementName(d.accepted), disagreementName(expected)) << head;
  }
  std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 128; ++i) many += "X-" + std::to_string(i) + ": 1\r\n";
  const DiffResult d = diff(many + "\r\n");
  EXPECT_EQ(d.error, "");
  EXPECT_EQ(d.accepted, Disagreement::kFieldLimit);
}

// Classic request-smuggling and framing cases: both readings agree, with no excuse needed.
TEST(Differential, SmugglingCasesAgree) {
  const std::pair<std::string, ref::Status> cases[] = {
      {withHost("GET / HTTP/1.1"), ref::Status::kAccept},
      {"GET / HTTP/1.0\r\n\r\n", ref::Status::kAccept},
      {"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ref::Status::kAccept},
      {withHost("OPTIONS * HTTP/1.1"), ref::Status::kAccept},
      {withHost("CONNECT [::1]:443 HTTP/1.1"), ref::Status::kAccept},
      {withHost("GET http://a:80/x?y HTTP/1.1"), ref::Status::kAccept},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding: Chunked\r\n"), ref::Status::kAccept},
      {withHost("POST / HTTP/1.1", "Content-Length: 007\r\n"), ref::Status::kAccept},
      {withHost("POST / HTTP/1.1", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
       ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding : chunked\r\n"), ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding: xchunked\r\n"), ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding: chunked\x0b\r\n"), ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding: chunked, chunked\r\n"),
       ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding: chunked;x=1\r\n"), ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding: chunked\r\n gzip\r\n"),
       ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Transfer-Encoding:\r\n"), ref::Status::kReject},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Content-Length: 5\r\nContent-Length: 6\r\n"),
       ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Content-Length: +5\r\n"), ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Content-Length: 0x5\r\n"), ref::Status::kReject},
      {withHost("POST / HTTP/1.1", "Content-Length: 18446744073709551616\r\n"),
       ref::Status::kReject},
      {"GET / HTTP/1.1\r\n\r\n", ref::Status::kReject},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", ref::Status::kReject},
      {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", ref::Status::kReject},
      {"GET / HTTP/1.1\nHost: a\r\n\r\n", ref::Status::kReject},
      {"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", ref::Status::kReject},
      {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", ref::Status::kReject},
      {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", ref::Status::kReject},
      {"GET / http/1.1\r\nHost: a\r\n\r\n", ref::Status::kReject},
      {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", ref::Status::kReject},
      {"GET /#f HTTP/1.1\r\nHost: a\r\n\r\n", ref::Status::kReject},
      {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", ref::Status::kReject},
      {"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", ref::Status::kReject},
      {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", ref::Status::kReject},
      {std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35), ref::Status::kReject},
      {"GET / HTTP/1.1\r\nHost: a\r\n", ref::Status::kIncomplete},
  };
  for (const auto& [head, status] : cases) {
    const DiffResult d = diff(head);
    EXPECT_EQ(d.error, "") << head;
    EXPECT_EQ(d.accepted, Disagreement::kNone) << head;
    EXPECT_EQ(ref::readRequestHead(head).status, status) << head;
  }
}

// The reference reads framing as RFC 9112 §6.3 says; the comparison checks Tandem's reading.
TEST(Differential, ReferenceFraming) {
  auto v = ref::readRequestHead(withHost("POST / HTTP/1.1", "Content-Length: 12\r\n") + "body");
  EXPECT_EQ(v.status, ref::Status::kAccept);
  EXPECT_EQ(v.framing, ref::Framing::kLength);
  EXPECT_EQ(v.length, 12u);
  v = ref::readRequestHead(withHost("POST / HTTP/1.1", "Content-Length: 0\r\n"));
  EXPECT_EQ(v.framing, ref::Framing::kNone);
  const std::string chunked = withHost("POST / HTTP/1.1", "transfer-encoding: CHUNKED\r\n");
  v = ref::readRequestHead(chunked);  // views into `chunked`
  EXPECT_EQ(v.framing, ref::Framing::kChunked);
  EXPECT_EQ(v.method, "POST");
  EXPECT_EQ(v.target, "/");
  EXPECT_EQ(v.minor, 1);
}

}  // namespace
}  // namespace tandem::http::fuzz
