#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/random.h>

#include <cstring>
#include <memory>

#include "identity/csr.h"
#include "identity/der.h"
#include "identity/key_access.h"
#include "identity/spiffe.h"

namespace meshd::identity {
namespace {

struct CertFree {
  void operator()(Cert* c) const { wc_CertFree(c); }
};
struct X509Free {
  void operator()(WOLFSSL_X509* x) const { wolfSSL_X509_free(x); }
};
struct PkeyFree {
  void operator()(WOLFSSL_EVP_PKEY* k) const { wolfSSL_EVP_PKEY_free(k); }
};

const char* san_kind(uint8_t tag) {
  switch (tag) {
    case der::kSanDns: return "DNS";
    case der::kSanIp: return "IP address";
    case der::kSanEmail: return "email";
    default: return nullptr;
  }
}

}  // namespace

Parsed<std::string> make_csr(const PrivateKey& key, std::string_view identity) {
  if (auto ok = check_identity(identity); !ok) return std::unexpected(ok.error());
  ecc_key* k = KeyAccess::raw(key);
  if (!k) return invalid("CSR: the private key is empty");
  // Cert is ~25 KB: never on a worker's stack.
  std::unique_ptr<Cert, CertFree> req(wc_CertNew(nullptr));
  if (!req) return invalid("CSR: out of memory");
  req->version = 0;  // wc_InitCert's default (2) is for certificates; PKCS#10 has only v1 = 0
  req->sigType = CTC_SHA256wECDSA;
  const std::string san = der::uri_general_names(identity);
  if (san.size() > sizeof req->altNames) return invalid("CSR: identity too long");
  memcpy(req->altNames, san.data(), san.size());
  req->altNamesSz = static_cast<int>(san.size());

  std::string out(1024, '\0');
  auto* buf = reinterpret_cast<byte*>(out.data());
  int rc = wc_MakeCertReq_ex(req.get(), buf, static_cast<word32>(out.size()), ECC_TYPE, k);
  if (rc < 0) return invalid("CSR: encoding failed: " + wolf_error(rc));
  WC_RNG rng;
  if (rc = wc_InitRng(&rng); rc != 0) return invalid("CSR: random generator: " + wolf_error(rc));
  rc = wc_SignCert_ex(req->bodySz, req->sigType, buf, static_cast<word32>(out.size()), ECC_TYPE, k, &rng);
  wc_FreeRng(&rng);
  if (rc < 0) return invalid("CSR: signing failed: " + wolf_error(rc));
  out.resize(static_cast<size_t>(rc));
  return out;
}

Parsed<CsrInfo> check_csr(std::string_view csr_der) {
  if (csr_der.empty()) return invalid("CSR is empty");
  if (csr_der.size() > kMaxCsrBytes) {
    return invalid("CSR is " + std::to_string(csr_der.size()) + " bytes, more than the " +
                   std::to_string(kMaxCsrBytes) + " allowed");
  }
  // Our strict reader first, so wolfSSL only ever sees well-formed DER, and
  // because it reports every SAN type (wolfSSL keeps only some).
  auto parts = der::parse_csr(csr_der);
  if (!parts) return invalid("CSR is not parseable: " + parts.error());
  std::unique_ptr<WOLFSSL_X509, X509Free> req(wolfSSL_X509_REQ_d2i(
      nullptr, reinterpret_cast<const unsigned char*>(csr_der.data()), static_cast<int>(csr_der.size())));
  if (!req) return invalid("CSR is not parseable (wolfSSL refused it)");
  std::unique_ptr<WOLFSSL_EVP_PKEY, PkeyFree> pk(wolfSSL_X509_get_pubkey(req.get()));
  if (!pk) return invalid("CSR public key is not usable");
  if (wolfSSL_X509_REQ_verify(req.get(), pk.get()) != 1) {
    return invalid("CSR signature does not verify (no proof of possession of the key)");
  }
  PublicKey pub;
  if (auto ok = pub.load(parts->spki); !ok) return invalid("CSR key is not EC P-256: " + ok.error());

  std::string uri;
  int uris = 0;
  for (const der::GeneralName& n : parts->alt_names) {
    if (n.tag == der::kSanUri) {
      ++uris;
      uri = n.value;
      continue;
    }
    if (const char* kind = san_kind(n.tag))
      return invalid(std::string("CSR has a ") + kind + " SAN; only one URI SAN is allowed");
    char buf[64];
    snprintf(buf, sizeof buf, "CSR has a SAN of type [%u]; only one URI SAN is allowed", n.tag & 0x1fu);
    return invalid(buf);
  }
  if (uris != 1) return invalid("CSR must have exactly one URI SAN, it has " + std::to_string(uris));
  if (auto ok = check_identity(uri); !ok) return invalid("CSR URI SAN: " + ok.error());
  return CsrInfo{std::move(uri), std::string(parts->spki)};
}

}  // namespace meshd::identity
