// meshd-init's command line: flags (and MESHD_INIT_* environment variables)
// parsed into one validated struct, so that the rest of the tool never sees
// a string an operator typed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.h"
#include "base/parse.h"
#include "base/result.h"

namespace meshd::init {

// Ports that always reach their listener directly, whatever
// --skip-inbound-ports says: the proxy's admin port (health checks and
// metrics scrapes must not depend on the proxy's data path), the controller
// API and the controller gossip port.
inline constexpr uint16_t kAlwaysSkippedInboundPorts[] = {4190, 4191, 4192};

struct Options {
  uint16_t inbound_port = 4143;
  uint16_t outbound_port = 4140;
  uint32_t proxy_uid = 2102;
  std::vector<PortRange> skip_inbound_ports;  // kAlwaysSkippedInboundPorts first, then the flag's
  std::vector<PortRange> skip_outbound_ports;
  std::vector<Cidr> skip_subnets;  // both families; each rendered into its own table
  bool ipv6 = false;               // IPv6 as well as IPv4
  bool dry_run = false;
  bool cleanup = false;
  bool help = false;
  bool version = false;
  std::string templates_dir;  // empty: the compiled-in templates
  // With --cleanup, MESHD_INIT_* variables that do not parse are set aside
  // (and named here) instead of stopping the run: the cleanup needs none of
  // them, and refusing it over a typo would leave traffic redirected to a
  // proxy that is gone.
  std::vector<std::string> ignored_env;
};

// Looks up an environment variable; injected so that tests do not depend on
// the process environment.
using EnvLookup = const char* (*)(const char* name);

// args excludes argv[0]. Environment variables (MESHD_INIT_INBOUND_PORT, ...)
// are read first and flags override them. The error is one line naming the
// flag (or variable) and the value.
Parsed<Options> parse_options(const std::vector<std::string_view>& args, EnvLookup env = nullptr);

std::string usage();

}  // namespace meshd::init
