#include "transport/stream_tls.h"

namespace meshd::transport {

Parsed<void> StreamTls::start(std::shared_ptr<const TlsContext> ctx, PeerCheck check, std::string* wire) {
  check_ = std::move(check);
  client_ = ctx->role() == Role::kClient;
  if (auto ok = session_.start(std::move(ctx)); !ok) return ok;
  if (client_ && session_.handshake() == TlsStatus::kError) return failed("TLS handshake");
  drain(wire);
  return {};
}

void StreamTls::drain(std::string* wire) {
  while (session_.out_size() > 0) {
    wire->append(session_.out_data(), session_.out_size());
    session_.consume_out(session_.out_size());
  }
}

Parsed<void> StreamTls::failed(std::string_view what) {
  std::string_view why = session_.failure();
  std::string text = std::string(what) + " failed";
  if (why == "cert_verify_failed")
    text += ": the certificate is not from this mesh's trust anchor, or has expired";
  else if (why == "alpn_mismatch")
    text += ": the peer does not speak the controller's protocol (ALPN " + std::string(kControlAlpn) + ")";
  else if (why == "no_peer_cert")
    text += ": no certificate was shown";
  return invalid(text + " (" + session_.error_text() + ")");
}

Parsed<void> StreamTls::received(std::string_view cipher, std::string* plain, std::string* wire) {
  if (peer_closed_) return {};  // nothing after close_notify means anything
  session_.feed(cipher.data(), cipher.size());
  for (;;) {
    const bool was_done = session_.handshake_done();
    const size_t had = plain->size();
    const size_t cap = TlsSession::read_capacity(cipher.size());
    plain->resize(had + cap);
    auto r = session_.read(plain->data() + had, cap);
    plain->resize(had + r.bytes);
    drain(wire);
    if (r.status == TlsStatus::kError)
      return failed(session_.handshake_done() ? std::string_view("TLS") : std::string_view("TLS handshake"));
    if (!was_done && session_.handshake_done()) {
      if (check_)
        if (auto ok = check_(session_.peer_identity()); !ok) return ok;
      checked_ = true;
      // A client's last ECC work on this stream is done: its threads (the
      // proxy's discovery, registrar and identity threads, meshd-ctl)
      // handshake now and then, so wolfSSL's ~3 MB per-thread point cache
      // would sit in the sidecar's memory for nothing between.
      if (client_ && !keep_crypto_) release_thread_crypto();
      if (!held_.empty()) {
        std::string held = std::move(held_);
        held_.clear();
        if (auto ok = send(held, wire); !ok) return ok;
      }
    }
    if (r.status == TlsStatus::kClosed) peer_closed_ = true;
    if (r.status != TlsStatus::kOk) return {};
  }
}

Parsed<void> StreamTls::send(std::string_view plain, std::string* wire) {
  if (!established()) {
    held_.append(plain);
    return {};
  }
  if (session_.write(plain.data(), plain.size()) == TlsStatus::kError) return failed("TLS");
  drain(wire);
  return {};
}

}  // namespace meshd::transport
