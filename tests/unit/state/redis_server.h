#pragma once
// A real redis-server for one test: a free 127.0.0.1 port, no persistence, ready when it answers
// PING, stopped by PID. Restarts reuse the port (an empty server, as after a crash without
// persistence). TANDEM_REDIS_BIN overrides /usr/bin/redis-server.
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace tandem::testing {

struct RedisReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyFree>;

inline uint16_t freeTcpPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  if (fd >= 0) ::close(fd);
  return port;
}

class RedisServer {
 public:
  RedisServer() = default;
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;
  ~RedisServer() {
    kill();
    if (client_ != nullptr) redisFree(client_);
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  static std::string binary() {
    const char* v = std::getenv("TANDEM_REDIS_BIN");
    return v != nullptr && *v != '\0' ? v : "/usr/bin/redis-server";
  }

  // Starts redis-server (on the same port as before, if it ran before) and waits for PING.
  // Returns "" or why it failed.
  std::string start() {
    using namespace std::chrono_literals;
    if (pid_ > 0) return "";
    const std::string bin = binary();
    if (::access(bin.c_str(), X_OK) != 0) {
      return bin + " not found: install Debian redis-server (scripts/install-deps.sh)";
    }
    if (dir_.empty()) {
      char tmpl[] = "/tmp/tandem-redis-XXXXXX";
      if (::mkdtemp(tmpl) == nullptr) return "mkdtemp failed";
      dir_ = tmpl;
    }
    if (port_ == 0) port_ = freeTcpPort();
    if (port_ == 0) return "no free port";
    std::vector<std::string> args = {
        bin,      "--port", std::to_string(port_), "--bind", "127.0.0.1",
        "--save", "",       "--appendonly",        "no",     "--dir",
        dir_};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = logPath();
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) {
      pid_ = 0;
      return "fork failed";
    }
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec; redis dies with the test binary.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(126);
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (out >= 0) {
        ::dup2(out, 1);
        ::dup2(out, 2);
      }
      if (in >= 0) ::dup2(in, 0);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const auto end = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return "redis-server exited during start; log:\n" + logTail();
      }
      auto r = command({"PING"});
      if (r && r->type == REDIS_REPLY_STATUS && std::string(r->str, r->len) == "PONG") return "";
      std::this_thread::sleep_for(5ms);
    }
    kill();
    return "redis-server did not answer PING within 10 s; log:\n" + logTail();
  }

  // SIGKILL (a crash) and reap.
  void kill() { terminate(SIGKILL); }
  // SIGTERM and reap.
  void stop() { terminate(SIGTERM); }
  void pause() {
    if (pid_ > 0) ::kill(pid_, SIGSTOP);
  }
  void resume() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
  }

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

  std::string logPath() const { return dir_ + "/redis.log"; }
  std::string logTail() const {
    std::ifstream in(logPath());
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    return s.size() > 3000 ? s.substr(s.size() - 3000) : s;
  }

 private:
  void terminate(int sig) {
    if (client_ != nullptr) {
      redisFree(client_);
      client_ = nullptr;
    }
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);  // in case it was paused
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
  }

  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = 0;
  redisContext* client_ = nullptr;
};

}  // namespace tandem::testing
