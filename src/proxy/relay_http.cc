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
  tap_->start(&stats, direction_, set_ ? std::string_view(set_->service) : std::string_view(), tls_);
}

void TcpForward::end_tap() noexcept {
  if (tap_ == nullptr) return;
  tap_->tap().finish(error_ == TcpError::kNone ? std::string_view("closed") : metrics::tcp_error_name(error_),
                     worker_->now_us());
  worker_->give_tap(tap_);
  tap_ = nullptr;
}

Actions TcpForward::deliver(Half h, int res, int chunk) noexcept {
  if (tap_ != nullptr) {
    http::TapSide side = h == kFromClient ? http::TapSide::kRequests : http::TapSide::kResponses;
    if (res > 0) {
      http::TapVerdict v = tap_->tap().feed(side, {chunk_data(chunk), static_cast<size_t>(res)}, worker_->now_us());
      if (v.kind == http::TapVerdict::kReject) {
        release_chunk(chunk);
        refuse_request(v);
        return kNothing;
      }
      if (v.kind == http::TapVerdict::kOpaque) end_tap();  // not HTTP/1 (any more): plain TCP from here
    } else if (res == 0) {
      tap_->tap().end(side, worker_->now_us());
    }
  }
  return half_[h].on_recv(res, chunk);
}

void TcpForward::refuse_request(const http::TapVerdict& v) noexcept {
  LOG_DEBUG("proxy", "%s HTTP request to %s refused (%u %s): %s", metrics::direction_name(direction_),
            target_.str().c_str(), v.status, std::string(v.reason).c_str(), std::string(v.message).c_str());
  // Only when no earlier (pipelined) request still waits for its response
  // can an answer go now: it would otherwise arrive as that one's response.
  bool answered = tap_->tap().can_answer() && answer_client(v);
  // The upstream never saw the refused head's end; it is reset so that it
  // cannot take what it did see as a request either.
  close(TcpError::kHttpRejected, !answered, true);
}

// Writes the error response to the client at once, without waiting: it is
// small, and nothing else is on its way to the client then (no response is
// pending). False when it could not go whole; the client is reset instead.
bool TcpForward::answer_client(const http::TapVerdict& v) noexcept {
  if (send_op_[kFromUpstream].in_flight || notify_op_.in_flight || half_[kFromUpstream].spilled() ||
      half_[kFromUpstream].chunks() > 0)
    return false;
  char response[1024];
  size_t n = http::write_error_response(response, v.status, v.reason, v.message);
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
