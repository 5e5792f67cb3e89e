// TlsContext: one identity's TLS settings (certificate chain, key, trust
// anchors, ALPN) for one side of the mesh's mTLS, shared by every worker.
//
// It wraps a WOLFSSL_CTX that is fully configured in create() and never
// changed afterwards: workers call wolfSSL_new on it concurrently, which
// wolfSSL allows for a CTX that nobody mutates. (The only state wolfSSL
// itself updates later, the session-ticket key, is under its own lock.) A
// certificate renewal builds a new TlsContext and publishes it as a new
// snapshot; connections started on the old one keep it alive through their
// shared_ptr until they end.
//
// Policy, the same for every mesh connection: TLS 1.3 only, both peers
// present a certificate chaining to the anchors (mutual, both ways; the
// controller's API relaxes this for its clients, see PeerCert), ALPN
// must be exactly `alpn`, ChaCha20-Poly1305 first (this wolfSSL build has no
// AES-NI, so ChaCha is 2.7x faster than AES-GCM), X25519 key shares (half the
// handshake cost of P-256; P-256 stays offered), stateless session tickets.
#pragma once

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace meshd::transport {

inline constexpr std::string_view kMeshAlpn = "meshd/1";
// The controller's API (proxies and meshd-ctl to meshd-controller).
inline constexpr std::string_view kControlAlpn = "meshd-ctl/1";

// Resumption tickets and the client's cached sessions live this long. It
// must stay well under wolfSSL's ticket-key lifetime (WOLFSSL_TICKET_KEY_LIFETIME,
// one hour): wolfSSL wants a key that outlives every ticket it seals, and
// with a timeout equal to the key's life no key ever qualifies after the
// first second, so every handshake's ticket fails (measured: all inbound
// handshakes failed ~2 s after start with 3600).
inline constexpr unsigned kSessionTimeoutSeconds = 1800;

struct TlsCredentials {
  std::vector<std::string> chain_der;  // leaf first, then intermediates
  std::string key_der;                 // SEC1 EC private key DER of the leaf
  std::vector<std::string> anchors_der;
};

enum class Role : uint8_t { kClient, kServer };

// Who must show a certificate. Between proxies, both ends (kRequired). On
// the controller's API the server always does, but a client may have none
// yet: proxies ask for their first certificate over that stream, and
// meshd-ctl has only the trust anchor (kOptional: verified when shown).
enum class PeerCert : uint8_t { kRequired, kOptional };

// wolfSSL (built with FP_ECC) keeps a per-thread cache of precomputed ECC
// points, ~3 MB once a thread has signed or verified; it is freed only by
// the thread itself. Every thread that did TLS or signing calls this last.
void release_thread_crypto() noexcept;

class TlsContext {
 public:
  // A client's chain and key may be empty: it then shows no certificate.
  static Parsed<std::shared_ptr<const TlsContext>> create(const TlsCredentials& creds, Role role,
                                                          std::string_view alpn = kMeshAlpn,
                                                          PeerCert peer = PeerCert::kRequired);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  Role role() const { return role_; }
  std::string_view alpn() const { return alpn_; }
  const std::string& leaf_der() const { return leaf_der_; }
  // Unique per context in this process (unlike the address, which a later
  // context may reuse): caches keyed on a context compare this.
  uint64_t generation() const { return generation_; }
  WOLFSSL_CTX* raw() const { return ctx_; }

 private:
  TlsContext(Role role, std::string_view alpn, std::string leaf_der);
  // Loads the chain and key, checking that they belong together.
  Parsed<void> use_certificate(const TlsCredentials& creds);

  WOLFSSL_CTX* ctx_ = nullptr;
  Role role_;
  std::string alpn_;
  std::string leaf_der_;
  uint64_t generation_;
};

}  // namespace meshd::transport
