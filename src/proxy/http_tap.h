// HttpTap: the proxy's end of the HTTP/1 tap. An http::H1Tap reads the
// bytes a TcpForward relays (http/h1_tap.h); this is its sink. Each
// request's outcome goes to:
//   - the golden metrics, in the worker's HttpStats, under the connection's
//     labels: direction, authority (per request, from Host), dst_service and
//     whether the hop is the mesh's mutual TLS;
//   - the balancer (outbound to a service's endpoint): the response
//     latency and failure accrual of that endpoint (discovery/balancer.h);
//   - the application's own TLS: the server name its ClientHello asked
//     for (tls_sni_total);
//   - while someone taps the proxy live (GET /tap), a summary in the
//     worker's TapEvents (metrics/tap_events.h). While nobody taps that
//     costs one relaxed load per request.
//
// Pooled per worker (Worker::take_tap) and held by a connection only while
// it is HTTP/1: one pointer in every TcpForward, nothing more for opaque
// traffic.
#pragma once

#include <span>
#include <string_view>

#include "base/random.h"
#include "discovery/endpoint_set.h"
#include "http/h1_tap.h"
#include "metrics/http_stats.h"
#include "metrics/tcp_stats.h"

namespace meshd::proxy {

class HttpTap final : public http::TapSink {
 public:
  explicit HttpTap(const http::Limits& limits) noexcept : tap_(limits, this) {}
  HttpTap(const HttpTap&) = delete;
  HttpTap& operator=(const HttpTap&) = delete;

  // What a connection's requests are recorded against. dst_service and
  // endpoint must outlive the tap's use (the connection holds the
  // EndpointSet that owns them until it finishes the tap).
  struct Labels {
    metrics::Direction direction = metrics::Direction::kOutbound;
    std::string_view dst_service;
    bool tls = false;
    discovery::EndpointHealth* endpoint = nullptr;  // the balanced endpoint; null: none
  };
  // A new connection. worker: its golden metrics and live tap; random: the
  // worker's, for the balancer's jitter.
  void start(metrics::WorkerStats* worker, FastRandom* random, const Labels& labels) noexcept;
  http::H1Tap& tap() noexcept { return tap_; }

  void on_detected(http::Protocol p) noexcept override;
  void on_tls(std::span<const char> first) noexcept override;
  void* on_request(const http::RequestHead& head) noexcept override;
  void on_response_head(void* tag, uint16_t status, uint64_t ttfb_us) noexcept override;
  void on_response(void* tag, uint16_t status, uint64_t ttfb_us, bool complete) noexcept override;
  void on_failure(void* tag, std::string_view error) noexcept override;
  void on_rejected(uint16_t status, std::string_view reason) noexcept override;
  void on_abandoned(std::string_view reason) noexcept override;

 private:
  // One request awaiting its response: its tag. H1Tap follows at most
  // kMaxPending at once and answers them in order, so request n can take
  // slot n % kMaxPending: the request there before it has been answered.
  struct Request {
    metrics::HttpSeries* series = nullptr;
    metrics::TapEvents::Record* capture = nullptr;  // while tapped live
  };

  uint32_t jitter() noexcept { return static_cast<uint32_t>(random_->next() >> 32); }
  // A captured request's event goes to the ring; the record is free again.
  void end_capture(Request* r, uint16_t status, uint64_t ttfb_us) noexcept;
  // The capture record of a request, when a live tap is on; else null.
  metrics::TapEvents::Record* capture(const http::RequestHead& head) noexcept;

  http::H1Tap tap_;
  metrics::HttpStats* stats_ = nullptr;
  metrics::TapEvents* events_ = nullptr;
  FastRandom* random_ = nullptr;
  Labels labels_;
  Request requests_[http::H1Tap::kMaxPending];
  uint32_t next_request_ = 0;
};

}  // namespace meshd::proxy
