// `meshd-ctl stat`: the pieces that are pure functions (what one scrape of
// /metrics says, the rates between two scrapes, quantiles, rendering),
// exposed so they can be unit-tested with synthetic metric text.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "ctl/prom_text.h"

namespace meshd::ctl::stat {

// One row of the table: the HTTP metrics' identifying labels. Everything
// else (status_code, error, grpc_status, identities) is summed over.
struct RowKey {
  std::string direction;
  std::string authority;
  std::string dst_service;  // empty when the series has none
  std::string tls;          // "true" or "false" as the proxy wrote it
  auto operator<=>(const RowKey&) const = default;
};

// The counters of one row in one scrape.
struct RowCounters {
  double requests = 0;
  double success = 0;  // responses classified success
  double failure = 0;  // responses classified failure, with or without a status
  // Cumulative latency bucket counts by upper bound in ms (+Inf included).
  std::map<double, double> buckets;
};

// What the stat table needs from one scrape.
struct Scrape {
  std::map<RowKey, RowCounters> rows;
  // Open TCP connections by (direction, dst, tls), summed over identities.
  std::map<std::tuple<std::string, std::string, std::string>, double> tcp_open;
  bool has_tcp = false;              // the proxy exports tcp_open_connections
  std::optional<double> start_time;  // process_start_time_seconds, to notice a restart
};

// Only the metric names stat uses (a prom::parse filter).
bool wanted_metric(std::string_view name);
// Collects the samples of one scrape. Samples with a value that is no
// count (negative, NaN, infinite) or an unusable le are ignored.
Scrape collect(const std::vector<prom::Sample>& samples);

// The phi-quantile (0 < phi < 1) of a cumulative histogram, computed as
// Prometheus' histogram_quantile does: linear interpolation inside the
// bucket the rank falls in (the first bucket starts at 0), and the highest
// finite bound when it falls in +Inf. Empty when there is no +Inf bucket,
// fewer than two buckets, or no observations.
std::optional<double> histogram_quantile(double phi, const std::map<double, double>& cumulative);

struct RowStats {
  RowKey key;
  double requests = 0;   // in the interval
  double responses = 0;  // success + failure in the interval
  double rps = 0;
  std::optional<double> success_rate;  // 0..1; empty without responses
  std::optional<double> p50_ms, p95_ms, p99_ms;
  std::optional<double> tcp_open;  // when only this row has its (direction, dst, tls)
};

struct Filter {
  std::string direction;  // empty: both
  std::string authority;  // substring; empty: all
};

// The rows of the second scrape with their rates since the first, sorted by
// direction then authority (then dst_service, tls). A counter lower in the
// second scrape was reset (the proxy restarted): its second value is the
// delta, as Prometheus' rate() does; a changed process_start_time_seconds
// resets every counter. A row with no traffic in the interval has zero
// rates and no success rate or latencies.
std::vector<RowStats> compute(const Scrape& first, const Scrape& second, double interval_s, const Filter& filter = {});

// The table for people; `tcp_column` false leaves TCP_CONN out.
std::string render_text(const std::vector<RowStats>& rows, bool tcp_column);
std::string render_json(const std::vector<RowStats>& rows, double interval_s);

// "100.00%", "12.3", "1.75ms": the cells of the text table ("-" for none).
std::string format_percent(std::optional<double> fraction);
std::string format_rate(double per_second);
std::string format_ms(std::optional<double> ms);

}  // namespace meshd::ctl::stat
