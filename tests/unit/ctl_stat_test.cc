#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "ctl/command.h"
#include "ctl/prom_text.h"
#include "ctl/stat.h"
#include "tests/unit/loopback.h"

using meshd::ctl::prom::parse;
using meshd::ctl::prom::parse_sample_line;
using meshd::ctl::prom::parse_value;
using meshd::ctl::stat::histogram_quantile;
using meshd::ctl::stat::RowStats;
using meshd::ctl::stat::Scrape;

namespace {

Scrape scrape_of(std::string_view text) {
  auto r = parse(text, {}, meshd::ctl::stat::wanted_metric);
  REQUIRE(r);
  CHECK(r->malformed == 0);
  return meshd::ctl::stat::collect(r->samples);
}

const RowStats* find_row(const std::vector<RowStats>& rows, std::string_view direction, std::string_view authority) {
  for (const auto& r : rows) {
    if (r.key.direction == direction && r.key.authority == authority) return &r;
  }
  return nullptr;
}

// A histogram of response_latency_ms for one label set: cumulative counts
// for le 1, 2, 5, 10 and +Inf.
std::string histogram(std::string_view labels, int c1, int c2, int c5, int c10, int inf) {
  std::string out;
  const std::pair<const char*, int> b[] = {{"1", c1}, {"2", c2}, {"5", c5}, {"10", c10}, {"+Inf", inf}};
  for (const auto& [le, c] : b)
    out += "response_latency_ms_bucket{" + std::string(labels) + ",le=\"" + le + "\"} " + std::to_string(c) + "\n";
  out += "response_latency_ms_count{" + std::string(labels) + "} " + std::to_string(inf) + "\n";
  return out;
}

}  // namespace

// ---- the parser -------------------------------------------------------------

TEST_CASE("prom: samples with labels, comments and blank lines", "[stat]") {
  auto r = parse(
      "# HELP request_total Requests.\n"
      "# TYPE request_total counter\n"
      "\n"
      "request_total{direction=\"inbound\",authority=\"web:80\",tls=\"false\"} 12\n"
      "process_start_time_seconds 1.7e9\n"
      "  # an indented comment\n"
      "x{} 3\n"
      "y{ a = \"1\" , b=\"2\", } -2.5 1712345678000\n");
  REQUIRE(r);
  CHECK(r->malformed == 0);
  CHECK(r->parsed == 4);
  REQUIRE(r->samples.size() == 4);
  const auto& s = r->samples[0];
  CHECK(s.name == "request_total");
  REQUIRE(s.labels.size() == 3);
  CHECK(s.label("direction") == "inbound");
  CHECK(s.label("authority") == "web:80");
  CHECK(s.label("tls") == "false");
  CHECK_FALSE(s.label("dst_service"));
  CHECK(s.value == 12);
  CHECK(r->samples[1].labels.empty());
  CHECK(r->samples[1].value == 1.7e9);
  CHECK(r->samples[2].name == "x");
  CHECK(r->samples[2].labels.empty());
  CHECK(r->samples[3].label("a") == "1");
  CHECK(r->samples[3].label("b") == "2");
  CHECK(r->samples[3].value == -2.5);
}

TEST_CASE("prom: label value escapes", "[stat]") {
  auto s = parse_sample_line(R"(m{a="back\\slash",b="q\"uote",c="new\nline",d="\\n"} 1)");
  REQUIRE(s);
  CHECK(s->label("a") == "back\\slash");
  CHECK(s->label("b") == "q\"uote");
  CHECK(s->label("c") == "new\nline");
  CHECK(s->label("d") == "\\n");  // an escaped backslash, then a plain n
  // Commas, braces and equals signs inside a value are just characters.
  auto t = parse_sample_line(R"(m{a="x,y}z=1 2"} 7)");
  REQUIRE(t);
  CHECK(t->label("a") == "x,y}z=1 2");
  CHECK(t->value == 7);
}

TEST_CASE("prom: values", "[stat]") {
  CHECK(parse_value("+Inf") == INFINITY);
  CHECK(parse_value("-Inf") == -INFINITY);
  CHECK(parse_value("inf") == INFINITY);
  CHECK(std::isnan(*parse_value("NaN")));
  CHECK(parse_value("1e3") == 1000);
  CHECK(parse_value("+5") == 5);
  CHECK(parse_value("0.25") == 0.25);
  CHECK_FALSE(parse_value(""));
  CHECK_FALSE(parse_value("+"));
  CHECK_FALSE(parse_value("++1"));
  CHECK_FALSE(parse_value("+-1"));
  CHECK_FALSE(parse_value("1x"));
  CHECK_FALSE(parse_value("0x10"));
  CHECK_FALSE(parse_value("1e999"));
  CHECK_FALSE(parse_value(" 1"));
}

TEST_CASE("prom: malformed lines are skipped and counted, the rest kept", "[stat]") {
  const char* junk[] = {
      "garbage",               // no value
      "x{a=1} 2",              // unquoted value
      "x{a=\"1\" 2",           // labels never closed
      "x{a=\"1\"} abc",        // not a number
      "x 1 2 3",               // text after the timestamp
      "x 1 1.5",               // timestamp not an integer
      "x{a=\"\\q\"} 1",        // unknown escape
      "x{a=\"1\",a=\"2\"} 1",  // label twice
      "{a=\"1\"} 1",           // no name
      "x{a=\"open} 1",         // unterminated value
      "x{1a=\"v\"} 1",         // bad label name
      "x{a\"v\"} 1",           // no '='
      "9lives 1",              // bad name
      "x-y 1",                 // bad name character
      "x{a=\"1\"}",            // no value
  };
  CHECK_FALSE(parse_sample_line(std::string_view("x\0y 1", 5)));  // a NUL in the name
  for (const char* line : junk) {
    INFO(line);
    CHECK_FALSE(parse_sample_line(line));
  }
  std::string text = "good 1\n";
  for (const char* line : junk) text += std::string(line) + "\n";
  text += std::string("bin\x01\xff{} 1\n") + "also_good{a=\"b\"} 2\r\n";
  auto r = parse(text);
  REQUIRE(r);
  CHECK(r->malformed == std::size(junk) + 1);
  CHECK(r->first_error == "line 2: no value after garbage");
  REQUIRE(r->samples.size() == 2);
  CHECK(r->samples[0].name == "good");
  CHECK(r->samples[1].name == "also_good");  // CRLF tolerated
  CHECK(r->samples[1].value == 2);
}

TEST_CASE("prom: limits", "[stat]") {
  meshd::ctl::prom::Limits limits;
  limits.max_body_bytes = 100;
  limits.max_line_bytes = 30;
  limits.max_labels = 2;
  limits.max_samples = 3;

  auto big = parse(std::string(101, '\n'), limits);
  REQUIRE_FALSE(big);
  CHECK(big.error() == "body of 101 bytes is larger than the limit of 100");

  auto r = parse("long_line{a=\"" + std::string(40, 'x') + "\"} 1\nm{a=\"1\",b=\"2\",c=\"3\"} 1\nok 1\n", limits);
  REQUIRE(r);
  CHECK(r->malformed == 2);
  CHECK(r->first_error == "line 1: longer than 30 bytes");
  CHECK(r->samples.size() == 1);

  auto many = parse("a 1\nb 2\nc 3\nd 4\n", limits);
  REQUIRE_FALSE(many);
  CHECK(many.error() == "more than 3 samples");
  // Only kept samples count towards the limit.
  auto filtered = parse("a 1\nb 2\nc 3\nd 4\n", limits, [](std::string_view n) { return n != "b"; });
  REQUIRE(filtered);
  CHECK(filtered->samples.size() == 3);
  CHECK(filtered->parsed == 4);
}

// ---- quantiles ----------------------------------------------------------------

TEST_CASE("stat: histogram_quantile interpolates as Prometheus does", "[stat]") {
  // 10 in (0,1], 10 in (1,2], 20 in (2,5], 10 in (5,10], none above.
  std::map<double, double> h = {{1, 10}, {2, 20}, {5, 40}, {10, 50}, {INFINITY, 50}};
  // p50: rank 25 falls in (2,5] holding 20, 5 into it: 2 + 3 * 5/20.
  CHECK(histogram_quantile(0.50, h) == Approx(2.75));
  // p95: rank 47.5 in (5,10] holding 10, 7.5 into it: 5 + 5 * 0.75.
  CHECK(histogram_quantile(0.95, h) == Approx(8.75));
  CHECK(histogram_quantile(0.99, h) == Approx(9.75));
  // The first bucket starts at 0: rank 5 of 10 in (0,1].
  CHECK(histogram_quantile(0.1, h) == Approx(0.5));
  // Exactly on a bound.
  CHECK(histogram_quantile(0.2, h) == Approx(1.0));
}

TEST_CASE("stat: histogram_quantile edge cases", "[stat]") {
  // A rank in +Inf answers the highest finite bound.
  CHECK(histogram_quantile(0.5, {{1, 1}, {2, 2}, {INFINITY, 10}}) == 2);
  CHECK(histogram_quantile(0.99, {{1, 0}, {INFINITY, 4}}) == 1);
  // No observations, no +Inf bucket, a single bucket, phi out of range.
  CHECK_FALSE(histogram_quantile(0.5, {{1, 0}, {2, 0}, {INFINITY, 0}}));
  CHECK_FALSE(histogram_quantile(0.5, {{1, 3}, {2, 5}}));
  CHECK_FALSE(histogram_quantile(0.5, {{INFINITY, 5}}));
  CHECK_FALSE(histogram_quantile(0.5, {}));
  CHECK_FALSE(histogram_quantile(0, {{1, 1}, {INFINITY, 1}}));
  CHECK_FALSE(histogram_quantile(1.5, {{1, 1}, {INFINITY, 1}}));
  CHECK_FALSE(histogram_quantile(NAN, {{1, 1}, {INFINITY, 1}}));
  // Not monotonic (series scraped at different moments): made monotonic
  // first, so (0,1] holds 5 of 6 and rank 3 is 3/5 into it.
  CHECK(histogram_quantile(0.5, {{1, 5}, {2, 3}, {INFINITY, 6}}) == Approx(0.6));
}

// ---- two scrapes --------------------------------------------------------------

namespace {

constexpr std::string_view kWeb = R"(direction="outbound",authority="web:80",dst_service="web",tls="true")";
constexpr std::string_view kApi = R"(direction="inbound",authority="api.local:8080",tls="false")";

std::string scrape_text(int web_requests, int web_ok, int web_500, int web_reset, std::string hist_web,
                        int api_requests, std::string start = "1700000000") {
  std::string s = "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds " + start + "\n";
  s += "request_total{" + std::string(kWeb) + "} " + std::to_string(web_requests) + "\n";
  s += "request_total{" + std::string(kApi) + "} " + std::to_string(api_requests) + "\n";
  s += "response_total{" + std::string(kWeb) + ",status_code=\"200\",classification=\"success\"} " +
       std::to_string(web_ok) + "\n";
  s += "response_total{" + std::string(kWeb) + ",status_code=\"500\",classification=\"failure\"} " +
       std::to_string(web_500) + "\n";
  s += "response_total{" + std::string(kWeb) + ",classification=\"failure\",error=\"reset\"} " +
       std::to_string(web_reset) + "\n";
  s += "response_total{" + std::string(kApi) + ",status_code=\"200\",classification=\"success\"} " +
       std::to_string(api_requests) + "\n";
  s += hist_web;
  s += histogram(kApi, api_requests, api_requests, api_requests, api_requests, api_requests);
  s += "tcp_open_connections{direction=\"outbound\"} 1\n";
  s += "tcp_open_connections{direction=\"outbound\",dst=\"web\",tls=\"true\",server_id=\"spiffe://td/web\"} 3\n";
  s += "tcp_open_connections{direction=\"inbound\"} 2\n";
  s += "tcp_open_connections{direction=\"inbound\",tls=\"true\",client_id=\"spiffe://td/a\"} 5\n";
  s += "tcp_open_total{direction=\"inbound\"} 99\n";
  return s;
}

}  // namespace

TEST_CASE("stat: rates between two scrapes", "[stat]") {
  Scrape first = scrape_of(scrape_text(100, 90, 4, 1, histogram(kWeb, 10, 40, 80, 95, 95), 7));
  // In 2s: 20 requests, 16 ok, 2 500s, 2 resets; latencies 2 in (0,1],
  // 8 in (1,2], 8 in (2,5], 2 in (5,10].
  Scrape second = scrape_of(scrape_text(120, 106, 6, 3, histogram(kWeb, 12, 50, 98, 115, 115), 7));
  auto rows = meshd::ctl::stat::compute(first, second, 2.0);
  REQUIRE(rows.size() == 2);
  // Sorted by direction, then authority.
  CHECK(rows[0].key.direction == "inbound");
  CHECK(rows[1].key.direction == "outbound");
  const RowStats& web = rows[1];
  CHECK(web.key.authority == "web:80");
  CHECK(web.key.dst_service == "web");
  CHECK(web.key.tls == "true");
  CHECK(web.requests == 20);
  CHECK(web.responses == 20);
  CHECK(web.rps == Approx(10));
  REQUIRE(web.success_rate);
  CHECK(*web.success_rate == Approx(0.8));
  // p50: rank 10 of 20; (1,2] ends at 10: exactly its bound.
  CHECK(web.p50_ms == Approx(2.0));
  // p95: rank 19 in (5,10] (18 below, 2 in it): 5 + 5 * 1/2.
  CHECK(web.p95_ms == Approx(7.5));
  CHECK(web.p99_ms == Approx(5 + 5 * 1.8 / 2));
  REQUIRE(web.tcp_open);
  CHECK(*web.tcp_open == 3);  // only the dst="web" tls="true" series

  // No traffic in the interval: zero rates, no success rate or latency.
  const RowStats& api = rows[0];
  CHECK(api.key.dst_service.empty());
  CHECK(api.requests == 0);
  CHECK(api.rps == 0);
  CHECK_FALSE(api.success_rate);
  CHECK_FALSE(api.p50_ms);
  CHECK_FALSE(api.p99_ms);
  // inbound, no dst, tls=false: the plain inbound series, not the mTLS one.
  CHECK(api.tcp_open == 2);
}

TEST_CASE("stat: a counter lower in the second scrape was reset", "[stat]") {
  Scrape first = scrape_of(scrape_text(100, 90, 4, 1, histogram(kWeb, 10, 40, 80, 95, 95), 7));
  // The proxy restarted (same start time written, as a broken clock
  // might): requests 100 -> 6 means 6 since the restart.
  Scrape second = scrape_of(scrape_text(6, 5, 1, 0, histogram(kWeb, 1, 4, 6, 6, 6), 9));
  auto rows = meshd::ctl::stat::compute(first, second, 2.0);
  const RowStats* web = find_row(rows, "outbound", "web:80");
  REQUIRE(web);
  CHECK(web->requests == 6);
  CHECK(web->rps == Approx(3));
  CHECK(*web->success_rate == Approx(5.0 / 6));
  // The histogram is taken whole from the second scrape: rank 3 of 6 in
  // (1,2] (1 below, 3 in it): 1 + 2/3.
  CHECK(web->p50_ms == Approx(1 + 2.0 / 3));
  // Counters that went up are plain deltas.
  const RowStats* api = find_row(rows, "inbound", "api.local:8080");
  REQUIRE(api);
  CHECK(api->requests == 2);
  CHECK(api->rps == Approx(1));
  CHECK(api->success_rate == 1.0);
}

TEST_CASE("stat: a new process start time resets every counter", "[stat]") {
  Scrape first = scrape_of(scrape_text(10, 10, 0, 0, histogram(kWeb, 10, 10, 10, 10, 10), 3));
  // More requests since the restart than before it: only the start time tells.
  Scrape second = scrape_of(scrape_text(30, 30, 0, 0, histogram(kWeb, 0, 30, 30, 30, 30), 5, "1700000100"));
  auto rows = meshd::ctl::stat::compute(first, second, 2.0);
  const RowStats* web = find_row(rows, "outbound", "web:80");
  REQUIRE(web);
  CHECK(web->requests == 30);
  CHECK(web->p50_ms == Approx(1.5));  // rank 15 of 30 in (1,2]
  CHECK(find_row(rows, "inbound", "api.local:8080")->requests == 5);
}

TEST_CASE("stat: a series new in the second scrape, one gone from it, filters", "[stat]") {
  Scrape first = scrape_of("request_total{direction=\"outbound\",authority=\"old:80\",tls=\"false\"} 5\n");
  Scrape second = scrape_of(
      "request_total{direction=\"outbound\",authority=\"new:80\",tls=\"false\"} 4\n"
      "request_total{direction=\"inbound\",authority=\"new:80\",tls=\"false\"} 1\n"
      "request_total{direction=\"outbound\",authority=\"b.new:80\",tls=\"false\"} 2\n");
  auto rows = meshd::ctl::stat::compute(first, second, 2.0);
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].key.authority == "new:80");
  CHECK(rows[0].key.direction == "inbound");
  CHECK(rows[1].key.authority == "b.new:80");
  CHECK(rows[2].key.authority == "new:80");
  CHECK(rows[2].requests == 4);
  CHECK(rows[2].rps == 2);
  CHECK_FALSE(rows[2].success_rate);  // requests, but no response yet
  // No tcp_open_connections at all: no TCP count.
  CHECK_FALSE(rows[2].tcp_open);

  auto outbound = meshd::ctl::stat::compute(first, second, 2.0, {"outbound", ""});
  CHECK(outbound.size() == 2);
  auto b = meshd::ctl::stat::compute(first, second, 2.0, {"", "b."});
  REQUIRE(b.size() == 1);
  CHECK(b[0].key.authority == "b.new:80");
  CHECK(meshd::ctl::stat::compute(first, second, 2.0, {"inbound", "b."}).empty());
}

TEST_CASE("stat: rows sharing a TCP series get no TCP count", "[stat]") {
  Scrape s = scrape_of(
      "request_total{direction=\"outbound\",authority=\"a:80\",tls=\"false\"} 1\n"
      "request_total{direction=\"outbound\",authority=\"b:80\",tls=\"false\"} 1\n"
      "request_total{direction=\"outbound\",authority=\"c:80\",dst_service=\"c\",tls=\"false\"} 1\n"
      "tcp_open_connections{direction=\"outbound\"} 7\n"
      "tcp_open_connections{direction=\"outbound\",dst=\"c\"} 4\n");
  auto rows = meshd::ctl::stat::compute(Scrape{}, s, 1.0);
  REQUIRE(rows.size() == 3);
  CHECK_FALSE(rows[0].tcp_open);
  CHECK_FALSE(rows[1].tcp_open);
  CHECK(rows[2].tcp_open == 4);
}

TEST_CASE("stat: odd values are ignored, not trusted", "[stat]") {
  Scrape s = scrape_of(
      "request_total{direction=\"outbound\",authority=\"a\",tls=\"false\"} NaN\n"
      "request_total{direction=\"outbound\",authority=\"a\",tls=\"false\",x=\"1\"} -3\n"
      "request_total{direction=\"outbound\",authority=\"a\",tls=\"false\",x=\"2\"} +Inf\n"
      "request_total{direction=\"outbound\",authority=\"a\",tls=\"false\",x=\"3\"} 2\n"
      "response_total{direction=\"outbound\",authority=\"a\",tls=\"false\",classification=\"odd\"} 5\n"
      "response_latency_ms_bucket{direction=\"outbound\",authority=\"a\",tls=\"false\",le=\"soon\"} 5\n"
      "response_latency_ms_bucket{direction=\"outbound\",authority=\"a\",tls=\"false\"} 5\n");
  REQUIRE(s.rows.size() == 1);
  const auto& c = s.rows.begin()->second;
  CHECK(c.requests == 2);
  CHECK(c.success == 0);
  CHECK(c.failure == 0);
  CHECK(c.buckets.empty());
}

// ---- rendering ------------------------------------------------------------------

TEST_CASE("stat: the text table (golden)", "[stat]") {
  Scrape first = scrape_of(scrape_text(100, 90, 4, 1, histogram(kWeb, 10, 40, 80, 95, 95), 7));
  Scrape second = scrape_of(scrape_text(120, 106, 6, 3, histogram(kWeb, 12, 50, 98, 115, 115), 7));
  auto rows = meshd::ctl::stat::compute(first, second, 2.0);
  CHECK(meshd::ctl::stat::render_text(rows, true) ==
        "DIRECTION  AUTHORITY       DST_SERVICE  TLS    SUCCESS   RPS  LATENCY_P50  LATENCY_P95  LATENCY_P99  "
        "TCP_CONN\n"
        "inbound    api.local:8080  -            false        -  0.00            -            -            -  "
        "       2\n"
        "outbound   web:80          web          true    80.00%  10.0       2.00ms       7.50ms       9.50ms  "
        "       3\n");
  CHECK(meshd::ctl::stat::render_text(rows, false) ==
        "DIRECTION  AUTHORITY       DST_SERVICE  TLS    SUCCESS   RPS  LATENCY_P50  LATENCY_P95  LATENCY_P99\n"
        "inbound    api.local:8080  -            false        -  0.00            -            -            -\n"
        "outbound   web:80          web          true    80.00%  10.0       2.00ms       7.50ms       9.50ms\n");
  CHECK(meshd::ctl::stat::render_json(rows, 2.0) ==
        R"({"interval_seconds":2,"rows":[)"
        R"({"direction":"inbound","authority":"api.local:8080","dst_service":"","tls":false,"requests":0,)"
        R"("responses":0,"rps":0,"success_rate":null,"latency_ms_p50":null,"latency_ms_p95":null,)"
        R"("latency_ms_p99":null,"tcp_open_connections":2},)"
        R"({"direction":"outbound","authority":"web:80","dst_service":"web","tls":true,"requests":20,)"
        R"("responses":20,"rps":10,"success_rate":0.8,"latency_ms_p50":2,"latency_ms_p95":7.5,)"
        R"("latency_ms_p99":9.5,"tcp_open_connections":3}]})"
        "\n");
}

TEST_CASE("stat: cell formats", "[stat]") {
  using meshd::ctl::stat::format_ms;
  using meshd::ctl::stat::format_percent;
  using meshd::ctl::stat::format_rate;
  CHECK(format_percent(std::nullopt) == "-");
  CHECK(format_percent(1.0) == "100.00%");
  CHECK(format_percent(0.12345) == "12.35%");
  CHECK(format_rate(0.25) == "0.25");
  CHECK(format_rate(12.34) == "12.3");
  CHECK(format_rate(12345.6) == "12346");
  CHECK(format_ms(std::nullopt) == "-");
  CHECK(format_ms(1.754) == "1.75ms");
  CHECK(format_ms(42.26) == "42.3ms");
  CHECK(format_ms(10000) == "10000ms");
}

// ---- the command ------------------------------------------------------------------

namespace {

// Runs `meshd-ctl stat ARGS` with output captured.
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
  r.rc = meshd::ctl::run_stat(args, meshd::ctl::Io{out, err});
  fclose(out);
  fclose(err);
  r.out.assign(out_buf, out_len);
  r.err.assign(err_buf, err_len);
  free(out_buf);
  free(err_buf);
  return r;
}

// Answers one GET per body in `bodies`, in order, then returns.
std::thread serve(int listen_fd, std::vector<std::string> bodies) {
  return std::thread([listen_fd, bodies = std::move(bodies)] {
    for (const std::string& body : bodies) {
      int c = ::accept(listen_fd, nullptr, nullptr);
      if (c < 0) return;
      meshd::test::read_request_head(c);
      std::string reply = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
      (void)::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  });
}

}  // namespace

TEST_CASE("stat command: bad flags name the flag", "[stat]") {
  struct Case {
    std::vector<std::string_view> args;
    std::string_view error;
  };
  const Case cases[] = {
      {{"--interval", "10ms"}, "--interval: '10ms' is outside 100ms..60s"},
      {{"--interval", "2m"}, "--interval: '2m' is outside 100ms..60s"},
      {{"--interval", "5"}, "--interval: "},
      {{"--direction", "sideways"}, "--direction: 'sideways' is not a direction"},
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
    CHECK(r.err.starts_with("meshd-ctl stat: "));
    CHECK(r.err.find(c.error) != std::string::npos);
  }
}

TEST_CASE("stat command: --help", "[stat]") {
  Run r = run({"--help"});
  CHECK(r.rc == 0);
  CHECK(r.out.starts_with("Usage: meshd-ctl stat"));
  CHECK(r.out.find("--interval DUR") != std::string::npos);
}

TEST_CASE("stat command: no proxy answering", "[stat]") {
  uint16_t port = 0;
  int lfd = meshd::test::listen_loopback(&port);
  ::close(lfd);
  std::string admin = "127.0.0.1:" + std::to_string(port);
  Run r = run({"--admin", admin, "--interval", "100ms"});
  CHECK(r.rc == meshd::ctl::kExitFailure);
  CHECK(r.err.starts_with("meshd-ctl: no proxy answering at " + admin));
}

TEST_CASE("stat command: two scrapes of a fake proxy", "[stat]") {
  uint16_t port = 0;
  int lfd = meshd::test::listen_loopback(&port);
  auto server = serve(lfd, {scrape_text(100, 90, 4, 1, histogram(kWeb, 10, 40, 80, 95, 95), 7),
                            scrape_text(120, 106, 6, 3, histogram(kWeb, 12, 50, 98, 115, 115), 7) + "junk line\n"});
  std::string admin = "127.0.0.1:" + std::to_string(port);
  Run r = run({"--admin", admin, "--interval", "100ms", "--direction", "outbound", "-o", "json"});
  server.join();
  ::close(lfd);
  CHECK(r.rc == 0);
  const std::string second_body = scrape_text(120, 106, 6, 3, histogram(kWeb, 12, 50, 98, 115, 115), 7);
  const auto junk_line = std::count(second_body.begin(), second_body.end(), '\n') + 1;
  CHECK(r.err == "meshd-ctl stat: skipped 1 malformed line(s) of /metrics (first at line " + std::to_string(junk_line) +
                     ": bad value \"line\" for junk)\n");
  // One row, its rate over the measured interval (about 0.1s).
  CHECK(r.out.starts_with(R"({"interval_seconds":)"));
  CHECK(r.out.find(R"("authority":"web:80")") != std::string::npos);
  CHECK(r.out.find(R"("requests":20,)") != std::string::npos);
  CHECK(r.out.find(R"("success_rate":0.8,)") != std::string::npos);
  CHECK(r.out.find("api.local") == std::string::npos);
}

TEST_CASE("stat command: an answer that is not Prometheus text", "[stat]") {
  uint16_t port = 0;
  int lfd = meshd::test::listen_loopback(&port);
  auto server = serve(lfd, {"<html><body>hello</body></html>\n"});
  std::string admin = "127.0.0.1:" + std::to_string(port);
  Run r = run({"--admin", admin, "--interval", "100ms"});
  server.join();
  ::close(lfd);
  CHECK(r.rc == meshd::ctl::kExitFailure);
  CHECK(r.err.starts_with("meshd-ctl: admin endpoint " + admin + " sent a /metrics that is not Prometheus text"));
}

TEST_CASE("stat command: a proxy without HTTP traffic", "[stat]") {
  uint16_t port = 0;
  int lfd = meshd::test::listen_loopback(&port);
  const std::string tcp_only = "# TYPE tcp_open_total counter\ntcp_open_total{direction=\"inbound\"} 3\n";
  auto server = serve(lfd, {tcp_only, tcp_only});
  std::string admin = "127.0.0.1:" + std::to_string(port);
  Run r = run({"--admin", admin, "--interval", "100ms"});
  server.join();
  ::close(lfd);
  CHECK(r.rc == 0);
  CHECK(r.err.empty());
  CHECK(r.out ==
        "No HTTP traffic recorded by the proxy at " + admin + " yet (no request_total series in its /metrics)\n");
}

TEST_CASE("prom: random bytes and mutated metric text never crash the parser", "[stat]") {
  // Deterministic junk (a fixed-seed LCG): every result is either parsed
  // samples or counted malformed lines, and the pipeline after it copes.
  const std::string seed = scrape_text(120, 106, 6, 3, histogram(kWeb, 12, 50, 98, 115, 115), 7);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  auto next = [&x] {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(x >> 33);
  };
  for (int round = 0; round < 300; ++round) {
    std::string text = seed;
    for (int i = 0; i < 20; ++i) text[next() % text.size()] = static_cast<char>(next() & 0xff);
    if (round % 3 == 0) text.resize(next() % text.size());
    auto r = parse(text, {}, meshd::ctl::stat::wanted_metric);
    REQUIRE(r);
    CHECK(r->parsed + r->malformed > 0);
    Scrape s = meshd::ctl::stat::collect(r->samples);
    auto rows = meshd::ctl::stat::compute(Scrape{}, s, 1.0);
    (void)meshd::ctl::stat::render_text(rows, true);
    (void)meshd::ctl::stat::render_json(rows, 1.0);
  }
}
