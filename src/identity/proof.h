// Renewal proofs: a proxy renewing its certificate signs the new CSR with the
// key of the certificate it holds now, so the controller can tell the
// renewal comes from the identity's current holder without a token (a
// one-use join token is spent by the first certificate).
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "identity/key.h"

namespace meshd::identity {

// ECDSA-SHA256 (DER signature) over "meshd-renew-v1" + csr_der.
Parsed<std::string> sign_renewal(const PrivateKey& current_key, std::string_view csr_der);

// Checks signature against the current certificate's public key (SPKI DER).
Parsed<void> verify_renewal(std::string_view spki_der, std::string_view csr_der, std::string_view signature);

}  // namespace meshd::identity
