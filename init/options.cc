#include "init/options.h"

#include <cctype>
#include <string>

namespace meshd::init {

namespace {

enum class Kind { kValue, kSwitch };

struct Flag {
  const char* name;  // without the leading "--"
  Kind kind;
  bool from_env;  // --dry-run and --cleanup change what the tool does: flags only
};

constexpr Flag kFlags[] = {
    {"inbound-port", Kind::kValue, true},
    {"outbound-port", Kind::kValue, true},
    {"proxy-uid", Kind::kValue, true},
    {"skip-inbound-ports", Kind::kValue, true},
    {"skip-outbound-ports", Kind::kValue, true},
    {"skip-subnets", Kind::kValue, true},
    {"templates", Kind::kValue, true},
    {"ipv6", Kind::kSwitch, true},
    {"dry-run", Kind::kSwitch, false},
    {"cleanup", Kind::kSwitch, false},
    {"help", Kind::kSwitch, false},
    {"version", Kind::kSwitch, false},
};

std::string env_name(std::string_view flag) {
  std::string out = "MESHD_INIT_";
  for (char c : flag) out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

Parsed<std::vector<PortRange>> parse_port_list(std::string_view where, std::string_view text) {
  std::vector<PortRange> out;
  for (const auto& item : split_list(text)) {
    auto range = parse_port_range(item);
    if (!range) return invalid(std::string(where) + ": " + range.error());
    out.push_back(*range);
  }
  return out;
}

void add_unique(std::vector<PortRange>& list, const PortRange& r) {
  for (const auto& have : list)
    if (have.first == r.first && have.last == r.last) return;
  list.push_back(r);
}

// Applies one setting; `where` is "--flag" or "MESHD_INIT_FLAG" for errors.
Parsed<void> apply(Options& o, std::string_view flag, std::string_view where, std::string_view value) {
  auto bad = [&](const std::string& why) { return invalid(std::string(where) + ": " + why); };
  if (flag == "inbound-port" || flag == "outbound-port") {
    auto port = parse_port(value);
    if (!port) return bad(port.error());
    (flag == "inbound-port" ? o.inbound_port : o.outbound_port) = *port;
  } else if (flag == "proxy-uid") {
    auto uid = parse_u64(value);
    // (uid_t)-1 means "no user" to the kernel, so it cannot be the proxy's.
    if (!uid || *uid >= 4294967295u) return bad("'" + std::string(value) + "' is not a user id (0-4294967294)");
    o.proxy_uid = static_cast<uint32_t>(*uid);
  } else if (flag == "skip-inbound-ports" || flag == "skip-outbound-ports") {
    auto list = parse_port_list(where, value);
    if (!list) return invalid(list.error());
    auto& dest = flag == "skip-inbound-ports" ? o.skip_inbound_ports : o.skip_outbound_ports;
    // The last setting wins (a flag overrides the environment); the ports
    // skipped always stay.
    dest.clear();
    if (flag == "skip-inbound-ports")
      for (uint16_t p : kAlwaysSkippedInboundPorts) dest.push_back({p, p});
    for (const auto& r : *list) add_unique(dest, r);
  } else if (flag == "skip-subnets") {
    o.skip_subnets.clear();
    for (const auto& item : split_list(value)) {
      auto cidr = Cidr::parse(item);
      if (!cidr) return bad(cidr.error());
      bool seen = false;
      for (const auto& have : o.skip_subnets) seen = seen || have.str() == cidr->str();
      if (!seen) o.skip_subnets.push_back(*cidr);
    }
  } else if (flag == "templates") {
    if (value.empty()) return bad("needs a directory");
    o.templates_dir = std::string(value);
  } else {
    bool on;
    if (value == "1" || value == "true" || value == "yes")
      on = true;
    else if (value == "0" || value == "false" || value == "no" || value.empty())
      on = false;
    else
      return bad("'" + std::string(value) + "' is not a boolean (true or false)");
    if (flag == "ipv6")
      o.ipv6 = on;
    else if (flag == "dry-run")
      o.dry_run = on;
    else if (flag == "cleanup")
      o.cleanup = on;
    else if (flag == "help")
      o.help = on;
    else if (flag == "version")
      o.version = on;
  }
  return {};
}

const Flag* find_flag(std::string_view name) {
  for (const auto& f : kFlags)
    if (name == f.name) return &f;
  return nullptr;
}

}  // namespace

Parsed<Options> parse_options(const std::vector<std::string_view>& args, EnvLookup env) {
  Options o;
  for (uint16_t p : kAlwaysSkippedInboundPorts) o.skip_inbound_ports.push_back({p, p});

  // --cleanup is a flag only; known before the environment is read.
  bool cleanup = false;
  for (std::string_view a : args) cleanup = cleanup || a == "--cleanup" || a == "--cleanup=true" || a == "--cleanup=1";
  if (env) {
    for (const auto& f : kFlags) {
      if (!f.from_env) continue;
      std::string name = env_name(f.name);
      const char* value = env(name.c_str());
      if (!value) continue;
      if (auto ok = apply(o, f.name, name, value); !ok) {
        if (!cleanup) return invalid(ok.error());
        o.ignored_env.push_back(ok.error());
      }
    }
  }

  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "-h") arg = "--help";
    if (!arg.starts_with("--"))
      return invalid("unexpected argument '" + std::string(arg) + "' (meshd-init takes flags only; see --help)");
    std::string_view name = arg.substr(2);
    std::string_view value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string_view::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    const Flag* flag = find_flag(name);
    if (!flag) return invalid("unknown flag '--" + std::string(name) + "' (see --help)");
    if (flag->kind == Kind::kSwitch) {
      // "--ipv6=false" is accepted, so that scripts can pass a computed value.
      if (auto ok = apply(o, name, "--" + std::string(name), has_value ? value : "true"); !ok)
        return invalid(ok.error());
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) return invalid("--" + std::string(name) + " needs a value");
      value = args[++i];
    }
    if (auto ok = apply(o, name, "--" + std::string(name), value); !ok) return invalid(ok.error());
  }

  if (o.inbound_port == o.outbound_port && !o.cleanup)
    return invalid("--inbound-port and --outbound-port are both " + std::to_string(o.inbound_port) +
                   ": the proxy needs two listeners to tell the directions apart");
  return o;
}

std::string usage() {
  return R"(usage: meshd-init [flags]

Installs the iptables nat rules that redirect a workload's TCP traffic to the
meshd proxy, or removes them (--cleanup). The rules are applied atomically with
iptables-restore --noflush (ip6tables-restore too with --ipv6); other nat rules
are left alone. Re-running is safe: the meshd chains are re-filled and the
jumps to them are added only once.

Run it once at boot on a host (before meshd starts), or as a pod's init
container: it then acts on the pod's network namespace and needs the
NET_ADMIN capability (and NET_RAW with the legacy iptables backend).
Nothing else differs.

Chains (nat table): PREROUTING -> MESHD_INBOUND -> MESHD_INBOUND_REDIRECT
                    OUTPUT     -> MESHD_OUTPUT  -> MESHD_OUTBOUND_REDIRECT

flags:
  --inbound-port PORT        inbound listener, redirect target for incoming TCP (default 4143)
  --outbound-port PORT       outbound listener, redirect target for outgoing TCP (default 4140)
  --proxy-uid UID            the proxy's user id; its own traffic is never redirected (default 2102)
  --skip-inbound-ports LIST  incoming destination ports not redirected, e.g. 22,8000-8100.
                             Added to the ports always skipped inbound: 4190 (controller API),
                             4191 (proxy admin), 4192 (controller gossip)
  --skip-outbound-ports LIST outgoing destination ports not redirected, e.g. 25,3306
  --skip-subnets LIST        outgoing destinations not redirected, CIDRs of either family,
                             e.g. 10.96.0.0/12,fd00::/8; each goes into its own family's rules
  --ipv6                     also install (or remove) the IPv6 rules with ip6tables
  --templates DIR            read the rule templates from DIR/*.rules instead of the built-in ones
  --dry-run                  print what would be fed to iptables-restore (per family), change nothing
  --cleanup                  remove exactly what meshd-init installed, in both families
                             (IPv6 too when present; MESHD_INIT_* values that do not parse
                             are ignored with a warning): the jumps from
                             PREROUTING/OUTPUT, then the MESHD_* chains; a no-op if absent
  --version                  print the version
  -h, --help                 this text

Lists are comma-separated; port ranges are FIRST-LAST (or FIRST:LAST).
Every flag but --dry-run, --cleanup, --help and --version can also be set in
the environment as MESHD_INIT_<FLAG> (e.g. MESHD_INIT_SKIP_SUBNETS, MESHD_INIT_IPV6=true);
flags override the environment.

exit status: 0 done, 1 iptables failed (missing, no permission, rules refused),
2 bad flags, environment or templates.
)";
}

}  // namespace meshd::init
