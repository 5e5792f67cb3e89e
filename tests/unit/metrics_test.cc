// The Prometheus text format and the admin endpoint's request parsing.
#include <catch2/catch.hpp>

#include <atomic>

#include "admin/endpoints.h"
#include "admin/server.h"
#include "config/config.h"
#include "metrics/prometheus.h"

using namespace meshd;

TEST_CASE("prometheus: families, labels, escaping") {
  metrics::PrometheusWriter w;
  w.family("tcp_open_total", "counter", "Opened.\nsecond line \\");
  w.sample("tcp_open_total", {{"direction", "in\"b\\o\nund"}}, uint64_t{3});
  w.sample("up", {}, 1.5);
  REQUIRE(w.str() ==
          "# HELP tcp_open_total Opened.\\nsecond line \\\\\n"
          "# TYPE tcp_open_total counter\n"
          "tcp_open_total{direction=\"in\\\"b\\\\o\\nund\"} 3\n"
          "up 1.5\n");
}

TEST_CASE("metrics: /metrics sums workers and classifies closes") {
  const char* argv[] = {"meshd", nullptr};
  const char* envp[] = {nullptr};
  auto loaded = config::load(1, argv, envp);
  REQUIRE(loaded);
  metrics::WorkerStats a, b;
  a.of(metrics::Direction::kOutbound).opened.add(3);
  b.of(metrics::Direction::kOutbound).opened.add(2);
  a.of(metrics::Direction::kOutbound).closed[0].add(2);
  b.of(metrics::Direction::kOutbound).closed[static_cast<int>(metrics::TcpError::kConnectRefused)].inc();
  b.of(metrics::Direction::kInbound).read_bytes.add(42);
  std::vector<proxy::ListenerSpec> specs;
  std::atomic<bool> ready{true}, draining{false};
  admin::ProxyView view{&loaded->config, &specs, {&a, &b}, &ready, &draining};
  std::string text = admin::render_metrics(view);
  REQUIRE(text.find("tcp_open_total{direction=\"outbound\"} 5\n") != std::string::npos);
  REQUIRE(text.find("tcp_open_connections{direction=\"outbound\"} 2\n") != std::string::npos);
  REQUIRE(text.find("tcp_close_total{direction=\"outbound\",classification=\"success\"} 2\n") != std::string::npos);
  REQUIRE(
      text.find("tcp_close_total{direction=\"outbound\",classification=\"failure\",error=\"connect_refused\"} 1\n") !=
      std::string::npos);
  REQUIRE(text.find("tcp_read_bytes_total{direction=\"inbound\"} 42\n") != std::string::npos);
  REQUIRE(text.find("# TYPE process_resident_memory_bytes gauge\n") != std::string::npos);
  // Every sample line belongs to a family declared before it.
  std::string family;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.rfind("# TYPE ", 0) == 0) {
      family = line.substr(7, line.find(' ', 7) - 7);
    } else if (line[0] != '#') {
      INFO(line);
      REQUIRE(line.rfind(family, 0) == 0);
    }
  }
  std::string status = admin::render_status(view);
  REQUIRE(status.find("\"outbound\":{\"open\":2,\"opened_total\":5,\"closed_total\":3") != std::string::npos);
}

TEST_CASE("admin: request heads") {
  auto r = admin::parse_request_head("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n");
  REQUIRE(r.error == 0);
  REQUIRE(r.path == "/metrics");
  REQUIRE(admin::parse_request_head("HEAD /live HTTP/1.0\r\n").head);
  REQUIRE(admin::parse_request_head("GET /ready HTTP/1.1\n").path == "/ready");  // bare LF
  REQUIRE(admin::parse_request_head("POST /metrics HTTP/1.1\r\n").error == 405);
  REQUIRE(admin::parse_request_head("GET /metrics HTTP/2.0\r\n").error == 505);
  REQUIRE(admin::parse_request_head("GET metrics HTTP/1.1\r\n").error == 400);
  REQUIRE(admin::parse_request_head("garbage\r\n").error == 400);
  REQUIRE(admin::parse_request_head("GET / x HTTP/1.1\r\n").error == 400);
  REQUIRE(admin::parse_request_head("GET /" + std::string(2000, 'a') + " HTTP/1.1\r\n").error == 414);
  REQUIRE(admin::parse_request_head(std::string("GET /\x01 HTTP/1.1\r\n")).error == 400);
}
