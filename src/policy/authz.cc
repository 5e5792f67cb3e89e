#include "policy/authz.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <set>

namespace meshd::policy {

namespace {
constexpr std::string_view kScheme = "spiffe://";
}  // namespace

std::string_view name(DefaultPolicy p) noexcept {
  switch (p) {
    case DefaultPolicy::kAllUnauthenticated: return "all-unauthenticated";
    case DefaultPolicy::kAllAuthenticated: return "all-authenticated";
    case DefaultPolicy::kDeny: return "deny";
  }
  return "deny";
}

Parsed<DefaultPolicy> parse_default_policy(std::string_view text) {
  for (auto p : {DefaultPolicy::kAllUnauthenticated, DefaultPolicy::kAllAuthenticated, DefaultPolicy::kDeny})
    if (text == name(p)) return p;
  return invalid("default policy '" + std::string(text) + "' is not all-unauthenticated, all-authenticated or deny");
}

std::optional<DefaultPolicy> from_proto(proto::DefaultPolicy p) noexcept {
  switch (p) {
    case proto::DEFAULT_POLICY_ALL_UNAUTHENTICATED: return DefaultPolicy::kAllUnauthenticated;
    case proto::DEFAULT_POLICY_ALL_AUTHENTICATED: return DefaultPolicy::kAllAuthenticated;
    case proto::DEFAULT_POLICY_DENY: return DefaultPolicy::kDeny;
    default: return std::nullopt;
  }
}

proto::DefaultPolicy to_proto(DefaultPolicy p) noexcept {
  switch (p) {
    case DefaultPolicy::kAllUnauthenticated: return proto::DEFAULT_POLICY_ALL_UNAUTHENTICATED;
    case DefaultPolicy::kAllAuthenticated: return proto::DEFAULT_POLICY_ALL_AUTHENTICATED;
    case DefaultPolicy::kDeny: return proto::DEFAULT_POLICY_DENY;
  }
  return proto::DEFAULT_POLICY_DENY;
}

// ---- identity patterns ----

namespace {

bool trust_domain_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}
bool path_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

// Empty when td is a trust domain as SPIFFE writes them, else why not.
std::string check_trust_domain(std::string_view td) {
  if (td.empty()) return "the trust domain is empty";
  for (char c : td)
    if (!trust_domain_char(c))
      return "trust domain '" + std::string(td) + "' may only hold lowercase letters, digits, '.', '-' and '_'";
  return {};
}

// id is "spiffe://TD" or "spiffe://TD/SEG/SEG...".
std::string check_spiffe_id(std::string_view id) {
  if (!id.starts_with(kScheme)) return "not a spiffe:// ID (nor \"*\" or \"*.SUFFIX\")";
  std::string_view rest = id.substr(kScheme.size());
  size_t slash = rest.find('/');
  if (auto why = check_trust_domain(rest.substr(0, slash)); !why.empty()) return why;
  if (slash == std::string_view::npos) return {};
  std::string_view path = rest.substr(slash);  // "/a/b"
  while (!path.empty()) {
    path.remove_prefix(1);
    size_t end = std::min(path.find('/'), path.size());
    std::string_view seg = path.substr(0, end);
    if (seg.empty()) return "the path has an empty segment (\"//\" or a trailing '/')";
    if (seg == "." || seg == "..") return "the path has a '.' or '..' segment";
    for (char c : seg)
      if (!path_char(c))
        return "path segment '" + std::string(seg) + "' may only hold letters, digits, '.', '-' and '_'";
    path.remove_prefix(end);
  }
  return {};
}

}  // namespace

Parsed<IdentityPattern> IdentityPattern::parse(std::string_view text) {
  auto bad = [&](const std::string& why) { return invalid("identity pattern '" + std::string(text) + "': " + why); };
  if (text.empty()) return invalid("identity pattern is empty");
  if (text.size() > kMaxPatternSize)
    return invalid("identity pattern of " + std::to_string(text.size()) + " bytes is over " +
                   std::to_string(kMaxPatternSize));
  IdentityPattern p;
  p.text_ = std::string(text);
  size_t stars = std::count(text.begin(), text.end(), '*');
  if (text == "*") {
    p.kind_ = Kind::kAnyAuthenticated;
    return p;
  }
  constexpr const char* kWhereStars = "'*' may only be the whole pattern, a leading \"*.\" or a trailing \"/*\"";
  if (text.starts_with("*.")) {
    if (stars != 1) return bad(kWhereStars);
    std::string_view suffix = text.substr(2);
    if (suffix.find('/') != std::string_view::npos || suffix.find(':') != std::string_view::npos)
      return bad("\"*.SUFFIX\" names trust domains only; write spiffe://TRUST-DOMAIN/PATH/* to match paths");
    if (auto why = check_trust_domain(suffix); !why.empty()) return bad(why);
    if (suffix.front() == '.' || suffix.back() == '.' || suffix.find("..") != std::string_view::npos)
      return bad("the suffix has an empty label");
    p.kind_ = Kind::kTrustDomainSuffix;
    return p;
  }
  if (text.ends_with("/*")) {
    if (stars != 1) return bad(kWhereStars);
    if (auto why = check_spiffe_id(text.substr(0, text.size() - 2)); !why.empty()) return bad(why);
    p.kind_ = Kind::kPathPrefix;
    return p;
  }
  if (stars != 0) return bad(kWhereStars);
  if (auto why = check_spiffe_id(text); !why.empty()) return bad(why);
  p.kind_ = Kind::kExact;
  return p;
}

bool IdentityPattern::matches(std::string_view identity) const noexcept {
  if (identity.empty()) return false;
  std::string_view pattern = text_;
  switch (kind_) {
    case Kind::kAnyAuthenticated: return true;
    case Kind::kPathPrefix: {
      std::string_view prefix = pattern.substr(0, pattern.size() - 1);  // keeps the '/'
      return identity.size() > prefix.size() && identity.starts_with(prefix);
    }
    case Kind::kTrustDomainSuffix: {
      if (!identity.starts_with(kScheme)) return false;
      std::string_view rest = identity.substr(kScheme.size());
      std::string_view td = rest.substr(0, rest.find('/'));
      std::string_view suffix = pattern.substr(1);  // keeps the '.'
      return td.size() > suffix.size() && td.ends_with(suffix);
    }
    case Kind::kExact: return identity == pattern;
  }
  return false;
}

// ---- networks ----

Parsed<Network> Network::parse(std::string_view text) {
  auto cidr = Cidr::parse(text);
  if (!cidr) return invalid("network " + cidr.error());
  Network n;
  n.text_ = cidr->str();
  n.family_ = cidr->family();
  n.prefix_ = cidr->prefix();
  // Cidr keeps its bytes to itself; its canonical text carries them.
  std::string host = n.text_.substr(0, n.text_.find('/'));
  if (inet_pton(n.family_, host.c_str(), n.bytes_) != 1)
    return invalid("network '" + std::string(text) + "' is not a subnet");
  return n;
}

bool Network::contains(const SocketAddr& client) const noexcept {
  const uint8_t* bytes = nullptr;
  if (client.family() == AF_INET) {
    if (family_ != AF_INET) return false;
    bytes = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(client.sa())->sin_addr);
  } else if (client.family() == AF_INET6) {
    const auto* a6 = &reinterpret_cast<const sockaddr_in6*>(client.sa())->sin6_addr;
    bytes = reinterpret_cast<const uint8_t*>(a6);
    if (family_ == AF_INET) {
      if (!IN6_IS_ADDR_V4MAPPED(a6)) return false;
      bytes += 12;
    }
  } else {
    return false;
  }
  int whole = prefix_ / 8, bits = prefix_ % 8;
  if (std::memcmp(bytes, bytes_, static_cast<size_t>(whole)) != 0) return false;
  if (bits == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - bits));
  return (bytes[whole] & mask) == bytes_[whole];
}

// ---- rules ----

Parsed<Rule> Rule::compile(const proto::AuthorizationRule& rule) {
  const std::string& n = rule.name();
  if (n.empty()) return invalid("a rule has no name (it names the decision in metrics)");
  if (n.size() > kMaxRuleName)
    return invalid("rule name '" + n.substr(0, kMaxRuleName) + "...' is over " + std::to_string(kMaxRuleName) +
                   " characters");
  for (char c : n)
    if (!path_char(c)) return invalid("rule name '" + n + "' may only hold letters, digits, '.', '-' and '_'");
  auto bad = [&](const std::string& why) { return invalid("rule '" + n + "': " + why); };
  if (rule.identities().empty() && rule.networks().empty())
    return bad(
        "no identities and no networks would allow every client; if that is meant, say default = "
        "\"all-unauthenticated\"");
  if (static_cast<size_t>(rule.identities_size()) > kMaxMatchersPerRule ||
      static_cast<size_t>(rule.networks_size()) > kMaxMatchersPerRule)
    return bad("more than " + std::to_string(kMaxMatchersPerRule) + " identities or networks");
  Rule out;
  out.name_ = n;
  out.identities_.reserve(static_cast<size_t>(rule.identities_size()));
  for (const auto& text : rule.identities()) {
    auto p = IdentityPattern::parse(text);
    if (!p) return bad(p.error());
    out.identities_.push_back(std::move(*p));
  }
  out.networks_.reserve(static_cast<size_t>(rule.networks_size()));
  for (const auto& text : rule.networks()) {
    auto net = Network::parse(text);
    if (!net) return bad(net.error());
    out.networks_.push_back(std::move(*net));
  }
  return out;
}

bool Rule::allows(const Client& client) const noexcept {
  if (!identities_.empty() && std::none_of(identities_.begin(), identities_.end(),
                                           [&](const IdentityPattern& p) { return p.matches(client.identity); }))
    return false;
  if (!networks_.empty() &&
      std::none_of(networks_.begin(), networks_.end(), [&](const Network& n) { return n.contains(client.address); }))
    return false;
  return true;
}

// ---- port policies ----

Parsed<PortPolicy> PortPolicy::compile(const proto::InboundPolicy& policy, DefaultPolicy fallback) {
  std::string where = "policy for port " + std::to_string(policy.port()) + ": ";
  if (policy.port() > 65535) return invalid(where + "the port is not 0-65535 (0: every port)");
  PortPolicy out;
  out.port_ = static_cast<uint16_t>(policy.port());
  if (policy.default_policy() == proto::DEFAULT_POLICY_UNSPECIFIED) {
    out.default_ = fallback;
  } else if (auto d = from_proto(policy.default_policy())) {
    out.default_ = *d;
  } else {
    return invalid(where + "default policy " + std::to_string(static_cast<int>(policy.default_policy())) +
                   " is unknown to this meshd");
  }
  if (static_cast<size_t>(policy.rules_size()) > kMaxRules)
    return invalid(where + std::to_string(policy.rules_size()) + " rules, more than " + std::to_string(kMaxRules));
  out.rules_.reserve(static_cast<size_t>(policy.rules_size()));
  std::set<std::string_view> names;
  for (const auto& r : policy.rules()) {
    auto rule = Rule::compile(r);
    if (!rule) return invalid(where + rule.error());
    if (!names.insert(r.name()).second) return invalid(where + "rule name '" + r.name() + "' is used twice");
    out.rules_.push_back(std::move(*rule));
  }
  return out;
}

PortPolicy PortPolicy::default_only(uint16_t port, DefaultPolicy default_policy) {
  PortPolicy out;
  out.port_ = port;
  out.default_ = default_policy;
  return out;
}

Decision PortPolicy::authorize(const Client& client) const noexcept {
  for (const Rule& r : rules_)
    if (r.allows(client)) return {true, r.name(), ""};
  switch (default_) {
    case DefaultPolicy::kAllUnauthenticated: return {true, "default:all-unauthenticated", ""};
    case DefaultPolicy::kAllAuthenticated:
      if (!client.identity.empty()) return {true, "default:all-authenticated", ""};
      return {false, "default:all-authenticated", "unauthenticated"};
    case DefaultPolicy::kDeny: break;
  }
  return {false, "default:deny", "default_deny"};
}

void PortPolicy::write_json(JsonWriter& w) const {
  w.begin_object();
  w.field("port", static_cast<uint64_t>(port_));
  w.field("default", name(default_));
  w.key("rules").begin_array();
  for (const Rule& r : rules_) {
    w.begin_object();
    w.field("name", r.name());
    w.key("identities").begin_array();
    for (const auto& p : r.identities()) w.value(p.str());
    w.end_array();
    w.key("networks").begin_array();
    for (const auto& n : r.networks()) w.value(n.str());
    w.end_array();
    w.end_object();
  }
  w.end_array();
  w.end_object();
}

std::string policy_key(uint16_t port) { return std::string(kPolicyKeyPrefix) + std::to_string(port); }

std::optional<uint16_t> policy_key_port(std::string_view key) noexcept {
  if (!is_policy_key(key)) return std::nullopt;
  std::string_view digits = key.substr(kPolicyKeyPrefix.size());
  // One spelling per port, so that "policy:080" cannot be a second key for 80.
  if (digits.empty() || digits.size() > 5 || (digits.size() > 1 && digits.front() == '0')) return std::nullopt;
  uint32_t port = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port > 65535) return std::nullopt;
  return static_cast<uint16_t>(port);
}

// ---- the table ----

PolicyTable::PolicyTable(DefaultPolicy fallback) : fallback_(PortPolicy::default_only(0, fallback)) {}

Parsed<PolicyTable> PolicyTable::build(std::span<const proto::InboundPolicy> policies, DefaultPolicy fallback) {
  PolicyTable t(fallback);
  t.policies_.reserve(policies.size());
  for (const auto& p : policies) {
    auto compiled = PortPolicy::compile(p, fallback);
    if (!compiled) return invalid(compiled.error());
    t.policies_.push_back(std::move(*compiled));
  }
  std::sort(t.policies_.begin(), t.policies_.end(),
            [](const PortPolicy& a, const PortPolicy& b) { return a.port() < b.port(); });
  for (size_t i = 1; i < t.policies_.size(); ++i)
    if (t.policies_[i].port() == t.policies_[i - 1].port()) {
      uint16_t port = t.policies_[i].port();
      return invalid("two policies for port " + std::to_string(port) + (port == 0 ? " (every port)" : ""));
    }
  return t;
}

const PortPolicy& PolicyTable::for_port(uint16_t port) const noexcept {
  auto it = std::lower_bound(policies_.begin(), policies_.end(), port,
                             [](const PortPolicy& p, uint16_t want) { return p.port() < want; });
  if (it != policies_.end() && it->port() == port && port != 0) return *it;
  if (!policies_.empty() && policies_.front().port() == 0) return policies_.front();
  return fallback_;
}

void PolicyTable::write_json(JsonWriter& w) const {
  w.begin_object();
  w.field("fallback", name(fallback()));
  w.key("policies").begin_array();
  for (const auto& p : policies_) p.write_json(w);
  w.end_array();
  w.end_object();
}

std::string PolicyTable::to_json() const {
  JsonWriter w;
  write_json(w);
  return w.take();
}

}  // namespace meshd::policy
