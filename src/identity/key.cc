#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <string.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include "identity/key.h"
#include "identity/key_access.h"
#include "identity/pem.h"

namespace meshd::identity {

struct PrivateKey::Impl {
  ecc_key key;
  bool initialized = false;
  ~Impl() {
    // wc_ecc_free zeroes the private scalar.
    if (initialized) wc_ecc_free(&key);
  }
};

namespace {

constexpr size_t kMaxKeyDer = 512;  // a P-256 SEC1 key is 121 bytes

std::string code(int rc) { return wolf_error(rc); }

// The key must be usable for signing: on P-256, with a public part that
// matches the private scalar (wc_ecc_check_key does not compare them in this
// build, and a mismatch would make every signature fail far from here).
Parsed<void> check_loaded(ecc_key* key) {
  if (wc_ecc_get_curve_id(key->idx) != ECC_SECP256R1) return invalid("private key is not on curve P-256");
  WC_RNG rng;
  if (int rc = wc_InitRng(&rng); rc != 0) return invalid("random generator: " + code(rc));
  // Timing-resistant point multiplication needs an RNG for blinding.
  wc_ecc_set_rng(key, &rng);
  std::string problem;
  if (key->type == ECC_PRIVATEKEY_ONLY) {
    if (int rc = wc_ecc_make_pub_ex(key, nullptr, &rng); rc != 0) problem = "deriving the public key: " + code(rc);
  } else if (ecc_point* derived = wc_ecc_new_point(); !derived) {
    problem = "out of memory";
  } else {
    if (int rc = wc_ecc_make_pub_ex(key, derived, &rng); rc != 0) {
      problem = "deriving the public key: " + code(rc);
    } else if (wc_ecc_cmp_point(derived, &key->pubkey) != MP_EQ) {
      problem = "its public key does not match the private key";
    }
    wc_ecc_del_point(derived);
  }
  if (problem.empty()) {
    if (int rc = wc_ecc_check_key(key); rc != 0) problem = "check failed: " + code(rc);
  }
  wc_ecc_set_rng(key, nullptr);
  wc_FreeRng(&rng);
  if (!problem.empty()) return invalid("private key: " + problem);
  return {};
}

}  // namespace

std::string wolf_error(int rc) { return std::to_string(rc) + " " + wc_GetErrorString(rc); }

PublicKey::~PublicKey() {
  if (initialized_) wc_ecc_free(&key_);
}

Parsed<void> PublicKey::load(std::string_view spki) {
  if (initialized_) {
    wc_ecc_free(&key_);
    initialized_ = false;
  }
  if (int rc = wc_ecc_init(&key_); rc != 0) return invalid("ecc init: " + code(rc));
  initialized_ = true;
  word32 idx = 0;
  int rc =
      wc_EccPublicKeyDecode(reinterpret_cast<const byte*>(spki.data()), &idx, &key_, static_cast<word32>(spki.size()));
  if (rc != 0) return invalid("public key is not an EC key (" + code(rc) + ")");
  if (idx != spki.size()) return invalid("public key has trailing data");
  if (wc_ecc_get_curve_id(key_.idx) != ECC_SECP256R1) return invalid("public key is EC but not on curve P-256");
  return {};
}

PrivateKey::PrivateKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PrivateKey::PrivateKey(PrivateKey&&) noexcept = default;
PrivateKey& PrivateKey::operator=(PrivateKey&&) noexcept = default;
PrivateKey::~PrivateKey() = default;

ecc_key* PrivateKey::raw() const { return impl_ ? &impl_->key : nullptr; }

Parsed<PrivateKey> PrivateKey::generate() {
  auto impl = std::make_unique<Impl>();
  if (int rc = wc_ecc_init(&impl->key); rc != 0) return invalid("ecc init: " + code(rc));
  impl->initialized = true;
  WC_RNG rng;
  if (int rc = wc_InitRng(&rng); rc != 0) return invalid("random generator: " + code(rc));
  int rc = wc_ecc_make_key_ex(&rng, 32, &impl->key, ECC_SECP256R1);
  wc_FreeRng(&rng);
  if (rc != 0) return invalid("generating a P-256 key: " + code(rc));
  return PrivateKey(std::move(impl));
}

Parsed<PrivateKey> PrivateKey::from_der(std::string_view der) {
  if (der.empty() || der.size() > kMaxKeyDer) return invalid("private key DER is empty or too large");
  auto impl = std::make_unique<Impl>();
  if (int rc = wc_ecc_init(&impl->key); rc != 0) return invalid("ecc init: " + code(rc));
  impl->initialized = true;
  const auto* in = reinterpret_cast<const byte*>(der.data());
  word32 idx = 0;
  int rc = wc_EccPrivateKeyDecode(in, &idx, &impl->key, static_cast<word32>(der.size()));
  if (rc != 0) {
    // PKCS#8 ("PRIVATE KEY", what `openssl genpkey` writes) wraps the same
    // SEC1 structure: skip the wrapper and try again.
    wc_ecc_free(&impl->key);
    if (wc_ecc_init(&impl->key) != 0) {
      impl->initialized = false;
      return invalid("ecc init failed");
    }
    idx = 0;
    if (wc_GetPkcs8TraditionalOffset(const_cast<byte*>(in), &idx, static_cast<word32>(der.size())) < 0) {
      return invalid("private key is not an EC key in SEC1 or PKCS#8 DER: " + code(rc));
    }
    rc = wc_EccPrivateKeyDecode(in, &idx, &impl->key, static_cast<word32>(der.size()));
    if (rc != 0) return invalid("private key is not an EC key in SEC1 or PKCS#8 DER: " + code(rc));
  }
  if (auto ok = check_loaded(&impl->key); !ok) return std::unexpected(ok.error());
  return PrivateKey(std::move(impl));
}

Parsed<PrivateKey> PrivateKey::from_pem(std::string_view pem) {
  auto blocks = pem_decode_all(pem, "EC PRIVATE KEY");
  if (!blocks) {
    auto pkcs8 = pem_decode_all(pem, "PRIVATE KEY");
    if (!pkcs8) return invalid(blocks.error());
    blocks = std::move(pkcs8);
  }
  auto key = from_der(blocks->front());
  for (auto& b : *blocks) explicit_bzero(b.data(), b.size());
  return key;
}

std::string PrivateKey::der() const {
  if (!impl_) return {};
  byte buf[kMaxKeyDer];
  int n = wc_EccKeyToDer(&impl_->key, buf, sizeof buf);
  if (n <= 0) return {};
  std::string out(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
  explicit_bzero(buf, sizeof buf);
  return out;
}

std::string PrivateKey::pem() const {
  std::string d = der();
  if (d.empty()) return {};
  std::string out = pem_encode("EC PRIVATE KEY", d);
  explicit_bzero(d.data(), d.size());
  return out;
}

std::string PrivateKey::public_der() const {
  if (!impl_) return {};
  byte buf[kMaxKeyDer];
  int n = wc_EccPublicKeyToDer(&impl_->key, buf, sizeof buf, 1);
  if (n <= 0) return {};
  return std::string(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

}  // namespace meshd::identity
