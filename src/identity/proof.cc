#include "identity/proof.h"

#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "identity/key_access.h"

namespace meshd::identity {
namespace {

constexpr std::string_view kContext = "meshd-renew-v1";

// The context string keeps a renewal signature from being replayed as any
// other signature the key might make.
Parsed<std::string> digest(std::string_view csr_der) {
  wc_Sha256 sha;
  std::string out(WC_SHA256_DIGEST_SIZE, '\0');
  if (wc_InitSha256(&sha) != 0) return invalid("sha256 init failed");
  int rc = wc_Sha256Update(&sha, reinterpret_cast<const byte*>(kContext.data()), static_cast<word32>(kContext.size()));
  if (rc == 0)
    rc = wc_Sha256Update(&sha, reinterpret_cast<const byte*>(csr_der.data()), static_cast<word32>(csr_der.size()));
  if (rc == 0) rc = wc_Sha256Final(&sha, reinterpret_cast<byte*>(out.data()));
  wc_Sha256Free(&sha);
  if (rc != 0) return invalid("sha256: " + wolf_error(rc));
  return out;
}

}  // namespace

Parsed<std::string> sign_renewal(const PrivateKey& current_key, std::string_view csr_der) {
  auto d = digest(csr_der);
  if (!d) return std::unexpected(d.error());
  WC_RNG rng;
  if (int rc = wc_InitRng(&rng); rc != 0) return invalid("random generator: " + wolf_error(rc));
  std::string sig(ECC_MAX_SIG_SIZE, '\0');
  word32 len = static_cast<word32>(sig.size());
  int rc = wc_ecc_sign_hash(reinterpret_cast<const byte*>(d->data()), static_cast<word32>(d->size()),
                            reinterpret_cast<byte*>(sig.data()), &len, &rng, KeyAccess::raw(current_key));
  wc_FreeRng(&rng);
  if (rc != 0) return invalid("signing the renewal: " + wolf_error(rc));
  sig.resize(len);
  return sig;
}

Parsed<void> verify_renewal(std::string_view spki_der, std::string_view csr_der, std::string_view signature) {
  if (signature.empty() || signature.size() > ECC_MAX_SIG_SIZE) return invalid("renewal signature has a bad size");
  PublicKey key;
  if (auto ok = key.load(spki_der); !ok) return invalid("current certificate's key: " + ok.error());
  auto d = digest(csr_der);
  if (!d) return std::unexpected(d.error());
  int verified = 0;
  int rc = wc_ecc_verify_hash(reinterpret_cast<const byte*>(signature.data()), static_cast<word32>(signature.size()),
                              reinterpret_cast<const byte*>(d->data()), static_cast<word32>(d->size()), &verified,
                              key.raw());
  if (rc != 0 || verified != 1) return invalid("renewal signature does not verify with the current certificate's key");
  return {};
}

}  // namespace meshd::identity
