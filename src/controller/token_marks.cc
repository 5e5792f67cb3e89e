#include "controller/token_marks.h"

#include <random>

#include "base/secret.h"
#include "identity/join_token.h"

namespace meshd::controller {
namespace {

constexpr std::string_view kRevokedPrefix = "revoked:";
constexpr std::string_view kSpentPrefix = "spent:";

}  // namespace

std::string revoked_key(std::string_view token_id) { return std::string(kRevokedPrefix) + std::string(token_id); }

std::string spent_prefix(std::string_view token_id) { return std::string(kSpentPrefix) + std::string(token_id) + ":"; }

std::string spent_key(std::string_view token_id, std::string_view replica) {
  return spent_prefix(token_id) + std::string(replica);
}

std::string new_replica_name() {
  std::random_device rd;
  std::string raw(8, '\0');
  for (char& c : raw) c = static_cast<char>(rd());
  return hex_encode(raw);
}

Parsed<bool> validate_token_mark(const proto::Entry& e) {
  std::string_view key = e.endpoint();
  auto bad = [&](std::string_view why) {
    // The key is shown only when it is printable: it may come from a peer.
    bool printable = key.size() <= 160;
    for (char c : key) printable = printable && c >= 0x20 && c < 0x7f;
    return invalid("join-token mark '" + (printable ? std::string(key) : std::string("?")) + "' " + std::string(why));
  };
  if (e.tombstone()) return bad("is a delete (marks expire with their token, nobody removes them)");
  if (!e.has_token()) return bad("carries no mark");
  if (e.lease_ms() != 0) return bad("has a lease");
  if (e.token().expires_unix_s() == 0) return bad("has no expiry");
  if (key.starts_with(kRevokedPrefix)) {
    if (!identity::valid_token_id(key.substr(kRevokedPrefix.size()))) return bad("names no token id");
    if (e.token().spent() != 0) return bad("counts uses");
    return true;
  }
  if (key.starts_with(kSpentPrefix)) {
    std::string_view rest = key.substr(kSpentPrefix.size());
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos || !identity::valid_token_id(rest.substr(0, colon)) ||
        !identity::valid_token_id(rest.substr(colon + 1)))
      return bad("is not spent:TOKEN-ID:REPLICA");
    if (e.token().spent() == 0) return bad("counts no use");
    return true;
  }
  return bad("is neither revoked:ID nor spent:ID:REPLICA");
}

}  // namespace meshd::controller
