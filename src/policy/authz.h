// Inbound authorization: who may connect to a port of this workload.
//
// A policy (proto::InboundPolicy, from the controller's registry or the
// proxy's own --policy-file) guards one inbound port, or every port (port 0).
// Its rules only ever allow: the first rule that matches the client allows
// the connection and is named in metrics; when none matches, the policy's
// default decides. Policies are compiled once into an immutable PolicyTable
// that worker threads share (std::shared_ptr<const PolicyTable>); a new
// table applies to connections accepted after it is published. Evaluating
// one allocates nothing.
//
// Identity patterns (AuthorizationRule.identities), matched against the
// client's verified SPIFFE ID; a client without one matches none of them:
//
//   pattern                  matches                         does not match
//   "*"                      any authenticated client        a client with no identity
//   "spiffe://td/ns/prod/*"  spiffe://td/ns/prod/sa/web,     spiffe://td/ns/prod,
//                            spiffe://td/ns/prod/a/b/c       spiffe://td/ns/production/sa/x
//   "spiffe://td/*"          every ID of trust domain td     spiffe://td, spiffe://td2/x
//   "*.mesh.local"           spiffe://a.mesh.local/x,        spiffe://mesh.local/x,
//                            spiffe://b.a.mesh.local         spiffe://amesh.local/x
//   "spiffe://td/sa/web"     exactly that ID                 spiffe://td/sa/web/x
//
// - "PREFIX/*" matches IDs that start with "PREFIX/" and go on: one or
//   more path segments below PREFIX, never PREFIX itself.
// - "*.SUFFIX" matches IDs whose trust domain (the host between
//   "spiffe://" and the first '/') ends with ".SUFFIX": one or more labels
//   in front, any path. Like a TLS wildcard it does not match the trust
//   domain SUFFIX itself; write "spiffe://SUFFIX/*" for that. Unlike one,
//   it matches any number of labels.
// - Anything else is an exact ID.
// Patterns follow the SPIFFE ID rules, so a pattern that could never match
// is refused rather than silently ignored: a trust domain of lowercase
// letters, digits, '.', '-' and '_'; path segments of letters, digits, '.',
// '-' and '_', neither empty nor "." or ".."; at most 2048 bytes. A '*'
// anywhere but the three places above is an error.
//
// Networks (AuthorizationRule.networks) are CIDRs. An IPv4 CIDR also
// matches an IPv4-mapped IPv6 client (::ffff:10.0.0.1, what a dual-stack
// listener reports for IPv4 clients).
//
// A rule allows a client when (identities is empty or one matches) and
// (networks is empty or one contains the client's address). A rule with
// neither is refused: it would allow every client, which is what
// default = "all-unauthenticated" says on purpose.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.h"
#include "base/json.h"
#include "base/result.h"
#include "proto/registry.pb.h"

namespace meshd::policy {

enum class DefaultPolicy : uint8_t { kAllUnauthenticated, kAllAuthenticated, kDeny };

// "all-unauthenticated", "all-authenticated", "deny".
std::string_view name(DefaultPolicy p) noexcept;
Parsed<DefaultPolicy> parse_default_policy(std::string_view text);
// DEFAULT_POLICY_UNSPECIFIED (and values this build does not know) give nullopt.
std::optional<DefaultPolicy> from_proto(proto::DefaultPolicy p) noexcept;
proto::DefaultPolicy to_proto(DefaultPolicy p) noexcept;

// Bounds on what a policy from a peer may hold.
inline constexpr size_t kMaxRules = 256;             // per policy
inline constexpr size_t kMaxMatchersPerRule = 1024;  // identities, and networks, per rule
inline constexpr size_t kMaxRuleName = 63;
inline constexpr size_t kMaxPatternSize = 2048;  // the SPIFFE ID limit

class IdentityPattern {
 public:
  enum class Kind : uint8_t { kAnyAuthenticated, kPathPrefix, kTrustDomainSuffix, kExact };
  // The error says what is wrong with the text.
  static Parsed<IdentityPattern> parse(std::string_view text);
  // identity: the client's SPIFFE ID, empty when it has none.
  bool matches(std::string_view identity) const noexcept;
  Kind kind() const noexcept { return kind_; }
  const std::string& str() const noexcept { return text_; }

 private:
  std::string text_;
  Kind kind_ = Kind::kExact;
};

class Network {
 public:
  static Parsed<Network> parse(std::string_view text);  // "10.0.0.0/8", "fd00::/8", "10.0.0.7"
  bool contains(const SocketAddr& client) const noexcept;
  const std::string& str() const noexcept { return text_; }  // canonical: host bits cleared

 private:
  std::string text_;
  int family_ = 0;
  int prefix_ = 0;
  uint8_t bytes_[16] = {};
};

// What is known about a connecting client when the policy is evaluated.
struct Client {
  std::string_view identity;  // verified SPIFFE ID; empty: no mesh identity (plaintext or app TLS)
  SocketAddr address;
};

struct Decision {
  bool allowed = false;
  // The matching rule's name, or "default:<policy>" when the default
  // decided. Points into the PortPolicy (or static storage): valid while
  // the table snapshot it came from is held.
  std::string_view rule;
  // For denials: "default_deny" (default deny), "unauthenticated" (default
  // all-authenticated and the client has no identity); "" when allowed.
  std::string_view reason;
};

class Rule {
 public:
  // The error names the rule and what is wrong with it.
  static Parsed<Rule> compile(const proto::AuthorizationRule& rule);
  bool allows(const Client& client) const noexcept;
  const std::string& name() const noexcept { return name_; }
  std::span<const IdentityPattern> identities() const noexcept { return identities_; }
  std::span<const Network> networks() const noexcept { return networks_; }

 private:
  std::string name_;
  std::vector<IdentityPattern> identities_;
  std::vector<Network> networks_;
};

// One compiled InboundPolicy.
class PortPolicy {
 public:
  // fallback stands in for DEFAULT_POLICY_UNSPECIFIED. Errors read
  // "policy for port N: ..." and name the rule and value at fault: port
  // over 65535, unknown default, bad rules, duplicate rule names, too many
  // rules.
  static Parsed<PortPolicy> compile(const proto::InboundPolicy& policy, DefaultPolicy fallback);
  // No rules, only a default: what a port without a policy gets.
  static PortPolicy default_only(uint16_t port, DefaultPolicy default_policy);

  Decision authorize(const Client& client) const noexcept;

  uint16_t port() const noexcept { return port_; }  // 0: every port
  DefaultPolicy default_policy() const noexcept { return default_; }
  std::span<const Rule> rules() const noexcept { return rules_; }
  // {"port":8080,"default":"deny","rules":[{"name":..,"identities":[..],"networks":[..]}]}
  void write_json(JsonWriter& w) const;

 private:
  uint16_t port_ = 0;
  DefaultPolicy default_ = DefaultPolicy::kAllUnauthenticated;
  std::vector<Rule> rules_;
};

// An immutable snapshot of the policies of every inbound port.
class PolicyTable {
 public:
  // Only the fallback: every port gets it.
  explicit PolicyTable(DefaultPolicy fallback = DefaultPolicy::kAllUnauthenticated);
  // policies come from one source; two for the same port are an error
  // naming the port. The fallback applies to ports without a policy and to
  // policies that leave their default unspecified.
  static Parsed<PolicyTable> build(std::span<const proto::InboundPolicy> policies, DefaultPolicy fallback);

  // The policy for port's exact number, else the port-0 ("every port")
  // policy, else the fallback alone. The most specific policy decides
  // alone: a port's policy does not inherit the port-0 policy's rules.
  const PortPolicy& for_port(uint16_t port) const noexcept;
  Decision authorize(uint16_t port, const Client& client) const noexcept { return for_port(port).authorize(client); }

  DefaultPolicy fallback() const noexcept { return fallback_.default_policy(); }
  // Every compiled policy, port 0 first then by port.
  std::span<const PortPolicy> policies() const noexcept { return policies_; }

  // {"fallback":"deny","policies":[PortPolicy::write_json ...]}, for status.json.
  void write_json(JsonWriter& w) const;
  std::string to_json() const;

 private:
  PortPolicy fallback_;
  std::vector<PortPolicy> policies_;  // sorted by port; port 0 first when present
};

using PolicySnapshot = std::shared_ptr<const PolicyTable>;

// The registry files a service's policy for port PORT under the endpoint
// key "policy:PORT" (decimal, no leading zeros; "policy:0" for every port).
inline constexpr std::string_view kPolicyKeyPrefix = "policy:";
std::string policy_key(uint16_t port);
inline bool is_policy_key(std::string_view key) noexcept { return key.starts_with(kPolicyKeyPrefix); }
// PORT of a well-formed "policy:PORT" key; nullopt for anything else.
std::optional<uint16_t> policy_key_port(std::string_view key) noexcept;

}  // namespace meshd::policy
