#include "admin/http_view.h"

#include <array>
#include <compare>
#include <map>
#include <span>
#include <string>
#include <tuple>

#include "metrics/http_stats.h"

namespace meshd::admin {

using metrics::Direction;
using metrics::HttpSeries;
using metrics::HttpStats;
using metrics::Label;
using metrics::LatencyHistogram;

namespace {

// A status past any real one: the "other" of a bounded table.
constexpr uint32_t kOtherStatus = 1000;

struct SeriesKey {
  Direction direction;
  std::string_view authority;
  std::string_view dst_service;
  bool tls;
  auto operator<=>(const SeriesKey&) const = default;
};

struct OutcomeKey {
  uint32_t status;  // 0: no response; kOtherStatus: a series' overflow
  bool success;
  int32_t grpc_status;  // -1: none
  std::string_view error;
  auto operator<=>(const OutcomeKey&) const = default;
};

struct SeriesTotals {
  uint64_t requests = 0;
  std::array<uint64_t, LatencyHistogram::kBuckets> cumulative{};
  double sum_ms = 0;
  uint64_t count = 0;
  std::map<OutcomeKey, uint64_t> outcomes;

  // Outcomes are read before requests, as closes before opens for TCP: the
  // writer counts a request before its response.
  void add(const HttpSeries& s) {
    for (size_t i = 0, n = s.outcomes(); i < n; ++i) {
      const HttpSeries::Outcome& o = s.outcome(i);
      outcomes[{o.status, o.success, o.grpc_status, o.error}] += o.count.load(std::memory_order_relaxed);
    }
    for (bool success : {false, true})
      if (uint64_t n = s.other_outcomes(success); n > 0) outcomes[{kOtherStatus, success, -1, {}}] += n;
    LatencyHistogram::Snapshot snap = s.latency().snapshot();
    for (size_t i = 0; i < snap.cumulative.size(); ++i) cumulative[i] += snap.cumulative[i];
    sum_ms += snap.sum_ms;
    count += snap.count;
    requests += s.requests();
  }
};

std::map<SeriesKey, SeriesTotals> series_totals(const std::vector<const metrics::WorkerStats*>& workers) {
  std::map<SeriesKey, SeriesTotals> out;
  auto add = [&](const HttpSeries& s) { out[{s.direction(), s.authority(), s.dst_service(), s.tls()}].add(s); };
  for (const auto* w : workers) {
    const HttpStats& h = w->http;
    for (size_t i = 0, n = h.size(); i < n; ++i) add(h.at(i));
    // The overflow series only once used: no series for nothing.
    for (int d = 0; d < metrics::kDirections; ++d)
      for (bool tls : {false, true}) {
        const HttpSeries& s = h.overflow(static_cast<Direction>(d), tls);
        if (s.requests() > 0 || s.outcomes() > 0) add(s);
      }
  }
  return out;
}

// (direction, status, token) summed over workers; the overflow as
// (direction, kOtherStatus, "other").
using TokenKey = std::tuple<Direction, uint32_t, std::string_view>;
std::map<TokenKey, uint64_t> token_totals(const std::vector<const metrics::WorkerStats*>& workers,
                                          const metrics::TokenCounts& (HttpStats::*table)() const) {
  std::map<TokenKey, uint64_t> out;
  for (const auto* w : workers) {
    const metrics::TokenCounts& t = (w->http.*table)();
    for (size_t i = 0, n = t.size(); i < n; ++i) {
      const auto& e = t.entry(i);
      out[{e.direction, e.status, e.token}] += e.count.load(std::memory_order_relaxed);
    }
    for (int d = 0; d < metrics::kDirections; ++d)
      if (uint64_t n = t.other(static_cast<Direction>(d)); n > 0)
        out[{static_cast<Direction>(d), kOtherStatus, "other"}] += n;
  }
  return out;
}

std::string status_label(uint32_t status) { return status == kOtherStatus ? "other" : std::to_string(status); }

// A series' labels, in their documented order, then room for more.
struct Labels {
  std::array<Label, 10> l;
  size_t n = 0;
  explicit Labels(const SeriesKey& k) {
    push("direction", metrics::direction_name(k.direction));
    push("authority", k.authority);
    if (!k.dst_service.empty()) push("dst_service", k.dst_service);
    push("tls", k.tls ? "true" : "false");
  }
  void push(std::string_view key, std::string_view value) { l[n++] = {key, value}; }
  std::span<const Label> span() const { return {l.data(), n}; }
};

void render_latency(metrics::PrometheusWriter& w, const SeriesKey& k, const SeriesTotals& t) {
  Labels labels(k);
  labels.push("le", "");
  for (size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
    std::string le = i < LatencyHistogram::kBoundsMs.size() ? std::to_string(LatencyHistogram::kBoundsMs[i]) : "+Inf";
    labels.l[labels.n - 1].second = le;
    w.sample("response_latency_ms_bucket", labels.span(), t.cumulative[i]);
  }
  // The writer takes a double's labels as a list: one per label set.
  const char* dir = metrics::direction_name(k.direction);
  const char* tls = k.tls ? "true" : "false";
  if (k.dst_service.empty())
    w.sample("response_latency_ms_sum", {{"direction", dir}, {"authority", k.authority}, {"tls", tls}}, t.sum_ms);
  else
    w.sample("response_latency_ms_sum",
             {{"direction", dir}, {"authority", k.authority}, {"dst_service", k.dst_service}, {"tls", tls}}, t.sum_ms);
  w.sample("response_latency_ms_count", Labels(k).span(), t.count);
}

// A counter per direction and per value of E (up to E::kCount), summed over
// the workers: get reads one worker's, name labels the value.
template <class E>
void render_per_direction(metrics::PrometheusWriter& w, std::string_view family, std::string_view label,
                          const std::vector<const metrics::WorkerStats*>& workers,
                          uint64_t (HttpStats::*get)(Direction, E) const noexcept, const char* (*name)(E) noexcept) {
  for (int d = 0; d < metrics::kDirections; ++d)
    for (int v = 0; v < static_cast<int>(E::kCount); ++v) {
      uint64_t n = 0;
      for (const auto* wk : workers) n += (wk->http.*get)(static_cast<Direction>(d), static_cast<E>(v));
      w.sample(family,
               {{"direction", metrics::direction_name(static_cast<Direction>(d))}, {label, name(static_cast<E>(v))}},
               n);
    }
}

}  // namespace

void render_http_metrics(metrics::PrometheusWriter& w, const std::vector<const metrics::WorkerStats*>& workers) {
  std::map<SeriesKey, SeriesTotals> series = series_totals(workers);

  w.family("request_total", "counter",
           "HTTP requests forwarded, by the authority they named (Host, lower-cased) and the destination service.");
  for (const auto& [k, t] : series) w.sample("request_total", Labels(k).span(), t.requests);

  w.family("response_total", "counter",
           "HTTP responses and requests that got none. classification is failure for a 5xx, a gRPC error or a "
           "response cut short, and without status_code for no response at all (error says why); status_code "
           "\"other\" sums the outcomes past a series' bound.");
  for (const auto& [k, t] : series)
    for (const auto& [o, n] : t.outcomes) {
      Labels labels(k);
      std::string status = status_label(o.status);
      std::string grpc = std::to_string(o.grpc_status);
      if (o.status != 0) labels.push("status_code", status);
      labels.push("classification", o.success ? "success" : "failure");
      if (o.grpc_status >= 0) labels.push("grpc_status", grpc);
      if (!o.error.empty()) labels.push("error", o.error);
      w.sample("response_total", labels.span(), n);
    }

  w.family("response_latency_ms", "histogram",
           "Time from a request's head to its response's head, in milliseconds (time to first byte).");
  for (const auto& [k, t] : series) render_latency(w, k, t);

  w.family("protocol_detect_total", "counter",
           "Connections by what their first bytes showed; skipped: not looked at (an opaque port or service).");
  render_per_direction(w, "protocol_detect_total", "protocol", workers, &HttpStats::detections,
                       &metrics::detect_outcome_name);

  w.family("tls_sni_total", "counter",
           "Connections that began with the application's own TLS, by the server name its ClientHello asked for "
           "(\"\": none, not a host name, or past the bound on names).");
  std::map<std::pair<int, std::string_view>, uint64_t> sni;
  for (const auto* wk : workers) {
    const HttpStats& h = wk->http;
    for (size_t i = 0, n = h.sni_size(); i < n; ++i)
      sni[{static_cast<int>(h.sni_at(i).direction), h.sni_at(i).name}] +=
          h.sni_at(i).count.load(std::memory_order_relaxed);
    for (int d = 0; d < metrics::kDirections; ++d)
      if (uint64_t o = h.sni_overflow(static_cast<Direction>(d))) sni[{d, {}}] += o;
  }
  for (const auto& [k, n] : sni)
    w.sample("tls_sni_total",
             {{"direction", metrics::direction_name(static_cast<Direction>(k.first))}, {"sni", k.second}}, n);

  w.family("http_rejected_total", "counter",
           "HTTP requests refused before they reached the server (a head another parser might read differently, or "
           "too large), by the status answered and why.");
  for (const auto& [k, n] : token_totals(workers, &HttpStats::rejections)) {
    const auto& [d, status, reason] = k;
    w.sample("http_rejected_total",
             {{"direction", metrics::direction_name(d)}, {"status_code", status_label(status)}, {"reason", reason}}, n);
  }

  w.family("http_tap_abandoned_total", "counter",
           "HTTP/1 connections no longer followed as HTTP, and why (upgrade and connect: tunnels, a normal end); "
           "their bytes flow on as TCP.");
  for (const auto& [k, n] : token_totals(workers, &HttpStats::abandons)) {
    const auto& [d, status, reason] = k;
    w.sample("http_tap_abandoned_total", {{"direction", metrics::direction_name(d)}, {"reason", reason}}, n);
  }

  w.family("http_authority_overflow_total", "counter",
           "HTTP requests not counted under the authority they named: not a host[:port] (invalid: authority=\"\"), or "
           "past a worker's bound on authorities and label sets (limit: authority=\"\" and no dst_service).");
  render_per_direction(w, "http_authority_overflow_total", "reason", workers, &HttpStats::authority_overflows,
                       &metrics::authority_overflow_name);
}

}  // namespace meshd::admin
