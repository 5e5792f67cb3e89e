// HTTP/1 inside a TcpForward's relay: the tap reads every byte before it is
// forwarded (deliver()), records the golden metrics, and refuses requests
// the application might read differently from us. The bytes themselves
// still take the relay's path unchanged: the tap adds no copy and no wait.
//
//   start_relay -> start_tap: taps unless off (explicit forward, --http off)
//                  or skipped (an opaque port or service: counted as such)
//   each read   -> deliver -> tap.feed: pass | opaque (tap dropped, bytes
//                  flow on) | reject (the read is not forwarded; an error
//                  response when nothing earlier awaits one, then close)
//   each read   -> watch_request_timeout: the request awaiting its response
//                  head (from its last byte) is in the worker's deadline
//                  list; past the service's or the proxy's request timeout
//                  it is answered 504 (request_timed_out) and the
//                  connection ends (a late response must not answer a later
//                  request)
//   release     -> end_tap: requests still pending are counted as failed
#include <sys/socket.h>

#include "base/log.h"
#include "http/error_response.h"
#include "proxy/http_tap.h"
#include "proxy/tcp_forward.h"
#include "proxy/worker.h"

namespace meshd::proxy {

using metrics::TcpError;

void TcpForward::start_tap() noexcept {
  if (http_mode_ == HttpMode::kOff) return;
  auto& stats = worker_->stats().http;
  if (http_mode_ == HttpMode::kSkip || (set_ && set_->opaque)) {
    stats.detected(direction_, metrics::DetectOutcome::kSkipped);
    return;
  }
  tap_ = worker_->take_tap();
  if (tap_ == nullptr) return;  // out of memory: relayed untapped
  HttpTap::Labels labels{direction_, {}, tls_, nullptr};
  if (set_) {
    labels.dst_service = set_->service;
    if (endpoint_ >= 0) labels.endpoint = set_->endpoints[static_cast<size_t>(endpoint_)].health.get();
  }
  tap_->start(&worker_->stats(), &worker_->random(), labels);
  // The service's own timeout (outbound: the registry's), else the proxy's.
  request_timeout_ms_ = set_ && set_->request_timeout_ms != 0
                            ? set_->request_timeout_ms
                            : static_cast<uint32_t>(worker_->config().request_timeout_ms);
}

void TcpForward::end_tap() noexcept {
  if (tap_ == nullptr) return;
  tap_->finish(error_ == TcpError::kNone ? std::string_view("closed") : metrics::tcp_error_name(error_),
               worker_->now_us());
  worker_->give_tap(tap_);
  tap_ = nullptr;
  request_link.unlink();
}

Actions TcpForward::deliver(Half h, int res, int chunk) noexcept {
  if (tap_ != nullptr) {
    http::TapSide side = h == kFromClient ? http::TapSide::kRequests : http::TapSide::kResponses;
    if (res > 0) {
      http::TapVerdict v = tap_->feed(side, {chunk_data(chunk), static_cast<size_t>(res)}, worker_->now_us());
      if (v.kind == http::TapVerdict::kReject) {
        release_chunk(chunk);
        refuse_request(v);
        return kNothing;
      }
      if (v.kind == http::TapVerdict::kOpaque) end_tap();  // not HTTP (any more): plain TCP from here
    } else if (res == 0) {
      tap_->end(side, worker_->now_us());
    }
    if (request_timeout_ms_ != 0) watch_request_timeout();
  }
  return half_[h].on_recv(res, chunk);
}

void TcpForward::refuse_request(const http::TapVerdict& v) noexcept {
  LOG_DEBUG("proxy", "%s HTTP request to %s refused (%u %s): %s", metrics::direction_name(direction_),
            target_.str().c_str(), v.status, std::string(v.reason).c_str(), std::string(v.message).c_str());
  // Only when no earlier (pipelined) request still waits for its response
  // can an answer go now: it would otherwise arrive as that one's response.
  bool answered = tap_->tap().can_answer() && answer_client(v.status, v.reason, v.message);
  // The upstream never saw the refused head's end; it is reset so that it
  // cannot take what it did see as a request either.
  close(TcpError::kHttpRejected, !answered, true);
}

// Writes the error response to the client at once, without waiting: it is
// small, and nothing else is on its way to the client then (no response is
// pending). False when it could not go whole; the client is reset instead.
bool TcpForward::answer_client(uint16_t status, std::string_view reason, std::string_view message) noexcept {
  if (send_op_[kFromUpstream].in_flight || notify_op_.in_flight || half_[kFromUpstream].spilled() ||
      half_[kFromUpstream].chunks() > 0)
    return false;
  char response[1024];
  size_t n = http::write_error_response(response, status, reason, message);
  if (n == 0) return false;
  if (tls_ && tls_in_ == kFromClient) {
    if (tls_session_.out_size() > 0) return false;
    // The response and close_notify, so that the client reads a clean end.
    if (tls_session_.write(response, n) != transport::TlsStatus::kOk) return false;
    tls_session_.shutdown();
    while (tls_session_.out_size() > 0) {
      ssize_t sent = ::send(client_fd_, tls_session_.out_data(), tls_session_.out_size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (sent <= 0) return false;
      tls_session_.consume_out(static_cast<size_t>(sent));
    }
  } else if (::send(client_fd_, response, n, MSG_DONTWAIT | MSG_NOSIGNAL) != static_cast<ssize_t>(n)) {
    return false;
  }
  count_bytes(false, n);
  return true;
}

}  // namespace meshd::proxy

namespace meshd::proxy {

void TcpForward::watch_request_timeout() noexcept {
  // A closing connection has no deadline: it may still see completions
  // (cancelled reads) after close() took it out of every list.
  const uint64_t since_us = tap_ != nullptr && !closing_ ? tap_->awaited_since_us() : 0;
  if (since_us == 0) {
    request_link.unlink();
    return;
  }
  const uint64_t deadline = since_us / 1000 + request_timeout_ms_;
  if (request_link.linked() && deadline == request_deadline_ms) return;
  request_deadline_ms = deadline;
  worker_->await_response(this);
}

void TcpForward::request_timed_out() noexcept {
  request_link.unlink();
  http::H1Tap& tap = tap_->tap();
  LOG_DEBUG("proxy", "%s HTTP request to %s timed out after %u ms", metrics::direction_name(direction_),
            target_.str().c_str(), request_timeout_ms_);
  // The upstream may still answer; it is reset so that a late response can
  // never arrive as the answer to a later request.
  const bool answered =
      tap.awaited_answerable() && answer_client(504, "request_timeout", "the mesh timed out waiting for the response");
  if (answered) tap.answered(504, worker_->now_us());
  close(TcpError::kRequestTimeout, !answered, true);
}

}  // namespace meshd::proxy
