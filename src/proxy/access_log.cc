#include "proxy/access_log.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <system_error>

#include "core/log.h"

namespace tandem::proxy {
namespace {

using Clock = std::chrono::steady_clock;

// Upper bound of one line: every string byte may become a 6-byte \u00XX escape; the rest (keys,
// punctuation, numbers, time) is well under 1 KiB.
constexpr size_t kMaxLine = 6 * (AccessLog::kMaxPath + 5 * AccessLog::kMaxField) + 1024;
// Writes to a pipe or socket are at most this long, cut after a '\n' when there is one: after
// POLLOUT such a write cannot block, and on a pipe it is atomic (lines stay whole even when the
// logger shares stderr with us).
constexpr size_t kStreamChunk = PIPE_BUF;
constexpr std::chrono::seconds kErrorLogInterval{10};

std::string errText(int err) { return std::generic_category().message(err); }

bool isStream(int fd) {
  struct stat st;
  return ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode);
}

int64_t floorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

// "YYYY-MM-DDTHH:MM:SS" of a Unix second (proleptic Gregorian, UTC), without gmtime_r: glibc's
// takes the timezone lock, which has no place on a worker.
size_t formatDate(int64_t sec, char* out, size_t cap) {
  const int64_t days = floorDiv(sec, 86400);
  const int64_t rem = sec - days * 86400;
  // H. Hinnant's civil_from_days.
  const int64_t z = days + 719468;
  const int64_t era = floorDiv(z, 146097);
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  auto r = fmt::format_to_n(out, cap, "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", y, m, d, rem / 3600,
                            rem / 60 % 60, rem % 60);
  return std::min(r.size, cap);
}

// 0: copied as is; 1: ASCII that must be escaped; 2: a byte >= 0x80 (valid UTF-8 or escaped).
constexpr std::array<uint8_t, 256> kByteClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = (c < 0x20 || c == 0x7f || c == '"' || c == '\\') ? 1 : c >= 0x80 ? 2 : 0;
  }
  return t;
}();

// Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF), or 0.
size_t utf8Length(const unsigned char* p, const unsigned char* end) {
  const unsigned char c = p[0];
  const size_t avail = static_cast<size_t>(end - p);
  auto cont = [](unsigned char b) { return (b & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) return avail >= 2 && cont(p[1]) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (avail < 3) return 0;
    const unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return p[1] >= lo && p[1] <= hi && cont(p[2]) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (avail < 4) return 0;
    const unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return p[1] >= lo && p[1] <= hi && cont(p[2]) && cont(p[3]) ? 4 : 0;
  }
  return 0;
}

// Appends to a buffer known to be large enough (kMaxLine bounds every line).
class LineWriter {
 public:
  explicit LineWriter(char* p) : p_(p) {}
  char* end() const { return p_; }

  template <size_t N>
  void lit(const char (&s)[N]) {
    std::memcpy(p_, s, N - 1);
    p_ += N - 1;
  }
  void raw(const char* s, size_t n) {
    std::memcpy(p_, s, n);
    p_ += n;
  }
  template <typename T>
  void num(T v) {
    fmt::format_int f(v);
    raw(f.data(), f.size());
  }
  // Microseconds as milliseconds with 3 decimals; negative = did not happen.
  void ms(int64_t us) {
    if (us < 0) return lit("null");
    num(us / 1000);
    const int frac = static_cast<int>(us % 1000);
    p_[0] = '.';
    p_[1] = static_cast<char>('0' + frac / 100);
    p_[2] = static_cast<char>('0' + frac / 10 % 10);
    p_[3] = static_cast<char>('0' + frac % 10);
    p_ += 4;
  }
  void str(std::string_view s, size_t limit) {
    *p_++ = '"';
    escaped(s.substr(0, limit));
    *p_++ = '"';
  }

 private:
  void hexEscape(unsigned char c) {
    static constexpr char kHex[] = "0123456789abcdef";
    p_[0] = '\\';
    p_[1] = 'u';
    p_[2] = '0';
    p_[3] = '0';
    p_[4] = kHex[c >> 4];
    p_[5] = kHex[c & 0xF];
    p_ += 6;
  }
  void escaped(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const auto* end = p + s.size();
    while (p < end) {
      const auto* run = p;
      while (p < end && kByteClass[*p] == 0) ++p;
      raw(reinterpret_cast<const char*>(run), static_cast<size_t>(p - run));
      if (p == end) break;
      const unsigned char c = *p;
      if (kByteClass[c] == 1) {
        if (c == '"' || c == '\\') {
          p_[0] = '\\';
          p_[1] = static_cast<char>(c);
          p_ += 2;
        } else {
          hexEscape(c);
        }
        ++p;
      } else if (size_t n = utf8Length(p, end)) {
        raw(reinterpret_cast<const char*>(p), n);
        p += n;
      } else {
        hexEscape(c);
        ++p;
      }
    }
  }

  char* p_;
};

}  // namespace

// One worker's ring. Indexes grow forever (64 bits do not wrap); the byte of index i is at
// i % capacity. The producer owns head (and its scratch state), the writer owns tail.
struct AccessLog::Ring {
  explicit Ring(size_t cap)
      : capacity(cap),
        data(std::make_unique<char[]>(cap)),  // zeroed: the pages are touched now, not on a worker
        scratch(std::make_unique<char[]>(kMaxLine)) {}

  const size_t capacity;
  const std::unique_ptr<char[]> data;

  // Producer side.
  alignas(64) std::atomic<uint64_t> head{0};
  uint64_t cached_tail = 0;          // the last tail seen: refreshed only when space seems short
  std::atomic<uint64_t> dropped{0};  // single writer (the producer): load + store
  int64_t date_sec = std::numeric_limits<int64_t>::min();
  size_t date_len = 0;
  char date[40];
  const std::unique_ptr<char[]> scratch;

  // Writer side.
  alignas(64) std::atomic<uint64_t> tail{0};
  std::atomic<bool> wake_requested{
      false};  // set by the producer when it notified, cleared per round

  size_t formatLine(const AccessRecord& r);
  uint64_t countNewlines(uint64_t from, uint64_t to) const;
};

size_t AccessLog::Ring::formatLine(const AccessRecord& r) {
  const int64_t sec = floorDiv(r.unix_ms, 1000);
  const int millis = static_cast<int>(r.unix_ms - sec * 1000);
  if (sec != date_sec) {
    date_len = formatDate(sec, date, sizeof date);
    date_sec = sec;
  }
  LineWriter w(scratch.get());
  w.lit("{\"time\":\"");
  w.raw(date, date_len);
  char frac[6] = {'.',
                  static_cast<char>('0' + millis / 100),
                  static_cast<char>('0' + millis / 10 % 10),
                  static_cast<char>('0' + millis % 10),
                  'Z',
                  '"'};
  w.raw(frac, sizeof frac);
  w.lit(",\"listener\":");
  w.str(r.listener, kMaxField);
  w.lit(",\"client\":");
  w.str(r.client, kMaxField);
  w.lit(",\"method\":");
  w.str(r.method, kMaxField);
  w.lit(",\"path\":");
  w.str(r.path, kMaxPath);
  w.lit(",\"status\":");
  if (r.status == 0) {
    w.lit("null");
  } else {
    w.num(r.status);
  }
  w.lit(",\"bytes_in\":");
  w.num(r.bytes_in);
  w.lit(",\"bytes_out\":");
  w.num(r.bytes_out);
  w.lit(",\"backend\":");
  w.str(r.backend, kMaxField);
  w.lit(",\"server\":");
  if (r.server.empty()) {
    w.lit("null");
  } else {
    w.str(r.server, kMaxField);
  }
  w.lit(",\"retries\":");
  w.num(r.retries);
  w.lit(",\"queue_ms\":");
  w.ms(r.queue_us);
  w.lit(",\"connect_ms\":");
  w.ms(r.connect_us);
  w.lit(",\"first_byte_ms\":");
  w.ms(r.first_byte_us);
  w.lit(",\"total_ms\":");
  w.ms(r.total_us);
  w.lit("}\n");
  return static_cast<size_t>(w.end() - scratch.get());
}

uint64_t AccessLog::Ring::countNewlines(uint64_t from, uint64_t to) const {
  uint64_t lines = 0;
  while (from != to) {
    const size_t pos = from % capacity;
    const size_t len = static_cast<size_t>(std::min<uint64_t>(to - from, capacity - pos));
    lines += static_cast<uint64_t>(std::count(data.get() + pos, data.get() + pos + len, '\n'));
    from += len;
  }
  return lines;
}

Result<std::unique_ptr<AccessLog>> AccessLog::open(const config::AccessLog& cfg, unsigned workers) {
  if (workers == 0) return fail(ErrorSource::kInternal, EINVAL, "access log: no workers");
  int fd = -1;
  bool owns = false;
  if (cfg.path == "stdout") {
    fd = STDOUT_FILENO;
  } else if (cfg.path == "stderr") {
    fd = STDERR_FILENO;
  } else if (cfg.path.empty()) {
    return fail(ErrorSource::kConfig, EINVAL, "access log: no path");
  } else {
    fd = ::open(cfg.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
      const int err = errno;
      return fail(ErrorSource::kConfig, err,
                  fmt::format("access log {}: cannot open: {}", cfg.path, errText(err)));
    }
    owns = true;
  }
  const int efd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) {
    const int err = errno;
    if (owns) ::close(fd);
    return fail(ErrorSource::kInternal, err, fmt::format("access log: eventfd: {}", errText(err)));
  }
  return std::unique_ptr<AccessLog>(new AccessLog(cfg, fd, owns, efd, workers));
}

AccessLog::AccessLog(const config::AccessLog& cfg, int fd, bool owns_fd, int event_fd,
                     unsigned workers)
    : path_(cfg.path), fd_(fd), owns_fd_(owns_fd), stream_(isStream(fd)), event_fd_(event_fd) {
  const size_t cap = static_cast<size_t>(std::max<uint64_t>(cfg.buffer_bytes, 1));
  rings_.reserve(workers);
  for (unsigned i = 0; i < workers; ++i) rings_.push_back(std::make_unique<Ring>(cap));
}

AccessLog::~AccessLog() {
  stop();
  if (owns_fd_) ::close(fd_);
  ::close(event_fd_);
}

void AccessLog::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "tandem-alog");
    run();
  });
}

void AccessLog::stop() {
  if (stopped_.exchange(true)) return;
  if (thread_.joinable()) {
    stopping_.store(true, std::memory_order_release);
    notifyWriter();
    thread_.join();
    return;
  }
  // Never started: write out on this thread, as the writer would have.
  if (reopen_requested_.exchange(false)) doReopen();
  const auto deadline = Clock::now() + flush_timeout_;
  writeRound(&deadline);
}

bool AccessLog::append(unsigned worker, const AccessRecord& r) {
  if (worker >= rings_.size()) std::abort();  // a caller bug, not input
  Ring& ring = *rings_[worker];
  const size_t n = ring.formatLine(r);
  const uint64_t head = ring.head.load(std::memory_order_relaxed);
  if (head + n - ring.cached_tail > ring.capacity) {
    ring.cached_tail = ring.tail.load(std::memory_order_acquire);
    if (head + n - ring.cached_tail > ring.capacity) {
      ring.dropped.store(ring.dropped.load(std::memory_order_relaxed) + 1,
                         std::memory_order_relaxed);
      return false;
    }
  }
  const size_t pos = head % ring.capacity;
  const size_t first = std::min(n, ring.capacity - pos);
  std::memcpy(ring.data.get() + pos, ring.scratch.get(), first);
  if (first < n) std::memcpy(ring.data.get(), ring.scratch.get() + first, n - first);
  ring.head.store(head + n, std::memory_order_release);
  // Past half full: wake the writer early, once until it has been round (the flag is checked
  // before the tail is re-read so that a busy ring costs no extra atomic per line).
  const size_t half = ring.capacity / 2;
  if (head + n - ring.cached_tail >= half && !ring.wake_requested.load(std::memory_order_relaxed)) {
    ring.cached_tail = ring.tail.load(std::memory_order_acquire);
    if (head + n - ring.cached_tail >= half &&
        !ring.wake_requested.exchange(true, std::memory_order_acq_rel)) {
      notifyWriter();
    }
  }
  return true;
}

void AccessLog::reopen() {
  reopen_requested_.store(true, std::memory_order_release);
  notifyWriter();
}

uint64_t AccessLog::written() const { return written_.load(std::memory_order_relaxed); }

uint64_t AccessLog::dropped() const {
  uint64_t n = write_dropped_.load(std::memory_order_relaxed);
  for (const auto& r : rings_) n += r->dropped.load(std::memory_order_relaxed);
  return n;
}

uint64_t AccessLog::writeErrors() const { return write_errors_.load(std::memory_order_relaxed); }

void AccessLog::notifyWriter() {
  const uint64_t one = 1;
  ssize_t unused = ::write(event_fd_, &one, sizeof one);  // EAGAIN: already signalled enough
  (void)unused;
}

void AccessLog::run() {
  bool blocked = false;  // a pipe/socket output did not take everything: also wait for POLLOUT
  while (!stopping_.load(std::memory_order_acquire)) {
    pollfd fds[2] = {{event_fd_, POLLIN, 0}, {fd_, POLLOUT, 0}};
    const int ready = ::poll(fds, blocked ? 2 : 1, static_cast<int>(kRound.count()));
    if (ready > 0 && (fds[0].revents & POLLIN)) {
      uint64_t v;
      ssize_t unused = ::read(event_fd_, &v, sizeof v);
      (void)unused;
    }
    if (reopen_requested_.exchange(false, std::memory_order_acq_rel)) {
      writeRound(nullptr);  // what was queued before the request goes to the old file
      doReopen();
    }
    blocked = writeRound(nullptr);
  }
  if (reopen_requested_.exchange(false)) doReopen();
  const auto deadline = Clock::now() + flush_timeout_;
  writeRound(&deadline);
}

bool AccessLog::writeRound(const Clock::time_point* deadline) {
  bool blocked = false;
  for (auto& ring : rings_) {
    if (drainRing(*ring, deadline)) continue;
    if (deadline) {
      dropPending(*ring);  // the final flush ran out of time: do not hang the shutdown
    } else {
      blocked = true;
    }
  }
  return blocked;
}

bool AccessLog::drainRing(Ring& ring, const Clock::time_point* deadline) {
  // Cleared before head is read: an append that lands after this read notifies again.
  ring.wake_requested.store(false, std::memory_order_relaxed);
  const uint64_t head = ring.head.load(std::memory_order_acquire);
  uint64_t tail = ring.tail.load(std::memory_order_relaxed);
  while (tail != head) {
    uint64_t len = head - tail;
    if (stream_) {
      int timeout_ms = 0;
      if (deadline) {
        const auto left =
            std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now()).count();
        if (left <= 0) return false;
        timeout_ms = static_cast<int>(std::min<int64_t>(left, std::numeric_limits<int>::max()));
      }
      pollfd p{fd_, POLLOUT, 0};
      const int ready = ::poll(&p, 1, timeout_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) return false;  // POLLERR/POLLHUP: let write() report it
      len = std::min<uint64_t>(len, kStreamChunk);
      if (len < head - tail) {  // cut after the last complete line of the chunk, if any
        for (uint64_t i = len; i > 0; --i) {
          if (ring.data[(tail + i - 1) % ring.capacity] == '\n') {
            len = i;
            break;
          }
        }
      }
    }
    const size_t pos = tail % ring.capacity;
    const size_t first = static_cast<size_t>(std::min<uint64_t>(len, ring.capacity - pos));
    iovec iov[2] = {{ring.data.get() + pos, first},
                    {ring.data.get(), static_cast<size_t>(len) - first}};
    const ssize_t n = ::writev(fd_, iov, first < len ? 2 : 1);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN) {  // a non-blocking descriptor we did not open (e.g. stdout)
        if (!stream_ || !deadline) return false;
        continue;  // poll again, until the deadline
      }
      write_errors_.fetch_add(1, std::memory_order_relaxed);
      reportError("write", err);
      dropPending(ring);
      return true;
    }
    const uint64_t end = tail + static_cast<uint64_t>(n);
    written_.fetch_add(ring.countNewlines(tail, end), std::memory_order_relaxed);
    tail = end;
    ring.tail.store(tail, std::memory_order_release);
  }
  return true;
}

void AccessLog::dropPending(Ring& ring) {
  const uint64_t head = ring.head.load(std::memory_order_acquire);
  const uint64_t tail = ring.tail.load(std::memory_order_relaxed);
  write_dropped_.fetch_add(ring.countNewlines(tail, head), std::memory_order_relaxed);
  ring.tail.store(head, std::memory_order_release);
}

void AccessLog::doReopen() {
  if (!owns_fd_) return;
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    const int err = errno;
    log::error("access log {}: reopen failed, still writing to the old file: {}", path_,
               errText(err));
    return;
  }
  ::close(fd_);
  fd_ = fd;
  stream_ = isStream(fd);
}

void AccessLog::reportError(const char* what, int err) {
  ++errors_since_log_;
  const auto now = Clock::now();
  if (error_logged_ && now - last_error_log_ < kErrorLogInterval) return;
  log::error(
      "access log {}: {} failed: {}; dropping lines ({} failed write(s) since the last report)",
      path_, what, errText(err), errors_since_log_);
  errors_since_log_ = 0;
  error_logged_ = true;
  last_error_log_ = now;
}

}  // namespace tandem::proxy
