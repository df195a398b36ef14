#include "proxy/session.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <initializer_list>

#include "core/clock.h"
#include "core/log.h"
#include "proxy/access_log.h"
#include "proxy/rewrite.h"

namespace tandem::proxy {
namespace {

constexpr size_t kMaxResponseHead = 64 * 1024;
constexpr int64_t kLingerMs = 2000;
constexpr int kMaxAttempts = 8;
constexpr int64_t kDrainGraceMs = 1000;

bool wouldBlock(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

// Reads once into `b` (at least 4 KiB of room). Returns bytes, 0 on EOF, -1 on EAGAIN, -2 on error.
// A short read means the socket was drained at that instant, so with edge-triggered epoll the next
// arrival raises a new event and `ready` may be cleared without waiting for EAGAIN.
// A peer that has sent FIN (`hup`) gets no further edge, so then only EAGAIN or EOF clears `ready`.
ssize_t readSome(int fd, Buffer& b, bool& ready, bool hup) {
  if (b.writable() < 4096) b.prepare(4096);
  char* p = b.prepare(1);
  size_t room = b.writable();
  ssize_t n = ::read(fd, p, room);
  if (n > 0) {
    b.commit(static_cast<size_t>(n));
    if (static_cast<size_t>(n) < room && !hup) ready = false;
    return n;
  }
  if (n == 0) return 0;
  if (wouldBlock(errno) || errno == EINTR) {
    ready = false;
    return -1;
  }
  return -2;
}

// Writes `a` then the first `blen` bytes of `b`. Returns bytes written, -1 on EAGAIN, -2 on error.
ssize_t writeTwo(int fd, std::string_view a, std::string_view b, bool& ready) {
  iovec iov[2];
  int cnt = 0;
  if (!a.empty()) iov[cnt++] = {const_cast<char*>(a.data()), a.size()};
  if (!b.empty()) iov[cnt++] = {const_cast<char*>(b.data()), b.size()};
  if (cnt == 0) return 0;
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = cnt;
  ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  if (n >= 0) {
    if (static_cast<size_t>(n) < a.size() + b.size()) ready = false;
    return n;
  }
  if (wouldBlock(errno) || errno == EINTR) {
    ready = false;
    return -1;
  }
  return -2;
}

}  // namespace

void BodyFramer::start(http::BodyKind k, uint64_t content_length) {
  kind = k;
  remaining = content_length;
  chunked.reset();
  error = false;
  done = k == http::BodyKind::kNone || (k == http::BodyKind::kContentLength && content_length == 0);
}

size_t BodyFramer::admit(std::string_view avail) {
  if (done || avail.empty()) return 0;
  switch (kind) {
    case http::BodyKind::kNone:
      return 0;
    case http::BodyKind::kContentLength: {
      size_t n = static_cast<size_t>(std::min<uint64_t>(remaining, avail.size()));
      remaining -= n;
      done = remaining == 0;
      return n;
    }
    case http::BodyKind::kChunked: {
      auto step = chunked.feed(avail);
      if (step.error) {
        error = true;
        return 0;
      }
      done = step.done;
      return step.consumed;
    }
    case http::BodyKind::kUntilClose:
      return avail.size();
  }
  return 0;
}

Session::Session(Worker& w, Generation& gen, ListenerShared& ls, int fd, const SockAddr& peer)
    : w_(w),
      gen_(&gen),
      ls_(&ls),
      cfg_(ls.cfg),
      be_(&gen.backends[ls.backend_index]),
      fd_(fd),
      client_ip_(ipText(peer)),
      peer_(peer),
      in_(w.pool()),
      out_(w.pool()),
      client_timer_(this, kClientTimer),
      up_timer_(this, kUpstreamTimer),
      tcp_(ls.cfg->mode == config::ListenerMode::kTcp),
      up_out_(w.pool()),
      lstats_(gen.listener_stats[ls.index]) {}

Session::~Session() {
  if (fd_ >= 0) ::close(fd_);
}

void Session::start() {
  w_.loop().add(fd_, this);
  w_.sessionOpened(this, gen_);
  if (cfg_->tls.context) [[unlikely]] {
    tls_ = tls::Conn::make(cfg_->tls.context, fd_, w_.pool());
    if (!tls_) {
      closeNow();
      return;
    }
    phase_ = Phase::kHandshake;
    splice_tried_ = true;  // TCP mode: bytes pass through OpenSSL, never spliced
    c_readable_ = true;    // the ClientHello is often there already
    // header_timeout covers the head from accept, so the handshake too (the timer runs on).
    armClient(ClientTimer::kHeader);
    drive();
    return;
  }
  if (tcp_) {
    hash_ = balance::hash64(ipBytes(peer_));
    phase_ = Phase::kTunnel;
    armClient(ClientTimer::kIdle);
    if (!connectUpstream()) {
      closeNow();
      return;
    }
  } else {
    armClient(ClientTimer::kHeader);
    // Clients send the request right after the handshake, so it is usually here by the time we
    // accept: read it now instead of waiting for the first event (one epoll_wait less a request).
    c_readable_ = true;
    c_writable_ = true;
  }
  drive();
}

void Session::onIo(uint32_t events) {
  if (phase_ == Phase::kClosed) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c_readable_ = true;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c_hup_ = true;
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c_writable_ = true;
  // Records the socket did not take yet go first, whatever the session is waiting for.
  if (tls_ && c_writable_ && tls_->pending()) [[unlikely]]
    tls_->flush(c_writable_);
  drive();
}

void Session::onUpstreamIo(uint32_t) {
  if (phase_ == Phase::kClosed) return;
  drive();
}

void Session::drainNow() {
  if (phase_ != Phase::kHead || !in_.empty()) return;  // busy: closes after its response
  // A client may be sending a request right now: give idle connections a short grace period in
  // which a request is still answered (with Connection: close), then close them.
  c_readable_ = true;
  if (readClient() > 0) {
    drive();
    return;
  }
  if (c_eof_) {
    closeNow();
    return;
  }
  client_timer_kind_ = ClientTimer::kIdle;
  client_timer_.arm(w_.loop().timers(
      std::min<int64_t>(kDrainGraceMs, gen_->snap->cfg->drain_timeout.count() / 2)));
}

void Session::armClient(ClientTimer kind) {
  client_timer_kind_ = kind;
  switch (kind) {
    case ClientTimer::kNone:
      client_timer_.cancel();
      break;
    case ClientTimer::kHeader:
      client_timer_.arm(w_.loop().timers(cfg_->limits.header_timeout.count()));
      break;
    case ClientTimer::kIdle:
      client_timer_.arm(w_.loop().timers(cfg_->limits.idle_timeout.count()));
      break;
    case ClientTimer::kLinger:
      client_timer_.arm(w_.loop().timers(kLingerMs));
      break;
    case ClientTimer::kRate:
      client_timer_.arm(w_.loop().timers(cfg_->limits.min_rate_period.count()));
      break;
  }
}

void Session::onTimer(int tag) {
  if (phase_ == Phase::kClosed) return;
  if (tag == kClientTimer) {
    switch (phase_) {
      case Phase::kHandshake:
        lstats_->tls_handshake_failures.add();  // header_timeout: no plaintext 408 possible
        log::debug("TLS handshake with {} timed out", client_ip_);
        closeNow();
        break;
      case Phase::kHead:
        if (in_.empty() && client_timer_kind_ == ClientTimer::kIdle) {
          closeNow();  // idle keep-alive connection
        } else {
          if (client_timer_kind_ == ClientTimer::kHeader) lstats_->timeouts[kHeaderTimeout].add();
          respond(408);
        }
        break;
      case Phase::kTunnel:
        closeNow();  // idle tunnel
        break;
      case Phase::kExchange:
        if (client_timer_kind_ == ClientTimer::kRate) {
          checkRate();
        } else {
          closeNow();
        }
        break;
      case Phase::kClosing:
      case Phase::kClosed:
        closeNow();
        break;
    }
  } else {
    if (up_ && !up_->connected) {
      onConnectFailed();
    } else if (phase_ == Phase::kExchange && !resp_head_done_ && !resp_sent_any_) {
      if (up_) w_.recordOutcome(*be_, server_, false);
      if (!retry(TryFailure::kTimeout)) respond(504);
    } else if (phase_ == Phase::kExchange && !resp_sent_any_) {
      respond(504);
    } else {
      closeNow();
    }
  }
  drive();
}

int Session::readClient() {
  ssize_t n =
      tls_ ? tls_->read(in_, c_readable_, c_writable_) : readSome(fd_, in_, c_readable_, c_hup_);
  if (n == 0 || n == -2) {
    c_eof_ = true;
    c_readable_ = false;
    return 0;
  }
  if (n > 0) {
    lstats_->bytes_in.add(static_cast<uint64_t>(n));
    c_moved_ += static_cast<uint64_t>(n);
  }
  return static_cast<int>(n);
}

bool Session::waitingOnClient() const {
  if (phase_ != Phase::kExchange || !up_ || !up_->connected) return false;
  // Response bytes are ready and the client's socket takes no more (slow read).
  if (!c_writable_ && (!out_.empty() || resp_pending_ > 0)) return true;
  // Body bytes are owed, the socket is drained and there is room for them: not backpressure
  // from a slow backend (then in_ is full), only the client is slow (slow POST).
  return !req_body_.done && !abandon_request_ && !c_readable_ && !c_eof_ &&
         in_.size() < BufferPool::kChunk;
}

void Session::checkRate() {
  // Cut only when the exchange waited on the client at both ends of a period and the client
  // moved fewer than min_rate bytes in it: a client is cut one to two periods into a stall, and
  // an exchange that waited on the backend meanwhile is not blamed on the client.
  const bool bound = waitingOnClient();
  if (bound && rate_bound_ && c_moved_ - rate_mark_ < cfg_->limits.min_rate_bytes) {
    const bool reading = !req_body_.done && !resp_sent_any_ && out_.empty();
    lstats_->timeouts[reading ? kSlowBody : kSlowRead].add();
    log::debug("client {} under min_rate ({} bytes in {} ms): closed", client_ip_,
               c_moved_ - rate_mark_, cfg_->limits.min_rate_period.count());
    if (reading) {
      respond(408);  // slow POST: the backend connection is released, the client told why
    } else {
      closeNow();  // slow read: it takes no bytes, so an error page would not reach it either
    }
    return;
  }
  rate_bound_ = bound;
  rate_mark_ = c_moved_;
  armClient(ClientTimer::kRate);
}

void Session::drive() {
  bool progress = true;
  while (progress) {
    switch (phase_) {
      case Phase::kHandshake:
        progress = stepHandshake();
        break;
      case Phase::kHead:
        progress = stepHead();
        break;
      case Phase::kExchange:
        progress = stepExchange();
        break;
      case Phase::kTunnel:
        progress = stepTunnel();
        break;
      case Phase::kClosing:
        progress = stepClosing();
        break;
      case Phase::kClosed:
        return;
    }
  }
}

// ---- TLS ------------------------------------------------------------------------------------

bool Session::stepHandshake() {
  if (!c_readable_) return false;
  switch (tls_->handshake(c_readable_, c_writable_)) {
    case tls::Conn::Handshake::kWait:
      return false;
    case tls::Conn::Handshake::kFailed:
      // Plain HTTP on this port ends here too: nothing was forwarded. A port probe that sent
      // nothing is no failed handshake.
      if (tls_->receivedAny()) lstats_->tls_handshake_failures.add();
      log::debug("TLS handshake with {} failed: {}", client_ip_, tls_->failure());
      closeNow();
      return false;
    case tls::Conn::Handshake::kDone:
      break;
  }
  lstats_->tls_handshakes.add();
  if (!tcp_) {
    phase_ = Phase::kHead;
    return true;
  }
  hash_ = balance::hash64(ipBytes(peer_));
  phase_ = Phase::kTunnel;
  armClient(ClientTimer::kIdle);
  if (!connectUpstream()) {
    closeNow();
    return false;
  }
  return true;
}

ssize_t Session::writeClient(std::string_view a, std::string_view b) {
  if (tls_) [[unlikely]]
    return tls_->write(a, b, c_writable_);
  return writeTwo(fd_, a, b, c_writable_);
}

void Session::shutdownClient() {
  if (tls_) [[unlikely]] {
    tls_->shutdownWrite(c_writable_);  // close_notify, then FIN once all is sent
    return;
  }
  ::shutdown(fd_, SHUT_WR);
}

// ---- request head ----------------------------------------------------------------------------

bool Session::stepHead() {
  if (!in_.empty()) {
    http::RequestHead& req = w_.scratch_request;
    auto r = http::parseRequestHead(in_.view(), cfg_->limits.max_header_bytes, req_state_, req);
    if (r.status == http::ParseStatus::kDone) {
      startRequest();
      return true;
    }
    if (r.status == http::ParseStatus::kError) {
      log::debug("rejected request from {}: {}", client_ip_, http::describe(r.error));
      respond(http::statusFor(r.error));
      return true;
    }
  }
  if (c_eof_) {
    closeNow();
    return false;
  }
  if (!c_readable_) return false;
  bool was_empty = in_.empty();
  int n = readClient();
  if (n > 0 && was_empty && client_timer_kind_ == ClientTimer::kIdle) {
    armClient(ClientTimer::kHeader);  // the next request's head starts now
  }
  return n != -1;
}

void Session::startRequest() {
  const http::RequestHead& req = w_.scratch_request;
  if (gen_ != w_.current()) moveToCurrent();
  openRequest();
  // The previous exchange's flags (resp_head_done_, resp_sent_any_) would make respond() below
  // (501, 413, 429) close a kept-alive connection without an answer.
  resetExchange();
  req_bytes_ = req.head_length;
  if (w_.accessLog()) {
    log_method_.assign(req.method_text);
    log_path_.assign(req.target.substr(0, 4096));
  }
  client_http10_ = req.version_minor == 0;
  req_keep_alive_ = req.keep_alive;
  method_ = req.method;
  upgrade_ = req.connection_upgrade && !req.upgrade.empty();
  if (req.method == http::Method::kConnect) {
    respond(501);  // a reverse proxy does not open tunnels to arbitrary authorities
    return;
  }
  const uint64_t max_body = cfg_->limits.max_body_bytes;
  if (max_body && req.body == http::BodyKind::kContentLength && req.content_length > max_body) {
    respond(413);
    return;
  }
  if (be_->rate_limiter && !admitRate(req)) return;
  req_body_.start(req.body, req.content_length);
  up_out_.clear();
  up_out_sent_ = 0;
  writeRequestHead(req, {client_ip_, upgrade_, tls_ != nullptr}, up_out_);
  if (be_->hashed) {
    std::string_view key = hashKeyOf(req, be_->cfg->hash_key, ipBytes(peer_));
    hash_ = key.empty() ? w_.rng()() : balance::hash64(key);
  }
  sticky_server_ = -1;
  set_cookie_ = {};
  if (be_->cfg->sticky.mode != config::StickyMode::kNone) resolveSticky(req);
  in_.consume(req.head_length);  // `req` points into in_: not used past this line
  req_state_ = {};
  resetExchange();
  // min_rate: the first tick only takes a baseline (see checkRate).
  rate_bound_ = false;
  rate_mark_ = c_moved_;
  armClient(cfg_->limits.min_rate_bytes ? ClientTimer::kRate : ClientTimer::kNone);
  phase_ = Phase::kExchange;
  ++be_->active_requests;
  active_counted_ = true;
  routed_ = true;
  be_->stats->requests.add();
  if (!connectUpstream()) {
    be_->stats->no_server.add();
    respond(503);
  }
}

void Session::moveToCurrent() {
  // A reload happened since the last request: this one runs on the new config, if the listener
  // is still there on the same address (this connection came through that socket); otherwise the
  // connection ends after this request, which finishes on the old config.
  Generation* next = w_.current();
  const auto& listeners = next->snap->listeners;
  for (size_t i = 0; i < listeners.size(); ++i) {
    const ListenerShared& l = *listeners[i];
    if (l.cfg->name != cfg_->name || !(l.cfg->listen == cfg_->listen) ||
        l.cfg->mode != cfg_->mode || l.connections != ls_->connections) {
      continue;
    }
    w_.sessionMoved(gen_, next);
    gen_ = next;
    ls_ = listeners[i].get();
    cfg_ = ls_->cfg;
    be_ = &next->backends[ls_->backend_index];
    lstats_ = next->listener_stats[i];
    return;
  }
  must_close_ = true;
}

void Session::openRequest() {
  req_open_ = true;
  routed_ = false;
  status_ = 0;
  unix_ms_ = unixMs();
  t_head_us_ = monoUs();
  queue_us_ = -1;
  connect_us_ = -1;
  first_byte_us_ = -1;
  req_bytes_ = 0;
  resp_bytes_out_ = 0;
  lstats_->requests.add();
}

void Session::endRequest(int status) {
  if (!req_open_) return;
  req_open_ = false;
  const int64_t total_us = monoUs() - t_head_us_;
  lstats_->respond(status);
  if (routed_) {
    be_->stats->respond(status);
    be_->stats->duration.observe(static_cast<uint64_t>(std::max<int64_t>(0, total_us)));
  }
  if (AccessLog* log = w_.accessLog()) {
    AccessRecord r;
    r.unix_ms = unix_ms_;
    r.listener = cfg_->name;
    r.client = client_ip_;
    r.method = log_method_;
    r.path = log_path_;
    r.status = status;
    r.bytes_in = req_bytes_;
    r.bytes_out = resp_bytes_out_;
    r.backend = be_->cfg->name;
    if (routed_ && server_ >= 0) r.server = be_->servers[server_].cfg->name;
    r.retries = retries_;
    r.queue_us = queue_us_;
    r.connect_us = connect_us_;
    r.first_byte_us = first_byte_us_;
    r.total_us = total_us;
    log->append(static_cast<unsigned>(w_.id()), r);
  }
}

void Session::countToBackend(uint64_t n) {
  be_->stats->bytes_in.add(n);
  if (server_ >= 0) be_->servers[server_].stats->bytes_in.add(n);
}

void Session::countFromBackend(uint64_t n) {
  be_->stats->bytes_out.add(n);
  if (server_ >= 0) be_->servers[server_].stats->bytes_out.add(n);
}

void Session::resetExchange() {
  tried_ = {};
  attempts_ = 0;
  retries_ = 0;
  replayed_ = false;
  abandon_request_ = false;
  req_pending_ = 0;
  resp_state_ = {};
  resp_body_ = {};
  resp_pending_ = 0;
  resp_bytes_ = 0;
  resp_head_done_ = false;
  resp_sent_any_ = false;
  must_close_ = false;
  resp_keep_alive_ = false;
}

// ---- sticky sessions and rate limits ------------------------------------------------------------

// The key a sticky table or a rate limit uses: the client's address as text (readable in the
// admin API and identical on every instance), or the header/cookie value.
static std::string_view stateKeyOf(const http::RequestHead& req, const config::HashKey& key,
                                   std::string_view client_ip) {
  if (key.kind == config::HashKeyKind::kSourceIp) return client_ip;
  return hashKeyOf(req, key, {});
}

bool Session::admitRate(const http::RequestHead& req) {
  const config::RateLimit& rl = be_->cfg->rate_limit;
  std::string_view key = stateKeyOf(req, rl.key, client_ip_);
  if (key.empty()) return true;  // no such header: not limited (a header limit needs the header)
  std::string k;
  k.reserve(be_->cfg->name.size() + 1 + key.size());
  k.append(be_->cfg->name).push_back(state::kSep);
  k.append(key);
  const state::RateVerdict v = be_->rate_limiter->check(*w_.state(), k, unixUs());
  if (v.allowed) return true;
  routed_ = true;  // the backend's own request and response counts include its refusals
  be_->stats->requests.add();
  be_->stats->rate_limited.add();
  respond(429, tooManyRequests(v.retry_after_s));
  return false;
}

void Session::resolveSticky(const http::RequestHead& req) {
  sticky_cookie_ok_ = false;
  sticky_key_.clear();
  const config::Sticky& st = be_->cfg->sticky;
  if (st.mode == config::StickyMode::kCookie) {
    std::string_view value = hashKeyOf(req, {config::HashKeyKind::kCookie, st.cookie}, {});
    if (value.empty()) return;
    for (size_t i = 0; i < be_->servers.size(); ++i) {
      if (be_->servers[i].sticky_cookie == value) {
        sticky_server_ = static_cast<int>(i);
        sticky_cookie_ok_ = true;
        return;
      }
    }
    return;  // not a cookie we signed (forged, or another secret): balanced like a new client
  }
  state::Table* table = w_.state();
  std::string_view key = stateKeyOf(req, st.key, client_ip_);
  if (!table || key.empty()) return;
  sticky_key_.append(be_->cfg->name).push_back(state::kSep);
  sticky_key_.append(key);
  auto name = table->get(state::Kind::kSticky, sticky_key_, unixMs());
  if (!name) return;
  for (size_t i = 0; i < be_->servers.size(); ++i) {
    if (be_->servers[i].cfg->name == *name) {
      sticky_server_ = static_cast<int>(i);
      return;
    }
  }
}

void Session::noteSticky(int server) {
  const config::Sticky& st = be_->cfg->sticky;
  const ServerRt& s = be_->servers[static_cast<size_t>(server)];
  if (st.mode == config::StickyMode::kCookie) {
    // A new client, or its server went away: the cookie moves with it.
    set_cookie_ = sticky_cookie_ok_ && server == sticky_server_ ? std::string_view{}
                                                                : std::string_view(s.set_cookie);
    return;
  }
  if (sticky_key_.empty()) return;
  // Writes when the entry is new or moves, and refreshes it when less than half its TTL is left.
  w_.state()->touch(state::Kind::kSticky, sticky_key_, s.cfg->name, st.ttl.count(), unixUs());
}

// ---- upstream selection and connection ------------------------------------------------------

bool Session::connectUpstream() {
  while (attempts_++ < kMaxAttempts) {
    int s = w_.pickServer(*be_, hash_, tried_, nullptr, sticky_server_);
    if (s < 0) return false;
    if (be_->cfg->sticky.mode != config::StickyMode::kNone && !tcp_) noteSticky(s);
    ServerRt& srv = be_->servers[s];
    if (req_open_ && queue_us_ < 0) queue_us_ = monoUs() - t_head_us_;
    srv.stats->requests.add();
    UpstreamConn* c = w_.takeIdle(srv);
    if (!c) {
      if (be_->max_pending && be_->pending >= be_->max_pending) return false;  // circuit breaker
      auto fd = connectNonBlocking(srv.addr);
      if (!fd && fd.error().source == ErrorSource::kInternal) {
        // No socket (EMFILE, ENOBUFS): a local shortage, not the server's fault; marking it
        // failed would hold healthy servers out (or eject them) after descriptors come back.
        log::debug("upstream socket: {}", fd.error().message);
        return false;
      }
      if (!fd) {
        srv.stats->connect_failures.add();
        be_->stats->connect_failures.add();
        w_.markConnectFailure(*be_, s);
        tried_.add(s);
        continue;
      }
      c = new UpstreamConn(w_, *be_, s, *fd);
      srv.stats->connects.add();
      t_connect_us_ = monoUs();
      ++be_->pending;
      pending_held_ = true;
      up_timer_.arm(w_.loop().timers(be_->cfg->limits.connect_timeout.count()));
    } else {
      c->reused = true;
      armUpstreamTimer();
    }
    up_ = c;
    server_ = s;
    c->setOwner(this);
    w_.requestStarted(*be_, s);
    return true;
  }
  return false;
}

void Session::releasePending() {
  if (!pending_held_) return;
  pending_held_ = false;
  --be_->pending;
}

void Session::endRequestAccounting() {
  releasePending();
  if (budget_held_) {
    budget_held_ = false;
    be_->retry_budget->release();
  }
  if (active_counted_) {
    active_counted_ = false;
    --be_->active_requests;
  }
}

void Session::armUpstreamTimer() {
  const auto& lim = be_->cfg->limits;
  int64_t ms = lim.timeout.count();
  int64_t per_try = be_->cfg->retries.per_try_timeout.count();
  if (!resp_head_done_ && per_try > 0 && per_try < ms) ms = per_try;
  up_timer_.arm(w_.loop().timers(ms));
}

void Session::detachUpstream(bool reusable) {
  if (!up_) return;
  releasePending();
  up_timer_.cancel();
  w_.requestFinished(*be_, server_);
  if (reusable) {
    up_->setOwner(nullptr);
    up_->reused = false;
    w_.putIdle(up_);
  } else {
    up_->close();
  }
  up_ = nullptr;
  up_shut_ = false;
}

bool Session::checkConnected() {
  if (!up_->writable) return false;
  int err = socketError(up_->fd());
  if (err != 0) {
    onConnectFailed();
    return true;
  }
  up_->connected = true;
  releasePending();
  connect_us_ = monoUs() - t_connect_us_;
  be_->stats->connect.observe(static_cast<uint64_t>(std::max<int64_t>(0, connect_us_)));
  if (tcp_) {
    up_timer_.cancel();  // the tunnel's idle timer (client timer) takes over
  } else {
    armUpstreamTimer();
  }
  return true;
}

void Session::onConnectFailed() {
  int s = server_;
  be_->servers[s].stats->connect_failures.add();
  be_->stats->connect_failures.add();
  w_.markConnectFailure(*be_, s);
  w_.recordOutcome(*be_, s, false);
  detachUpstream(false);
  tried_.add(s);
  // Nothing reached the backend, so trying another server is always safe (and cheap: it does not
  // count against `attempts` or the budget); `retry_on` without connect_failure turns it off.
  if ((tcp_ || be_->cfg->retries.on_connect_failure) && connectUpstream()) return;
  if (tcp_) {
    closeNow();
  } else {
    respond(502);
  }
}

void Session::onUpstreamBroken() {
  // A reused keep-alive connection that the backend closed before answering is the classic race;
  // a request without a body whose head we still hold is replayed on another connection.
  // Only once per request, and only what may be sent twice: the backend may have acted on it.
  bool replay = up_ && up_->reused && resp_bytes_ == 0 && !replayed_ && replayable();
  if (replay) {
    replayed_ = true;
    detachUpstream(false);
    up_out_sent_ = 0;
    if (connectUpstream()) return;
  } else if (up_) {
    // The server failed this try: count it, and retry elsewhere if the request may be replayed.
    w_.recordOutcome(*be_, server_, false);
    if (!resp_head_done_ && retry(TryFailure::kReset)) return;
  }
  detachUpstream(false);
  if (!resp_sent_any_) {
    respond(502);
  } else {
    closeNow();
  }
}

bool Session::replayable() const {
  using M = http::Method;
  const bool idempotent = method_ == M::kGet || method_ == M::kHead || method_ == M::kOptions ||
                          method_ == M::kPut || method_ == M::kDelete || method_ == M::kTrace;
  // Bodies are streamed, not kept, so only a request without one can be sent again.
  return idempotent && !upgrade_ && req_body_.kind == http::BodyKind::kNone && !up_out_.empty() &&
         !resp_sent_any_;
}

bool Session::retriableStatus(int status) const {
  const auto& codes = be_->cfg->retries.on_statuses;
  return std::find(codes.begin(), codes.end(), status) != codes.end();
}

bool Session::retry(TryFailure why) {
  const config::Retries& r = be_->cfg->retries;
  if (tcp_ || retries_ >= r.attempts || !replayable()) return false;
  if ((why == TryFailure::kReset || why == TryFailure::kTimeout) && !r.on_reset) return false;
  PickExclusions next = tried_;
  next.add(server_);
  if (w_.pickServer(*be_, hash_, next) < 0) return false;  // nowhere else to go: caller answers
  // The budget is held from the first retry until the request ends.
  if (!budget_held_) {
    if (!be_->retry_budget->tryAcquire(be_->active_requests)) return false;
    budget_held_ = true;
  }
  ++retries_;
  be_->stats->retries.add();
  int s = server_;
  detachUpstream(false);
  tried_.add(s);
  resp_state_ = {};
  resp_body_ = {};
  resp_pending_ = 0;
  resp_bytes_ = 0;
  resp_head_done_ = false;
  first_byte_us_ = -1;
  up_out_sent_ = 0;
  if (!connectUpstream()) respond(502);
  return true;  // the request is handled either way
}

// ---- exchange -----------------------------------------------------------------------------

bool Session::stepExchange() {
  if (!up_) return false;
  if (!up_->connected) return checkConnected();
  bool p = pumpRequest();
  if (phase_ != Phase::kExchange || !up_) return true;
  p |= pumpResponse();
  if (phase_ != Phase::kExchange || !up_) return true;
  bool response_complete = resp_head_done_ && resp_body_.done && resp_pending_ == 0 && out_.empty();
  if (response_complete) {
    finishExchange();
    return true;
  }
  return p;
}

bool Session::pumpRequest() {
  if (abandon_request_) return false;
  bool p = false;
  if (!req_body_.done && in_.size() > req_pending_) {
    size_t k = req_body_.admit(in_.view().substr(req_pending_));
    if (req_body_.error) {
      must_close_ = true;
      if (!resp_sent_any_) {
        respond(400);
      } else {
        closeNow();
      }
      return true;
    }
    const uint64_t max_body = cfg_->limits.max_body_bytes;
    if (max_body && req_body_.chunked.dataBytes() > max_body) {
      if (!resp_sent_any_) {
        respond(413);
      } else {
        closeNow();
      }
      return true;
    }
    req_pending_ += k;
    req_bytes_ += k;
    p |= k > 0;
  }
  size_t head_left = up_out_.size() - up_out_sent_;
  if (up_->writable && (head_left > 0 || req_pending_ > 0)) {
    std::string_view head(up_out_.data() + up_out_sent_, head_left);
    ssize_t n = writeTwo(up_->fd(), head, in_.view().substr(0, req_pending_), up_->writable);
    if (n == -2) {
      if (resp_bytes_ > 0) {
        // The backend answered early (a 413 or 401 before taking the whole upload) and stopped
        // reading: stop sending and deliver its answer; neither connection is reused.
        abandon_request_ = true;
        must_close_ = true;
        return true;
      }
      onUpstreamBroken();
      return true;
    }
    if (n > 0) {
      countToBackend(static_cast<uint64_t>(n));
      size_t from_head = std::min(static_cast<size_t>(n), head_left);
      up_out_sent_ += from_head;
      size_t from_body = static_cast<size_t>(n) - from_head;
      in_.consume(from_body);
      req_pending_ -= from_body;
      p = true;
    }
  }
  if (!req_body_.done && c_readable_ && !c_eof_ && in_.size() < BufferPool::kChunk) {
    int n = readClient();
    if (n > 0) {
      armUpstreamTimer();
      p = true;
    } else if (n == 0) {
      closeNow();  // the client went away in the middle of its request body
      return true;
    }
  }
  return p;
}

bool Session::flushClient(bool with_body) {
  std::string_view body;
  if (with_body && up_) body = up_->in().view().substr(0, resp_pending_);
  if (!c_writable_ || (out_.empty() && body.empty())) return false;
  ssize_t n = writeClient(out_.view(), body);
  if (n == -2) {
    closeNow();  // the client is gone
    return true;
  }
  if (n <= 0) return false;
  lstats_->bytes_out.add(static_cast<uint64_t>(n));
  c_moved_ += static_cast<uint64_t>(n);
  if (req_open_) resp_bytes_out_ += static_cast<uint64_t>(n);
  size_t from_out = std::min(static_cast<size_t>(n), out_.size());
  out_.consume(from_out);
  size_t from_body = static_cast<size_t>(n) - from_out;
  if (from_body) {
    up_->in().consume(from_body);
    resp_pending_ -= from_body;
  }
  resp_sent_any_ = true;
  return true;
}

bool Session::pumpResponse() {
  bool p = flushClient(true);
  if (phase_ != Phase::kExchange || !up_) return true;
  Buffer& in = up_->in();
  size_t cap = resp_head_done_ ? BufferPool::kChunk : kMaxResponseHead;
  if (up_->readable && !up_->eof && in.size() < cap) {
    ssize_t n = readSome(up_->fd(), in, up_->readable, up_->hup);
    if (n > 0) {
      if (first_byte_us_ < 0 && req_open_) first_byte_us_ = monoUs() - t_head_us_;
      resp_bytes_ += static_cast<uint64_t>(n);
      countFromBackend(static_cast<uint64_t>(n));
      armUpstreamTimer();
      p = true;
    } else if (n == 0 || n == -2) {
      up_->eof = true;
      up_->readable = false;
      p = true;
    }
  }
  while (!resp_head_done_ && !in.empty()) {
    http::ResponseHead& resp = w_.scratch_response;
    auto r = http::parseResponseHead(in.view(), kMaxResponseHead, method_, resp_state_, resp);
    if (r.status == http::ParseStatus::kIncomplete) break;
    if (r.status == http::ParseStatus::kError) {
      log::debug("invalid response from {}: {}", be_->servers[server_].cfg->name,
                 http::describe(r.error));
      detachUpstream(false);
      if (!resp_sent_any_) {
        respond(502);
      } else {
        closeNow();
      }
      return true;
    }
    resp_state_ = {};
    p = true;
    if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
      // Interim responses (100 Continue, 103) are relayed as they are; HTTP/1.0 clients get none.
      if (!client_http10_) out_.append(in.view().substr(0, resp.head_length));
      in.consume(resp.head_length);
      continue;
    }
    const bool failed = Worker::isFailureStatus(*be_->cfg, resp.status);
    be_->servers[server_].stats->respond(resp.status);
    w_.recordOutcome(*be_, server_, !failed);
    if (failed && retriableStatus(resp.status) && retry(TryFailure::kStatus)) return true;
    status_ = resp.status;
    if (up_out_sent_ < up_out_.size()) {
      // The backend answered before it had our whole request head: send nothing more to it (the
      // rest would be read out of context) and use neither connection again.
      abandon_request_ = true;
      must_close_ = true;
    }
    up_out_.clear();  // the request can no longer be replayed
    up_out_sent_ = 0;
    if (resp.status == 101 && !upgrade_) {
      // A switch nobody asked for: whatever the backend sends next is not HTTP we can frame.
      detachUpstream(false);
      respond(502);
      return true;
    }
    if (resp.status == 101) {
      writeResponseHead(in.view(), resp, {false, client_http10_, true}, out_);
      in.consume(resp.head_length);
      resp_head_done_ = true;
      armClient(ClientTimer::kIdle);
      up_timer_.cancel();
      endRequest(101);  // what follows is a tunnel, counted in bytes only
      phase_ = Phase::kTunnel;
      return true;
    }
    resp_body_.start(resp.body, resp.content_length);
    // The client connection cannot outlive a response delimited by close, a request body we did
    // not finish reading, or a drain.
    if (resp.body == http::BodyKind::kUntilClose || !req_body_.done || !req_keep_alive_ ||
        w_.draining() || (client_http10_ && resp.body == http::BodyKind::kChunked)) {
      must_close_ = true;
    }
    writeResponseHead(in.view(), resp, {must_close_, client_http10_, false, set_cookie_}, out_);
    in.consume(resp.head_length);
    resp_head_done_ = true;
    resp_keep_alive_ = resp.keep_alive;
  }
  if (!resp_head_done_) {
    if (in.size() >= kMaxResponseHead) {
      detachUpstream(false);
      respond(502);
      return true;
    }
    if (up_->eof) {
      onUpstreamBroken();
      return true;
    }
    return p;
  }
  if (!resp_body_.done && in.size() > resp_pending_) {
    size_t k = resp_body_.admit(in.view().substr(resp_pending_));
    if (resp_body_.error) {
      if (!resp_sent_any_) {
        out_.clear();  // the rewritten head has not left yet: answer 502 instead
        respond(502);
      } else {
        closeNow();  // the head already went out; cutting the connection is the only signal left
      }
      return true;
    }
    resp_pending_ += k;
    p |= k > 0;
  }
  if (up_->eof && !resp_body_.done) {
    if (resp_body_.kind == http::BodyKind::kUntilClose) {
      resp_body_.done = true;
    } else if (resp_pending_ == 0) {
      closeNow();  // truncated response
      return true;
    }
  }
  if (resp_pending_ > 0 || !out_.empty()) p |= flushClient(true);
  return p;
}

void Session::finishExchange() {
  bool req_complete =
      !abandon_request_ && req_body_.done && req_pending_ == 0 && up_out_sent_ >= up_out_.size();
  UpstreamConn* u = up_;
  bool reusable = req_complete && u->in().empty() && !u->eof && !u->hup &&
                  resp_body_.kind != http::BodyKind::kUntilClose && resp_keep_alive_;
  if (reusable && u->readable) {
    // Bytes (or a FIN) past the response may sit in the kernel with no further edge to come:
    // such a connection would hand them to the next client.
    char c;
    ssize_t n = ::recv(u->fd(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      u->readable = false;
    } else {
      reusable = false;
    }
  }
  detachUpstream(reusable);
  endRequestAccounting();
  endRequest(status_);
  up_out_.clear();
  up_out_sent_ = 0;
  if (must_close_ || !req_complete || !req_keep_alive_ || w_.draining()) {
    if (in_.empty() && !c_readable_ && !tls_) {
      closeNow();
    } else {
      // The client sent more than we will read: linger so our close does not reset the response.
      in_.clear();
      phase_ = Phase::kClosing;
      armClient(ClientTimer::kLinger);
    }
    return;
  }
  phase_ = Phase::kHead;
  in_.releaseIfEmpty();
  out_.releaseIfEmpty();
  armClient(in_.empty() ? ClientTimer::kIdle : ClientTimer::kHeader);
}

// ---- tunnel (TCP mode, Upgrade) -----------------------------------------------------------

bool Session::stepTunnel() {
  if (!up_) return false;
  if (!up_->connected) return checkConnected();
  if (tcp_ && !splice_tried_) {
    splice_tried_ = true;
    Pipe a = w_.pipes.acquire();
    Pipe b = w_.pipes.acquire();
    if (a.r >= 0 && b.r >= 0) {
      c2u_.attach(a);
      u2c_.attach(b);
    } else {
      w_.pipes.release(a, true);
      w_.pipes.release(b, true);
    }
  }
  if (c2u_.active()) return stepSplicedTunnel();
  bool p = false;
  // client -> backend
  if (!in_.empty() && up_->writable) {
    ssize_t n = writeTwo(up_->fd(), {}, in_.view(), up_->writable);
    if (n == -2) {
      closeNow();
      return true;
    }
    if (n > 0) {
      countToBackend(static_cast<uint64_t>(n));
      in_.consume(static_cast<size_t>(n));
      p = true;
    }
  }
  if (c_readable_ && !c_eof_ && in_.size() < BufferPool::kChunk) {
    int n = readClient();
    if (n != -1) p = true;
  }
  // backend -> client
  Buffer& uin = up_->in();
  if ((!out_.empty() || !uin.empty()) && c_writable_) {
    ssize_t n = writeClient(out_.view(), uin.view());
    if (n == -2) {
      closeNow();
      return true;
    }
    if (n > 0) {
      lstats_->bytes_out.add(static_cast<uint64_t>(n));
      size_t from_out = std::min(static_cast<size_t>(n), out_.size());
      out_.consume(from_out);
      uin.consume(static_cast<size_t>(n) - from_out);
      p = true;
    }
  }
  if (up_->readable && !up_->eof && uin.size() < BufferPool::kChunk) {
    ssize_t n = readSome(up_->fd(), uin, up_->readable, up_->hup);
    if (n == 0 || n == -2) {
      up_->eof = true;
      up_->readable = false;
    }
    if (n > 0) countFromBackend(static_cast<uint64_t>(n));
    if (n != -1) p = true;
  }
  // TLS: the half-close waits for the records still queued for the client.
  return endTunnelStep(in_.empty(), uin.empty() && out_.empty() && !(tls_ && tls_->pending()), p);
}

bool Session::endTunnelStep(bool to_backend_empty, bool to_client_empty, bool progress) {
  // A half-close travels on once everything sent before it has been delivered.
  if (to_backend_empty && c_eof_ && !up_shut_) {
    ::shutdown(up_->fd(), SHUT_WR);
    up_shut_ = true;
    progress = true;
  }
  if (to_client_empty && up_->eof && !c_shut_) {
    shutdownClient();
    c_shut_ = true;
    progress = true;
  }
  if (c_shut_ && up_shut_) {
    closeNow();
    return false;
  }
  if (progress) armClient(ClientTimer::kIdle);
  return progress;
}

bool Session::stepSplicedTunnel() {
  bool p = false;
  // client -> backend
  if (!c2u_.empty() && up_->writable) {
    long n = c2u_.drain(up_->fd(), up_->writable);
    if (n == -2) {
      closeNow();
      return true;
    }
    if (n > 0) countToBackend(static_cast<uint64_t>(n));
    p |= n > 0;
  }
  if (c2u_.empty() && c_readable_ && !c_eof_) {
    long n = c2u_.fill(fd_, c_readable_);
    if (n == 0 || n == -2) {
      c_eof_ = true;
      c_readable_ = false;
    }
    if (n > 0) lstats_->bytes_in.add(static_cast<uint64_t>(n));
    p |= n != -1;
  }
  // backend -> client
  if (!u2c_.empty() && c_writable_) {
    long n = u2c_.drain(fd_, c_writable_);
    if (n == -2) {
      closeNow();
      return true;
    }
    if (n > 0) lstats_->bytes_out.add(static_cast<uint64_t>(n));
    p |= n > 0;
  }
  if (u2c_.empty() && up_->readable && !up_->eof) {
    long n = u2c_.fill(up_->fd(), up_->readable);
    if (n == 0 || n == -2) {
      up_->eof = true;
      up_->readable = false;
    }
    if (n > 0) countFromBackend(static_cast<uint64_t>(n));
    p |= n != -1;
  }
  return endTunnelStep(c2u_.empty(), u2c_.empty(), p);
}

// ---- generated responses and closing ------------------------------------------------------

void Session::respond(int status, std::string_view custom) {
  detachUpstream(false);
  endRequestAccounting();
  if (resp_head_done_) {
    if (resp_sent_any_) {
      closeNow();  // part of a response went out: an error page would corrupt it
      return;
    }
    out_.clear();  // a final head that never left: replace it with the error
  }
  // A malformed or timed-out head is a request too, answered by the listener itself.
  if (!req_open_ && !tcp_) openRequest();
  std::string_view page = custom.empty() ? errorResponse(status) : custom;
  resp_bytes_out_ += page.size();
  endRequest(status);
  out_.append(page);
  in_.clear();  // nothing more of this connection is read as a request
  phase_ = Phase::kClosing;
  armClient(ClientTimer::kLinger);
}

bool Session::stepClosing() {
  bool p = false;
  if (!out_.empty()) {
    p = flushClient(false);
    if (phase_ != Phase::kClosing) return false;
    if (!out_.empty()) return p;
  }
  if (!c_shut_) {
    // Lingering close: stop sending, then drain what the client still sends for a moment, so
    // that our close does not turn into a reset that destroys the response in flight.
    shutdownClient();
    c_shut_ = true;
    p = true;
  }
  for (int i = 0; i < 16 && c_readable_ && !c_eof_; ++i) {  // bounded: timers must still run
    readClient();
    in_.clear();
  }
  // TLS: records the socket has not taken yet are ours to send (the linger timer bounds it).
  if (c_eof_ && !(tls_ && tls_->pending())) {
    closeNow();
    return false;
  }
  return p;
}

void Session::closeNow() {
  if (phase_ == Phase::kClosed) return;
  endRequest(resp_sent_any_ ? status_ : 0);
  phase_ = Phase::kClosed;
  client_timer_.cancel();
  detachUpstream(false);
  endRequestAccounting();
  for (SpliceLane* lane : {&c2u_, &u2c_}) {
    bool empty = lane->empty();  // a pipe with bytes left must never serve another connection
    if (lane->active()) w_.pipes.release(lane->detach(), empty);
  }
  if (tls_) [[unlikely]] {
    tls_->flush(c_writable_);  // best effort: whatever the socket still takes
    tls_.reset();
  }
  ::close(fd_);  // also leaves the epoll set: the descriptor is never duplicated
  fd_ = -1;
  in_.clear();
  out_.clear();
  up_out_.clear();
  ls_->connections->fetch_sub(1, std::memory_order_relaxed);
  w_.sessionClosed(this, gen_);
  w_.loop().destroyLater(std::unique_ptr<Deferred>(this));
}

}  // namespace tandem::proxy
