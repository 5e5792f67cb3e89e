#include "discovery/balancer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace meshd::discovery {

namespace {
// Connect latencies under this are all "fast": on a LAN they differ by
// noise (an ARP lookup on first contact alone costs milliseconds), and
// ranking by them would send every sequential connection to whichever
// endpoint answered first. Below it, load alone decides (ties go to the
// random draw); above it, latency counts: a SYN backlog overflowing, a far
// zone. An endpoint never measured counts as fast, so it gets a measurement.
constexpr double kLatencyFloorUs = 5000;
// Without new samples an estimate halves this often, so one unlucky connect
// (a retransmitted SYN) cannot keep an endpoint out for good: it decays
// until the endpoint is tried, and measured, again.
constexpr double kDecayHalfLifeMs = 5000;
// Failing backoff: 1 s, doubling per consecutive failure, at most 30 s.
constexpr uint64_t kFailBaseMs = 1000;
constexpr uint64_t kFailMaxMs = 30'000;
// Failure accrual's ejections: 1 s doubling, at most 60 s (Linkerd's default).
constexpr uint64_t kEjectBaseMs = 1000;
constexpr uint64_t kEjectMaxMs = 60'000;
// The response peak-EWMA's decay time constant (Finagle's default): a
// sample's weight falls to 1/e over this long.
constexpr double kResponseDecayMs = 10'000;

// An estimate decayed for the time since its last sample.
double decayed(double estimate, uint64_t last_ms, uint64_t now_ms, double half_life_ms) noexcept {
  return now_ms > last_ms ? estimate * std::exp2(-static_cast<double>(now_ms - last_ms) / half_life_ms) : estimate;
}

bool excluded(uint64_t tried, size_t i) noexcept { return i < 64 && (tried & (uint64_t{1} << i)) != 0; }
}  // namespace

void EndpointHealth::record_connect(bool ok, uint64_t latency_us, uint64_t now_ms) noexcept {
  if (ok) {
    connects.inc();
    connect_latency_ms.observe_us(latency_us);
    uint32_t sample = static_cast<uint32_t>(std::min<uint64_t>(latency_us, UINT32_MAX));
    uint32_t old = ewma_connect_us.load(std::memory_order_relaxed);
    // Weight 1/8 for the new sample, as TCP's smoothed RTT. Racing workers
    // may lose an update: the average is a hint, not an account.
    uint32_t next = old == 0 ? sample : static_cast<uint32_t>((uint64_t{old} * 7 + sample) / 8);
    ewma_connect_us.store(std::max<uint32_t>(next, 1), std::memory_order_relaxed);
    last_sample_ms.store(now_ms, std::memory_order_relaxed);
    consecutive_failures.store(0, std::memory_order_relaxed);
    // An endpoint ejected for its requests is back only when a request
    // succeeds: a connect says nothing about that.
    if (!ejected()) failing_until_ms.store(0, std::memory_order_relaxed);
    return;
  }
  connect_failures.inc();
  uint32_t n = consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  uint64_t backoff = std::min(kFailMaxMs, kFailBaseMs << std::min<uint32_t>(n - 1, 5));
  failing_until_ms.store(now_ms + backoff, std::memory_order_relaxed);
}

bool EndpointHealth::ejected() const noexcept {
  return request_failures.load(std::memory_order_relaxed) >= kAccrualFailures;
}

void EndpointHealth::record_response(bool success, uint64_t ttfb_us, uint64_t now_ms, uint32_t random) noexcept {
  if (success) {
    const double sample = static_cast<double>(std::min<uint64_t>(ttfb_us, UINT32_MAX));
    double peak = response_peak_us.load(std::memory_order_relaxed);
    const uint64_t last = response_sample_ms.load(std::memory_order_relaxed);
    if (peak == 0 || sample >= peak) {
      peak = sample;  // the peak: up at once
    } else {
      // Down gradually, by the time since the last sample (not per sample,
      // so a burst of fast responses cannot wipe out a slow one at once).
      const double w = now_ms > last ? std::exp(-static_cast<double>(now_ms - last) / kResponseDecayMs) : 1.0;
      peak = peak * w + sample * (1 - w);
    }
    // Racing workers may lose an update: the estimate is a hint.
    response_peak_us.store(std::max<uint32_t>(static_cast<uint32_t>(peak), 1), std::memory_order_relaxed);
    response_sample_ms.store(now_ms, std::memory_order_relaxed);
    if (request_failures.exchange(0, std::memory_order_relaxed) >= kAccrualFailures)
      failing_until_ms.store(0, std::memory_order_relaxed);  // the probe succeeded: back in
    return;
  }
  const uint32_t n = request_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (n < kAccrualFailures) return;
  // The n-th failure in a row: ejected (again, when a probe failed), for longer each time.
  ejections.inc();
  failing_until_ms.store(now_ms + accrual_backoff_ms(n - kAccrualFailures, random), std::memory_order_relaxed);
}

uint64_t accrual_backoff_ms(uint32_t k, uint32_t random) noexcept {
  const uint64_t full = std::min(kEjectMaxMs, kEjectBaseMs << std::min<uint32_t>(k, 6));
  return full / 2 + random % (full / 2 + 1);
}

double endpoint_cost(const Endpoint& e, uint64_t now_ms) noexcept {
  const EndpointHealth& h = *e.health;
  double ewma = h.ewma_connect_us.load(std::memory_order_relaxed);
  if (ewma > kLatencyFloorUs)
    ewma = decayed(ewma, h.last_sample_ms.load(std::memory_order_relaxed), now_ms, kDecayHalfLifeMs);
  double response = h.response_peak_us.load(std::memory_order_relaxed);
  if (response > 0)
    response = decayed(response, h.response_sample_ms.load(std::memory_order_relaxed), now_ms,
                       kResponseDecayMs * std::numbers::ln2);
  double latency = std::max({ewma, response, kLatencyFloorUs});
  double load = e.health->active.load(std::memory_order_relaxed) + 1.0;
  return latency * load * 100.0 / std::max<uint32_t>(e.weight, 1);
}

int pick_endpoint(const EndpointSet& set, uint64_t now_ms, uint64_t tried, FastRandom& random) noexcept {
  const auto& eps = set.endpoints;
  uint32_t ready = 0;
  int soonest = kNoEndpoint;  // among failing ones: whose backoff ends first
  uint64_t soonest_until = UINT64_MAX;
  for (size_t i = 0; i < eps.size(); ++i) {
    if (excluded(tried, i)) continue;
    uint64_t until = eps[i].health->failing_until_ms.load(std::memory_order_relaxed);
    if (until <= now_ms) {
      ++ready;
    } else if (until < soonest_until) {
      soonest_until = until;
      soonest = static_cast<int>(i);
    }
  }
  if (ready == 0) return soonest;
  // The a-th and b-th ready endpoints, a != b: one pass, no allocation.
  uint32_t a = random.below(ready);
  uint32_t b = ready > 1 ? random.below(ready - 1) : a;
  if (ready > 1 && b >= a) ++b;
  int first = kNoEndpoint, second = kNoEndpoint;
  uint32_t seen = 0;
  for (size_t i = 0; i < eps.size(); ++i) {
    if (excluded(tried, i) || eps[i].health->failing(now_ms)) continue;
    if (seen == a) first = static_cast<int>(i);
    if (seen == b) second = static_cast<int>(i);
    ++seen;
  }
  if (first == kNoEndpoint && second == kNoEndpoint) {
    // Another worker marked them failing between the two passes.
    for (size_t i = 0; i < eps.size(); ++i)
      if (!excluded(tried, i)) return static_cast<int>(i);
    return kNoEndpoint;
  }
  int pick = first;
  if (first == kNoEndpoint)
    pick = second;
  else if (second != kNoEndpoint && first != second &&
           endpoint_cost(eps[static_cast<size_t>(second)], now_ms) <
               endpoint_cost(eps[static_cast<size_t>(first)], now_ms))
    pick = second;
  // An ejected endpoint whose backoff ended: this connection is its probe,
  // and the others keep away until the probe's first request answers
  // (record_response) or the hold runs out.
  EndpointHealth& h = *eps[static_cast<size_t>(pick)].health;
  if (h.ejected()) h.failing_until_ms.store(now_ms + kProbeHoldMs, std::memory_order_relaxed);
  return pick;
}

}  // namespace meshd::discovery
