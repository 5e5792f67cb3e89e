// Per-request balancing and upstream reuse, outbound HTTP/1 to a service.
//
// The relay follows one client connection and one upstream connection.
// Between HTTP/1 exchanges (the tap saw every response end, both sides
// kept the connection, nothing of a next request read) the upstream side
// is idle, and that is when it can change:
//
//   a request's first read -> the tap sees it -> pick_endpoint (P2C):
//     the current endpoint: relayed as before
//     another: the read waits (held_chunk_) -> detach_upstream: the
//       upstream's armed read is cancelled -> on_detached: its socket (and
//       TLS session) go to the worker's UpstreamPool -> attach_upstream:
//       the new endpoint's pooled connection, or a connect (+ mesh TLS)
//       -> resume_relay: the upstream half starts afresh, the held read
//       is relayed, and the tap's outcomes feed the new endpoint
//   the client's end of stream -> detach_upstream(none) -> pooled -> the
//     connection closes
//
// Every op on the upstream socket completes before it changes hands (its
// read was the only one: both halves are idle), so the pool never holds a
// socket the ring still uses.
#include <atomic>
#include <cerrno>

#include "base/log.h"
#include "discovery/balancer.h"
#include "http/h1_parse.h"
#include "http/h1_tap.h"
#include "http/retry.h"
#include "io/socket.h"
#include "proxy/http_tap.h"
#include "proxy/tcp_forward.h"
#include "proxy/worker.h"

namespace meshd::proxy {

using metrics::TcpError;

bool TcpForward::upstream_idle() const noexcept {
  if (direction_ != metrics::Direction::kOutbound || !set_ || endpoint_ < 0 || closing_ || phase_ != Phase::kRelay)
    return false;
  if (tap_ == nullptr || tap_->http2() || !tap_->tap().idle_between_exchanges()) return false;
  if (worker_->upstream_pool() == nullptr || upstream_fd_ < 0 || discard_ > 0 || replay_ != nullptr) return false;
  // The upstream's read is the only op on its socket, nothing is queued
  // either way, and TLS has nothing of ours waiting to go out.
  if (!recv_op_[kFromUpstream].in_flight || send_op_[kFromClient].in_flight || send_op_[kFromUpstream].in_flight ||
      shutdown_op_[kFromClient].in_flight || notify_op_.in_flight)
    return false;
  for (const RelayHalf& half : half_)
    if (half.chunks() > 0 || half.spilled() || half.shutting_down()) return false;
  if (tls_ && (tls_in_ != kFromUpstream || tls_closed_ || tls_session_->out_total() > 0)) return false;
  return first_slot_ < 0 && !early_;
}

bool TcpForward::rebalance(int chunk, int res) noexcept {
  if (set_->endpoints.size() < 2) return false;
  // The balancer weighs endpoints by what is open to them; this
  // connection's own upstream, idle now, must not count against its
  // endpoint (every request would then move away from where it was).
  std::atomic<uint32_t>& own = set_->endpoints[static_cast<size_t>(endpoint_)].health->active;
  if (endpoint_active_) own.fetch_sub(1, std::memory_order_relaxed);
  int e = discovery::pick_endpoint(*set_, worker_->now_ms(), 0, worker_->random());
  if (endpoint_active_) own.fetch_add(1, std::memory_order_relaxed);
  if (e == discovery::kNoEndpoint || e == endpoint_) return false;
  // A request that could not be sent again (not kept: not idempotent, or
  // too large) stays on its connection, which the server has just shown
  // alive, unless the balancer has taken that endpoint out; it then gets a
  // new connection (a pooled one might have been closed by its server).
  const auto& current = *set_->endpoints[static_cast<size_t>(endpoint_)].health;
  if (replay_ == nullptr && !current.failing(worker_->now_ms())) return false;
  set_->stats->switches.inc();
  held_chunk_ = chunk;
  held_res_ = res;
  switching_ = true;
  switch_start_us_ = worker_->now_us();
  // The request's outcome is the new endpoint's (the tap has it already,
  // its response is still to come).
  tap_->set_endpoint(set_->endpoints[static_cast<size_t>(e)].health.get());
  detach_upstream(e);
  return true;
}

void TcpForward::detach_upstream(int next) noexcept {
  switch_to_ = next;
  detaching_ = true;
  worker_->ring().cancel_op(recv_op_[kFromUpstream]);
}

void TcpForward::on_detached(int res, int buffer) noexcept {
  detaching_ = false;
  if (buffer != RelayHalf::kNoBuffer) worker_->give_back(buffer);
  // Cancelled: nothing came. Anything else (the server closed, or spoke
  // unasked) makes the connection unfit to carry another request.
  park_upstream(res == -ECANCELED);
  half_[kFromUpstream] = RelayHalf();
  if (switch_to_ == discovery::kNoEndpoint) {
    close(TcpError::kNone, false, false);  // the client has gone; everything it asked was answered
    return;
  }
  attach_upstream(switch_to_);
}

void TcpForward::park_upstream(bool reusable) noexcept {
  if (endpoint_active_) {
    set_->endpoints[static_cast<size_t>(endpoint_)].health->active.fetch_sub(1, std::memory_order_relaxed);
    endpoint_active_ = false;
  }
  IdleUpstream idle;
  idle.fd = upstream_fd_;
  idle.address = target_;
  if (tls_) {
    remember_ticket();  // TLS 1.3 sends it after the handshake: it has come by now
    idle.tls = std::move(tls_session_);
    tls_ctx_ = nullptr;
    tls_ = false;
  }
  upstream_fd_ = -1;
  keep_ticket_ = false;
  tls_closed_ = false;
  UpstreamPool* pool = worker_->upstream_pool();
  if (reusable && pool != nullptr) {
    pool->give(std::move(idle), worker_->now_ms());
    return;
  }
  idle.tls.reset();
  io::close_fd(idle.fd);
}

void TcpForward::attach_upstream(int e) noexcept {
  endpoint_ = e;
  attempts_ = 1;
  tried_ = 0;
  may_reuse_ = replay_ != nullptr;  // (see may_take_pooled)
  phase_ = Phase::kConnect;
  open_upstream(e);
}

// --- retries over another connection -------------------------------------------
//
// A retry (relay_http.cc) usually goes to another endpoint: the upstream
// that failed the request is parked when the response it dropped ended
// cleanly, else closed, and the kept request waits for the new upstream
// as a moved request does. The client's half keeps its read armed: a read
// that completes while the new upstream connects waits as early_buffer_.

bool TcpForward::can_resend_elsewhere() const noexcept {
  if (worker_->upstream_pool() == nullptr || switching_ || detaching_ || closing_ || phase_ != Phase::kRelay)
    return false;
  // Nothing in flight on the upstream socket (its read has just completed)
  // and nothing of ours queued either way.
  if (recv_op_[kFromUpstream].in_flight || send_op_[kFromClient].in_flight || send_op_[kFromUpstream].in_flight ||
      shutdown_op_[kFromClient].in_flight || notify_op_.in_flight)
    return false;
  for (const RelayHalf& half : half_)
    if (half.chunks() > 0 || half.spilled() || half.shutting_down()) return false;
  return !tls_ || tls_in_ == kFromUpstream;
}

bool TcpForward::resend_elsewhere(bool reusable, bool same_endpoint_ok) noexcept {
  if (!can_resend_elsewhere()) return false;
  const uint64_t failed = endpoint_ >= 0 && endpoint_ < 64 ? uint64_t{1} << endpoint_ : 0;
  int e = set_->endpoints.size() > 1 ? discovery::pick_endpoint(*set_, worker_->now_ms(), failed, worker_->random())
                                     : discovery::kNoEndpoint;
  if (e == discovery::kNoEndpoint) {
    if (!same_endpoint_ok) return false;
    e = endpoint_;
  }
  LOG_DEBUG("proxy", "%s: the request goes again to %s", set_->service.c_str(),
            set_->endpoints[static_cast<size_t>(e)].address.str().c_str());
  park_upstream(reusable && (!tls_ || tls_session_->out_total() == 0));
  half_[kFromUpstream] = RelayHalf();
  discard_ = 0;
  switching_ = true;
  replaying_ = true;
  switch_start_us_ = worker_->now_us();
  if (tap_ != nullptr) tap_->set_endpoint(set_->endpoints[static_cast<size_t>(e)].health.get());
  attach_upstream(e);
  return true;
}

// The request never left the proxy, so the client may send it again; an
// HTTP answer says what happened where a reset would not.
bool TcpForward::answer_unreachable(TcpError error) noexcept {
  if (!switching_ || tap_ == nullptr) return false;
  http::H1Tap& tap = tap_->tap();
  if (!tap.awaited_answerable() ||
      !answer_client(503, "connect_failed", "the mesh could not connect to an endpoint of the service"))
    return false;
  tap.answered(503, worker_->now_us());
  close(error, false, false);
  return true;
}

bool TcpForward::take_pooled(int e) noexcept {
  UpstreamPool* pool = worker_->upstream_pool();
  if (pool == nullptr) return false;
  const auto& ep = set_->endpoints[static_cast<size_t>(e)];
  IdleUpstream idle = pool->take(ep.address, wants_mtls() ? std::string_view(ep.identity) : "");
  if (idle.fd < 0) return false;
  set_->stats->reused.inc();
  upstream_reused_ = true;
  // connect() sets it on a client's first upstream: without it, Nagle holds
  // a response's second write for the client's delayed ACK (40 ms).
  io::set_nodelay(client_fd_);
  upstream_fd_ = idle.fd;
  target_ = ep.address;
  if (idle.tls) {
    tls_session_ = std::move(idle.tls);
    tls_ = true;
    tls_in_ = kFromUpstream;
  }
  ep.health->active.fetch_add(1, std::memory_order_relaxed);
  endpoint_active_ = true;
  return true;
}

// --- the first request of a client connection ----------------------------------
//
// Outbound to a service, the upstream is chosen when the client's first
// bytes come rather than at accept: a whole HTTP/1 request line takes a
// pooled connection when the chosen endpoint has one (no connect, no
// handshake, and the server's proxy sees no new connection). Anything else
// (HTTP/2, TLS, other bytes, the client's end) connects as before, with
// those bytes relayed first. A client that stays silent for detect-timeout
// is connected anyway, its read left in flight; a service whose server was
// seen to speak first is not waited for at all (the tap says so, and says
// so again when a client speaks first there).

bool TcpForward::waits_for_first_bytes() const noexcept {
  return direction_ == metrics::Direction::kOutbound && http_mode_ == HttpMode::kTap && !set_->opaque &&
         worker_->upstream_pool() != nullptr && !set_->stats->server_speaks_first.load(std::memory_order_relaxed);
}

void TcpForward::await_first_bytes() noexcept {
  phase_ = Phase::kDetect;
  worker_->track_detecting(this);
  submit_recv(kFromClient);
}

void TcpForward::on_first_bytes(const io_uring_cqe& cqe, int buffer) noexcept {
  timer_link.unlink();
  if (cqe.res < 0) {
    if (buffer != RelayHalf::kNoBuffer) worker_->give_back(buffer);
    close(TcpError::kClientReset, false, false);  // reset before it said anything: no upstream to tell
    return;
  }
  if (cqe.res > 0 && buffer != RelayHalf::kNoBuffer && !set_->endpoints.empty() && dialled_.valid()) {
    std::span<const char> first{worker_->buffer_data(buffer), static_cast<size_t>(cqe.res)};
    // HTTP/2 with prior knowledge: terminated, so that each stream is
    // balanced on its own (h2_forward.h). The client's socket goes with it.
    if (http::opens_h2_preface(first) && worker_->terminate_h2(client_fd_, first, dialled_, set_)) {
      worker_->give_back(buffer);
      client_fd_ = -1;
      handed_off_ = true;
      close(TcpError::kNone, false, false);
      return;
    }
  }
  phase_ = Phase::kConnect;
  // Relayed first once the upstream is there (start_relay), whatever it is
  // (an end of stream too: the server sees the client come and go).
  hold_early(buffer, cqe.res);
  connect_endpoint(cqe.res > 0 && buffer != RelayHalf::kNoBuffer &&
                   may_take_pooled({worker_->buffer_data(buffer), static_cast<size_t>(cqe.res)}));
}

// Only a request that can be sent again takes a pooled connection: the
// server may close an idle connection just as a request goes (the race of
// every pool), and the proxy then sends it again over another one (relay_
// http.cc: retry_on_close). So an HTTP/1 request line with an idempotent
// method, in a read small enough to be kept whole (as keep_request keeps
// it); anything else gets a connection of its own (HAProxy's "http-reuse
// safe" rule for a session's first request).
bool TcpForward::may_take_pooled(std::span<const char> first) const noexcept {
  if (first.size() > kMaxReplay || !http::opens_http1_request(first)) return false;
  const std::string_view line(first.data(), first.size());
  return http::retry_safe(http::method_of(line.substr(0, line.find(' '))));
}

void TcpForward::first_bytes_timed_out() noexcept {
  timer_link.unlink();
  phase_ = Phase::kConnect;
  connect_endpoint(false);  // the read stays in flight: its bytes go first when they come
}

void TcpForward::resume_relay() noexcept {
  phase_ = Phase::kRelay;
  worker_->track_active(this);
  // (With what a new TLS upstream's handshake decrypted, if anything.)
  run(kFromUpstream, start_half(kFromUpstream));
  if (closing_) return;
  if (!switching_) return;
  switching_ = false;
  if (tap_ != nullptr) tap_->endpoint_waited(worker_->now_us() - switch_start_us_);
  if (replaying_) {
    replaying_ = false;
    if (!send_again()) {
      close(TcpError::kUpstreamReset, true, true);
      return;
    }
    // The client's read in flight completed while the new upstream was
    // connecting (bytes, or its end of stream): it follows the request
    // (behind it, in the spill).
    int buffer = RelayHalf::kNoBuffer, res = 0;
    if (closing_ || !take_early(&buffer, &res)) return;
    if (res > 0) count_bytes(true, static_cast<uint64_t>(res));
    run(kFromClient, deliver(kFromClient, res, buffer));
    return;
  }
  int chunk = held_chunk_;
  held_chunk_ = -1;
  // The held read now goes to the new upstream; the client's next read is
  // armed as it would have been.
  run(kFromClient, half_[kFromClient].on_recv(held_res_, chunk));
}

}  // namespace meshd::proxy
