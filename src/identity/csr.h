// Certificate signing requests: the proxy makes one for its in-memory key;
// the controller checks one before issuing a leaf.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "identity/key.h"

namespace meshd::identity {

inline constexpr size_t kMaxCsrBytes = 4096;

// CSR DER: empty subject, a single URI SAN = identity, SHA256withECDSA.
Parsed<std::string> make_csr(const PrivateKey& key, std::string_view identity);

struct CsrInfo {
  std::string identity;        // the one URI SAN, a valid SPIFFE ID
  std::string public_key_der;  // SubjectPublicKeyInfo DER (P-256)
};

// Rejects, with a reason: over kMaxCsrBytes, unparseable, a signature that
// does not verify (no proof of possession), a key that is not EC P-256, not
// exactly one URI SAN, any DNS/IP/email SAN, a URI that is not a valid
// SPIFFE ID. The caller compares identity with what the credential grants.
Parsed<CsrInfo> check_csr(std::string_view csr_der);

}  // namespace meshd::identity
