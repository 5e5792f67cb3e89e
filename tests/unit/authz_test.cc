// Inbound authorization: the identity pattern table, rules, defaults, the
// table's lookup order, and the policy file's errors with their lines.
#include <catch2/catch.hpp>

#include "policy/authz.h"
#include "policy/policy_file.h"

using namespace meshd;
using namespace meshd::policy;

namespace {

SocketAddr addr(const char* text) {
  auto a = SocketAddr::parse(text);
  REQUIRE(a);
  return *a;
}

proto::AuthorizationRule rule(const std::string& name, std::vector<std::string> identities,
                              std::vector<std::string> networks = {}) {
  proto::AuthorizationRule r;
  r.set_name(name);
  for (auto& i : identities) r.add_identities(i);
  for (auto& n : networks) r.add_networks(n);
  return r;
}

proto::InboundPolicy inbound(uint32_t port, proto::DefaultPolicy d, std::vector<proto::AuthorizationRule> rules = {}) {
  proto::InboundPolicy p;
  p.set_port(port);
  p.set_default_policy(d);
  for (auto& r : rules) *p.add_rules() = r;
  return p;
}

PortPolicy compiled(const proto::InboundPolicy& p, DefaultPolicy fallback = DefaultPolicy::kAllUnauthenticated) {
  auto c = PortPolicy::compile(p, fallback);
  INFO((c ? std::string() : c.error()));
  REQUIRE(c);
  return std::move(*c);
}

std::string compile_error(const proto::InboundPolicy& p) {
  auto c = PortPolicy::compile(p, DefaultPolicy::kDeny);
  REQUIRE_FALSE(c);
  return c.error();
}

bool contains(const std::string& text, const char* part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("authz: identity pattern table", "[authz]") {
  struct Row {
    const char* pattern;
    const char* identity;
    bool match;
  };
  const Row rows[] = {
      // "*": any authenticated client, never a client without an identity.
      {"*", "spiffe://td/ns/prod/sa/web", true},
      {"*", "", false},
      // "PREFIX/*": one or more segments below PREFIX.
      {"spiffe://td/ns/prod/*", "spiffe://td/ns/prod/sa/web", true},
      {"spiffe://td/ns/prod/*", "spiffe://td/ns/prod/a/b/c", true},
      {"spiffe://td/ns/prod/*", "spiffe://td/ns/prod", false},
      {"spiffe://td/ns/prod/*", "spiffe://td/ns/prod/", false},
      {"spiffe://td/ns/prod/*", "spiffe://td/ns/production/sa/x", false},
      {"spiffe://td/ns/prod/*", "spiffe://td2/ns/prod/sa/web", false},
      {"spiffe://td/ns/prod/*", "", false},
      // "spiffe://TD/*": the whole trust domain.
      {"spiffe://td/*", "spiffe://td/ns/prod/sa/web", true},
      {"spiffe://td/*", "spiffe://td/host/a", true},
      {"spiffe://td/*", "spiffe://td", false},
      {"spiffe://td/*", "spiffe://td2/x", false},
      {"spiffe://td/*", "spiffe://td.evil/x", false},
      // "*.SUFFIX": trust domains ending in .SUFFIX, any number of labels,
      // not SUFFIX itself.
      {"*.mesh.local", "spiffe://a.mesh.local/ns/x/sa/y", true},
      {"*.mesh.local", "spiffe://b.a.mesh.local/x", true},
      {"*.mesh.local", "spiffe://a.mesh.local", true},
      {"*.mesh.local", "spiffe://mesh.local/x", false},
      {"*.mesh.local", "spiffe://amesh.local/x", false},
      {"*.mesh.local", "spiffe://a.mesh.local.evil/x", false},
      {"*.mesh.local", "spiffe://evil/a.mesh.local", false},  // the path is not the trust domain
      {"*.mesh.local", "https://a.mesh.local/x", false},
      {"*.mesh.local", "", false},
      // Exact.
      {"spiffe://td/sa/web", "spiffe://td/sa/web", true},
      {"spiffe://td/sa/web", "spiffe://td/sa/web/x", false},
      {"spiffe://td/sa/web", "spiffe://td/sa/we", false},
      {"spiffe://td/sa/web", "spiffe://td/sa/Web", false},
      {"spiffe://td/sa/web", "", false},
  };
  for (const auto& row : rows) {
    INFO(row.pattern << " vs '" << row.identity << "'");
    auto p = IdentityPattern::parse(row.pattern);
    REQUIRE(p);
    CHECK(p->matches(row.identity) == row.match);
  }
  REQUIRE(IdentityPattern::parse("*")->kind() == IdentityPattern::Kind::kAnyAuthenticated);
  REQUIRE(IdentityPattern::parse("spiffe://td/*")->kind() == IdentityPattern::Kind::kPathPrefix);
  REQUIRE(IdentityPattern::parse("*.td")->kind() == IdentityPattern::Kind::kTrustDomainSuffix);
  REQUIRE(IdentityPattern::parse("spiffe://td/x")->kind() == IdentityPattern::Kind::kExact);
}

TEST_CASE("authz: malformed identity patterns are refused with a reason", "[authz]") {
  struct Row {
    const char* pattern;
    const char* reason;
  };
  const Row rows[] = {
      {"", "empty"},
      {"web", "spiffe://"},
      {"https://td/x", "spiffe://"},
      {"**", "'*' may only"},
      {"spiffe://td/ns/*/sa/web", "'*' may only"},
      {"spiffe://td/ns/prod*", "'*' may only"},
      {"spiffe://td/*/*", "'*' may only"},
      {"*mesh.local", "'*' may only"},
      {"*.*.mesh.local", "'*' may only"},
      {"*.", "empty"},
      {"*.mesh..local", "empty label"},
      {"*.mesh.local/ns/x", "trust domains only"},
      {"*.Mesh.local", "lowercase"},
      {"spiffe://", "empty"},
      {"spiffe:///x", "empty"},
      {"spiffe://*", "spiffe://"},
      {"spiffe:///*", "empty"},
      {"spiffe://TD/x", "lowercase"},
      {"spiffe://td/ns//x", "empty segment"},
      {"spiffe://td/ns/", "empty segment"},
      {"spiffe://td/ns//*", "empty segment"},
      {"spiffe://td/ns/../x", "'..'"},
      {"spiffe://td/ns/a b", "letters, digits"},
  };
  for (const auto& row : rows) {
    INFO("pattern '" << row.pattern << "'");
    auto p = IdentityPattern::parse(row.pattern);
    REQUIRE_FALSE(p);
    INFO(p.error());
    CHECK(contains(p.error(), row.reason));
  }
  REQUIRE_FALSE(IdentityPattern::parse("spiffe://td/" + std::string(kMaxPatternSize, 'a')));
}

TEST_CASE("authz: networks match IPv4, IPv6 and IPv4-mapped clients", "[authz]") {
  auto v4 = Network::parse("10.1.2.3/8");
  REQUIRE(v4);
  REQUIRE(v4->str() == "10.0.0.0/8");
  CHECK(v4->contains(addr("10.200.0.1:5000")));
  CHECK_FALSE(v4->contains(addr("11.0.0.1:5000")));
  CHECK(v4->contains(addr("[::ffff:10.0.0.1]:5000")));  // a dual-stack listener's IPv4 client
  CHECK_FALSE(v4->contains(addr("[fd00::1]:5000")));
  CHECK_FALSE(v4->contains(SocketAddr()));  // no address known

  auto odd = Network::parse("192.168.4.0/22");
  REQUIRE(odd);
  CHECK(odd->contains(addr("192.168.7.255:1")));
  CHECK_FALSE(odd->contains(addr("192.168.8.0:1")));

  auto host = Network::parse("10.0.0.7");
  REQUIRE(host);
  CHECK(host->contains(addr("10.0.0.7:1")));
  CHECK_FALSE(host->contains(addr("10.0.0.8:1")));

  auto v6 = Network::parse("fd00:1::/33");
  REQUIRE(v6);
  CHECK(v6->contains(addr("[fd00:1:7fff::9]:80")));
  CHECK_FALSE(v6->contains(addr("[fd00:1:8000::9]:80")));
  CHECK_FALSE(v6->contains(addr("10.0.0.1:80")));

  auto all = Network::parse("0.0.0.0/0");
  REQUIRE(all);
  CHECK(all->contains(addr("1.2.3.4:1")));
  CHECK_FALSE(all->contains(addr("[fd00::1]:1")));

  REQUIRE_FALSE(Network::parse("10.0.0.0/33"));
  REQUIRE_FALSE(Network::parse("mesh.local/8"));
  REQUIRE_FALSE(Network::parse(""));
}

TEST_CASE("authz: defaults decide when no rule matches, with and without identity", "[authz]") {
  const Client anon{"", addr("10.0.0.1:4000")};
  const Client meshed{"spiffe://td/ns/prod/sa/web", addr("10.0.0.1:4000")};

  auto open = compiled(inbound(80, proto::DEFAULT_POLICY_ALL_UNAUTHENTICATED));
  for (const Client* c : {&anon, &meshed}) {
    auto d = open.authorize(*c);
    CHECK(d.allowed);
    CHECK(d.rule == "default:all-unauthenticated");
    CHECK(d.reason.empty());
  }

  auto authn = compiled(inbound(80, proto::DEFAULT_POLICY_ALL_AUTHENTICATED));
  auto d = authn.authorize(anon);
  CHECK_FALSE(d.allowed);
  CHECK(d.rule == "default:all-authenticated");
  CHECK(d.reason == "unauthenticated");
  d = authn.authorize(meshed);
  CHECK(d.allowed);
  CHECK(d.rule == "default:all-authenticated");
  CHECK(d.reason.empty());

  auto deny = compiled(inbound(80, proto::DEFAULT_POLICY_DENY));
  for (const Client* c : {&anon, &meshed}) {
    d = deny.authorize(*c);
    CHECK_FALSE(d.allowed);
    CHECK(d.rule == "default:deny");
    CHECK(d.reason == "default_deny");
  }

  // Unspecified: the fallback decides.
  auto unspecified = compiled(inbound(80, proto::DEFAULT_POLICY_UNSPECIFIED), DefaultPolicy::kDeny);
  CHECK(unspecified.default_policy() == DefaultPolicy::kDeny);
  CHECK_FALSE(unspecified.authorize(meshed).allowed);

  for (auto p : {DefaultPolicy::kAllUnauthenticated, DefaultPolicy::kAllAuthenticated, DefaultPolicy::kDeny}) {
    REQUIRE(parse_default_policy(name(p)) == p);
    REQUIRE(from_proto(to_proto(p)) == p);
  }
  REQUIRE_FALSE(from_proto(proto::DEFAULT_POLICY_UNSPECIFIED));
  REQUIRE(contains(parse_default_policy("allow").error(), "'allow'"));
}

TEST_CASE("authz: the first matching rule allows and is named", "[authz]") {
  auto p = compiled(inbound(8080, proto::DEFAULT_POLICY_DENY,
                            {rule("prod-from-office", {"spiffe://td/ns/prod/*"}, {"10.0.0.0/8", "fd00::/8"}),
                             rule("any-prod", {"spiffe://td/ns/prod/*"}), rule("monitoring", {}, {"192.168.0.0/16"}),
                             rule("partners", {"*.partner.example", "spiffe://td/sa/exact"})}));
  struct Row {
    const char* identity;
    const char* address;
    const char* rule;  // nullptr: denied by the default
  };
  const Row rows[] = {
      {"spiffe://td/ns/prod/sa/web", "10.1.1.1:5000", "prod-from-office"},
      {"spiffe://td/ns/prod/sa/web", "[fd00::5]:5000", "prod-from-office"},
      {"spiffe://td/ns/prod/sa/web", "172.16.0.1:5000", "any-prod"},  // identity, but another network
      {"", "10.1.1.1:5000", nullptr},                                 // network, but no identity
      {"", "192.168.1.1:5000", "monitoring"},                         // networks alone admit plaintext
      {"spiffe://td/ns/dev/sa/x", "192.168.1.1:5000", "monitoring"},
      {"spiffe://a.partner.example/x", "1.2.3.4:5000", "partners"},
      {"spiffe://td/sa/exact", "1.2.3.4:5000", "partners"},
      {"spiffe://td/ns/dev/sa/x", "1.2.3.4:5000", nullptr},
  };
  for (const auto& row : rows) {
    INFO(row.identity << " from " << row.address);
    auto d = p.authorize({row.identity, addr(row.address)});
    if (row.rule == nullptr) {
      CHECK_FALSE(d.allowed);
      CHECK(d.rule == "default:deny");
      CHECK(d.reason == "default_deny");
    } else {
      CHECK(d.allowed);
      CHECK(d.rule == row.rule);
      CHECK(d.reason.empty());
    }
  }
  REQUIRE(p.port() == 8080);
  REQUIRE(p.rules().size() == 4);
  REQUIRE(p.rules()[2].name() == "monitoring");
}

TEST_CASE("authz: invalid policies are refused with the reason and the port", "[authz]") {
  // Both lists empty: an accidental allow-all.
  auto e = compile_error(inbound(8080, proto::DEFAULT_POLICY_DENY, {rule("everyone", {})}));
  CHECK(contains(e, "policy for port 8080: rule 'everyone'"));
  CHECK(contains(e, "allow every client"));
  CHECK(contains(e, "all-unauthenticated"));

  e = compile_error(inbound(8080, proto::DEFAULT_POLICY_DENY, {rule("web", {"spiffe://td/ns/*/x"})}));
  CHECK(contains(e, "rule 'web': identity pattern 'spiffe://td/ns/*/x'"));
  e = compile_error(inbound(8080, proto::DEFAULT_POLICY_DENY, {rule("web", {}, {"10.0.0.0/40"})}));
  CHECK(contains(e, "rule 'web': network"));
  e = compile_error(inbound(70000, proto::DEFAULT_POLICY_DENY));
  CHECK(contains(e, "port 70000"));
  e = compile_error(inbound(80, static_cast<proto::DefaultPolicy>(42)));
  CHECK(contains(e, "default policy 42"));
  e = compile_error(inbound(80, proto::DEFAULT_POLICY_DENY, {rule("", {"*"})}));
  CHECK(contains(e, "no name"));
  e = compile_error(inbound(80, proto::DEFAULT_POLICY_DENY, {rule("a b", {"*"})}));
  CHECK(contains(e, "'a b'"));
  e = compile_error(inbound(80, proto::DEFAULT_POLICY_DENY, {rule(std::string(64, 'a'), {"*"})}));
  CHECK(contains(e, "63"));
  e = compile_error(inbound(80, proto::DEFAULT_POLICY_DENY, {rule("web", {"*"}), rule("web", {}, {"10.0.0.0/8"})}));
  CHECK(contains(e, "'web' is used twice"));

  proto::InboundPolicy many = inbound(80, proto::DEFAULT_POLICY_DENY);
  for (size_t i = 0; i <= kMaxRules; ++i) *many.add_rules() = rule("r" + std::to_string(i), {"*"});
  CHECK(contains(compile_error(many), "rules, more than"));
  proto::InboundPolicy wide = inbound(80, proto::DEFAULT_POLICY_DENY, {rule("wide", {})});
  for (size_t i = 0; i <= kMaxMatchersPerRule; ++i) wide.mutable_rules(0)->add_networks("10.0.0.0/8");
  CHECK(contains(compile_error(wide), "more than 1024"));
}

TEST_CASE("authz: the table takes the port's policy, then port 0, then the fallback", "[authz]") {
  const Client meshed{"spiffe://td/sa/web", addr("10.0.0.1:4000")};
  const Client anon{"", addr("10.0.0.1:4000")};
  std::vector<proto::InboundPolicy> policies = {
      inbound(8080, proto::DEFAULT_POLICY_DENY, {rule("web", {"spiffe://td/sa/web"})}),
      inbound(0, proto::DEFAULT_POLICY_ALL_AUTHENTICATED),
      inbound(9090, proto::DEFAULT_POLICY_UNSPECIFIED),
  };
  auto t = PolicyTable::build(policies, DefaultPolicy::kAllUnauthenticated);
  REQUIRE(t);
  CHECK(t->for_port(8080).port() == 8080);
  CHECK(t->authorize(8080, meshed).rule == "web");
  CHECK_FALSE(t->authorize(8080, anon).allowed);
  // The exact port's policy decides alone: no port-0 rules or default leak in.
  CHECK(t->for_port(9090).default_policy() == DefaultPolicy::kAllUnauthenticated);
  CHECK(t->authorize(9090, anon).allowed);
  // Any other port: the port-0 policy.
  CHECK(t->for_port(80).port() == 0);
  CHECK(t->authorize(80, anon).reason == "unauthenticated");
  CHECK(t->authorize(80, meshed).allowed);
  REQUIRE(t->policies().size() == 3);
  REQUIRE(t->policies()[0].port() == 0);

  // Without a port-0 policy, the fallback alone.
  auto only = PolicyTable::build(std::span(policies).first(1), DefaultPolicy::kDeny);
  REQUIRE(only);
  CHECK(only->authorize(80, meshed).rule == "default:deny");
  CHECK(only->authorize(8080, meshed).rule == "web");
  CHECK(PolicyTable(DefaultPolicy::kAllAuthenticated).authorize(1, anon).reason == "unauthenticated");

  // Two policies for one port from one source: an error naming the port.
  policies.push_back(inbound(8080, proto::DEFAULT_POLICY_ALL_AUTHENTICATED));
  auto dup = PolicyTable::build(policies, DefaultPolicy::kDeny);
  REQUIRE_FALSE(dup);
  CHECK(dup.error() == "two policies for port 8080");
  policies.back().set_port(0);
  CHECK(PolicyTable::build(policies, DefaultPolicy::kDeny).error() == "two policies for port 0 (every port)");
  // A bad policy fails the whole table.
  policies.back() = inbound(1, proto::DEFAULT_POLICY_DENY, {rule("x", {"web"})});
  CHECK(contains(PolicyTable::build(policies, DefaultPolicy::kDeny).error(), "policy for port 1: rule 'x'"));
}

TEST_CASE("authz: the table as JSON for status.json", "[authz]") {
  std::vector<proto::InboundPolicy> policies = {
      inbound(8080, proto::DEFAULT_POLICY_DENY, {rule("web", {"spiffe://td/ns/prod/*"}, {"10.1.0.0/8"})})};
  auto t = PolicyTable::build(policies, DefaultPolicy::kAllAuthenticated);
  REQUIRE(t);
  CHECK(t->to_json() == R"({"fallback":"all-authenticated","policies":[{"port":8080,"default":"deny","rules":)"
                        R"([{"name":"web","identities":["spiffe://td/ns/prod/*"],"networks":["10.0.0.0/8"]}]}]})");
}

TEST_CASE("authz: policy keys have one spelling per port", "[authz]") {
  CHECK(policy_key(8080) == "policy:8080");
  CHECK(policy_key_port("policy:8080") == 8080);
  CHECK(policy_key_port("policy:0") == 0);
  CHECK(policy_key_port("policy:65535") == 65535);
  for (const char* bad :
       {"policy:", "policy:080", "policy:65536", "policy:8080x", "policy:-1", "policy:999999", "10.0.0.1:8080", ""})
    CHECK_FALSE(policy_key_port(bad));
}

namespace {
const char* kPolicyFile = R"(# the proxy's own policies
default = "all-authenticated"

[[policy]]
port = 8080
default = "deny"
  [[policy.rule]]
  name = "web-clients"
  identities = ["spiffe://mesh.local/ns/prod/*"]
  networks = ["10.0.0.0/8"]

  [[policy.rule]]
  name = "probes"
  networks = ["192.168.0.0/16", "fd00::/8"]

[[policy]]
  [[policy.rule]]
  name = "anyone-meshed"
  identities = ["*"]
)";

std::string file_error(const std::string& text) {
  auto r = parse_policy_file(text, "pol.toml");
  REQUIRE_FALSE(r);
  return r.error();
}
}  // namespace

TEST_CASE("authz: the policy file becomes policies and a fallback", "[authz]") {
  auto f = parse_policy_file(kPolicyFile, "pol.toml");
  INFO((f ? std::string() : f.error()));
  REQUIRE(f);
  REQUIRE(f->fallback == DefaultPolicy::kAllAuthenticated);
  REQUIRE(f->policies.size() == 2);
  const auto& p = f->policies[0];
  CHECK(p.port() == 8080);
  CHECK(p.default_policy() == proto::DEFAULT_POLICY_DENY);
  REQUIRE(p.rules_size() == 2);
  CHECK(p.rules(0).name() == "web-clients");
  CHECK(p.rules(0).identities(0) == "spiffe://mesh.local/ns/prod/*");
  CHECK(p.rules(1).networks(1) == "fd00::/8");
  CHECK(f->policies[1].port() == 0);  // absent: every port
  CHECK(f->policies[1].default_policy() == proto::DEFAULT_POLICY_UNSPECIFIED);

  auto t = PolicyTable::build(f->policies, *f->fallback);
  REQUIRE(t);
  CHECK(t->authorize(8080, {"", addr("192.168.1.1:1")}).rule == "probes");
  CHECK(t->authorize(8080, {"spiffe://mesh.local/ns/dev/sa/x", addr("10.0.0.1:1")}).reason == "default_deny");
  CHECK(t->authorize(22, {"spiffe://mesh.local/ns/dev/sa/x", addr("10.0.0.1:1")}).rule == "anyone-meshed");
  CHECK(t->authorize(22, {"", addr("10.0.0.1:1")}).reason == "unauthenticated");

  auto empty = parse_policy_file("# nothing yet\n", "pol.toml");
  REQUIRE(empty);
  CHECK_FALSE(empty->fallback);
  CHECK(empty->policies.empty());
}

TEST_CASE("authz: policy file errors name the line", "[authz]") {
  CHECK(file_error("defualt = \"deny\"\n") == "pol.toml:1: unknown key 'defualt' in the policy file");
  CHECK(file_error("default = \"allow\"\n").rfind("pol.toml:1: default policy 'allow'", 0) == 0);
  CHECK(file_error("[[policy]]\nport = 8080\nprot = 1\n") == "pol.toml:3: unknown key 'prot' in a policy");
  CHECK(file_error("[[policy]]\nport = 70000\n") == "pol.toml:2: port must be 0-65535 (0: every port)");
  CHECK(file_error("[[policy]]\nport = \"80\"\n").rfind("pol.toml:2:", 0) == 0);
  CHECK(file_error("[[policy]]\nport = 80\n[[policy]]\nport = 80\n") == "pol.toml:3: a second policy for port 80");
  CHECK(file_error("[[policy]]\n[[policy]]\nport = 0\n") == "pol.toml:2: a second policy for port 0 (every port)");
  CHECK(file_error("[[policy]]\nport = 80\n  [[policy.rule]]\n  name = \"a\"\n  identitys = [\"*\"]\n") ==
        "pol.toml:5: unknown key 'identitys' in a rule");
  // Each pattern and network at its own line.
  auto e = file_error(
      "[[policy]]\nport = 80\n  [[policy.rule]]\n  name = \"a\"\n  identities = [\n    \"*\",\n"
      "    \"spiffe://td/*/x\",\n  ]\n");
  CHECK(e.rfind("pol.toml:7: identity pattern 'spiffe://td/*/x'", 0) == 0);
  e = file_error("[[policy]]\n  [[policy.rule]]\n  name = \"a\"\n  networks = [\"10.0.0.0/99\"]\n");
  CHECK(e.rfind("pol.toml:4: network", 0) == 0);
  CHECK(file_error("[[policy]]\n  [[policy.rule]]\n  name = \"a\"\n  networks = \"10.0.0.0/8\"\n") ==
        "pol.toml:4: networks must be an array of strings");
  CHECK(file_error("[[policy]]\n  [[policy.rule]]\n  name = \"a\"\n  identities = [1]\n") ==
        "pol.toml:4: an identity pattern must be a string");
  // A rule with neither list, or without a name, at the rule's line.
  e = file_error("[[policy]]\nport = 80\n  [[policy.rule]]\n  name = \"all\"\n");
  CHECK(e.rfind("pol.toml:3: rule 'all': no identities and no networks", 0) == 0);
  CHECK(file_error("[[policy]]\n  [[policy.rule]]\n  identities = [\"*\"]\n")
            .rfind("pol.toml:2: a rule has no name", 0) == 0);
  // Across rules: at the policy's line.
  e = file_error(
      "x = 1\n[[policy]]\n  [[policy.rule]]\n  name = \"a\"\n  identities = [\"*\"]\n  [[policy.rule]]\n"
      "  name = \"a\"\n  networks = [\"10.0.0.0/8\"]\n");
  CHECK(e.rfind("pol.toml:1: unknown key 'x'", 0) == 0);
  e = file_error(
      "[[policy]]\n  [[policy.rule]]\n  name = \"a\"\n  identities = [\"*\"]\n  [[policy.rule]]\n"
      "  name = \"a\"\n  networks = [\"10.0.0.0/8\"]\n");
  CHECK(e == "pol.toml:1: policy for port 0: rule name 'a' is used twice");
  // TOML syntax errors keep toml++'s line.
  CHECK(file_error("[[policy]]\nport = 80\nrule = [\n").rfind("pol.toml:3:", 0) == 0);
  CHECK(file_error("policy = 1\n") == "pol.toml:1: 'policy' must be an array of tables ([[policy]])");
}

TEST_CASE("authz: a policy file that cannot be read says so", "[authz]") {
  auto r = read_policy_file("/nonexistent/meshd-policy.toml");
  REQUIRE_FALSE(r);
  CHECK(contains(r.error(), "/nonexistent/meshd-policy.toml"));
}
