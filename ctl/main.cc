// meshd-ctl: status and diagnostics for a meshd proxy.
//
// Commands are rows in kCommands, each implemented in its own file, so
// adding `endpoints`, `stat` or `tap` is one row plus one file.
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ctl/command.h"
#include "ctl/identity.h"
#include "ctl/tap.h"
#include "transport/tls_context.h"
#include "version.h"

#ifndef MESHD_VERSION
#define MESHD_VERSION "0.0.0"
#endif
#ifndef MESHD_GIT_REV
#define MESHD_GIT_REV "unknown"
#endif

namespace {

using meshd::ctl::Command;
using meshd::ctl::Io;

constexpr Command kCommands[] = {
    {"status", "what the local proxy is doing: listeners, connections, memory, redirect", meshd::ctl::run_status},
    {"stat", "HTTP success rate, requests per second and latency, per authority", meshd::ctl::run_stat},
    {"tap", "live HTTP requests through the local proxy: method, authority, path, status, latency",
     meshd::ctl::run_tap},
    {"endpoints", "a service's endpoints as the local proxy sees them (state, latency, load)",
     meshd::ctl::run_endpoints},
    {"services", "the services a controller knows (name, ports, endpoints, owner)", meshd::ctl::run_services},
    {"register", "add an endpoint to a service in the controller's registry", meshd::ctl::run_register},
    {"deregister", "remove an endpoint from the controller's registry", meshd::ctl::run_deregister},
    {"members", "the controller replicas a controller gossips with, and their state", meshd::ctl::run_members},
    {"identity", "the mesh CA's files (init), join tokens (token, revoke), a certificate file (inspect)",
     meshd::ctl::run_identity},
    {"check", "pre-flight and health checks, one pass/fail line each with a fix hint", meshd::ctl::run_check},
    {"inject", "add the meshd init container and sidecar to Kubernetes manifests", meshd::ctl::run_inject},
    {"uninject", "remove what inject added from Kubernetes manifests", meshd::ctl::run_uninject},
};

const Command* find_command(std::string_view name) {
  for (const Command& c : kCommands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

void print_help(FILE* f) {
  fprintf(f,
          "Usage: meshd-ctl COMMAND [OPTIONS]\n"
          "\n"
          "Status and diagnostics for the meshd proxy on this host or pod.\n"
          "\n"
          "Commands:\n");
  for (const Command& c : kCommands) {
    fprintf(f, "  %-10.*s %.*s\n", static_cast<int>(c.name.size()), c.name.data(), static_cast<int>(c.summary.size()),
            c.summary.data());
  }
  fprintf(f,
          "\n"
          "Run 'meshd-ctl COMMAND --help' (or 'meshd-ctl help COMMAND') for its options.\n"
          "\n"
          "Global options:\n"
          "  -h, --help     show this help\n"
          "  --version      print the version\n"
          "\n"
          "Environment:\n"
          "  MESHD_ADMIN    HOST:PORT of the proxy's admin endpoint, used when --admin\n"
          "                 is not given (default 127.0.0.1:4191)\n"
          "\n"
          "Exit status: 0 success, 1 the command failed (e.g. no proxy answering),\n"
          "2 bad usage.\n");
}

int unknown_command(std::string_view name) {
  std::string known;
  for (const Command& c : kCommands) known += (known.empty() ? "" : ", ") + std::string(c.name);
  fprintf(stderr, "meshd-ctl: unknown command '%.*s' (commands: %s; see meshd-ctl --help)\n",
          static_cast<int>(name.size()), name.data(), known.c_str());
  return meshd::ctl::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  Io io;
  if (args.empty()) {
    print_help(stderr);
    return meshd::ctl::kExitUsage;
  }
  std::string_view first = args[0];
  if (first == "-h" || first == "--help") {
    print_help(stdout);
    return meshd::ctl::kExitOk;
  }
  if (first == "--version" || first == "version") {
    printf("meshd-ctl %s (%s)\n", MESHD_VERSION, MESHD_GIT_REV);
    return meshd::ctl::kExitOk;
  }
  if (first == "help") {
    if (args.size() == 1) {
      print_help(stdout);
      return meshd::ctl::kExitOk;
    }
    const Command* c = find_command(args[1]);
    if (!c) return unknown_command(args[1]);
    const std::string_view help_args[] = {"--help"};
    return c->run(std::span<const std::string_view>(help_args), io);
  }
  if (first.starts_with("-")) {
    // Flags belong after the command; say so instead of "unknown command".
    fprintf(stderr, "meshd-ctl: '%.*s' before a command; flags go after it (meshd-ctl COMMAND %.*s ...)\n",
            static_cast<int>(first.size()), first.data(), static_cast<int>(first.size()), first.data());
    return meshd::ctl::kExitUsage;
  }
  const Command* c = find_command(first);
  if (!c) return unknown_command(first);
  int rc = c->run(std::span<const std::string_view>(args).subspan(1), io);
  meshd::transport::release_thread_crypto();  // a command that spoke TLS or signed
  // A failed write (stdout closed, disk full) must not look like success.
  if (fflush(stdout) != 0 && rc == meshd::ctl::kExitOk) {
    fprintf(stderr, "meshd-ctl: writing output failed\n");
    return meshd::ctl::kExitFailure;
  }
  return rc;
}
