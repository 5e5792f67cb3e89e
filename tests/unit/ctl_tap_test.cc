// meshd-ctl tap: its pure pieces, and the command against a fake proxy.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/json_value.h"
#include "ctl/command.h"
#include "ctl/tap.h"
#include "tests/unit/loopback.h"
#include "tests/unit/must.h"

using meshd::ctl::tap::Event;
using meshd::ctl::tap::Filter;

TEST_CASE("tap: poll paths encode the filter", "[ctl-tap]") {
  using meshd::ctl::tap::percent_encode;
  using meshd::ctl::tap::poll_path;
  CHECK(percent_encode("/a b&c=d?é") == "/a%20b%26c%3Dd%3F%C3%A9");
  CHECK(poll_path({}, std::nullopt, 100) == "/tap?max=100");
  CHECK(poll_path({"API.prod", "/users x", "GET", "outbound"}, 42, 7) ==
        "/tap?max=7&after=42&authority=API.prod&path=/users%20x&method=GET&direction=outbound");
}

TEST_CASE("tap: answers are parsed, and what is not one is refused", "[ctl-tap]") {
  using meshd::ctl::tap::parse_page;
  auto page = meshd::test::must(parse_page(
      R"({"next":9,"dropped":2,"uncaptured_total":0,"events":[)"
      R"({"seq":8,"unix_ms":5,"direction":"outbound","method":"GET","authority":"api.prod","path":"/u",)"
      R"("dst_service":"api.prod","tls":true,"status":200,"latency_ms":1.8},)"
      R"({"seq":9,"unix_ms":6,"direction":"inbound","method":"POST","authority":"","path":"/x","path_truncated":true,)"
      R"("dst_service":"","tls":false,"error":"upstream_reset","latency_ms":12.5},)"
      R"({"seq":10,"unix_ms":7,"direction":"outbound","method":"POST","authority":"greeter.prod","path":"/g.S/M",)"
      R"("dst_service":"greeter.prod","tls":true,"status":200,"grpc_status":14,"latency_ms":0.5}]})"));
  CHECK(page.next == 9);
  CHECK(page.dropped == 2);
  REQUIRE(page.events.size() == 3);
  CHECK(page.events[0].status == 200u);
  CHECK_FALSE(page.events[0].grpc_status);
  CHECK(page.events[2].grpc_status == 14u);
  CHECK(page.events[0].tls);
  CHECK_FALSE(page.events[1].status);
  CHECK(page.events[1].error == "upstream_reset");
  CHECK(page.events[1].path_truncated);

  CHECK_FALSE(parse_page("<html>"));
  CHECK_FALSE(parse_page("[]"));
  CHECK(parse_page(R"({"next":1,"events":[]})").error().find("\"dropped\"") != std::string::npos);
  CHECK(parse_page(R"({"next":1,"dropped":0})").error().find("\"events\"") != std::string::npos);
  CHECK(parse_page(R"({"next":1,"dropped":0,"events":[{"seq":1}]})").error().find("event 0") != std::string::npos);
}

TEST_CASE("tap: one line per event, like linkerd's", "[ctl-tap]") {
  using meshd::ctl::tap::render_json;
  using meshd::ctl::tap::render_text;
  Event e;
  e.seq = 3;
  e.unix_ms = 1700000000000;
  e.direction = "outbound";
  e.method = "GET";
  e.authority = "api.prod";
  e.path = "/users";
  e.dst_service = "api.prod";
  e.tls = true;
  e.status = 200;
  e.latency_ms = 1.8;
  CHECK(render_text(e) == "req outbound GET api.prod /users -> 200 1.80ms dst=api.prod tls=true\n");
  auto j = meshd::test::must(meshd::parse_json(render_json(e)));
  CHECK(j["status"].as_uint() == 200u);
  CHECK(j["error"].is_null());
  CHECK(j["authority"].as_string() == "api.prod");
  CHECK(j["latency_ms"].as_double() == 1.8);
  CHECK(render_json(e).ends_with("}\n"));

  Event f;
  f.direction = "inbound";
  f.method = "POST";
  f.path = "/lo\x1bgin";  // peer bytes: no escape sequence reaches the terminal
  f.path_truncated = true;
  f.error = "upstream_reset";
  f.latency_ms = 250;
  CHECK(render_text(f) == "req inbound POST - /lo?gin... -> error upstream_reset 250ms tls=false\n");
  j = meshd::test::must(meshd::parse_json(render_json(f)));
  CHECK(j["status"].is_null());
  CHECK(j["error"].as_string() == "upstream_reset");
  CHECK(j["grpc_status"].is_null());

  // A gRPC call: its status from the trailers, beside HTTP's.
  e.path = "/helloworld.Greeter/SayHello";
  e.grpc_status = 14;
  CHECK(render_text(e) ==
        "req outbound GET api.prod /helloworld.Greeter/SayHello -> 200 grpc-status=14 1.80ms dst=api.prod tls=true\n");
  j = meshd::test::must(meshd::parse_json(render_json(e)));
  CHECK(j["grpc_status"].as_uint() == 14u);
}

// ---- the command ------------------------------------------------------------------

namespace {

struct Run {
  int rc = -1;
  std::string out, err;
};

Run run(std::vector<std::string_view> args) {
  char *out_buf = nullptr, *err_buf = nullptr;
  size_t out_len = 0, err_len = 0;
  FILE* out = open_memstream(&out_buf, &out_len);
  FILE* err = open_memstream(&err_buf, &err_len);
  REQUIRE(out);
  REQUIRE(err);
  Run r;
  r.rc = meshd::ctl::run_tap(args, meshd::ctl::Io{out, err});
  fclose(out);
  fclose(err);
  r.out.assign(out_buf, out_len);
  r.err.assign(err_buf, err_len);
  free(out_buf);
  free(err_buf);
  return r;
}

// A fake admin endpoint: answers each GET with the next of `bodies` (the
// last one again once they run out) until stopped, and keeps the request
// targets it was asked for.
class FakeProxy {
 public:
  explicit FakeProxy(std::vector<std::string> bodies, int status = 200) : bodies_(std::move(bodies)) {
    fd_ = meshd::test::listen_loopback(&port_, 16);
    thread_ = std::thread([this, status] {
      size_t i = 0;
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 20) <= 0) continue;
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        std::string head = meshd::test::read_request_head(c);
        {
          std::lock_guard lock(mu_);
          auto sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
          targets_.push_back(head.substr(sp1 + 1, sp2 - sp1 - 1));
        }
        const std::string& body = bodies_[std::min(i++, bodies_.size() - 1)];
        std::string reply = "HTTP/1.1 " + std::to_string(status) +
                            " X\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                            "\r\n\r\n" + body;
        (void)::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
        ::close(c);
      }
    });
  }
  ~FakeProxy() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string admin() const { return "127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> targets() {
    std::lock_guard lock(mu_);
    return targets_;
  }

 private:
  std::vector<std::string> bodies_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> targets_;
  std::thread thread_;
};

std::string event_json(int seq, std::string_view method, std::string_view path, int status) {
  return R"({"seq":)" + std::to_string(seq) + R"(,"unix_ms":1,"direction":"outbound","method":")" +
         std::string(method) + R"(","authority":"api.prod","path":")" + std::string(path) +
         R"(","dst_service":"api.prod","tls":true,"status":)" + std::to_string(status) + R"(,"latency_ms":2.5})";
}

std::string page(int next, int dropped, std::vector<std::string> events) {
  std::string out = R"({"next":)" + std::to_string(next) + R"(,"dropped":)" + std::to_string(dropped) +
                    R"(,"uncaptured_total":0,"events":[)";
  for (size_t i = 0; i < events.size(); ++i) out += (i ? "," : "") + events[i];
  return out + "]}\n";
}

}  // namespace

TEST_CASE("tap command: bad flags name the flag", "[ctl-tap]") {
  struct Case {
    std::vector<std::string_view> args;
    std::string_view error;
  };
  const Case cases[] = {
      {{"--direction", "up"}, "--direction: 'up' is not a direction"},
      {{"--path", "users"}, "--path: 'users' is not a path prefix"},
      {{"--max", "0"}, "--max: '0' is not a count above 0"},
      {{"--max", "x"}, "--max: 'x'"},
      {{"--duration", "soon"}, "--duration: 'soon' is not a duration"},
      {{"--duration", "0"}, "--duration: must be more than 0"},
      {{"-o", "yaml"}, "-o: 'yaml'"},
      {{"--timeout", "0s"}, "--timeout: must be more than 0"},
      {{"--admin", "nowhere"}, "--admin: "},
      {{"extra"}, "unexpected argument 'extra'"},
      {{"--bogus"}, "--bogus"},
  };
  for (const Case& c : cases) {
    INFO(c.args.front());
    Run r = run(c.args);
    CHECK(r.rc == meshd::ctl::kExitUsage);
    CHECK(r.out.empty());
    CHECK(r.err.starts_with("meshd-ctl tap: "));
    CHECK(r.err.find(c.error) != std::string::npos);
  }
}

TEST_CASE("tap command: --help", "[ctl-tap]") {
  Run r = run({"--help"});
  CHECK(r.rc == 0);
  CHECK(r.out.starts_with("Usage: meshd-ctl tap"));
  for (std::string_view flag :
       {"--authority", "--path", "--method", "--direction", "--max", "--duration", "--output", "--admin", "--timeout"})
    CHECK(r.out.find(flag) != std::string::npos);
}

TEST_CASE("tap command: no proxy answering", "[ctl-tap]") {
  uint16_t port = 0;
  int lfd = meshd::test::listen_loopback(&port);
  ::close(lfd);
  std::string admin = "127.0.0.1:" + std::to_string(port);
  Run r = run({"--admin", admin, "--max", "1"});
  CHECK(r.rc == meshd::ctl::kExitFailure);
  CHECK(r.err.starts_with("meshd-ctl: no proxy answering at " + admin));
}

TEST_CASE("tap command: streams events, follows the cursor, stops at --max", "[ctl-tap]") {
  FakeProxy proxy({page(10, 0, {}),
                   page(12, 0, {event_json(11, "GET", "/users", 200), event_json(12, "POST", "/login", 503)}),
                   page(12, 0, {}), page(20, 3, {event_json(17, "GET", "/a", 200), event_json(20, "GET", "/b", 200)})});
  std::string admin = proxy.admin();
  Run r = run({"--admin", admin, "--max", "3", "--authority", "api.prod", "--method", "GET"});
  CHECK(r.rc == 0);
  CHECK(r.out ==
        "req outbound GET api.prod /users -> 200 2.50ms dst=api.prod tls=true\n"
        "req outbound POST api.prod /login -> 503 2.50ms dst=api.prod tls=true\n"
        "req outbound GET api.prod /a -> 200 2.50ms dst=api.prod tls=true\n");
  CHECK(r.err ==
        "meshd-ctl tap: missed 3 request(s): more than the proxy holds between two polls\n"
        "meshd-ctl tap: 3 request(s) missed in all\n");
  auto t = proxy.targets();
  REQUIRE(t.size() == 4);
  CHECK(t[0] == "/tap?max=3&authority=api.prod&method=GET");  // the start: no cursor
  CHECK(t[1] == "/tap?max=3&after=10&authority=api.prod&method=GET");
  CHECK(t[2] == "/tap?max=1&after=12&authority=api.prod&method=GET");  // only as many as still wanted
  CHECK(t[3] == "/tap?max=1&after=12&authority=api.prod&method=GET");
}

TEST_CASE("tap command: -o json is one object per line", "[ctl-tap]") {
  FakeProxy proxy({page(0, 0, {}), page(2, 0, {event_json(1, "GET", "/x", 200), event_json(2, "GET", "/y", 404)})});
  Run r = run({"--admin", proxy.admin(), "--max", "2", "-o", "json"});
  CHECK(r.rc == 0);
  CHECK(r.err.empty());
  auto nl = r.out.find('\n');
  REQUIRE(nl != std::string::npos);
  auto first = meshd::test::must(meshd::parse_json(r.out.substr(0, nl)));
  auto second = meshd::test::must(meshd::parse_json(r.out.substr(nl + 1)));
  CHECK(first["path"].as_string() == "/x");
  CHECK(second["status"].as_uint() == 404u);
}

TEST_CASE("tap command: --duration ends a quiet tap", "[ctl-tap]") {
  FakeProxy proxy({page(5, 0, {})});
  auto start = std::chrono::steady_clock::now();
  Run r = run({"--admin", proxy.admin(), "--duration", "700ms"});
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(r.rc == 0);
  CHECK(r.out.empty());
  CHECK(took >= std::chrono::milliseconds(700));
  CHECK(took < std::chrono::milliseconds(3000));
  // About one poll per 200ms, each with the cursor.
  auto t = proxy.targets();
  CHECK(t.size() >= 3);
  CHECK(t.size() <= 6);
  CHECK(t.back() == "/tap?max=1000&after=5");
}

TEST_CASE("tap command: SIGTERM ends it cleanly", "[ctl-tap]") {
  FakeProxy proxy({page(5, 0, {})});
  std::thread killer([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    ::kill(::getpid(), SIGTERM);
  });
  Run r = run({"--admin", proxy.admin()});
  killer.join();
  CHECK(r.rc == 0);
  CHECK(r.err.empty());
}

TEST_CASE("tap command: a proxy that refuses, or answers no tap", "[ctl-tap]") {
  {
    FakeProxy old({"not found; try /metrics\n"}, 404);
    Run r = run({"--admin", old.admin(), "--max", "1"});
    CHECK(r.rc == meshd::ctl::kExitFailure);
    CHECK(r.err.starts_with("meshd-ctl: "));
    CHECK(r.err.find("404") != std::string::npos);
  }
  {
    FakeProxy junk({"<html>hello</html>"});
    Run r = run({"--admin", junk.admin(), "--max", "1"});
    CHECK(r.rc == meshd::ctl::kExitFailure);
    CHECK(r.err.starts_with("meshd-ctl: admin endpoint " + junk.admin() + " sent a /tap answer that was refused: "));
  }
  {
    // The proxy going away in the middle of a tap is an error too.
    uint16_t port = 0;
    int lfd = meshd::test::listen_loopback(&port);
    std::thread once([lfd] {
      int c = ::accept(lfd, nullptr, nullptr);
      meshd::test::read_request_head(c);
      std::string body = R"({"next":0,"dropped":0,"events":[]})";
      std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      (void)::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      ::close(c);
      ::close(lfd);
    });
    Run r = run({"--admin", "127.0.0.1:" + std::to_string(port), "--max", "1"});
    once.join();
    CHECK(r.rc == meshd::ctl::kExitFailure);
    CHECK(r.err.starts_with("meshd-ctl: no proxy answering at"));
  }
}
