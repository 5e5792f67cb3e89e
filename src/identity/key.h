// A P-256 ECDSA private key, kept in memory. Workload keys never touch disk;
// only `meshd-ctl identity init` writes the issuer key, with mode 0600.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"

// wolfSSL's key type, declared here so that users of this header need no
// wolfSSL include; the library reaches it through key_access.h.
struct ecc_key;

namespace meshd::identity {

class PrivateKey {
 public:
  // Each call makes its own RNG: a WC_RNG must not be shared across threads.
  static Parsed<PrivateKey> generate();
  // SEC1 "EC PRIVATE KEY" DER, the form der() writes.
  static Parsed<PrivateKey> from_der(std::string_view der);
  // The first "EC PRIVATE KEY" PEM block.
  static Parsed<PrivateKey> from_pem(std::string_view pem);

  PrivateKey(PrivateKey&&) noexcept;
  PrivateKey& operator=(PrivateKey&&) noexcept;
  PrivateKey(const PrivateKey&) = delete;
  PrivateKey& operator=(const PrivateKey&) = delete;
  ~PrivateKey();

  std::string der() const;         // SEC1 DER (wc_EccKeyToDer)
  std::string pem() const;         // "EC PRIVATE KEY" PEM
  std::string public_der() const;  // SubjectPublicKeyInfo DER

 private:
  struct Impl;
  explicit PrivateKey(std::unique_ptr<Impl> impl);
  // For signing inside the library (csr.cc, cert.cc, via key_access.h).
  ecc_key* raw() const;
  friend struct KeyAccess;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshd::identity
