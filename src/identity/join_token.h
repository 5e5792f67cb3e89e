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
//
// A token's uses and its revocation are the state the controller replicas
// share (src/controller/token_marks.h). Revoking takes the same key: a
// RevokeToken carries HMAC-SHA256(key, "mjr1." + id + "." + expiry), so
// only an operator holding token.key can revoke, and no one can replay a
// revocation for another token.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "proto/api.pb.h"

namespace meshd::identity {

inline constexpr size_t kTokenKeyMinBytes = 32;
inline constexpr size_t kMaxTokenBytes = 2048;
inline constexpr uint64_t kMaxTokenTtlS = 366ull * 24 * 3600;
inline constexpr size_t kMaxTokenIdBytes = 64;

struct TokenRequest {
  std::string identity;  // a valid SPIFFE ID
  uint64_t ttl_s = 3600;
  uint32_t uses = 1;  // 0: any number until expiry
};

// The token text; the error names what was wrong with the request. minted,
// when given, gets what the token says (its id, to revoke it by).
Parsed<std::string> mint_join_token(std::string_view key, const TokenRequest& request, uint64_t now_unix_s,
                                    proto::JoinToken* minted = nullptr);

// Checks the seal and the expiry. The error says why the token is refused,
// without echoing the token.
Parsed<proto::JoinToken> verify_join_token(std::string_view key, std::string_view token, uint64_t now_unix_s);

// Lowercase hex, 1 to 64 digits (what mint_join_token makes): the only ids
// that can name a token in the controller's registry keys.
bool valid_token_id(std::string_view id) noexcept;

// A revocation of token id (which expires at expires_unix_s), sealed with key.
proto::RevokeToken seal_revocation(std::string_view key, std::string_view id, uint64_t expires_unix_s);
// Checks a revocation's seal, and that it is worth keeping: the token has
// not expired yet, and the revocation lasts no longer than a token can.
Parsed<bool> verify_revocation(std::string_view key, const proto::RevokeToken& revocation, uint64_t now_unix_s);

}  // namespace meshd::identity
