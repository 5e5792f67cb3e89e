// meshd-ctl stat: the golden metrics of the HTTP traffic a proxy carries
// (success rate, requests per second, latency percentiles), per direction
// and authority, like `linkerd viz stat`. It scrapes the proxy's GET
// /metrics twice, --interval apart, and reports what changed in between.
#include "ctl/stat.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

#include "base/flags.h"
#include "base/json.h"
#include "base/parse.h"
#include "ctl/admin_client.h"
#include "ctl/command.h"
#include "ctl/common.h"

namespace meshd::ctl {

namespace stat {

namespace {

constexpr std::string_view kRequests = "request_total";
constexpr std::string_view kResponses = "response_total";
constexpr std::string_view kBuckets = "response_latency_ms_bucket";
constexpr std::string_view kTcpOpen = "tcp_open_connections";
constexpr std::string_view kStartTime = "process_start_time_seconds";

// A value that can be a count: finite and not negative.
bool is_count(double v) { return std::isfinite(v) && v >= 0; }

RowKey key_of(const prom::Sample& s) {
  RowKey k;
  k.direction = std::string(s.label("direction").value_or(""));
  k.authority = std::string(s.label("authority").value_or(""));
  k.dst_service = std::string(s.label("dst_service").value_or(""));
  k.tls = std::string(s.label("tls").value_or("false"));
  return k;
}

// A counter's increase: a lower second value means it was reset (the proxy
// restarted), and everything it counted since is the increase.
double increase(double first, double second, bool reset) { return reset || second < first ? second : second - first; }

// The histogram's increase, all buckets or none reset: resetting buckets
// one by one could leave a cumulative histogram that is not monotonic.
std::map<double, double> bucket_increase(const std::map<double, double>* first, const std::map<double, double>& second,
                                         bool reset) {
  if (first != nullptr && !reset) {
    for (const auto& [le, v] : *first) {
      auto it = second.find(le);
      if (it != second.end() && it->second < v) reset = true;
    }
  }
  if (first == nullptr || reset) return second;
  std::map<double, double> out;
  for (const auto& [le, v] : second) {
    auto it = first->find(le);
    out[le] = v - (it == first->end() ? 0 : it->second);
  }
  return out;
}

// v with `decimals` digits after the point, then `suffix`.
std::string fixed(double v, int decimals, std::string_view suffix = "") {
  char buf[64];
  snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf + std::string(suffix);
}

}  // namespace

bool wanted_metric(std::string_view name) {
  return name == kRequests || name == kResponses || name == kBuckets || name == kTcpOpen || name == kStartTime;
}

Scrape collect(const std::vector<prom::Sample>& samples) {
  Scrape out;
  for (const prom::Sample& s : samples) {
    if (s.name == kStartTime) {
      if (std::isfinite(s.value)) out.start_time = s.value;
      continue;
    }
    if (!is_count(s.value)) continue;
    if (s.name == kTcpOpen) {
      out.has_tcp = true;
      auto key =
          std::make_tuple(std::string(s.label("direction").value_or("")), std::string(s.label("dst").value_or("")),
                          std::string(s.label("tls").value_or("false")));
      out.tcp_open[key] += s.value;
      continue;
    }
    if (s.name == kRequests) {
      out.rows[key_of(s)].requests += s.value;
    } else if (s.name == kResponses) {
      auto c = s.label("classification");
      if (c == "success")
        out.rows[key_of(s)].success += s.value;
      else if (c == "failure")
        out.rows[key_of(s)].failure += s.value;
    } else if (s.name == kBuckets) {
      auto le = s.label("le");
      auto bound = le ? prom::parse_value(*le) : std::nullopt;
      if (!bound || std::isnan(*bound)) continue;
      // Series that differ in other labels add up bucket by bucket.
      out.rows[key_of(s)].buckets[*bound] += s.value;
    }
  }
  return out;
}

std::optional<double> histogram_quantile(double phi, const std::map<double, double>& cumulative) {
  if (!(phi > 0 && phi < 1) || cumulative.size() < 2) return std::nullopt;
  if (!std::isinf(cumulative.rbegin()->first) || cumulative.rbegin()->first < 0) return std::nullopt;
  std::vector<std::pair<double, double>> b(cumulative.begin(), cumulative.end());
  // Counts scraped bucket by bucket can be slightly out of order; Prometheus
  // makes them monotonic the same way.
  for (size_t i = 1; i < b.size(); ++i) b[i].second = std::max(b[i].second, b[i - 1].second);
  double observations = b.back().second;
  if (!(observations > 0)) return std::nullopt;
  double rank = phi * observations;
  size_t i = 0;
  while (i < b.size() && b[i].second < rank) ++i;
  if (i >= b.size() - 1) return b[b.size() - 2].first;  // in +Inf: the highest finite bound
  if (i == 0 && b[0].first <= 0) return b[0].first;
  double start = 0, end = b[i].first, count = b[i].second;
  if (i > 0) {
    start = b[i - 1].first;
    count -= b[i - 1].second;
    rank -= b[i - 1].second;
  }
  return start + (end - start) * (rank / count);
}

std::vector<RowStats> compute(const Scrape& first, const Scrape& second, double interval_s, const Filter& filter) {
  // A proxy that restarted between the scrapes counts from zero again,
  // even where it has already counted past the first scrape's values.
  const bool restarted = first.start_time && second.start_time && *first.start_time != *second.start_time;
  // TCP connections are counted per (direction, dst, tls), not per
  // authority: a count is only this row's when no other row shares it.
  std::map<std::tuple<std::string, std::string, std::string>, int> sharing;
  for (const auto& [k, c] : second.rows) ++sharing[{k.direction, k.dst_service, k.tls}];

  std::vector<RowStats> out;
  for (const auto& [k, c] : second.rows) {
    if (!filter.direction.empty() && k.direction != filter.direction) continue;
    if (!filter.authority.empty() && k.authority.find(filter.authority) == std::string::npos) continue;
    auto before = first.rows.find(k);
    const RowCounters* f = before == first.rows.end() ? nullptr : &before->second;
    RowStats r;
    r.key = k;
    r.requests = increase(f ? f->requests : 0, c.requests, restarted);
    double success = increase(f ? f->success : 0, c.success, restarted);
    double failure = increase(f ? f->failure : 0, c.failure, restarted);
    r.responses = success + failure;
    r.rps = interval_s > 0 ? r.requests / interval_s : 0;
    if (r.responses > 0) r.success_rate = success / r.responses;
    std::map<double, double> latency = bucket_increase(f ? &f->buckets : nullptr, c.buckets, restarted);
    r.p50_ms = histogram_quantile(0.50, latency);
    r.p95_ms = histogram_quantile(0.95, latency);
    r.p99_ms = histogram_quantile(0.99, latency);
    std::tuple<std::string, std::string, std::string> tcp_key{k.direction, k.dst_service, k.tls};
    if (second.has_tcp && sharing[tcp_key] == 1) {
      if (auto it = second.tcp_open.find(tcp_key); it != second.tcp_open.end()) r.tcp_open = it->second;
    }
    out.push_back(std::move(r));
  }
  // The map already orders by direction, authority, dst_service, tls.
  return out;
}

std::string format_percent(std::optional<double> fraction) {
  if (!fraction) return "-";
  return fixed(*fraction * 100, 2, "%");
}

std::string format_rate(double per_second) {
  if (per_second < 10) return fixed(per_second, 2);
  if (per_second < 1000) return fixed(per_second, 1);
  return fixed(per_second, 0);
}

std::string format_ms(std::optional<double> ms) {
  if (!ms) return "-";
  if (*ms < 10) return fixed(*ms, 2, "ms");
  if (*ms < 100) return fixed(*ms, 1, "ms");
  return fixed(*ms, 0, "ms");
}

std::string render_text(const std::vector<RowStats>& rows, bool tcp_column) {
  std::vector<std::vector<std::string>> cells;
  cells.push_back(
      {"DIRECTION", "AUTHORITY", "DST_SERVICE", "TLS", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99"});
  if (tcp_column) cells.back().push_back("TCP_CONN");
  auto or_dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  for (const RowStats& r : rows) {
    cells.push_back({or_dash(r.key.direction), or_dash(r.key.authority), or_dash(r.key.dst_service), or_dash(r.key.tls),
                     format_percent(r.success_rate), format_rate(r.rps), format_ms(r.p50_ms), format_ms(r.p95_ms),
                     format_ms(r.p99_ms)});
    if (tcp_column) cells.back().push_back(r.tcp_open ? fixed(*r.tcp_open, 0) : "-");
  }
  // The first four columns are names, left-aligned; the rest are numbers.
  constexpr size_t kNameColumns = 4;
  std::vector<size_t> width(cells.front().size(), 0);
  for (const auto& row : cells)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line += "  ";
      std::string pad(width[i] - row[i].size(), ' ');
      line += i < kNameColumns ? row[i] + (i + 1 < row.size() ? pad : "") : pad + row[i];
    }
    out += line + "\n";
  }
  return out;
}

std::string render_json(const std::vector<RowStats>& rows, double interval_s) {
  JsonWriter j;
  auto optional = [&j](std::string_view key, std::optional<double> v) {
    j.key(key);
    if (v)
      j.value(*v);
    else
      j.null();
  };
  j.begin_object().field("interval_seconds", interval_s).key("rows").begin_array();
  for (const RowStats& r : rows) {
    j.begin_object().field("direction", r.key.direction).field("authority", r.key.authority);
    j.field("dst_service", r.key.dst_service);
    j.key("tls");
    if (r.key.tls == "true" || r.key.tls == "false")
      j.value(r.key.tls == "true");
    else
      j.value(r.key.tls);
    j.field("requests", r.requests).field("responses", r.responses).field("rps", r.rps);
    optional("success_rate", r.success_rate);
    optional("latency_ms_p50", r.p50_ms);
    optional("latency_ms_p95", r.p95_ms);
    optional("latency_ms_p99", r.p99_ms);
    if (r.tcp_open) j.field("tcp_open_connections", *r.tcp_open);
    j.end_object();
  }
  j.end_array().end_object();
  return j.take() + "\n";
}

}  // namespace stat

namespace {

constexpr std::string_view kHelp =
    "Usage: meshd-ctl stat [--admin HOST:PORT] [--interval DUR] [--direction inbound|outbound]\n"
    "                      [--authority TEXT] [-o text|json] [--timeout DUR]\n"
    "\n"
    "Shows the golden metrics of the HTTP traffic the proxy carries, one row per\n"
    "direction, authority, destination service and TLS: the success rate, the\n"
    "requests per second and the latency percentiles over an interval. It reads\n"
    "the proxy's admin endpoint (GET /metrics) twice, DUR apart, and reports what\n"
    "changed in between; a proxy that restarted in between counts from zero.\n"
    "\n"
    "Columns:\n"
    "  SUCCESS       the share of responses classified success; a request that\n"
    "                got no response counts as a failure (\"-\": none at all)\n"
    "  RPS           requests per second\n"
    "  LATENCY_P50   latency percentiles in ms, interpolated within the\n"
    "  LATENCY_P95   histogram's buckets as Prometheus' histogram_quantile does\n"
    "  LATENCY_P99   (\"-\": no responses in the interval)\n"
    "  TCP_CONN      TCP connections open now for the row's direction and\n"
    "                destination service, when no other row shares them (else\n"
    "                \"-\"); left out when no row has such a count\n"
    "\n"
    "Options:\n"
    "  --admin HOST:PORT   the proxy's admin endpoint (HOST is an IP address or\n"
    "                      localhost); default $MESHD_ADMIN, else 127.0.0.1:4191\n"
    "  --interval DUR      time between the two reads, 100ms to 60s (default 2s)\n"
    "  --direction DIR     only inbound or only outbound rows\n"
    "  --authority TEXT    only rows whose authority contains TEXT\n"
    "  -o, --output FMT    text (default) or json (rates, and null for \"-\")\n"
    "  --timeout DUR       give up on one read after DUR, connect included\n"
    "                      (default 2s)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 when both reads succeeded, 1 when the proxy could not be read\n"
    "(not running, no answer, no Prometheus text), 2 on bad usage.\n";

constexpr uint64_t kMinIntervalMs = 100;
constexpr uint64_t kMaxIntervalMs = 60000;
constexpr uint64_t kDefaultIntervalMs = 2000;
constexpr size_t kMaxMetricsBytes = 16u << 20;

struct ScrapeResult {
  stat::Scrape scrape;
  size_t malformed = 0;
  std::string first_error;
};

// One GET /metrics, parsed; the error is a line for stderr.
Parsed<ScrapeResult> scrape(const AdminTarget& target, uint64_t timeout_ms) {
  auto body = admin_get(target, "/metrics", timeout_ms, kMaxMetricsBytes);
  if (!body) return invalid(describe_admin_error(target, body.error()));
  prom::Limits limits;
  limits.max_body_bytes = kMaxMetricsBytes;
  auto parsed = prom::parse(*body, limits, stat::wanted_metric);
  if (!parsed) return invalid("admin endpoint " + target.text + " sent a /metrics that was refused: " + parsed.error());
  // Not one sample line parsed: this is not Prometheus text at all.
  if (parsed->parsed == 0 && parsed->malformed > 0)
    return invalid("admin endpoint " + target.text + " sent a /metrics that is not Prometheus text (" +
                   parsed->first_error + ")");
  return ScrapeResult{stat::collect(parsed->samples), parsed->malformed, parsed->first_error};
}

}  // namespace

int run_stat(std::span<const std::string_view> args, const Io& io) {
  std::string admin_flag, output = "text", timeout_text, interval_text, direction, authority;
  bool help = false, timeout_seen = false, interval_seen = false;
  FlagParser flags;
  flags.value("--admin", "", &admin_flag)
      .value("--interval", "", &interval_text, &interval_seen)
      .value("--direction", "", &direction)
      .value("--authority", "", &authority)
      .value("--output", "-o", &output)
      .value("--timeout", "", &timeout_text, &timeout_seen)
      .toggle("--help", "-h", &help);
  auto usage_error = [&io](const std::string& m) { return ctl::usage_error(io, "stat", m); };
  auto positional = flags.parse(args);
  if (!positional) return usage_error(positional.error());
  if (help) {
    write_all(io.out, kHelp);
    return kExitOk;
  }
  if (!positional->empty()) return usage_error("unexpected argument '" + std::string(positional->front()) + "'");
  uint64_t interval_ms = kDefaultIntervalMs;
  if (interval_seen) {
    auto i = parse_duration_ms(interval_text);
    if (!i) return usage_error("--interval: " + i.error());
    if (*i < kMinIntervalMs || *i > kMaxIntervalMs)
      return usage_error("--interval: '" + interval_text + "' is outside 100ms..60s");
    interval_ms = *i;
  }
  if (!direction.empty() && direction != "inbound" && direction != "outbound")
    return usage_error("--direction: '" + direction + "' is not a direction (expected inbound or outbound)");
  if (auto ok = check_output(output); !ok) return usage_error(ok.error());
  auto timeout = timeout_flag(timeout_text, timeout_seen, kDefaultTimeoutMs);
  if (!timeout) return usage_error(timeout.error());
  auto target = resolve_admin_target(admin_flag);
  if (!target) return usage_error(target.error());

  auto first = scrape(*target, *timeout);
  if (!first) {
    fprintf(io.err, "meshd-ctl: %s\n", first.error().c_str());
    return kExitFailure;
  }
  auto first_done = std::chrono::steady_clock::now();
  std::this_thread::sleep_until(first_done + std::chrono::milliseconds(interval_ms));
  auto second = scrape(*target, *timeout);
  if (!second) {
    fprintf(io.err, "meshd-ctl: %s\n", second.error().c_str());
    return kExitFailure;
  }
  // The time between the two answers, not the nominal interval: the second
  // read may have taken a while.
  double interval_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - first_done).count();

  if (second->malformed > 0)
    fprintf(io.err, "meshd-ctl stat: skipped %zu malformed line(s) of /metrics (first at %s)\n", second->malformed,
            second->first_error.c_str());
  auto rows = stat::compute(first->scrape, second->scrape, interval_s, {direction, authority});
  if (output == "json") {
    write_all(io.out, stat::render_json(rows, interval_s));
    return kExitOk;
  }
  if (rows.empty()) {
    if (second->scrape.rows.empty())
      write_all(io.out, "No HTTP traffic recorded by the proxy at " + target->text +
                            " yet (no request_total series in its /metrics)\n");
    else
      write_all(io.out, "No rows match --direction/--authority (the proxy has " +
                            std::to_string(second->scrape.rows.size()) + " without them)\n");
    return kExitOk;
  }
  bool tcp_column = std::any_of(rows.begin(), rows.end(), [](const stat::RowStats& r) { return r.tcp_open; });
  write_all(io.out, stat::render_text(rows, tcp_column));
  return kExitOk;
}

}  // namespace meshd::ctl
