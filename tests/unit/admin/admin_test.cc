// Admin pieces that need no running data plane: the exposition format, the time series, the
// token comparison and the HTTP server on a real socket.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "admin/admin_server.h"
#include "admin/http_server.h"
#include "admin/metrics.h"
#include "admin/timeseries.h"
#include "config/config.h"

namespace tandem::admin {
namespace {

config::Config twoBackends() {
  auto c = config::loadString(R"(
listeners: [{name: web, listen: 127.0.0.1:8080, backend: app}]
backends:
  - {name: app, servers: [{name: a, address: 127.0.0.1:9001}, {name: b, address: 127.0.0.1:9002}]}
  - {name: "odd.name-1", servers: [{address: 127.0.0.1:9003}]}
)",
                              "t.yaml");
  EXPECT_TRUE(c);
  return *c;
}

Totals snapshotFor(const config::Config& cfg) {
  Totals s;
  s.listeners.resize(cfg.listeners.size());
  s.backends.resize(cfg.backends.size());
  for (size_t b = 0; b < cfg.backends.size(); ++b) {
    s.backends[b].servers.resize(cfg.backends[b].servers.size());
  }
  return s;
}

// The text format's structural rules: every sample belongs to the family declared just before
// it (one HELP and one TYPE each, never repeated), names and labels are well formed.
TEST(Metrics, ExpositionIsWellFormed) {
  config::Config cfg = twoBackends();
  Totals snap = snapshotFor(cfg);
  snap.listeners[0].requests = 7;
  snap.listeners[0].responses[2] = 6;
  snap.backends[0].duration.buckets[3] = 4;
  snap.backends[0].duration.sum_us = 2000;
  snap.backends[0].servers[1].view.healthy = false;
  ProcessStats proc = readProcessStats();
  ControlFacts facts;
  facts.version = "1.2.3";
  facts.node = "n\"1";
  std::string text = renderMetrics(cfg, snap, proc, facts);

  std::istringstream in(text);
  std::string line, family;
  std::set<std::string> seen;
  std::map<std::string, std::string> samples;
  while (std::getline(in, line)) {
    ASSERT_FALSE(line.empty());
    if (line.starts_with("# HELP ")) {
      family = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(seen.insert(family).second) << "family declared twice: " << family;
      EXPECT_TRUE(family.starts_with("tandem_")) << family;
      continue;
    }
    if (line.starts_with("# TYPE ")) {
      EXPECT_EQ(line.substr(7, family.size()), family);
      continue;
    }
    std::string name = line.substr(0, line.find_first_of("{ "));
    EXPECT_TRUE(name == family || name == family + "_bucket" || name == family + "_sum" ||
                name == family + "_count")
        << name << " under " << family;
    samples[line.substr(0, line.rfind(' '))] = line.substr(line.rfind(' ') + 1);
  }
  EXPECT_EQ(samples["tandem_listener_requests_total{listener=\"web\"}"], "7");
  EXPECT_EQ(samples["tandem_listener_responses_total{listener=\"web\",class=\"2xx\"}"], "6");
  EXPECT_EQ(samples["tandem_backend_request_duration_seconds_bucket{backend=\"app\",le=\"+Inf\"}"],
            "4");
  EXPECT_EQ(samples["tandem_backend_request_duration_seconds_bucket{backend=\"app\",le=\"0.001\"}"],
            "4");
  EXPECT_EQ(samples["tandem_backend_request_duration_seconds_bucket{backend=\"app\",le=\"0.0005\"}"],
            "0");
  EXPECT_EQ(samples["tandem_backend_request_duration_seconds_sum{backend=\"app\"}"], "0.002");
  EXPECT_EQ(samples["tandem_server_health_state{backend=\"app\",server=\"b\",state=\"down\"}"], "1");
  EXPECT_EQ(samples["tandem_server_health_state{backend=\"app\",server=\"b\",state=\"up\"}"], "0");
  EXPECT_EQ(samples["tandem_build_info{version=\"1.2.3\",node=\"n\\\"1\"}"], "1");
  EXPECT_TRUE(samples.contains("tandem_server_requests_total{backend=\"odd.name-1\",server=\"127.0.0.1:9003\"}"));
}

TEST(TimeSeries, RatesAndQuantilesFromDeltas) {
  config::Config cfg = twoBackends();
  Totals s = snapshotFor(cfg);
  ProcessStats p;
  TimeSeries ts(3);
  ts.add(1000, 1'700'000'000'000, s, p);  // baseline only
  EXPECT_TRUE(ts.points().empty());
  s.listeners[0].responses[2] = 90;
  s.listeners[0].responses[5] = 10;
  s.backends[0].duration.buckets[4] = 100;
  s.listeners[0].active = 4;
  p.cpu_seconds = 0.5;
  ts.add(3000, 1'700'000'002'000, s, p);
  ASSERT_EQ(ts.points().size(), 1u);
  const SeriesPoint& pt = ts.points()[0];
  EXPECT_DOUBLE_EQ(pt.requests_per_second, 50);
  EXPECT_DOUBLE_EQ(*pt.error_rate, 0.1);
  EXPECT_DOUBLE_EQ(*pt.p50_ms, 1.75);
  EXPECT_EQ(pt.active_connections, 4);
  EXPECT_DOUBLE_EQ(pt.cpu_percent, 25);
  // No traffic: no error rate or latency (null in JSON), not zero.
  ts.add(5000, 1'700'000'004'000, s, p);
  EXPECT_FALSE(ts.points()[1].error_rate);
  EXPECT_EQ(ts.json(2).find("\"error_rate\":[0.1,null]") != std::string::npos, true) << ts.json(2);
  ts.add(7000, 1'700'000'006'000, s, p);
  ts.add(9000, 1'700'000'008'000, s, p);
  EXPECT_EQ(ts.points().size(), 3u);  // bounded
}

TEST(Secret, ConstantTimeCompare) {
  EXPECT_TRUE(secretEquals("abcdef0123456789", "abcdef0123456789"));
  EXPECT_FALSE(secretEquals("abcdef012345678", "abcdef0123456789"));
  EXPECT_FALSE(secretEquals("abcdef01234567890", "abcdef0123456789"));
  EXPECT_FALSE(secretEquals("Abcdef0123456789", "abcdef0123456789"));
  EXPECT_FALSE(secretEquals("", ""));  // no configured secret never matches
}

// A request over a real socket: routing, keep-alive, body, and a 400 for garbage.
TEST(HttpServer, ServesRequestsOnALoop) {
  EventLoop loop;
  std::vector<HttpRequest> seen;
  HttpServer srv(loop, [&](const HttpRequest& r) {
    seen.push_back(r);
    HttpResponse resp;
    resp.body = "{\"path\":\"" + r.path + "\",\"len\":" + std::to_string(r.body.size()) + "}";
    return resp;
  });
  auto addr = parseAddress("127.0.0.1", 0);
  ASSERT_TRUE(addr);
  ASSERT_TRUE(srv.listen(*addr));
  const uint16_t port = srv.port();
  ASSERT_NE(port, 0);
  std::string got, garbage;
  std::thread client([&] {
    auto talk = [&](const std::string& req, std::string& out) {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(port);
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      timeval tv{5, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
        ::send(fd, req.data(), req.size(), 0);
        char buf[4096];
        ssize_t n;
        while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
      }
      ::close(fd);
    };
    talk("GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
         "PUT /b HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer t\r\nContent-Length: 3\r\n"
         "Connection: close\r\n\r\nabc",
         got);
    talk("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", garbage);
    loop.wake();
  });
  bool done = false;
  loop.setWakeHandler([&] {
    done = true;
    loop.stop();
  });
  loop.run();
  client.join();
  ASSERT_TRUE(done);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].path, "/a");
  EXPECT_EQ(seen[0].query, "x=1");
  EXPECT_EQ(seen[1].method, "PUT");
  EXPECT_EQ(seen[1].body, "abc");
  EXPECT_EQ(seen[1].authorization, "Bearer t");
  EXPECT_NE(got.find("{\"path\":\"/a\",\"len\":0}"), std::string::npos) << got;
  EXPECT_NE(got.find("{\"path\":\"/b\",\"len\":3}"), std::string::npos) << got;
  EXPECT_NE(got.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(garbage.starts_with("HTTP/1.1 400 ")) << garbage;
}

}  // namespace
}  // namespace tandem::admin
