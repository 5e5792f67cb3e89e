// StreamTls: TLS for the control plane's streams (proxy <-> controller,
// meshd-ctl -> controller), whose loops are poll()-driven or blocking and
// deal in strings: ciphertext in, plaintext out; plaintext in, ciphertext
// out. It is TlsSession plus what those loops would otherwise each repeat:
// draining the session's output, holding what is sent before the
// handshake completes, checking the peer's identity once it does, and
// errors worded for an operator. The data plane drives TlsSession itself,
// with ring-owned buffers.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "transport/tls_context.h"
#include "transport/tls_session.h"

namespace meshd::transport {

class StreamTls {
 public:
  // Checks the peer's identity (its certificate's spiffe:// URI, empty if
  // it showed none) once the handshake completes; an error fails the stream.
  using PeerCheck = std::function<Parsed<void>(std::string_view identity)>;

  // A client's ClientHello goes into *wire at once.
  Parsed<void> start(std::shared_ptr<const TlsContext> ctx, PeerCheck check, std::string* wire);

  // Ciphertext from the socket: what it decrypts is appended to *plain and
  // what must go back (handshake flights, held data) to *wire. After an
  // error the stream is done; *wire may hold an alert, to send best effort.
  Parsed<void> received(std::string_view cipher, std::string* plain, std::string* wire);
  // Plaintext to send: encrypted into *wire, or held (unbounded: callers
  // bound what they queue) until the handshake completes.
  Parsed<void> send(std::string_view plain, std::string* wire);

  // For a worker thread, which handshakes all the time: keep wolfSSL's
  // per-thread ECC cache after the handshake (see received()).
  void keep_thread_crypto() { keep_crypto_ = true; }

  bool established() const { return session_.handshake_done() && checked_; }
  // The peer sent close_notify: the stream has ended cleanly.
  bool peer_closed() const { return peer_closed_; }
  std::string_view peer_identity() const { return session_.peer_identity(); }

 private:
  void drain(std::string* wire);
  Parsed<void> failed(std::string_view what);

  TlsSession session_;
  PeerCheck check_;
  std::string held_;
  bool checked_ = false;
  bool client_ = false;
  bool peer_closed_ = false;
  bool keep_crypto_ = false;
};

}  // namespace meshd::transport
