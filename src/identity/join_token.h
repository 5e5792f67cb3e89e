// Join tokens: how a host's proxy proves, once, that it may hold an identity.
//
// `meshd-ctl identity token` mints one offline with the mesh's token key (the
// token.key that `identity init` wrote); every controller replica holding
// the same key can check it, with no shared state. A token names the one
// identity it grants and expires; it is useless for anything but Certify.
// Once the proxy has a certificate, renewals use that certificate instead
// (identity/proof.h), so a short-lived token suffices.
//
//   mjt1.<hex of the JoinToken message>.<hex of HMAC-SHA256(key, "mjt1." + payload hex)>
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "proto/api.pb.h"

namespace meshd::identity {

inline constexpr size_t kTokenKeyMinBytes = 32;
inline constexpr size_t kMaxTokenBytes = 2048;

struct TokenRequest {
  std::string identity;  // a valid SPIFFE ID
  uint64_t ttl_s = 3600;
  uint32_t uses = 1;  // 0: any number until expiry
};

// The token text; the error names what was wrong with the request.
Parsed<std::string> mint_join_token(std::string_view key, const TokenRequest& request, uint64_t now_unix_s);

// Checks the seal and the expiry. The error says why the token is refused,
// without echoing the token.
Parsed<proto::JoinToken> verify_join_token(std::string_view key, std::string_view token, uint64_t now_unix_s);

}  // namespace meshd::identity
