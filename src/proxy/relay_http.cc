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

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "base/log.h"
#include "discovery/balancer.h"
#include "http/error_response.h"
#include "http/h1_parse.h"
#include "http/retry.h"
#include "io/socket.h"
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
  HttpTap::Labels labels{direction_, {}, tls_, nullptr, nullptr};
  if (set_) {
    labels.dst_service = set_->service;
    if (endpoint_ >= 0) labels.endpoint = set_->endpoints[static_cast<size_t>(endpoint_)].health.get();
    labels.budget = &set_->stats->retry_budget;
    if (direction_ == metrics::Direction::kOutbound) labels.server_first = &set_->stats->server_speaks_first;
  }
  tap_->start(&worker_->stats(), &worker_->random(), labels);
  // The service's own timeout (outbound: the registry's), else the proxy's.
  request_timeout_ms_ = worker_->request_timeout_ms(set_.get());
}

void TcpForward::end_tap() noexcept {
  drop_replay();
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
      // Retries (below): what is left of a dropped response's body goes
      // too; a retryable response's head drops it and sends the request
      // again. Either way the read goes on for the next response.
      if (h == kFromUpstream && discard_ > 0 && discard_body(chunk, &res)) return kNothing;
      if (h == kFromUpstream && replay_ != nullptr && retry_response(chunk, res)) return kNothing;
      const bool keep = h == kFromClient && may_keep_request();
      // Seen before the tap reads a new request's first bytes: whether the
      // request may go to another endpoint (upstream_reuse.cc).
      const bool idle = h == kFromClient && upstream_idle();
      http::TapVerdict v = tap_->feed(side, {chunk_data(chunk), static_cast<size_t>(res)}, worker_->now_us());
      if (v.kind == http::TapVerdict::kReject) {
        release_chunk(chunk);
        refuse_request(v);
        return kNothing;
      }
      if (v.kind == http::TapVerdict::kOpaque) {
        end_tap();  // not HTTP (any more): plain TCP from here
      } else if (h == kFromClient) {
        if (keep)
          keep_request(chunk, res);
        else
          drop_replay();  // more from the client: what was kept is no longer the only request
        if (idle && rebalance(chunk, res)) {
          if (request_timeout_ms_ != 0) watch_request_timeout();  // (its clock runs while the upstream changes)
          return kNothing;
        }
      } else {
        drop_replay();  // the response began: the request will not be sent again
        // A server that writes a response in pieces without TCP_NODELAY
        // (Python's http.server: the head, then the body) holds the rest
        // until we acknowledge the first piece, which a kept-alive socket
        // delays by 40 ms: acknowledge at once while a body is awaited
        // after a small read (a bulk body comes in full segments anyway).
        if (res <= 4096 && tap_ != nullptr && !tap_->http2() && tap_->tap().in_response_body())
          io::quick_ack(upstream_fd_);
      }
    } else if (h == kFromUpstream && replay_ != nullptr && res != -ENOBUFS && res != -EINTR && res != -EAGAIN &&
               (retry_on_close() || (retried_ > 0 && retry_lost()))) {
      // The server went away (end of stream or reset) before answering:
      // the request went again over another connection, or, sent again
      // already, it is answered 502.
      return kNothing;
    } else if (res == 0 && h == kFromClient && upstream_idle()) {
      // The client has gone after its last response: the upstream goes to
      // the pool rather than being closed (upstream_reuse.cc).
      tap_->end(side, worker_->now_us());
      detach_upstream(discovery::kNoEndpoint);
      return kNothing;
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
    if (tls_session_->out_size() > 0) return false;
    // The response and close_notify, so that the client reads a clean end.
    if (tls_session_->write(response, n) != transport::TlsStatus::kOk) return false;
    tls_session_->shutdown();
    while (tls_session_->out_size() > 0) {
      ssize_t sent =
          ::send(client_fd_, tls_session_->out_data(), tls_session_->out_size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (sent <= 0) return false;
      tls_session_->consume_out(static_cast<size_t>(sent));
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

// --- Retries -------------------------------------------------------------------
//
// Outbound to a service, HTTP/1: a request the client wrote whole in one
// read (a head and a small body, as nearly every client writes one) on a
// connection with nothing else pending, with an idempotent method, is kept
// until its response begins. When that response has a retryable status
// (the service's registry entry, else --retry-statuses), its head came
// whole in one read, its length is known (Content-Length) and both sides
// keep the connection open, it is dropped (neither the client nor the tap
// ever sees it; a body that follows in later reads is dropped as it comes)
// and the request is sent again, at most kMaxRetries times and within the
// service's retry budget: to another endpoint when the service has one
// (upstream_reuse.cc: resend_elsewhere), else on the same connection. A
// server that closes or resets before any byte of the response has the
// request sent again over another connection the same way. The tap then
// pairs the request with the response that finally comes: response_total
// shows what the client got, outbound_http_retries_total the retries, and
// the server's inbound metrics every attempt. Anything else (a response
// head straddling reads, a close-delimited or chunked body, a request
// pipelined behind) is passed on as it is.

namespace meshd::proxy {

namespace {
constexpr uint8_t kMaxRetries = 2;
}  // namespace

bool TcpForward::discard_body(int chunk, int* res) noexcept {
  if (static_cast<uint64_t>(*res) <= discard_) {
    discard_ -= static_cast<uint64_t>(*res);
    release_chunk(chunk);
    submit_recv(kFromUpstream);  // the half's read stays armed: read on
    return true;
  }
  // The dropped body ends inside this read: what follows is the new
  // response, moved to the chunk's start (the relay sends chunks whole).
  char* p = chunk_data(chunk);
  std::memmove(p, p + discard_, static_cast<size_t>(*res) - discard_);
  *res -= static_cast<int>(discard_);
  discard_ = 0;
  return false;
}

// The service's retryable statuses (the registry's), else the proxy's.
const std::vector<uint16_t>& TcpForward::retry_statuses() const noexcept { return worker_->retry_statuses(set_.get()); }

bool TcpForward::may_keep_request() noexcept {
  if (direction_ != metrics::Direction::kOutbound || !set_ || tap_ == nullptr || tap_->http2()) return false;
  // Kept for the retryable statuses, and for a server that closes before
  // answering (which pooled connections need, whatever the statuses).
  if (retry_statuses().empty() && worker_->upstream_pool() == nullptr) return false;
  const http::H1Tap& tap = tap_->tap();
  return tap.pending() == 0 && tap.between_requests();
}

void TcpForward::keep_request(int chunk, int res) noexcept {
  drop_replay();
  const http::H1Tap& tap = tap_->tap();
  // Exactly one request, read whole (its last byte went: the clock of its
  // response runs), and nothing after it.
  if (tap.pending() != 1 || !tap.between_requests() || tap.awaited_since_us() == 0) return;
  if (!http::retry_safe(tap.front_method()) || res > kMaxReplay || static_cast<uint32_t>(res) > worker_->spill_size())
    return;
  // Its own size (most requests are a few hundred bytes): a connection
  // keeps it only while the request awaits its response.
  replay_ = new (std::nothrow) char[static_cast<size_t>(res)];
  if (replay_ == nullptr) return;
  std::memcpy(replay_, chunk_data(chunk), static_cast<size_t>(res));
  replay_len_ = static_cast<uint32_t>(res);
  retried_ = 0;
}

void TcpForward::drop_replay() noexcept {
  if (replay_ == nullptr) return;
  delete[] replay_;
  replay_ = nullptr;
  replay_len_ = 0;
}

bool TcpForward::retry_response(int chunk, int res) noexcept {
  http::H1Tap& tap = tap_->tap();
  if (tap.pending() != 1 || !tap.awaited_answerable()) return false;
  // Most responses are not retryable: their status line says so before
  // any parsing ("HTTP/1.1 200 ...").
  const char* p = chunk_data(chunk);
  const auto& statuses = retry_statuses();
  if (res < 12 || p[9] != '5') return false;
  const auto quick = static_cast<uint16_t>(500 + (p[10] - '0') * 10 + (p[11] - '0'));
  if (std::find(statuses.begin(), statuses.end(), quick) == statuses.end()) return false;
  http::Limits limits = tap.limits();
  http::Header storage[128];
  limits.max_headers = std::min<uint16_t>(limits.max_headers, 128);
  http::ResponseHead head;
  const std::span<const char> bytes(chunk_data(chunk), static_cast<size_t>(res));
  http::HeadResult r = http::parse_response_head(bytes, tap.front_method(), limits, &head, storage);
  if (r.status != http::HeadStatus::kDone || head.interim || head.status != quick) return false;
  // The whole response is here and the connection stays open after it:
  // dropping it leaves the connection where a new response can follow.
  const uint64_t body = head.framing.kind == http::FramingKind::kContentLength ? head.framing.length
                        : head.framing.kind == http::FramingKind::kNone        ? 0
                                                                               : UINT64_MAX;
  const uint64_t here = static_cast<uint64_t>(res) - r.consumed;  // of its body, in this read
  // (Both sides must keep it: a request's "Connection: close" ends it too.)
  if (!head.keep_alive || !tap.front_keeps_alive() || body == UINT64_MAX || here > body) return false;
  // Nothing else on its way to the server, so the request goes alone.
  const RelayHalf& out = half_[kFromClient];
  if (out.spilled() || out.chunks() > 0 || out.shutting_down() || send_op_[kFromClient].in_flight ||
      notify_op_.in_flight || retried_ >= kMaxRetries)
    return false;
  if (!take_retry()) return false;
  LOG_DEBUG("proxy", "%s answered %u: sending the request again (%u)", target_.str().c_str(), head.status, retried_);
  release_chunk(chunk);
  discard_ = body - here;  // the rest of its body, still to come: dropped too
  // To another endpoint when there is one (the one that failed is likelier
  // to fail again), over its pooled connection or a new one; else on this
  // connection, left where a new response can follow.
  if (resend_elsewhere(discard_ == 0, false)) return true;
  if (!send_again()) {
    close(TcpError::kUpstreamReset, true, true);
    return true;
  }
  // The half's read stays armed (the tap did not see this one): read on.
  if (!closing_) submit_recv(kFromUpstream);
  return true;
}

bool TcpForward::take_retry() noexcept {
  discovery::ServiceStats& stats = *set_->stats;
  if (retried_ >= kMaxRetries) return false;
  if (!stats.retry_budget.withdraw(worker_->now_ms())) {
    stats.retries_refused.inc();
    return false;
  }
  stats.retries.inc();
  ++retried_;
  // The endpoint failed this attempt (failure accrual): the tap, which
  // never sees it, cannot say so.
  if (endpoint_ >= 0)
    set_->endpoints[static_cast<size_t>(endpoint_)].health->record_response(
        false, 0, worker_->now_ms(), static_cast<uint32_t>(worker_->random().next() >> 32));
  return true;
}

// The server closed or reset the connection before any byte of the
// response (a server that crashed, or closed an idle pooled connection
// just as the request went): the kept request goes again over another
// connection, another endpoint's when there is one, within the budget.
bool TcpForward::retry_on_close() noexcept {
  http::H1Tap& tap = tap_->tap();
  if (tap.pending() != 1 || !tap.awaited_answerable() || retried_ >= kMaxRetries) return false;
  // With retries off (no retryable status) only the pool's own race is
  // made good: a pooled connection that turned out closed.
  if (retry_statuses().empty() && !upstream_reused_) return false;
  if (!can_resend_elsewhere() || !take_retry()) return false;
  LOG_DEBUG("proxy", "%s closed before answering: sending the request again (%u)", target_.str().c_str(), retried_);
  return resend_elsewhere(false, true);
}

// The server closed or reset the connection before answering a request
// sent again: the client is answered 502 rather than left with nothing
// (the dropped response was a failure too). False when an answer cannot
// go cleanly now; the connection then ends as any other would.
bool TcpForward::retry_lost() noexcept {
  http::H1Tap& tap = tap_->tap();
  if (tap.pending() != 1 || !tap.awaited_answerable()) return false;
  if (!answer_client(502, "retry_failed", "the server closed the connection before answering the retried request"))
    return false;
  tap.answered(502, worker_->now_us());
  close(TcpError::kUpstreamReset, false, true);
  return true;
}

// The kept request goes to the server as the client half's spill, as
// bytes the session queues do (relay.h): sent before anything the client
// writes next, which waits behind it.
bool TcpForward::send_again() noexcept {
  RelayHalf& out = half_[kFromClient];
  if (is_tls_dest(kFromClient)) {
    const size_t before = tls_session_->out_total();
    if (tls_session_->write(replay_, replay_len_) != transport::TlsStatus::kOk) return false;
    run(kFromClient, out.on_spilled(static_cast<uint32_t>(tls_session_->out_total() - before)));
    return true;
  }
  spill_[kFromClient] = worker_->take_spill();
  if (spill_[kFromClient] == nullptr) return false;
  std::memcpy(spill_[kFromClient], replay_, replay_len_);
  run(kFromClient, out.on_spilled(replay_len_));
  return true;
}

}  // namespace meshd::proxy
