// What the admin endpoint shows of identity and mTLS: the certificate this
// proxy holds (/status.json "identity", `meshd-ctl status`), its renewals,
// and the mesh TLS handshakes (/metrics).
#pragma once

#include <vector>

#include "base/json.h"
#include "identity/agent.h"
#include "metrics/prometheus.h"
#include "metrics/tcp_stats.h"

namespace meshd::admin {

void render_identity_metrics(metrics::PrometheusWriter& w, const identity::Agent* agent,
                             const std::vector<const metrics::WorkerStats*>& workers);
// The "identity" object of /status.json.
void write_identity_status(JsonWriter& j, const identity::Agent& agent, uint64_t now_unix_ms);

}  // namespace meshd::admin
