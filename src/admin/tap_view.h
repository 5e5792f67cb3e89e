// GET /tap: the requests the workers captured since the caller's cursor,
// for `meshd-ctl tap`. Each poll keeps capture on for TapEvents::kActiveMs
// (metrics/tap_events.h); the handler never waits for events to come: the
// client polls again.
//
//   /tap?after=SEQ&authority=A&path=PREFIX&method=M&direction=inbound|outbound&max=N
//
// answers {"next": SEQ, "dropped": N, "events": [...]}: the events numbered
// after `after`, oldest first, that match the filter, at most max. The
// next poll passes "next" as `after`. Without `after` a tap starts: no
// events, and "next" is where this one begins. "dropped" counts the events
// after `after` that were overwritten before this read (matching or not):
// more came than the workers hold between two polls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "admin/server.h"
#include "base/result.h"
#include "metrics/tap_events.h"

namespace meshd::admin {

inline constexpr size_t kTapDefaultMax = 100;
inline constexpr size_t kTapMaxMax = 1000;

struct TapQuery {
  std::optional<uint64_t> after;  // none: start a tap here
  metrics::TapFilter filter;
  size_t max = kTapDefaultMax;
};

// The query of GET /tap; the error names the parameter that was wrong.
Parsed<TapQuery> parse_tap_query(std::string_view query);

// One poll over the workers' events: `last` is TapEvents::last_sequence()
// read before (see TapEvents::collect), unix_ms stamps the answer.
std::string render_tap(std::span<const metrics::TapEvents* const> workers, const TapQuery& q, uint64_t last);

// The whole endpoint: parses the query (400 naming the bad parameter),
// keeps capture on for kActiveMs after now_ms, renders.
Response serve_tap(std::span<const metrics::TapEvents* const> workers, std::string_view query, uint64_t now_ms,
                   const std::atomic<uint64_t>* sequence = nullptr);

}  // namespace meshd::admin
