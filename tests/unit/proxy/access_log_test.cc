#include "proxy/access_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace tandem::proxy {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kSlowdown = 10;  // time limits and loop sizes under sanitizers
#else
constexpr int kSlowdown = 1;
#endif
using nlohmann::ordered_json;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "alog-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    EXPECT_NE(nl, std::string::npos) << "last line has no newline";
    if (nl == std::string::npos) break;
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

config::AccessLog cfgFor(const std::string& path, uint64_t buffer = 1 << 20) {
  config::AccessLog c;
  c.enabled = true;
  c.path = path;
  c.buffer_bytes = buffer;
  return c;
}

std::unique_ptr<AccessLog> openOrDie(const config::AccessLog& cfg, unsigned workers) {
  auto log = AccessLog::open(cfg, workers);
  EXPECT_TRUE(log.has_value()) << (log ? "" : log.error().message);
  return log ? std::move(*log) : nullptr;
}

AccessRecord sampleRecord() {
  AccessRecord r;
  r.unix_ms = 1795509000123;  // 2026-11-24T08:30:00.123Z
  r.listener = "web";
  r.client = "127.0.0.1";
  r.method = "GET";
  r.path = "/x?y=1";
  r.status = 200;
  r.bytes_in = 78;
  r.bytes_out = 312;
  r.backend = "app";
  r.server = "a1";
  r.retries = 0;
  r.queue_us = 4;
  r.connect_us = 120;
  r.first_byte_us = 510;
  r.total_us = 612;
  return r;
}

constexpr std::string_view kSampleLine =
    R"({"time":"2026-11-24T08:30:00.123Z","listener":"web","client":"127.0.0.1",)"
    R"("method":"GET","path":"/x?y=1","status":200,"bytes_in":78,"bytes_out":312,)"
    R"("backend":"app","server":"a1","retries":0,"queue_ms":0.004,"connect_ms":0.120,)"
    R"("first_byte_ms":0.510,"total_ms":0.612})";

// Writes the records through a log whose writer is never started (stop() flushes inline) and
// returns the file's lines.
std::vector<std::string> roundTrip(const std::vector<AccessRecord>& records) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  auto log = openOrDie(cfgFor(path), 1);
  if (!log) return {};
  for (const auto& r : records) EXPECT_TRUE(log->append(0, r));
  log->stop();
  EXPECT_EQ(log->written(), records.size());
  EXPECT_EQ(log->dropped(), 0u);
  return splitLines(readFile(path));
}

bool waitFor(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return cond();
}

TEST(AccessLogFormat, ExactLineWithFieldsInOrder) {
  auto lines = roundTrip({sampleRecord()});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], kSampleLine);
  const ordered_json j = ordered_json::parse(lines[0]);
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  const std::vector<std::string> want = {"time",       "listener",      "client",   "method",
                                         "path",       "status",        "bytes_in", "bytes_out",
                                         "backend",    "server",        "retries",  "queue_ms",
                                         "connect_ms", "first_byte_ms", "total_ms"};
  EXPECT_EQ(keys, want);
  EXPECT_DOUBLE_EQ(j["total_ms"].get<double>(), 0.612);
}

TEST(AccessLogFormat, NullsAndLargeNumbers) {
  AccessRecord r = sampleRecord();
  r.status = 0;
  r.server = {};
  r.queue_us = -1;
  r.connect_us = -1;
  r.first_byte_us = -1;
  r.total_us = 123456789;
  r.bytes_in = UINT64_MAX;
  r.retries = 3;
  auto lines = roundTrip({r});
  ASSERT_EQ(lines.size(), 1u);
  const json j = json::parse(lines[0]);
  EXPECT_TRUE(j["status"].is_null());
  EXPECT_TRUE(j["server"].is_null());
  EXPECT_TRUE(j["queue_ms"].is_null());
  EXPECT_TRUE(j["connect_ms"].is_null());
  EXPECT_TRUE(j["first_byte_ms"].is_null());
  EXPECT_EQ(j["bytes_in"].get<uint64_t>(), UINT64_MAX);
  EXPECT_EQ(j["retries"].get<int>(), 3);
  EXPECT_NE(lines[0].find(R"("total_ms":123456.789})"), std::string::npos) << lines[0];
}

TEST(AccessLogFormat, EscapesQuotesBackslashesControlsAndInvalidUtf8) {
  // Valid UTF-8 (é, €, 😀) passes through; a lone 0xff, a bare continuation byte, an overlong
  // '/' (c0 af), a surrogate (ed a0 80) and a truncated sequence are escaped byte by byte.
  const std::string path =
      "/a\"b\\c\x01\n\t\x1f\x7f/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80/\xff\x80\xc0\xaf\xed\xa0\x80"
      "\xe2\x82";
  const std::string method = "G\xe9T\"";
  AccessRecord r = sampleRecord();
  r.path = path;
  r.method = method;
  r.listener = "l\\1";
  r.backend = "b\x02";
  r.server = "s\xc3";
  auto lines = roundTrip({r});
  ASSERT_EQ(lines.size(), 1u);
  const std::string& line = lines[0];
  for (unsigned char c : line) EXPECT_GE(c, 0x20) << "raw control byte in the line";
  EXPECT_NE(line.find(R"(\u0001\u000a\u0009\u001f\u007f)"), std::string::npos) << line;
  EXPECT_NE(line.find(R"(\u00ff\u0080\u00c0\u00af\u00ed\u00a0\u0080\u00e2\u0082")"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80/"), std::string::npos);
  const json j = json::parse(line);  // throws (fails the test) on invalid JSON or UTF-8
  // \u00XX reads back as U+00XX.
  EXPECT_EQ(j["path"].get<std::string>(),
            "/a\"b\\c\x01\n\t\x1f\x7f/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80/"
            "\xc3\xbf\xc2\x80\xc3\x80\xc2\xaf\xc3\xad\xc2\xa0\xc2\x80\xc3\xa2\xc2\x82");
  EXPECT_EQ(j["method"].get<std::string>(), "G\xc3\xa9T\"");
  EXPECT_EQ(j["listener"].get<std::string>(), "l\\1");
  EXPECT_EQ(j["backend"].get<std::string>(), "b\x02");
  EXPECT_EQ(j["server"].get<std::string>(), "s\xc3\x83");
}

TEST(AccessLogFormat, TruncatesPathTo4096BytesAndBoundsEveryField) {
  const std::string long_path(5000, 'p');
  const std::string quotes(5000, '"');
  const std::string ff(5000, '\xff');  // every byte expands to 6
  AccessRecord a = sampleRecord();
  a.path = long_path;
  AccessRecord b = sampleRecord();
  b.path = quotes;
  AccessRecord c = sampleRecord();  // the longest possible line
  c.path = ff;
  c.method = ff;
  c.client = ff;
  c.listener = ff;
  c.backend = ff;
  c.server = ff;
  c.status = INT32_MIN;
  c.bytes_in = c.bytes_out = UINT64_MAX;
  c.retries = UINT32_MAX;
  c.queue_us = c.connect_us = c.first_byte_us = c.total_us = INT64_MAX;
  auto lines = roundTrip({a, b, c});
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(json::parse(lines[0])["path"].get<std::string>(), std::string(4096, 'p'));
  EXPECT_EQ(json::parse(lines[1])["path"].get<std::string>(), std::string(4096, '"'));
  const json j = json::parse(lines[2]);
  EXPECT_EQ(j["path"].get<std::string>().size(), 2 * AccessLog::kMaxPath);  // U+00FF is 2 bytes
  EXPECT_EQ(j["method"].get<std::string>().size(), 2 * AccessLog::kMaxField);
  EXPECT_EQ(j["server"].get<std::string>().size(), 2 * AccessLog::kMaxField);
  EXPECT_EQ(j["status"].get<int64_t>(), INT32_MIN);
}

TEST(AccessLogFormat, TimeMatchesGmtime) {
  const int64_t samples[] = {0,
                             999,
                             951782400000,     // 2000-02-29
                             951868800001,     // 2000-03-01
                             1709164800999,    // 2024-02-29
                             1735689599999,    // 2024-12-31T23:59:59.999
                             4102444800000,    // 2100-01-01
                             253402300799999,  // 9999-12-31T23:59:59.999
                             -1,               // 1969-12-31T23:59:59.999
                             -86400000 * 365LL};
  std::vector<AccessRecord> records;
  for (int64_t ms : samples) {
    AccessRecord r = sampleRecord();
    r.unix_ms = ms;
    records.push_back(r);
  }
  // Pseudo-random times across 1970..2200, several within the same second (the cache).
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 300; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    AccessRecord r = sampleRecord();
    r.unix_ms = static_cast<int64_t>(x % 7258118400000ull);
    records.push_back(r);
    r.unix_ms += 1;
    records.push_back(r);
  }
  auto lines = roundTrip(records);
  ASSERT_EQ(lines.size(), records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const int64_t ms = records[i].unix_ms;
    time_t sec = static_cast<time_t>(ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000));
    const int64_t frac = ms - static_cast<int64_t>(sec) * 1000;
    tm t;
    ASSERT_NE(gmtime_r(&sec, &t), nullptr);
    char want[64];
    size_t n = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &t);
    snprintf(want + n, sizeof want - n, ".%03dZ", static_cast<int>(frac));
    EXPECT_EQ(json::parse(lines[i])["time"].get<std::string>(), want) << ms;
  }
}

TEST(AccessLogOpen, ReportsPathAndReason) {
  auto log = AccessLog::open(cfgFor("/nonexistent-dir-tandem/access.log"), 1);
  ASSERT_FALSE(log.has_value());
  EXPECT_NE(log.error().message.find("/nonexistent-dir-tandem/access.log"), std::string::npos);
  EXPECT_NE(log.error().message.find("No such file or directory"), std::string::npos)
      << log.error().message;
  EXPECT_EQ(log.error().code, ENOENT);
}

TEST(AccessLogOpen, StdoutAndStderrAreNotClosed) {
  for (const char* name : {"stdout", "stderr"}) {
    auto log = openOrDie(cfgFor(name), 2);
    ASSERT_TRUE(log);
  }
  EXPECT_NE(::fcntl(1, F_GETFD), -1);
  EXPECT_NE(::fcntl(2, F_GETFD), -1);
}

TEST(AccessLogRing, TinyRingWithoutWriterDropsInsteadOfBlocking) {
  TempDir dir;
  const std::string path = dir.file("tiny.log");
  auto log = openOrDie(cfgFor(path, 1024), 1);
  ASSERT_TRUE(log);
  const AccessRecord r = sampleRecord();
  uint64_t ok = 0, refused = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < 10000; ++i) (log->append(0, r) ? ok : refused)++;
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(500));
  const size_t line_len = kSampleLine.size() + 1;
  EXPECT_EQ(ok, 1024 / line_len);
  EXPECT_EQ(refused, 10000 - ok);
  EXPECT_EQ(log->dropped(), refused);
  EXPECT_EQ(log->written(), 0u);
  // A line longer than the whole ring can never fit.
  AccessRecord big = r;
  const std::string long_path(2000, 'x');
  big.path = long_path;
  EXPECT_FALSE(log->append(0, big));
  log->stop();  // never started: writes out on this thread
  EXPECT_EQ(log->written(), ok);
  EXPECT_EQ(log->dropped(), refused + 1);
  const auto lines = splitLines(readFile(path));
  ASSERT_EQ(lines.size(), ok);
  EXPECT_EQ(lines[0].size() + 1, line_len);
}

TEST(AccessLogRing, ConcurrentProducersLinesIntactAndCountsAddUp) {
  TempDir dir;
  const std::string path = dir.file("concurrent.log");
  constexpr unsigned kWorkers = 4;
  constexpr int kPerWorker = 10000;
  auto log = openOrDie(cfgFor(path, 64 * 1024), kWorkers);
  ASSERT_TRUE(log);
  log->start();
  std::vector<std::thread> threads;
  std::atomic<uint64_t> accepted{0};
  for (unsigned w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      uint64_t ok = 0;
      char buf[64];
      for (int i = 0; i < kPerWorker; ++i) {
        AccessRecord r = sampleRecord();
        const int n = snprintf(buf, sizeof buf, "/w%u/%d", w, i);
        r.path = std::string_view(buf, static_cast<size_t>(n));
        r.retries = w;
        r.bytes_in = static_cast<uint64_t>(i);
        if (log->append(w, r)) ++ok;
        if (i % 1000 == 0) std::this_thread::yield();
      }
      accepted += ok;
    });
  }
  for (auto& t : threads) t.join();
  log->stop();
  EXPECT_EQ(log->written() + log->dropped(), uint64_t{kWorkers} * kPerWorker);
  EXPECT_EQ(log->written(), accepted.load());
  EXPECT_EQ(log->writeErrors(), 0u);
  const auto lines = splitLines(readFile(path));
  ASSERT_EQ(lines.size(), log->written());
  // Every line must be exactly the line of one record (so nothing is torn or interleaved), and a
  // worker's lines keep their order. Comparing strings keeps this fast; a sample is also parsed.
  auto expected = [](unsigned w, int64_t i) {
    std::string line(kSampleLine);
    auto put = [&line](std::string_view from, const std::string& to) {
      line.replace(line.find(from), from.size(), to);
    };
    put("\"path\":\"/x?y=1\"",
        "\"path\":\"/w" + std::to_string(w) + "/" + std::to_string(i) + "\"");
    put("\"bytes_in\":78", "\"bytes_in\":" + std::to_string(i));
    put("\"retries\":0", "\"retries\":" + std::to_string(w));
    return line;
  };
  std::vector<int64_t> last(kWorkers, -1);
  for (size_t n = 0; n < lines.size(); ++n) {
    const std::string& line = lines[n];
    const size_t at = line.find("\"path\":\"/w");
    ASSERT_NE(at, std::string::npos) << line;
    unsigned w = 0;
    long long i = -1;
    ASSERT_EQ(std::sscanf(line.c_str() + at, "\"path\":\"/w%u/%lld\"", &w, &i), 2) << line;
    ASSERT_LT(w, kWorkers);
    ASSERT_EQ(line, expected(w, i));
    EXPECT_GT(i, last[w]) << "lines of one worker out of order";
    last[w] = i;
    if (n % 100 == 0) {
      const json j = json::parse(line);
      EXPECT_EQ(j["retries"].get<unsigned>(), w);
    }
  }
  std::printf("[          ] concurrent: %llu written, %llu dropped\n",
              static_cast<unsigned long long>(log->written()),
              static_cast<unsigned long long>(log->dropped()));
}

TEST(AccessLogRing, AppendCostPerLine) {
  // The worker-side cost of a line, printed for reference: (1) format + copy into a ring large
  // enough for every line, no writer running; (2) the same with a writer draining a 1 MiB ring
  // to /dev/null at the same time (lines the writer cannot keep up with are dropped).
  const AccessRecord r = sampleRecord();
  constexpr int kN = 200000 / kSlowdown;
  auto measure = [&](AccessLog& log) {
    const auto t0 = Clock::now();
    for (int i = 0; i < kN; ++i) log.append(0, r);
    const auto ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    log.stop();
    EXPECT_EQ(log.written() + log.dropped(), uint64_t{kN});
    return ns / kN;
  };
  auto alone = openOrDie(cfgFor("/dev/null", uint64_t{kN} * (kSampleLine.size() + 1)), 1);
  ASSERT_TRUE(alone);
  const double alone_ns = measure(*alone);
  EXPECT_EQ(alone->dropped(), 0u);
  auto busy = openOrDie(cfgFor("/dev/null", 1 << 20), 1);
  ASSERT_TRUE(busy);
  busy->start();
  const double busy_ns = measure(*busy);
  std::printf(
      "[          ] append: %.1f ns/line without a writer, %.1f ns/line with one "
      "(%llu written, %llu dropped)\n",
      alone_ns, busy_ns, static_cast<unsigned long long>(busy->written()),
      static_cast<unsigned long long>(busy->dropped()));
}

TEST(AccessLogFailures, FullDiskDropsAndCountsWithoutBlocking) {
  auto log = openOrDie(cfgFor("/dev/full", 16 * 1024), 2);
  ASSERT_TRUE(log);
  log->start();
  const AccessRecord r = sampleRecord();
  constexpr int kN = 20000;
  auto slowest = Clock::duration::zero();
  for (int i = 0; i < kN; ++i) {
    const auto t0 = Clock::now();
    log->append(static_cast<unsigned>(i % 2), r);
    slowest = std::max(slowest, Clock::now() - t0);
    if (i % 2000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_LT(slowest, std::chrono::milliseconds(200) * kSlowdown);  // a loaded box may preempt us
  log->stop();
  EXPECT_EQ(log->written(), 0u);
  EXPECT_EQ(log->dropped(), uint64_t{kN});
  EXPECT_GT(log->writeErrors(), 0u);
}

// A FIFO stands for a slow or stuck output. The test holds a read-write descriptor, so the log's
// open() does not wait for a reader and the FIFO never reports "no reader".
class AccessLogFifo : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("fifo");
    ASSERT_EQ(::mkfifo(path_.c_str(), 0600), 0);
    reader_fd_ = ::open(path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(reader_fd_, 0);
  }
  void TearDown() override {
    if (reader_fd_ >= 0) ::close(reader_fd_);
  }
  // Reads whatever is in the FIFO now.
  void drainNow() {
    char buf[65536];
    ssize_t n;
    while ((n = ::read(reader_fd_, buf, sizeof buf)) > 0) received_.append(buf, n);
  }

  TempDir dir_;
  std::string path_;
  int reader_fd_ = -1;
  std::string received_;
};

TEST_F(AccessLogFifo, StuckReaderNeverSlowsAppends) {
  auto log = openOrDie(cfgFor(path_, 64 * 1024), 1);
  ASSERT_TRUE(log);
  log->start();
  const AccessRecord r = sampleRecord();
  constexpr int kN = 100000;
  uint64_t ok = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < kN; ++i) ok += log->append(0, r) ? 1 : 0;
  const auto elapsed = Clock::now() - t0;
  EXPECT_LT(elapsed, std::chrono::milliseconds(1000) * kSlowdown);
  std::printf("[          ] stuck fifo: %.1f ns/append, %llu accepted\n",
              std::chrono::duration<double, std::nano>(elapsed).count() / kN,
              static_cast<unsigned long long>(ok));
  // The pipe (64 KiB) and the ring (64 KiB) hold a few hundred lines; the rest was dropped.
  EXPECT_LT(ok, 1000u);
  EXPECT_GE(log->dropped(), uint64_t{kN} - ok);
  // Now a reader appears: what is queued comes out, and stop() completes.
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done.load()) {
      pollfd p{reader_fd_, POLLIN, 0};
      ::poll(&p, 1, 5);
      drainNow();
    }
    drainNow();
  });
  log->stop();
  done = true;
  reader.join();
  EXPECT_EQ(log->written() + log->dropped(), uint64_t{kN});
  EXPECT_EQ(log->written(), ok);
  const auto lines = splitLines(received_);
  EXPECT_EQ(lines.size(), log->written());
  for (const auto& line : lines) EXPECT_TRUE(json::accept(line)) << line;
}

TEST_F(AccessLogFifo, SlowReaderGetsWholeLines) {
  auto log = openOrDie(cfgFor(path_, 32 * 1024), 1);
  ASSERT_TRUE(log);
  log->start();
  std::atomic<bool> done{false};
  std::thread reader([&] {
    char buf[512];  // 512 bytes per millisecond: slower than the producer below
    while (!done.load()) {
      ssize_t n = ::read(reader_fd_, buf, sizeof buf);
      if (n > 0) received_.append(buf, static_cast<size_t>(n));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    drainNow();
  });
  const AccessRecord r = sampleRecord();
  constexpr int kN = 20000;
  const auto t0 = Clock::now();
  for (int i = 0; i < kN; ++i) {
    log->append(0, r);
    if (i % 100 == 0) std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  const auto appending = Clock::now() - t0;
  log->stop();
  done = true;
  reader.join();
  EXPECT_LT(appending, std::chrono::milliseconds(1500) * kSlowdown);
  EXPECT_EQ(log->written() + log->dropped(), uint64_t{kN});
  EXPECT_GT(log->dropped(), 0u);
  EXPECT_GT(log->written(), 0u);
  const auto lines = splitLines(received_);
  EXPECT_EQ(lines.size(), log->written());
  for (const auto& line : lines) ASSERT_TRUE(json::accept(line)) << line;
}

TEST_F(AccessLogFifo, StopDoesNotHangOnAStuckReader) {
  auto log = openOrDie(cfgFor(path_, 512 * 1024), 1);
  ASSERT_TRUE(log);
  log->setFlushTimeout(std::chrono::milliseconds(100));
  log->start();
  const AccessRecord r = sampleRecord();
  uint64_t ok = 0;
  for (int i = 0; i < 1500; ++i) ok += log->append(0, r) ? 1 : 0;
  EXPECT_EQ(ok, 1500u);  // 1500 lines fit in the ring
  const auto t0 = Clock::now();
  log->stop();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1000));
  EXPECT_EQ(log->written() + log->dropped(), 1500u);
  EXPECT_GT(log->dropped(), 0u);  // the FIFO holds 64 KiB, about 250 lines
  drainNow();
  EXPECT_EQ(splitLines(received_).size(), log->written());
}

TEST(AccessLogReopen, NewLinesGoToANewFileAfterRename) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  const std::string rotated = dir.file("access.log.1");
  auto log = openOrDie(cfgFor(path), 1);
  ASSERT_TRUE(log);
  log->start();
  AccessRecord r = sampleRecord();
  r.path = "/before";
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(log->append(0, r));
  ASSERT_TRUE(waitFor([&] { return log->written() == 10; }, std::chrono::seconds(2)));
  ASSERT_EQ(::rename(path.c_str(), rotated.c_str()), 0);
  log->reopen();
  ASSERT_TRUE(waitFor([&] { return std::filesystem::exists(path); }, std::chrono::seconds(2)));
  r.path = "/after";
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(log->append(0, r));
  log->stop();
  const auto old_lines = splitLines(readFile(rotated));
  const auto new_lines = splitLines(readFile(path));
  ASSERT_EQ(old_lines.size(), 10u);
  ASSERT_EQ(new_lines.size(), 5u);
  for (const auto& l : old_lines) EXPECT_EQ(json::parse(l)["path"], "/before");
  for (const auto& l : new_lines) EXPECT_EQ(json::parse(l)["path"], "/after");
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  const mode_t mask = ::umask(0);
  ::umask(mask);
  EXPECT_EQ(st.st_mode & 0777, 0640 & ~mask);
}

}  // namespace
}  // namespace tandem::proxy
