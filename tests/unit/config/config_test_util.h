#pragma once
// Helpers shared by the config loader tests: load a YAML document given as a raw string and match
// errors by line and reason.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace tandem::config::test_util {

// Raw strings start with a newline after R"(; drop it so that line 1 is the first line written.
inline std::string doc(std::string_view text) {
  if (!text.empty() && text.front() == '\n') text.remove_prefix(1);
  return std::string(text);
}

inline std::vector<ConfigError> errorsOf(std::string_view text) {
  auto result = loadString(doc(text), "t.yaml");
  if (result) return {};
  return result.error();
}

inline Config mustLoad(std::string_view text) {
  auto result = loadString(doc(text), "t.yaml");
  if (!result) {
    std::string all;
    for (const ConfigError& e : result.error()) all += e.text() + "\n";
    ADD_FAILURE() << "unexpected errors:\n" << all;
    return Config{};
  }
  return *result;
}

// A valid config tests vary one line at a time.
constexpr std::string_view kMinimal = R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: app
backends:
  - name: app
    servers:
      - address: 127.0.0.1:9001
)";

// The smallest valid config (listener web -> backend app), lines 1-2; `with` appends `extra` as
// line 3 on.
inline std::string with(std::string_view extra) {
  return "listeners: [{name: web, listen: 127.0.0.1:8080, backend: app}]\n"
         "backends: [{name: app, servers: [{address: 127.0.0.1:9001}]}]\n" +
         std::string(extra);
}

// A temporary folder for files a config refers to (tokens, secrets), removed at the end.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/tandem-config-test-XXXXXX";
    path_ = ::mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string write(const std::string& name, std::string_view text) {
    const std::string file = path_ + "/" + name;
    std::ofstream(file) << text;
    return file;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline auto Err(int line, std::string reason) {
  return ::testing::AllOf(
      ::testing::Field("line", &ConfigError::line, line),
      ::testing::Field("reason", &ConfigError::reason, ::testing::HasSubstr(reason)),
      ::testing::Field("file", &ConfigError::file, "t.yaml"));
}

}  // namespace tandem::config::test_util
