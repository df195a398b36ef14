#pragma once
// Kernel-side forwarding for TCP tunnels: socket -> pipe -> socket with splice(2), so payload bytes
// never enter user space. Pipes come from a per-worker pool with a cap (each costs two descriptors
// and the descriptor limit is shared with connections); without a pipe the tunnel copies through
// its buffers instead.
#include <cstddef>
#include <vector>

namespace tandem::proxy {

struct Pipe {
  int r = -1;
  int w = -1;
};

class PipePool {
 public:
  explicit PipePool(size_t max_live) : max_live_(max_live) {}
  ~PipePool();
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // A pipe, or {-1,-1} when the cap is reached or pipe2 fails.
  Pipe acquire();
  // Only empty pipes go back to the pool; a pipe with bytes left is closed.
  void release(Pipe p, bool empty);

 private:
  std::vector<Pipe> free_;
  size_t live_ = 0;
  size_t max_live_;
};

// One direction of a spliced tunnel.
class SpliceLane {
 public:
  static constexpr size_t kChunk = 64 * 1024;
  bool active() const { return pipe_.r >= 0; }
  bool empty() const { return queued_ == 0; }
  void attach(Pipe p) { pipe_ = p; }
  Pipe detach() {
    Pipe p = pipe_;
    pipe_ = {};
    queued_ = 0;
    return p;
  }
  // Moves bytes from `src` into the pipe. Returns bytes, 0 on EOF, -1 would block, -2 error.
  // `ready` is cleared only by EAGAIN (a short splice proves nothing).
  long fill(int src, bool& ready);
  // Moves queued bytes to `dst`. Returns bytes, -1 would block, -2 error.
  long drain(int dst, bool& ready);

 private:
  Pipe pipe_;
  size_t queued_ = 0;
};

}  // namespace tandem::proxy
