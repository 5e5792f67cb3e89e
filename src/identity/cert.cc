#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include <time.h>

#include <cstring>
#include <memory>

#include "identity/cert.h"
#include "identity/der.h"
#include "identity/key_access.h"
#include "identity/spiffe.h"

namespace meshd::identity {
namespace {

constexpr size_t kMaxCertBytes = 16 * 1024;
constexpr size_t kCertBuffer = 4096;  // our certificates are well under 1 KB

struct CertFree {
  void operator()(Cert* c) const { wc_CertFree(c); }
};
struct X509Free {
  void operator()(WOLFSSL_X509* x) const { wolfSSL_X509_free(x); }
};
struct CtxFree {
  void operator()(WOLFSSL_CTX* c) const { wolfSSL_CTX_free(c); }
};
using CertPtr = std::unique_ptr<Cert, CertFree>;

const byte* bytes(std::string_view s) { return reinterpret_cast<const byte*>(s.data()); }

Parsed<void> set_validity(Cert* c, uint64_t not_before, uint64_t not_after) {
  if (not_before >= not_after) return invalid("validity: not_before must be before not_after");
  auto nb = der::encode_time(not_before);
  if (!nb) return invalid("not_before: " + nb.error());
  auto na = der::encode_time(not_after);
  if (!na) return invalid("not_after: " + na.error());
  // Raw dates, measured honoured by wc_MakeCert: daysValid is whole days only.
  memcpy(c->beforeDate, nb->data(), nb->size());
  c->beforeDateSz = static_cast<int>(nb->size());
  memcpy(c->afterDate, na->data(), na->size());
  c->afterDateSz = static_cast<int>(na->size());
  return {};
}

Parsed<void> set_serial(Cert* c, WC_RNG* rng) {
  byte serial[16];
  if (int rc = wc_RNG_GenerateBlock(rng, serial, sizeof serial); rc != 0) {
    return invalid("serial: random generator: " + wolf_error(rc));
  }
  // Positive and exactly 16 bytes in DER: top bit clear, next bit set.
  serial[0] = static_cast<byte>((serial[0] & 0x7f) | 0x40);
  memcpy(c->serial, serial, sizeof serial);
  c->serialSz = sizeof serial;
  return {};
}

// The issuer's key must be the one its certificate names, or every leaf it
// signs would fail verification far from the cause.
Parsed<void> check_issuer(const Issuer& issuer) {
  if (!KeyAccess::raw(issuer.key)) return invalid("issuer key is empty");
  auto parts = der::parse_certificate(issuer.cert_der);
  if (!parts) return invalid("issuer certificate: " + parts.error());
  if (!parts->is_ca) return invalid("issuer certificate is not a CA");
  if (parts->spki != issuer.key.public_der()) return invalid("issuer key does not match the issuer certificate");
  return {};
}

// Makes the body with the subject's key, then signs with the signer's.
Parsed<std::string> make_and_sign(Cert* c, ecc_key* subject_key, ecc_key* signer_key, WC_RNG* rng) {
  c->sigType = CTC_SHA256wECDSA;
  std::string out(kCertBuffer, '\0');
  auto* buf = reinterpret_cast<byte*>(out.data());
  int rc = wc_MakeCert_ex(c, buf, static_cast<word32>(out.size()), ECC_TYPE, subject_key, rng);
  if (rc < 0) return invalid("encoding the certificate: " + wolf_error(rc));
  rc = wc_SignCert_ex(c->bodySz, c->sigType, buf, static_cast<word32>(out.size()), ECC_TYPE, signer_key, rng);
  if (rc < 0) return invalid("signing the certificate: " + wolf_error(rc));
  out.resize(static_cast<size_t>(rc));
  return out;
}

std::string hex(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char ch : s) {
    out += kHex[ch >> 4];
    out += kHex[ch & 15];
  }
  return out;
}

struct Rng {
  WC_RNG rng;
  bool ok = false;
  int init() {
    int rc = wc_InitRng(&rng);
    ok = rc == 0;
    return rc;
  }
  ~Rng() {
    if (ok) wc_FreeRng(&rng);
  }
};

// Why a certificate is not valid at now, or nothing.
std::string date_problem(const CertInfo& c, uint64_t now) {
  if (now < c.not_before_unix_s) return "not valid before " + format_time(c.not_before_unix_s);
  if (now > c.not_after_unix_s) return "expired at " + format_time(c.not_after_unix_s);
  return {};
}

// wolfSSL reports a date error only when the signatures checked out, and
// its dates are the system clock's, not ours: those count as success.
int signature_ok(int rc) { return rc == ASN_AFTER_DATE_E || rc == ASN_BEFORE_DATE_E ? WOLFSSL_SUCCESS : rc; }

std::string chain_error(int rc) {
  switch (rc) {
    case ASN_NO_SIGNER_E: return "not signed by a trust anchor";
    case ASN_SIG_CONFIRM_E: return "signature does not verify";
    default:
      return std::string(wolfSSL_ERR_reason_error_string(static_cast<unsigned long>(rc))) + " (" + std::to_string(rc) +
             ")";
  }
}

}  // namespace

Parsed<std::string> issue_leaf(const Issuer& issuer, const CsrInfo& csr, uint64_t not_before_unix_s,
                               uint64_t not_after_unix_s) {
  if (auto ok = check_identity(csr.identity); !ok) return std::unexpected(ok.error());
  if (auto ok = check_issuer(issuer); !ok) return std::unexpected(ok.error());
  PublicKey subject;
  if (auto ok = subject.load(csr.public_key_der); !ok) return invalid("leaf " + ok.error());
  CertPtr c(wc_CertNew(nullptr));
  if (!c) return invalid("out of memory");
  if (auto ok = set_validity(c.get(), not_before_unix_s, not_after_unix_s); !ok) return std::unexpected(ok.error());
  const auto isz = static_cast<int>(issuer.cert_der.size());
  if (int rc = wc_SetIssuerBuffer(c.get(), bytes(issuer.cert_der), isz); rc < 0) {
    return invalid("issuer name: " + wolf_error(rc));
  }
  if (int rc = wc_SetAuthKeyIdFromCert(c.get(), bytes(issuer.cert_der), isz); rc < 0) {
    return invalid("authority key id: " + wolf_error(rc));
  }
  if (int rc = wc_SetKeyUsage(c.get(), "digitalSignature"); rc < 0) return invalid("key usage: " + wolf_error(rc));
  if (int rc = wc_SetExtKeyUsage(c.get(), "serverAuth,clientAuth"); rc < 0) {
    return invalid("extended key usage: " + wolf_error(rc));
  }
  // The subject is empty, so RFC 5280 wants the SAN critical.
  const std::string san = der::uri_general_names(csr.identity);
  if (san.size() > sizeof c->altNames) return invalid("identity too long");
  memcpy(c->altNames, san.data(), san.size());
  c->altNamesSz = static_cast<int>(san.size());
  c->altNamesCrit = 1;
  Rng rng;
  if (int rc = rng.init(); rc != 0) return invalid("random generator: " + wolf_error(rc));
  if (auto ok = set_serial(c.get(), &rng.rng); !ok) return std::unexpected(ok.error());
  return make_and_sign(c.get(), subject.raw(), KeyAccess::raw(issuer.key), &rng.rng);
}

Parsed<std::string> make_ca(const PrivateKey& key, std::string_view common_name, uint64_t not_before_unix_s,
                            uint64_t not_after_unix_s, const Issuer* parent, int path_len) {
  ecc_key* k = KeyAccess::raw(key);
  if (!k) return invalid("CA key is empty");
  if (common_name.empty() || common_name.size() >= CTC_NAME_SIZE) {
    return invalid("CA common name must be 1.." + std::to_string(CTC_NAME_SIZE - 1) + " bytes");
  }
  if (path_len > 255) return invalid("path length above 255");
  if (parent) {
    if (auto ok = check_issuer(*parent); !ok) return std::unexpected(ok.error());
  }
  CertPtr c(wc_CertNew(nullptr));
  if (!c) return invalid("out of memory");
  if (auto ok = set_validity(c.get(), not_before_unix_s, not_after_unix_s); !ok) return std::unexpected(ok.error());
  memcpy(c->subject.commonName, common_name.data(), common_name.size());
  c->subject.commonName[common_name.size()] = '\0';
  c->isCA = 1;
  if (path_len >= 0) {
    c->pathLen = static_cast<byte>(path_len);
    c->pathLenSet = 1;
  }
  if (int rc = wc_SetKeyUsage(c.get(), "keyCertSign,cRLSign"); rc < 0) return invalid("key usage: " + wolf_error(rc));
  if (int rc = wc_SetSubjectKeyIdFromPublicKey_ex(c.get(), ECC_TYPE, k); rc < 0) {
    return invalid("subject key id: " + wolf_error(rc));
  }
  ecc_key* signer = k;
  if (parent) {
    const auto psz = static_cast<int>(parent->cert_der.size());
    if (int rc = wc_SetIssuerBuffer(c.get(), bytes(parent->cert_der), psz); rc < 0) {
      return invalid("issuer name: " + wolf_error(rc));
    }
    if (int rc = wc_SetAuthKeyIdFromCert(c.get(), bytes(parent->cert_der), psz); rc < 0) {
      return invalid("authority key id: " + wolf_error(rc));
    }
    signer = KeyAccess::raw(parent->key);
  }
  Rng rng;
  if (int rc = rng.init(); rc != 0) return invalid("random generator: " + wolf_error(rc));
  if (auto ok = set_serial(c.get(), &rng.rng); !ok) return std::unexpected(ok.error());
  return make_and_sign(c.get(), k, signer, &rng.rng);
}

Parsed<CertInfo> parse_cert(std::string_view der) {
  if (der.empty()) return invalid("certificate is empty");
  if (der.size() > kMaxCertBytes)
    return invalid("certificate is larger than " + std::to_string(kMaxCertBytes) + " bytes");
  auto parts = der::parse_certificate(der);
  if (!parts) return invalid("certificate is not parseable: " + parts.error());
  // wolfSSL must accept it too, or a handshake would refuse it later.
  std::unique_ptr<WOLFSSL_X509, X509Free> x(
      wolfSSL_X509_d2i(nullptr, reinterpret_cast<const unsigned char*>(der.data()), static_cast<int>(der.size())));
  if (!x) return invalid("certificate is not parseable (wolfSSL refused it)");
  CertInfo info;
  int uris = 0;
  for (const der::GeneralName& n : parts->alt_names) {
    if (n.tag != der::kSanUri) continue;
    ++uris;
    info.identity = n.value;
  }
  if (uris != 1) info.identity.clear();
  info.subject_cn = parts->subject_cn;
  auto nb = der::decode_time(parts->not_before);
  if (!nb) return invalid("certificate notBefore: " + nb.error());
  auto na = der::decode_time(parts->not_after);
  if (!na) return invalid("certificate notAfter: " + na.error());
  info.not_before_unix_s = *nb;
  info.not_after_unix_s = *na;
  info.is_ca = parts->is_ca;
  info.public_key_der = parts->spki;
  std::string_view serial = parts->serial;
  while (serial.size() > 1 && serial[0] == '\0') serial.remove_prefix(1);
  info.serial_hex = hex(serial);
  return info;
}

Parsed<CertInfo> verify_chain(std::string_view leaf_der, const std::vector<std::string>& intermediates_der,
                              const std::vector<std::string>& anchors_der, uint64_t now_unix_s) {
  auto leaf = parse_cert(leaf_der);
  if (!leaf) return invalid("leaf: " + leaf.error());
  if (anchors_der.empty()) return invalid("no trust anchors");
  if (intermediates_der.size() > kMaxChainCerts || anchors_der.size() > kMaxChainCerts * 4) {
    return invalid("too many certificates in the chain or the trust bundle");
  }
  std::unique_ptr<WOLFSSL_CTX, CtxFree> ctx(wolfSSL_CTX_new(wolfTLSv1_3_client_method()));
  if (!ctx) return invalid("out of memory");
  // wolfSSL checks dates against the system clock; ours are checked here
  // against now_unix_s, so its date errors are waived while loading and an
  // out-of-date CA is simply not loaded.
  constexpr word32 kFlags = WOLFSSL_LOAD_FLAG_DATE_ERR_OKAY;
  std::string anchor_problems;
  size_t anchors_loaded = 0;
  for (size_t i = 0; i < anchors_der.size(); ++i) {
    auto info = parse_cert(anchors_der[i]);
    std::string why = !info ? info.error() : !info->is_ca ? "not a CA" : date_problem(*info, now_unix_s);
    if (why.empty()) {
      int rc = wolfSSL_CTX_load_verify_buffer_ex(
          ctx.get(), bytes(anchors_der[i]), static_cast<long>(anchors_der[i].size()), WOLFSSL_FILETYPE_ASN1, 0, kFlags);
      if (rc == WOLFSSL_SUCCESS) {
        ++anchors_loaded;
        continue;
      }
      why = chain_error(rc);
    }
    anchor_problems += "; trust anchor " + std::to_string(i + 1) + " " + why;
  }
  if (anchors_loaded == 0) return invalid("no usable trust anchor" + anchor_problems);

  WOLFSSL_CERT_MANAGER* cm = wolfSSL_CTX_GetCertManager(ctx.get());
  // Intermediates in any order: each loads only once its signer has, so
  // repeat until a pass adds none.
  std::vector<std::string> inter_problems(intermediates_der.size());
  std::vector<bool> loaded(intermediates_der.size(), false);
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t i = 0; i < intermediates_der.size(); ++i) {
      if (loaded[i]) continue;
      auto info = parse_cert(intermediates_der[i]);
      std::string why = !info ? info.error() : !info->is_ca ? "not a CA" : date_problem(*info, now_unix_s);
      if (why.empty()) {
        // Loading a CA does not check its signature (wolfSSL trusts what it
        // is given as a CA), so verify it against what is loaded first.
        const auto* in = bytes(intermediates_der[i]);
        const auto n = static_cast<long>(intermediates_der[i].size());
        int rc = signature_ok(wolfSSL_CertManagerVerifyBuffer(cm, in, n, WOLFSSL_FILETYPE_ASN1));
        if (rc == WOLFSSL_SUCCESS)
          rc = wolfSSL_CTX_load_verify_buffer_ex(ctx.get(), in, n, WOLFSSL_FILETYPE_ASN1, 0, kFlags);
        if (rc == WOLFSSL_SUCCESS) {
          loaded[i] = progress = true;
          continue;
        }
        why = chain_error(rc);
      }
      inter_problems[i] = why;
    }
  }

  int rc = signature_ok(
      wolfSSL_CertManagerVerifyBuffer(cm, bytes(leaf_der), static_cast<long>(leaf_der.size()), WOLFSSL_FILETYPE_ASN1));
  if (rc != WOLFSSL_SUCCESS) {
    std::string why = chain_error(rc);
    for (size_t i = 0; i < inter_problems.size(); ++i) {
      if (!inter_problems[i].empty()) why += "; intermediate " + std::to_string(i + 1) + " " + inter_problems[i];
    }
    return invalid("certificate " + (leaf->identity.empty() ? leaf->subject_cn : leaf->identity) + ": " + why +
                   anchor_problems);
  }
  if (std::string why = date_problem(*leaf, now_unix_s); !why.empty()) {
    return invalid("certificate " + (leaf->identity.empty() ? leaf->subject_cn : leaf->identity) + " " + why);
  }
  return leaf;
}

std::string format_time(uint64_t unix_s) {
  time_t t = static_cast<time_t>(unix_s);
  struct tm g;
  if (!gmtime_r(&t, &g)) return std::to_string(unix_s);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &g);
  return buf;
}

}  // namespace meshd::identity
