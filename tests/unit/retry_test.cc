// The retry budget (src/http/retry.h): a floor of retries per second, a
// share of the requests on top, over a sliding window; and which methods
// may be retried at all.
#include <catch2/catch.hpp>

#include "http/retry.h"

using meshd::http::Method;
using meshd::http::retry_safe;
using meshd::http::RetryBudget;

TEST_CASE("retry budget: the floor, then a fifth of the requests", "[retry]") {
  RetryBudget b;
  const uint64_t t0 = 1'000'000;
  // No requests: the floor alone, 10 per second over the 10 s window.
  for (int i = 0; i < 100; ++i) REQUIRE(b.withdraw(t0));
  CHECK_FALSE(b.withdraw(t0));
  CHECK(b.retries(t0) == 100);
  // 500 requests add 20% of them: 100 more.
  for (int i = 0; i < 500; ++i) b.deposit(t0 + 10);
  CHECK(b.requests(t0 + 10) == 500);
  int more = 0;
  while (b.withdraw(t0 + 20)) ++more;
  CHECK(more == 100);
}

TEST_CASE("retry budget: what is older than the window no longer counts", "[retry]") {
  RetryBudget b;
  const uint64_t t0 = 50'000;
  for (int i = 0; i < 100; ++i) REQUIRE(b.withdraw(t0));
  CHECK_FALSE(b.withdraw(t0 + 9'999));  // still inside the 10 s window
  // A second later the first second's retries have left the window.
  CHECK(b.retries(t0 + 10'000) == 0);
  CHECK(b.withdraw(t0 + 10'000));
  // A slot reused for a later second starts from zero.
  for (int i = 0; i < 30; ++i) b.deposit(t0 + 10'500);
  CHECK(b.requests(t0 + 10'500) == 30);
  CHECK(b.requests(t0 + 25'000) == 0);
}

TEST_CASE("retry budget: only idempotent methods are safe to repeat", "[retry]") {
  for (Method m : {Method::kGet, Method::kHead, Method::kOptions, Method::kTrace, Method::kPut, Method::kDelete})
    CHECK(retry_safe(m));
  for (Method m : {Method::kPost, Method::kPatch, Method::kConnect, Method::kOther}) CHECK_FALSE(retry_safe(m));
}
