#pragma once
// A connection from a worker to one backend server. While a session uses it, its events go to that
// session; while idle in the pool, any event (the server closed it, or sent unsolicited bytes)
// means it cannot be reused, so it is closed.
#include <cstdint>

#include "core/buffer.h"
#include "core/event_loop.h"

namespace tandem::proxy {

class Worker;
struct BackendRt;

// Implemented by the session that currently owns the connection.
class UpstreamOwner {
 public:
  virtual void onUpstreamIo(uint32_t events) = 0;

 protected:
  ~UpstreamOwner() = default;
};

class UpstreamConn final : public IoHandler, public Deferred {
 public:
  UpstreamConn(Worker& w, BackendRt& backend, int server, int fd);
  ~UpstreamConn() override;

  void onIo(uint32_t events) override;

  int fd() const { return fd_; }
  int server() const { return server_; }
  BackendRt& backend() { return backend_; }
  Buffer& in() { return in_; }

  void setOwner(UpstreamOwner* o) { owner_ = o; }
  // Closes the socket and schedules destruction (safe inside an event callback).
  void close();
  bool closed() const { return fd_ < 0; }

  bool connected = false;
  bool reused = false;  // was taken from the idle pool for the current request
  bool readable = false;
  bool writable = false;
  bool eof = false;
  bool hup = false;  // FIN or error seen by epoll

 private:
  Worker& w_;
  BackendRt& backend_;
  int server_;
  int fd_;
  Buffer in_;
  UpstreamOwner* owner_ = nullptr;
};

}  // namespace tandem::proxy
