// H2Pipe: one socket carrying a terminated HTTP/2 connection (an H2Conn),
// in the clear or inside the mesh's TLS: its reads, its sends and its close,
// on the worker's ring. Shared by both ends of a terminated connection: the
// application's (H2Forward) and an endpoint's (H2Upstream).
//
// One read and one send at most are in flight; a send goes from `wire`,
// which nothing touches until it completes (TLS records produced meanwhile
// wait in tls_out, and go next, in order). The fd is closed only once no
// operation is in flight on it (shut() cancels them; the owner calls
// settle() after each completion).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "http/h2_conn.h"
#include "io/op.h"
#include "transport/stream_tls.h"

namespace meshd::proxy {

class Worker;

struct H2Pipe {
  enum OpKind : uint8_t { kConnectOp, kRecvOp, kSendOp };
  static constexpr size_t kReadSize = 16 * 1024;

  int fd = -1;
  io::Op connect_op, recv_op, send_op;
  std::unique_ptr<char[]> in;  // kReadSize: the read in flight
  std::string wire;            // bytes being sent (ciphertext with tls)
  std::string tls_out;         // TLS records written while wire was being sent: they go next
  std::unique_ptr<transport::StreamTls> tls;
  std::unique_ptr<http::H2Conn> conn;
  bool ready = false;          // connected (and handshaken): streams may go
  bool closing = false;        // the fd closes once nothing is in flight
  bool flushed_close = false;  // closes once what is queued is sent
  uint64_t deadline_ms = 0;    // of the connect and handshake

  // A fresh start (for a new connection), its ops telling owner which it is.
  // False when out of memory.
  bool reset(io::OpOwner* owner, uint8_t index, http::H2Conn::Role role, http::H2Conn::Handler* handler) noexcept;
  bool in_flight() const noexcept { return connect_op.in_flight || recv_op.in_flight || send_op.in_flight; }

  // Arms a read, unless one is in flight or the pipe is closing.
  void recv(Worker& w) noexcept;
  // A read of res > 0 bytes completed: feeds its plaintext to the H2Conn.
  // *handshake_done: the TLS handshake (and the peer's check) just
  // completed. kFailed: TLS failed (*why says how) or the bytes broke
  // HTTP/2 (the H2Conn queued its GOAWAY).
  enum class Read : uint8_t { kOk, kTlsFailed, kProtocolError };
  Read take(int res, bool* handshake_done, std::string* why) noexcept;
  // Sends what is queued, when no send is in flight. kDone: nothing left
  // and the connection is over (a GOAWAY exchanged, or flushed_close).
  enum class Flush : uint8_t { kOk, kDone, kTlsFailed };
  Flush flush(Worker& w) noexcept;
  // A send completed with res > 0.
  void sent(int res) noexcept { wire.erase(0, static_cast<size_t>(res)); }
  // Closes the socket once nothing is in flight (cancelling what is).
  void shut(Worker& w) noexcept;
  // After a completion: closes the fd of a closing pipe with nothing left in flight.
  void settle() noexcept;
};

}  // namespace meshd::proxy
