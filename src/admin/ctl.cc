#include "admin/ctl.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

#include "config/config.h"
#include "core/socket.h"

namespace tandem::admin {
namespace {

constexpr const char* kUsage =
    "usage: tandem ctl [--admin URL] [--token T|--token-file F] COMMAND\n"
    "  status | backends | alerts | cluster | timeseries | metrics\n"
    "  drain|enable|disable BACKEND SERVER\n"
    "  weight BACKEND SERVER N\n"
    "  events [--max-events N]      (server-sent events, one JSON object per line)\n"
    "  get PATH                     (any GET endpoint)\n";

struct Call {
  std::string method = "GET";
  std::string path;
  std::string body;
  bool stream = false;
};

bool waitFor(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  int r;
  do {
    r = ::poll(&p, 1, timeout_ms);
  } while (r < 0 && errno == EINTR);
  return r > 0;
}

int fatal(const std::string& msg) {
  std::fprintf(stderr, "tandem ctl: %s\n", msg.c_str());
  return 2;
}

// Streams a text/event-stream body: prints each event's data line; stops after max_events.
int relayEvents(int fd, std::string buf, uint64_t max_events) {
  uint64_t seen = 0;
  char chunk[8192];
  for (;;) {
    size_t end;
    while ((end = buf.find("\n\n")) != std::string::npos) {
      std::string_view ev(buf.data(), end);
      size_t pos = 0;
      while (pos < ev.size()) {
        size_t nl = ev.find('\n', pos);
        std::string_view line = ev.substr(pos, nl == std::string_view::npos ? ev.npos : nl - pos);
        if (line.starts_with("data: ")) {
          std::printf("%.*s\n", static_cast<int>(line.size() - 6), line.data() + 6);
          std::fflush(stdout);
          if (max_events && ++seen >= max_events) return 0;
        }
        if (nl == std::string_view::npos) break;
        pos = nl + 1;
      }
      buf.erase(0, end + 2);
    }
    // No timeout: a stream may stay quiet for a long time (the server sends keep-alive comments).
    if (!waitFor(fd, POLLIN, -1)) return 2;
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return n == 0 ? 0 : 2;
    buf.append(chunk, static_cast<size_t>(n));
  }
}

int perform(const CtlOptions& o, const Call& call, const std::string& token) {
  auto url = config::parseHttpUrl(o.admin);
  if (!url) return fatal("--admin " + o.admin + ": " + url.error());
  auto addr = parseAddress(url->address.host, url->address.port);
  if (!addr) return fatal(addr.error().message);
  auto fd = connectNonBlocking(*addr);
  if (!fd) return fatal("cannot connect to " + o.admin + ": " + fd.error().message);
  UniqueFd sock(*fd);
  if (!waitFor(sock.get(), POLLOUT, o.timeout_ms) || socketError(sock.get()) != 0) {
    return fatal("cannot connect to " + o.admin + ": " +
                 std::strerror(socketError(sock.get()) ? socketError(sock.get()) : ETIMEDOUT));
  }
  std::string base = url->path == "/" ? "" : url->path;
  if (!base.empty() && base.back() == '/') base.pop_back();
  std::string req = call.method + " " + base + call.path +
                    " HTTP/1.1\r\nHost: " + url->address.text() +
                    "\r\nUser-Agent: tandem-ctl\r\nConnection: close\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  if (call.method != "GET") {
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(call.body.size()) +
           "\r\n";
  }
  req += "\r\n" + call.body;
  size_t sent = 0;
  while (sent < req.size()) {
    if (!waitFor(sock.get(), POLLOUT, o.timeout_ms)) return fatal("timeout sending the request");
    ssize_t n = ::send(sock.get(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) return fatal(std::strerror(errno));
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string resp;
  char chunk[16384];
  size_t head_end = std::string::npos;
  for (;;) {
    if (head_end == std::string::npos) head_end = resp.find("\r\n\r\n");
    if (head_end != std::string::npos && call.stream) break;
    if (!waitFor(sock.get(), POLLIN, o.timeout_ms)) return fatal("timeout waiting for the answer");
    ssize_t n = ::read(sock.get(), chunk, sizeof chunk);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return fatal(std::strerror(errno));
    if (n == 0) break;
    resp.append(chunk, static_cast<size_t>(n));
  }
  if (head_end == std::string::npos) head_end = resp.find("\r\n\r\n");
  if (head_end == std::string::npos || resp.size() < 12) return fatal("malformed answer");
  int status = std::atoi(resp.c_str() + 9);
  std::string body = resp.substr(head_end + 4);
  if (call.stream && status == 200) return relayEvents(sock.get(), body, o.max_events);
  FILE* out = status >= 200 && status < 300 ? stdout : stderr;
  std::fwrite(body.data(), 1, body.size(), out);
  if (!body.empty() && body.back() != '\n') std::fputc('\n', out);
  return status >= 200 && status < 300 ? 0 : 1;
}

}  // namespace

int runCtl(const CtlOptions& o) {
  const auto& a = o.args;
  if (a.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  std::string token = o.token;
  if (token.empty() && !o.token_file.empty()) {
    std::ifstream f(o.token_file);
    if (!f) return fatal("cannot read " + o.token_file);
    std::getline(f, token);
    while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  }
  Call call;
  const std::string& cmd = a[0];
  auto need = [&](size_t n) { return a.size() == n + 1; };
  if ((cmd == "status" || cmd == "backends" || cmd == "alerts" || cmd == "cluster" ||
       cmd == "timeseries") &&
      need(0)) {
    call.path = "/api/v1/" + cmd;
  } else if (cmd == "metrics" && need(0)) {
    call.path = "/metrics";
  } else if (cmd == "events" && need(0)) {
    call.path = "/api/v1/events";
    call.stream = true;
  } else if (cmd == "get" && need(1) && a[1].starts_with("/")) {
    call.path = a[1];
  } else if ((cmd == "drain" || cmd == "enable" || cmd == "disable") && need(2)) {
    call.method = "POST";
    call.path = "/api/v1/backends/" + a[1] + "/servers/" + a[2] + "/" + cmd;
  } else if (cmd == "weight" && need(3)) {
    call.method = "PUT";
    call.path = "/api/v1/backends/" + a[1] + "/servers/" + a[2] + "/weight";
    call.body = "{\"weight\":" + a[3] + "}";
    if (a[3].empty() || a[3].find_first_not_of("0123456789") != std::string::npos) {
      return fatal("weight must be a number, got '" + a[3] + "'");
    }
  } else {
    std::fputs(kUsage, stderr);
    return 2;
  }
  return perform(o, call, token);
}

}  // namespace tandem::admin
