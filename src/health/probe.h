#pragma once
// One active health check of one server, run on the control thread's event loop: a TCP connect,
// or an HTTP request whose status (and optionally body) is checked. One check at a time; the
// caller schedules the next one.
#include <functional>
#include <string>

#include "config/config.h"
#include "core/buffer.h"
#include "core/event_loop.h"
#include "core/socket.h"
#include "http/parser.h"

namespace tandem::health {

class Probe final : public IoHandler, public TimerHandler {
 public:
  // `done(ok, why)` is called once per check, on the loop thread.
  using Done = std::function<void(bool ok, const std::string& why)>;

  Probe(EventLoop& loop, BufferPool& pool, const config::ActiveHealth& cfg, const SockAddr& addr,
        std::string host_header, Done done);
  ~Probe();

  // Starts a check after `delay_ms` (0: now). A check in progress is left to finish.
  void schedule(int64_t delay_ms);
  bool running() const { return fd_ >= 0; }

  void onIo(uint32_t events) override;
  void onTimer(int tag) override;

 private:
  enum Tag { kStart = 1, kTimeout = 2 };
  void begin();
  void finish(bool ok, const std::string& why);
  void onWritable();
  void onReadable();
  bool verdictFromResponse(std::string& why, bool eof);

  EventLoop& loop_;
  const config::ActiveHealth& cfg_;
  SockAddr addr_;
  std::string request_;
  Done done_;
  Timer start_timer_;
  Timer timeout_timer_;
  int fd_ = -1;
  bool connected_ = false;
  size_t sent_ = 0;
  Buffer in_;
  http::ParseState st_;
  http::ResponseHead head_;
  bool head_done_ = false;
  int status_ = 0;
  size_t body_start_ = 0;
};

}  // namespace tandem::health
