// What a proxy knows about one destination, as the workers read it.
//
// The discovery client (client.h) builds these on its own thread and
// publishes them whole: an EndpointSet never changes once published, so a
// worker reads it without a lock and never waits for the client. What does
// change per connection — an endpoint's health and load, a service's
// counters — lives in small objects of atomics that successive snapshots
// share, so a new snapshot keeps what the balancer learned.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/addr.h"
#include "http/retry.h"
#include "metrics/histogram.h"
#include "metrics/tcp_stats.h"
#include "proto/registry.pb.h"

namespace meshd::discovery {

// What the balancer learns about an endpoint from the connections it makes.
// Written by every worker (relaxed atomics, once per connect, never per
// byte), read by the balancer and the admin endpoint.
struct EndpointHealth {
  std::atomic<uint32_t> ewma_connect_us{0};  // 0: no connect measured yet
  std::atomic<uint64_t> last_sample_ms{0};   // monotonic ms of the last measured connect
  std::atomic<uint32_t> active{0};           // connections open to it now
  std::atomic<uint32_t> consecutive_failures{0};
  std::atomic<uint64_t> failing_until_ms{0};  // monotonic ms; in the future: failing
  metrics::SharedCounter connects;            // successful connects
  metrics::SharedCounter connect_failures;
  metrics::Histogram connect_latency_ms;
  // What the HTTP tap learns from its requests (outbound): a peak-EWMA of
  // the time to the response head, and failure accrual (balancer.h).
  std::atomic<uint32_t> response_peak_us{0};  // 0: no response measured yet
  std::atomic<uint64_t> response_sample_ms{0};
  std::atomic<uint32_t> request_failures{0};  // consecutive failed requests
  metrics::SharedCounter ejections;           // times failure accrual took it out

  bool failing(uint64_t now_ms) const noexcept { return failing_until_ms.load(std::memory_order_relaxed) > now_ms; }
  // A connect to it finished: ok with its latency, or failed.
  void record_connect(bool ok, uint64_t latency_us, uint64_t now_ms) noexcept;
  // An HTTP request to it ended: a success (a response that is not a
  // failure) with the time to its head, or a failure (5xx, no response).
  // random: any value, for the ejection's jitter.
  void record_response(bool success, uint64_t ttfb_us, uint64_t now_ms, uint32_t random) noexcept;
  // Failure accrual has taken it out; it comes back through one probe.
  bool ejected() const noexcept;
};

// One service's connection counters (the dst label), shared by workers.
struct ServiceStats {
  explicit ServiceStats(std::string service) : name(std::move(service)) {}
  const std::string name;
  metrics::TcpCounters<metrics::SharedCounter> tcp;
  metrics::TcpCounters<metrics::SharedCounter> tcp_mtls;  // those sent over the mesh's mutual TLS
  // HTTP retries (outbound): the budget they draw on, those made, and those
  // the budget refused (the failed response went to the client).
  http::RetryBudget retry_budget;
  metrics::SharedCounter retries;
  metrics::SharedCounter retries_refused;
  // Per-request balancing (outbound HTTP/1): requests sent to another
  // endpoint than their connection's previous one, and requests sent over
  // an idle pooled connection rather than a new one.
  metrics::SharedCounter switches;
  metrics::SharedCounter reused;
  // The last connection the HTTP tap decided on had the server speak
  // first: outbound connections do not wait for the client's first bytes.
  std::atomic<bool> server_speaks_first{false};
  // Monotonic ms of the last connection that looked this destination up;
  // the client evicts destinations nobody used for a while.
  std::atomic<uint64_t> last_used_ms{0};
  void touch(uint64_t now_ms) noexcept {
    // Written at most once a second, so busy destinations do not bounce the
    // cache line between workers on every connection.
    if (last_used_ms.load(std::memory_order_relaxed) + 1000 <= now_ms)
      last_used_ms.store(now_ms, std::memory_order_relaxed);
  }
};

struct Endpoint {
  SocketAddr address;
  uint32_t weight = 100;
  bool meshed = false;
  std::string identity;
  std::map<std::string, std::string> labels;
  std::shared_ptr<EndpointHealth> health;
};

struct EndpointSet {
  std::string service;              // empty: no service has this address (negative answer)
  bool exists = false;              // the registry has the service
  bool stale = false;               // learned on a stream that has since ended; not yet confirmed
  bool opaque = false;              // the registry's protocol hint: never look at its bytes (server speaks first)
  uint32_t request_timeout_ms = 0;  // the registry's HTTP request timeout; 0: the proxy's own
  bool retry_statuses_set = false;  // the registry's retryable statuses (else the proxy's --retry-statuses)
  std::vector<uint16_t> retry_statuses;
  std::vector<Endpoint> endpoints;
  std::shared_ptr<ServiceStats> stats;         // never null
  std::vector<proto::InboundPolicy> policies;  // for the service's endpoints, by port
};

// How a dialled address relates to the set it was looked up in.
struct Destination {
  std::shared_ptr<const EndpointSet> set;
  bool virtual_address = false;  // one of the service's VIPs: only its endpoints can serve it
};

}  // namespace meshd::discovery
