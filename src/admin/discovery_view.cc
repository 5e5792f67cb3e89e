#include "admin/discovery_view.h"

#include <time.h>

#include <chrono>
#include <map>
#include <thread>

#include "base/clock.h"
#include "controller/registry.h"
#include "discovery/balancer.h"

namespace meshd::admin {

std::vector<std::shared_ptr<const discovery::EndpointSet>> services_of(const discovery::DestinationTable& t) {
  std::map<std::string, std::shared_ptr<const discovery::EndpointSet>> by_name;
  for (const auto& [key, d] : t.by_address)
    if (!d.set->service.empty()) by_name[d.set->service] = d.set;
  for (const auto& [name, set] : t.by_name) by_name[name] = set;
  std::vector<std::shared_ptr<const discovery::EndpointSet>> out;
  for (auto& [name, set] : by_name) out.push_back(set);
  return out;
}

void render_discovery_metrics(metrics::PrometheusWriter& w, const discovery::DiscoveryClient& client,
                              const discovery::DestinationTable& table) {
  uint64_t now = monotonic_ms();
  auto sets = services_of(table);
  w.family("outbound_balancer_endpoints", "gauge",
           "Endpoints of each destination service, by state: ready, or failing (a recent connect failed, or failure "
           "accrual ejected it for its HTTP failures; skipped while another endpoint is ready).");
  for (const auto& set : sets) {
    uint64_t failing = 0;
    for (const auto& e : set->endpoints) failing += e.health->failing(now) ? 1 : 0;
    w.sample("outbound_balancer_endpoints", {{"dst", set->service}, {"state", "ready"}},
             static_cast<uint64_t>(set->endpoints.size()) - failing);
    w.sample("outbound_balancer_endpoints", {{"dst", set->service}, {"state", "failing"}}, failing);
  }
  w.family("outbound_connect_latency_ms", "histogram", "Time to connect to each endpoint of a destination service.");
  for (const auto& set : sets) {
    for (const auto& e : set->endpoints) {
      std::string addr = e.address.str();
      w.histogram("outbound_connect_latency_ms", {{"dst", set->service}, {"endpoint", addr}},
                  e.health->connect_latency_ms);
    }
  }
  w.family("outbound_connect_failures_total", "counter", "Failed connects to each endpoint of a destination service.");
  for (const auto& set : sets) {
    for (const auto& e : set->endpoints) {
      std::string addr = e.address.str();
      w.sample("outbound_connect_failures_total", {{"dst", set->service}, {"endpoint", addr}},
               e.health->connect_failures.get());
    }
  }
  w.family("outbound_balancer_ejections_total", "counter",
           "Times failure accrual took an endpoint out of the balancer (5 HTTP requests in a row failed, or a probe "
           "after that failed).");
  for (const auto& set : sets) {
    for (const auto& e : set->endpoints) {
      std::string addr = e.address.str();
      w.sample("outbound_balancer_ejections_total", {{"dst", set->service}, {"endpoint", addr}},
               e.health->ejections.get());
    }
  }
  // The per-service HTTP counters (discovery::ServiceStats), one family each.
  struct PerService {
    const char* name;
    const char* help;
    metrics::SharedCounter discovery::ServiceStats::*counter;
  };
  static constexpr PerService kPerService[] = {
      {"outbound_http_retries_total",
       "HTTP requests to a destination service sent again, after a retryable response (--retry-statuses) or a close "
       "before any response; the response the client got is in response_total, each attempt in the server's inbound "
       "metrics.",
       &discovery::ServiceStats::retries},
      {"outbound_http_retries_refused_total",
       "Retryable responses passed to the client because the service's retry budget was spent.",
       &discovery::ServiceStats::retries_refused},
      {"outbound_http_endpoint_switches_total",
       "HTTP/1 requests balanced to another endpoint than the one their client connection used before.",
       &discovery::ServiceStats::switches},
      {"outbound_upstream_reused_total",
       "HTTP/1 requests sent over an idle pooled connection to the endpoint (no connect, no handshake).",
       &discovery::ServiceStats::reused},
  };
  for (const PerService& f : kPerService) {
    w.family(f.name, "counter", f.help);
    for (const auto& set : sets) w.sample(f.name, {{"dst", set->service}}, ((*set->stats).*f.counter).get());
  }
  auto st = client.status();
  w.family("discovery_connected", "gauge", "1 while a stream to a controller is up.");
  w.sample("discovery_connected", {{"controller", st.controller}}, static_cast<uint64_t>(st.connected ? 1 : 0));
  w.family("discovery_stale", "gauge", "1 while what the proxy knows is not confirmed by the current stream.");
  w.sample("discovery_stale", {}, static_cast<uint64_t>(st.stale ? 1 : 0));
  w.family("discovery_destinations", "gauge", "Destination addresses the proxy keeps subscribed.");
  w.sample("discovery_destinations", {}, st.destinations);
  w.family("discovery_streams_failed_total", "counter", "Controller streams that ended after connecting.");
  w.sample("discovery_streams_failed_total", {}, st.streams_failed);
  w.family("discovery_bad_frames_total", "counter", "Controller streams closed because they carried garbage.");
  w.sample("discovery_bad_frames_total", {}, st.bad_frames);
}

void write_controller_status(JsonWriter& j, const discovery::DiscoveryClient& client) {
  auto st = client.status();
  j.key("controller").begin_object();
  j.field("address", st.controller).field("connected", st.connected).field("tls", st.tls);
  j.field("connected_since_unix_ms", st.connected_since_unix_ms);
  j.field("last_update_unix_ms", st.last_update_unix_ms);
  j.field("state", st.connected ? (st.stale ? "stale" : "fresh") : "disconnected");
  j.field("destinations", st.destinations).field("services", st.services);
  j.field("streams_failed", st.streams_failed).field("bad_frames", st.bad_frames);
  j.field("last_error", st.last_error);
  j.end_object();
}

std::pair<int, std::string> render_endpoints(discovery::DiscoveryClient& client, std::string_view service,
                                             uint64_t wait_ms) {
  std::string name(service);
  if (auto ok = controller::validate_service_name(name); !ok) return {400, ok.error() + "\n"};
  auto find = [&]() -> std::shared_ptr<const discovery::EndpointSet> {
    auto t = client.table();
    for (const auto& set : services_of(*t))
      if (set->service == name) return set;
    return nullptr;
  };
  auto set = find();
  if (!set) {
    client.want_service(name);
    // The admin thread may wait; workers never do.
    uint64_t deadline = monotonic_ms() + wait_ms;
    while (!set && monotonic_ms() < deadline && client.connected()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      set = find();
    }
  }
  if (!set) {
    if (!client.connected())
      return {503, "no controller connected, and this proxy has not seen '" + name + "' before\n"};
    return {404, "no answer about '" + name + "' from the controller yet\n"};
  }
  uint64_t now = monotonic_ms();
  JsonWriter j;
  j.begin_object();
  j.field("service", set->service).field("exists", set->exists).field("stale", set->stale);
  j.key("endpoints").begin_array();
  for (const auto& e : set->endpoints) {
    j.begin_object();
    j.field("address", e.address.str()).field("weight", static_cast<uint64_t>(e.weight));
    bool failing = e.health->failing(now);
    // ejected: failure accrual took it out for its requests (it may be
    // probing: back in when the probe's request succeeds).
    j.field("state", e.health->ejected() ? "ejected" : failing ? "failing" : "ready");
    if (failing) j.field("failing_for_ms", e.health->failing_until_ms.load() - now);
    j.field("ewma_connect_us", static_cast<uint64_t>(e.health->ewma_connect_us.load()));
    j.field("response_peak_us", static_cast<uint64_t>(e.health->response_peak_us.load()));
    j.field("request_failures", static_cast<uint64_t>(e.health->request_failures.load()));
    j.field("ejections", e.health->ejections.get());
    j.field("active", static_cast<uint64_t>(e.health->active.load()));
    j.field("connects", e.health->connects.get()).field("connect_failures", e.health->connect_failures.get());
    j.field("meshed", e.meshed).field("identity", e.identity);
    j.key("labels").begin_object();
    for (const auto& [k, v] : e.labels) j.field(k, v);
    j.end_object();
    j.end_object();
  }
  j.end_array();
  j.end_object();
  return {200, j.take() + "\n"};
}

}  // namespace meshd::admin
