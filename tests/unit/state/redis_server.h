#pragma once
// A real redis-server for one test: a free 127.0.0.1 port, no persistence, ready when it answers
// PING, stopped by PID. Restarts reuse the port (an empty server, as after a crash without
// persistence). TANDEM_REDIS_BIN overrides /usr/bin/redis-server.
#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "../support/child_process.h"

namespace tandem::testing {

struct RedisReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyFree>;

class RedisServer {
 public:
  RedisServer() = default;
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;
  ~RedisServer() { kill(); }

  static std::string binary() {
    const char* v = std::getenv("TANDEM_REDIS_BIN");
    return v != nullptr && *v != '\0' ? v : "/usr/bin/redis-server";
  }

  // Starts redis-server (on the same port as before, if it ran before) and waits for PING.
  // Returns "" or why it failed.
  std::string start() {
    using namespace std::chrono_literals;
    if (proc_.running()) return "";
    const std::string bin = binary();
    if (::access(bin.c_str(), X_OK) != 0) {
      return bin + " not found: install Debian redis-server (scripts/install-deps.sh)";
    }
    if (!dir_.make()) return "mkdtemp failed";
    if (port_ == 0) port_ = freeTcpPort();
    if (port_ == 0) return "no free port";
    std::string why = proc_.spawn({bin, "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no", "--dir", dir_.path()},
                                  logPath());
    if (!why.empty()) return why;
    why = proc_.waitReady(
        [&] {
          auto r = command({"PING"});
          return r && r->type == REDIS_REPLY_STATUS && std::string(r->str, r->len) == "PONG";
        },
        10s, 5ms, "answer PING");
    if (!why.empty()) kill();
    return why;
  }

  // SIGKILL (a crash) and reap.
  void kill() { terminate(SIGKILL); }
  // SIGTERM, then SIGKILL after 5 s; always reaps.
  void stop() { terminate(SIGTERM); }
  void pause() { proc_.pause(); }
  void resume() { proc_.resume(); }

  uint16_t port() const { return port_; }
  // Reserves a port without starting (a test of "Redis not there yet").
  void choosePort() {
    if (port_ == 0) port_ = freeTcpPort();
  }

  // A command on the test's own connection (reconnects after a restart); null on failure.
  RedisReplyPtr command(const std::vector<std::string>& args) {
    if (client_ != nullptr && client_->err != 0) {
      redisFree(client_);
      client_ = nullptr;
    }
    if (client_ == nullptr) {
      client_ = redisConnectWithTimeout("127.0.0.1", port_, timeval{1, 0});
      if (client_ == nullptr) return nullptr;
      if (client_->err != 0) {
        redisFree(client_);
        client_ = nullptr;
        return nullptr;
      }
      redisSetTimeout(client_, timeval{2, 0});
    }
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.c_str());
      lens.push_back(a.size());
    }
    return RedisReplyPtr(static_cast<redisReply*>(
        redisCommandArgv(client_, static_cast<int>(argv.size()), argv.data(), lens.data())));
  }

  std::string logPath() const { return dir_.path() + "/redis.log"; }

 private:
  void terminate(int sig) {
    if (client_ != nullptr) {
      redisFree(client_);
      client_ = nullptr;
    }
    proc_.signalAndReap(sig);
  }

  ScratchDir dir_{"tandem-redis"};
  uint16_t port_ = 0;
  ChildProcess proc_;
  redisContext* client_ = nullptr;
};

}  // namespace tandem::testing
