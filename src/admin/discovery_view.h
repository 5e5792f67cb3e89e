// What the admin endpoint shows of discovery: the controller connection
// (/status.json, `meshd-ctl status`), each service's endpoints as the
// balancer sees them (/endpoints/NAME, `meshd-ctl endpoints`), and the
// balancer's metrics.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "discovery/client.h"
#include "metrics/prometheus.h"

namespace meshd::admin {

// Each distinct endpoint set the table holds, once, by service name.
std::vector<std::shared_ptr<const discovery::EndpointSet>> services_of(const discovery::DestinationTable& t);

void render_discovery_metrics(metrics::PrometheusWriter& w, const discovery::DiscoveryClient& client,
                              const discovery::DestinationTable& table);
// The "controller" object of /status.json.
void write_controller_status(JsonWriter& j, const discovery::DiscoveryClient& client);
// /endpoints/NAME: 200 with the service's endpoints, 404 with a reason.
// A service this proxy has not looked up yet is subscribed to, and waited
// for up to wait_ms, so that an operator sees it without first sending
// traffic.
std::pair<int, std::string> render_endpoints(discovery::DiscoveryClient& client, std::string_view service,
                                             uint64_t wait_ms);

}  // namespace meshd::admin
