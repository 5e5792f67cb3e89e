// Library-internal: the wolfSSL keys behind PrivateKey and SPKI blobs, for
// signing and issuing in csr.cc and cert.cc. Not for use outside
// src/identity/.
#pragma once

#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <wolfssl/wolfcrypt/ecc.h>

#include <string>
#include <string_view>

#include "base/result.h"
#include "identity/key.h"

namespace meshd::identity {

struct KeyAccess {
  static ecc_key* raw(const PrivateKey& key) { return key.raw(); }
};

// A P-256 public key decoded from SubjectPublicKeyInfo DER. Pinned in
// memory (wolfSSL keys hold internal pointers).
class PublicKey {
 public:
  PublicKey() = default;
  PublicKey(const PublicKey&) = delete;
  PublicKey& operator=(const PublicKey&) = delete;
  ~PublicKey();
  // Fails unless spki is an EC key on P-256.
  Parsed<void> load(std::string_view spki);
  ecc_key* raw() { return &key_; }

 private:
  ecc_key key_{};
  bool initialized_ = false;
};

// "-173 Bad function argument" for messages.
std::string wolf_error(int rc);

}  // namespace meshd::identity
