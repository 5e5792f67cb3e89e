#include "transport/tls_context.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfio.h>

#include <atomic>

#include "identity/cert.h"
#include "identity/key.h"
#include "transport/tls_session.h"

namespace meshd::transport {

void release_thread_crypto() noexcept {
#ifdef FP_ECC
  wc_ecc_fp_free();
#endif
}

namespace {

std::atomic<uint64_t> g_next_generation{1};

std::string wolf_error(int code) {
  // Some compat-layer calls report plain failure (0) rather than a code.
  if (code == WOLFSSL_FAILURE) return "rejected by wolfSSL";
  return std::string(wolfSSL_ERR_reason_error_string(static_cast<unsigned long>(code))) + " (" + std::to_string(code) +
         ")";
}

const unsigned char* bytes(const std::string& s) { return reinterpret_cast<const unsigned char*>(s.data()); }

}  // namespace

TlsContext::TlsContext(Role role, std::string_view alpn, std::string leaf_der)
    : role_(role), alpn_(alpn), leaf_der_(std::move(leaf_der)), generation_(g_next_generation.fetch_add(1)) {}

TlsContext::~TlsContext() {
  if (ctx_ != nullptr) wolfSSL_CTX_free(ctx_);
}

Parsed<void> TlsContext::use_certificate(const TlsCredentials& creds) {
  WOLFSSL_CTX* ctx = ctx_;
  // wolfSSL parses a concatenation of DER certificates as leaf + chain.
  std::string chain;
  for (const std::string& c : creds.chain_der) chain += c;
  int r = wolfSSL_CTX_use_certificate_chain_buffer_format(ctx, bytes(chain), static_cast<long>(chain.size()),
                                                          WOLFSSL_FILETYPE_ASN1);
  if (r != WOLFSSL_SUCCESS) return invalid("certificate chain: " + wolf_error(r));
  r = wolfSSL_CTX_use_PrivateKey_buffer(ctx, bytes(creds.key_der), static_cast<long>(creds.key_der.size()),
                                        WOLFSSL_FILETYPE_ASN1);
  if (r != WOLFSSL_SUCCESS) return invalid("private key: " + wolf_error(r));
  // wolfSSL_CTX_check_private_key passes a P-256 key of another certificate
  // (measured), so the public keys are compared here.
  auto leaf = identity::parse_cert(creds.chain_der.front());
  if (!leaf) return invalid("certificate chain: leaf: " + leaf.error());
  auto key = identity::PrivateKey::from_der(creds.key_der);
  if (!key) return invalid("private key: " + key.error());
  if (key->public_der() != leaf->public_key_der || wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS)
    return invalid("private key does not match the certificate");
  return {};
}

Parsed<std::shared_ptr<const TlsContext>> TlsContext::create(const TlsCredentials& creds, Role role,
                                                             std::string_view alpn, PeerCert peer) {
  // wolfSSL_UseALPN takes a comma-separated list, and a protocol name is 1..255 bytes on the wire.
  if (alpn.empty() || alpn.size() > 255 || alpn.find(',') != std::string_view::npos)
    return invalid("alpn: \"" + std::string(alpn) + "\" is not a single protocol name of 1..255 bytes");
  const bool anonymous_client = role == Role::kClient && creds.chain_der.empty() && creds.key_der.empty();
  if (!anonymous_client) {
    if (creds.chain_der.empty() || creds.chain_der.front().empty())
      return invalid("certificate chain: empty (the leaf certificate is required)");
    if (creds.key_der.empty()) return invalid("private key: empty");
  }
  if (creds.anchors_der.empty()) return invalid("trust anchors: none (peers could never be verified)");

  std::shared_ptr<TlsContext> self(
      new TlsContext(role, alpn, anonymous_client ? std::string() : creds.chain_der.front()));
  WOLFSSL_METHOD* method = role == Role::kClient ? wolfTLSv1_3_client_method() : wolfTLSv1_3_server_method();
  if (method == nullptr || (self->ctx_ = wolfSSL_CTX_new(method)) == nullptr)
    return invalid("wolfSSL_CTX_new failed (out of memory?)");
  WOLFSSL_CTX* ctx = self->ctx_;

  for (size_t i = 0; i < creds.anchors_der.size(); ++i) {
    const std::string& a = creds.anchors_der[i];
    int r = wolfSSL_CTX_load_verify_buffer(ctx, bytes(a), static_cast<long>(a.size()), WOLFSSL_FILETYPE_ASN1);
    if (r != WOLFSSL_SUCCESS) return invalid("trust anchor " + std::to_string(i) + ": " + wolf_error(r));
  }

  if (!anonymous_client)
    if (auto ok = self->use_certificate(creds); !ok) return std::unexpected(ok.error());

  int verify = WOLFSSL_VERIFY_PEER;
  if (peer == PeerCert::kRequired) verify |= WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  wolfSSL_CTX_set_verify(ctx, verify, nullptr);
  if (wolfSSL_CTX_set_cipher_list(ctx, "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256") != WOLFSSL_SUCCESS)
    return invalid("cipher list: TLS13-CHACHA20-POLY1305-SHA256 or TLS13-AES128-GCM-SHA256 not available");
  int groups[] = {WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1};
  if (wolfSSL_CTX_set_groups(ctx, groups, 2) != WOLFSSL_SUCCESS) return invalid("key share groups: X25519, P-256");

  // Resumption: the server issues stateless tickets (the key is this CTX's,
  // so every worker accepts them) and keeps no session cache; the client's
  // tickets live in each worker's ClientSessionCache, not wolfSSL's global one
  // (whose lock every worker would share).
  wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
  // Returns the previous timeout in this OpenSSL-compatible build, not a status.
  (void)wolfSSL_CTX_set_timeout(ctx, kSessionTimeoutSeconds);
  if (role == Role::kServer && wolfSSL_CTX_UseSessionTicket(ctx) != WOLFSSL_SUCCESS)
    return invalid("session tickets: not supported by this wolfSSL");

  // The sessions move ciphertext through memory, never a socket.
  wolfSSL_CTX_SetIORecv(ctx, &TlsSession::io_recv);
  wolfSSL_CTX_SetIOSend(ctx, &TlsSession::io_send);
  return std::shared_ptr<const TlsContext>(std::move(self));
}

}  // namespace meshd::transport
