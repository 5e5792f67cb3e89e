// HttpTap: the proxy's end of the HTTP/1 tap. An http::H1Tap reads the
// bytes a TcpForward relays (http/h1_tap.h); this is its sink, recording
// the golden metrics in the worker's HttpStats under the connection's
// labels: direction, authority (per request, from Host), dst_service and
// whether the hop is the mesh's mutual TLS.
//
// Pooled per worker (Worker::take_tap) and held by a connection only while
// it is HTTP/1: one pointer in every TcpForward, nothing more for opaque
// traffic.
#pragma once

#include <string_view>

#include "http/h1_tap.h"
#include "metrics/http_stats.h"
#include "metrics/tcp_stats.h"

namespace meshd::proxy {

class HttpTap final : public http::TapSink {
 public:
  explicit HttpTap(const http::Limits& limits) noexcept : tap_(limits, this) {}
  HttpTap(const HttpTap&) = delete;
  HttpTap& operator=(const HttpTap&) = delete;

  // A new connection's labels. dst_service must outlive the tap's use (the
  // connection holds the EndpointSet that owns it until it finishes the tap).
  void start(metrics::HttpStats* stats, metrics::Direction direction, std::string_view dst_service, bool tls) noexcept;
  http::H1Tap& tap() noexcept { return tap_; }

  void on_detected(http::Protocol p) noexcept override;
  void* on_request(const http::RequestHead& head) noexcept override;
  void on_response(void* tag, uint16_t status, uint64_t ttfb_us, bool complete) noexcept override;
  void on_failure(void* tag, std::string_view error) noexcept override;
  void on_rejected(uint16_t status, std::string_view reason) noexcept override;
  void on_abandoned(std::string_view reason) noexcept override;

 private:
  http::H1Tap tap_;
  metrics::HttpStats* stats_ = nullptr;
  metrics::Direction direction_ = metrics::Direction::kOutbound;
  std::string_view dst_service_;
  bool tls_ = false;
};

}  // namespace meshd::proxy
