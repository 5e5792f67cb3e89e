// X.509 issuance and verification for the mesh CA: the root and issuer made
// by `meshd-ctl identity init`, and the short-lived leaves the controller
// signs. Times are Unix seconds and are always passed in (never read from
// the system clock here), so that tests can use a fake clock.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "identity/csr.h"
#include "identity/key.h"

namespace meshd::identity {

struct Issuer {
  std::string cert_der;
  PrivateKey key;
};

// A leaf for csr.identity, signed by issuer: random 16-byte serial, AKID,
// keyUsage digitalSignature, EKU serverAuth+clientAuth, critical URI SAN,
// empty subject, validity exact to the second. The caller backdates
// not_before for clock skew.
Parsed<std::string> issue_leaf(const Issuer& issuer, const CsrInfo& csr, uint64_t not_before_unix_s,
                               uint64_t not_after_unix_s);

// A CA certificate for key: self-signed root when parent is null, else an
// intermediate signed by parent. keyUsage keyCertSign+cRLSign, SKID, AKID
// (intermediates), path_len < 0 = unlimited.
Parsed<std::string> make_ca(const PrivateKey& key, std::string_view common_name, uint64_t not_before_unix_s,
                            uint64_t not_after_unix_s, const Issuer* parent, int path_len);

struct CertInfo {
  std::string identity;  // the URI SAN, empty if there is none or more than one
  std::string subject_cn;
  uint64_t not_before_unix_s = 0;
  uint64_t not_after_unix_s = 0;
  bool is_ca = false;
  std::string public_key_der;  // SubjectPublicKeyInfo DER
  std::string serial_hex;      // lowercase, no separators
};

Parsed<CertInfo> parse_cert(std::string_view der);

// Verifies signatures from leaf through intermediates (any order, at most
// kMaxChainCerts) up to one of anchors, and the validity at now_unix_s of
// the leaf and of every CA used. Returns the leaf's info.
inline constexpr size_t kMaxChainCerts = 8;
Parsed<CertInfo> verify_chain(std::string_view leaf_der, const std::vector<std::string>& intermediates_der,
                              const std::vector<std::string>& anchors_der, uint64_t now_unix_s);

// RFC 3339 UTC, "2025-01-02T03:04:05Z".
std::string format_time(uint64_t unix_s);

}  // namespace meshd::identity
