// tandem: command line (DESIGN §3). Everything else lives in the libraries.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "admin/admin_server.h"
#include "admin/ctl.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "proxy/access_log.h"
#include "proxy/server.h"

namespace {

using tandem::config::Config;

int printErrors(const std::vector<tandem::config::ConfigError>& errors) {
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.text().c_str());
  return 1;
}

int cmdCheck(const std::string& path) {
  auto cfg = tandem::config::loadFile(path);
  if (!cfg) return printErrors(cfg.error());
  std::printf("%s: ok (%zu listener(s), %zu backend(s))\n", path.c_str(), cfg->listeners.size(),
              cfg->backends.size());
  return 0;
}

// SIGHUP: load, validate and apply the file; a bad one is rejected with every FILE:LINE: reason,
// an event and an alert, and the running config stays.
bool reloadFile(tandem::proxy::Server& server, tandem::admin::AdminServer* admin,
                const std::string& path) {
  using tandem::log::error;
  auto rejected = [&](const std::string& why) {
    server.events().emit({0, 0, "config_rejected", "", "", path + ": " + why});
    if (admin) admin->configOutcome(path, false, why);
    return false;
  };
  auto loaded = tandem::config::loadFile(path);
  if (!loaded) {
    for (const auto& e : loaded.error()) error("reload rejected: {}", e.text());
    return rejected(loaded.error().front().text() +
                    (loaded.error().size() > 1
                         ? " (and " + std::to_string(loaded.error().size() - 1) + " more)"
                         : ""));
  }
  auto r = server.reload(std::make_shared<const Config>(std::move(*loaded)), {"file", path, 0});
  if (!r) {
    error("reload rejected: {}", r.error().message);
    return rejected(r.error().message);
  }
  server.events().emit({0, 0, "config_reloaded", "", "",
                        path + ": revision " + std::to_string(server.snapshot()->id)});
  if (admin) admin->configOutcome(path, true, "");
  return true;
}

int cmdRun(const std::string& path) {
  auto loaded = tandem::config::loadFile(path);
  if (!loaded) return printErrors(loaded.error());
  std::shared_ptr<const Config> cfg = std::make_shared<const Config>(std::move(*loaded));

  // Signals are taken synchronously by this thread; workers inherit the blocked mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<tandem::proxy::AccessLog> access_log;
  if (cfg->access_log.enabled) {
    auto opened = tandem::proxy::AccessLog::open(cfg->access_log,
                                                 tandem::proxy::resolveWorkerCount(cfg->workers));
    if (!opened) {
      tandem::log::error("cannot start: access log: {}", opened.error().message);
      return 1;
    }
    access_log = std::move(*opened);
    access_log->start();
  }
  auto server = std::make_unique<tandem::proxy::Server>();
  server->setAccessLog(access_log.get());
  if (auto r = server->start(cfg, {"file", path, 0}); !r) {
    tandem::log::error("cannot start: {}", r.error().message);
    return 1;
  }
  std::unique_ptr<tandem::admin::AdminServer> admin;
  if (cfg->admin.enabled) {
    admin = std::make_unique<tandem::admin::AdminServer>(*server, access_log.get());
    if (auto r = admin->start(); !r) {
      tandem::log::error("cannot start: {}", r.error().message);
      admin.reset();
      return 1;  // ~Server stops the workers
    }
  }
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (sig == SIGUSR1) {
      // Log rotation: the access log is reopened at its path (the writer finishes the old file).
      if (access_log) access_log->reopen();
      tandem::log::info("SIGUSR1: access log reopened");
      continue;
    }
    if (sig == SIGHUP) {
      if (reloadFile(*server, admin.get(), path)) cfg = server->snapshot()->cfg;
      continue;
    }
    tandem::log::info("signal {}: draining (up to {} ms)", sig, cfg->drain_timeout.count());
    if (admin) admin->setDraining();
    bool clean = server->drain(cfg->drain_timeout);
    if (!clean) {
      tandem::log::warn("drain timeout reached with requests still open; exiting");
      if (access_log) access_log->stop();  // what the workers logged so far still gets written
      std::fflush(stderr);
      std::_Exit(0);
    }
    if (admin) admin->stop();
    if (access_log) access_log->stop();
    tandem::log::info("drained; bye");
    return 0;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tandem: a high-availability HTTP/TCP load balancer"};
  app.require_subcommand(1);
  std::string config_path;
  std::string log_format = "text";
  std::string log_level = "info";
  auto* run = app.add_subcommand("run", "run in the foreground");
  run->add_option("-c,--config", config_path, "config file")->required();
  run->add_option("--log-format", log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  run->add_option("--log-level", log_level, "debug, info, warn, error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  auto* check = app.add_subcommand("check", "validate a config file");
  check->add_option("-c,--config", config_path, "config file")->required();
  app.add_subcommand("version", "print the version");
  tandem::admin::CtlOptions ctl_opts;
  if (const char* env = std::getenv("TANDEM_ADMIN")) ctl_opts.admin = env;
  if (const char* env = std::getenv("TANDEM_TOKEN")) ctl_opts.token = env;
  auto* ctl = app.add_subcommand("ctl", "drive the admin API of a running tandem");
  ctl->add_option("--admin", ctl_opts.admin,
                  "admin URL (default $TANDEM_ADMIN or http://127.0.0.1:9900)");
  ctl->add_option("--token", ctl_opts.token, "bearer token for changes (default $TANDEM_TOKEN)");
  ctl->add_option("--token-file", ctl_opts.token_file, "read the token from this file");
  ctl->add_option("--max-events", ctl_opts.max_events, "events: stop after N events");
  ctl->add_option("--timeout-ms", ctl_opts.timeout_ms, "connect/answer timeout");
  ctl->add_option("command", ctl_opts.args,
                  "status | backends | alerts | cluster | timeseries | metrics | events | "
                  "drain|enable|disable B S | weight B S N | get PATH")
      ->required();
  CLI11_PARSE(app, argc, argv);

  if (app.got_subcommand("version")) {
    std::printf("tandem %s\n", TANDEM_VERSION);
    return 0;
  }
  if (app.got_subcommand("check")) return cmdCheck(config_path);
  if (app.got_subcommand("ctl")) return tandem::admin::runCtl(ctl_opts);
  tandem::log::setJson(log_format == "json");
  using L = tandem::log::Level;
  tandem::log::setLevel(log_level == "debug"   ? L::kDebug
                        : log_level == "warn"  ? L::kWarn
                        : log_level == "error" ? L::kError
                                               : L::kInfo);
  return cmdRun(config_path);
}
