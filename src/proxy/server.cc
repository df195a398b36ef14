#include "proxy/server.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "core/log.h"

namespace tandem::proxy {

Server::Server() = default;

Server::~Server() {
  if (health_) health_->stop();
  for (auto& w : workers_) w->drain();
  for (auto& w : workers_) w->join();
}

unsigned resolveWorkerCount(uint32_t configured) {
  if (configured > 0) return configured;
  unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

Result<void> Server::start(std::shared_ptr<const config::Config> cfg) {
  cfg_ = std::move(cfg);
  const unsigned n = resolveWorkerCount(cfg_->workers);
  // fds[w][l]: worker w's socket for listener l.
  std::vector<std::vector<int>> fds(n);
  auto closeAll = [&] {
    for (auto& v : fds)
      for (int fd : v) ::close(fd);
  };
  for (const config::Listener& l : cfg_->listeners) {
    auto ls = std::make_unique<ListenerShared>();
    ls->cfg = &l;
    ls->index = static_cast<int>(listeners_.size());
    for (size_t b = 0; b < cfg_->backends.size(); ++b) {
      if (cfg_->backends[b].name == l.backend) ls->backend_index = static_cast<int>(b);
    }
    if (ls->backend_index < 0) {
      closeAll();
      return fail(ErrorSource::kConfig, 0, "listener " + l.name + ": unknown backend " + l.backend);
    }
    auto addr = parseAddress(l.listen.host, l.listen.port);
    if (!addr) {
      closeAll();
      return fail(ErrorSource::kConfig, 0, "listener " + l.name + ": " + addr.error().message);
    }
    for (unsigned w = 0; w < n; ++w) {
      auto fd = listenOn(*addr);
      if (!fd) {
        closeAll();
        return fail(ErrorSource::kInternal, fd.error().code,
                    "listener " + l.name + " on " + l.listen.text() + ": " + fd.error().message);
      }
      fds[w].push_back(*fd);
    }
    listeners_.push_back(std::move(ls));
  }
  std::vector<ListenerShared*> shared;
  for (auto& ls : listeners_) shared.push_back(ls.get());
  health_ = std::make_unique<health::HealthManager>(cfg_, events_);
  std::random_device rd;
  for (unsigned w = 0; w < n; ++w) {
    uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ w;
    workers_.push_back(std::make_unique<Worker>(static_cast<int>(w), n, cfg_, shared, fds[w], seed,
                                                health_.get()));
  }
  for (auto& w : workers_) {
    w->setAccessLog(access_log_);
    w->start();
  }
  health_->start([this](std::shared_ptr<const health::HealthView> v) {
    for (auto& w : workers_) w->publishHealth(v);
  });
  for (const auto& l : cfg_->listeners) {
    log::info("listener {} ({}) on {} -> backend {}", l.name,
              l.mode == config::ListenerMode::kHttp ? "http" : "tcp", l.listen.text(), l.backend);
  }
  log::info("tandem ready: {} worker(s)", n);
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
