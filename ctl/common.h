// What every meshd-ctl command does the same way: writing output, usage
// errors, and the -o / --timeout flags.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "base/result.h"
#include "ctl/command.h"

namespace meshd::ctl {

void write_all(FILE* f, std::string_view s);
// "meshd-ctl COMMAND: MESSAGE (see meshd-ctl COMMAND --help)", exit 2.
int usage_error(const Io& io, std::string_view command, const std::string& message);
// -o: text or json.
Parsed<bool> check_output(const std::string& output);
// --timeout: a duration above zero; the default when the flag is absent.
Parsed<uint64_t> timeout_flag(const std::string& text, bool seen, uint64_t default_ms);

}  // namespace meshd::ctl
