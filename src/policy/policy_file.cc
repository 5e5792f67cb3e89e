#include "policy/policy_file.h"

#include "config/toml.h"

#include <fstream>
#include <set>

namespace meshd::policy {
namespace {

using config::at;
using config::known_keys;
using config::string_of;

Parsed<DefaultPolicy> default_of(const std::string& path, const toml::node& n) {
  auto s = string_of(path, n, "default");
  if (!s) return invalid(s.error());
  auto d = parse_default_policy(*s);
  if (!d) return invalid(at(path, n) + d.error());
  return *d;
}

// A list of strings, each checked by check (IdentityPattern::parse or
// Network::parse) at its own line.
template <class Check>
Parsed<bool> strings_into(const std::string& path, const toml::node& n, const char* what, const char* one, Check check,
                          google::protobuf::RepeatedPtrField<std::string>* out) {
  const toml::array* a = n.as_array();
  if (a == nullptr) return invalid(at(path, n) + what + " must be an array of strings");
  if (a->size() > kMaxMatchersPerRule)
    return invalid(at(path, n) + "more than " + std::to_string(kMaxMatchersPerRule) + " " + what);
  for (const toml::node& item : *a) {
    auto s = string_of(path, item, one);
    if (!s) return invalid(s.error());
    if (auto ok = check(*s); !ok) return invalid(at(path, item) + ok.error());
    out->Add(std::move(*s));
  }
  return true;
}

Parsed<bool> rule_into(const std::string& path, const toml::node& node, proto::AuthorizationRule* rule) {
  const toml::table* t = node.as_table();
  if (t == nullptr) return invalid(at(path, node) + "a rule must be a table ([[policy.rule]])");
  if (auto r = known_keys(path, *t, {"name", "identities", "networks"}, "a rule"); !r) return r;
  const toml::node* name = t->get("name");
  if (name == nullptr) return invalid(at(path, node) + "a rule has no name (it names the decision in metrics)");
  auto n = string_of(path, *name, "name");
  if (!n) return invalid(n.error());
  rule->set_name(*n);
  if (const toml::node* ids = t->get("identities")) {
    auto ok = strings_into(path, *ids, "identities", "an identity pattern", IdentityPattern::parse,
                           rule->mutable_identities());
    if (!ok) return ok;
  }
  if (const toml::node* nets = t->get("networks")) {
    auto ok = strings_into(path, *nets, "networks", "a network", Network::parse, rule->mutable_networks());
    if (!ok) return ok;
  }
  // The rest (its name, an empty rule) is said once, by Rule::compile.
  if (auto compiled = Rule::compile(*rule); !compiled) return invalid(at(path, node) + compiled.error());
  return true;
}

}  // namespace

Parsed<proto::InboundPolicy> parse_policy_table(const toml::table& t, const std::string& path) {
  if (auto r = known_keys(path, t, {"port", "default", "rule"}, "a policy"); !r) return invalid(r.error());
  proto::InboundPolicy out;
  if (const toml::node* p = t.get("port")) {
    auto v = p->value<int64_t>();
    if (!v || *v < 0 || *v > 65535) return invalid(at(path, *p) + "port must be 0-65535 (0: every port)");
    out.set_port(static_cast<uint32_t>(*v));
  }
  if (const toml::node* d = t.get("default")) {
    auto v = default_of(path, *d);
    if (!v) return invalid(v.error());
    out.set_default_policy(to_proto(*v));
  }
  if (const toml::node* rules = t.get("rule")) {
    const toml::array* a = rules->as_array();
    if (a == nullptr) return invalid(at(path, *rules) + "rules must be written [[policy.rule]]");
    for (const toml::node& r : *a)
      if (auto ok = rule_into(path, r, out.add_rules()); !ok) return invalid(ok.error());
  }
  // Whatever spans rules (duplicate names, their number).
  if (auto compiled = PortPolicy::compile(out, DefaultPolicy::kDeny); !compiled)
    return invalid(at(path, t) + compiled.error());
  return out;
}

Parsed<PolicyFile> parse_policy_file(std::string_view text, const std::string& path) {
  toml::parse_result parsed = toml::parse(text, std::string_view(path));
  if (!parsed) {
    const auto& err = parsed.error();
    return invalid(path + ":" + std::to_string(err.source().begin.line) + ": " + std::string(err.description()));
  }
  const toml::table& root = parsed.table();
  if (auto r = known_keys(path, root, {"default", "policy"}, "the policy file"); !r) return invalid(r.error());
  PolicyFile out;
  if (const toml::node* d = root.get("default")) {
    auto v = default_of(path, *d);
    if (!v) return invalid(v.error());
    out.fallback = *v;
  }
  const toml::node* policies = root.get("policy");
  if (policies == nullptr) return out;
  const toml::array* list = policies->as_array();
  if (list == nullptr) return invalid(at(path, *policies) + "'policy' must be an array of tables ([[policy]])");
  std::set<uint32_t> ports;
  for (const toml::node& node : *list) {
    const toml::table* t = node.as_table();
    if (t == nullptr) return invalid(at(path, node) + "each policy must be a table ([[policy]])");
    auto p = parse_policy_table(*t, path);
    if (!p) return invalid(p.error());
    if (!ports.insert(p->port()).second)
      return invalid(at(path, node) + "a second policy for port " + std::to_string(p->port()) +
                     (p->port() == 0 ? " (every port)" : ""));
    out.policies.push_back(std::move(*p));
  }
  return out;
}

Parsed<PolicyFile> read_policy_file(const std::string& path) {
  constexpr size_t kMaxSize = 1u << 20;
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid("cannot read policy file " + path);
  std::string text(kMaxSize + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxSize) return invalid("policy file " + path + " is larger than 1 MiB");
  return parse_policy_file(text, path);
}

}  // namespace meshd::policy
