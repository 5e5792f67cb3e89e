// The balancer's choices: P2C prefers the cheaper endpoint, failing ones
// are skipped while another is ready, a connection never retries where it
// already failed, and a service whose endpoints all fail is still tried.
// For HTTP: the response peak-EWMA and failure accrual's ejections and probes.
#include <catch2/catch.hpp>

#include <memory>

#include "discovery/balancer.h"

using namespace meshd;
using namespace meshd::discovery;

namespace {
EndpointSet make_set(int n) {
  EndpointSet s;
  s.service = "web.prod";
  s.exists = true;
  s.stats = std::make_shared<ServiceStats>("web.prod");
  for (int i = 0; i < n; ++i) {
    Endpoint e;
    e.address = *SocketAddr::parse("10.0.0." + std::to_string(i + 1) + ":80");
    e.health = std::make_shared<EndpointHealth>();
    s.endpoints.push_back(std::move(e));
  }
  return s;
}
}  // namespace

TEST_CASE("balancer: with two endpoints P2C always takes the cheaper", "[balancer]") {
  EndpointSet s = make_set(2);
  FastRandom r(42);
  s.endpoints[0].health->record_connect(true, 50'000, 0);
  s.endpoints[1].health->record_connect(true, 100, 0);
  for (int i = 0; i < 200; ++i) REQUIRE(pick_endpoint(s, 0, 0, r) == 1);
  // Load counts too: enough open connections make the fast one dearer.
  s.endpoints[1].health->active.store(200);
  REQUIRE(pick_endpoint(s, 0, 0, r) == 0);
}

TEST_CASE("balancer: one slow connect is forgotten, so the endpoint is tried again", "[balancer]") {
  EndpointSet s = make_set(2);
  FastRandom r(13);
  s.endpoints[0].health->record_connect(true, 3'000'000, 1000);  // a SYN retransmitted once: 3 s
  s.endpoints[1].health->record_connect(true, 200, 1000);
  REQUIRE(pick_endpoint(s, 1000, 0, r) == 1);
  // Ten half-lives later 3 s has decayed under the 5 ms floor: a tie again.
  bool seen = false;
  for (int i = 0; i < 100; ++i) seen = seen || pick_endpoint(s, 1000 + 50'000, 0, r) == 0;
  REQUIRE(seen);
}

TEST_CASE("balancer: load spreads over many endpoints, the slow one gets least", "[balancer]") {
  EndpointSet s = make_set(5);
  FastRandom r(7);
  for (int i = 0; i < 5; ++i) s.endpoints[i].health->record_connect(true, i == 4 ? 50'000 : 200, 0);
  int count[5] = {};
  for (int i = 0; i < 5000; ++i) {
    int e = pick_endpoint(s, 0, 0, r);
    REQUIRE(e >= 0);
    ++count[e];
  }
  // The slow endpoint wins only when drawn with itself, which P2C never does.
  REQUIRE(count[4] == 0);
  for (int i = 0; i < 4; ++i) REQUIRE(count[i] > 800);
}

TEST_CASE("balancer: failing endpoints are skipped, and come back after their backoff", "[balancer]") {
  EndpointSet s = make_set(3);
  FastRandom r(1);
  s.endpoints[0].health->record_connect(false, 0, 1000);
  REQUIRE(s.endpoints[0].health->failing(1000));
  REQUIRE(s.endpoints[0].health->failing_until_ms.load() == 2000);
  for (int i = 0; i < 300; ++i) REQUIRE(pick_endpoint(s, 1500, 0, r) != 0);
  // Consecutive failures back off longer: 1 s, 2 s, 4 s ...
  s.endpoints[0].health->record_connect(false, 0, 1500);
  REQUIRE(s.endpoints[0].health->failing_until_ms.load() == 3500);
  bool seen = false;
  for (int i = 0; i < 300; ++i) seen = seen || pick_endpoint(s, 3500, 0, r) == 0;
  REQUIRE(seen);
  // A success clears it at once.
  s.endpoints[0].health->record_connect(true, 300, 1600);
  REQUIRE_FALSE(s.endpoints[0].health->failing(1600));
  REQUIRE(s.endpoints[0].health->consecutive_failures.load() == 0);
  REQUIRE(s.endpoints[0].health->connects.get() == 1);
  REQUIRE(s.endpoints[0].health->connect_failures.get() == 2);
}

TEST_CASE("balancer: every endpoint failing still gives one, the first to recover", "[balancer]") {
  EndpointSet s = make_set(3);
  FastRandom r(3);
  s.endpoints[0].health->record_connect(false, 0, 1000);
  s.endpoints[1].health->record_connect(false, 0, 900);  // ends soonest
  s.endpoints[2].health->record_connect(false, 0, 1100);
  REQUIRE(pick_endpoint(s, 1200, 0, r) == 1);
}

TEST_CASE("balancer: a connection never goes back where it failed", "[balancer]") {
  EndpointSet s = make_set(3);
  FastRandom r(9);
  for (int i = 0; i < 100; ++i) {
    int e = pick_endpoint(s, 0, 0b011, r);
    REQUIRE(e == 2);
  }
  REQUIRE(pick_endpoint(s, 0, 0b111, r) == kNoEndpoint);
  EndpointSet empty = make_set(0);
  REQUIRE(pick_endpoint(empty, 0, 0, r) == kNoEndpoint);
}

TEST_CASE("balancer: endpoints equally fast share sequential connections", "[balancer]") {
  // Sub-millisecond differences are noise: they must not pin all traffic
  // on the endpoint that answered first.
  EndpointSet s = make_set(2);
  FastRandom r(11);
  s.endpoints[0].health->record_connect(true, 150, 0);
  int count[2] = {};
  for (int i = 0; i < 1000; ++i) {
    int e = pick_endpoint(s, 0, 0, r);
    ++count[e];
    s.endpoints[static_cast<size_t>(e)].health->record_connect(true, e == 0 ? 150 : 300, 0);
  }
  REQUIRE(count[0] > 400);
  REQUIRE(count[1] > 400);
}

TEST_CASE("balancer: weight lowers the cost", "[balancer]") {
  EndpointSet s = make_set(2);
  FastRandom r(5);
  s.endpoints[0].weight = 100;
  s.endpoints[1].weight = 400;
  REQUIRE(endpoint_cost(s.endpoints[1], 0) * 4 == Approx(endpoint_cost(s.endpoints[0], 0)));
  REQUIRE(pick_endpoint(s, 0, 0, r) == 1);
}

// --- HTTP: peak-EWMA of response latency, failure accrual ---

TEST_CASE("balancer: a slow response takes the estimate up at once, fast ones bring it down over time", "[balancer]") {
  EndpointSet s = make_set(2);
  FastRandom r(21);
  EndpointHealth& h = *s.endpoints[0].health;
  h.record_response(true, 2'000, 1000, 0);
  REQUIRE(h.response_peak_us.load() == 2'000);
  h.record_response(true, 80'000, 1000, 0);  // one slow response: the peak at once
  REQUIRE(h.response_peak_us.load() == 80'000);
  // Many fast responses in the same millisecond do not erase it...
  for (int i = 0; i < 100; ++i) h.record_response(true, 2'000, 1000, 0);
  REQUIRE(h.response_peak_us.load() == 80'000);
  // ...the time since does: after one decay time (10 s), 1/e of the gap is left.
  h.record_response(true, 2'000, 11'000, 0);
  REQUIRE(h.response_peak_us.load() == Approx(2'000 + 78'000 / 2.718281828).epsilon(0.01));
  // Endpoint 1 answers in 10 ms: endpoint 0 (still ~30 ms) is avoided.
  s.endpoints[1].health->record_response(true, 10'000, 11'000, 0);
  for (int i = 0; i < 100; ++i) REQUIRE(pick_endpoint(s, 11'000, 0, r) == 1);
  REQUIRE(endpoint_cost(s.endpoints[0], 11'000) > endpoint_cost(s.endpoints[1], 11'000));
  // Unrefreshed, the estimate decays: a minute later both are under the floor, a tie.
  REQUIRE(endpoint_cost(s.endpoints[0], 71'000) == Approx(endpoint_cost(s.endpoints[1], 71'000)));
  // A failure is not a latency sample.
  h.record_response(false, 0, 71'000, 0);
  REQUIRE(h.response_sample_ms.load() == 11'000);
}

TEST_CASE("balancer: the accrual backoff doubles from 1 s to 60 s, half of it jittered", "[balancer]") {
  const uint64_t full[] = {1'000, 2'000, 4'000, 8'000, 16'000, 32'000, 60'000, 60'000, 60'000};
  for (uint32_t k = 0; k < 9; ++k) {
    INFO("k=" << k);
    REQUIRE(accrual_backoff_ms(k, 0) == full[k] / 2);
    REQUIRE(accrual_backoff_ms(k, static_cast<uint32_t>(full[k] / 2)) == full[k]);
    REQUIRE(accrual_backoff_ms(k, UINT32_MAX) >= full[k] / 2);
    REQUIRE(accrual_backoff_ms(k, UINT32_MAX) <= full[k]);
  }
  REQUIRE(accrual_backoff_ms(UINT32_MAX, 7) <= 60'000);
}

TEST_CASE("balancer: five failed requests in a row eject; one probe brings the endpoint back", "[balancer]") {
  EndpointSet s = make_set(3);
  FastRandom r(8);
  EndpointHealth& h = *s.endpoints[0].health;
  // Four failures and a success: not in a row.
  for (int i = 0; i < 4; ++i) h.record_response(false, 0, 1000, 0);
  h.record_response(true, 1'000, 1000, 0);
  REQUIRE_FALSE(h.failing(1000));
  for (int i = 0; i < 4; ++i) h.record_response(false, 0, 1000, 0);
  REQUIRE_FALSE(h.failing(1000));
  REQUIRE(h.ejections.get() == 0);
  h.record_response(false, 0, 1000, 0);  // the fifth
  REQUIRE(h.ejected());
  REQUIRE(h.ejections.get() == 1);
  REQUIRE(h.failing_until_ms.load() == 1000 + 500);  // k=0, random 0: half of 1 s
  for (int i = 0; i < 300; ++i) REQUIRE(pick_endpoint(s, 1200, 0, r) != 0);
  // A successful connect (a probe's, or one racing) does not bring it back.
  h.record_connect(true, 200, 1300);
  REQUIRE(h.failing(1300));
  // The backoff over: the first connection to draw it is the probe, and
  // holds it; the others keep away.
  int probe_at = -1;
  for (int i = 0; i < 300 && probe_at < 0; ++i)
    if (pick_endpoint(s, 2000, 0, r) == 0) probe_at = i;
  REQUIRE(probe_at >= 0);
  REQUIRE(h.failing_until_ms.load() == 2000 + kProbeHoldMs);
  for (int i = 0; i < 300; ++i) REQUIRE(pick_endpoint(s, 2001, 0, r) != 0);
  SECTION("the probe fails: out again, for longer") {
    h.record_response(false, 0, 2100, 1'000);
    REQUIRE(h.ejections.get() == 2);
    REQUIRE(h.failing_until_ms.load() == 2100 + 2'000);  // k=1, random at the top: all of 2 s
    h.record_response(false, 0, 4200, 0);
    REQUIRE(h.failing_until_ms.load() == 4200 + 2'000);  // k=2, random 0: half of 4 s
  }
  SECTION("the probe succeeds: back at once") {
    h.record_response(true, 900, 2100, 0);
    REQUIRE_FALSE(h.ejected());
    REQUIRE_FALSE(h.failing(2100));
    bool seen = false;
    for (int i = 0; i < 300; ++i) seen = seen || pick_endpoint(s, 2100, 0, r) == 0;
    REQUIRE(seen);
  }
}
