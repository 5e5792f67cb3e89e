#include "proxy/http_tap.h"

namespace meshd::proxy {

using metrics::DetectOutcome;

void HttpTap::start(metrics::HttpStats* stats, metrics::Direction direction, std::string_view dst_service,
                    bool tls) noexcept {
  stats_ = stats;
  direction_ = direction;
  dst_service_ = dst_service;
  tls_ = tls;
  tap_.reset(this);
}

void HttpTap::on_detected(http::Protocol p) noexcept {
  DetectOutcome o = DetectOutcome::kOpaque;
  switch (p) {
    case http::Protocol::kHttp1: o = DetectOutcome::kHttp1; break;
    case http::Protocol::kH2: o = DetectOutcome::kH2; break;
    case http::Protocol::kTls: o = DetectOutcome::kTls; break;
    case http::Protocol::kOpaque: o = DetectOutcome::kOpaque; break;
    case http::Protocol::kServerFirst: o = DetectOutcome::kServerFirst; break;
  }
  stats_->detected(direction_, o);
}

// The tag is the request's series: its response is counted in the same one.
void* HttpTap::on_request(const http::RequestHead& head) noexcept {
  metrics::HttpSeries* s = stats_->series(direction_, head.authority, dst_service_, tls_);
  stats_->request(s);
  return s;
}

void HttpTap::on_response(void* tag, uint16_t status, uint64_t ttfb_us, bool complete) noexcept {
  stats_->response(static_cast<metrics::HttpSeries*>(tag), status, ttfb_us, complete);
}

void HttpTap::on_failure(void* tag, std::string_view error) noexcept {
  stats_->failure(static_cast<metrics::HttpSeries*>(tag), error);
}

void HttpTap::on_rejected(uint16_t status, std::string_view reason) noexcept {
  stats_->rejected(direction_, status, reason);
}

void HttpTap::on_abandoned(std::string_view reason) noexcept { stats_->abandoned(direction_, reason); }

}  // namespace meshd::proxy
