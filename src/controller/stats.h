// What the controller counts, for its /metrics: written by the serving
// thread, read by the admin thread (single-writer counters, see
// metrics/tcp_stats.h).
#pragma once

#include <string>

#include "metrics/tcp_stats.h"

namespace meshd::controller {

struct Stats {
  metrics::Counter streams_opened;
  metrics::Counter streams_closed;
  metrics::Counter streams_closed_bad_input;  // garbage, oversized frames
  metrics::Counter streams_closed_slow;       // did not read what it was sent
  metrics::Counter requests;
  metrics::Counter requests_refused;
  metrics::Counter entries_applied;  // changed the registry, durably
  metrics::Counter leases_expired;
  metrics::Counter file_reloads;
  metrics::Counter file_reload_errors;
  metrics::Counter registry_entries;  // a gauge: set, not added
  metrics::Counter registry_services;
};

// The Prometheus text for /metrics.
std::string render_metrics(const Stats& stats);

}  // namespace meshd::controller
