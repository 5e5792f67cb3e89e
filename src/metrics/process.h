// Facts about this process from /proc/self, for /metrics and /status.json.
#pragma once

#include <cstdint>

namespace meshd::metrics {

struct ProcessStats {
  uint64_t rss_bytes = 0;
  uint64_t virtual_bytes = 0;
  double cpu_seconds = 0;  // user + system
  uint64_t open_fds = 0;
  uint64_t max_fds = 0;
  uint64_t threads = 0;
};

ProcessStats read_process_stats() noexcept;

class PrometheusWriter;
// The process_* families and meshd_build_info, as every meshd binary's
// /metrics shows them.
void write_process_metrics(PrometheusWriter& w);
// Seconds since the epoch when the process started (set once, in main).
void mark_start_time() noexcept;
double start_time_seconds() noexcept;
double uptime_seconds() noexcept;

}  // namespace meshd::metrics
