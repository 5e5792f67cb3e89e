#include "init/plan.h"

#include <sys/socket.h>

#include <algorithm>

#include "base/parse.h"

namespace meshd::init {

namespace {

constexpr const char* kBuiltinChains[] = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"};

bool is_builtin(std::string_view chain) {
  return std::find(std::begin(kBuiltinChains), std::end(kBuiltinChains), chain) != std::end(kBuiltinChains);
}

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::vector<std::string> port_strings(const std::vector<PortRange>& ports) {
  std::vector<std::string> out;
  for (const auto& p : ports) out.push_back(p.str());
  return out;
}

// ":NAME POLICY [0:0]" -> NAME
std::string declared_name(std::string_view line) {
  line.remove_prefix(1);
  return std::string(line.substr(0, line.find(' ')));
}

}  // namespace

RenderVars render_vars(const Options& o, bool ipv6) {
  RenderVars v;
  v.scalars["inbound_port"] = std::to_string(o.inbound_port);
  v.scalars["outbound_port"] = std::to_string(o.outbound_port);
  v.scalars["proxy_uid"] = std::to_string(o.proxy_uid);
  v.lists["skip_inbound_port"] = port_strings(o.skip_inbound_ports);
  v.lists["skip_outbound_port"] = port_strings(o.skip_outbound_ports);
  auto& subnets = v.lists["skip_subnet"];
  for (const auto& c : o.skip_subnets)
    if ((c.family() == AF_INET6) == ipv6) subnets.push_back(c.str());
  return v;
}

Parsed<std::string> render_install(const std::vector<Template>& templates, const Options& o, bool ipv6,
                                   const NatTable& current) {
  const RenderVars vars = render_vars(o, ipv6);
  std::vector<std::string> declarations, rules, declared;
  struct Hook {
    std::string line, chain, target, where;
  };
  std::vector<Hook> hooks;
  for (const auto& t : templates) {
    auto lines = render_template(t, vars);
    if (!lines) return invalid(lines.error());
    for (auto& line : *lines) {
      const std::string where = t.name + ": '" + line + "': ";
      if (line.front() == ':') {
        std::string name = declared_name(line);
        if (is_builtin(name)) return invalid(where + "built-in chains cannot be declared, only hooked into");
        if (contains(declared, name)) return invalid(where + "chain " + name + " is declared twice");
        declared.push_back(name);
        declarations.push_back(std::move(line));
      } else if (line.starts_with("-A ")) {
        auto words = split_rule_words(std::string_view(line).substr(3));
        std::string target;
        for (size_t i = 0; i + 1 < words.size(); ++i)
          if (words[i] == "-j" || words[i] == "--jump" || words[i] == "-g" || words[i] == "--goto")
            target = words[i + 1];
        hooks.push_back({std::move(line), words.empty() ? "" : words[0], target, where});
      } else {
        return invalid(where + "a template holds chain declarations (:NAME - [0:0]) and -A rules only");
      }
    }
  }
  // Hooks are checked once every template has declared its chains, so that a
  // hook may sit in another template than the chain it jumps to.
  for (auto& h : hooks) {
    if (contains(declared, h.chain)) {
      rules.push_back(std::move(h.line));
      continue;
    }
    if (!contains(declared, h.target))
      return invalid(h.where + "a rule added to " + h.chain +
                     " must jump to a chain the templates declare, so that re-running can recognize it");
    if (!current.has_jump(h.chain, h.target)) rules.push_back(std::move(h.line));
  }
  std::string out = "*nat\n";
  for (const auto& l : declarations) out += l + "\n";
  for (const auto& l : rules) out += l + "\n";
  out += "COMMIT\n";
  return out;
}

std::vector<std::string> owned_chains(const std::vector<Template>& templates) {
  std::vector<std::string> owned = {kInboundChain, kInboundRedirectChain, kOutputChain, kOutboundRedirectChain};
  for (const auto& t : templates) {
    std::string_view text = t.text;
    while (!text.empty()) {
      auto nl = text.find('\n');
      std::string_view line = trim(text.substr(0, nl));
      text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
      if (line.starts_with(':') && line.size() > 1) {
        std::string name = declared_name(line);
        if (!contains(owned, name) && !is_builtin(name)) owned.push_back(name);
      }
    }
  }
  return owned;
}

std::string render_cleanup(const NatTable& current, const std::vector<std::string>& owned) {
  std::string body;
  for (const auto& r : current.rules)
    if (is_builtin(r.chain) && contains(owned, r.target)) body += "-D " + r.chain + " " + r.spec + "\n";
  // Flush all before deleting any: our chains jump to each other, and a
  // chain that is still a target cannot be deleted.
  std::vector<std::string> present;
  for (const auto& c : current.chains)
    if (contains(owned, c)) present.push_back(c);
  for (const auto& c : present) body += "-F " + c + "\n";
  for (const auto& c : present) body += "-X " + c + "\n";
  if (body.empty()) return "";
  return "*nat\n" + body + "COMMIT\n";
}

}  // namespace meshd::init
