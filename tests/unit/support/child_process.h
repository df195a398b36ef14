#pragma once
// What a test needs to run a real server (etcd, redis-server) as a child process: a free
// 127.0.0.1 port, a scratch folder, a spawn with the output in a log file, a readiness wait, and
// stop/kill/pause/resume by PID (never by name).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

namespace tandem::testing {

// A 127.0.0.1 TCP port that was free a moment ago (bound, read back, closed); 0 if none.
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

// The last `max` bytes of a file (a child's log, for a failure message).
inline std::string fileTail(const std::string& path, size_t max = 3000) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max ? s.substr(s.size() - max) : s;
}

// A folder /tmp/<prefix>-XXXXXX made on the first make() and kept across restarts of the server
// that uses it; removed with its contents on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(std::string prefix) : prefix_(std::move(prefix)) {}
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }

  // False if the folder could not be made.
  bool make() {
    if (!path_.empty()) return true;
    std::string tmpl = "/tmp/" + prefix_ + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) return false;
    path_ = tmpl;
    return true;
  }
  bool made() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

 private:
  std::string prefix_;
  std::string path_;
};

// One child process at a time, addressed by its PID: killed (and reaped) on destruction, and
// killed by the kernel if the test binary dies first.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { signalAndReap(SIGKILL); }

  // Forks and execs args[0] with `args`: stdin /dev/null, stdout and stderr appended to `log`.
  // Returns "" or why it failed.
  std::string spawn(std::vector<std::string> args, const std::string& log) {
    if (pid_ > 0) return "already running";
    name_ = std::filesystem::path(args.at(0)).filename().string();
    log_ = log;
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ < 0) {
      pid_ = 0;
      return "fork failed";
    }
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec; the child dies with the test binary.
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
    return "";
  }

  // Calls `ready` every `interval` until it says true (""). Otherwise why not, with the end of
  // the log: the child exited (it is reaped), or it did not `what` within `limit` (it still runs:
  // the caller stops it).
  std::string waitReady(const std::function<bool()>& ready, std::chrono::seconds limit,
                        std::chrono::milliseconds interval, const std::string& what) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (pid_ <= 0 || ::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return name_ + " exited during start; log:\n" + fileTail(log_);
      }
      if (ready()) return "";
      std::this_thread::sleep_for(interval);
    }
    return name_ + " did not " + what + " within " + std::to_string(limit.count()) + " s; log:\n" +
           fileTail(log_);
  }

  // Sends `sig` (after SIGCONT, in case it was paused) and reaps; SIGKILL if it has not exited
  // after `grace`.
  void signalAndReap(int sig, std::chrono::milliseconds grace = std::chrono::seconds(5)) {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, sig);
    const auto end = std::chrono::steady_clock::now() + grace;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= end) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = 0;
  }

  // SIGSTOP / SIGCONT: a server that hangs, then goes on.
  void pause() {
    if (pid_ > 0) ::kill(pid_, SIGSTOP);
  }
  void resume() {
    if (pid_ > 0) ::kill(pid_, SIGCONT);
  }

  bool running() const { return pid_ > 0; }

 private:
  pid_t pid_ = 0;
  std::string name_;  // of the binary, for messages
  std::string log_;
};

}  // namespace tandem::testing
