#include "transport/tls_session.h"

#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfio.h>

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>

#include "identity/cert.h"

namespace meshd::transport {

namespace {

// A SPIFFE ID is at most 2048 bytes (SPIFFE-ID spec); anything longer is not one.
constexpr size_t kMaxIdentity = 2048;

// Output blocks: one full record fits the smallest; a bulk writer gets
// larger blocks (up to the cap) so that a big write is a few sends, not one
// per record.
constexpr size_t kOutBlockMin = TlsSession::kMaxRecordPlaintext + 256;
constexpr size_t kOutBlockMax = 256 * 1024;
// Handshake flights and alerts may pass kMaxPendingOut by this much; only
// write() is held to the limit.
constexpr size_t kOutSlack = 64 * 1024;

// Largest chunk handed to one wolfSSL_read/wolfSSL_write (their sizes are int).
constexpr size_t kMaxCall = 1 << 30;

// TLS alert codes (RFC 8446 6.2) that say a certificate was refused.
bool is_certificate_alert(int code) {
  switch (code) {
    case 42:  // bad_certificate
    case 43:  // unsupported_certificate
    case 44:  // certificate_revoked
    case 45:  // certificate_expired
    case 46:  // certificate_unknown
    case 48:  // unknown_ca
    case 49:  // access_denied
    case 51:  // decrypt_error (a CertificateVerify that does not verify)
      return true;
    default: return false;
  }
}

// wolfSSL / wolfCrypt codes meaning the peer's certificate did not verify.
bool is_certificate_error(int code) {
  if (code <= PUBLIC_KEY_E && code >= ASN_NO_PEM_HEADER) return true;  // -134..-162: certificate parsing and dates
  switch (code) {
    case ASN_ECC_KEY_E:
    case ALT_NAME_E:
    case CRL_CERT_DATE_ERR:
    case ASN_NO_SIGNER_E:
    case ASN_CRL_CONFIRM_E:
    case ASN_CRL_NO_SIGNER_E:
    case ASN_OCSP_CONFIRM_E:
    case ASN_NAME_INVALID_E:
    case ASN_NO_SKID:
    case ASN_NO_AKID:
    case ASN_NO_KEYUSAGE:
    case SKID_E:
    case AKID_E:
    case KEYUSAGE_E:
    case CERTPOLICIES_E:
    case SIG_VERIFY_E:
    case ASN_PATHLEN_SIZE_E:
    case ASN_PATHLEN_INV_E:
    case EXTKEYUSAGE_E:
    case ASN_SELF_SIGNED_E:
    case VERIFY_CERT_ERROR:
    case VERIFY_SIGN_ERROR:
    case NOT_CA_ERROR:
    case OCSP_CERT_REVOKED:
    case CRL_CERT_REVOKED:
    case MAX_CHAIN_ERROR:
    case KEYUSE_SIGNATURE_E:
    case KEYUSE_ENCIPHER_E:
    case EXTKEYUSE_AUTH_E: return true;
    default: return false;
  }
}

bool is_internal_error(int code) {
  switch (code) {
    case MEMORY_E:
    case MEMORY_ERROR:
    case BAD_FUNC_ARG:
    case BAD_STATE_E:
    case RNG_FAILURE_E:
    case MISSING_RNG_E:
    case BUILD_MSG_ERROR:
    case SEND_OOB_READ_E:
    case WOLFSSL_ERROR_WANT_WRITE:  // the send callback never asks to wait
      return true;
    default: return false;
  }
}

}  // namespace

Parsed<void> TlsSession::start(std::shared_ptr<const TlsContext> ctx, WOLFSSL_SESSION* resume) {
  reset();
  if (ctx == nullptr) return invalid("tls session: no context");
  ssl_ = wolfSSL_new(ctx->raw());
  if (ssl_ == nullptr) return invalid("tls session: wolfSSL_new failed (out of memory?)");
  ctx_ = std::move(ctx);
  wolfSSL_SetIOReadCtx(ssl_, this);
  wolfSSL_SetIOWriteCtx(ssl_, this);

  // The client offers exactly this protocol; the server accepts only it and
  // answers any other offer with a no_application_protocol alert. (A client
  // that offers no ALPN at all is refused in finish_handshake().)
  char alpn[256];
  std::string_view want = ctx_->alpn();
  std::memcpy(alpn, want.data(), want.size());
  alpn[want.size()] = '\0';
  if (wolfSSL_UseALPN(ssl_, alpn, static_cast<unsigned>(want.size()), WOLFSSL_ALPN_FAILED_ON_MISMATCH) !=
      WOLFSSL_SUCCESS) {
    reset();
    return invalid("tls session: wolfSSL_UseALPN failed");
  }
  // A session that no longer resumes (expired, another context) only costs
  // a full handshake, so a refusal here is not an error.
  if (resume != nullptr && ctx_->role() == Role::kClient) (void)wolfSSL_set_session(ssl_, resume);
  return {};
}

void TlsSession::reset() {
  if (ssl_ != nullptr) wolfSSL_free(ssl_);
  ssl_ = nullptr;
  ctx_.reset();
  free_out();
  in_ = nullptr;
  in_len_ = 0;
  std::string().swap(peer_identity_);
  failure_ = {};
  error_code_ = 0;
  alert_rx_ = -1;
  alert_tx_ = -1;
  in_eof_ = false;
  handshake_done_ = false;
  resumed_ = false;
  closed_ = false;
  sent_close_ = false;
  out_overflow_ = false;
}

void TlsSession::feed(const char* data, size_t len) {
  assert(in_len_ == 0 && "fed again before the previous bytes were consumed");
  // After the peer's close_notify nothing it sends means anything.
  if (closed_) return;
  in_ = data;
  in_len_ = len;
}

void TlsSession::feed_eof() { in_eof_ = true; }

int TlsSession::io_recv(WOLFSSL*, char* buf, int sz, void* self) {
  auto* s = static_cast<TlsSession*>(self);
  if (s->in_len_ == 0) return s->in_eof_ ? WOLFSSL_CBIO_ERR_CONN_CLOSE : WOLFSSL_CBIO_ERR_WANT_READ;
  if (sz <= 0) return 0;
  size_t n = std::min(static_cast<size_t>(sz), s->in_len_);
  std::memcpy(buf, s->in_, n);
  s->in_ += n;
  s->in_len_ -= n;
  return static_cast<int>(n);
}

int TlsSession::io_send(WOLFSSL*, char* buf, int sz, void* self) {
  auto* s = static_cast<TlsSession*>(self);
  if (sz <= 0) return 0;
  if (!s->append_out(buf, static_cast<size_t>(sz))) return WOLFSSL_CBIO_ERR_GENERAL;
  return sz;
}

bool TlsSession::append_out(const char* data, size_t len) {
  if (out_total_ + len > kMaxPendingOut + kOutSlack) {
    out_overflow_ = true;
    return false;
  }
  // Fill the tail first: bytes are only ever added after what a send in
  // flight may be reading, never moved.
  if (out_tail_ != nullptr) {
    size_t take = std::min<size_t>(out_tail_->capacity - out_tail_->end, len);
    std::memcpy(out_tail_->bytes() + out_tail_->end, data, take);
    out_tail_->end += static_cast<uint32_t>(take);
    out_total_ += take;
    data += take;
    len -= take;
  }
  if (len == 0) return true;
  size_t capacity = std::max({len, kOutBlockMin, std::min(out_total_, kOutBlockMax)});
  auto* block = static_cast<OutBlock*>(std::malloc(sizeof(OutBlock) + capacity));
  if (block == nullptr) {
    out_overflow_ = true;
    return false;
  }
  block->next = nullptr;
  block->capacity = static_cast<uint32_t>(capacity);
  block->begin = 0;
  block->end = static_cast<uint32_t>(len);
  std::memcpy(block->bytes(), data, len);
  out_total_ += len;
  if (out_tail_ != nullptr)
    out_tail_->next = block;
  else
    out_head_ = block;
  out_tail_ = block;
  return true;
}

void TlsSession::consume_out(size_t n) {
  assert(n <= out_size());
  n = std::min(n, out_size());
  if (out_head_ == nullptr) return;
  out_head_->begin += static_cast<uint32_t>(n);
  out_total_ -= n;
  if (out_head_->begin < out_head_->end) return;
  // Drained: give the memory back, so an idle connection holds none.
  OutBlock* next = out_head_->next;
  std::free(out_head_);
  out_head_ = next;
  if (out_head_ == nullptr) out_tail_ = nullptr;
}

void TlsSession::free_out() {
  while (out_head_ != nullptr) {
    OutBlock* next = out_head_->next;
    std::free(out_head_);
    out_head_ = next;
  }
  out_tail_ = nullptr;
  out_total_ = 0;
}

TlsStatus TlsSession::fail(int code, std::string_view reason) {
  if (failure_.empty()) {
    failure_ = reason;
    error_code_ = code;
  }
  return TlsStatus::kError;
}

TlsStatus TlsSession::fail_from_wolfssl(int err) {
  WOLFSSL_ALERT_HISTORY h{};
  if (wolfSSL_get_alert_history(ssl_, &h) == WOLFSSL_SUCCESS) {
    if (h.last_rx.level == alert_fatal) alert_rx_ = h.last_rx.code;
    if (h.last_tx.level == alert_fatal) alert_tx_ = h.last_tx.code;
  }
  if (out_overflow_) return fail(err, "internal");
  switch (err) {
    case WOLFSSL_ERROR_SYSCALL:  // the recv callback reported EOF (SOCKET_PEER_CLOSED_E)
    case SOCKET_ERROR_E:
    case SOCKET_PEER_CLOSED_E: return fail(err, "closed_early");
    case NO_PEER_CERT: return fail(err, "no_peer_cert");
    case UNKNOWN_ALPN_PROTOCOL_NAME_E: return fail(err, "alpn_mismatch");
    case FATAL_ERROR:
      // The peer refused us: name it by the alert it sent, so that both ends
      // of a refused handshake count the same reason.
      if (alert_rx_ == 120) return fail(err, "alpn_mismatch");  // no_application_protocol
      if (alert_rx_ == 116) return fail(err, "no_peer_cert");   // certificate_required
      if (is_certificate_alert(alert_rx_)) return fail(err, "cert_verify_failed");
      return fail(err, "protocol_error");
    default: break;
  }
  if (is_certificate_error(err)) return fail(err, "cert_verify_failed");
  if (is_internal_error(err)) return fail(err, "internal");
  return fail(err, "protocol_error");
}

std::string TlsSession::error_text() const {
  if (failure_.empty()) return {};
  std::string text;
  if (out_overflow_)
    text = "output buffer limit (" + std::to_string(kMaxPendingOut) + " bytes) reached";
  else if (error_code_ == 0)
    text = std::string(failure_);
  else
    text = "wolfSSL error " + std::to_string(error_code_) + ": " +
           wolfSSL_ERR_reason_error_string(static_cast<unsigned long>(error_code_));
  if (alert_rx_ >= 0) text += "; peer sent alert " + std::to_string(alert_rx_);
  if (alert_tx_ >= 0) text += "; sent alert " + std::to_string(alert_tx_);
  return text;
}

TlsStatus TlsSession::handshake() {
  if (ssl_ == nullptr || !failure_.empty()) return TlsStatus::kError;
  if (handshake_done_) return TlsStatus::kOk;
  int r = ctx_->role() == Role::kClient ? wolfSSL_connect(ssl_) : wolfSSL_accept(ssl_);
  if (r == WOLFSSL_SUCCESS) return finish_handshake();
  int err = wolfSSL_get_error(ssl_, r);
  if (err == WOLFSSL_ERROR_WANT_READ) {
    assert(in_len_ == 0);
    return TlsStatus::kWantRead;
  }
  return fail_from_wolfssl(err);
}

TlsStatus TlsSession::finish_handshake() {
  char* proto = nullptr;
  unsigned short proto_len = 0;
  if (wolfSSL_ALPN_GetProtocol(ssl_, &proto, &proto_len) != WOLFSSL_SUCCESS ||
      std::string_view(proto, proto_len) != ctx_->alpn()) {
    // Only a client that offered no ALPN gets here (wolfSSL refuses a wrong
    // offer with an alert). What is queued is the server's session ticket:
    // not for a refused client.
    free_out();
    return fail(UNKNOWN_ALPN_PROTOCOL_NAME_E, "alpn_mismatch");
  }
  handshake_done_ = true;
  resumed_ = wolfSSL_session_reused(ssl_) == 1;

  // The identity is read from the leaf's DER, which SESSION_CERTS keeps
  // (after a resumption too). Not through wolfSSL_get_peer_certificate:
  // that copies a 23 KB X509 and leaves ~2 KB behind in the connection.
  if (WOLFSSL_X509_CHAIN* chain = wolfSSL_get_peer_chain(ssl_);
      chain != nullptr && wolfSSL_get_chain_count(chain) > 0) {
    const unsigned char* der = wolfSSL_get_chain_cert(chain, 0);
    int len = wolfSSL_get_chain_length(chain, 0);
    if (der != nullptr && len > 0) {
      auto info = identity::parse_cert({reinterpret_cast<const char*>(der), static_cast<size_t>(len)});
      if (info && info->identity.starts_with("spiffe://") && info->identity.size() <= kMaxIdentity)
        peer_identity_ = std::move(info->identity);
    }
  }
  // The handshake's key material is no longer needed (~5.5 KB).
  wolfSSL_FreeArrays(ssl_);
  return TlsStatus::kOk;
}

TlsSession::ReadResult TlsSession::read(char* buf, size_t cap) {
  if (ssl_ == nullptr || !failure_.empty()) return {0, TlsStatus::kError};
  if (closed_) return {0, TlsStatus::kClosed};
  if (!handshake_done_) {
    TlsStatus s = handshake();
    if (s != TlsStatus::kOk) return {0, s};
  }
  size_t got = 0;
  while (got < cap) {
    int r = wolfSSL_read(ssl_, buf + got, static_cast<int>(std::min(cap - got, kMaxCall)));
    if (r > 0) {
      got += static_cast<size_t>(r);
      continue;
    }
    int err = wolfSSL_get_error(ssl_, r);
    if (err == WOLFSSL_ERROR_WANT_READ) {
      assert(in_len_ == 0);
      return {got, TlsStatus::kWantRead};
    }
    if (err == WOLFSSL_ERROR_ZERO_RETURN) {
      closed_ = true;
      in_len_ = 0;  // nothing after close_notify counts
      return {got, TlsStatus::kClosed};
    }
    return {got, fail_from_wolfssl(err)};
  }
  // Full. If nothing is left anywhere (no decrypted bytes, no buffered
  // record, nothing fed), say so, which spares the caller a read() that
  // would only answer kWantRead.
  if (in_len_ == 0 && wolfSSL_pending(ssl_) == 0 && wolfSSL_has_pending(ssl_) == 0) return {got, TlsStatus::kWantRead};
  return {got, TlsStatus::kOk};
}

TlsStatus TlsSession::write(const char* data, size_t len) {
  if (ssl_ == nullptr || !failure_.empty()) return TlsStatus::kError;
  if (!handshake_done_ || sent_close_) return fail(0, "internal");
  if (len == 0) return TlsStatus::kOk;
  if (out_total_ + max_ciphertext(len) > kMaxPendingOut) {
    out_overflow_ = true;
    return fail(0, "internal");
  }
  while (len > 0) {
    int r = wolfSSL_write(ssl_, data, static_cast<int>(std::min(len, kMaxCall)));
    if (r <= 0) return fail_from_wolfssl(wolfSSL_get_error(ssl_, r));
    data += r;
    len -= static_cast<size_t>(r);
  }
  return TlsStatus::kOk;
}

TlsStatus TlsSession::shutdown() {
  if (ssl_ == nullptr || !failure_.empty() || !handshake_done_) return TlsStatus::kError;
  if (sent_close_) return TlsStatus::kOk;
  // Called once only: a second wolfSSL_shutdown would read, consuming fed
  // bytes; and when the peer's close_notify is already in, this build's
  // wolfSSL_shutdown clears the WOLFSSL (OpenSSL-compatible reuse), so
  // nothing may touch it afterwards but read() (which answers kClosed first).
  sent_close_ = true;
  int r = wolfSSL_shutdown(ssl_);
  if (r == WOLFSSL_SUCCESS || r == WOLFSSL_SHUTDOWN_NOT_DONE) return TlsStatus::kOk;
  return fail_from_wolfssl(wolfSSL_get_error(ssl_, r));
}

WOLFSSL_SESSION* TlsSession::get1_session() {
  if (ssl_ == nullptr || !handshake_done_ || ctx_->role() != Role::kClient) return nullptr;
  WOLFSSL_SESSION* s = wolfSSL_get1_session(ssl_);
  if (s != nullptr && wolfSSL_SESSION_has_ticket(s) != 1) {
    wolfSSL_SESSION_free(s);
    return nullptr;
  }
  return s;
}

}  // namespace meshd::transport
