#include "ctl/common.h"

#include "base/parse.h"

namespace meshd::ctl {

void write_all(FILE* f, std::string_view s) { fwrite(s.data(), 1, s.size(), f); }

int usage_error(const Io& io, std::string_view command, const std::string& message) {
  std::string c(command);
  fprintf(io.err, "meshd-ctl %s: %s (see meshd-ctl %s --help)\n", c.c_str(), message.c_str(), c.c_str());
  return kExitUsage;
}

Parsed<bool> check_output(const std::string& output) {
  if (output != "text" && output != "json")
    return invalid("-o: '" + output + "' is not an output format (expected text or json)");
  return true;
}

Parsed<uint64_t> timeout_flag(const std::string& text, bool seen, uint64_t default_ms) {
  if (!seen) return default_ms;
  auto t = parse_duration_ms(text);
  if (!t) return invalid("--timeout: " + t.error());
  if (*t == 0) return invalid("--timeout: must be more than 0");
  return *t;
}

}  // namespace meshd::ctl
