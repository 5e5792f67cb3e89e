// Applying a rendered input to the kernel with iptables-restore.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace meshd::init {

// The command line used for a family, e.g. {"iptables-restore", "--noflush",
// "--wait"}: --noflush so that only the chains named in the input change,
// --wait so that a concurrent iptables run (legacy backend lock) delays us
// instead of failing us.
std::vector<std::string> restore_command(bool ipv6);

// Feeds `input` on stdin; iptables-restore applies it in one transaction, so
// a failure changes nothing. The error is one line quoting the tool's
// complaint and the input line it names.
Parsed<void> restore(bool ipv6, std::string_view input);

// Whether this process may change netfilter rules (CAP_NET_ADMIN in its
// effective set). Unknown (no /proc) counts as yes: iptables will tell.
bool has_net_admin();

}  // namespace meshd::init
