// The response the proxy writes itself when it refuses an HTTP/1 request
// (a TapVerdict::kReject): a short text/plain body and a meshd-proxy-error
// header naming why, so that a client (and its logs) can tell the mesh's
// refusal from the application's. The connection closes after it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace meshd::http {

// The standard reason phrase of the statuses the proxy answers (400, 403,
// 408, 413, 414, 431, 500, 501, 502, 503, 504, 505); "Error" for others.
std::string_view reason_phrase(uint16_t status) noexcept;

// Writes into `out`:
//   HTTP/1.1 <status> <phrase>\r\n
//   content-type: text/plain\r\n
//   content-length: N\r\n
//   connection: close\r\n
//   meshd-proxy-error: <reason>\r\n
//   \r\n
//   <message>\n
// `reason` keeps only header-safe characters (others become '_', at most
// 64 of them, "unknown" when empty); `message` is cut to what fits. A
// status outside 100-599 is written as 500. Returns the bytes written, or 0
// when `out` cannot hold the head and an empty message's newline. No
// allocation.
size_t write_error_response(std::span<char> out, uint16_t status, std::string_view reason,
                            std::string_view message) noexcept;

}  // namespace meshd::http
