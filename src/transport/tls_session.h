// TlsSession: one TLS connection driven over memory. Ciphertext comes in
// through feed() and leaves through out_data(); the session never touches a
// socket, so the io_uring data plane and the poll() control plane drive it
// the same way:
//
//   feed(bytes the socket gave)           -> handshake() / read()
//   write(plaintext) / shutdown()         -> ciphertext in out_data()
//   send out_data(), then consume_out(n)  -> until out_size() == 0
//
// Input is borrowed, not copied: wolfSSL's receive callback copies from the
// fed bytes only as it needs them (about one record at a time), so the
// session holds no input buffer of its own. When handshake() or read()
// returns kWantRead, every fed byte has been consumed and the caller may
// reuse its buffer. Any other return may leave fed bytes unconsumed (see
// unconsumed()): keep them valid and call read() again.
//
// Output is a queue of blocks that are never moved or reallocated: the
// span out_data()/out_size() stays valid and unchanged until consume_out()
// passes it, even while later calls append more ciphertext. So a send of
// that span may be in flight in the kernel while the session keeps
// working. A drained block is freed at once: an idle session holds no
// output memory.
//
// Not thread-safe: a session belongs to one worker. Not movable: wolfSSL
// holds its address for the I/O callbacks.
#pragma once

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "transport/tls_context.h"

namespace meshd::transport {

enum class TlsStatus : uint8_t {
  kOk,        // done (handshake complete, data written, or read buffer full)
  kWantRead,  // needs more ciphertext; everything fed has been consumed
  kClosed,    // the peer sent close_notify: its direction has ended cleanly
  kError,     // failed for good; see failure() and error_text(). out_data() may
              // hold a fatal alert for the peer: send it, best effort, then close.
};

class TlsSession {
 public:
  // A TLS 1.3 record carries at most 16 KiB of plaintext.
  static constexpr size_t kMaxRecordPlaintext = 16 * 1024;
  // What a record we write adds to its plaintext: the 5-byte header, the
  // inner content type and the 16-byte AEAD tag (we never pad). A peer may
  // pad its records up to 255 bytes more; that only makes reads smaller.
  static constexpr size_t kMaxRecordOverhead = 5 + 1 + 16;
  // write() fails rather than queue more ciphertext than this.
  static constexpr size_t kMaxPendingOut = 4 * 1024 * 1024;

  // The ciphertext write(plaintext) appends at most.
  static constexpr size_t max_ciphertext(size_t plaintext) {
    size_t records = plaintext == 0 ? 1 : (plaintext + kMaxRecordPlaintext - 1) / kMaxRecordPlaintext;
    return plaintext + records * kMaxRecordOverhead;
  }
  // The sizing rule for read(): plaintext never exceeds its ciphertext, and
  // at most one partial record (under 16 KiB of plaintext) can be waiting
  // inside wolfSSL from earlier feeds. So a read() whose cap is at least
  // read_capacity(bytes fed since the last kWantRead) consumes everything
  // fed and ends in kWantRead, kClosed or kError, never with a full buffer.
  static constexpr size_t read_capacity(size_t fed) { return fed + kMaxRecordPlaintext + 256; }

  TlsSession() = default;
  ~TlsSession() { reset(); }
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Creates the connection. A client may offer a session from
  // ClientSessionCache to resume (copied; the caller still owns it); a
  // server ignores it.
  Parsed<void> start(std::shared_ptr<const TlsContext> ctx, WOLFSSL_SESSION* resume = nullptr);
  // Frees everything (the WOLFSSL, queued output, the peer's identity) and
  // goes back to the default state.
  void reset();
  bool active() const { return ssl_ != nullptr; }

  // Ciphertext received from the socket. The bytes must stay valid until
  // handshake() or read() returns kWantRead (everything fed is then
  // consumed). Feeding again before that is a caller bug.
  void feed(const char* data, size_t len);
  // The socket reached EOF: once the fed bytes run out, the session fails
  // with "closed_early" (mid-handshake, or without the peer's close_notify:
  // a truncated stream is not passed on as a clean end).
  void feed_eof();
  size_t unconsumed() const { return in_len_; }

  // Drives the handshake. kOk once complete (then read() the fed bytes that
  // may follow the handshake in the same segment); its flights queue in the
  // output.
  TlsStatus handshake();
  bool handshake_done() const { return handshake_done_; }

  struct ReadResult {
    size_t bytes;
    TlsStatus status;
  };
  // Decrypts records into buf until all fed bytes are consumed (kWantRead),
  // the peer's close_notify (kClosed), a failure (kError), or buf is full
  // (kOk: call read() again before feeding more). Bytes are valid in all
  // cases. Drives the handshake first if it is not complete. A client
  // learns its resumption ticket here (TLS 1.3 sends it after the
  // handshake).
  ReadResult read(char* buf, size_t cap);

  // Encrypts all of data into the output (records of up to 16 KiB). Only
  // after the handshake and before shutdown(); still allowed after the
  // peer's close_notify. kError if the output would pass kMaxPendingOut.
  TlsStatus write(const char* data, size_t len);
  // Queues close_notify. TLS has no half-close: send it when the plaintext
  // source ends, then shutdown(SHUT_WR); the peer may still send to us.
  TlsStatus shutdown();

  // The first contiguous span of ciphertext waiting for the socket.
  const char* out_data() const { return out_head_ != nullptr ? out_head_->bytes() + out_head_->begin : nullptr; }
  size_t out_size() const { return out_head_ != nullptr ? out_head_->end - out_head_->begin : 0; }
  // All ciphertext waiting, across spans.
  size_t out_total() const { return out_total_; }
  // n bytes of out_data() were sent (n <= out_size()).
  void consume_out(size_t n);

  // After the handshake: the peer certificate's single spiffe:// URI SAN
  // (empty if it has none, or more than one URI).
  std::string_view peer_identity() const { return peer_identity_; }
  bool resumed() const { return resumed_; }
  std::string_view alpn() const { return handshake_done_ && ctx_ ? ctx_->alpn() : std::string_view(); }

  // Client: the session to resume later (caller owns it; free it with
  // wolfSSL_SESSION_free). Null until a ticket arrived: with TLS 1.3 that
  // is during the first read() after the handshake.
  WOLFSSL_SESSION* get1_session();

  // Why the session failed, as a short stable metric label, or empty:
  // "cert_verify_failed", "no_peer_cert", "alpn_mismatch", "protocol_error",
  // "closed_early", "internal". A fatal alert from the peer is classified by
  // its code, so both ends of a refused handshake agree on the reason.
  std::string_view failure() const { return failure_; }
  // wolfSSL's code and reason, and the alerts, for logs.
  std::string error_text() const;

 private:
  friend class TlsContext;  // installs the I/O callbacks on its CTX
  static int io_recv(WOLFSSL* ssl, char* buf, int sz, void* self);
  static int io_send(WOLFSSL* ssl, char* buf, int sz, void* self);

  struct OutBlock {
    OutBlock* next;
    uint32_t capacity;
    uint32_t begin;
    uint32_t end;
    char* bytes() { return reinterpret_cast<char*>(this + 1); }
    const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
  };

  bool append_out(const char* data, size_t len);
  void free_out();
  TlsStatus fail(int code, std::string_view reason);
  TlsStatus fail_from_wolfssl(int ret);
  TlsStatus finish_handshake();

  std::shared_ptr<const TlsContext> ctx_;
  WOLFSSL* ssl_ = nullptr;
  const char* in_ = nullptr;
  size_t in_len_ = 0;
  OutBlock* out_head_ = nullptr;
  OutBlock* out_tail_ = nullptr;
  size_t out_total_ = 0;
  std::string peer_identity_;
  std::string_view failure_;
  int error_code_ = 0;
  int alert_rx_ = -1;
  int alert_tx_ = -1;
  bool in_eof_ = false;
  bool handshake_done_ = false;
  bool resumed_ = false;
  bool closed_ = false;      // the peer's close_notify arrived
  bool sent_close_ = false;  // ours is queued
  bool out_overflow_ = false;
};

}  // namespace meshd::transport
