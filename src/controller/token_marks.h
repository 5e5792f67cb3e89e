// Join-token state the controller replicas share: revocations and uses.
//
// Kept as registry entries ("marks") in a reserved service, so that the
// merge rule, the store and gossip carry them like any other entry, with
// no protocol of their own:
//   ("meshd:join-tokens", "revoked:ID")          the token was revoked
//   ("meshd:join-tokens", "spent:ID:REPLICA")    certificates one replica granted on it
// The name is not a valid service name: no service can collide with it, no
// proxy can subscribe to it, and the registry file cannot write it
// (validate() refuses anything in it that is not a well-formed mark); the
// register API refuses it outright, so only a holder of the token key
// (RevokeToken) and the certifier write marks.
//
// Uses are a grow-only counter: each replica writes only its own
// spent:ID:REPLICA, REPLICA being random per controller process (a replica
// that restarts starts a new counter; its old one still counts), and a
// token's uses are the sum over replicas. The sum is eventually consistent.
// A replica counts another's spend once the entry reaches it: piggybacked
// on the next gossip packets (within tens of milliseconds), else by the
// next push-pull (--gossip-sync-interval, 5 s by default) when packets were
// lost, or when a partition heals. Within that window a token limited to N
// uses can be granted up to N times on each replica that has not heard yet;
// after it the total is exact and the token is refused everywhere.
// Revocations travel the same way, within the same window.
//
// Marks expire with their token: past its expiry every replica drops them
// on its own (no tombstone needed: they all agree on the time), and apply()
// ignores expired marks arriving late, so they do not come back. A replica
// keeps at most kMaxTokenMarks: at the bound, new spends and revocations
// are refused (fail closed) rather than old ones forgotten.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/result.h"
#include "proto/registry.pb.h"

namespace meshd::controller {

inline constexpr std::string_view kTokenService = "meshd:join-tokens";
inline constexpr size_t kMaxTokenMarks = 100'000;

inline bool is_token_service(std::string_view service) noexcept { return service == kTokenService; }

std::string revoked_key(std::string_view token_id);
std::string spent_key(std::string_view token_id, std::string_view replica);
// What every spent key of the token starts with (they sort together).
std::string spent_prefix(std::string_view token_id);
// A new replica name: 16 random hex digits.
std::string new_replica_name();

// Checks an entry of the reserved service: a well-formed key, a mark for a
// value, and no delete (marks expire, nobody removes them).
Parsed<bool> validate_token_mark(const proto::Entry& e);

}  // namespace meshd::controller
