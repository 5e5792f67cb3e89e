// SPIFFE IDs: the names workloads carry in their certificates' URI SAN.
//
// Only the subset meshd issues and accepts: "spiffe://" + trust domain +
// one or more path segments, no query, fragment, port or userinfo, and at
// most 200 bytes so that a SAN always fits the CSR and cert limits.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace meshd::identity {

inline constexpr size_t kMaxIdentityBytes = 200;

// Lowercase letters, digits, '.', '-', '_'; 1..255 bytes.
Parsed<void> check_trust_domain(std::string_view td);
// A full SPIFFE ID as described above; the message names the offending part.
Parsed<void> check_identity(std::string_view id);

// Builders; they do not validate (run check_identity on the result when the
// parts come from outside).
std::string host_identity(std::string_view trust_domain, std::string_view host);          // spiffe://TD/host/NAME
std::string pod_identity(std::string_view td, std::string_view ns, std::string_view sa);  // spiffe://TD/ns/NS/sa/SA
std::string controller_identity(std::string_view td);                                     // spiffe://TD/controller

// "mesh.test" for "spiffe://mesh.test/x"; empty when id is not spiffe://.
std::string_view trust_domain_of(std::string_view id);

}  // namespace meshd::identity
