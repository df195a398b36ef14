#include "config/etcd_client.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>

#include "config/config.h"

namespace tandem::config {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using std::chrono::milliseconds;

constexpr milliseconds kPollSlice{50};       // cancel hooks are polled at least this often
constexpr size_t kMaxHeadBytes = 64 * 1024;  // an etcd answer head is a few hundred bytes
constexpr size_t kMaxBodyBytes = 64u << 20;  // a config document is far smaller

// ---------------------------------------------------------------------------------------------
// base64

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int decodeChar(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::string base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) |
                 uint32_t(uint8_t(bytes[i + 2]));
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) {
      int d = 0;
      if (k < 4 - size_t(pad)) {
        d = decodeChar(text[i + k]);
        if (d < 0) return std::nullopt;
      }
      v = (v << 6) | uint32_t(d);
    }
    // Non-canonical encodings (bits set below the padding) are rejected too.
    if ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0)) return std::nullopt;
    out += char((v >> 16) & 0xff);
    if (pad < 2) out += char((v >> 8) & 0xff);
    if (pad < 1) out += char(v & 0xff);
  }
  return out;
}

namespace {

// ---------------------------------------------------------------------------------------------
// JSON adapter: nlohmann is only touched here, through accessors that check types first (and a
// catch-all around each decode), so no exception leaves this file.

std::optional<json> parseJson(std::string_view text) {
  try {
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  } catch (...) {
    return std::nullopt;
  }
}

std::string dumpJson(const json& j) {
  try {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
  } catch (...) {
    return "{}";
  }
}

const json* member(const json& obj, const char* name) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(name);
  return it == obj.end() ? nullptr : &*it;
}

// 64-bit numbers arrive as strings; plain JSON numbers are accepted too. Absent = 0.
int64_t getInt(const json& obj, const char* name) {
  const json* v = member(obj, name);
  if (!v) return 0;
  if (v->is_number_integer()) return v->get<int64_t>();
  if (v->is_string()) {
    const std::string& s = v->get_ref<const std::string&>();
    int64_t out = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (ec == std::errc() && p == s.data() + s.size()) return out;
  }
  return 0;
}

bool getBool(const json& obj, const char* name) {
  const json* v = member(obj, name);
  if (!v) return false;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_string()) return v->get_ref<const std::string&>() == "true";
  return false;
}

std::string getString(const json& obj, const char* name) {
  const json* v = member(obj, name);
  if (v && v->is_string()) return v->get_ref<const std::string&>();
  return {};
}

// Base64 field; absent = empty (the gateway omits empty values).
std::optional<std::string> getBytes(const json& obj, const char* name) {
  const json* v = member(obj, name);
  if (!v) return std::string();
  if (!v->is_string()) return std::nullopt;
  return base64Decode(v->get_ref<const std::string&>());
}

int64_t headerRevision(const json& obj) {
  const json* h = member(obj, "header");
  return h ? getInt(*h, "revision") : 0;
}

std::optional<EtcdKeyValue> decodeKv(const json& kv) {
  auto value = getBytes(kv, "value");
  if (!value) return std::nullopt;
  EtcdKeyValue out;
  out.found = true;
  out.value = std::move(*value);
  out.create_revision = getInt(kv, "create_revision");
  out.mod_revision = getInt(kv, "mod_revision");
  out.version = getInt(kv, "version");
  out.lease = getInt(kv, "lease");
  return out;
}

// The first kv of a range answer (we only ever range one key); found = false when there is none.
std::optional<EtcdKeyValue> firstKv(const json& range_response) {
  const json* kvs = member(range_response, "kvs");
  if (!kvs || !kvs->is_array() || kvs->empty()) return EtcdKeyValue{};
  return decodeKv((*kvs)[0]);
}

std::string i64(int64_t v) { return std::to_string(v); }

// ---------------------------------------------------------------------------------------------
// Errors

std::string errnoText(int e) {
  switch (e) {
    case ECONNREFUSED:
      return "connection refused";
    case ETIMEDOUT:
      return "timed out";
    case ECONNRESET:
      return "connection reset";
    case EPIPE:
      return "connection closed";
    default: {
      std::string s = std::strerror(e);
      if (!s.empty()) s[0] = char(std::tolower(static_cast<unsigned char>(s[0])));
      return s;
    }
  }
}

tl::unexpected<Error> transportError(const std::string& url, int code, const std::string& what) {
  return fail(ErrorSource::kUpstream, code, "etcd " + url + ": " + what, true);
}

tl::unexpected<Error> cancelledError() {
  return fail(ErrorSource::kInternal, ECANCELED, "etcd call cancelled");
}

tl::unexpected<Error> malformed(const std::string& url, const std::string& what) {
  return fail(ErrorSource::kUpstream, EPROTO, "etcd " + url + ": malformed answer: " + what, true);
}

// An etcd error answer: {"error":"...","code":N,"message":"..."} (or a grpc-gateway stream error
// {"error":{"grpc_code":N,"http_code":N,"message":"..."}}).
std::string errorText(std::string_view body) {
  auto j = parseJson(body);
  if (!j) return std::string(body.substr(0, 200));
  std::string msg = getString(*j, "message");
  if (msg.empty()) msg = getString(*j, "error");
  if (const json* e = member(*j, "error"); msg.empty() && e) msg = getString(*e, "message");
  return msg.empty() ? std::string(body.substr(0, 200)) : msg;
}

// Why each endpoint tried so far did not answer, for the error when none did.
struct Failures {
  std::string text;  // "; "-separated
  Error last;        // the last transport error

  void note(const std::string& why) { text += (text.empty() ? "" : "; ") + why; }
  void add(Error e) {
    note(e.message);
    last = std::move(e);
  }
  tl::unexpected<Error> error() && {
    last.message = std::move(text);
    last.retryable = true;
    last.source = ErrorSource::kUpstream;
    return tl::unexpected(std::move(last));
  }
};

// ---------------------------------------------------------------------------------------------
// Blocking I/O on a non-blocking socket, in slices so that cancel hooks are polled.

struct Hooks {
  const std::function<bool()>* a = nullptr;
  const std::function<bool()>* b = nullptr;
  int wake_fd = -1;
  bool fired() const { return (a && *a && (*a)()) || (b && *b && (*b)()); }
};

enum class Wait { kReady, kTimeout, kCancelled };

Wait waitFd(int fd, short events, Clock::time_point deadline, const Hooks& hooks) {
  // A readable wake fd whose hooks do not say "cancelled" (left signalled by its owner) is
  // ignored for the rest of this wait rather than spun on.
  bool use_wake = hooks.wake_fd >= 0;
  for (;;) {
    if (hooks.fired()) return Wait::kCancelled;
    auto now = Clock::now();
    if (now >= deadline) return Wait::kTimeout;
    auto left = std::chrono::ceil<milliseconds>(deadline - now);
    int slice = int(std::min(left, kPollSlice).count());
    pollfd p[2] = {{fd, events, 0}, {hooks.wake_fd, POLLIN, 0}};
    int r = ::poll(p, use_wake ? 2 : 1, std::max(slice, 1));
    if (r < 0 && errno != EINTR) return Wait::kReady;  // the next read/write says what
    if (r <= 0) continue;
    if (use_wake && p[1].revents != 0) {
      if (hooks.fired()) return Wait::kCancelled;
      use_wake = false;
    }
    if (p[0].revents != 0) return Wait::kReady;  // including POLLERR/POLLHUP
  }
}

// Incremental HTTP/1.1 response reader: head, then a Content-Length, chunked or close-delimited
// body. Decoded body bytes accumulate in `body`; a streaming caller consumes them as they come.
class ResponseReader {
 public:
  // Returns false on a protocol error (see error()).
  bool feed(const char* data, size_t n) {
    raw_.append(data, n);
    return process();
  }
  // The peer closed: completes a close-delimited body.
  void eof() {
    if (head_done_ && framing_ == Framing::kClose) complete_ = true;
  }
  bool headDone() const { return head_done_; }
  bool complete() const { return complete_; }
  int status() const { return status_; }
  const std::string& error() const { return error_; }
  std::string body;

 private:
  enum class Framing { kLength, kChunked, kClose };
  enum class ChunkState { kSize, kData, kDataEnd, kTrailer };

  bool bad(std::string why) {
    error_ = std::move(why);
    return false;
  }

  static std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
    return out;
  }

  bool parseHead(std::string_view head) {
    // "HTTP/1.1 200 OK"
    if (head.size() < 12 || !head.starts_with("HTTP/1.")) return bad("not an HTTP/1.x answer");
    auto [p, ec] = std::from_chars(head.data() + 9, head.data() + 12, status_);
    if (ec != std::errc() || p != head.data() + 12) return bad("bad status line");
    framing_ = Framing::kClose;
    size_t pos = head.find("\r\n");
    while (pos != std::string_view::npos && pos + 2 < head.size()) {
      size_t start = pos + 2;
      size_t end = head.find("\r\n", start);
      std::string_view line =
          head.substr(start, end == std::string_view::npos ? head.npos : end - start);
      pos = end;
      size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      std::string name = lower(line.substr(0, colon));
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
        value.remove_prefix(1);
      }
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
        value.remove_suffix(1);
      if (name == "transfer-encoding" && lower(value).find("chunked") != std::string::npos) {
        framing_ = Framing::kChunked;
      } else if (name == "content-length" && framing_ != Framing::kChunked) {
        auto [q, e2] = std::from_chars(value.data(), value.data() + value.size(), remaining_);
        if (e2 != std::errc() || q != value.data() + value.size()) return bad("bad Content-Length");
        if (remaining_ > kMaxBodyBytes) return bad("answer too large");
        framing_ = Framing::kLength;
      }
    }
    if (status_ == 204 || status_ == 304 || (status_ >= 100 && status_ < 200)) {
      framing_ = Framing::kLength;
      remaining_ = 0;
    }
    head_done_ = true;
    if (framing_ == Framing::kLength && remaining_ == 0) complete_ = true;
    return true;
  }

  bool process() {
    if (!head_done_) {
      size_t end = raw_.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (raw_.size() > kMaxHeadBytes) return bad("answer head too large");
        return true;
      }
      if (!parseHead(std::string_view(raw_).substr(0, end))) return false;
      raw_.erase(0, end + 4);
    }
    if (complete_) {
      raw_.clear();
      return true;
    }
    switch (framing_) {
      case Framing::kClose:
        body += raw_;
        raw_.clear();
        break;
      case Framing::kLength: {
        size_t take = std::min(remaining_, raw_.size());
        body.append(raw_, 0, take);
        raw_.erase(0, take);
        remaining_ -= take;
        if (remaining_ == 0) complete_ = true;
        break;
      }
      case Framing::kChunked:
        if (!processChunks()) return false;
        break;
    }
    if (body.size() > kMaxBodyBytes) return bad("answer too large");
    return true;
  }

  bool processChunks() {
    size_t pos = 0;
    for (;;) {
      if (chunk_state_ == ChunkState::kSize || chunk_state_ == ChunkState::kDataEnd ||
          chunk_state_ == ChunkState::kTrailer) {
        size_t eol = raw_.find("\r\n", pos);
        if (eol == std::string::npos) {
          if (raw_.size() - pos > 4096) return bad("bad chunk framing");
          break;
        }
        std::string_view line(raw_.data() + pos, eol - pos);
        pos = eol + 2;
        if (chunk_state_ == ChunkState::kDataEnd) {
          if (!line.empty()) return bad("bad chunk end");
          chunk_state_ = ChunkState::kSize;
          continue;
        }
        if (chunk_state_ == ChunkState::kTrailer) {
          if (line.empty()) {
            complete_ = true;
            break;
          }
          continue;
        }
        size_t semi = line.find(';');
        if (semi != std::string_view::npos) line = line.substr(0, semi);
        while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
        size_t size = 0;
        auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
        if (line.empty() || ec != std::errc() || p != line.data() + line.size()) {
          return bad("bad chunk size");
        }
        if (size > kMaxBodyBytes) return bad("chunk too large");
        if (size == 0) {
          chunk_state_ = ChunkState::kTrailer;
        } else {
          remaining_ = size;
          chunk_state_ = ChunkState::kData;
        }
        continue;
      }
      // kData
      size_t take = std::min(remaining_, raw_.size() - pos);
      if (take == 0) break;
      body.append(raw_, pos, take);
      pos += take;
      remaining_ -= take;
      if (remaining_ == 0) chunk_state_ = ChunkState::kDataEnd;
    }
    raw_.erase(0, pos);
    return true;
  }

  std::string raw_;
  bool head_done_ = false;
  bool complete_ = false;
  int status_ = 0;
  Framing framing_ = Framing::kClose;
  size_t remaining_ = 0;
  ChunkState chunk_state_ = ChunkState::kSize;
  std::string error_;
};

enum class ReadMode { kHead, kFirstLine, kWhole };

// One HTTP exchange on a fresh connection. The connection stays open after the head (and what has
// arrived of the body) for a streaming caller.
class Exchange {
 public:
  Exchange(const EtcdClient::Endpoint& ep, const Hooks& hooks) : ep_(ep), hooks_(hooks) {}

  // Waits until the socket takes data: an error when cancelled or at the deadline.
  Result<void> writable(Clock::time_point deadline, const char* timeout_text) {
    switch (waitFd(fd_.get(), POLLOUT, deadline, hooks_)) {
      case Wait::kCancelled:
        return cancelledError();
      case Wait::kTimeout:
        return transportError(ep_.url, ETIMEDOUT, timeout_text);
      case Wait::kReady:
        break;
    }
    return {};
  }

  // Connects and sends the request; then reads until the head has arrived, the first line of the
  // body too, or the whole answer (`mode`). Errors are transport errors.
  Result<void> start(std::string_view method, std::string_view path, const std::string& body,
                     Clock::time_point deadline, ReadMode mode, bool keepalive_probes) {
    auto fd = connectNonBlocking(ep_.addr);
    if (!fd) return transportError(ep_.url, fd.error().code, errnoText(fd.error().code));
    fd_.reset(*fd);
    if (auto r = writable(deadline, "connect timed out"); !r) return r;
    if (int e = socketError(fd_.get()); e != 0) return transportError(ep_.url, e, errnoText(e));
    if (keepalive_probes) {
      // A watch may stay silent for hours: let TCP notice a peer that vanished (~11 s).
      int one = 1, idle = 5, intvl = 2, cnt = 3;
      unsigned user_timeout_ms = 10'000;
      setsockopt(fd_.get(), SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
      setsockopt(fd_.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
      setsockopt(fd_.get(), IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
      setsockopt(fd_.get(), IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
      setsockopt(fd_.get(), IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms,
                 sizeof user_timeout_ms);
    }
    std::string req;
    req.reserve(256 + body.size());
    req.append(method).append(" ").append(ep_.base).append(path);
    req.append(" HTTP/1.1\r\nHost: ").append(ep_.host);
    req.append("\r\nUser-Agent: tandem\r\nAccept: application/json\r\nConnection: close\r\n");
    if (method != "GET") {
      req.append("Content-Type: application/json\r\nContent-Length: ");
      req.append(std::to_string(body.size())).append("\r\n");
    }
    req.append("\r\n").append(body);
    size_t sent = 0;
    while (sent < req.size()) {
      ssize_t n = ::send(fd_.get(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += size_t(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) return transportError(ep_.url, errno, errnoText(errno));
      if (auto r = writable(deadline, "timed out sending the request"); !r) return r;
    }
    auto done = [&] {
      if (!reader.headDone()) return false;
      switch (mode) {
        case ReadMode::kHead:
          return true;
        case ReadMode::kFirstLine:
          return reader.complete() || reader.body.find('\n') != std::string::npos;
        case ReadMode::kWhole:
          break;
      }
      return reader.complete();
    };
    while (!done()) {
      auto r = readSome(deadline);
      if (!r) return tl::unexpected(r.error());
      if (!*r) {
        return transportError(
            ep_.url, ETIMEDOUT,
            reader.headDone() ? "timed out reading the answer" : "timed out waiting for an answer");
      }
    }
    return {};
  }

  // Reads once (waiting up to `deadline`). true = progress, false = deadline passed. EOF before
  // the answer is complete is an error ("connection closed").
  Result<bool> readSome(Clock::time_point deadline) {
    switch (waitFd(fd_.get(), POLLIN, deadline, hooks_)) {
      case Wait::kCancelled:
        return cancelledError();
      case Wait::kTimeout:
        return false;
      case Wait::kReady:
        break;
    }
    char buf[16384];
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      int e = errno;
      return transportError(ep_.url, e, errnoText(e));
    }
    if (n == 0) {
      reader.eof();
      if (reader.complete()) return true;
      return transportError(ep_.url, ECONNRESET, "connection closed");
    }
    if (!reader.feed(buf, size_t(n))) return malformed(ep_.url, reader.error());
    return true;
  }

  ResponseReader reader;

 private:
  const EtcdClient::Endpoint& ep_;
  Hooks hooks_;
  UniqueFd fd_;
};

}  // namespace

// -------------------------------------------------------------------------------------------------
// EtcdClient

Result<EtcdClient> EtcdClient::make(EtcdClientOptions options) {
  if (options.endpoints.empty()) return fail(ErrorSource::kConfig, EINVAL, "no etcd endpoint");
  EtcdClient c;
  for (const std::string& url : options.endpoints) {
    auto parsed = parseHttpUrl(url);
    if (!parsed)
      return fail(ErrorSource::kConfig, EINVAL, "etcd endpoint " + url + ": " + parsed.error());
    auto addr = tandem::parseAddress(parsed->address.host, parsed->address.port);
    if (!addr) {
      return fail(ErrorSource::kConfig, EINVAL,
                  "etcd endpoint " + url + ": " + addr.error().message);
    }
    Endpoint ep;
    ep.url = url;
    ep.host = parsed->address.text();
    ep.base = parsed->path;
    while (!ep.base.empty() && ep.base.back() == '/') ep.base.pop_back();
    ep.addr = *addr;
    c.endpoints_.push_back(std::move(ep));
  }
  if (options.timeout.count() <= 0) options.timeout = milliseconds{2'000};
  c.options_ = std::move(options);
  return c;
}

template <class T, class F>
Result<T> EtcdClient::tryEndpoints(F&& attempt) const {
  const size_t n = endpoints_.size();
  const size_t first = preferred_.load(std::memory_order_relaxed) % n;
  Failures failed;
  for (size_t i = 0; i < n; ++i) {
    const size_t idx = (first + i) % n;
    std::optional<Result<T>> r = attempt(idx, endpoints_[idx], i + 1 == n, failed);
    if (r) return std::move(*r);
  }
  return std::move(failed).error();
}

Result<EtcdClient::Answer> EtcdClient::call(std::string_view path, const std::string& body,
                                            bool get, milliseconds timeout, Read read) const {
  if (timeout.count() <= 0) timeout = options_.timeout;
  Hooks hooks{&options_.cancelled, nullptr, options_.wake_fd};
  return tryEndpoints<Answer>([&](size_t idx, const Endpoint& ep, bool last_endpoint,
                                  Failures& failed) -> std::optional<Result<Answer>> {
    Exchange ex(ep, hooks);
    auto r = ex.start(get ? "GET" : "POST", path, body, Clock::now() + timeout,
                      read == Read::kWhole ? ReadMode::kWhole : ReadMode::kFirstLine, false);
    if (!r) {
      if (r.error().code == ECANCELED) return tl::unexpected(r.error());
      failed.add(r.error());
      return std::nullopt;
    }
    if (ex.reader.status() >= 500 && !last_endpoint) {
      // This member cannot serve (no leader, shutting down): another one may.
      failed.note("etcd " + ep.url + ": HTTP " + std::to_string(ex.reader.status()) + ": " +
                  errorText(ex.reader.body));
      return std::nullopt;
    }
    preferred_.store(idx, std::memory_order_relaxed);
    Answer a;
    a.status = ex.reader.status();
    a.body = std::move(ex.reader.body);
    a.url = ep.url;
    return a;
  });
}

Result<EtcdClient::Answer> EtcdClient::callJson(std::string_view path, const std::string& body,
                                                milliseconds timeout, Read read) const {
  auto a = call(path, body, false, timeout, read);
  if (!a) return tl::unexpected(a.error());
  if (a->status < 200 || a->status > 299) {
    return fail(
        ErrorSource::kUpstream, a->status,
        "etcd " + a->url + ": HTTP " + std::to_string(a->status) + ": " + errorText(a->body),
        a->status >= 500);
  }
  return a;
}

Result<bool> EtcdClient::health() const {
  auto a = call("/health", "", true, milliseconds{0});
  if (!a) return tl::unexpected(a.error());
  auto j = parseJson(a->body);
  if (!j) return false;
  return a->status == 200 && getString(*j, "health") == "true";
}

Result<EtcdRange> EtcdClient::range(std::string_view key) const {
  json req = {{"key", base64Encode(key)}};
  auto a = callJson("/v3/kv/range", dumpJson(req));
  if (!a) return tl::unexpected(a.error());
  auto j = parseJson(a->body);
  if (!j) return malformed(a->url, "range: not JSON");
  auto kv = firstKv(*j);
  if (!kv) return malformed(a->url, "range: bad kv");
  return EtcdRange{std::move(*kv), headerRevision(*j)};
}

Result<int64_t> EtcdClient::put(std::string_view key, std::string_view value, int64_t lease) const {
  json req = {{"key", base64Encode(key)}, {"value", base64Encode(value)}};
  if (lease != 0) req["lease"] = i64(lease);
  auto a = callJson("/v3/kv/put", dumpJson(req));
  if (!a) return tl::unexpected(a.error());
  auto j = parseJson(a->body);
  if (!j) return malformed(a->url, "put: not JSON");
  return headerRevision(*j);
}

Result<int64_t> EtcdClient::del(std::string_view key) const {
  json req = {{"key", base64Encode(key)}};
  auto a = callJson("/v3/kv/deleterange", dumpJson(req));
  if (!a) return tl::unexpected(a.error());
  auto j = parseJson(a->body);
  if (!j) return malformed(a->url, "deleterange: not JSON");
  return getInt(*j, "deleted");
}

Result<EtcdCreateResult> EtcdClient::txnCreate(std::string_view key, std::string_view value,
                                               int64_t lease) const {
  const std::string k = base64Encode(key);
  json put = {{"key", k}, {"value", base64Encode(value)}};
  if (lease != 0) put["lease"] = i64(lease);
  json req = {
      {"compare",
       json::array(
           {{{"key", k}, {"result", "EQUAL"}, {"target", "CREATE"}, {"create_revision", "0"}}})},
      {"success", json::array({{{"request_put", put}}})},
      {"failure", json::array({{{"request_range", {{"key", k}}}}})},
  };
  auto a = callJson("/v3/kv/txn", dumpJson(req));
  if (!a) return tl::unexpected(a.error());
  auto j = parseJson(a->body);
  if (!j) return malformed(a->url, "txn: not JSON");
  EtcdCreateResult out;
  out.created = getBool(*j, "succeeded");
  out.revision = headerRevision(*j);
  if (!out.created) {
    const json* responses = member(*j, "responses");
    if (responses && responses->is_array() && !responses->empty()) {
      if (const json* rr = member((*responses)[0], "response_range")) {
        auto kv = firstKv(*rr);
        if (!kv) return malformed(a->url, "txn: bad kv");
        out.existing = std::move(*kv);
      }
    }
  }
  return out;
}

Result<bool> EtcdClient::txnDeleteIfValue(std::string_view key, std::string_view value,
                                          int64_t lease) const {
  const std::string k = base64Encode(key);
  json compare = json::array(
      {{{"key", k}, {"result", "EQUAL"}, {"target", "VALUE"}, {"value", base64Encode(value)}}});
  if (lease != 0) {
    compare.push_back(
        {{"key", k}, {"result", "EQUAL"}, {"target", "LEASE"}, {"lease", i64(lease)}});
  }
  json req = {{"compare", compare},
              {"success", json::array({{{"request_delete_range", {{"key", k}}}}})}};
  auto a = callJson("/v3/kv/txn", dumpJson(req));
  if (!a) return tl::unexpected(a.error());
  auto j = parseJson(a->body);
  if (!j) return malformed(a->url, "txn: not JSON");
  return getBool(*j, "succeeded");
}

Result<EtcdClient::Lease> EtcdClient::leaseGrant(int64_t ttl_s) const {
  json req = {{"TTL", i64(ttl_s)}};
  auto a = callJson("/v3/lease/grant", dumpJson(req));
  if (!a) return tl::unexpected(a.error());
  auto j = parseJson(a->body);
  if (!j) return malformed(a->url, "lease grant: not JSON");
  if (std::string err = getString(*j, "error"); !err.empty()) {
    return fail(ErrorSource::kUpstream, EIO, "etcd lease grant: " + err);
  }
  Lease l{getInt(*j, "ID"), getInt(*j, "TTL")};
  if (l.id == 0) return malformed(a->url, "lease grant: no ID");
  return l;
}

Result<int64_t> EtcdClient::leaseKeepAlive(int64_t id, milliseconds timeout) const {
  // A bidirectional stream in gRPC; through the gateway, one request body = one round, answered as
  // one streamed message {"result":{...}}.
  json req = {{"ID", i64(id)}};
  auto a = callJson("/v3/lease/keepalive", dumpJson(req), timeout, Read::kFirstLine);
  if (!a) return tl::unexpected(a.error());
  std::string_view text(a->body);
  auto j = parseJson(text.substr(0, text.find('\n')));  // the first message only
  if (!j) return malformed(a->url, "lease keepalive: not JSON");
  if (const json* e = member(*j, "error")) {
    std::string msg = getString(*e, "message");
    return fail(ErrorSource::kUpstream, EIO,
                "etcd lease keepalive: " + (msg.empty() ? std::string("error") : msg), true);
  }
  const json* result = member(*j, "result");
  return getInt(result ? *result : *j, "TTL");
}

Result<void> EtcdClient::leaseRevoke(int64_t id) const {
  json req = {{"ID", i64(id)}};
  auto a = callJson("/v3/lease/revoke", dumpJson(req));
  if (!a) return tl::unexpected(a.error());
  return {};
}

Result<void> EtcdClient::compact(int64_t revision) const {
  json req = {{"revision", i64(revision)}, {"physical", true}};
  auto a = callJson("/v3/kv/compaction", dumpJson(req));
  if (!a) return tl::unexpected(a.error());
  return {};
}

Result<WatchEnd> EtcdClient::watch(std::string_view key, int64_t start_revision,
                                   const EventFn& on_event, const std::function<bool()>& stop,
                                   Clock::time_point until,
                                   const std::function<void(int64_t)>& on_created) const {
  json create = {{"key", base64Encode(key)}};
  if (start_revision > 0) create["start_revision"] = i64(start_revision);
  const std::string body = dumpJson(json{{"create_request", create}});
  Hooks hooks{&options_.cancelled, &stop, options_.wake_fd};
  return tryEndpoints<WatchEnd>([&](size_t idx, const Endpoint& ep, bool,
                                    Failures& failed) -> std::optional<Result<WatchEnd>> {
    Exchange ex(ep, hooks);
    const auto now = Clock::now();
    const auto start_deadline = std::min(until, now + options_.timeout);
    auto started = ex.start("POST", "/v3/watch", body, start_deadline, ReadMode::kHead, true);
    if (!started) {
      if (started.error().code == ECANCELED) return WatchEnd{};
      if (Clock::now() >= until) return WatchEnd{};
      failed.add(started.error());
      return std::nullopt;
    }
    if (ex.reader.status() != 200) {
      // Read the (short) error body, bounded by the same deadline.
      while (!ex.reader.complete()) {
        auto r = ex.readSome(start_deadline);
        if (!r || !*r) break;
      }
      return fail(ErrorSource::kUpstream, ex.reader.status(),
                  "etcd " + ep.url + ": watch: HTTP " + std::to_string(ex.reader.status()) + ": " +
                      errorText(ex.reader.body),
                  ex.reader.status() >= 500);
    }
    preferred_.store(idx, std::memory_order_relaxed);
    WatchEnd end;
    bool created = false;
    size_t scanned = 0;
    for (;;) {
      // Every complete line is one message.
      std::string& buf = ex.reader.body;
      size_t consumed = 0;
      for (;;) {
        size_t nl = buf.find('\n', std::max(consumed, scanned));
        if (nl == std::string::npos) break;
        std::string_view line(buf.data() + consumed, nl - consumed);
        consumed = nl + 1;
        if (line.empty() || line == "\r") continue;
        auto j = parseJson(line);
        if (!j) return malformed(ep.url, "watch: not JSON");
        if (const json* e = member(*j, "error")) {
          std::string msg = e->is_object() ? getString(*e, "message") : getString(*j, "error");
          return fail(ErrorSource::kUpstream, EIO, "etcd " + ep.url + ": watch: " + msg, true);
        }
        const json* result = member(*j, "result");
        if (!result) continue;
        if (int64_t rev = headerRevision(*result); rev > 0) end.revision = rev;
        if (getBool(*result, "created") && !created) {
          created = true;
          if (on_created) on_created(end.revision);
        }
        if (const json* events = member(*result, "events"); events && events->is_array()) {
          for (const json& ev : *events) {
            const json* kv = member(ev, "kv");
            if (!kv) continue;
            EtcdWatchEvent out;
            out.deleted = getString(ev, "type") == "DELETE";
            out.mod_revision = getInt(*kv, "mod_revision");
            if (!out.deleted) {
              auto value = getBytes(*kv, "value");
              if (!value) return malformed(ep.url, "watch: bad value");
              out.value = std::move(*value);
            }
            if (on_event) on_event(out);
          }
        }
        if (getBool(*result, "canceled")) {
          end.compact_revision = getInt(*result, "compact_revision");
          if (end.compact_revision > 0) {
            end.reason = WatchEnd::Reason::kCompacted;
            end.message =
                "revision " + std::to_string(start_revision) +
                " was compacted (oldest available: " + std::to_string(end.compact_revision) + ")";
          } else {
            end.reason = WatchEnd::Reason::kServerCancelled;
            end.message = getString(*result, "cancel_reason");
            if (end.message.empty()) end.message = "watch cancelled by etcd";
          }
          return end;
        }
      }
      buf.erase(0, consumed);
      scanned = buf.size();
      if (buf.size() > kMaxBodyBytes) return malformed(ep.url, "watch: message too large");
      if (ex.reader.complete()) {
        return transportError(ep.url, ECONNRESET, "watch: stream ended");
      }
      // Until created, the client's timeout applies; afterwards a watch may be quiet forever.
      auto r = ex.readSome(created ? until : start_deadline);
      if (!r) {
        if (r.error().code == ECANCELED) return end;
        return tl::unexpected(r.error());
      }
      if (!*r) {
        if (created || Clock::now() >= until) return end;  // reached `until`
        return transportError(ep.url, ETIMEDOUT, "watch: not created in time");
      }
    }
  });
}

}  // namespace tandem::config
