// Whether a request succeeded, one rule for every consumer: the golden
// metrics' classification label and the balancer's failure accrual must
// never disagree about what a failure is.
#pragma once

#include <cstdint>
#include <string_view>

namespace meshd::http {

// A final response succeeded when it came whole, its status is under 500,
// and its gRPC status (when there is one: >= 0) is OK. A request with no
// response at all is a failure, and never reaches here.
constexpr bool response_succeeded(uint16_t status, bool complete, int32_t grpc_status = -1) noexcept {
  return complete && status < 500 && grpc_status <= 0;
}

// Whether a request that got no response (error: the metrics' token) counts
// against the endpoint in failure accrual: the server closed or reset the
// connection, or did not answer in time. Not when the client went away,
// the proxy refused the request, or the proxy shut down.
constexpr bool blames_endpoint(std::string_view error) noexcept {
  return error == "closed" || error == "upstream_reset" || error == "request_timeout";
}

}  // namespace meshd::http
