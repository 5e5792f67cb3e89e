// What is in the nat table now, read from `iptables-save -t nat`.
//
// meshd-init reads it to stay idempotent (add the jumps only once, remove
// only what is there) and meshd-ctl reads it to report whether traffic is
// being redirected, and where to.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace meshd::init {

inline constexpr const char* kInboundChain = "MESHD_INBOUND";
inline constexpr const char* kInboundRedirectChain = "MESHD_INBOUND_REDIRECT";
inline constexpr const char* kOutputChain = "MESHD_OUTPUT";
inline constexpr const char* kOutboundRedirectChain = "MESHD_OUTBOUND_REDIRECT";

// installed: the hook chain (PREROUTING / OUTPUT) jumps to our chain.
// *_redirect_port: the --to-ports of the REDIRECT in our redirect chain, 0 if none.
struct NatState {
  bool inbound_installed = false;
  bool outbound_installed = false;
  int inbound_redirect_port = 0;
  int outbound_redirect_port = 0;
};

// Lenient: lines it does not understand are ignored, because iptables-save's
// output gains new syntax over time and a status report must not fail on it.
NatState parse_nat_state(std::string_view iptables_save_output);

// Runs `iptables-save -t nat` (`ip6tables-save -t nat` if ipv6) and returns
// its output; the error is one line naming the command and what went wrong.
Parsed<std::string> read_nat_table(bool ipv6);

// One rule as iptables-save printed it.
struct NatRule {
  std::string chain;
  std::string spec;    // everything after "-A CHAIN ", verbatim (quotes kept)
  std::string target;  // the -j / -g target, empty if none
};

// The nat table's chains (built-in and user-defined) and rules, in order.
struct NatTable {
  std::vector<std::string> chains;
  std::vector<NatRule> rules;

  bool has_chain(std::string_view name) const;
  // Whether a rule in `chain` jumps (or goes) to `target`.
  bool has_jump(std::string_view chain, std::string_view target) const;
};

// The port a REDIRECT rule in `chain` points at: "--to-ports 4143" (or a
// range "4143-4143", of which the first port counts); 0 when none.
int redirect_port(const NatTable& table, std::string_view chain);

// Only the *nat section is read when the text holds several tables.
NatTable parse_nat_table(std::string_view iptables_save_output);

// Splits a rule the way iptables-restore does: on blanks, with "double
// quotes" grouping (iptables-save quotes comments that hold blanks).
std::vector<std::string> split_rule_words(std::string_view spec);

}  // namespace meshd::init
