#include "state/redis_replicator.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>
#include <system_error>

#include "core/clock.h"
#include "core/log.h"
#include "core/socket.h"
#include "state/redis_codec.h"

namespace tandem::state {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace detail {

// One hiredis context in non-blocking mode; commands are appended here and sent by
// RedisReplicator::flushAndRead.
class RedisConn {
 public:
  explicit RedisConn(redisContext* c) : c_(c) {}
  ~RedisConn() { redisFree(c_); }
  RedisConn(const RedisConn&) = delete;
  RedisConn& operator=(const RedisConn&) = delete;

  redisContext* get() const { return c_; }
  int fd() const { return c_->fd; }
  void append(std::initializer_list<std::string_view> args) { append(args.begin(), args.size()); }
  void append(const std::string_view* args, size_t n) {
    argv_.clear();
    lens_.clear();
    for (size_t i = 0; i < n; ++i) {
      argv_.push_back(args[i].empty() ? "" : args[i].data());
      lens_.push_back(args[i].size());
    }
    // Copies the arguments into the output buffer; fails only when out of memory.
    if (redisAppendCommandArgv(c_, static_cast<int>(n), argv_.data(), lens_.data()) != REDIS_OK) {
      log::error("redis state store: out of memory formatting a command");
      std::abort();
    }
  }

 private:
  redisContext* c_;
  std::vector<const char*> argv_;
  std::vector<size_t> lens_;
};

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

class Replies {
 public:
  std::vector<ReplyPtr> items;
};

}  // namespace detail

namespace {

std::string_view text(const redisReply* r) {
  return r->str != nullptr ? std::string_view(r->str, r->len) : std::string_view();
}

std::string errnoText(int e) { return std::error_code(e, std::system_category()).message(); }

}  // namespace

struct RedisReplicator::WakeFd {
  UniqueFd fd;
  void signal() const {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd.get(), &one, sizeof one);
  }
};

RedisReplicator::RedisReplicator(Table& table, RedisReplicatorOptions options,
                                 ReplicatorObserver observer)
    : table_(table),
      options_(std::move(options)),
      observer_(std::move(observer)),
      address_(options_.host + ":" + std::to_string(options_.port)),
      channel_(options_.prefix + "changes"),
      wake_(std::make_shared<WakeFd>()),
      rng_(std::random_device{}()) {
  if (options_.node_id.empty()) options_.node_id = table_.nodeId();
  options_.batch = std::max<size_t>(1, options_.batch);
  if (options_.backoff_initial.count() <= 0)
    options_.backoff_initial = std::chrono::milliseconds{1};
  options_.backoff_max = std::max(options_.backoff_max, options_.backoff_initial);
  wake_->fd = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  // The callback holds the eventfd, not `this`: a table that outlives us stays safe.
  if (wake_->fd) table_.setWake([w = wake_] { w->signal(); });
  peer_.id = "redis";
  peer_.address = address_;
  peer_.state = "connecting";
  peer_.since_unix_ms = unixMs();
}

RedisReplicator::~RedisReplicator() { stop(); }

Result<void> RedisReplicator::start() {
  if (!wake_->fd) return fail(ErrorSource::kInternal, EMFILE, "redis state store: eventfd failed");
  if (options_.node_id != table_.nodeId()) {
    return fail(ErrorSource::kConfig, 0,
                "redis state store: node id '" + options_.node_id + "' is not the table's '" +
                    table_.nodeId() + "'");
  }
  std::lock_guard lock(start_mu_);
  if (thread_.joinable() || stopping()) return {};
  thread_ = std::thread([this] { run(); });
  return {};
}

void RedisReplicator::stop() {
  stop_.store(true, std::memory_order_release);
  if (wake_->fd) wake_->signal();
  std::lock_guard lock(start_mu_);
  if (thread_.joinable()) thread_.join();
}

ReplicationStatus RedisReplicator::status() const {
  ReplicationStatus s;
  s.store = "redis";
  {
    std::lock_guard lock(status_mu_);
    s.peers.push_back(peer_);
  }
  s.lag.addFrom(lag_);
  return s;
}

void RedisReplicator::run() {
  auto next_attempt = Clock::now();
  auto next_ping = next_attempt + options_.ping_interval;
  const bool sweep = options_.expire_interval.count() > 0;
  // Without sweeps, the timer only bounds the idle wait.
  const std::chrono::milliseconds sweep_every = sweep ? options_.expire_interval : 1'000ms;
  auto next_expire = next_attempt + sweep_every;
  while (!stopping()) {
    const auto now = Clock::now();
    if (now >= next_expire) {
      if (sweep) table_.expire(unixMs());
      next_expire = now + sweep_every;
    }
    std::string err;
    if (!cmd_) {
      if (now >= next_attempt) {
        const auto counts = [this] {
          std::lock_guard lock(status_mu_);
          return std::pair{peer_.records_received, peer_.records_sent};
        };
        const auto before = counts();
        if (connectAndSync(err)) {
          delay_ = std::chrono::milliseconds{0};
          const auto after = counts();
          markUp("connected to " + address_ + "; resync read " +
                 std::to_string(after.first - before.first) + " records, sent " +
                 std::to_string(after.second - before.second));
          next_ping = Clock::now() + options_.ping_interval;
          continue;
        }
        disconnect();
        if (stopping()) break;
        markDown(err);
        next_attempt = Clock::now() + nextBackoff();
      }
      // Local writes stay queued in the table (bounded by its max_dirty) and are dropped by
      // the resync on return, which sends their current state. Not draining them here keeps
      // this thread off the shard locks while workers write.
      wake_pending_ = false;
      waitIdle(std::min(next_attempt, next_expire));
      continue;
    }
    bool ok = true;
    if (wake_pending_) {
      wake_pending_ = false;
      ok = pushLocalWrites(err);
    }
    if (ok && !pending_.empty()) ok = fetchPending(err);
    if (ok && Clock::now() >= next_ping) {
      ok = ping(err);
      next_ping = Clock::now() + options_.ping_interval;
    }
    if (ok) {
      // With work left, only look at the subscription (so a steady stream of local writes
      // cannot starve remote changes, nor the other way round).
      const bool busy = wake_pending_ || !pending_.empty();
      if (waitIdle(busy ? Clock::now() : std::min(next_ping, next_expire))) {
        ok = readSubscription(err);
      }
    }
    if (!ok) {
      disconnect();
      if (stopping()) break;
      markDown(err);
      next_attempt = Clock::now() + nextBackoff();
    }
  }
  disconnect();
}

// ---- connection ----

bool RedisReplicator::openConn(std::unique_ptr<detail::RedisConn>& out, std::string& err) {
  redisContext* c = redisConnectNonBlock(options_.host.c_str(), options_.port);
  if (c == nullptr) {
    err = "connect " + address_ + ": cannot allocate a hiredis context";
    return false;
  }
  auto conn = std::make_unique<detail::RedisConn>(c);
  if (c->err != 0) {
    err = "connect " + address_ + ": " + c->errstr;
    return false;
  }
  if (!waitFd(c->fd, POLLOUT, Clock::now() + options_.connect_timeout, err)) {
    if (err == "timeout") {
      err = "connect " + address_ + ": timed out after " +
            std::to_string(options_.connect_timeout.count()) + " ms";
    }
    return false;
  }
  int so_error = 0;
  socklen_t len = sizeof so_error;
  if (::getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
  if (so_error != 0) {
    err = "connect " + address_ + ": " + errnoText(so_error);
    return false;
  }
  redisEnableKeepAlive(c);  // notices a vanished host on an idle subscription
  out = std::move(conn);
  return true;
}

bool RedisReplicator::loadScripts(std::string& err) {
  cmd_->append({"SCRIPT", "LOAD", redis::kRegisterScript});
  cmd_->append({"SCRIPT", "LOAD", redis::kCounterScript});
  detail::Replies r;
  if (!flushAndRead(*cmd_, 2, r, err)) return false;
  for (const auto& rep : r.items) {
    if (rep->type != REDIS_REPLY_STRING) {
      err = "SCRIPT LOAD: " + std::string(text(rep.get()));
      return false;
    }
  }
  register_sha_.assign(text(r.items[0].get()));
  counter_sha_.assign(text(r.items[1].get()));
  return true;
}

bool RedisReplicator::connectAndSync(std::string& err) {
  if (!openConn(cmd_, err) || !loadScripts(err) || !openConn(sub_, err)) return false;
  // Subscribe before the SCAN: a change made while we scan is then either seen by the scan or
  // announced to us afterwards.
  sub_->append({"SUBSCRIBE", channel_});
  detail::Replies r;
  if (!flushAndRead(*sub_, 1, r, err)) return false;
  if (r.items[0]->type != REDIS_REPLY_ARRAY) {
    err = "SUBSCRIBE: " + std::string(text(r.items[0].get()));
    return false;
  }
  return fullSync(err);
}

void RedisReplicator::disconnect() {
  cmd_.reset();
  sub_.reset();
  pending_.clear();
}

void RedisReplicator::markUp(const std::string& detail) {
  {
    std::lock_guard lock(status_mu_);
    peer_.state = "connected";
    peer_.since_unix_ms = unixMs();
    peer_.last_heard_unix_ms = peer_.since_unix_ms;
    ++peer_.connects;
  }
  reported_ = 1;
  log::info("redis state store: {}", detail);
  if (observer_.link) observer_.link("redis", true, detail);
}

void RedisReplicator::markDown(const std::string& err) {
  {
    std::lock_guard lock(status_mu_);
    if (peer_.state != "down") {
      peer_.state = "down";
      peer_.since_unix_ms = unixMs();
    }
    peer_.last_error = err;
    peer_.rtt_us = -1;
  }
  if (reported_ == 0) return;  // once per loss; reconnect attempts only update last_error
  reported_ = 0;
  log::warn("redis state store {}: {}; serving local state", address_, err);
  if (observer_.link) observer_.link("redis", false, err);
}

std::chrono::milliseconds RedisReplicator::nextBackoff() {
  delay_ =
      delay_.count() == 0 ? options_.backoff_initial : std::min(delay_ * 2, options_.backoff_max);
  // +-20% so that a fleet does not reconnect in lockstep after a Redis restart.
  rng_ = rng_ * 6364136223846793005ULL + 1442695040888963407ULL;
  const double factor = 0.8 + 0.4 * double(rng_ >> 11) / double(1ULL << 53);
  return std::chrono::milliseconds{std::max<int64_t>(1, int64_t(double(delay_.count()) * factor))};
}

// ---- waiting and round trips ----

void RedisReplicator::consumeWake() {
  uint64_t n = 0;
  [[maybe_unused]] ssize_t r = ::read(wake_->fd.get(), &n, sizeof n);
  wake_pending_ = true;  // a local write (or stop(), checked by every loop)
}

bool RedisReplicator::waitFd(int fd, short events, Clock::time_point deadline, std::string& err) {
  for (;;) {
    if (stopping()) {
      err = "stopping";
      return false;
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      err = "timeout";
      return false;
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    pollfd p[2] = {{fd, events, 0}, {wake_->fd.get(), POLLIN, 0}};
    const int n = ::poll(p, 2, static_cast<int>(left));
    if (n < 0) {
      if (errno == EINTR) continue;
      err = "poll: " + errnoText(errno);
      return false;
    }
    if (p[1].revents & POLLIN) consumeWake();
    if (p[0].revents != 0) return true;  // ready, or HUP/ERR: the next read or write says which
  }
}

bool RedisReplicator::flushAndRead(detail::RedisConn& conn, size_t n, detail::Replies& out,
                                   std::string& err) {
  const auto wait = [&](short events, Clock::time_point deadline) {
    if (waitFd(conn.fd(), events, deadline, err)) return true;
    if (err == "timeout") {
      err = "no answer from " + address_ + " within " +
            std::to_string(options_.command_timeout.count()) + " ms";
    }
    return false;
  };
  redisContext* c = conn.get();
  out.items.clear();
  // The deadline bounds each wait, not the whole exchange: a large pipeline that keeps moving
  // is not cut off, a silent server is.
  auto deadline = Clock::now() + options_.command_timeout;
  int done = 0;
  while (done == 0) {
    if (redisBufferWrite(c, &done) == REDIS_ERR) {
      err = c->errstr;
      return false;
    }
    if (done == 0) {
      if (!wait(POLLOUT, deadline)) return false;
      deadline = Clock::now() + options_.command_timeout;
    }
  }
  while (out.items.size() < n) {
    void* reply = nullptr;
    if (redisGetReply(c, &reply) == REDIS_ERR) {
      err = c->errstr;
      return false;
    }
    if (reply != nullptr) {
      out.items.emplace_back(static_cast<redisReply*>(reply));
      continue;
    }
    if (!wait(POLLIN, deadline)) return false;
    if (redisBufferRead(c) == REDIS_ERR) {
      err = c->errstr;
      return false;
    }
    deadline = Clock::now() + options_.command_timeout;
  }
  std::lock_guard lock(status_mu_);
  peer_.last_heard_unix_ms = unixMs();
  return true;
}

bool RedisReplicator::waitIdle(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  pollfd p[2] = {{wake_->fd.get(), POLLIN, 0}, {sub_ ? sub_->fd() : -1, POLLIN, 0}};
  const int n = ::poll(p, 2, static_cast<int>(std::max<int64_t>(0, left)));
  if (n <= 0) return false;
  if (p[0].revents & POLLIN) consumeWake();
  return p[1].revents != 0;
}

// ---- synchronisation ----

void RedisReplicator::discardLocalWrites() {
  std::vector<Record> junk;
  for (;;) {
    junk.clear();
    table_.drain(junk, 4096);
    if (junk.empty()) break;
  }
  wake_pending_ = false;
}

bool RedisReplicator::fullSync(std::string& err) {
  discardLocalWrites();  // pushAll below sends their current state
  const std::string pattern = redis::scanPattern(options_.prefix);
  std::string cursor = "0";
  detail::Replies r;
  std::vector<std::string> suffixes;
  do {
    cmd_->append({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
    if (!flushAndRead(*cmd_, 1, r, err)) return false;
    const redisReply* rep = r.items[0].get();
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_ARRAY) {
      err = "SCAN: " + std::string(rep->type == REDIS_REPLY_ERROR ? text(rep) : "unexpected reply");
      return false;
    }
    cursor.assign(text(rep->element[0]));
    suffixes.clear();
    for (size_t i = 0; i < rep->element[1]->elements; ++i) {
      const std::string_view key = text(rep->element[1]->element[i]);
      if (key.starts_with(options_.prefix))
        suffixes.emplace_back(key.substr(options_.prefix.size()));
    }
    if (!fetchKeys(suffixes, false, err)) return false;
  } while (cursor != "0");
  if (!pushAll(err)) return false;
  std::lock_guard lock(status_mu_);
  ++peer_.full_syncs;
  return true;
}

bool RedisReplicator::pushAll(std::string& err) {
  std::vector<Record> all;
  table_.forEach([&](const Record& r) { all.push_back(r); }, unixMs());
  const std::span<const Record> view(all);
  for (size_t i = 0; i < view.size(); i += options_.batch) {
    if (!writeRecords(view.subspan(i, std::min(options_.batch, view.size() - i)), false, err)) {
      return false;
    }
  }
  return true;
}

bool RedisReplicator::pushLocalWrites(std::string& err) {
  // Bounded, so that workers writing faster than Redis takes it cannot starve the subscription.
  constexpr int kMaxBatches = 16;
  std::vector<Record> batch;
  bool lost = false;
  for (int i = 0;; ++i) {
    if (i == kMaxBatches) {
      wake_pending_ = true;
      break;
    }
    batch.clear();
    if (!table_.drain(batch, options_.batch)) lost = true;
    if (batch.empty()) break;
    if (!writeRecords(batch, true, err)) return false;
  }
  if (!lost) return true;
  // The table dropped queued keys (we fell behind): send everything.
  {
    std::lock_guard lock(status_mu_);
    ++peer_.queue_overflows;
    ++peer_.full_syncs;
  }
  return pushAll(err);
}

bool RedisReplicator::writeRecords(std::span<const Record> records, bool fetch_stale,
                                   std::string& err) {
  const int64_t now_ms = unixMs();
  std::vector<const Record*> sent;
  std::vector<std::string> suffixes;
  std::vector<std::string> args;
  std::vector<std::string_view> views;
  const auto append = [&](const Record& rec, const std::string& suffix) {
    args.clear();
    args.push_back("EVALSHA");
    args.push_back(isCounter(rec.kind) ? counter_sha_ : register_sha_);
    args.push_back("1");
    args.push_back(options_.prefix + suffix);
    if (isCounter(rec.kind)) {
      args.push_back(std::to_string(rec.expires_ms));
      args.push_back(std::to_string(rec.written_us));
      for (const auto& [node, count] : rec.counts) {
        args.push_back(node);
        args.push_back(std::to_string(count));
      }
    } else {
      args.push_back(redis::versionText(rec.version));
      args.push_back(rec.origin);
      args.push_back(std::to_string(rec.expires_ms));
      args.push_back(std::to_string(rec.written_us));
      args.push_back(rec.value);
    }
    views.assign(args.begin(), args.end());
    cmd_->append(views.data(), views.size());
  };
  for (const Record& rec : records) {
    if (rec.expires_ms != 0 && rec.expires_ms <= now_ms) continue;  // Redis would drop it at once
    if (isCounter(rec.kind) && rec.counts.empty()) continue;
    suffixes.push_back(redis::keySuffix(rec.kind, rec.key));
    sent.push_back(&rec);
    append(rec, suffixes.back());
  }
  if (sent.empty()) return true;

  std::vector<std::string> changed;
  std::vector<size_t> retry;  // NOSCRIPT: Redis lost its script cache (SCRIPT FLUSH)
  uint64_t failed = 0;
  std::string last_failure;
  detail::Replies r;
  const auto collect = [&](size_t idx, const redisReply* rep) {
    if (rep->type == REDIS_REPLY_INTEGER) {
      if (rep->integer == 1) {
        changed.push_back(suffixes[idx]);
      } else if (fetch_stale && !isCounter(sent[idx]->kind)) {
        pending_.insert(suffixes[idx]);  // Redis holds a newer version: take it now
      }
    } else if (rep->type == REDIS_REPLY_ERROR && text(rep).starts_with("NOSCRIPT")) {
      retry.push_back(idx);
    } else {
      ++failed;
      last_failure = rep->type == REDIS_REPLY_ERROR ? std::string(text(rep)) : "unexpected reply";
    }
  };
  if (!flushAndRead(*cmd_, sent.size(), r, err)) return false;
  for (size_t i = 0; i < sent.size(); ++i) collect(i, r.items[i].get());
  if (!retry.empty()) {
    if (!loadScripts(err)) return false;
    const std::vector<size_t> again = std::move(retry);
    retry.clear();
    for (size_t idx : again) append(*sent[idx], suffixes[idx]);
    if (!flushAndRead(*cmd_, again.size(), r, err)) return false;
    for (size_t i = 0; i < again.size(); ++i) collect(again[i], r.items[i].get());
    failed += retry.size();
  }
  if (!changed.empty()) {
    cmd_->append({"PUBLISH", channel_, redis::changeMessage(options_.node_id, changed)});
    if (!flushAndRead(*cmd_, 1, r, err)) return false;
  }
  if (failed > 0) {
    // A key of ours with the wrong type, a script error: the record is skipped, not retried.
    log::warn("redis state store: {} record writes failed: {}", failed, last_failure);
  }
  std::lock_guard lock(status_mu_);
  peer_.records_sent += sent.size() - failed;
  if (failed > 0) peer_.last_error = last_failure;
  return true;
}

bool RedisReplicator::fetchKeys(const std::vector<std::string>& suffixes, bool observe_lag,
                                std::string& err) {
  std::vector<std::pair<Kind, std::string>> keys;
  detail::Replies r;
  redis::HashFields fields;
  uint64_t received = 0;
  for (size_t i = 0; i < suffixes.size(); i += options_.batch) {
    keys.clear();
    const size_t end = std::min(suffixes.size(), i + options_.batch);
    for (size_t j = i; j < end; ++j) {
      auto parsed = redis::parseKeySuffix(suffixes[j]);
      if (!parsed) continue;  // not a key of ours
      keys.push_back(std::move(*parsed));
      cmd_->append({"HGETALL", options_.prefix + suffixes[j]});
    }
    if (keys.empty()) continue;
    if (!flushAndRead(*cmd_, keys.size(), r, err)) return false;
    const int64_t now_ms = unixMs();
    for (size_t k = 0; k < keys.size(); ++k) {
      const redisReply* rep = r.items[k].get();
      if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0 || rep->elements % 2 != 0) {
        continue;  // gone (expired) or not a hash
      }
      fields.clear();
      for (size_t f = 0; f + 1 < rep->elements; f += 2) {
        fields.emplace_back(text(rep->element[f]), text(rep->element[f + 1]));
      }
      auto rec = redis::recordFromHash(keys[k].first, std::move(keys[k].second), fields);
      if (!rec) continue;
      ++received;
      if (table_.merge(*rec, now_ms) && observe_lag) {
        lag_.observe(static_cast<uint64_t>(std::max<int64_t>(0, unixUs() - rec->written_us)));
      }
    }
  }
  std::lock_guard lock(status_mu_);
  peer_.records_received += received;
  return true;
}

bool RedisReplicator::fetchPending(std::string& err) {
  std::vector<std::string> keys(pending_.begin(), pending_.end());
  pending_.clear();
  return fetchKeys(keys, true, err);
}

bool RedisReplicator::readSubscription(std::string& err) {
  redisContext* c = sub_->get();
  if (redisBufferRead(c) == REDIS_ERR) {
    err = c->errstr;
    return false;
  }
  for (;;) {
    void* reply = nullptr;
    if (redisGetReply(c, &reply) == REDIS_ERR) {
      err = c->errstr;
      return false;
    }
    if (reply == nullptr) break;
    const detail::ReplyPtr rep(static_cast<redisReply*>(reply));
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        text(rep->element[0]) != "message") {
      continue;
    }
    auto m = redis::parseChangeMessage(text(rep->element[2]));
    if (!m || m->origin == options_.node_id) continue;  // our own batch: nothing to read
    for (std::string_view s : m->suffixes) pending_.emplace(s);
  }
  std::lock_guard lock(status_mu_);
  peer_.last_heard_unix_ms = unixMs();
  return true;
}

bool RedisReplicator::ping(std::string& err) {
  const int64_t start = monoUs();
  cmd_->append({"PING"});
  detail::Replies r;
  if (!flushAndRead(*cmd_, 1, r, err)) return false;
  std::lock_guard lock(status_mu_);
  peer_.rtt_us = monoUs() - start;
  return true;
}

}  // namespace tandem::state
