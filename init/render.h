// The template engine: turns one iptables/*.rules template into the lines
// meshd-init feeds to iptables-restore. Pure (no I/O), so that it is tested
// against golden files.
//
// Template language, kept small enough to read at a glance:
//   - a line starting with '#' and a blank line are dropped: comments explain
//     the rules to people and never reach iptables-restore;
//   - {{name}} is replaced by the scalar `name` (e.g. {{inbound_port}});
//   - a line holding a list placeholder (e.g. {{skip_inbound_port}}) is
//     written once per element, and dropped when the list is empty; one list
//     placeholder per line at most (a product of two lists is never meant);
//   - an unknown placeholder, an unterminated "{{", or "*table" / "COMMIT"
//     lines (meshd-init adds those itself) are errors naming file and line.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/result.h"
#include "init/templates.h"

namespace meshd::init {

struct RenderVars {
  std::map<std::string, std::string, std::less<>> scalars;
  std::map<std::string, std::vector<std::string>, std::less<>> lists;
};

Parsed<std::vector<std::string>> render_template(const Template& t, const RenderVars& vars);

}  // namespace meshd::init
