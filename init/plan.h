// What to feed iptables-restore --noflush: the rendered templates, adjusted
// to what the nat table already holds so that re-running changes nothing and
// --cleanup removes only what is ours. Pure, so that it is tested with
// iptables-save texts instead of a kernel.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "init/nat_state.h"
#include "init/options.h"
#include "init/render.h"
#include "init/templates.h"

namespace meshd::init {

// The placeholder values for one family: ports, the proxy uid, and the
// --skip-subnets of that family only (an IPv6 CIDR means nothing to iptables).
RenderVars render_vars(const Options& o, bool ipv6);

// The restore input that installs the rules. The templates' chains are
// declared (":NAME - [0:0]"), which under --noflush creates a missing chain
// and flushes an existing one, so the chains are re-filled, never doubled. A
// rule appended to a chain the templates do not declare (a hook such as
// "-A PREROUTING ... -j MESHD_INBOUND") is left out when that chain already
// jumps to the same target; such a hook must jump to a declared chain.
Parsed<std::string> render_install(const std::vector<Template>& templates, const Options& o, bool ipv6,
                                   const NatTable& current);

// The chains meshd-init owns: the four well-known MESHD_* chains plus any the
// templates declare.
std::vector<std::string> owned_chains(const std::vector<Template>& templates);

// The restore input that removes what is installed: every jump from a
// built-in chain to an owned chain (deleted by its exact spec), then the
// owned chains that exist, flushed and deleted. Empty when nothing is there.
std::string render_cleanup(const NatTable& current, const std::vector<std::string>& owned);

}  // namespace meshd::init
