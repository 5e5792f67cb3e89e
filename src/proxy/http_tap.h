// HttpTap: the proxy's end of the HTTP tap. An http::H1Tap reads the bytes
// a TcpForward relays (http/h1_tap.h); when they open with the HTTP/2
// preface an http::H2Tap takes over (http/h2_tap.h). This is their sink.
// Each request's (or stream's) outcome goes to:
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
// it is HTTP: one pointer in every TcpForward, nothing more for opaque
// traffic. The HTTP/2 state (two HPACK inflaters, the stream table) is
// allocated for an h2 connection and freed when it ends.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <string_view>

#include "base/random.h"
#include "discovery/endpoint_set.h"
#include "http/h1_tap.h"
#include "http/h2_tap.h"
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
    http::RetryBudget* budget = nullptr;            // the service's, which each request feeds; null: none
    std::atomic<bool>* server_first = nullptr;      // the service's: who spoke first (see ServiceStats)
  };
  // A new connection. worker: its golden metrics and live tap; random: the
  // worker's, for the balancer's jitter.
  void start(metrics::WorkerStats* worker, FastRandom* random, const Labels& labels) noexcept;
  // Requests from now on go to this endpoint (per-request balancing).
  void set_endpoint(discovery::EndpointHealth* endpoint) noexcept { labels_.endpoint = endpoint; }
  // HTTP/2 terminated (H2Forward): requests come as streams, each told
  // here with its own endpoint, none through feed().
  void begin_streams() noexcept;
  // The request `tag` goes to this endpoint (chosen, or chosen again after
  // a failed connect): its outcome feeds that endpoint's balancer state.
  void retarget(void* tag, discovery::EndpointHealth* endpoint) noexcept {
    static_cast<Request*>(tag)->endpoint = endpoint;
  }
  // The request pending (HTTP/1) waited wait_us for its connection to the
  // endpoint (a connect, the mesh's handshake): the endpoint's latency
  // estimate leaves that out, as its connects are measured apart.
  void endpoint_waited(uint64_t wait_us) noexcept { endpoint_wait_us_ = wait_us; }
  // The bytes of one side, before they are forwarded (TcpForward::deliver).
  http::TapVerdict feed(http::TapSide side, std::span<const char> bytes, uint64_t now_us) noexcept;
  // A side reached end of stream (H1Tap::end; HTTP/2 streams end by frames).
  void end(http::TapSide side, uint64_t now_us) noexcept;
  // The connection ended (H1Tap::finish, H2Tap::finish).
  void finish(std::string_view error, uint64_t now_us) noexcept;
  // The request-timeout clock (H1Tap::awaited_since_us). HTTP/2 has none:
  // a tap cannot answer one stream of a connection it only reads.
  uint64_t awaited_since_us() const noexcept { return h2_on_ ? 0 : tap_.awaited_since_us(); }
  // HTTP/1 only: refusals, request timeouts and retries act on it.
  http::H1Tap& tap() noexcept { return tap_; }
  bool http2() const noexcept { return h2_on_; }

  void on_detected(http::Protocol p) noexcept override;
  void on_tls(std::span<const char> first) noexcept override;
  void* on_request(const http::RequestHead& head) noexcept override;
  void on_response_head(void* tag, uint16_t status, uint64_t ttfb_us) noexcept override;
  void on_response(void* tag, uint16_t status, uint64_t ttfb_us, bool complete, int32_t grpc_status) noexcept override;
  void on_failure(void* tag, std::string_view error) noexcept override;
  void on_rejected(uint16_t status, std::string_view reason) noexcept override;
  void on_abandoned(std::string_view reason) noexcept override;

 private:
  // One request awaiting its response: its tag. H1Tap follows at most
  // kMaxPending at once and answers them in order, so request n can take
  // slot n % kMaxPending: the request there before it has been answered.
  // HTTP/2 answers streams in any order: their tags come from a free list.
  struct Request {
    metrics::HttpSeries* series = nullptr;
    metrics::TapEvents::Record* capture = nullptr;  // while tapped live
    discovery::EndpointHealth* endpoint = nullptr;  // where it went (null: not balanced)
    Request* next_free = nullptr;                   // HTTP/2
  };
  struct H2 {
    http::H2Tap tap;
    Request requests[http::H2Tap::kMaxStreams];
    Request* free = nullptr;
  };

  // H1Tap saw the preface: H2Tap follows from the same bytes on.
  void start_h2() noexcept;
  // The HTTP/2 state, with every stream's tag free; false when out of memory.
  bool make_h2() noexcept;
  Request* take_request() noexcept;
  // An HTTP/2 stream's tag is free again (its outcome was told).
  void put_request(Request* r) noexcept;

  uint32_t jitter() noexcept { return static_cast<uint32_t>(random_->next() >> 32); }
  // A captured request's event goes to the ring; the record is free again.
  void end_capture(Request* r, uint16_t status, uint64_t ttfb_us, int32_t grpc_status = -1) noexcept;
  // The capture record of a request, when a live tap is on; else null.
  metrics::TapEvents::Record* capture(const http::RequestHead& head) noexcept;

  http::H1Tap tap_;
  metrics::HttpStats* stats_ = nullptr;
  metrics::TapEvents* events_ = nullptr;
  FastRandom* random_ = nullptr;
  Labels labels_;
  Request requests_[http::H1Tap::kMaxPending];
  uint32_t next_request_ = 0;
  std::unique_ptr<H2> h2_;         // while the connection is HTTP/2
  bool h2_on_ = false;             // this connection is followed as HTTP/2
  uint64_t endpoint_wait_us_ = 0;  // see endpoint_waited()
};

}  // namespace meshd::proxy
