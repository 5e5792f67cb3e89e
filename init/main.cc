// meshd-init: installs (or with --cleanup removes) the nat rules that send a
// workload's TCP traffic through the meshd proxy. See usage() for the flags.
//
// Every family's input is rendered before anything is applied, so that a bad
// template or an unreadable table stops the run with nothing changed.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "init/apply.h"
#include "init/nat_state.h"
#include "init/options.h"
#include "init/plan.h"
#include "init/templates.h"
#include "version.h"

namespace {

using namespace meshd::init;

constexpr int kExitRuntime = 1;
constexpr int kExitConfig = 2;

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "meshd-init: %s\n", message.c_str());
  return code;
}

const char* family_name(bool ipv6) { return ipv6 ? "IPv6" : "IPv4"; }

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

struct Step {
  bool ipv6;
  std::string input;  // empty: nothing to do for this family
};

// After a restore, reads the table back: iptables-restore has been known to
// exit 0 on a backend mismatch (legacy vs nft) while the rules went elsewhere.
std::string verify(const Options& o, bool ipv6) {
  auto text = read_nat_table(ipv6);
  if (!text) return text.error();
  NatState s = parse_nat_state(*text);
  if (o.cleanup) {
    if (s.inbound_installed || s.outbound_installed) return "the jumps to the MESHD_* chains are still there";
    return "";
  }
  if (!s.inbound_installed || !s.outbound_installed) return "the MESHD_* chains are not hooked into PREROUTING/OUTPUT";
  if (s.inbound_redirect_port != o.inbound_port || s.outbound_redirect_port != o.outbound_port)
    return "the redirects point at ports " + std::to_string(s.inbound_redirect_port) + "/" +
           std::to_string(s.outbound_redirect_port) + ", not " + std::to_string(o.inbound_port) + "/" +
           std::to_string(o.outbound_port);
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  auto parsed = parse_options(args, [](const char* name) -> const char* { return std::getenv(name); });
  if (!parsed) return fail(kExitConfig, parsed.error());
  const Options& o = *parsed;
  if (o.help) {
    std::fputs(usage().c_str(), stdout);
    return 0;
  }
  if (o.version) {
    std::printf("meshd-init %s (%s)\n", MESHD_VERSION, MESHD_GIT_REV);
    return 0;
  }

  std::vector<Template> templates;
  if (o.templates_dir.empty()) {
    templates = builtin_templates();
  } else {
    auto loaded = load_templates(o.templates_dir);
    if (!loaded) return fail(kExitConfig, loaded.error());
    templates = std::move(*loaded);
  }

  if (!o.dry_run && !has_net_admin())
    return fail(kExitRuntime,
                "changing the nat table needs CAP_NET_ADMIN: run as root on a host, or add NET_ADMIN to the "
                "init container's capabilities (--dry-run works without it)");

  for (const auto& e : o.ignored_env) LOG_WARN("meshd-init", "cleanup: ignoring %s", e.c_str());

  // A cleanup removes IPv6 rules whenever they are there: --ipv6 may have
  // been turned off since they were installed.
  std::vector<bool> families = {false};
  if (o.ipv6 || o.cleanup) families.push_back(true);

  std::vector<Step> steps;
  for (bool ipv6 : families) {
    auto text = read_nat_table(ipv6);
    if (!text && ipv6 && !o.ipv6) {
      // Not asked for: no ip6tables (or no IPv6) means no IPv6 rules to remove.
      LOG_INFO("meshd-init", "IPv6: nat table not readable (%s); nothing to remove", text.error().c_str());
      continue;
    }
    if (!text) {
      if (!o.dry_run) return fail(kExitRuntime, text.error());
      // A dry run is also how people read the rules on a laptop, without
      // root or iptables: show what an empty table would get.
      LOG_WARN("meshd-init", "%s; showing the %s input for an empty nat table", text.error().c_str(),
               family_name(ipv6));
      text = std::string();
    }
    NatTable table = parse_nat_table(*text);
    if (o.cleanup) {
      steps.push_back({ipv6, render_cleanup(table, owned_chains(templates))});
    } else {
      auto input = render_install(templates, o, ipv6, table);
      if (!input) return fail(kExitConfig, input.error());
      steps.push_back({ipv6, std::move(*input)});
    }
  }

  if (o.dry_run) {
    for (const auto& s : steps) {
      std::printf("# %s: %s\n", family_name(s.ipv6), join(restore_command(s.ipv6)).c_str());
      if (s.input.empty())
        std::printf("# nothing to remove: no MESHD_* chains or jumps\n");
      else
        std::fputs(s.input.c_str(), stdout);
    }
    return 0;
  }

  std::vector<std::string> done;
  for (const auto& s : steps) {
    if (s.input.empty()) {
      LOG_INFO("meshd-init", "%s: nothing to remove", family_name(s.ipv6));
      continue;
    }
    if (auto ok = restore(s.ipv6, s.input); !ok) {
      std::string msg = ok.error();
      if (!done.empty()) msg += " (the " + done.front() + " rules were applied already; re-running is safe)";
      return fail(kExitRuntime, msg);
    }
    // Custom templates may install something else entirely; only the
    // built-in ones have a known shape to check.
    if (o.templates_dir.empty() || o.cleanup) {
      if (auto problem = verify(o, s.ipv6); !problem.empty())
        return fail(kExitRuntime, std::string(family_name(s.ipv6)) + ": applied, but " + problem);
    }
    done.push_back(family_name(s.ipv6));
    if (o.cleanup)
      LOG_INFO("meshd-init", "%s: removed the MESHD_* chains and the jumps to them", family_name(s.ipv6));
    else
      LOG_INFO("meshd-init", "%s: TCP redirected: inbound -> %u, outbound -> %u (proxy uid %u exempt)",
               family_name(s.ipv6), o.inbound_port, o.outbound_port, o.proxy_uid);
  }
  return 0;
}
