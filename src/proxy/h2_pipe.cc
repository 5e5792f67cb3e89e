#include "proxy/h2_pipe.h"

#include <liburing.h>
#include <sys/socket.h>

#include <new>

#include "io/ring.h"
#include "io/socket.h"
#include "proxy/worker.h"

namespace meshd::proxy {

bool H2Pipe::reset(io::OpOwner* owner, uint8_t index, http::H2Conn::Role role,
                   http::H2Conn::Handler* handler) noexcept {
  for (auto [op, kind] : {std::pair{&connect_op, kConnectOp}, {&recv_op, kRecvOp}, {&send_op, kSendOp}}) {
    op->owner = owner;
    op->kind = kind;
    op->index = index;
  }
  fd = -1;
  wire.clear();
  tls_out.clear();
  tls.reset();
  ready = closing = flushed_close = false;
  deadline_ms = 0;
  if (!in) in.reset(new (std::nothrow) char[kReadSize]);
  conn.reset(new (std::nothrow) http::H2Conn(role, handler));
  return in && conn && conn->start();
}

void H2Pipe::recv(Worker& w) noexcept {
  if (recv_op.in_flight || closing || flushed_close || fd < 0) return;
  io_uring_sqe* sqe = w.ring().sqe();
  io_uring_prep_recv(sqe, fd, in.get(), kReadSize, 0);
  io::Ring::bind(sqe, recv_op);
}

H2Pipe::Read H2Pipe::take(int res, bool* handshake_done, std::string* why) noexcept {
  *handshake_done = false;
  std::span<const uint8_t> bytes{reinterpret_cast<const uint8_t*>(in.get()), static_cast<size_t>(res)};
  std::string plain;
  if (tls) {
    const bool was = tls->established();
    if (auto r = tls->received({in.get(), static_cast<size_t>(res)}, &plain, &tls_out); !r) {
      *why = r.error();
      return Read::kTlsFailed;
    }
    *handshake_done = !was && tls->established();
    bytes = {reinterpret_cast<const uint8_t*>(plain.data()), plain.size()};
  }
  if (!bytes.empty() && !conn->recv(bytes)) return Read::kProtocolError;
  return Read::kOk;
}

H2Pipe::Flush H2Pipe::flush(Worker& w) noexcept {
  if (closing || fd < 0 || send_op.in_flight || connect_op.in_flight) return Flush::kOk;
  if (wire.empty()) wire.swap(tls_out);
  if (wire.empty()) {
    std::span<const uint8_t> out = conn->pending();
    if (!out.empty()) {
      std::string_view view(reinterpret_cast<const char*>(out.data()), out.size());
      if (tls) {
        if (auto ok = tls->send(view, &wire); !ok) return Flush::kTlsFailed;
      } else {
        wire.assign(view);
      }
      conn->sent(out.size());
    }
  }
  if (wire.empty()) return flushed_close || conn->finished() ? Flush::kDone : Flush::kOk;
  io_uring_sqe* sqe = w.ring().sqe();
  io_uring_prep_send(sqe, fd, wire.data(), wire.size(), MSG_NOSIGNAL);
  io::Ring::bind(sqe, send_op);
  return Flush::kOk;
}

void H2Pipe::shut(Worker& w) noexcept {
  closing = true;
  ready = false;
  if (fd < 0) return;
  if (in_flight()) {
    if (connect_op.in_flight) w.ring().cancel_op(connect_op);
    if (recv_op.in_flight) w.ring().cancel_op(recv_op);
    if (send_op.in_flight) w.ring().cancel_op(send_op);
    return;  // settle() closes it after the last completion
  }
  io::close_fd(fd);
  fd = -1;
}

void H2Pipe::settle() noexcept {
  if (closing && fd >= 0 && !in_flight()) {
    io::close_fd(fd);
    fd = -1;
  }
}

}  // namespace meshd::proxy
