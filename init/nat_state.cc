#include "init/nat_state.h"

#include <charconv>

#include "base/parse.h"
#include "init/run.h"

namespace meshd::init {

bool NatTable::has_chain(std::string_view name) const {
  for (const auto& c : chains)
    if (c == name) return true;
  return false;
}

bool NatTable::has_jump(std::string_view chain, std::string_view target) const {
  for (const auto& r : rules)
    if (r.chain == chain && r.target == target) return true;
  return false;
}

std::vector<std::string> split_rule_words(std::string_view spec) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false, quoted = false;
  for (size_t i = 0; i < spec.size(); ++i) {
    char c = spec[i];
    if (quoted) {
      if (c == '\\' && i + 1 < spec.size() && (spec[i + 1] == '"' || spec[i + 1] == '\\')) {
        word += spec[++i];
      } else if (c == '"') {
        quoted = false;
      } else {
        word += c;
      }
    } else if (c == '"') {
      quoted = in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

NatTable parse_nat_table(std::string_view text) {
  NatTable table;
  bool in_nat = false;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.empty() || line.front() == '#') continue;
    if (line.front() == '*') {
      in_nat = line == "*nat";
      continue;
    }
    if (!in_nat) continue;
    if (line == "COMMIT") {
      in_nat = false;
      continue;
    }
    if (line.front() == ':') {
      // ":NAME POLICY [packets:bytes]"
      auto end = line.find(' ');
      table.chains.emplace_back(line.substr(1, end == std::string_view::npos ? line.size() - 1 : end - 1));
      continue;
    }
    // "iptables-save -c" puts the counters first: "[0:0] -A CHAIN ...".
    if (line.front() == '[') {
      auto close = line.find("] ");
      if (close == std::string_view::npos) continue;
      line = trim(line.substr(close + 2));
    }
    if (!line.starts_with("-A ")) continue;
    line.remove_prefix(3);
    auto end = line.find(' ');
    NatRule rule;
    rule.chain = std::string(line.substr(0, end));
    rule.spec = end == std::string_view::npos ? "" : std::string(trim(line.substr(end + 1)));
    auto words = split_rule_words(rule.spec);
    for (size_t i = 0; i + 1 < words.size(); ++i)
      if (words[i] == "-j" || words[i] == "--jump" || words[i] == "-g" || words[i] == "--goto")
        rule.target = words[i + 1];
    table.rules.push_back(std::move(rule));
  }
  return table;
}

int redirect_port(const NatTable& table, std::string_view chain) {
  for (const auto& r : table.rules) {
    if (r.chain != chain || r.target != "REDIRECT") continue;
    auto words = split_rule_words(r.spec);
    for (size_t i = 0; i + 1 < words.size(); ++i) {
      if (words[i] != "--to-ports" && words[i] != "--to-port") continue;
      const std::string& v = words[i + 1];
      int port = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), port);
      if (ec == std::errc() && end != v.data() && port > 0 && port <= 65535) return port;
    }
  }
  return 0;
}

NatState parse_nat_state(std::string_view output) {
  NatTable table = parse_nat_table(output);
  NatState state;
  state.inbound_installed = table.has_chain(kInboundChain) && table.has_jump("PREROUTING", kInboundChain);
  state.outbound_installed = table.has_chain(kOutputChain) && table.has_jump("OUTPUT", kOutputChain);
  state.inbound_redirect_port = redirect_port(table, kInboundRedirectChain);
  state.outbound_redirect_port = redirect_port(table, kOutboundRedirectChain);
  return state;
}

Parsed<std::string> read_nat_table(bool ipv6) {
  const char* tool = ipv6 ? "ip6tables-save" : "iptables-save";
  auto run = run_program({tool, "-t", "nat"}, "");
  if (!run) return invalid(run.error());
  if (run->exit_code != 0) return invalid(std::string(tool) + " -t nat failed: " + describe_failure(*run));
  return std::move(run->out);
}

}  // namespace meshd::init
