#include "identity/join_token.h"

#include <random>

#include "base/parse.h"
#include "base/secret.h"
#include "identity/spiffe.h"

namespace meshd::identity {
namespace {

constexpr std::string_view kPrefix = "mjt1.";
constexpr uint64_t kMaxTtlS = 366ull * 24 * 3600;

std::string random_id() {
  std::random_device rd;
  std::string raw(8, '\0');
  for (char& c : raw) c = static_cast<char>(rd());
  return hex_encode(raw);
}

}  // namespace

Parsed<std::string> mint_join_token(std::string_view key, const TokenRequest& request, uint64_t now_unix_s) {
  if (key.size() < kTokenKeyMinBytes) return invalid("the token key is shorter than 32 bytes");
  if (auto ok = check_identity(request.identity); !ok) return invalid("token identity: " + ok.error());
  if (request.ttl_s == 0 || request.ttl_s > kMaxTtlS) return invalid("token lifetime must be between 1s and 366 days");
  proto::JoinToken t;
  t.set_id(random_id());
  t.set_identity(request.identity);
  t.set_expires_unix_s(now_unix_s + request.ttl_s);
  t.set_uses(request.uses);
  std::string signed_part = std::string(kPrefix) + hex_encode(t.SerializeAsString());
  Mac mac = hmac_sha256(key, signed_part);
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
  if (t.expires_unix_s() <= now_unix_s) return invalid("join token " + t.id() + " has expired");
  if (auto ok = check_identity(t.identity()); !ok) return invalid("join token " + t.id() + ": " + ok.error());
  return t;
}

}  // namespace meshd::identity
