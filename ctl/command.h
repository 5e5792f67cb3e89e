// What a meshd-ctl command is, so ctl/main.cc can keep a plain table of them
// and each command lives in its own file (status.cc, later endpoints.cc,
// stat.cc, tap.cc).
#pragma once

#include <cstdio>
#include <span>
#include <string_view>

namespace meshd::ctl {

// Exit codes every command uses, so scripts can tell "the proxy is not
// there" from "I typed it wrong".
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command could not do its job
inline constexpr int kExitUsage = 2;    // bad flags or arguments

// Where a command writes; tests pass memory streams.
struct Io {
  FILE* out = stdout;
  FILE* err = stderr;
};

// args: what follows the command name. A command handles its own --help.
using CommandFn = int (*)(std::span<const std::string_view> args, const Io& io);

struct Command {
  std::string_view name;
  std::string_view summary;  // one line for `meshd-ctl --help`
  CommandFn run;
};

int run_status(std::span<const std::string_view> args, const Io& io);
int run_endpoints(std::span<const std::string_view> args, const Io& io);
int run_services(std::span<const std::string_view> args, const Io& io);
int run_register(std::span<const std::string_view> args, const Io& io);
int run_deregister(std::span<const std::string_view> args, const Io& io);
int run_members(std::span<const std::string_view> args, const Io& io);
int run_stat(std::span<const std::string_view> args, const Io& io);
int run_check(std::span<const std::string_view> args, const Io& io);
int run_inject(std::span<const std::string_view> args, const Io& io);
int run_uninject(std::span<const std::string_view> args, const Io& io);

}  // namespace meshd::ctl
