#include "proxy/h2_upstream.h"

#include <liburing.h>
#include <nghttp2/nghttp2.h>

#include <algorithm>

#include "base/log.h"
#include "io/ring.h"
#include "io/socket.h"
#include "proxy/h2_forward.h"
#include "proxy/worker.h"

namespace meshd::proxy {

using http::H2Block;
using http::H2Fields;

H2Upstream::H2Upstream(Worker* worker, const discovery::Endpoint& ep, bool mtls) noexcept
    : worker_(worker), address_(ep.address), identity_(mtls ? ep.identity : std::string()), health_(ep.health) {}

bool H2Upstream::open() noexcept {
  if (!pipe_.reset(this, 0, http::H2Conn::Role::kClient, this)) return false;
  auto fd = io::tcp_socket(address_.family());
  if (!fd) return false;
  pipe_.fd = *fd;
  io::set_nodelay(pipe_.fd);
  connect_start_us_ = worker_->now_us();
  pipe_.deadline_ms = worker_->now_ms() + worker_->config().connect_timeout_ms;
  io_uring_sqe* sqe = worker_->ring().sqe();
  io_uring_prep_connect(sqe, pipe_.fd, address_.sa(), address_.len());
  io::Ring::bind(sqe, pipe_.connect_op);
  return true;
}

bool H2Upstream::usable() const noexcept {
  if (pipe_.closing || pipe_.flushed_close || pipe_.conn->going_away()) return false;
  // Before the endpoint's SETTINGS, as many as a server commonly allows.
  const size_t room = pipe_.ready ? pipe_.conn->streams_available() : 100;
  return waiting_.size() < room;
}

void H2Upstream::mark_dirty() noexcept { worker_->h2_dirty(this); }

// --- streams -------------------------------------------------------------------

void H2Upstream::add(H2Stream* s) noexcept {
  s->upstream = this;
  idle_since_ms_ = 0;
  waiting_.push_back(s);
  pump();
}

void H2Upstream::pump() noexcept {
  if (!pipe_.ready) return;
  // Taken out before they are submitted: a failed submit routes its stream
  // again, maybe back here (add() and pump() again).
  const size_t n = std::min<size_t>(waiting_.size(), pipe_.conn->streams_available());
  std::vector<H2Stream*> batch(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(n));
  waiting_.erase(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(n));
  for (H2Stream* s : batch) submit(s);
}

void H2Upstream::give_back_waiting(Lost how) noexcept {
  std::vector<H2Stream*> back = std::move(waiting_);
  waiting_.clear();
  for (H2Stream* s : back) {
    s->upstream = nullptr;
    s->owner->on_upstream_lost(s, address_, how, how == Lost::kConnectFailed ? "connect_failed" : "refused_stream");
  }
}

void H2Upstream::on_goaway(int32_t, uint32_t) noexcept { give_back_waiting(Lost::kNotSent); }

void H2Upstream::submit(H2Stream* s) noexcept {
  http::H2Conn& c = *pipe_.conn;
  const bool end_now = s->ended && s->body.empty() && s->trailers.empty();
  int32_t id = c.submit_request(s->head, end_now, s);
  if (id < 0) {
    s->upstream = nullptr;
    s->owner->on_upstream_lost(s, address_, Lost::kNotSent, "refused_stream");
    return;
  }
  s->up = id;
  if (!s->replay_ok) H2Fields().swap(s->head);  // (else kept, to be sent again)
  if (!s->body.empty()) {
    c.send_data(id, {reinterpret_cast<const uint8_t*>(s->body.data()), s->body.size()});
    std::string().swap(s->body);
  }
  if (s->ended && !end_now) c.end_data(id, s->trailers);
  mark_dirty();
}

void H2Upstream::send_data(H2Stream* s, std::span<const uint8_t> bytes) noexcept {
  if (s->up < 0) return;
  pipe_.conn->send_data(s->up, bytes);
  mark_dirty();
}

void H2Upstream::end_data(H2Stream* s, const H2Fields& trailers) noexcept {
  if (s->up < 0) return;
  pipe_.conn->end_data(s->up, trailers);
  mark_dirty();
}

void H2Upstream::consume(H2Stream* s, size_t n) noexcept {
  const size_t c = std::min(n, s->up_owed);  // (the mesh's own answers owe nothing)
  s->up_owed -= c;
  if (s->up >= 0 && c > 0) {
    pipe_.conn->consume_stream(s->up, c);  // (the connection's window came back on receipt)
    mark_dirty();
  }
}

void H2Upstream::forget(H2Stream* s, bool cancel) noexcept {
  if (s->up >= 0) {
    pipe_.conn->set_stream_user(s->up, nullptr);
    if (cancel) pipe_.conn->reset(s->up, NGHTTP2_CANCEL);
    mark_dirty();
  } else {
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), s), waiting_.end());
  }
  s->up_owed = 0;
  s->up = -1;
  s->upstream = nullptr;
}

void H2Upstream::on_headers(int32_t id, H2Block kind, H2Fields&& f, bool end) noexcept {
  if (H2Stream* s = stream(id)) s->owner->on_upstream_headers(s, kind, std::move(f), end);
}

void H2Upstream::on_data(int32_t id, std::span<const uint8_t> bytes) noexcept {
  // The connection's window comes back at once: it is shared, and a client
  // that does not read must stall only its own streams (each holds its
  // stream's window at most, kStreamWindow).
  pipe_.conn->consume_connection(bytes.size());
  H2Stream* s = stream(id);
  if (s == nullptr || !s->owner->on_upstream_data(s, bytes)) {
    pipe_.conn->consume_stream(id, bytes.size());
    return;
  }
  s->up_owed += bytes.size();  // the stream's, once framed to the client (consume())
}

void H2Upstream::on_data_end(int32_t id) noexcept {
  if (H2Stream* s = stream(id)) s->owner->on_upstream_end(s);
}

// Request bytes went to the endpoint: the client's window reopens.
void H2Upstream::on_data_sent(int32_t id, size_t n) noexcept {
  if (H2Stream* s = stream(id)) s->owner->on_upstream_took(s, n);
}

void H2Upstream::on_stream_close(int32_t id, uint32_t error) noexcept {
  H2Stream* s = stream(id);
  if (s == nullptr) return;
  s->up_owed = 0;  // (its stream window is gone with it)
  s->up = -1;
  s->upstream = nullptr;
  s->owner->on_upstream_close(s, error);
  pump();  // room for one more
}

// --- the connection --------------------------------------------------------------

void H2Upstream::on_connect(int res) noexcept {
  if (res < 0) {
    health_->record_connect(false, 0, worker_->now_ms());
    fail("connect_failed");
    return;
  }
  health_->record_connect(true, worker_->now_us() - connect_start_us_, worker_->now_ms());
  if (identity_.empty()) {
    ready();
    pipe_.recv(*worker_);
    return;
  }
  const identity::Credential* cred = worker_->credential();
  pipe_.tls.reset(new (std::nothrow) transport::StreamTls());
  if (cred == nullptr || !cred->valid_at(worker_->unix_ms()) || !pipe_.tls) {
    fail("no_identity");
    return;
  }
  pipe_.tls->keep_thread_crypto();
  auto check = [expected = identity_](std::string_view got) -> Parsed<void> {
    if (got != expected) return invalid("the endpoint is " + std::string(got) + ", not " + expected);
    return {};
  };
  if (auto ok = pipe_.tls->start(cred->client, check, &pipe_.wire); !ok) {
    LOG_WARN("proxy", "mesh TLS to %s: %s", address_.str().c_str(), ok.error().c_str());
    fail("tls_failed");
    return;
  }
  mark_dirty();
  pipe_.recv(*worker_);  // ready once the handshake completes
}

void H2Upstream::ready() noexcept {
  pipe_.ready = true;
  pipe_.deadline_ms = 0;
  pump();
  mark_dirty();
}

void H2Upstream::fail(std::string_view why) noexcept {
  if (pipe_.closing) return;
  const Lost unsent = pipe_.ready ? Lost::kNotSent : Lost::kConnectFailed;
  LOG_DEBUG("proxy", "h2 connection to %s: %.*s", address_.str().c_str(), static_cast<int>(why.size()), why.data());
  pipe_.shut(*worker_);
  // The streams it never sent may go elsewhere; those it carried (nghttp2
  // does not close them when the socket goes) are lost. Collected first:
  // their owners' answers may change the stream table.
  std::vector<std::pair<H2Stream*, bool>> lost;
  for (H2Stream* s : waiting_) lost.emplace_back(s, false);
  waiting_.clear();
  for (int32_t id : pipe_.conn ? pipe_.conn->stream_ids() : std::vector<int32_t>())
    if (H2Stream* s = stream(id)) {
      pipe_.conn->set_stream_user(id, nullptr);
      s->up_owed = 0;
      s->up = -1;
      lost.emplace_back(s, true);
    }
  for (auto [s, sent] : lost) {
    s->upstream = nullptr;
    s->owner->on_upstream_lost(s, address_, sent ? Lost::kBroken : unsent, why);
  }
}

void H2Upstream::flush_now() noexcept {
  dirty = false;
  switch (pipe_.flush(*worker_)) {
    case H2Pipe::Flush::kOk: return;
    case H2Pipe::Flush::kTlsFailed: fail("tls_failed"); return;
    case H2Pipe::Flush::kDone:
      // Its GOAWAY exchanged (or a protocol error ended it): streams still
      // on it will get nothing more.
      if (!waiting_.empty() || pipe_.conn->open_streams() > 0)
        fail("upstream_reset");
      else
        pipe_.shut(*worker_);
      return;
  }
}

void H2Upstream::on_complete(io::Op& op, const io_uring_cqe& cqe) noexcept {
  if (!pipe_.closing) {
    switch (op.kind) {
      case H2Pipe::kConnectOp: on_connect(cqe.res); break;
      case H2Pipe::kRecvOp: {
        if (cqe.res <= 0) {
          fail("upstream_reset");
          break;
        }
        bool handshake_done = false;
        std::string why;
        switch (pipe_.take(cqe.res, &handshake_done, &why)) {
          case H2Pipe::Read::kOk:
            if (handshake_done) {
              worker_->stats().tls[static_cast<int>(metrics::Direction::kOutbound)].full.inc();
              ready();
            }
            pipe_.recv(*worker_);
            break;
          case H2Pipe::Read::kTlsFailed:
            LOG_DEBUG("proxy", "h2 connection to %s: %s", address_.str().c_str(), why.c_str());
            worker_->stats().tls[static_cast<int>(metrics::Direction::kOutbound)].failed.inc();
            fail("tls_failed");
            break;
          case H2Pipe::Read::kProtocolError: fail("upstream_reset"); break;
        }
        mark_dirty();
        break;
      }
      case H2Pipe::kSendOp:
        if (cqe.res < 0) {
          fail("upstream_reset");
          break;
        }
        pipe_.sent(cqe.res);
        mark_dirty();
        break;
    }
  }
  pipe_.settle();
  worker_->flush_h2();
}

void H2Upstream::sweep(uint64_t now_ms, uint64_t idle_ms) noexcept {
  if (pipe_.closing) return;
  if (pipe_.deadline_ms != 0 && now_ms >= pipe_.deadline_ms) {
    health_->record_connect(false, 0, now_ms);
    fail("connect_timeout");
    return;
  }
  if (!pipe_.ready || pipe_.flushed_close) return;
  if (pipe_.conn->open_streams() != 0 || !waiting_.empty()) {
    idle_since_ms_ = 0;
    return;
  }
  if (idle_since_ms_ == 0) idle_since_ms_ = now_ms;
  if (now_ms >= idle_since_ms_ + idle_ms) {
    // No stream for a while: said goodbye, closed once that is sent.
    pipe_.conn->goaway(0);
    pipe_.flushed_close = true;
    mark_dirty();
  }
}

void H2Upstream::abort() noexcept {
  if (pipe_.fd >= 0) io::set_reset_on_close(pipe_.fd);
  fail("shutdown");
  pipe_.shut(*worker_);
}

}  // namespace meshd::proxy
