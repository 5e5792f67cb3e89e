#include "proxy/tcp_forward.h"

#include <cstring>

#include "base/log.h"
#include "discovery/balancer.h"
#include "io/ring.h"
#include "io/socket.h"
#include "proxy/http_tap.h"
#include "proxy/worker.h"

namespace meshd::proxy {

using metrics::TcpError;

TcpForward::TcpForward() noexcept
    : connect_op_(this, kConnect),
      recv_op_{{this, kRecvOp, kFromClient}, {this, kRecvOp, kFromUpstream}},
      send_op_{{this, kSendOp, kFromClient}, {this, kSendOp, kFromUpstream}},
      shutdown_op_{{this, kShutdownOp, kFromClient}, {this, kShutdownOp, kFromUpstream}},
      notify_op_(this, kNotifyOp) {}

void TcpForward::adopt(Worker* worker, int client_fd, metrics::Direction direction) noexcept {
  worker_ = worker;
  client_fd_ = client_fd;
  upstream_fd_ = -1;
  direction_ = direction;
  half_[0] = RelayHalf();
  half_[1] = RelayHalf();
  waiting_buffer_ = 0;
  closing_ = false;
  released_ = false;
  error_ = TcpError::kNone;
  connecting_ = false;
  opened_ = false;
  handed_off_ = false;
  client_series_ = nullptr;
  timed_out_ = false;
  endpoint_active_ = false;
  attempts_ = 0;
  endpoint_ = -1;
  tried_ = 0;
  wait_ = Wait::kNone;
  forward_ = nullptr;
  set_.reset();
  phase_ = Phase::kConnect;
  tls_ = false;
  tls_in_ = kFromClient;
  tls_closed_ = false;
  keep_ticket_ = false;
  first_slot_ = -1;
  first_len_ = 0;
  early_ = false;
  early_buffer_ = -1;
  early_res_ = 0;
  http_mode_ = HttpMode::kOff;
  tap_ = nullptr;
  replay_ = nullptr;
  replay_len_ = 0;
  retried_ = 0;
  discard_ = 0;
  detaching_ = false;
  switching_ = false;
  switch_to_ = -1;
  held_chunk_ = -1;
  held_res_ = 0;
  may_reuse_ = false;
  upstream_reused_ = false;
  replaying_ = false;
}

metrics::DirectionStats& TcpForward::direction_stats() noexcept { return worker_->stats().of(direction_); }

// Inbound over mTLS, by the client's identity when the handshake proved one.
metrics::TcpCounters<metrics::Counter>& TcpForward::worker_series() noexcept {
  if (!mtls_counted_) return direction_stats();
  if (client_series_ != nullptr) return *client_series_;
  return worker_->stats().dir_mtls[static_cast<int>(direction_)];
}

// Counted under the dst service or the direction, and apart when the
// connection goes over mutual TLS (decided by the first endpoint chosen,
// or by the inbound handshake), so that every series keeps its opens and
// closes together.
void TcpForward::count_open() noexcept {
  if (opened_) return;
  opened_ = true;
  mtls_counted_ = tls_ || wants_mtls();
  if (set_)
    (mtls_counted_ ? set_->stats->tcp_mtls : set_->stats->tcp).opened.inc();
  else
    worker_series().opened.inc();
}

// Application bytes (see metrics/tcp_stats.h): the callers count plaintext.
void TcpForward::count_bytes(bool read, uint64_t n) noexcept {
  if (set_) {
    auto& t = mtls_counted_ ? set_->stats->tcp_mtls : set_->stats->tcp;
    (read ? t.read_bytes : t.write_bytes).add(n);
  } else {
    auto& t = worker_series();
    (read ? t.read_bytes : t.write_bytes).add(n);
  }
}

void TcpForward::count_close() noexcept {
  count_open();
  if (set_)
    (mtls_counted_ ? set_->stats->tcp_mtls : set_->stats->tcp).closed[static_cast<int>(error_)].inc();
  else
    worker_series().closed[static_cast<int>(error_)].inc();
}

void TcpForward::connect_direct(const SocketAddr& target) noexcept {
  count_open();
  connect(target);
}

void TcpForward::connect_balanced(std::shared_ptr<const discovery::EndpointSet> set,
                                  const SocketAddr& dialled) noexcept {
  set_ = std::move(set);
  dialled_ = dialled;
  if (waits_for_first_bytes()) {
    await_first_bytes();  // then connect_endpoint() (upstream_reuse.cc)
    return;
  }
  connect_endpoint(false);
}

void TcpForward::connect_endpoint(bool http1) noexcept {
  int e = discovery::pick_endpoint(*set_, worker_->now_ms(), tried_, worker_->random());
  if (e == discovery::kNoEndpoint) {
    close(TcpError::kNoEndpoints, true, false);
    return;
  }
  endpoint_ = e;
  count_open();  // after the pick: whether it goes over mTLS depends on the endpoint
  ++attempts_;
  may_reuse_ = http1;
  open_upstream(e);
}

void TcpForward::open_upstream(int e) noexcept {
  if (may_reuse_ && take_pooled(e)) {
    start_relay();  // (resume_relay() when the connection was relaying already)
    return;
  }
  // Then mesh TLS when the endpoint wants it, and start_relay().
  connect(set_->endpoints[static_cast<size_t>(e)].address);
}

void TcpForward::connect(const SocketAddr& target) noexcept {
  target_ = target;
  upstream_reused_ = false;
  auto fd = io::tcp_socket(target.family());
  if (!fd) {
    close(TcpError::kConnectError, true, false);
    return;
  }
  upstream_fd_ = *fd;
  io::set_nodelay(client_fd_);
  io::set_nodelay(upstream_fd_);
  connecting_ = true;
  timed_out_ = false;
  connect_start_us_ = worker_->now_us();
  worker_->track_connecting(this);
  io_uring_sqe* s = worker_->ring().sqe();
  io_uring_prep_connect(s, upstream_fd_, target_.sa(), target_.len());
  io::Ring::bind(s, connect_op_);
}

void TcpForward::connect_timed_out() noexcept {
  if (phase_ == Phase::kHandshake) {
    // The peer never finished the mesh handshake.
    worker_->stats().tls[static_cast<int>(direction_)].failed.inc();
    if (!answer_unreachable(TcpError::kTlsFailed)) close(TcpError::kTlsFailed, true, true);
    return;
  }
  if (!set_ || attempts_ >= discovery::kMaxConnectAttempts) {
    connect_failed(TcpError::kConnectTimeout);
    return;
  }
  // Another endpoint may answer: cancel this attempt, and let its
  // completion (-ECANCELED) move on once the ring is done with it.
  timed_out_ = true;
  timer_link.unlink();
  worker_->ring().cancel_op(connect_op_);
}

bool TcpForward::in_flight() const noexcept {
  return connect_op_.in_flight || recv_op_[0].in_flight || recv_op_[1].in_flight || send_op_[0].in_flight ||
         send_op_[1].in_flight || shutdown_op_[0].in_flight || shutdown_op_[1].in_flight || notify_op_.in_flight;
}

void TcpForward::on_complete(io::Op& op, const io_uring_cqe& cqe) noexcept {
  Half h = static_cast<Half>(op.index);
  switch (op.kind) {
    case kConnect: on_connect(cqe.res); break;
    case kRecvOp: on_recv(h, cqe); break;
    case kSendOp:
      // (Handshake flights go towards the TLS socket; the other half may be
      // relaying still when an upstream changes between requests.)
      if (phase_ == Phase::kHandshake && is_tls_dest(h))
        on_handshake_sent(cqe.res);
      else
        on_send(h, cqe.res);
      break;
    case kShutdownOp:
      if (!closing_) run(h, half_[h].on_shutdown(cqe.res));
      break;
    case kNotifyOp:
      if (cqe.res > 0)
        tls_session_->consume_out(std::min<size_t>(static_cast<size_t>(cqe.res), tls_session_->out_size()));
      if (!closing_) submit_shutdown(h);
      break;
  }
  if (closing_) maybe_release();
}

static TcpError connect_error(int res) noexcept {
  switch (-res) {
    case ECONNREFUSED: return TcpError::kConnectRefused;
    case ETIMEDOUT:
    case ECANCELED: return TcpError::kConnectTimeout;
    case EHOSTUNREACH:
    case ENETUNREACH: return TcpError::kConnectUnreachable;
    default: return TcpError::kConnectError;
  }
}

bool TcpForward::retry_elsewhere(int res) noexcept {
  if (!set_ || endpoint_ < 0) return false;
  const auto& ep = set_->endpoints[static_cast<size_t>(endpoint_)];
  ep.health->record_connect(false, 0, worker_->now_ms());
  if (endpoint_ < 64) tried_ |= uint64_t{1} << endpoint_;
  if (attempts_ >= discovery::kMaxConnectAttempts) return false;
  int next = discovery::pick_endpoint(*set_, worker_->now_ms(), tried_, worker_->random());
  if (next == discovery::kNoEndpoint) return false;
  LOG_DEBUG("proxy", "connect to %s (%s) failed: %s; trying %s", ep.address.str().c_str(), set_->service.c_str(),
            strerror(-res), set_->endpoints[static_cast<size_t>(next)].address.str().c_str());
  // Nothing is in flight on the failed socket: the connect was its only op.
  io::close_fd(upstream_fd_);
  upstream_fd_ = -1;
  endpoint_ = next;
  ++attempts_;
  if (tap_ != nullptr) tap_->set_endpoint(set_->endpoints[static_cast<size_t>(next)].health.get());
  open_upstream(next);
  return true;
}

void TcpForward::connect_failed(TcpError error) noexcept {
  if (answer_unreachable(error)) return;
  // The client sees a reset, as it would have seen a refusal without the
  // proxy: a clean FIN would read as an empty but successful exchange.
  close(error, true, false);
}

void TcpForward::on_connect(int res) noexcept {
  if (closing_) return;
  connecting_ = false;
  if (timed_out_ && res == -ECANCELED) res = -ETIMEDOUT;
  timed_out_ = false;
  if (res < 0 && retry_elsewhere(res)) return;
  if (res >= 0 && set_ && endpoint_ >= 0) {
    const auto& ep = set_->endpoints[static_cast<size_t>(endpoint_)];
    uint64_t now = worker_->now_us();
    ep.health->record_connect(true, now > connect_start_us_ ? now - connect_start_us_ : 0, worker_->now_ms());
    ep.health->active.fetch_add(1, std::memory_order_relaxed);
    endpoint_active_ = true;
  }
  if (res < 0) {
    connect_failed(connect_error(res));
    return;
  }
  if (wants_mtls()) {
    start_client_tls();
    return;
  }
  start_relay();
}

void TcpForward::start_relay() noexcept {
  if (switching_) {
    resume_relay();  // a new upstream for a connection already relaying (upstream_reuse.cc)
    return;
  }
  phase_ = Phase::kRelay;
  worker_->track_active(this);
  start_tap();
  // The TLS socket's half (else the client's) may hold bytes from before
  // the relay: it starts second, so that the other is reading by then.
  const Half second = tls_ ? tls_in_ : kFromClient;
  const Half first = second == kFromClient ? kFromUpstream : kFromClient;
  run(first, start_half(first));
  if (closing_) return;
  run(second, start_half(second));
}

// Bytes read before the relay began go first: those detection read, or
// that came decrypted with the end of a handshake (the TLS socket's half),
// then a client read that completed meanwhile (detection gave up on it,
// or outbound, the first bytes awaited before connecting). Each delivery
// answers the read the half has just armed.
Actions TcpForward::start_half(Half h) noexcept {
  Actions a = half_[h].start();
  if (first_slot_ >= 0 && h == (tls_ ? tls_in_ : kFromClient)) {
    // Counted now that the series is known (the client's plaintext only).
    if (h == kFromClient) count_bytes(true, first_len_);
    int id = kPlainId + first_slot_;
    first_slot_ = -1;
    a = (a & ~kRecv) | deliver(h, static_cast<int>(first_len_), id);
    first_len_ = 0;
    if (closing_) return kNothing;
  }
  int buffer = RelayHalf::kNoBuffer, res = 0;
  if (h == kFromClient && take_early(&buffer, &res)) {
    if ((a & kRecv) == 0) {
      // Cannot happen (two chunks at most, this is the second), but a
      // buffer must never leak.
      if (buffer >= 0) worker_->give_back(buffer);
      close(TcpError::kClientReset, true, true);
      return kNothing;
    }
    if (res > 0) count_bytes(true, static_cast<uint64_t>(res));  // (the client's, in clear)
    a = (a & ~kRecv) | deliver(h, res, buffer);
  }
  return a;
}

void TcpForward::hold_early(int buffer, int res) noexcept {
  early_ = true;
  early_buffer_ = buffer;
  early_res_ = res;
}

bool TcpForward::take_early(int* buffer, int* res) noexcept {
  if (!early_) return false;
  *buffer = early_buffer_;
  *res = early_res_;
  early_ = false;
  early_buffer_ = -1;
  early_res_ = 0;
  return true;
}

void TcpForward::submit_shutdown(Half h) noexcept {
  io_uring_sqe* s = worker_->ring().sqe();
  io_uring_prep_shutdown(s, dest_fd(h), SHUT_WR);
  io::Ring::bind(s, shutdown_op_[h]);
}

void TcpForward::submit_recv(Half h) noexcept {
  // A read left in flight by detection serves the half's first read.
  if (recv_op_[h].in_flight) return;
  io_uring_sqe* s = worker_->ring().sqe();
  io_uring_prep_recv(s, source_fd(h), nullptr, worker_->buffer_size(), 0);
  // Wait for readiness before trying: the previous read just emptied
  // the socket, so an immediate attempt would almost always fail.
  s->ioprio |= IORING_RECVSEND_POLL_FIRST;
  s->flags |= IOSQE_BUFFER_SELECT;
  s->buf_group = worker_->buffer_group();
  io::Ring::bind(s, recv_op_[h]);
}

void TcpForward::on_recv(Half h, const io_uring_cqe& cqe) noexcept {
  int buffer = RelayHalf::kNoBuffer;
  if (cqe.flags & IORING_CQE_F_BUFFER) {
    buffer = static_cast<int>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
    worker_->buffer_taken(buffer);
  }
  if (closing_) {
    if (buffer != RelayHalf::kNoBuffer) worker_->give_back(buffer);
    return;
  }
  if (detaching_ && h == kFromUpstream) {
    on_detached(cqe.res, buffer);  // the cancelled read of an upstream on its way to the pool
    return;
  }
  switch (phase_) {
    case Phase::kDetect:
      if (cqe.res == -ENOBUFS) {
        // Out of ring buffers: read again when one comes back (buffers_available).
        waiting_buffer_ |= 1u << kFromClient;
        worker_->wait_for_buffer(this);
        return;
      }
      if (direction_ == metrics::Direction::kOutbound)
        on_first_bytes(cqe, buffer);
      else
        on_detect_recv(cqe, buffer);
      return;
    case Phase::kHandshake:
      if (h == tls_in_) {
        on_handshake_recv(cqe, buffer);
        return;
      }
      [[fallthrough]];  // (outbound: the client's read, left in flight when the wait for it ran out)
    case Phase::kConnect:
      // Detection gave up waiting, and its read completed while the
      // upstream connect is in flight: relayed first once it is up.
      hold_early(buffer, cqe.res);
      return;
    case Phase::kRelay: break;
  }
  worker_->touch(this);
  if (cqe.res > 0 && buffer == RelayHalf::kNoBuffer) {
    // Data without a buffer would break the ring's contract; end the
    // connection rather than guess where the bytes are.
    close(TcpError::kClientReset, true, true);
    return;
  }
  if (tls_ && h == tls_in_) {
    on_tls_recv(cqe, buffer);  // counts what it decrypts
    return;
  }
  if (cqe.res > 0 && h == kFromClient) count_bytes(true, static_cast<uint64_t>(cqe.res));
  run(h, deliver(h, cqe.res, buffer));
}

void TcpForward::on_send(Half h, int res) noexcept {
  if (closing_) return;
  worker_->touch(this);
  // Ciphertext sent to a TLS client was counted as plaintext when encrypted.
  if (res > 0 && h == kFromUpstream && !is_tls_dest(h)) count_bytes(false, static_cast<uint64_t>(res));
  int released = RelayHalf::kNoBuffer;
  bool was_spilled = half_[h].spilled();
  if (is_tls_dest(h) && res > 0) tls_session_->consume_out(static_cast<size_t>(res));
  Actions actions = half_[h].on_send(res, &released);
  if (released != RelayHalf::kNoBuffer) release_chunk(released);
  if (was_spilled && !half_[h].spilled() && spill_[h] != nullptr) {
    worker_->give_spill(spill_[h]);
    spill_[h] = nullptr;
  }
  run(h, actions);
}

void TcpForward::run(Half h, Actions actions) noexcept {
  if (closing_) return;
  // Failures first: they end the connection, and nothing else is due then.
  if (actions & kFailSource) {
    // The side we read from failed: reset the side we write to.
    close(h == kFromClient ? TcpError::kClientReset : TcpError::kUpstreamReset, h == kFromUpstream, h == kFromClient);
    return;
  }
  if (actions & kFailDest) {
    close(h == kFromClient ? TcpError::kUpstreamReset : TcpError::kClientReset, h == kFromClient, h == kFromUpstream);
    return;
  }
  if (is_tls_dest(h) && (actions & (kSpill | kSend)) && !(half_[h].spilled() && (actions & kSend))) {
    // Towards the TLS socket every chunk is encrypted into the session's
    // output at once (its ring buffer goes back), and the ciphertext is
    // sent as this half's spill: relay.h's backpressure holds unchanged.
    Actions rest = actions & ~(kSpill | kSend);
    if (rest != kNothing) run(h, rest);
    if (!closing_) run(h, encrypt_queued(h));
    return;
  }
  if (actions & kSpill) {
    run(h, spill(h));
    return;
  }
  io::Ring& ring = worker_->ring();
  if (actions & kSend) {
    io_uring_sqe* s = ring.sqe();
    const RelayHalf& half = half_[h];
    if (is_tls_dest(h)) {
      io_uring_prep_send(s, dest_fd(h), tls_session_->out_data(), tls_session_->out_size(), MSG_NOSIGNAL);
    } else if (half.spilled()) {
      io_uring_prep_send(s, dest_fd(h), spill_[h] + half.spill_offset(), half.spill_length() - half.spill_offset(),
                         MSG_NOSIGNAL);
    } else {
      // Never wait holding a ring buffer: a full destination answers at
      // once, and what it could not take spills (see relay.h).
      io_uring_prep_send(s, dest_fd(h), chunk_data(half.send_buffer()) + half.send_offset(), half.send_length(),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    io::Ring::bind(s, send_op_[h]);
  }
  if (actions & kShutdown) {
    // TLS has no half-close of its own: close_notify first, then the
    // socket's shutdown once it is sent.
    if (!is_tls_dest(h) || !send_close_notify(h)) submit_shutdown(h);
  }
  if (actions & kWaitBuffer) {
    waiting_buffer_ |= static_cast<uint8_t>(1u << h);
    worker_->wait_for_buffer(this);
  }
  if (actions & kRecv) {
    if (tls_ && h == tls_in_ && tls_closed_)
      run(h, deliver(h, 0, RelayHalf::kNoBuffer));  // the peer's close_notify came with earlier bytes
    else
      submit_recv(h);
  }
  if (closing_) return;
  if ((actions & kDone) && half_[0].done() && half_[1].done()) close(TcpError::kNone, false, false);
}

Actions TcpForward::spill(Half h) noexcept {
  if (spill_[h] == nullptr) spill_[h] = worker_->take_spill();
  if (spill_[h] == nullptr) {
    // Out of memory for the spill: end this connection, keep the others.
    close(h == kFromClient ? TcpError::kUpstreamReset : TcpError::kClientReset, true, true);
    return kNothing;
  }
  RelayHalf& half = half_[h];
  uint32_t used = half.spilled() ? half.spill_length() : 0;
  uint32_t added = 0;
  for (auto u = half.take_unsent(); u.buffer != RelayHalf::kNoBuffer; u = half.take_unsent()) {
    // relay.h keeps at most two buffers' worth unsent, the spill's size.
    if (used + added + u.length <= worker_->spill_size())
      std::memcpy(spill_[h] + used + added, chunk_data(u.buffer) + u.offset, u.length);
    added += u.length;
    release_chunk(u.buffer);
  }
  if (used + added > worker_->spill_size()) {
    close(h == kFromClient ? TcpError::kUpstreamReset : TcpError::kClientReset, true, true);
    return kNothing;
  }
  return half.on_spilled(added);
}

void TcpForward::buffers_available() noexcept {
  uint8_t waiting = waiting_buffer_;
  waiting_buffer_ = 0;
  if (phase_ != Phase::kRelay) {
    // Detection or a handshake ran dry: read again.
    // (In kConnect only a detect read can have been waiting: the client's.)
    if (waiting != 0) submit_recv(phase_ == Phase::kHandshake ? tls_in_ : kFromClient);
    return;
  }
  for (uint8_t h = 0; h < 2; ++h)
    if (waiting & (1u << h)) run(static_cast<Half>(h), half_[h].on_buffer_available());
}

void TcpForward::close(TcpError error, bool reset_client, bool reset_upstream) noexcept {
  if (closing_) return;
  closing_ = true;
  error_ = error;
  wait_link.unlink();
  timer_link.unlink();
  request_link.unlink();
  if (reset_client) io::set_reset_on_close(client_fd_);
  if (reset_upstream && upstream_fd_ >= 0) io::set_reset_on_close(upstream_fd_);
  // Closing an fd does not cancel io_uring operations on it (the ring holds
  // its own reference to the file): cancel explicitly, then wait for each
  // operation's completion before the memory is reused.
  if (in_flight()) {
    worker_->ring().cancel_fd(client_fd_);
    if (upstream_fd_ >= 0) worker_->ring().cancel_fd(upstream_fd_);
  }
  maybe_release();
}

void TcpForward::maybe_release() noexcept {
  if (!closing_ || released_ || in_flight()) return;
  released_ = true;
  for (int h = 0; h < 2; ++h) {
    for (auto u = half_[h].take_unsent(); u.buffer != RelayHalf::kNoBuffer; u = half_[h].take_unsent())
      release_chunk(u.buffer);
    if (spill_[h] != nullptr) worker_->give_spill(spill_[h]);
    spill_[h] = nullptr;
  }
  if (early_buffer_ >= 0) worker_->give_back(early_buffer_);
  early_ = false;
  early_buffer_ = -1;
  if (held_chunk_ >= 0) release_chunk(held_chunk_);
  held_chunk_ = -1;
  end_tap();  // before set_ goes: the tap's labels point into it
  end_tls();
  for (int i = 0; i < 2; ++i)
    if (plain_[i] != nullptr) release_chunk(kPlainId + i);
  io::close_fd(client_fd_);
  io::close_fd(upstream_fd_);
  client_fd_ = upstream_fd_ = -1;
  if (endpoint_active_)
    set_->endpoints[static_cast<size_t>(endpoint_)].health->active.fetch_sub(1, std::memory_order_relaxed);
  if (!handed_off_) count_close();
  set_.reset();
  worker_->release(this);
}

}  // namespace meshd::proxy
