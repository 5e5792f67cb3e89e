// The live tap: TapEvents (the worker's ring of request summaries), the
// HttpTap capturing into it, the admin's /tap query and answer.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <vector>

#include "admin/endpoints.h"
#include "admin/server.h"
#include "admin/tap_view.h"
#include "base/clock.h"
#include "base/json_value.h"
#include "config/config.h"
#include "metrics/tap_events.h"
#include "metrics/tcp_stats.h"
#include "proxy/http_tap.h"
#include "tests/unit/must.h"

using namespace meshd;
using metrics::Direction;
using metrics::TapEvent;
using metrics::TapEvents;
using metrics::TapFilter;

namespace {

// One finished request through a worker's TapEvents.
void record(TapEvents& t, std::string_view method, std::string_view authority, std::string_view target, uint16_t status,
            Direction d = Direction::kOutbound, std::string_view error = {}) {
  TapEvents::Record* r = t.begin({d, true, method, authority, target, "api.prod"}, 1000, 1700000000000);
  REQUIRE(r != nullptr);
  t.end(r, status, error, 1800);
}

std::vector<TapEvent> all(const TapEvents& t, uint64_t after, uint64_t last, const TapFilter& f = {},
                          std::vector<uint64_t>* held = nullptr) {
  std::vector<TapEvent> out;
  std::vector<uint64_t> h;
  t.collect(after, last, f, 10000, &out, held != nullptr ? held : &h);
  return out;
}

JsonValue json(const std::string& s) { return test::must(parse_json(s)); }

}  // namespace

TEST_CASE("tap events: idle costs nothing, a deadline arms capture until it passes", "[tap]") {
  std::atomic<uint64_t> seq{0};
  TapEvents t(&seq);
  CHECK_FALSE(t.armed());
  CHECK_FALSE(t.allocated());
  CHECK(all(t, 0, 100).empty());
  t.activate(5000);
  CHECK(t.armed());
  CHECK(t.active(4999));
  CHECK_FALSE(t.active(5000));
  CHECK_FALSE(t.armed());  // the passed deadline went back to 0: one load again
  // A poll after that arms it again.
  t.activate(9000);
  CHECK(t.active(6000));
  CHECK_FALSE(t.allocated());  // nothing recorded yet: nothing allocated
}

TEST_CASE("tap events: a record becomes an event, numbered, with its strings bounded", "[tap]") {
  std::atomic<uint64_t> seq{41};
  TapEvents t(&seq);
  const std::string long_path = "/" + std::string(400, 'p');
  TapEvents::Record* r =
      t.begin({Direction::kInbound, false, "PATCH", "API.Example:8080", long_path, "web.prod"}, 5000, 1234);
  REQUIRE(r != nullptr);
  CHECK(t.pushed() == 0);  // not finished: not in the ring
  t.end(r, 0, "upstream_reset", 2500);
  CHECK(TapEvents::last_sequence(&seq) == 42);
  auto events = all(t, 0, 42);
  REQUIRE(events.size() == 1);
  const TapEvent& e = events[0];
  CHECK(e.seq == 42);
  CHECK(e.unix_ms == 1234);
  CHECK(e.direction == Direction::kInbound);
  CHECK(e.method.view() == "PATCH");
  CHECK(e.authority.view() == "api.example:8080");  // lower-cased, as the metrics' label
  CHECK(e.path.view() == long_path.substr(0, TapEvent::kMaxPath));
  CHECK(e.path_truncated);
  CHECK(e.dst_service.view() == "web.prod");
  CHECK(e.status == 0);
  CHECK(e.error == "upstream_reset");
  CHECK(e.latency_us == 2500);
}

TEST_CASE("tap events: request targets become paths", "[tap]") {
  CHECK(metrics::tap_path_of("/a/b?c=d") == "/a/b?c=d");
  CHECK(metrics::tap_path_of("http://h.example:80/x?y") == "/x?y");
  CHECK(metrics::tap_path_of("http://h.example") == "/");
  CHECK(metrics::tap_path_of("h.example:443") == "h.example:443");  // CONNECT
  CHECK(metrics::tap_path_of("*") == "*");
}

TEST_CASE("tap events: the ring keeps the newest kCapacity, oldest first", "[tap]") {
  std::atomic<uint64_t> seq{0};
  TapEvents t(&seq);
  const size_t n = TapEvents::kCapacity + 10;
  for (size_t i = 1; i <= n; ++i) record(t, "GET", "a", "/" + std::to_string(i), 200);
  CHECK(t.pushed() == n);
  std::vector<uint64_t> held;
  auto events = all(t, 0, n, {}, &held);
  REQUIRE(events.size() == TapEvents::kCapacity);
  CHECK(events.front().seq == 11);
  CHECK(events.front().path.view() == "/11");
  CHECK(events.back().seq == n);
  CHECK(held.size() == TapEvents::kCapacity);
  // The cursor's bounds: after excluded, last included.
  events = all(t, n - 3, n - 1);
  REQUIRE(events.size() == 2);
  CHECK(events[0].seq == n - 2);
  CHECK(events[1].seq == n - 1);
}

TEST_CASE("tap events: too many awaiting responses are not captured, and counted", "[tap]") {
  std::atomic<uint64_t> seq{0};
  TapEvents t(&seq);
  std::vector<TapEvents::Record*> open;
  for (size_t i = 0; i < TapEvents::kMaxInFlight; ++i) {
    open.push_back(t.begin({Direction::kOutbound, false, "GET", "a", "/", ""}, 0, 0));
    REQUIRE(open.back() != nullptr);
  }
  CHECK(t.begin({Direction::kOutbound, false, "GET", "a", "/", ""}, 0, 0) == nullptr);
  CHECK(t.uncaptured() == 1);
  t.end(open.back(), 204, {}, 1);
  CHECK(t.begin({Direction::kOutbound, false, "GET", "a", "/", ""}, 0, 0) != nullptr);  // freed, reused
}

TEST_CASE("tap filter: each field narrows, empty ones match all", "[tap]") {
  std::atomic<uint64_t> seq{0};
  TapEvents t(&seq);
  record(t, "GET", "api.prod", "/users/1", 200);
  record(t, "POST", "API.prod", "/users", 201);
  record(t, "GET", "web.prod", "/users", 200, Direction::kInbound);
  record(t, "get", "api.prod", "/u", 200);
  auto count = [&t](TapFilter f) { return all(t, 0, 100, f).size(); };
  CHECK(count({}) == 4);
  CHECK(count({.authority = "api.prod"}) == 3);
  CHECK(count({.authority = "Api.Prod"}) == 3);  // authorities ignore case
  CHECK(count({.authority = "api"}) == 0);       // exact, not a substring
  CHECK(count({.path = "/users"}) == 3);
  CHECK(count({.path = "/users/"}) == 1);
  CHECK(count({.method = "GET"}) == 2);  // methods are case-sensitive
  CHECK(count({.direction = Direction::kInbound}) == 1);
  CHECK(count({.authority = "api.prod", .path = "/users", .method = "GET", .direction = Direction::kOutbound}) == 1);
}

// ---- the admin side --------------------------------------------------------

TEST_CASE("admin: query strings are split and decoded strictly", "[tap]") {
  auto q = test::must(admin::parse_query("a=1&b=x%2Fy+z&c=&%41=%c3%a9"));
  REQUIRE(q.size() == 4);
  CHECK(q[0].name == "a");
  CHECK(q[0].value == "1");
  CHECK(q[1].value == "x/y z");
  CHECK(q[2].value.empty());
  CHECK(q[3].name == "A");
  CHECK(q[3].value == "\xc3\xa9");
  CHECK(test::must(admin::parse_query("")).empty());

  struct Case {
    std::string_view query, error;
  };
  const Case bad[] = {
      {"a=1&&b=2", "empty parameter"},
      {"a=1&", "empty parameter"},
      {"=1", "parameter without a name"},
      {"a", "parameter 'a' has no value"},
      {"a=%4", "parameter 'a': bad percent-encoding"},
      {"a=%zz", "parameter 'a': bad percent-encoding"},
      {"a=%0a", "parameter 'a': control character"},
      {"%zz=1", "parameter name '%zz': bad percent-encoding"},
  };
  for (const Case& c : bad) {
    INFO(c.query);
    auto r = admin::parse_query(c.query);
    REQUIRE_FALSE(r);
    CHECK(r.error().find(c.error) != std::string::npos);
  }
  CHECK(admin::parse_query("a=" + std::string(admin::kMaxQueryValue + 1, 'x')).error().find("longer than") !=
        std::string::npos);
  std::string many;
  for (size_t i = 0; i <= admin::kMaxQueryParams; ++i) many += (i ? "&p" : "p") + std::to_string(i) + "=1";
  CHECK(admin::parse_query(many).error().find("more than 16 parameters") != std::string::npos);

  // The request line keeps the query apart for the handler.
  auto r = admin::parse_request_head("GET /tap?after=3&path=%2Fx HTTP/1.1\r\n");
  CHECK(r.path == "/tap");
  CHECK(r.query == "after=3&path=%2Fx");
  CHECK(admin::parse_request_head("GET /metrics HTTP/1.1\r\n").query.empty());
}

TEST_CASE("admin: /tap's parameters, and errors naming the bad one", "[tap]") {
  auto q = test::must(
      admin::parse_tap_query("after=17&authority=api.prod&path=%2Fusers&method=GET&direction=inbound&max=5"));
  CHECK(q.after == 17u);
  CHECK(q.filter.authority == "api.prod");
  CHECK(q.filter.path == "/users");
  CHECK(q.filter.method == "GET");
  CHECK(q.filter.direction == Direction::kInbound);
  CHECK(q.max == 5);
  auto d = test::must(admin::parse_tap_query(""));
  CHECK_FALSE(d.after);
  CHECK(d.max == admin::kTapDefaultMax);

  struct Case {
    std::string query, error;
  };
  const Case bad[] = {
      {"bogus=1", "unknown parameter 'bogus' (known: after, authority, path, method, direction, max)"},
      {"after=x", "parameter 'after': 'x' is not a sequence number"},
      {"after=-1", "parameter 'after'"},
      {"max=0", "parameter 'max': '0' is not a count from 1 to 1000"},
      {"max=1001", "parameter 'max'"},
      {"direction=up", "parameter 'direction': 'up' is not a direction"},
      {"method=G%20T", "parameter 'method': 'G T' is not an HTTP method"},
      {"path=users", "parameter 'path': must start with '/'"},
      {"path=/" + std::string(300, 'x'), "parameter 'path'"},
      {"authority=", "parameter 'authority'"},
      {"max=1&max=2", "parameter 'max': given twice"},
      {"after=%", "parameter 'after': bad percent-encoding"},
  };
  for (const Case& c : bad) {
    INFO(c.query);
    auto r = admin::parse_tap_query(c.query);
    REQUIRE_FALSE(r);
    CHECK(r.error().find(c.error) != std::string::npos);
  }
  // The endpoint answers 400 with that message, and keeps nothing on.
  metrics::TapEvents t;
  const metrics::TapEvents* ws[] = {&t};
  admin::Response resp = admin::serve_tap(ws, "max=0", 1000);
  CHECK(resp.status == 400);
  CHECK(resp.body == "bad /tap query: parameter 'max': '0' is not a count from 1 to 1000\n");
  CHECK_FALSE(t.armed());
}

TEST_CASE("admin: /tap merges workers by number, filters, bounds, and moves the cursor", "[tap]") {
  std::atomic<uint64_t> seq{0};
  TapEvents a(&seq), b(&seq);
  const TapEvents* ws[] = {&a, &b};
  // A first poll starts a tap: capture on in every worker, no events, the cursor now.
  admin::Response start = admin::serve_tap(ws, "", 1000, &seq);
  REQUIRE(start.status == 200);
  CHECK(a.armed());
  CHECK(b.armed());
  CHECK(a.active(1000 + TapEvents::kActiveMs - 1));
  CHECK(json(start.body)["next"].as_uint() == 0u);

  record(a, "GET", "api.prod", "/1", 200);                                       // 1
  record(b, "GET", "web.prod", "/2", 0, Direction::kInbound, "upstream_reset");  // 2
  record(a, "POST", "api.prod", "/3", 503);                                      // 3
  record(b, "GET", "api.prod", "/4", 200);                                       // 4
  admin::TapQuery q;
  q.after = 0;
  JsonValue page = json(admin::render_tap(ws, q, 4));
  CHECK(page["next"].as_uint() == 4u);
  CHECK(page["dropped"].as_uint() == 0u);
  REQUIRE(page["events"].size() == 4);
  for (size_t i = 0; i < 4; ++i) CHECK(page["events"][i]["seq"].as_uint() == i + 1);
  const JsonValue& e1 = page["events"][0];
  CHECK(e1["direction"].as_string() == "outbound");
  CHECK(e1["method"].as_string() == "GET");
  CHECK(e1["authority"].as_string() == "api.prod");
  CHECK(e1["path"].as_string() == "/1");
  CHECK(e1["dst_service"].as_string() == "api.prod");
  CHECK(e1["tls"].as_bool() == true);
  CHECK(e1["status"].as_uint() == 200u);
  CHECK(e1["latency_ms"].as_double() == 1.8);
  CHECK(e1.find("error") == nullptr);
  CHECK(e1.find("path_truncated") == nullptr);
  CHECK(page["events"][1]["error"].as_string() == "upstream_reset");
  CHECK(page["events"][1].find("status") == nullptr);

  // Filtered: the cursor still passes the events that did not match.
  q.filter.authority = "api.prod";
  q.filter.method = "GET";
  page = json(admin::render_tap(ws, q, 4));
  REQUIRE(page["events"].size() == 2);
  CHECK(page["events"][0]["seq"].as_uint() == 1u);
  CHECK(page["events"][1]["seq"].as_uint() == 4u);
  CHECK(page["next"].as_uint() == 4u);

  // Bounded: the rest waits for the next poll, from the last one given.
  q.filter = {};
  q.max = 3;
  page = json(admin::render_tap(ws, q, 4));
  REQUIRE(page["events"].size() == 3);
  CHECK(page["next"].as_uint() == 3u);
  q.after = 3;
  page = json(admin::render_tap(ws, q, 4));
  REQUIRE(page["events"].size() == 1);
  CHECK(page["events"][0]["seq"].as_uint() == 4u);
  CHECK(page["next"].as_uint() == 4u);

  // An event numbered after `last` (read before the rings) waits too.
  record(a, "GET", "api.prod", "/5", 200);  // 5
  page = json(admin::render_tap(ws, q, 4));
  CHECK(page["events"].size() == 1);
  CHECK(page["next"].as_uint() == 4u);

  // A cursor from an earlier process (past the last number) starts over here.
  q.after = 999;
  page = json(admin::render_tap(ws, q, 5));
  CHECK(page["events"].size() == 0);
  CHECK(page["next"].as_uint() == 5u);
  CHECK(page["dropped"].as_uint() == 0u);
}

TEST_CASE("admin: /tap counts what was overwritten before it was read", "[tap]") {
  std::atomic<uint64_t> seq{0};
  TapEvents a(&seq), b(&seq);
  const TapEvents* ws[] = {&a, &b};
  record(b, "GET", "b", "/", 200);  // 1, kept
  const uint64_t n = TapEvents::kCapacity + 7;
  for (uint64_t i = 0; i < n; ++i) record(a, "GET", "a", "/", 200);  // 2 .. n+1: the first 7 overwritten
  admin::TapQuery q;
  q.after = 0;
  q.max = 1000;
  const uint64_t last = n + 1;
  JsonValue page = json(admin::render_tap(ws, q, last));
  CHECK(page["next"].as_uint() == last);
  CHECK(page["dropped"].as_uint() == 7u);
  CHECK(page["events"].size() == TapEvents::kCapacity + 1);
  // Matching or not: a filter that wants none of them still learns of the loss.
  q.filter.method = "DELETE";
  page = json(admin::render_tap(ws, q, last));
  CHECK(page["events"].size() == 0);
  CHECK(page["dropped"].as_uint() == 7u);
  // From a cursor past the loss: nothing missed.
  q.after = 8;
  page = json(admin::render_tap(ws, q, last));
  CHECK(page["dropped"].as_uint() == 0u);
  // Bounded answers count only up to their cursor.
  q.filter = {};
  q.after = 0;
  q.max = 1;
  page = json(admin::render_tap(ws, q, last));
  CHECK(page["next"].as_uint() == 1u);
  CHECK(page["dropped"].as_uint() == 0u);
  q.after = 1;
  page = json(admin::render_tap(ws, q, last));
  CHECK(page["events"][0]["seq"].as_uint() == 9u);
  CHECK(page["next"].as_uint() == 9u);
  CHECK(page["dropped"].as_uint() == 7u);
}

// ---- HttpTap: the worker's side, driven by real HTTP/1 bytes -------------------

namespace {

void feed(proxy::HttpTap& tap, http::TapSide side, std::string_view bytes, uint64_t now_us,
          http::TapVerdict::Kind want = http::TapVerdict::kPass) {
  http::TapVerdict v = tap.feed(side, {bytes.data(), bytes.size()}, now_us);
  REQUIRE(v.kind == want);
}

std::string h2_frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f{static_cast<char>(payload.size() >> 16),
                static_cast<char>(payload.size() >> 8),
                static_cast<char>(payload.size()),
                static_cast<char>(type),
                static_cast<char>(flags),
                static_cast<char>(stream >> 24),
                static_cast<char>(stream >> 16),
                static_cast<char>(stream >> 8),
                static_cast<char>(stream)};
  return f + std::string(payload);
}

// An HPACK literal without indexing, with a new name (no Huffman).
std::string literal(std::string_view name, std::string_view value) {
  return std::string(1, '\0') + static_cast<char>(name.size()) + std::string(name) + static_cast<char>(value.size()) +
         std::string(value);
}

}  // namespace

TEST_CASE("http tap: requests are captured only while a tap is on", "[tap]") {
  metrics::WorkerStats stats;
  proxy::HttpTap tap(http::Limits{});
  FastRandom random(1);
  tap.start(&stats, &random, {Direction::kOutbound, "api.prod", true, nullptr});
  // Nobody taps: counted in the metrics, nothing captured, nothing allocated.
  feed(tap, http::TapSide::kRequests, "GET /idle HTTP/1.1\r\nHost: api.prod\r\n\r\n", 0);
  feed(tap, http::TapSide::kResponses, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 100);
  CHECK_FALSE(stats.tap.allocated());
  CHECK(stats.http.size() == 1);
  CHECK(stats.http.at(0).requests() == 1);

  // A poll turns it on (the monotonic clock: the HttpTap reads it).
  const metrics::TapEvents* ws[] = {&stats.tap};
  admin::Response start = admin::serve_tap(ws, "", monotonic_ms());
  uint64_t cursor = *json(start.body)["next"].as_uint();
  feed(tap, http::TapSide::kRequests,
       "GET /users?id=1 HTTP/1.1\r\nHost: API.prod\r\n\r\nPOST /login HTTP/1.1\r\nHost: api.prod\r\n"
       "Content-Length: 0\r\n\r\n",
       1000);
  feed(tap, http::TapSide::kResponses, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 2800);
  tap.finish("upstream_reset", 5000);       // the second never got its response
  CHECK(stats.http.at(0).requests() == 3);  // the golden metrics count them all the same

  admin::Response resp = admin::serve_tap(ws, "after=" + std::to_string(cursor), monotonic_ms());
  REQUIRE(resp.status == 200);
  JsonValue page = json(resp.body);
  REQUIRE(page["events"].size() == 2);
  const JsonValue& get = page["events"][0];
  CHECK(get["method"].as_string() == "GET");
  CHECK(get["authority"].as_string() == "api.prod");
  CHECK(get["path"].as_string() == "/users?id=1");
  CHECK(get["status"].as_uint() == 200u);
  CHECK(get["latency_ms"].as_double() == 1.8);  // TTFB: request head at 1000us, response head at 2800us
  CHECK(get["dst_service"].as_string() == "api.prod");
  CHECK(get["direction"].as_string() == "outbound");
  const JsonValue& post = page["events"][1];
  CHECK(post["method"].as_string() == "POST");
  CHECK(post["error"].as_string() == "upstream_reset");
  CHECK(page["next"].as_uint() == cursor + 2);
}

TEST_CASE("http tap: a request shows as soon as its response head comes, not when its body ends", "[tap]") {
  metrics::WorkerStats stats;
  FastRandom random(3);
  proxy::HttpTap tap(http::Limits{});
  tap.start(&stats, &random, {Direction::kInbound, "", false, nullptr});
  const metrics::TapEvents* ws[] = {&stats.tap};
  uint64_t cursor = *json(admin::serve_tap(ws, "", monotonic_ms()).body)["next"].as_uint();
  feed(tap, http::TapSide::kRequests, "GET /stream HTTP/1.1\r\nHost: s.test\r\n\r\n", 1000);
  feed(tap, http::TapSide::kResponses, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n", 1500);
  JsonValue page = json(admin::serve_tap(ws, "after=" + std::to_string(cursor), monotonic_ms()).body);
  REQUIRE(page["events"].size() == 1);
  CHECK(page["events"][0]["path"].as_string() == "/stream");
  CHECK(page["events"][0]["status"].as_uint() == 200u);
  CHECK(page["events"][0]["latency_ms"].as_double() == 0.5);
  // Its end, or a failure of its body, is not a second event.
  tap.tap().finish("upstream_reset", 9000);
  page = json(admin::serve_tap(ws, "after=" + std::to_string(cursor), monotonic_ms()).body);
  CHECK(page["events"].size() == 1);
  CHECK(stats.http.at(0).requests() == 1);
}

TEST_CASE("http tap: outcomes reach the balanced endpoint's health, blaming it only for its own failures", "[tap]") {
  metrics::WorkerStats stats;
  FastRandom random(2);
  discovery::EndpointHealth health;
  proxy::HttpTap tap(http::Limits{});
  auto start = [&] { tap.start(&stats, &random, {Direction::kOutbound, "api.prod", true, &health}); };
  const std::string_view get = "GET / HTTP/1.1\r\nHost: api.prod\r\n\r\n";
  start();
  feed(tap, http::TapSide::kRequests, get, 0);
  feed(tap, http::TapSide::kResponses, "HTTP/1.1 204 No Content\r\n\r\n", 3000);
  CHECK(health.response_peak_us.load() == 3000);
  CHECK(health.request_failures.load() == 0);
  // A 5xx and a reset by the server count against it...
  feed(tap, http::TapSide::kRequests, get, 4000);
  feed(tap, http::TapSide::kResponses, "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", 4500);
  CHECK(health.request_failures.load() == 1);
  feed(tap, http::TapSide::kRequests, get, 5000);
  tap.tap().finish("upstream_reset", 6000);
  CHECK(health.request_failures.load() == 2);
  // ...a client that went away does not; a response cut short does.
  start();
  feed(tap, http::TapSide::kRequests, get, 7000);
  tap.tap().finish("client_reset", 8000);
  CHECK(health.request_failures.load() == 2);
  start();
  feed(tap, http::TapSide::kRequests, get, 9000);
  feed(tap, http::TapSide::kResponses, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\npart", 9500);
  tap.tap().finish("closed", 9600);
  CHECK(health.request_failures.load() == 3);
  CHECK(health.ejections.get() == 0);
  // Inbound (no endpoint): nothing to record, nothing breaks.
  proxy::HttpTap inbound(http::Limits{});
  inbound.start(&stats, &random, {Direction::kInbound, "", true, nullptr});
  feed(inbound, http::TapSide::kRequests, get, 0);
  feed(inbound, http::TapSide::kResponses, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", 10);
  CHECK(health.request_failures.load() == 3);
}

TEST_CASE("admin: the handler routes /tap with its query", "[tap]") {
  const char* argv[] = {"meshd", nullptr};
  const char* envp[] = {nullptr};
  auto loaded = config::load(1, argv, envp);
  REQUIRE(loaded);
  metrics::WorkerStats w;
  std::vector<proxy::ListenerSpec> specs;
  std::atomic<bool> ready{true}, draining{false};
  admin::ProxyView view{&loaded->config, &specs, {&w}, &ready, &draining};
  admin::Handler h = admin::make_handler(view);
  admin::Response ok = h({"/tap", "max=10"});
  CHECK(ok.status == 200);
  CHECK(ok.content_type == "application/json");
  CHECK(w.tap.armed());
  admin::Response bad = h({"/tap", "color=blue"});
  CHECK(bad.status == 400);
  CHECK(bad.body.find("unknown parameter 'color'") != std::string::npos);
  // Endpoints without parameters still ignore a query.
  CHECK(h({"/live", "x=1"}).status == 200);
}

TEST_CASE("http tap: HTTP/2 after the server's early SETTINGS and a preface in pieces", "[tap]") {
  metrics::WorkerStats stats;
  proxy::HttpTap tap(http::Limits{});
  FastRandom random(1);
  tap.start(&stats, &random, {Direction::kInbound, {}, true, nullptr});
  const metrics::TapEvents* ws[] = {&stats.tap};
  uint64_t cursor = *json(admin::serve_tap(ws, "", monotonic_ms()).body)["next"].as_uint();  // a tap polls
  // The server's SETTINGS come first (forwarded already), then the
  // client's preface in two reads.
  feed(tap, http::TapSide::kResponses, h2_frame(4, 0, 0, ""), 0);
  constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  feed(tap, http::TapSide::kRequests, kPreface.substr(0, 5), 0);
  // From here on HTTP/2: every span passes.
  std::string request = h2_frame(4, 0, 0, "") + h2_frame(1, 5, 1,
                                                         "\x83\x86" + literal(":authority", "Greeter.prod:50051") +
                                                             literal(":path", "/helloworld.Greeter/SayHello") +
                                                             literal("content-type", "application/grpc"));
  feed(tap, http::TapSide::kRequests, std::string(kPreface.substr(5)) + request, 1000);
  feed(tap, http::TapSide::kResponses,
       h2_frame(4, 1, 0, "") + h2_frame(1, 4, 1, "\x88" + literal("content-type", "application/grpc")), 3000);
  feed(tap, http::TapSide::kResponses, h2_frame(1, 5, 1, literal("grpc-status", "7")), 4000);
  tap.finish("closed", 5000);

  CHECK(stats.http.detections(Direction::kInbound, metrics::DetectOutcome::kH2) == 1);
  REQUIRE(stats.http.size() == 1);
  const metrics::HttpSeries& s = stats.http.at(0);
  CHECK(s.authority() == "greeter.prod:50051");
  CHECK(s.requests() == 1);
  REQUIRE(s.outcomes() == 1);
  CHECK(s.outcome(0).status == 200);
  CHECK(s.outcome(0).grpc_status == 7);  // PERMISSION_DENIED: a failure with HTTP 200
  CHECK_FALSE(s.outcome(0).success);
  CHECK(s.latency().snapshot().count == 1);

  // The live tap shows the call once its trailers came, with their status.
  JsonValue page = json(admin::serve_tap(ws, "after=" + std::to_string(cursor), monotonic_ms()).body);
  REQUIRE(page["events"].size() == 1);
  CHECK(page["events"][0]["path"].as_string() == "/helloworld.Greeter/SayHello");
  CHECK(page["events"][0]["status"].as_uint() == 200u);
  CHECK(page["events"][0]["grpc_status"].as_uint() == 7u);
  CHECK(s.latency().snapshot().sum_ms == 2.0);  // from the request head (1000us) to the response head (3000us)
}
