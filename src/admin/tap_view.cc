#include "admin/tap_view.h"

#include <algorithm>
#include <vector>

#include "base/json.h"
#include "base/parse.h"
#include "http/h1_parse.h"
#include "metrics/tcp_stats.h"

namespace meshd::admin {

using metrics::Direction;
using metrics::TapEvent;

namespace {
constexpr std::string_view kKnown = "after, authority, path, method, direction, max";
}  // namespace

Parsed<TapQuery> parse_tap_query(std::string_view query) {
  auto params = parse_query(query);
  if (!params) return invalid(params.error());
  TapQuery q;
  std::vector<std::string_view> seen;
  for (const QueryParam& p : *params) {
    const std::string& v = p.value;
    auto bad = [&p](const std::string& why) { return invalid("parameter '" + p.name + "': " + why); };
    if (std::find(seen.begin(), seen.end(), p.name) != seen.end()) return bad("given twice");
    seen.push_back(p.name);
    if (p.name == "after") {
      auto n = parse_u64(v);
      if (!n) return bad("'" + v + "' is not a sequence number");
      q.after = *n;
    } else if (p.name == "max") {
      auto n = parse_u64(v);
      if (!n || *n == 0 || *n > kTapMaxMax)
        return bad("'" + v + "' is not a count from 1 to " + std::to_string(kTapMaxMax));
      q.max = static_cast<size_t>(*n);
    } else if (p.name == "direction") {
      if (v == "inbound")
        q.filter.direction = Direction::kInbound;
      else if (v == "outbound")
        q.filter.direction = Direction::kOutbound;
      else
        return bad("'" + v + "' is not a direction (inbound or outbound)");
    } else if (p.name == "method") {
      if (!http::is_token(v) || v.size() > TapEvent::kMaxMethod) return bad("'" + v + "' is not an HTTP method");
      q.filter.method = v;
    } else if (p.name == "authority") {
      if (v.empty() || v.size() > TapEvent::kMaxAuthority)
        return bad("must be 1 to " + std::to_string(TapEvent::kMaxAuthority) + " bytes");
      q.filter.authority = v;
    } else if (p.name == "path") {
      // No longer than an event keeps: a prefix test on a cut path stays exact.
      if (!v.starts_with('/') || v.size() > TapEvent::kMaxPath)
        return bad("must start with '/' and be at most " + std::to_string(TapEvent::kMaxPath) + " bytes");
      q.filter.path = v;
    } else {
      return invalid("unknown parameter '" + p.name + "' (known: " + std::string(kKnown) + ")");
    }
  }
  return q;
}

std::string render_tap(std::span<const metrics::TapEvents* const> workers, const TapQuery& q, uint64_t last) {
  std::vector<TapEvent> events;
  std::vector<uint64_t> held;
  uint64_t after = q.after.value_or(last);
  // A cursor past the last number: a cursor of an earlier process (this
  // one restarted). The tap goes on from here, missing nothing it could see.
  if (after > last) after = last;
  // One more than max from each: more than max in all says some are left.
  for (const metrics::TapEvents* w : workers) w->collect(after, last, q.filter, q.max + 1, &events, &held);
  std::sort(events.begin(), events.end(), [](const TapEvent& a, const TapEvent& b) { return a.seq < b.seq; });
  uint64_t next = last;
  if (events.size() > q.max) {
    events.resize(q.max);
    next = events.back().seq;  // the rest waits for the next poll
  }
  // Every number in (after, next] was given to one event: those not held
  // any more were overwritten.
  uint64_t still =
      static_cast<uint64_t>(std::count_if(held.begin(), held.end(), [next](uint64_t s) { return s <= next; }));
  uint64_t dropped = next - after - std::min(still, next - after);
  uint64_t uncaptured = 0;
  for (const metrics::TapEvents* w : workers) uncaptured += w->uncaptured();

  JsonWriter j;
  j.begin_object();
  j.field("next", next).field("dropped", dropped).field("uncaptured_total", uncaptured);
  j.key("events").begin_array();
  for (const TapEvent& e : events) {
    j.begin_object();
    j.field("seq", e.seq).field("unix_ms", e.unix_ms);
    j.field("direction", metrics::direction_name(e.direction));
    j.field("method", e.method.view()).field("authority", e.authority.view()).field("path", e.path.view());
    if (e.path_truncated) j.field("path_truncated", true);
    j.field("dst_service", e.dst_service.view()).field("tls", e.tls);
    if (e.status != 0)
      j.field("status", static_cast<uint64_t>(e.status));
    else
      j.field("error", e.error);
    if (e.grpc_status >= 0) j.field("grpc_status", static_cast<uint64_t>(e.grpc_status));
    j.field("latency_ms", static_cast<double>(e.latency_us) / 1000.0);
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return j.take() + "\n";
}

Response serve_tap(std::span<const metrics::TapEvents* const> workers, std::string_view query, uint64_t now_ms,
                   const std::atomic<uint64_t>* sequence) {
  auto q = parse_tap_query(query);
  if (!q) return {400, "text/plain; charset=utf-8", "bad /tap query: " + q.error() + "\n"};
  for (const metrics::TapEvents* w : workers) w->activate(now_ms + metrics::TapEvents::kActiveMs);
  return {200, "application/json", render_tap(workers, *q, metrics::TapEvents::last_sequence(sequence))};
}

}  // namespace meshd::admin
