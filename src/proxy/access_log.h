#pragma once
// The access log (issue 4): one JSON line per request, formatted on the worker into a per-worker
// single-producer/single-consumer byte ring and written to the file by a thread of its own. Workers
// never wait for the file: when a ring is full (slow disk, stuck pipe, failing writes) the line is
// dropped and counted instead.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config/config.h"
#include "core/error.h"

namespace tandem::proxy {

// One finished request. The views only need to live for the duration of AccessLog::append().
struct AccessRecord {
  int64_t unix_ms = 0;  // wall clock when the request head was complete
  std::string_view listener;
  std::string_view client;  // IP text
  std::string_view method;
  std::string_view path;   // request target as received; truncated to 4096 bytes
  int status = 0;          // status sent to the client; 0 = none (client went away) -> JSON null
  uint64_t bytes_in = 0;   // request bytes from the client (head + body)
  uint64_t bytes_out = 0;  // response bytes to the client
  std::string_view backend;
  std::string_view server;  // empty = no server was reached -> JSON null
  uint32_t retries = 0;
  int64_t queue_us = -1;       // waiting for a server/connection; -1 = did not happen -> null
  int64_t connect_us = -1;     // TCP connect to the server (-1 on a reused connection)
  int64_t first_byte_us = -1;  // request head complete -> first response byte from the server
  int64_t total_us = -1;       // request head complete -> last response byte sent
};

// Line format (keys in this order; strings JSON-escaped, control characters and bytes that are not
// valid UTF-8 as \u00XX; times in milliseconds with 3 decimals; null for "did not happen"):
// {"time":"2026-11-24T08:30:00.123Z","listener":"web","client":"127.0.0.1","method":"GET",
//  "path":"/x?y=1","status":200,"bytes_in":78,"bytes_out":312,"backend":"app","server":"a1",
//  "retries":0,"queue_ms":0.004,"connect_ms":0.120,"first_byte_ms":0.510,"total_ms":0.612}
class AccessLog {
 public:
  // Bytes kept (before escaping) of the path, and of listener, client, method, backend, server.
  static constexpr size_t kMaxPath = 4096;
  static constexpr size_t kMaxField = 256;
  // The writer's round: it writes out every ring at least this often.
  static constexpr std::chrono::milliseconds kRound{50};

  // Opens the file (O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, 0640) or takes fd 1/2 for
  // "stdout"/"stderr", and allocates one ring of cfg.buffer_bytes per worker (`cfg.enabled` is the
  // caller's business). An error (with the path and strerror) if it cannot be opened. Main thread.
  // Opening a FIFO that has no reader blocks until one appears (as open(2) does).
  static Result<std::unique_ptr<AccessLog>> open(const config::AccessLog& cfg, unsigned workers);

  ~AccessLog();  // stop(), then closes the file (fd 1/2 are left open)
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Starts the writer thread. Call at most once.
  void start();
  // Idempotent; call after the workers have stopped appending. Writes out what is queued, then ends
  // the thread (without a started thread the queue is written out on the calling thread). When the
  // output is a pipe or socket that accepts nothing for flushTimeout(), the rest is dropped and
  // counted rather than hanging the shutdown (a regular file is always written out).
  void stop();

  // Called only by worker `worker` (< workers given to open(); one producer per ring): formats one
  // JSON line into that worker's ring without blocking, allocating or taking a lock. False (and
  // the line counted in dropped()) when it does not fit. The only syscall it may make is one
  // eventfd write when the ring passes half full, at most once per writer round.
  bool append(unsigned worker, const AccessRecord& r);

  // Thread-safe (e.g. from the SIGHUP/SIGUSR1 handler thread): the writer reopens the path at its
  // next round, so a rotated (renamed) file is left behind. No-op for stdout/stderr. If the new
  // open fails, the old file stays in use and the error is logged.
  void reopen();

  uint64_t written() const;      // lines written to the file
  uint64_t dropped() const;      // lines dropped because a ring was full or the write failed
  uint64_t writeErrors() const;  // failed write(2) calls (ENOSPC, EIO, EPIPE, ...)

  // How long stop() waits for a pipe or socket that accepts nothing. Before start(); default 2 s.
  void setFlushTimeout(std::chrono::milliseconds t) { flush_timeout_ = t; }
  std::chrono::milliseconds flushTimeout() const { return flush_timeout_; }

 private:
  struct Ring;
  AccessLog(const config::AccessLog& cfg, int fd, bool owns_fd, int event_fd, unsigned workers);

  void run();  // the writer thread
  // Writes out every ring once. With a deadline (final flush), waits up to it for a pipe to accept;
  // without, returns true when a ring still has bytes because the output would block.
  bool writeRound(const std::chrono::steady_clock::time_point* deadline);
  // Writes out one ring up to its current head. Returns false when the output would block.
  bool drainRing(Ring& ring, const std::chrono::steady_clock::time_point* deadline);
  void dropPending(Ring& ring);
  void doReopen();
  void notifyWriter();
  void reportError(const char* what, int err);

  const std::string path_;
  int fd_;
  const bool owns_fd_;
  bool stream_ = false;  // pipe, socket or character device: poll before writing, bounded chunks
  const int event_fd_;
  std::vector<std::unique_ptr<Ring>> rings_;
  std::chrono::milliseconds flush_timeout_{2'000};
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> reopen_requested_{false};
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> write_dropped_{0};
  std::atomic<uint64_t> write_errors_{0};
  std::chrono::steady_clock::time_point last_error_log_{};  // writer only
  bool error_logged_ = false;                               // writer only
  uint64_t errors_since_log_ = 0;                           // writer only
};

}  // namespace tandem::proxy
