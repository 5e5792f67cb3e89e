#include "init/apply.h"

#include <charconv>
#include <cstdint>
#include <fstream>
#include <string>

#include "base/parse.h"
#include "init/run.h"

namespace meshd::init {

namespace {

// iptables-restore reports "line N failed"; quoting line N of our input
// saves the operator from re-running with --dry-run to find it.
std::string failing_line(std::string_view err, std::string_view input) {
  // Legacy says "line 5 failed", nft says "Error occurred at line: 5".
  for (size_t at = err.find("line"); at != std::string_view::npos; at = err.find("line", at + 4)) {
    std::string_view rest = err.substr(at + 4);
    while (!rest.empty() && (rest.front() == ':' || rest.front() == ' ')) rest.remove_prefix(1);
    int n = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
    if (ec != std::errc() || n <= 0) continue;
    for (int i = 1; !input.empty(); ++i) {
      auto nl = input.find('\n');
      if (i == n) return std::string(input.substr(0, nl));
      input.remove_prefix(nl == std::string_view::npos ? input.size() : nl + 1);
    }
    return "";
  }
  return "";
}

// Drops the "Try `iptables-restore -h' ..." hint: it helps with a command
// line, and ours is not the operator's to fix.
std::string without_usage_hint(RunResult run) {
  std::string kept;
  for (const auto& line : split_list(run.err, '\n'))
    if (!line.starts_with("Try `")) kept += line + "\n";
  run.err = kept;
  return describe_failure(run);
}

}  // namespace

std::vector<std::string> restore_command(bool ipv6) {
  return {ipv6 ? "ip6tables-restore" : "iptables-restore", "--noflush", "--wait"};
}

Parsed<void> restore(bool ipv6, std::string_view input) {
  auto argv = restore_command(ipv6);
  auto run = run_program(argv, input);
  if (!run) return invalid(run.error());
  if (run->exit_code == 0) return {};
  std::string msg = argv[0] + " --noflush failed: " + without_usage_hint(*run);
  // nft reports errors at COMMIT, where quoting the line tells nothing.
  if (auto line = failing_line(run->err, input); !line.empty() && line != "COMMIT") msg += " (input: '" + line + "')";
  return invalid(msg);
}

bool has_net_admin() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (!line.starts_with("CapEff:")) continue;
    uint64_t caps = 0;
    std::string_view hex = trim(std::string_view(line).substr(7));
    auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), caps, 16);
    if (ec != std::errc()) return true;
    constexpr int kCapNetAdmin = 12;  // linux/capability.h
    return (caps >> kCapNetAdmin) & 1;
  }
  return true;
}

}  // namespace meshd::init
