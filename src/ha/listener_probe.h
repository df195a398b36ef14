#pragma once
// Tracking "a listener down" (issue 5): a thread of its own connects to each tracked listener
// every interval, as a client on this host would. A listener counts as down after `fall`
// consecutive failed connects (refused: the socket is gone; timed out: its accept queue is full or
// the process stopped accepting; EMFILE: the process has no descriptor left to serve with) and up
// again after one success. Listeners bound to a virtual IP are not probed: while this node is a
// backup, a connect to the VIP would reach the master instead and prove nothing about this node.
#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tandem::ha {

struct ProbeTarget {
  std::string name;
  std::string host;  // IP literal; a wildcard address is probed on loopback
  uint16_t port = 0;
};

class ListenerProbe {
 public:
  using Targets = std::function<std::vector<ProbeTarget>()>;  // asked every round (reloads)
  // `changed(down, detail)` runs on the probe thread when the verdict changes: `down` is true
  // while at least one target is down; detail names the listeners and reasons.
  using Changed = std::function<void(bool down, const std::string& detail)>;

  ListenerProbe(Targets targets, std::chrono::milliseconds interval,
                std::chrono::milliseconds timeout, int fall, Changed changed);
  ~ListenerProbe();
  ListenerProbe(const ListenerProbe&) = delete;
  ListenerProbe& operator=(const ListenerProbe&) = delete;

  void start();
  void stop();

  // One connect attempt with a timeout; empty on success, otherwise the reason.
  static std::string probeOnce(const ProbeTarget& t, std::chrono::milliseconds timeout);

 private:
  void loop();

  Targets targets_;
  std::chrono::milliseconds interval_, timeout_;
  int fall_;
  Changed changed_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace tandem::ha
