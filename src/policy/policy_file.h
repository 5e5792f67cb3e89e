// The proxy's own policy file (meshd --policy-file FILE), TOML read with
// toml++ like the controller's registry file, and the one parser of a
// [[policy]] table that both files share.
//
//   default = "all-authenticated"   # optional: ports without a policy, and
//                                   # policies that set no default
//   [[policy]]
//   port = 8080                     # 0 or absent: every port
//   default = "deny"                # all-unauthenticated, all-authenticated, deny
//     [[policy.rule]]
//     name = "web-clients"
//     identities = ["spiffe://mesh.local/ns/prod/*"]
//     networks = ["10.0.0.0/8"]
//
// Unknown keys are errors: a typo must not silently open or close a port.
// Errors read "PATH:LINE: what is wrong". Pattern and rule semantics are in
// policy/authz.h.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "policy/authz.h"
#include "proto/registry.pb.h"

// Declared, not included: toml++ is header-only and heavy, and only the two
// file parsers need it. A toml++ other than major version 3 makes this
// clash with <toml++/toml.h> at compile time, not silently.
namespace toml {
inline namespace v3 {
class table;
}  // namespace v3
}  // namespace toml

namespace meshd::policy {

struct PolicyFile {
  std::optional<DefaultPolicy> fallback;  // the file's top-level default, when it sets one
  std::vector<proto::InboundPolicy> policies;
};

Parsed<PolicyFile> parse_policy_file(std::string_view text, const std::string& path);
// Reads and parses PATH (at most 1 MiB).
Parsed<PolicyFile> read_policy_file(const std::string& path);

// One [[policy]] table (keys port, default, rule) into an InboundPolicy,
// checked with PortPolicy::compile; errors "PATH:LINE: ..." name the line
// of the value at fault. Used by the policy file and by [[service.policy]]
// in the registry file.
Parsed<proto::InboundPolicy> parse_policy_table(const toml::table& table, const std::string& path);

}  // namespace meshd::policy
