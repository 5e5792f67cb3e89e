// Balancer: which endpoint of a service a new connection goes to.
//
// Power of two choices (P2C): draw two endpoints at random among the ready
// ones and take the cheaper, cost = EWMA connect latency (floored at 5 ms,
// decaying while not refreshed) x (open connections + 1) / weight. Two draws are enough to avoid the worst
// endpoints without every worker herding onto the same "best" one (the
// reason Linkerd and Envoy use it). An endpoint whose connect failed is
// failing for a backoff that grows with consecutive failures; it is skipped
// while any other endpoint is ready. When every endpoint is failing the one
// whose backoff ends first is tried anyway: a service is never made
// unreachable by the balancer's own bookkeeping.
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

}  // namespace meshd::discovery
