// What the admin endpoint shows of HTTP (/metrics): the golden metrics
// (request_total, response_total, response_latency_ms), what protocol
// detection saw, and what the HTTP tap refused or gave up on. Every
// worker's HttpStats summed; series with the same labels merged.
#pragma once

#include <vector>

#include "metrics/prometheus.h"
#include "metrics/tcp_stats.h"

namespace meshd::admin {

void render_http_metrics(metrics::PrometheusWriter& w, const std::vector<const metrics::WorkerStats*>& workers);

}  // namespace meshd::admin
