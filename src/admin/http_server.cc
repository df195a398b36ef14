#include "admin/http_server.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/log.h"
#include "http/parser.h"

namespace tandem::admin {
namespace {

constexpr size_t kMaxHead = 16 * 1024;
constexpr size_t kMaxBody = 64 * 1024;
constexpr size_t kMaxStreamBacklog = 1 << 20;  // an event stream this far behind is closed
constexpr size_t kMaxConnections = 256;
constexpr int64_t kIdleMs = 30'000;

}  // namespace

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string HttpRequest::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (http::iequals(k, name)) return v;
  }
  return {};
}

class HttpServer::Conn final : public IoHandler, public TimerHandler {
 public:
  Conn(HttpServer& srv, int fd, std::string peer)
      : srv_(srv), fd_(fd), peer_(std::move(peer)), timer_(this, 0) {}
  ~Conn() {
    timer_.cancel();
    if (fd_ >= 0) {
      srv_.loop_.remove(fd_);
      ::close(fd_);
    }
  }

  void start() {
    srv_.loop_.add(fd_, this);
    timer_.arm(srv_.loop_.timers(kIdleMs));
  }
  bool streaming() const { return streaming_; }

  void onIo(uint32_t events) override {
    if (dead_) return;
    if (events & (EPOLLERR | EPOLLHUP)) return finish();
    if (events & EPOLLOUT) writable_ = true;
    if (events & (EPOLLIN | EPOLLRDHUP)) {
      if (!readAll()) return finish();
    }
    if (!streaming_) process();
    if (!flush()) return finish();
  }
  void onTimer(int) override {
    if (dead_) return;
    if (streaming_) {
      // Keeps proxies and browsers from timing out a quiet stream (an SSE comment line).
      out_ += ":\n\n";
      timer_.arm(srv_.loop_.timers(15'000));
      if (!flush()) finish();
      return;
    }
    finish();
  }
  void send(std::string_view data) {
    if (dead_) return;
    if (out_.size() > kMaxStreamBacklog) return finish();
    out_.append(data);
    if (!flush()) finish();
  }
  void finish() {
    if (dead_) return;
    dead_ = true;
    timer_.cancel();
    srv_.closed(this);
  }

 private:
  // Reads until EAGAIN; false when the peer closed or the request is absurdly large.
  bool readAll() {
    char buf[16 * 1024];
    for (;;) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n > 0) {
        if (streaming_) continue;  // a stream client has nothing to say
        in_.append(buf, static_cast<size_t>(n));
        if (in_.size() > kMaxHead + kMaxBody + 1024) return false;
        continue;
      }
      if (n == 0) {
        eof_ = true;
        return !out_.empty() || !in_.empty();
      }
      return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
  }

  void process() {
    while (!close_after_ && !streaming_ && !in_.empty()) {
      http::RequestHead head;
      http::ParseState st;
      auto r = http::parseRequestHead(in_, kMaxHead, st, head);
      if (r.status == http::ParseStatus::kIncomplete) {
        if (eof_) close_after_ = true;
        return;
      }
      if (r.status == http::ParseStatus::kError) {
        reply(plain(http::statusFor(r.error), http::describe(r.error)), false);
        return;
      }
      if (head.body == http::BodyKind::kChunked) {
        reply(plain(411, "send a Content-Length"), false);
        return;
      }
      if (head.content_length > kMaxBody) {
        reply(plain(413, "body larger than 64 KiB"), false);
        return;
      }
      const size_t total = head.head_length + head.content_length;
      if (in_.size() < total) {
        if (eof_) close_after_ = true;
        return;
      }
      HttpRequest req;
      req.method = std::string(head.method_text);
      std::string_view target = head.target;
      size_t q = target.find('?');
      req.path = std::string(target.substr(0, q));
      if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
      for (size_t i = 0; i < head.header_count; ++i) {
        req.headers.emplace_back(std::string(head.headers[i].name),
                                 std::string(head.headers[i].value));
      }
      req.authorization = req.header("authorization");
      req.body = in_.substr(head.head_length, head.content_length);
      req.peer = peer_;
      const bool keep = head.keep_alive;
      in_.erase(0, total);
      reply(srv_.handler_(req), keep);
    }
  }

  static HttpResponse plain(int status, std::string_view why) {
    HttpResponse r;
    r.status = status;
    r.content_type = "text/plain; charset=utf-8";
    r.body = std::string(why) + "\n";
    return r;
  }

  void reply(const HttpResponse& r, bool keep_alive) {
    out_ += "HTTP/1.1 " + std::to_string(r.status) + " " + std::string(reasonPhrase(r.status)) +
            "\r\nContent-Type: " + r.content_type + "\r\nCache-Control: no-store\r\n" +
            "X-Content-Type-Options: nosniff\r\n";
    for (const auto& [k, v] : r.headers) out_ += k + ": " + v + "\r\n";
    if (r.stream && r.status == 200) {
      out_ += "Connection: keep-alive\r\n\r\n" + r.body;
      streaming_ = true;
      in_.clear();
      timer_.arm(srv_.loop_.timers(15'000));
      return;
    }
    out_ += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    if (!keep_alive) {
      out_ += "Connection: close\r\n";
      close_after_ = true;
    }
    out_ += "\r\n" + r.body;
    timer_.arm(srv_.loop_.timers(kIdleMs));
  }

  // False when the connection is done (error, or everything sent before a close).
  bool flush() {
    while (writable_ && !out_.empty()) {
      ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
      if (n > 0) {
        out_.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        writable_ = false;
        break;
      }
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    if (out_.empty() && (close_after_ || (eof_ && !streaming_))) return false;
    if (streaming_ && eof_) return false;
    return true;
  }

  HttpServer& srv_;
  int fd_;
  std::string peer_;
  Timer timer_;
  std::string in_;
  std::string out_;
  bool writable_ = true;
  bool eof_ = false;
  bool close_after_ = false;
  bool streaming_ = false;
  bool dead_ = false;  // finished; deleted after the current batch of events
};

class HttpServer::Acceptor final : public IoHandler {
 public:
  explicit Acceptor(HttpServer& s) : s_(s) {}
  void onIo(uint32_t) override { s_.onAccept(); }

 private:
  HttpServer& s_;
};

HttpServer::HttpServer(EventLoop& loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)) {}

HttpServer::~HttpServer() { close(); }

Result<void> HttpServer::listen(const SockAddr& addr) {
  // Not SO_REUSEPORT (unlike data-plane listeners): a second process on the same admin port must
  // fail to start rather than silently share the API.
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(ErrorSource::kInternal, errno, std::strerror(errno));
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, addr.get(), addr.len) != 0 || ::listen(fd, 128) != 0) {
    int e = errno;
    ::close(fd);
    return fail(ErrorSource::kInternal, e, std::strerror(e));
  }
  listen_fd_ = fd;
  acceptor_ = std::make_unique<Acceptor>(*this);
  loop_.add(fd, acceptor_.get(), EPOLLIN);
  return {};
}

uint16_t HttpServer::port() const { return localPort(listen_fd_); }

void HttpServer::onAccept() {
  for (;;) {
    SockAddr peer;
    peer.len = sizeof peer.ss;
    int fd = ::accept4(listen_fd_, peer.get(), &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // EAGAIN, or out of descriptors: the next connection retries
    }
    if (conns_.size() >= kMaxConnections) {
      ::close(fd);
      continue;
    }
    auto* c = new Conn(*this, fd, ipText(peer));
    conns_.push_back(c);
    c->start();
  }
}

void HttpServer::closed(Conn* c) {
  auto it = std::find(conns_.begin(), conns_.end(), c);
  if (it == conns_.end()) return;
  conns_.erase(it);
  struct Grave : Deferred {
    explicit Grave(Conn* c) : c(c) {}
    ~Grave() override { delete c; }
    Conn* c;
  };
  loop_.destroyLater(std::make_unique<Grave>(c));
}

void HttpServer::broadcast(std::string_view data) {
  std::vector<Conn*> copy = conns_;  // send() may close (and unlist) a connection
  for (Conn* c : copy) {
    if (c->streaming()) c->send(data);
  }
}

void HttpServer::close() {
  for (Conn* c : conns_) delete c;
  conns_.clear();
  if (listen_fd_ >= 0) {
    loop_.remove(listen_fd_);
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
  acceptor_.reset();
}

}  // namespace tandem::admin
