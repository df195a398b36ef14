// tandem: command line (DESIGN §3). Everything else lives in the libraries.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "admin/ctl.h"
#include "app/run.h"
#include "config/config.h"
#include "config/config_push.h"
#include "core/log.h"

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
  auto* config_cmd = app.add_subcommand("config", "central configuration (etcd)");
  config_cmd->require_subcommand(1);
  std::string push_file, push_key = "/tandem/config";
  std::vector<std::string> push_endpoints;
  auto* push = config_cmd->add_subcommand("push", "validate FILE and store it in etcd");
  push->add_option("file", push_file, "config file")->required();
  push->add_option("--etcd", push_endpoints, "etcd endpoint(s), http://host:port")->required();
  push->add_option("--key", push_key, "etcd key (default /tandem/config)");
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
  if (config_cmd->got_subcommand(push)) {
    return tandem::config::pushConfig(push_file, push_endpoints, push_key);
  }
  tandem::log::setJson(log_format == "json");
  using L = tandem::log::Level;
  tandem::log::setLevel(log_level == "debug"   ? L::kDebug
                        : log_level == "warn"  ? L::kWarn
                        : log_level == "error" ? L::kError
                                               : L::kInfo);
  return tandem::app::run(config_path);
}
