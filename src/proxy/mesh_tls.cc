// The mesh's mutual TLS inside a TcpForward: inbound detection of a mesh
// ClientHello, the handshake on either side, and the relay's decrypt and
// encrypt steps. The wolfSSL work is transport/tls_session.h's; this file
// only moves bytes between it and the ring.
//
//   outbound: connect -> [meshed endpoint] ClientHello ... Finished, check
//             the peer is the identity discovery promised -> relay
//   inbound:  accept -> read first bytes (detect-timeout) -> mesh ClientHello?
//             yes: handshake, learn the client's identity -> connect -> relay
//             no:  connect -> relay, the bytes read first going first
//
// Chunk ids: the RelayHalfs name ring buffers by their ring id, and this
// connection's plain buffers (decrypted bytes, or what detection read) as
// kPlainId + slot; chunk_data()/release_chunk() route them.
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "base/log.h"
#include "io/socket.h"
#include "proxy/detect.h"
#include "proxy/tcp_forward.h"
#include "proxy/worker.h"

namespace meshd::proxy {

using metrics::TcpError;
using transport::TlsStatus;

char* TcpForward::chunk_data(int id) noexcept {
  if (id >= kPlainId) return plain_[id - kPlainId];
  return worker_->buffer_data(id);
}

void TcpForward::release_chunk(int id) noexcept {
  if (id < kPlainId) {
    worker_->give_back(id);
    return;
  }
  int slot = id - kPlainId;
  plain_busy_ &= static_cast<uint8_t>(~(1u << slot));
  // Given back at once: an idle connection holds no buffer of its own.
  if (plain_[slot] != nullptr) worker_->give_plain(plain_[slot], plain_cap_[slot]);
  plain_[slot] = nullptr;
  plain_cap_[slot] = 0;
}

int TcpForward::take_plain(size_t fed) noexcept {
  for (int slot = 0; slot < 2; ++slot) {
    if (plain_busy_ & (1u << slot)) continue;
    plain_[slot] = worker_->take_plain(fed, &plain_cap_[slot]);
    if (plain_[slot] == nullptr) return -1;
    plain_busy_ |= static_cast<uint8_t>(1u << slot);
    return slot;
  }
  return -1;
}

void TcpForward::hold_first(int slot, uint32_t len) noexcept {
  first_slot_ = slot;
  first_len_ = len;
}

bool TcpForward::wants_mtls() const noexcept {
  if (!set_ || endpoint_ < 0 || worker_->shared_identity() == nullptr) return false;
  const auto& ep = set_->endpoints[static_cast<size_t>(endpoint_)];
  return ep.meshed && !ep.identity.empty();
}

void TcpForward::tls_failed() noexcept {
  worker_->stats().tls[static_cast<int>(direction_)].failed.inc();
  LOG_DEBUG("proxy", "mesh TLS with %s failed: %s", target_.str().c_str(), tls_session_->error_text().c_str());
  // The fatal alert wolfSSL queued tells the peer why (both ends then count
  // the same reason). Best effort, without waiting, and only when no send
  // of ours is on that socket; the TLS socket then ends with a FIN, as an
  // RST would make the peer's kernel drop the alert unread.
  Half out = tls_in_ == kFromClient ? kFromUpstream : kFromClient;
  int fd = dest_fd(out);
  bool alerted = false;
  if (fd >= 0 && tls_session_->out_size() > 0 && !send_op_[out].in_flight && !notify_op_.in_flight)
    alerted = ::send(fd, tls_session_->out_data(), tls_session_->out_size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0;
  // A request moved to this new upstream is answered 503 instead (it never left).
  if (answer_unreachable(TcpError::kTlsFailed)) return;
  bool tls_is_client = tls_in_ == kFromClient;
  close(TcpError::kTlsFailed, !(alerted && tls_is_client), !(alerted && !tls_is_client));
}

// The session object outlives its connection in this TcpForward (reset,
// not freed) unless the upstream pool took it with its socket.
bool TcpForward::make_tls_session() noexcept {
  if (!tls_session_) tls_session_.reset(new (std::nothrow) transport::TlsSession());
  return tls_session_ != nullptr;
}

void TcpForward::end_tls() noexcept {
  if (!tls_session_ || !tls_session_->active()) return;
  remember_ticket();
  tls_session_->reset();
  tls_ctx_ = nullptr;
}

void TcpForward::remember_ticket() noexcept {
  // A full handshake with an endpoint that proved the identity discovery
  // promised leaves a ticket to resume with next time (a resumed one keeps
  // the ticket it had). TLS 1.3 sends it after the handshake: until it has
  // come, keep asking (before close_notify, and at the end).
  if (!keep_ticket_ || tls_ctx_ == nullptr) return;
  if (WOLFSSL_SESSION* s = tls_session_->get1_session()) {
    worker_->sessions().store(target_.str(), tls_ctx_, s);
    keep_ticket_ = false;
  }
}

// --- outbound: originate ---------------------------------------------------

void TcpForward::start_client_tls() noexcept {
  const identity::Credential* cred = worker_->credential();
  if (cred == nullptr || !cred->valid_at(worker_->unix_ms())) {
    // Fail closed: the endpoint expects mTLS, and plaintext would be
    // refused or, worse, accepted unauthenticated.
    close(TcpError::kNoIdentity, true, true);
    return;
  }
  if (!make_tls_session()) {
    close(TcpError::kTlsFailed, true, true);
    return;
  }
  tls_ctx_ = cred->client.get();
  WOLFSSL_SESSION* resume = worker_->sessions().find(target_.str(), tls_ctx_);
  if (auto ok = tls_session_->start(cred->client, resume); !ok) {
    LOG_WARN("proxy", "mesh TLS to %s: %s", target_.str().c_str(), ok.error().c_str());
    tls_ctx_ = nullptr;
    close(TcpError::kTlsFailed, true, true);
    return;
  }
  tls_ = true;
  tls_in_ = kFromUpstream;
  phase_ = Phase::kHandshake;
  worker_->track_connecting(this);  // the handshake gets connect-timeout too
  after_handshake_step(tls_session_->handshake());
}

// --- inbound: detect, then terminate ----------------------------------------

void TcpForward::detect(const SocketAddr& target) noexcept {
  target_ = target;
  phase_ = Phase::kDetect;
  worker_->track_detecting(this);
  submit_recv(kFromClient);
}

void TcpForward::detect_timed_out() noexcept {
  if (direction_ == metrics::Direction::kOutbound) {
    first_bytes_timed_out();  // upstream_reuse.cc
    return;
  }
  // The client has not spoken (or not finished a ClientHello): not mesh
  // TLS. Its read stays in flight and will be relayed when it completes.
  after_detect(false);
}

void TcpForward::on_detect_recv(const io_uring_cqe& cqe, int buffer) noexcept {
  if (cqe.res <= 0) {
    if (buffer >= 0) worker_->give_back(buffer);
    if (cqe.res == 0) {
      after_detect(false);  // closed without a word: the upstream sees the same
    } else {
      close(TcpError::kClientReset, false, false);
    }
    return;
  }
  if (first_slot_ < 0 || first_len_ + static_cast<uint32_t>(cqe.res) > plain_cap_[first_slot_]) {
    // The first read, or one more than a small slot holds: a full slot
    // then, and what was read so far moves into it.
    int slot = take_plain(first_slot_ < 0 ? static_cast<size_t>(cqe.res) : Worker::kAnyRead);
    if (slot < 0) {
      worker_->give_back(buffer);
      close(TcpError::kClientReset, true, false);
      return;
    }
    if (first_slot_ >= 0) {
      std::memcpy(plain_[slot], plain_[first_slot_], first_len_);
      release_chunk(kPlainId + first_slot_);
    }
    hold_first(slot, first_len_);
  }
  // Detection stops past kMaxClientHelloBytes, so one more read always
  // fits a full plain slot (buffer_sizes.h).
  uint32_t n = std::min(static_cast<uint32_t>(cqe.res), plain_cap_[first_slot_] - first_len_);
  std::memcpy(plain_[first_slot_] + first_len_, worker_->buffer_data(buffer), n);
  first_len_ += n;
  worker_->give_back(buffer);
  Detection d = detect_client_hello({plain_[first_slot_], first_len_}, transport::kMeshAlpn);
  if (d.kind == Detected::kNeedMore && first_len_ < kMaxClientHelloBytes) {
    submit_recv(kFromClient);
    return;
  }
  after_detect(d.kind == Detected::kMeshTls);
}

void TcpForward::after_detect(bool mesh_tls) noexcept {
  timer_link.unlink();
  if (!mesh_tls) {
    phase_ = Phase::kConnect;
    if (first_slot_ >= 0 && first_len_ == 0) {
      release_chunk(kPlainId + first_slot_);
      first_slot_ = -1;
    }
    admit(target_);
    return;
  }
  const identity::Credential* cred = worker_->credential();
  if (cred == nullptr || !cred->valid_at(worker_->unix_ms())) {
    close(TcpError::kNoIdentity, true, false);
    return;
  }
  if (!make_tls_session()) {
    close(TcpError::kTlsFailed, true, false);
    return;
  }
  if (auto ok = tls_session_->start(cred->server); !ok) {
    LOG_WARN("proxy", "mesh TLS from a client: %s", ok.error().c_str());
    close(TcpError::kTlsFailed, true, false);
    return;
  }
  tls_ctx_ = cred->server.get();
  tls_ = true;
  tls_in_ = kFromClient;
  phase_ = Phase::kHandshake;
  worker_->track_connecting(this);
  int slot = first_slot_;
  uint32_t len = first_len_;
  first_slot_ = -1;
  first_len_ = 0;
  // The ClientHello was read already: it is the first ciphertext in hand.
  tls_session_->feed(plain_[slot], len);
  TlsStatus st = step_handshake(len);
  release_chunk(kPlainId + slot);
  after_handshake_step(st);
}

void TcpForward::admit(const SocketAddr& target) noexcept {
  target_ = target;
  phase_ = Phase::kConnect;
  if (const policy::PolicyTable* table = worker_->policy()) {
    policy::Client client;
    if (tls_) client.identity = tls_session_->peer_identity();
    if (auto peer = io::peer_addr(client_fd_)) client.address = *peer;
    const policy::PortPolicy& p = table->for_port(target.port());
    policy::Decision d = p.authorize(client);
    worker_->shared_policy()->count(p, d);
    if (!d.allowed) {
      LOG_DEBUG("proxy", "inbound to port %u from %s (%s) refused: %s", target.port(), client.address.str().c_str(),
                client.identity.empty() ? "no identity" : std::string(client.identity).c_str(),
                std::string(d.reason).c_str());
      close(TcpError::kUnauthorized, true, false);
      return;
    }
  }
  connect_direct(target_);
}

// --- the handshake, either side ----------------------------------------------

void TcpForward::on_handshake_recv(const io_uring_cqe& cqe, int buffer) noexcept {
  if (cqe.res == -ENOBUFS) {
    waiting_buffer_ |= static_cast<uint8_t>(1u << tls_in_);
    worker_->wait_for_buffer(this);
    return;
  }
  if (cqe.res <= 0) {
    if (buffer >= 0) worker_->give_back(buffer);
    tls_session_->feed_eof();
    tls_failed();
    return;
  }
  tls_session_->feed(worker_->buffer_data(buffer), static_cast<size_t>(cqe.res));
  TlsStatus st = step_handshake(static_cast<size_t>(cqe.res));
  // Everything fed is consumed now (the handshake wants more, or what
  // followed it was decrypted): the ring buffer can go back.
  worker_->give_back(buffer);
  after_handshake_step(st);
}

TlsStatus TcpForward::step_handshake(size_t fed) noexcept {
  TlsStatus st = tls_session_->handshake();
  if (st != TlsStatus::kOk || tls_session_->unconsumed() == 0) return st;
  // Bytes after the handshake in the same segment: the client's first
  // request, or the server's ticket. Decrypt them now, relay them first
  // (a slot sized by read_capacity of the whole segment fed).
  int slot = take_plain(fed);
  if (slot < 0) return TlsStatus::kError;
  auto r = tls_session_->read(plain_[slot], plain_cap_[slot]);
  if (r.bytes > 0)
    hold_first(slot, static_cast<uint32_t>(r.bytes));
  else
    release_chunk(kPlainId + slot);
  if (r.status == TlsStatus::kError) return TlsStatus::kError;
  if (r.status == TlsStatus::kClosed) tls_closed_ = true;
  return TlsStatus::kOk;
}

void TcpForward::after_handshake_step(TlsStatus st) noexcept {
  if (closing_) return;
  if (st == TlsStatus::kError || st == TlsStatus::kClosed) {
    tls_failed();
    return;
  }
  Half out = tls_in_ == kFromClient ? kFromUpstream : kFromClient;  // whose sends go to the TLS socket
  if (tls_session_->out_size() > 0 && !send_op_[out].in_flight) {
    io_uring_sqe* s = worker_->ring().sqe();
    io_uring_prep_send(s, dest_fd(out), tls_session_->out_data(), tls_session_->out_size(), MSG_NOSIGNAL);
    io::Ring::bind(s, send_op_[out]);
  }
  if (st == TlsStatus::kWantRead) {
    submit_recv(tls_in_);
    return;
  }
  if (!send_op_[out].in_flight) handshake_done();  // else when the last flight is sent
}

void TcpForward::on_handshake_sent(int res) noexcept {
  if (closing_) return;
  if (res <= 0) {
    tls_failed();
    return;
  }
  tls_session_->consume_out(static_cast<size_t>(res));
  after_handshake_step(tls_session_->handshake_done() ? TlsStatus::kOk : TlsStatus::kWantRead);
}

void TcpForward::handshake_done() noexcept {
  timer_link.unlink();
  auto& tls = worker_->stats().tls[static_cast<int>(direction_)];
  (tls_session_->resumed() ? tls.resumed : tls.full).inc();
  if (tls_in_ == kFromUpstream) {
    const auto& ep = set_->endpoints[static_cast<size_t>(endpoint_)];
    if (tls_session_->peer_identity() != ep.identity) {
      LOG_WARN("proxy", "%s presented %s, but discovery says %s is %s: refused", target_.str().c_str(),
               std::string(tls_session_->peer_identity()).c_str(), target_.str().c_str(), ep.identity.c_str());
      // Never resume with that peer's ticket either.
      worker_->sessions().store(target_.str(), tls_ctx_, nullptr);
      if (!answer_unreachable(TcpError::kIdentityMismatch)) close(TcpError::kIdentityMismatch, true, true);
      return;
    }
    keep_ticket_ = !tls_session_->resumed();
    start_relay();
    return;
  }
  // Inbound: counted by the client's identity from now on (interned, a
  // lookup among a bounded few; see metrics::ClientIdStats). Nothing is
  // counted before this, so opens and closes stay in one series.
  if (!opened_ && !tls_session_->peer_identity().empty())
    client_series_ = &worker_->stats().inbound_clients.intern(tls_session_->peer_identity());
  admit(target_);
}

// --- the relay over TLS --------------------------------------------------------

void TcpForward::on_tls_recv(const io_uring_cqe& cqe, int buffer) noexcept {
  Half h = tls_in_;
  if (cqe.res == 0 && !tls_closed_) {
    // A FIN without close_notify: the stream may be cut short (a record
    // half received, a peer that died), so it is not passed on as a
    // clean end: both sides are reset. Unless it came before any byte of
    // the response to a request kept to be sent again: that goes again,
    // over another connection (relay_http.cc).
    if (h == kFromUpstream && replay_ != nullptr && tap_ != nullptr && retry_on_close()) return;
    tls_session_->feed_eof();
    tls_failed();
    return;
  }
  if (cqe.res <= 0) {
    run(h, deliver(h, cqe.res, buffer));  // a reset, or no buffer: as on a plain socket
    return;
  }
  // Everything fed earlier was consumed (each read ends in kWantRead), so
  // read_capacity(this read) bounds what it decrypts: the slot's size.
  int slot = take_plain(static_cast<size_t>(cqe.res));
  if (slot < 0) {
    worker_->give_back(buffer);
    close(TcpError::kClientReset, true, true);
    return;
  }
  tls_session_->feed(worker_->buffer_data(buffer), static_cast<size_t>(cqe.res));
  size_t out_before = tls_session_->out_total();
  auto r = tls_session_->read(plain_[slot], plain_cap_[slot]);
  worker_->give_back(buffer);
  if (r.status == TlsStatus::kError) {
    release_chunk(kPlainId + slot);
    tls_failed();
    return;
  }
  if (size_t added = tls_session_->out_total() - out_before; added > 0) {
    queue_tls_output(added);
    if (closing_) {
      release_chunk(kPlainId + slot);
      return;
    }
  }
  if (r.status == TlsStatus::kClosed) tls_closed_ = true;
  // Inbound, what the client sent is the plaintext (metrics/tcp_stats.h).
  if (h == kFromClient && r.bytes > 0) count_bytes(true, r.bytes);
  if (r.bytes == 0) {
    release_chunk(kPlainId + slot);
    if (tls_closed_)
      run(h, deliver(h, 0, RelayHalf::kNoBuffer));
    else
      submit_recv(h);  // a record is not complete yet; the half's read is still the one armed
    return;
  }
  run(h, deliver(h, static_cast<int>(r.bytes), kPlainId + slot));
}

void TcpForward::queue_tls_output(size_t added) noexcept {
  // wolfSSL answered while reading (a KeyUpdate's reply, say): ciphertext
  // in the session output that no write() put there. The encrypting half's
  // sends drain that output, so it is that half's spill as write()'s output
  // is: its sends go on until it is out (never stopping short of it, never
  // sending more than the half counts in flight), and the source it reads
  // from waits for it as for any spill (relay.h).
  Half out = tls_in_ == kFromClient ? kFromUpstream : kFromClient;
  // Past our close_notify nothing more may go (TLS 1.3 ends our direction
  // there): it stays queued, unsent, and goes with the session.
  if (half_[out].shutting_down()) return;
  run(out, half_[out].on_spilled(static_cast<uint32_t>(added)));
}

Actions TcpForward::encrypt_queued(Half h) noexcept {
  RelayHalf& half = half_[h];
  size_t before = tls_session_->out_total();
  for (auto u = half.take_unsent(); u.buffer != RelayHalf::kNoBuffer; u = half.take_unsent()) {
    // Inbound, what the client is sent is the plaintext (metrics/tcp_stats.h).
    if (h == kFromUpstream) count_bytes(false, u.length);
    TlsStatus st = tls_session_->write(chunk_data(u.buffer) + u.offset, u.length);
    release_chunk(u.buffer);
    if (st != TlsStatus::kOk) {
      close(h == kFromClient ? TcpError::kUpstreamReset : TcpError::kClientReset, true, true);
      return kNothing;
    }
  }
  size_t added = tls_session_->out_total() - before;
  return half.on_spilled(static_cast<uint32_t>(added));
}

bool TcpForward::send_close_notify(Half h) noexcept {
  remember_ticket();  // shutdown() is the last wolfSSL call on the session that may read
  size_t before = tls_session_->out_total();
  if (tls_session_->shutdown() != TlsStatus::kOk || tls_session_->out_total() == before) return false;
  if (tls_session_->out_size() != tls_session_->out_total()) return false;  // unsent data ahead of it: cannot happen
  io_uring_sqe* s = worker_->ring().sqe();
  io_uring_prep_send(s, dest_fd(h), tls_session_->out_data(), tls_session_->out_size(), MSG_NOSIGNAL);
  notify_op_.index = h;
  io::Ring::bind(s, notify_op_);
  return true;
}

}  // namespace meshd::proxy
