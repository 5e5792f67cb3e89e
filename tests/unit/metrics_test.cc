// The Prometheus text format and the admin endpoint's request parsing.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <vector>

#include "admin/endpoints.h"
#include "admin/server.h"
#include "config/config.h"
#include "metrics/prometheus.h"
#include "tests/unit/prom_check.h"

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
  meshd::test::require_samples_follow_their_family(text);
  std::string status = admin::render_status(view);
  REQUIRE(status.find("\"outbound\":{\"open\":2,\"opened_total\":5,\"closed_total\":3") != std::string::npos);
}

TEST_CASE("admin: request heads") {
  auto r = admin::parse_request_head("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n");
  REQUIRE(r.error == 0);
  REQUIRE(r.path == "/metrics");
  REQUIRE(admin::parse_request_head("HEAD /live HTTP/1.0\r\n").head);
  REQUIRE(admin::parse_request_head("GET /ready HTTP/1.1\n").path == "/ready");  // bare LF
  REQUIRE(admin::parse_request_head("POST /shutdown HTTP/1.1\r\n").post);
  REQUIRE(admin::parse_request_head("PUT /metrics HTTP/1.1\r\n").error == 405);
  REQUIRE(admin::parse_request_head("GET /metrics HTTP/2.0\r\n").error == 505);
  REQUIRE(admin::parse_request_head("GET metrics HTTP/1.1\r\n").error == 400);
  REQUIRE(admin::parse_request_head("garbage\r\n").error == 400);
  REQUIRE(admin::parse_request_head("GET / x HTTP/1.1\r\n").error == 400);
  REQUIRE(admin::parse_request_head("GET /" + std::string(2000, 'a') + " HTTP/1.1\r\n").error == 414);
  REQUIRE(admin::parse_request_head(std::string("GET /\x01 HTTP/1.1\r\n")).error == 400);
}

TEST_CASE("metrics: client identities are interned up to a bound, then counted as other", "[client_id]") {
  metrics::ClientIdStats c;
  auto id = [](size_t i) { return "spiffe://mesh.test/ns/n/sa/client-" + std::to_string(i); };
  std::vector<metrics::TcpCounters<metrics::Counter>*> seen;
  for (size_t i = 0; i < metrics::ClientIdStats::kMaxIds; ++i) {
    seen.push_back(&c.intern(id(i)));
    REQUIRE(seen.back() != &c.other());
    REQUIRE(c.size() == i + 1);
    REQUIRE(c.id(i) == id(i));
  }
  // Known identities keep their counters, full or not; the same address
  // each time (a connection keeps it).
  for (size_t i = 0; i < metrics::ClientIdStats::kMaxIds; ++i) REQUIRE(&c.intern(id(i)) == seen[i]);
  // Past the bound: other, and nothing more is kept.
  REQUIRE(&c.intern(id(1000)) == &c.other());
  REQUIRE(&c.intern("spiffe://mesh.test/one/more") == &c.other());
  REQUIRE(c.size() == metrics::ClientIdStats::kMaxIds);
  // A prefix or an extension of a known identity is another identity.
  REQUIRE(&c.intern(id(1).substr(0, id(1).size() - 1)) == &c.other());
  REQUIRE(&c.intern(id(1) + "x") == &c.other());

  metrics::ClientIdStats fresh;
  REQUIRE(&fresh.intern("") == &fresh.other());  // no identity is not one
  REQUIRE(fresh.size() == 0);
}

TEST_CASE("metrics: inbound mTLS series carry client_id, summed over workers", "[client_id]") {
  const char* argv[] = {"meshd", nullptr};
  const char* envp[] = {nullptr};
  auto loaded = config::load(1, argv, envp);
  REQUIRE(loaded);
  const std::string client = "spiffe://mesh.test/host/client";
  metrics::WorkerStats a, b;
  auto& ca = a.inbound_clients.intern(client);
  ca.opened.add(2);
  ca.closed[0].add(2);
  ca.read_bytes.add(100);
  ca.write_bytes.add(7);
  auto& cb = b.inbound_clients.intern(client);
  cb.opened.add(1);
  cb.closed[static_cast<int>(metrics::TcpError::kUnauthorized)].inc();
  // Worker b is full of others: a new identity counts as other there.
  for (size_t i = 1; i < metrics::ClientIdStats::kMaxIds; ++i)
    b.inbound_clients.intern("spiffe://mesh.test/host/h" + std::to_string(i));
  b.inbound_clients.intern("spiffe://mesh.test/host/late").opened.add(4);
  // A failed handshake: mTLS, identity unknown.
  a.dir_mtls[static_cast<int>(metrics::Direction::kInbound)].opened.inc();
  a.dir_mtls[static_cast<int>(metrics::Direction::kInbound)].closed[0].inc();

  std::vector<proxy::ListenerSpec> specs;
  std::atomic<bool> ready{true}, draining{false};
  admin::ProxyView view{&loaded->config, &specs, {&a, &b}, &ready, &draining};
  std::string text = admin::render_metrics(view);
  const std::string labels = "direction=\"inbound\",tls=\"true\",client_id=\"" + client + "\"";
  REQUIRE(text.find("tcp_open_total{" + labels + "} 3\n") != std::string::npos);
  REQUIRE(text.find("tcp_open_connections{" + labels + "} 0\n") != std::string::npos);
  REQUIRE(text.find("tcp_close_total{" + labels + ",classification=\"success\"} 2\n") != std::string::npos);
  REQUIRE(text.find("tcp_close_total{" + labels + ",classification=\"failure\",error=\"unauthorized\"} 1\n") !=
          std::string::npos);
  REQUIRE(text.find("tcp_read_bytes_total{" + labels + "} 100\n") != std::string::npos);
  REQUIRE(text.find("tcp_write_bytes_total{" + labels + "} 7\n") != std::string::npos);
  REQUIRE(text.find("tcp_open_total{direction=\"inbound\",tls=\"true\",client_id=\"other\"} 4\n") != std::string::npos);
  REQUIRE(text.find("client_id=\"spiffe://mesh.test/host/late\"") == std::string::npos);
  REQUIRE(text.find("client_id=\"spiffe://mesh.test/host/h99\"} 0\n") != std::string::npos);
  // Outbound and plain inbound series never carry it.
  REQUIRE(text.find("direction=\"outbound\",client_id") == std::string::npos);
  REQUIRE(text.find("tcp_open_total{direction=\"inbound\",client_id") == std::string::npos);
  // /status.json's inbound totals include every client's connections.
  std::string status = admin::render_status(view);
  INFO(status);
  REQUIRE(status.find("\"inbound\":{\"open\":4,\"opened_total\":8,\"closed_total\":4") != std::string::npos);
  REQUIRE(status.find("\"read_bytes_total\":100,\"write_bytes_total\":7") != std::string::npos);

  // No worker past its bound: no other series at all.
  metrics::WorkerStats c;
  c.inbound_clients.intern(client).opened.inc();
  admin::ProxyView one{&loaded->config, &specs, {&c}, &ready, &draining};
  REQUIRE(admin::render_metrics(one).find("client_id=\"other\"") == std::string::npos);
}
