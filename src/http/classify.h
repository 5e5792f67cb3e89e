// Whether a request succeeded, one rule for every consumer: the golden
// metrics' classification label and the balancer's failure accrual must
// never disagree about what a failure is.
#pragma once

#include <cstddef>
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

// HTTP/2 responses, read alike by the tap (h2_tap) and the terminating
// proxy (h2_forward):

// A decimal field of at most `digits` digits (:status 3, grpc-status 2),
// or -1.
constexpr int32_t parse_decimal(std::string_view v, size_t digits) noexcept {
  if (v.empty() || v.size() > digits) return -1;
  int32_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

// application/grpc, application/grpc+proto, application/grpc;charset=...
constexpr bool is_grpc_content_type(std::string_view v) noexcept {
  constexpr std::string_view kGrpc = "application/grpc";
  if (v.size() < kGrpc.size() || v.substr(0, kGrpc.size()) != kGrpc) return false;
  return v.size() == kGrpc.size() || v[kGrpc.size()] == '+' || v[kGrpc.size()] == ';';
}

// The gRPC status a response reports: -1 when it is not gRPC; a complete
// gRPC response without grpc-status is UNKNOWN (2), as gRPC clients read it.
constexpr int32_t reported_grpc_status(bool grpc, int32_t status, bool complete) noexcept {
  if (!grpc) return -1;
  return complete && status < 0 ? 2 : status;
}

}  // namespace meshd::http
