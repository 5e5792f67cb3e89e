#include "proxy/http_tap.h"

#include <new>

#include "base/clock.h"
#include "http/classify.h"
#include "proxy/detect.h"

namespace meshd::proxy {

using metrics::DetectOutcome;
using metrics::TapEvents;

void HttpTap::start(metrics::WorkerStats* worker, FastRandom* random, const Labels& labels) noexcept {
  stats_ = &worker->http;
  events_ = &worker->tap;
  random_ = random;
  labels_ = labels;
  next_request_ = 0;
  h2_on_ = false;
  endpoint_wait_us_ = 0;
  tap_.reset(this);
}

http::TapVerdict HttpTap::feed(http::TapSide side, std::span<const char> bytes, uint64_t now_us) noexcept {
  if (h2_on_) return h2_->tap.feed(side, bytes, now_us);
  http::TapVerdict v = tap_.feed(side, bytes, now_us);
  // H1Tap found the h2 preface (on_detected started the HTTP/2 tap): the
  // same bytes go on to it.
  if (v.kind == http::TapVerdict::kOpaque && h2_on_) return h2_->tap.feed(side, bytes, now_us);
  return v;
}

bool HttpTap::make_h2() noexcept {
  h2_.reset(new (std::nothrow) H2());
  if (h2_ == nullptr) return false;
  h2_->free = nullptr;
  for (Request& r : h2_->requests) put_request(&r);
  return true;
}

void HttpTap::begin_streams() noexcept {
  // (Out of memory: make_h2 failed; requests then share the HTTP/1 ring of
  // tags, whose slots are reused after kMaxPending, which only the live
  // tap's capture could notice.)
  h2_on_ = make_h2();
  stats_->detected(labels_.direction, DetectOutcome::kH2);
}

void HttpTap::start_h2() noexcept {
  // The preface's first bytes when it straddled reads (the rest is in the
  // span H1Tap is reading).
  if (!make_h2() || !h2_->tap.reset(this, tap_.request_bytes_held())) {
    h2_.reset();
    stats_->abandoned(labels_.direction, "memory");
    return;
  }
  h2_on_ = true;
  // What the server sent before the client's preface (its SETTINGS) was
  // forwarded already: the HTTP/2 tap reads it first. No stream is open
  // yet, so the time does not matter.
  h2_->tap.feed(http::TapSide::kResponses, tap_.early_response(), 0);
}

void HttpTap::end(http::TapSide side, uint64_t now_us) noexcept {
  if (!h2_on_) tap_.end(side, now_us);
}

void HttpTap::finish(std::string_view error, uint64_t now_us) noexcept {
  if (!h2_on_) {
    tap_.finish(error, now_us);
    return;
  }
  h2_->tap.finish(error, now_us);
  // The HTTP/2 state (HPACK tables, stream table) goes with its
  // connection: the pooled tap keeps only what HTTP/1 needs, so a burst of
  // h2 connections leaves nothing behind in the pool.
  h2_.reset();
  h2_on_ = false;
}

HttpTap::Request* HttpTap::take_request() noexcept {
  if (!h2_on_) return &requests_[next_request_++ % http::H1Tap::kMaxPending];
  // H2Tap follows at most kMaxStreams at once, and H2Conn lets no more
  // open: never empty (else, defensively, a slot of the HTTP/1 ring).
  Request* r = h2_->free;
  if (r == nullptr) [[unlikely]]
    return &requests_[next_request_++ % http::H1Tap::kMaxPending];
  h2_->free = r->next_free;
  return r;
}

void HttpTap::put_request(Request* r) noexcept {
  if (h2_ == nullptr) return;
  if (r < h2_->requests || r >= h2_->requests + http::H2Tap::kMaxStreams) return;  // HTTP/1's ring
  r->next_free = h2_->free;
  h2_->free = r;
}

void HttpTap::on_detected(http::Protocol p) noexcept {
  DetectOutcome o = DetectOutcome::kOpaque;
  switch (p) {
    case http::Protocol::kHttp1: o = DetectOutcome::kHttp1; break;
    case http::Protocol::kH2:
      o = DetectOutcome::kH2;
      start_h2();
      break;
    case http::Protocol::kTls: o = DetectOutcome::kTls; break;
    case http::Protocol::kOpaque: o = DetectOutcome::kOpaque; break;
    case http::Protocol::kServerFirst: o = DetectOutcome::kServerFirst; break;
    case http::Protocol::kSilent: o = DetectOutcome::kSilent; break;
  }
  stats_->detected(labels_.direction, o);
  // Who spoke first decides whether the service's next connections wait
  // for their client's first bytes (a silent one says nothing).
  if (labels_.server_first != nullptr && p != http::Protocol::kSilent)
    labels_.server_first->store(p == http::Protocol::kServerFirst, std::memory_order_relaxed);
}

void HttpTap::on_tls(std::span<const char> first) noexcept {
  // No mesh ALPN to look for: only the name. Empty when the ClientHello
  // did not come whole in the first read.
  stats_->tls_sni(labels_.direction, detect_client_hello(first, {}).sni);
}

void* HttpTap::on_request(const http::RequestHead& head) noexcept {
  if (labels_.budget != nullptr) labels_.budget->deposit(monotonic_ms());
  Request& r = *take_request();
  r.endpoint = labels_.endpoint;
  r.series = stats_->series(labels_.direction, head.authority, labels_.dst_service, labels_.tls);
  stats_->request(r.series);
  r.capture = events_->armed() ? capture(head) : nullptr;
  return &r;
}

TapEvents::Record* HttpTap::capture(const http::RequestHead& head) noexcept {
  uint64_t now_us = monotonic_us();
  if (!events_->active(now_us / 1000)) return nullptr;
  // Null when too many captured requests await responses: counted there.
  return events_->begin(
      {labels_.direction, labels_.tls, head.method_name, head.authority, head.target, labels_.dst_service}, now_us,
      unix_ms());
}

void HttpTap::on_response(void* tag, uint16_t status, uint64_t ttfb_us, bool complete, int32_t grpc_status) noexcept {
  auto* r = static_cast<Request*>(tag);
  stats_->response(r->series, status, ttfb_us, complete, grpc_status);
  if (r->endpoint != nullptr) {
    const uint64_t own = ttfb_us > endpoint_wait_us_ ? ttfb_us - endpoint_wait_us_ : 0;
    endpoint_wait_us_ = 0;
    r->endpoint->record_response(http::response_succeeded(status, complete, grpc_status), own, monotonic_ms(),
                                 jitter());
  }
  // Tunnels (101, CONNECT) and gRPC calls (whose status is in the
  // trailers) end here without a head callback.
  if (r->capture != nullptr) [[unlikely]]
    end_capture(r, status, ttfb_us, grpc_status);
  put_request(r);
}

// The summary says what the client got: the status and how long it waited
// for the head (response_latency_ms), shown as soon as the head came,
// whatever the body then does.
void HttpTap::on_response_head(void* tag, uint16_t status, uint64_t ttfb_us) noexcept {
  auto* r = static_cast<Request*>(tag);
  if (r->capture != nullptr) [[unlikely]]
    end_capture(r, status, ttfb_us);
}

void HttpTap::end_capture(Request* r, uint16_t status, uint64_t ttfb_us, int32_t grpc_status) noexcept {
  events_->end(r->capture, status, {}, ttfb_us, grpc_status);
  r->capture = nullptr;
}

void HttpTap::on_failure(void* tag, std::string_view error) noexcept {
  auto* r = static_cast<Request*>(tag);
  stats_->failure(r->series, error);
  endpoint_wait_us_ = 0;
  uint64_t now_us = monotonic_us();
  if (r->endpoint != nullptr && http::blames_endpoint(error))
    r->endpoint->record_response(false, 0, now_us / 1000, jitter());
  if (r->capture != nullptr) [[unlikely]]
    events_->end(r->capture, 0, error, now_us > r->capture->start_us ? now_us - r->capture->start_us : 0);
  r->capture = nullptr;
  put_request(r);
}

void HttpTap::on_rejected(uint16_t status, std::string_view reason) noexcept {
  stats_->rejected(labels_.direction, status, reason);
}

void HttpTap::on_abandoned(std::string_view reason) noexcept { stats_->abandoned(labels_.direction, reason); }

}  // namespace meshd::proxy
