// HttpResponseReader: an HTTP/1.1 response read incrementally from a peer
// the controller does not control (the Kubernetes API server, or whatever
// answers at its address), with every size bounded: the status line and
// headers together, and the body, whether framed by Content-Length, by
// chunked transfer coding or by the end of the connection. Malformed or
// oversized input is an error that names what was wrong, never a crash or
// an unbounded allocation.
//
// For one request on a connection with "Connection: close": bytes after a
// complete response are ignored, informational (1xx) responses are skipped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace meshd::controller {

struct HttpResponse {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // in order, names as sent
  std::string body;                                          // decoded (chunked coding removed)

  // The first header of that name (case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const;
};

struct HttpLimits {
  size_t max_head_bytes = 16 * 1024;  // status line + headers (+ trailers, + any 1xx responses)
  size_t max_body_bytes = 1 << 20;
};

class HttpResponseReader {
 public:
  explicit HttpResponseReader(HttpLimits limits = {}) : limits_(limits) {}

  // Adds bytes that arrived; true once the response is complete (stop
  // reading then), false when more are needed. After an error the reader
  // stays failed.
  Parsed<bool> feed(std::string_view data);
  // The peer closed the connection: completes a body that runs to the
  // close, or says what was cut short.
  Parsed<void> end_of_stream();

  bool done() const { return phase_ == Phase::kDone; }
  const HttpResponse& response() const { return response_; }
  HttpResponse take() { return std::move(response_); }

 private:
  enum class Phase : uint8_t { kHead, kChunkSize, kChunkData, kChunkEnd, kTrailers, kLength, kToClose, kDone, kFailed };

  Parsed<bool> step();
  Parsed<bool> parse_head(std::string_view head);
  Parsed<bool> fail(std::string message);
  Parsed<void> append_body(std::string_view data);

  HttpLimits limits_;
  Phase phase_ = Phase::kHead;
  std::string pending_;     // bytes received and not yet consumed
  size_t head_used_ = 0;    // bytes of head (and trailers, and 1xx responses) consumed so far
  uint64_t remaining_ = 0;  // kLength: body bytes still to come; kChunkData: of this chunk
  std::string error_;
  HttpResponse response_;
};

}  // namespace meshd::controller
