// Balancer: which endpoint of a service a new connection goes to.
//
// Power of two choices (P2C): draw two endpoints at random among the ready
// ones and take the cheaper, cost = latency x (open connections + 1) /
// weight. Latency is the larger of the EWMA connect latency (floored at
// 5 ms) and, for HTTP, the peak-EWMA of the time to the response head (a
// slower response takes the estimate up at once, faster ones bring it down
// gradually: an endpoint that starts to struggle is avoided at once, as in
// Finagle's and Linkerd's balancers); both decay while not refreshed. Two
// draws are enough to avoid the worst endpoints without every worker
// herding onto the same "best" one (the reason Linkerd and Envoy use it).
//
// An endpoint whose connect failed is failing for a backoff that grows with
// consecutive failures. Failure accrual does the same for HTTP: after
// kAccrualFailures requests in a row failed (5xx or no response) it is
// ejected for accrual_backoff_ms(); when that ends one connection probes it
// (the others keep away until the probe's first request answers), and a
// failed probe ejects it again for longer. A failing endpoint is skipped
// while any other is ready. When every endpoint is failing the one whose
// backoff ends first is tried anyway: a service is never made unreachable
// by the balancer's own bookkeeping.
#pragma once

#include <cstdint>

#include "base/random.h"
#include "discovery/endpoint_set.h"

namespace meshd::discovery {

inline constexpr int kNoEndpoint = -1;
// A connection tries at most this many endpoints before giving up.
inline constexpr int kMaxConnectAttempts = 3;

// The endpoint for a connection that already failed on the endpoints in
// `tried` (bit i: endpoint i; endpoints past 63 are never excluded), or
// kNoEndpoint when none is left.
int pick_endpoint(const EndpointSet& set, uint64_t now_ms, uint64_t tried, FastRandom& random) noexcept;

// The cost P2C compares (lower is better); exposed for tests and the admin view.
double endpoint_cost(const Endpoint& e, uint64_t now_ms) noexcept;

// Failure accrual: this many failed requests in a row eject an endpoint.
inline constexpr uint32_t kAccrualFailures = 5;
// How long the k-th ejection in a row (k = 0 first) lasts: 1 s doubling up
// to 60 s, of which the second half is jittered by `random`, so that the
// proxies that all saw one endpoint fail do not all probe it at once.
uint64_t accrual_backoff_ms(uint32_t k, uint32_t random) noexcept;
// How long a probe connection keeps an ejected endpoint to itself while
// its first request has not answered.
inline constexpr uint64_t kProbeHoldMs = 10'000;

}  // namespace meshd::discovery
