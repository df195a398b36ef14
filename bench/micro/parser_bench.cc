// HTTP/1.1 parser micro-benchmarks: a browser-like request (~500 bytes, 12 headers), a small
// response, a request arriving in two reads, and chunked-body validation.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>

#include "http/parser.h"

namespace {

using namespace tandem::http;

const std::string kRequest =
    "GET /products/widgets?id=12345&ref=home HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Referer: https://www.example.com/\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: session=4f6a2b9c8d7e1f03; theme=dark; _ga=GA1.2.1234567890.1700000000\r\n"
    "Upgrade-Insecure-Requests: 1\r\n"
    "Sec-Fetch-Dest: document\r\n"
    "Sec-Fetch-Mode: navigate\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "\r\n";

const std::string kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Date: Tue, 24 Nov 2026 05:15:24 GMT\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "Content-Length: 1234\r\n"
    "Cache-Control: no-cache\r\n"
    "\r\n";

void BM_ParseRequest(benchmark::State& state) {
  auto head = std::make_unique<RequestHead>();
  for (auto _ : state) {
    ParseState st;
    auto r = parseRequestHead(kRequest, 16384, st, *head);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(head->header_count);
  }
  if (head->header_count != 12) state.SkipWithError("unexpected header count");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRequest.size()));
}
BENCHMARK(BM_ParseRequest);

void BM_ParseRequestTwoReads(benchmark::State& state) {
  auto head = std::make_unique<RequestHead>();
  const std::string_view half = std::string_view(kRequest).substr(0, kRequest.size() / 2);
  for (auto _ : state) {
    ParseState st;
    benchmark::DoNotOptimize(parseRequestHead(half, 16384, st, *head));
    benchmark::DoNotOptimize(parseRequestHead(kRequest, 16384, st, *head));
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kRequest.size()));
}
BENCHMARK(BM_ParseRequestTwoReads);

void BM_ParseResponse(benchmark::State& state) {
  auto head = std::make_unique<ResponseHead>();
  for (auto _ : state) {
    ParseState st;
    auto r = parseResponseHead(kResponse, 16384, Method::kGet, st, *head);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(head->header_count);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kResponse.size()));
}
BENCHMARK(BM_ParseResponse);

void BM_ChunkedBody(benchmark::State& state) {
  std::string body;
  for (int i = 0; i < 16; ++i) body += "400;ext=1\r\n" + std::string(1024, 'x') + "\r\n";
  body += "0\r\nX-Checksum: abc\r\n\r\n";
  for (auto _ : state) {
    ChunkedDecoder d;
    auto step = d.feed(body);
    benchmark::DoNotOptimize(step);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_ChunkedBody);

}  // namespace
