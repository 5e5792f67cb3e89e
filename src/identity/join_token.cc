#include "identity/join_token.h"

#include <random>

#include "base/parse.h"
#include "base/secret.h"
#include "identity/spiffe.h"

namespace meshd::identity {
namespace {

constexpr std::string_view kPrefix = "mjt1.";
constexpr std::string_view kRevocationPrefix = "mjr1.";

std::string random_id() {
  std::random_device rd;
  std::string raw(8, '\0');
  for (char& c : raw) c = static_cast<char>(rd());
  return hex_encode(raw);
}

Mac revocation_mac(std::string_view key, std::string_view id, uint64_t expires_unix_s) {
  return hmac_sha256(key, std::string(kRevocationPrefix) + std::string(id) + ".", std::to_string(expires_unix_s));
}

}  // namespace

bool valid_token_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > kMaxTokenIdBytes) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Parsed<std::string> mint_join_token(std::string_view key, const TokenRequest& request, uint64_t now_unix_s,
                                    proto::JoinToken* minted) {
  if (key.size() < kTokenKeyMinBytes) return invalid("the token key is shorter than 32 bytes");
  if (auto ok = check_identity(request.identity); !ok) return invalid("token identity: " + ok.error());
  if (request.ttl_s == 0 || request.ttl_s > kMaxTokenTtlS)
    return invalid("token lifetime must be between 1s and 366 days");
  proto::JoinToken t;
  t.set_id(random_id());
  t.set_identity(request.identity);
  t.set_expires_unix_s(now_unix_s + request.ttl_s);
  t.set_uses(request.uses);
  std::string signed_part = std::string(kPrefix) + hex_encode(t.SerializeAsString());
  Mac mac = hmac_sha256(key, signed_part);
  if (minted != nullptr) *minted = t;
  return signed_part + "." + hex_encode(std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()));
}

Parsed<proto::JoinToken> verify_join_token(std::string_view key, std::string_view token, uint64_t now_unix_s) {
  token = trim(token);
  if (token.size() > kMaxTokenBytes) return invalid("join token is too long");
  if (!token.starts_with(kPrefix)) return invalid("not a meshd join token (they start with mjt1.)");
  size_t dot = token.rfind('.');
  if (dot < kPrefix.size()) return invalid("join token is malformed");
  std::string_view signed_part = token.substr(0, dot);
  auto mac = hex_decode(token.substr(dot + 1));
  auto payload = hex_decode(signed_part.substr(kPrefix.size()));
  if (!mac || !payload || mac->size() != 32) return invalid("join token is malformed");
  Mac want = hmac_sha256(key, signed_part);
  if (!equal_in_constant_time(want.data(), reinterpret_cast<const uint8_t*>(mac->data()), want.size()))
    return invalid("join token was not minted with this mesh's token key");
  proto::JoinToken t;
  if (!t.ParseFromString(*payload)) return invalid("join token is malformed");
  if (!valid_token_id(t.id())) return invalid("join token has a malformed id");
  if (t.expires_unix_s() <= now_unix_s) return invalid("join token " + t.id() + " has expired");
  if (auto ok = check_identity(t.identity()); !ok) return invalid("join token " + t.id() + ": " + ok.error());
  return t;
}

proto::RevokeToken seal_revocation(std::string_view key, std::string_view id, uint64_t expires_unix_s) {
  proto::RevokeToken r;
  r.set_token_id(std::string(id));
  r.set_expires_unix_s(expires_unix_s);
  Mac mac = revocation_mac(key, id, expires_unix_s);
  r.set_mac(std::string(reinterpret_cast<const char*>(mac.data()), mac.size()));
  return r;
}

Parsed<bool> verify_revocation(std::string_view key, const proto::RevokeToken& r, uint64_t now_unix_s) {
  if (!valid_token_id(r.token_id())) return invalid("the token id is malformed (join token ids are 1-64 hex digits)");
  Mac want = revocation_mac(key, r.token_id(), r.expires_unix_s());
  if (r.mac().size() != want.size() ||
      !equal_in_constant_time(want.data(), reinterpret_cast<const uint8_t*>(r.mac().data()), want.size()))
    return invalid("the revocation of join token " + r.token_id() + " is not signed with this mesh's token key");
  if (r.expires_unix_s() <= now_unix_s)
    return invalid("join token " + r.token_id() + " has expired already: there is nothing to revoke");
  // A day of slack for the revoker's clock; no token lives longer than this.
  if (r.expires_unix_s() - now_unix_s > kMaxTokenTtlS + 86400)
    return invalid("the revocation of join token " + r.token_id() + " would outlast any token (366 days at most)");
  return true;
}

}  // namespace meshd::identity
