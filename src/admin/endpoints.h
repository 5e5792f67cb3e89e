// What the admin endpoint serves about a running proxy: /metrics in the
// Prometheus text format, /status.json for meshd-ctl status, /ready, /live,
// /endpoints/SERVICE, and /tap for meshd-ctl tap (admin/tap_view.h).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "admin/server.h"
#include "config/config.h"
#include "discovery/client.h"
#include "identity/agent.h"
#include "metrics/tcp_stats.h"
#include "policy/store.h"
#include "proxy/listener.h"

namespace meshd::admin {

// A read-only view of the proxy, valid for the process's lifetime.
struct ProxyView {
  const config::Config* config = nullptr;
  const std::vector<proxy::ListenerSpec>* listeners = nullptr;
  std::vector<const metrics::WorkerStats*> workers;
  const std::atomic<bool>* ready = nullptr;
  const std::atomic<bool>* draining = nullptr;
  discovery::DiscoveryClient* discovery = nullptr;  // null: no controller
  const identity::Agent* identity = nullptr;        // null: no identity (no mTLS)
  const policy::PolicyStore* policy = nullptr;      // null: no inbound policy
  // POST /shutdown: starts the drain, as SIGTERM does (a Job's last step).
  std::function<void()> shutdown;
};

// Connections that went where they were dialled (the worker counters)...
// mtls: those over the mesh's mutual TLS instead.
metrics::DirectionTotals direct_totals(const ProxyView& view, metrics::Direction d, bool mtls = false);
// Inbound connections over mTLS by the client identity they proved, summed
// over workers (client_id="other": past a worker's bound). The keys live as
// long as the workers' stats.
std::map<std::string_view, metrics::DirectionTotals> inbound_client_totals(const ProxyView& view);
// ...and all of a direction's, those balanced to services included.
metrics::DirectionTotals totals(const ProxyView& view, metrics::Direction d);
std::string render_metrics(const ProxyView& view);
std::string render_status(const ProxyView& view);
Handler make_handler(const ProxyView& view);

}  // namespace meshd::admin
