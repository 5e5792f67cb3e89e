// Running the iptables tools: fork/exec through posix_spawn with pipes, never
// system(), so that no shell re-parses arguments, the input goes in on stdin
// and the tool's stderr can be quoted back to the operator.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace meshd::init {

struct RunResult {
  int exit_code = 0;  // 128 + signal number if the program was killed
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH, then /usr/sbin, /sbin and /usr/local/sbin,
// where iptables lives but which a non-root PATH often lacks), feeds it
// `input` on stdin and collects stdout and stderr. Gives up and kills the
// program after timeout_ms. The error (the program could not be started, or
// timed out) is one line naming the program.
Parsed<RunResult> run_program(const std::vector<std::string>& argv, std::string_view input, int timeout_ms = 30000);

// One line saying why a finished program failed: its stderr with newlines
// joined by "; ", or its exit status when it printed nothing.
std::string describe_failure(const RunResult& result);

}  // namespace meshd::init
