// Whether a request succeeded, one rule for every consumer: the golden
// metrics' classification label and the balancer's failure accrual must
// never disagree about what a failure is.
#pragma once

#include <cstdint>

namespace meshd::http {

// A final response succeeded when it came whole, its status is under 500,
// and its gRPC status (when there is one: >= 0) is OK. A request with no
// response at all is a failure, and never reaches here.
constexpr bool response_succeeded(uint16_t status, bool complete, int32_t grpc_status = -1) noexcept {
  return complete && status < 500 && grpc_status <= 0;
}

}  // namespace meshd::http
