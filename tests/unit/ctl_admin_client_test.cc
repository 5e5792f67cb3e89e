#include "ctl/admin_client.h"
#include "tests/unit/loopback.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <thread>

using meshd::ctl::admin_get;
using meshd::ctl::AdminError;
using meshd::ctl::http_response_complete_size;
using meshd::ctl::parse_admin_target;
using meshd::ctl::parse_http_response;

TEST_CASE("http: a good response with Content-Length", "[ctl][http]") {
  auto r =
      parse_http_response("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->reason == "OK");
  CHECK(r->body == "{\"a\":1}");
  REQUIRE(r->header("Content-Type"));
  CHECK(*r->header("CONTENT-TYPE") == "application/json");
  CHECK(r->header("X-Missing") == nullptr);
}

TEST_CASE("http: body delimited by EOF, and bytes past Content-Length", "[ctl][http]") {
  auto eof = parse_http_response("HTTP/1.0 200 OK\r\n\r\nall of it");
  REQUIRE(eof);
  CHECK(eof->body == "all of it");
  auto extra = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA");
  REQUIRE(extra);
  CHECK(extra->body == "ok");
}

TEST_CASE("http: chunked body", "[ctl][http]") {
  auto r = parse_http_response(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin "
      "\r\n\r\nchunks.\r\n0\r\n\r\n");
  REQUIRE(r);
  CHECK(r->body == "Wikipedia in \r\n\r\nchunks.");
  CHECK_FALSE(parse_http_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWi"));
  CHECK_FALSE(parse_http_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
}

TEST_CASE("http: missing body", "[ctl][http]") {
  auto r = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"trunc");
  REQUIRE_FALSE(r);
  CHECK(r.error() == "truncated body: Content-Length is 100 but only 7 bytes arrived");
  auto empty = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(empty);
  CHECK(empty->body.empty());
  auto headers_only = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n");
  REQUIRE_FALSE(headers_only);
  CHECK(headers_only.error() == "truncated response: headers never ended");
}

TEST_CASE("http: non-200 statuses parse; the caller judges them", "[ctl][http]") {
  auto r = parse_http_response("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
  REQUIRE(r);
  CHECK(r->status == 404);
  CHECK(r->reason == "Not Found");
  CHECK(r->body == "not found");
  auto no_reason = parse_http_response("HTTP/1.1 503\r\n\r\n");
  REQUIRE(no_reason);
  CHECK(no_reason->status == 503);
  CHECK(no_reason->reason.empty());
  // 204 has no body even when bytes follow.
  auto nc = parse_http_response("HTTP/1.1 204 No Content\r\n\r\n");
  REQUIRE(nc);
  CHECK(nc->body.empty());
}

TEST_CASE("http: oversized responses are refused", "[ctl][http]") {
  auto by_length = parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 100);
  REQUIRE_FALSE(by_length);
  CHECK(by_length.error() == "response body of 1000 bytes is larger than the limit of 100");
  auto by_eof = parse_http_response("HTTP/1.1 200 OK\r\n\r\n" + std::string(101, 'x'), 100);
  REQUIRE_FALSE(by_eof);
  CHECK(by_eof.error().find("larger than the limit of 100") != std::string::npos);
  std::string chunks = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 20; ++i) chunks += "10\r\n" + std::string(16, 'y') + "\r\n";
  chunks += "0\r\n\r\n";
  CHECK_FALSE(parse_http_response(chunks, 100));
  CHECK(parse_http_response(chunks, 1000));
  // A Content-Length that overflows size_t is bad, not huge.
  CHECK_FALSE(parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"));
}

TEST_CASE("http: garbage is refused with a recognizable message", "[ctl][http]") {
  auto empty = parse_http_response("");
  REQUIRE_FALSE(empty);
  CHECK(empty.error() == "empty response (the peer closed without answering)");
  auto ssh = parse_http_response("SSH-2.0-OpenSSH_9.2\r\n");
  REQUIRE_FALSE(ssh);
  CHECK(ssh.error() == "not an HTTP response (starts with \"SSH-2.0-OpenSSH_9.2..\")");
  CHECK_FALSE(parse_http_response("HTTP/1.1 2x0 OK\r\n\r\n"));
  CHECK_FALSE(parse_http_response("HTTP/1.1 200OK\r\n\r\n"));
  CHECK_FALSE(parse_http_response("HTTP/1.1\r\n\r\n"));
  CHECK_FALSE(parse_http_response("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n"));
  CHECK_FALSE(parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"));
  CHECK_FALSE(parse_http_response("HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n"));
  // Binary noise never crashes.
  std::string noise;
  for (int i = 0; i < 4096; ++i) noise += static_cast<char>((i * 7919) & 0xFF);
  CHECK_FALSE(parse_http_response(noise));
  CHECK_FALSE(parse_http_response("HTTP/1." + noise));
}

TEST_CASE("http: complete size lets the client stop at Content-Length", "[ctl][http]") {
  CHECK(http_response_complete_size("HTTP/1.1 200 OK\r\nContent-Le") == 0);
  std::string_view head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  CHECK(http_response_complete_size(head) == head.size() + 5);
  CHECK(http_response_complete_size("HTTP/1.1 200 OK\r\n\r\nbody") == 0);  // to EOF
  CHECK(http_response_complete_size("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n") == 0);
  CHECK(http_response_complete_size("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n") == 0);
}

TEST_CASE("admin target: parse and precedence", "[ctl][http]") {
  auto t = parse_admin_target("127.0.0.1:4191");
  REQUIRE(t);
  CHECK(t->addr.str() == "127.0.0.1:4191");
  auto lh = parse_admin_target("localhost:9990");
  REQUIRE(lh);
  CHECK(lh->addr.str() == "127.0.0.1:9990");
  CHECK(lh->text == "localhost:9990");
  CHECK(parse_admin_target("[::1]:4191"));
  CHECK_FALSE(parse_admin_target("4191"));
  CHECK_FALSE(parse_admin_target("example.com:4191"));

  ::unsetenv("MESHD_ADMIN");
  CHECK(meshd::ctl::resolve_admin_target("")->text == "127.0.0.1:4191");
  ::setenv("MESHD_ADMIN", "127.0.0.2:1234", 1);
  CHECK(meshd::ctl::resolve_admin_target("")->text == "127.0.0.2:1234");
  CHECK(meshd::ctl::resolve_admin_target("127.0.0.3:1")->text == "127.0.0.3:1");  // flag wins
  ::setenv("MESHD_ADMIN", "nonsense", 1);
  auto bad = meshd::ctl::resolve_admin_target("");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().starts_with("MESHD_ADMIN: "));
  ::unsetenv("MESHD_ADMIN");
}

namespace {

using meshd::test::listen_loopback;

meshd::ctl::AdminTarget target_on(uint16_t port) { return *parse_admin_target("127.0.0.1:" + std::to_string(port)); }

// Accepts one connection, reads the request head, answers `reply`, closes.
std::thread serve_once(int listen_fd, std::string reply, std::string* request_out) {
  return std::thread([=] {
    int c = ::accept(listen_fd, nullptr, nullptr);
    if (c < 0) return;
    *request_out = meshd::test::read_request_head(c);
    (void)::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
    ::close(c);
  });
}

}  // namespace

TEST_CASE("admin_get: a real exchange over loopback", "[ctl][http]") {
  uint16_t port = 0;
  int lfd = listen_loopback(&port);
  std::string request;
  auto server = serve_once(lfd, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}", &request);
  auto body = admin_get(target_on(port), "/status.json", 2000);
  server.join();
  ::close(lfd);
  REQUIRE(body);
  CHECK(*body == "{\"ok\":true}");
  CHECK(request.starts_with("GET /status.json HTTP/1.1\r\n"));
  CHECK(request.find("\r\nConnection: close\r\n") != std::string::npos);
  CHECK(request.find("\r\nHost: 127.0.0.1:" + std::to_string(port) + "\r\n") != std::string::npos);
}

TEST_CASE("admin_get: non-2xx is a status error with the body's first line", "[ctl][http]") {
  uint16_t port = 0;
  int lfd = listen_loopback(&port);
  std::string request;
  auto server = serve_once(lfd, "HTTP/1.1 503 Service Unavailable\r\n\r\ndraining\nmore", &request);
  auto body = admin_get(target_on(port), "/status.json", 2000);
  server.join();
  ::close(lfd);
  REQUIRE_FALSE(body);
  CHECK(body.error().kind == AdminError::Kind::kStatus);
  CHECK(body.error().message == "GET /status.json answered 503 Service Unavailable: draining");
}

TEST_CASE("admin_get: nobody listening is 'unreachable'", "[ctl][http]") {
  uint16_t port = 0;
  int lfd = listen_loopback(&port);
  ::close(lfd);  // the port is now (almost certainly) closed
  auto body = admin_get(target_on(port), "/status.json", 2000);
  REQUIRE_FALSE(body);
  CHECK(body.error().kind == AdminError::Kind::kUnreachable);
  CHECK(body.error().message == "connection refused");
  CHECK(meshd::ctl::describe_admin_error(target_on(port), body.error()) ==
        "no proxy answering at 127.0.0.1:" + std::to_string(port) +
            " (connection refused); is meshd running? (--admin to point elsewhere)");
}

TEST_CASE("admin_get: a peer that never answers times out", "[ctl][http]") {
  uint16_t port = 0;
  int lfd = listen_loopback(&port);  // the kernel completes the handshake; nobody reads
  auto body = admin_get(target_on(port), "/status.json", 200);
  ::close(lfd);
  REQUIRE_FALSE(body);
  CHECK(body.error().kind == AdminError::Kind::kUnreachable);
  CHECK(body.error().message == "connected, but no answer within 200ms");
}

TEST_CASE("admin_get: a response over the limit is refused while reading", "[ctl][http]") {
  uint16_t port = 0;
  int lfd = listen_loopback(&port);
  std::string request;
  auto server = serve_once(lfd, "HTTP/1.1 200 OK\r\n\r\n" + std::string(300 * 1024, 'x'), &request);
  auto body = admin_get(target_on(port), "/status.json", 2000, 1024);
  server.join();
  ::close(lfd);
  REQUIRE_FALSE(body);
  CHECK(body.error().kind == AdminError::Kind::kProtocol);
  CHECK(body.error().message.find("larger than the limit of 1024") != std::string::npos);
}
