#include "proxy/server.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "core/clock.h"
#include "core/log.h"

namespace tandem::proxy {

Server::Server() = default;

Server::~Server() {
  if (auto snap = snapshot(); snap && snap->health) snap->health->stop();
  for (auto& w : workers_) w->drain();
  for (auto& w : workers_) w->join();
}

unsigned resolveWorkerCount(uint32_t configured) {
  if (configured > 0) return configured;
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

std::shared_ptr<const Snapshot> Server::snapshot() const {
  std::lock_guard<std::mutex> g(mu_);
  return snap_;
}

Result<std::shared_ptr<Snapshot>> Server::prepare(std::shared_ptr<const config::Config> cfg,
                                                  const ConfigOrigin& origin,
                                                  std::vector<std::vector<int>>& fds) {
  auto old = snapshot();
  auto snap = std::make_shared<Snapshot>();
  snap->id = old ? old->id + 1 : 1;
  snap->cfg = cfg;
  snap->source = origin.source;
  snap->origin = origin.origin.empty() ? cfg->source_path : origin.origin;
  snap->source_revision = origin.source_revision;
  snap->loaded_unix_ms = unixMs();
  fds.assign(n_, {});
  std::map<std::string, std::vector<int>> bound;  // new this time: closed again on failure
  auto undo = [&] {
    for (auto& [addr, v] : bound) {
      for (int fd : v) ::close(fd);
    }
  };
  for (const config::Listener& l : cfg->listeners) {
    auto ls = std::make_shared<ListenerShared>();
    ls->cfg = &l;
    ls->index = static_cast<int>(snap->listeners.size());
    for (size_t b = 0; b < cfg->backends.size(); ++b) {
      if (cfg->backends[b].name == l.backend) ls->backend_index = static_cast<int>(b);
    }
    if (ls->backend_index < 0) {
      undo();
      return fail(ErrorSource::kConfig, 0, "listener " + l.name + ": unknown backend " + l.backend);
    }
    const std::string key = l.listen.text();
    auto it = sockets_.find(key);
    if (it == sockets_.end()) {
      auto addr = parseAddress(l.listen.host, l.listen.port);
      if (!addr) {
        undo();
        return fail(ErrorSource::kConfig, 0, "listener " + l.name + ": " + addr.error().message);
      }
      // A listener on one of our virtual IPs must bind (and serve) before this node is master.
      bool on_vip = false;
      for (const auto& vip : cfg->cluster.vrrp.virtual_ips) on_vip |= vip.address == l.listen.host;
      std::vector<int> mine;
      for (unsigned w = 0; w < n_; ++w) {
        auto fd = listenOn(*addr, 4096, on_vip);
        if (!fd) {
          for (int f : mine) ::close(f);
          undo();
          return fail(ErrorSource::kInternal, fd.error().code,
                      "listener " + l.name + " on " + key + ": " + fd.error().message);
        }
        mine.push_back(*fd);
      }
      it = bound.emplace(key, std::move(mine)).first;
    } else if (old) {
      // Same socket, same count of open connections (max_connections spans the reload).
      for (const auto& ol : old->listeners) {
        if (ol->cfg->listen == l.listen) ls->connections = ol->connections;
      }
    }
    for (unsigned w = 0; w < n_; ++w) fds[w].push_back(it->second[w]);
    snap->listeners.push_back(std::move(ls));
  }
  // Committed: from here on nothing fails.
  std::map<std::string, std::vector<int>> next;
  for (const config::Listener& l : cfg->listeners) {
    const std::string key = l.listen.text();
    next[key] = sockets_.contains(key) ? sockets_[key] : bound[key];
  }
  sockets_ = std::move(next);  // dropped addresses: their sockets are closed by the workers
  auto make = [&](const std::vector<health::ServerMemo>& carry) {
    return std::make_shared<health::HealthManager>(cfg, events_, carry);
  };
  snap->health = old && old->health ? old->health->handOver(make) : make({});
  return snap;
}

void Server::startHealth(const Snapshot& snap) {
  if (health_observer_) health_observer_(*snap.health->current());
  snap.health->start([this](std::shared_ptr<const health::HealthView> v) {
    if (health_observer_) health_observer_(*v);
    for (auto& w : workers_) w->publishHealth(v);
  });
}

Result<void> Server::start(std::shared_ptr<const config::Config> cfg, ConfigOrigin origin) {
  if (auto r = bind(std::move(cfg), std::move(origin)); !r) return r;
  run();
  return {};
}

Result<void> Server::bind(std::shared_ptr<const config::Config> cfg, ConfigOrigin origin) {
  n_ = resolveWorkerCount(cfg->workers);
  std::vector<std::vector<int>> fds;
  auto snap = prepare(cfg, origin, fds);
  if (!snap) return tl::unexpected(snap.error());
  {
    std::lock_guard<std::mutex> g(mu_);
    snap_ = *snap;
  }
  std::random_device rd;
  for (unsigned w = 0; w < n_; ++w) {
    uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ w;
    auto worker = std::make_unique<Worker>(static_cast<int>(w), n_, seed);
    worker->setAccessLog(access_log_);
    worker->setState(state_, cookie_secret_);
    worker->init(*snap, fds[w]);
    workers_.push_back(std::move(worker));
  }
  return {};
}

void Server::run() {
  auto snap = snapshot();
  for (auto& w : workers_) w->start();
  startHealth(*snap);
  for (const auto& l : snap->cfg->listeners) {
    log::info("listener {} ({}) on {} -> backend {}", l.name,
              l.mode == config::ListenerMode::kHttp ? "http" : "tcp", l.listen.text(), l.backend);
  }
  log::info("tandem ready: {} worker(s)", n_);
}

Result<void> Server::reload(std::shared_ptr<const config::Config> cfg, ConfigOrigin origin) {
  auto old = snapshot();
  if (resolveWorkerCount(cfg->workers) != n_) {
    log::warn("reload: 'workers' changes take effect at the next restart ({} now)", n_);
  }
  std::vector<std::vector<int>> fds;
  auto snap = prepare(cfg, origin, fds);
  if (!snap) return tl::unexpected(snap.error());
  {
    std::lock_guard<std::mutex> g(mu_);
    snap_ = *snap;
  }
  for (unsigned w = 0; w < n_; ++w) workers_[w]->publishSnapshot(*snap, fds[w]);
  startHealth(**snap);
  // Wait (bounded) until every worker runs new requests on it, so that a reload that follows
  // at once never races this one's sockets.
  const uint64_t id = (*snap)->id;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (auto& w : workers_) {
    while (w->appliedSnapshot() < id && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  size_t added = 0, removed = 0;
  for (const auto& l : cfg->listeners) {
    bool had = false;
    for (const auto& ol : old->cfg->listeners) had |= ol.listen == l.listen;
    if (!had) {
      ++added;
      log::info("listener {} ({}) on {} -> backend {}", l.name,
                l.mode == config::ListenerMode::kHttp ? "http" : "tcp", l.listen.text(), l.backend);
    }
  }
  for (const auto& ol : old->cfg->listeners) {
    bool kept = false;
    for (const auto& l : cfg->listeners) kept |= ol.listen == l.listen;
    if (!kept) {
      ++removed;
      log::info("listener {} on {} removed: its connections finish, no new ones", ol.name,
                ol.listen.text());
    }
  }
  log::info("config revision {} applied ({} listener(s): {} new, {} removed; {} backend(s))", id,
            cfg->listeners.size(), added, removed, cfg->backends.size());
  return {};
}

bool Server::drain(config::Duration timeout) {
  for (auto& w : workers_) w->drain();
  // Workers stop their loops once their last session closes; wait for that, bounded.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<std::thread> joiners;
  auto done = std::make_shared<std::atomic<size_t>>(0);
  for (auto& w : workers_) {
    joiners.emplace_back([done, wp = w.get()] {
      wp->join();
      ++*done;
    });
  }
  while (done->load() < workers_.size() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  bool all = done->load() == workers_.size();
  if (all) {
    for (auto& j : joiners) j.join();
  } else {
    for (auto& j : joiners) j.detach();  // the process exits with requests still open
  }
  return all;
}

}  // namespace tandem::proxy
