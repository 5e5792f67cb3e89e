// The HTTP golden metrics: interning and bounds of the per-worker series,
// outcome classification, the latency buckets, and their /metrics text.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "admin/http_view.h"
#include "metrics/histogram.h"
#include "metrics/http_stats.h"
#include "metrics/prometheus.h"
#include "metrics/tcp_stats.h"
#include "tests/unit/prom_check.h"

using namespace meshd;
using metrics::AuthorityOverflow;
using metrics::Direction;
using metrics::HttpSeries;
using metrics::HttpStats;

namespace {

constexpr Direction kIn = Direction::kInbound;
constexpr Direction kOut = Direction::kOutbound;

std::string render(const std::vector<const metrics::WorkerStats*>& workers) {
  metrics::PrometheusWriter w;
  admin::render_http_metrics(w, workers);
  return w.str();
}

bool has_line(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

}  // namespace

TEST_CASE("http stats: a label set is interned once, authorities lower-cased", "[httpstats]") {
  HttpStats h;
  HttpSeries* s = h.series(kOut, "Web.Test:8080", "web", false);
  REQUIRE(s->authority() == "web.test:8080");
  REQUIRE(s->dst_service() == "web");
  REQUIRE(s->direction() == kOut);
  REQUIRE_FALSE(s->tls());
  REQUIRE(h.size() == 1);
  REQUIRE(&h.at(0) == s);
  // The same labels: the same series, whatever the case of the authority.
  REQUIRE(h.series(kOut, "web.test:8080", "web", false) == s);
  REQUIRE(h.series(kOut, "WEB.TEST:8080", "web", false) == s);
  REQUIRE(h.size() == 1);
  // Any label that differs is another series; the port is not stripped.
  REQUIRE(h.series(kOut, "web.test", "web", false) != s);
  REQUIRE(h.series(kOut, "web.test:8080", "web2", false) != s);
  REQUIRE(h.series(kOut, "web.test:8080", "", false) != s);
  REQUIRE(h.series(kOut, "web.test:8080", "web", true) != s);
  REQUIRE(h.series(kIn, "web.test:8080", "web", false) != s);
  REQUIRE(h.size() == 6);
  // Neither authority nor dst_service: the overflow series' own labels.
  REQUIRE(h.series(kIn, "", "", true) == &h.overflow(kIn, true));
  REQUIRE(h.size() == 6);
  for (auto d : {kIn, kOut})
    for (int r = 0; r < static_cast<int>(AuthorityOverflow::kCount); ++r)
      REQUIRE(h.authority_overflows(d, static_cast<AuthorityOverflow>(r)) == 0);
}

TEST_CASE("http stats: authorities must be a host[:port]", "[httpstats]") {
  HttpStats h;
  const std::string longest = std::string(250, 'a') + ".test";  // 255 bytes
  const std::vector<std::pair<std::string, std::string>> valid = {
      {"example.com", "example.com"},
      {"EXAMPLE.com:80", "example.com:80"},
      {"10.0.0.1:8080", "10.0.0.1:8080"},
      {"[2001:DB8::1]:443", "[2001:db8::1]:443"},
      {"[::ffff:10.0.0.1]", "[::ffff:10.0.0.1]"},
      {"a%2Db_c~d", "a%2db_c~d"},
      {"svc:65535", "svc:65535"},
      {longest, longest},
  };
  for (const auto& [in, label] : valid) {
    INFO(in);
    HttpSeries* s = h.series(kOut, in, "svc", false);
    REQUIRE(s->authority() == label);
    REQUIRE(s->dst_service() == "svc");
  }
  REQUIRE(h.authority_overflows(kOut, AuthorityOverflow::kInvalid) == 0);

  const std::vector<std::string> invalid = {
      "a b",         "a\"b",
      "a\\b",        "a@b",
      "a/b",         "host:",
      "host:123456", "host:8o",
      ":80",         "host:80:80",
      "[::1",        "[::1]x",
      "[]",          "[zz::1]",
      "[1.2.3.4]",   "[::1%25eth0]",
      "bad%zzhost",  "bad%2",
      "tab\there",   "a\nb",
      "\x80host",    std::string("a\0b", 3),
      longest + "x",
  };
  HttpSeries* blank = h.series(kOut, "", "svc", false);  // no authority at all: not counted
  REQUIRE(blank->authority().empty());
  REQUIRE(h.authority_overflows(kOut, AuthorityOverflow::kInvalid) == 0);
  uint64_t counted = 0;
  for (const auto& in : invalid) {
    INFO(in);
    // Counted under authority "", its dst_service kept, once per request.
    REQUIRE(h.series(kOut, in, "svc", false) == blank);
    REQUIRE(h.authority_overflows(kOut, AuthorityOverflow::kInvalid) == ++counted);
  }
  // Without a dst_service: the overflow series.
  REQUIRE(h.series(kIn, "a b", "", false) == &h.overflow(kIn, false));
  REQUIRE(h.authority_overflows(kIn, AuthorityOverflow::kInvalid) == 1);
  REQUIRE(h.authority_overflows(kOut, AuthorityOverflow::kLimit) == 0);
}

TEST_CASE("http stats: authorities and label sets are bounded per worker", "[httpstats]") {
  HttpStats h;
  auto host = [](size_t i) { return "host-" + std::to_string(i) + ".test"; };
  std::vector<HttpSeries*> seen;
  for (size_t i = 0; i < HttpStats::kMaxAuthorities; ++i) {
    seen.push_back(h.series(kOut, host(i), "svc", false));
    REQUIRE(seen.back()->authority() == host(i));
  }
  // The 101st authority: the overflow series, counted.
  HttpSeries* over = h.series(kOut, host(1000), "svc", false);
  REQUIRE(over == &h.overflow(kOut, false));
  REQUIRE(over->authority().empty());
  REQUIRE(over->dst_service().empty());
  REQUIRE(h.authority_overflows(kOut, AuthorityOverflow::kLimit) == 1);
  REQUIRE(h.series(kOut, "another.test", "svc", true) == &h.overflow(kOut, true));
  REQUIRE(h.authority_overflows(kOut, AuthorityOverflow::kLimit) == 2);
  // Known authorities keep their series, and may form new label sets.
  for (size_t i = 0; i < seen.size(); ++i) REQUIRE(h.series(kOut, host(i), "svc", false) == seen[i]);
  REQUIRE(h.series(kOut, host(7), "other-svc", false)->authority() == host(7));
  REQUIRE(h.authority_overflows(kOut, AuthorityOverflow::kLimit) == 2);

  // Label sets: known authorities times services, up to kMaxSeries.
  size_t made = h.size();
  for (int svc = 0; made < HttpStats::kMaxSeries; ++svc)
    for (size_t i = 0; i < HttpStats::kMaxAuthorities && made < HttpStats::kMaxSeries; ++i, ++made)
      REQUIRE(h.series(kIn, host(i), "svc-" + std::to_string(svc), false) != &h.overflow(kIn, false));
  REQUIRE(h.size() == HttpStats::kMaxSeries);
  REQUIRE(h.series(kIn, host(0), "one-more", false) == &h.overflow(kIn, false));
  REQUIRE(h.series(kIn, "", "one-more", false) == &h.overflow(kIn, false));
  REQUIRE(h.authority_overflows(kIn, AuthorityOverflow::kLimit) == 2);
  REQUIRE(h.size() == HttpStats::kMaxSeries);
  // Every interned one is still found.
  REQUIRE(h.series(kIn, host(0), "svc-0", false) == &h.at(101));
  // A random Host per request grows nothing.
  for (int i = 0; i < 1000; ++i) h.series(kOut, "scan-" + std::to_string(i) + ".test", "svc", false);
  REQUIRE(h.size() == HttpStats::kMaxSeries);
  REQUIRE(h.authority_overflows(kOut, AuthorityOverflow::kLimit) == 1002);
  // A dst_service too long to be a name.
  REQUIRE(h.series(kOut, host(0), std::string(256, 's'), false) == &h.overflow(kOut, false));
}

TEST_CASE("http stats: latency buckets are inclusive upper bounds", "[httpstats]") {
  using metrics::bucket_of;
  using metrics::LatencyHistogram;
  REQUIRE(LatencyHistogram::kBuckets == 26);
  REQUIRE(bucket_of(LatencyHistogram::kBoundsMs, 0) == 0);
  REQUIRE(bucket_of(LatencyHistogram::kBoundsMs, 1000) == 0);  // exactly 1 ms: le="1"
  REQUIRE(bucket_of(LatencyHistogram::kBoundsMs, 1001) == 1);
  REQUIRE(bucket_of(LatencyHistogram::kBoundsMs, 5000) == 4);
  REQUIRE(bucket_of(LatencyHistogram::kBoundsMs, 5001) == 5);         // le="10"
  REQUIRE(bucket_of(LatencyHistogram::kBoundsMs, 500'000) == 14);     // le="500"
  REQUIRE(bucket_of(LatencyHistogram::kBoundsMs, 50'000'000) == 24);  // le="50000"
  REQUIRE(bucket_of(LatencyHistogram::kBoundsMs, 50'000'001) == 25);  // +Inf
  REQUIRE(bucket_of(LatencyHistogram::kBoundsMs, UINT64_MAX) == 25);
  // The shared histogram keeps its (Linkerd connect) buckets.
  REQUIRE(metrics::Histogram::kBuckets == 18);
  REQUIRE(bucket_of(metrics::Histogram::kBoundsMs, 10'000'000) == 16);
  REQUIRE(bucket_of(metrics::Histogram::kBoundsMs, 10'000'001) == 17);

  LatencyHistogram h;
  h.observe_us(1000);
  h.observe_us(1001);
  h.observe_us(60'000'000);
  auto snap = h.snapshot();
  REQUIRE(snap.cumulative[0] == 1);
  REQUIRE(snap.cumulative[1] == 2);
  REQUIRE(snap.cumulative[24] == 2);
  REQUIRE(snap.cumulative[25] == 3);
  REQUIRE(snap.count == 3);
  REQUIRE(snap.sum_ms == Approx(60'002.001));

  metrics::Histogram shared;
  shared.observe_us(2000);
  REQUIRE(shared.snapshot().cumulative[0] == 0);
  REQUIRE(shared.snapshot().cumulative[1] == 1);
}

TEST_CASE("http stats: outcomes are classified and bounded per series", "[httpstats]") {
  HttpStats h;
  HttpSeries* s = h.series(kOut, "web.test", "web", false);
  auto count = [&](uint16_t status, int grpc, bool success, std::string_view error) -> uint64_t {
    for (size_t i = 0; i < s->outcomes(); ++i) {
      const auto& o = s->outcome(i);
      if (o.status == status && o.grpc_status == grpc && o.success == success && o.error == error)
        return o.count.load();
    }
    return 0;
  };
  h.response(s, 200, 500, true);
  h.response(s, 200, 500, true);
  h.response(s, 200, 500, false);  // cut short
  h.response(s, 404, 500, true);
  h.response(s, 503, 500, true);
  h.response(s, 200, 500, true, 0);
  h.response(s, 200, 500, true, 14);
  h.response(s, 200, 500, true, -7);  // no grpc-status
  h.failure(s, "closed");
  h.failure(s, "reset");
  h.failure(s, "closed");
  h.failure(s, "");
  REQUIRE(count(200, -1, true, "") == 3);
  REQUIRE(count(200, -1, false, "") == 1);
  REQUIRE(count(404, -1, true, "") == 1);
  REQUIRE(count(503, -1, false, "") == 1);
  REQUIRE(count(200, 0, true, "") == 1);
  REQUIRE(count(200, 14, false, "") == 1);
  REQUIRE(count(0, -1, false, "closed") == 2);
  REQUIRE(count(0, -1, false, "reset") == 1);
  REQUIRE(count(0, -1, false, "unknown") == 1);
  REQUIRE(s->latency().snapshot().count == 8);

  // Past kMaxOutcomes distinct tuples: "other", by classification.
  size_t before = s->outcomes();
  for (uint16_t status = 100; s->outcomes() < HttpSeries::kMaxOutcomes; ++status) h.response(s, status, 1, true);
  h.response(s, 250, 1, true);
  h.response(s, 550, 1, true);
  h.response(s, 551, 1, true);
  h.failure(s, "timeout");
  REQUIRE(s->outcomes() == HttpSeries::kMaxOutcomes);
  REQUIRE(s->other_outcomes(true) == 1);
  REQUIRE(s->other_outcomes(false) == 3);
  // Known tuples still count in their own.
  h.failure(s, "reset");
  REQUIRE(count(0, -1, false, "reset") == 2);
  uint64_t total = s->other_outcomes(true) + s->other_outcomes(false);
  for (size_t i = 0; i < s->outcomes(); ++i) total += s->outcome(i).count.load();
  REQUIRE(total == 13 + (HttpSeries::kMaxOutcomes - before) + 4);
  // A null series (never handed out) is ignored, not a crash.
  h.request(nullptr);
  h.response(nullptr, 200, 1, true);
  h.failure(nullptr, "closed");
}

TEST_CASE("http stats: rejections and abandons are bounded per worker", "[httpstats]") {
  HttpStats h;
  h.rejected(kIn, 400, "bare_lf");
  h.rejected(kIn, 400, "bare_lf");
  h.rejected(kIn, 431, "head_too_large");
  h.rejected(kOut, 400, "bare_lf");
  REQUIRE(h.rejections().size() == 3);
  REQUIRE(h.rejections().entry(0).count.load() == 2);
  std::vector<std::string> tokens;
  for (int i = 0; i < 40; ++i) tokens.push_back("reason_" + std::to_string(i));
  for (const auto& t : tokens) h.abandoned(kOut, t);
  REQUIRE(h.abandons().size() == metrics::TokenCounts::kMaxEntries);
  REQUIRE(h.abandons().other(kOut) == 40 - metrics::TokenCounts::kMaxEntries);
  REQUIRE(h.abandons().other(kIn) == 0);
  h.abandoned(kOut, tokens[0]);
  REQUIRE(h.abandons().entry(0).count.load() == 2);
}

TEST_CASE("http stats: application TLS by server name, bounded and validated", "[httpstats]") {
  metrics::WorkerStats a, b;
  a.http.tls_sni(kOut, "Shop.Example");
  a.http.tls_sni(kOut, "shop.example");
  b.http.tls_sni(kOut, "shop.example");
  a.http.tls_sni(kIn, "shop.example");   // another direction: another series
  a.http.tls_sni(kOut, "");              // no server name
  a.http.tls_sni(kOut, "10.0.0.1:443");  // not a host name: under ""
  a.http.tls_sni(kOut, "bad name");
  REQUIRE(a.http.sni_size() == 3);
  // Past kMaxSni names, under "" (and the names share the authorities' bound).
  for (size_t i = 0; i < HttpStats::kMaxSni + 10; ++i) a.http.tls_sni(kOut, "n" + std::to_string(i) + ".example");
  REQUIRE(a.http.sni_size() == HttpStats::kMaxSni);
  std::string text = render({&a, &b});
  INFO(text);
  REQUIRE(has_line(text, "tls_sni_total{direction=\"outbound\",sni=\"shop.example\"} 3"));
  REQUIRE(has_line(text, "tls_sni_total{direction=\"inbound\",sni=\"shop.example\"} 1"));
  // Under "": no name, an address, a bad name, and the names past the bound.
  const uint64_t kept = HttpStats::kMaxSni - 3;
  const uint64_t past = HttpStats::kMaxSni + 10 - kept;
  REQUIRE(has_line(text, "tls_sni_total{direction=\"outbound\",sni=\"\"} " + std::to_string(3 + past)));
  REQUIRE(has_line(text, "tls_sni_total{direction=\"outbound\",sni=\"n0.example\"} 1"));
  REQUIRE(text.find("sni=\"n" + std::to_string(kept) + ".example\"") == std::string::npos);
}

TEST_CASE("http stats: /metrics sums workers and merges label sets", "[httpstats]") {
  metrics::WorkerStats a, b;
  HttpSeries* sa = a.http.series(kOut, "Web.Test:8080", "web", false);
  a.http.request(sa);
  a.http.request(sa);
  a.http.response(sa, 200, 1000, true);  // exactly 1 ms
  a.http.response(sa, 503, 2500, true);
  HttpSeries* sb = b.http.series(kOut, "web.test:8080", "web", false);
  b.http.request(sb);
  b.http.response(sb, 200, 40'000, true);
  HttpSeries* in = b.http.series(kIn, "api.test", "", true);
  b.http.request(in);
  b.http.failure(in, "reset");
  b.http.series(kIn, "bad host", "", true);  // invalid, no dst: the overflow series, not requested
  a.http.detected(kOut, metrics::DetectOutcome::kHttp1);
  b.http.detected(kOut, metrics::DetectOutcome::kHttp1);
  b.http.detected(kIn, metrics::DetectOutcome::kSkipped);
  a.http.rejected(kIn, 400, "bare_lf");
  b.http.rejected(kIn, 400, "bare_lf");
  b.http.abandoned(kOut, "upgrade");

  std::string text = render({&a, &b});
  INFO(text);
  const std::string out = "direction=\"outbound\",authority=\"web.test:8080\",dst_service=\"web\",tls=\"false\"";
  REQUIRE(has_line(text, "request_total{" + out + "} 3"));
  REQUIRE(has_line(text, "response_total{" + out + ",status_code=\"200\",classification=\"success\"} 2"));
  REQUIRE(has_line(text, "response_total{" + out + ",status_code=\"503\",classification=\"failure\"} 1"));
  REQUIRE(has_line(text, "response_latency_ms_bucket{" + out + ",le=\"1\"} 1"));
  REQUIRE(has_line(text, "response_latency_ms_bucket{" + out + ",le=\"2\"} 1"));
  REQUIRE(has_line(text, "response_latency_ms_bucket{" + out + ",le=\"3\"} 2"));
  REQUIRE(has_line(text, "response_latency_ms_bucket{" + out + ",le=\"40\"} 3"));
  REQUIRE(has_line(text, "response_latency_ms_bucket{" + out + ",le=\"+Inf\"} 3"));
  REQUIRE(has_line(text, "response_latency_ms_sum{" + out + "} 43.5"));
  REQUIRE(has_line(text, "response_latency_ms_count{" + out + "} 3"));
  // No dst_service: no label; tls always.
  const std::string inb = "direction=\"inbound\",authority=\"api.test\",tls=\"true\"";
  REQUIRE(has_line(text, "request_total{" + inb + "} 1"));
  REQUIRE(has_line(text, "response_total{" + inb + ",classification=\"failure\",error=\"reset\"} 1"));
  REQUIRE(has_line(text, "response_latency_ms_count{" + inb + "} 0"));
  // One series per label set, merged across workers.
  REQUIRE(text.find("request_total{" + out) == text.rfind("request_total{" + out));
  // The overflow series only once it counted something.
  REQUIRE(text.find("authority=\"\",") == std::string::npos);
  REQUIRE(has_line(text, "http_authority_overflow_total{direction=\"inbound\",reason=\"invalid\"} 1"));
  REQUIRE(has_line(text, "http_authority_overflow_total{direction=\"outbound\",reason=\"limit\"} 0"));
  REQUIRE(has_line(text, "protocol_detect_total{direction=\"outbound\",protocol=\"http1\"} 2"));
  REQUIRE(has_line(text, "protocol_detect_total{direction=\"inbound\",protocol=\"skipped\"} 1"));
  REQUIRE(has_line(text, "protocol_detect_total{direction=\"inbound\",protocol=\"h2\"} 0"));
  REQUIRE(has_line(text, "http_rejected_total{direction=\"inbound\",status_code=\"400\",reason=\"bare_lf\"} 2"));
  REQUIRE(has_line(text, "http_tap_abandoned_total{direction=\"outbound\",reason=\"upgrade\"} 1"));

  // The overflow series, once used, and the outcome overflow.
  b.http.request(b.http.series(kIn, "", "", true));
  HttpSeries* full = a.http.series(kOut, "full.test", "", false);
  for (uint16_t status = 200; full->outcomes() < HttpSeries::kMaxOutcomes; ++status)
    a.http.response(full, status, 1, true);
  a.http.response(full, 599, 1, true);
  text = render({&a, &b});
  REQUIRE(has_line(text, "request_total{direction=\"inbound\",authority=\"\",tls=\"true\"} 1"));
  REQUIRE(has_line(text,
                   "response_total{direction=\"outbound\",authority=\"full.test\",tls=\"false\",status_code=\"other\","
                   "classification=\"failure\"} 1"));

  meshd::test::require_samples_follow_their_family(text);
}

TEST_CASE("http stats: the admin thread reads while the worker appends", "[httpstats]") {
  // What the design promises (append-only, published by a release store of
  // the size): a reader sees whole series and outcomes, never a torn one.
  // Under ASan this also catches a read of an entry not yet written.
  metrics::WorkerStats w;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 2000; ++i) {
      HttpSeries* s =
          w.http.series(kOut, "h" + std::to_string(i % 150) + ".test", "svc-" + std::to_string(i % 7), i % 2 == 0);
      w.http.request(s);
      w.http.response(s, static_cast<uint16_t>(200 + i % 40), static_cast<uint64_t>(i) * 10, true);
    }
    done.store(true);
  });
  size_t renders = 0;
  while (!done.load() || renders == 0) {
    std::string text = render({&w});
    REQUIRE(text.find("# TYPE request_total counter\n") != std::string::npos);
    ++renders;
  }
  writer.join();
  uint64_t requests = 0;
  for (size_t i = 0; i < w.http.size(); ++i) requests += w.http.at(i).requests();
  for (bool tls : {false, true}) requests += w.http.overflow(kOut, tls).requests();
  REQUIRE(requests == 2000);
}
