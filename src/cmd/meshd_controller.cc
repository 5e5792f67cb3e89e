// meshd-controller: serves the registry to proxies and meshd-ctl.
// Opens its data directory (replaying what was acknowledged before), loads
// and watches the registry file, and answers the API on --listen until
// SIGTERM.
#include <signal.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "admin/server.h"
#include "base/flags.h"
#include "base/log.h"
#include "controller/api_server.h"
#include "controller/controller.h"
#include "metrics/process.h"
#include "version.h"

namespace {

using namespace meshd;

constexpr const char* kUsage =
    "usage: meshd-controller [flags]\n\n"
    "Serves the meshd registry (services and their endpoints) to proxies and\n"
    "meshd-ctl. State that was acknowledged is kept in --data-dir and survives\n"
    "restarts; the registry file is re-read when it changes, and a bad edit is\n"
    "refused (with the line at fault) while the last good state keeps serving.\n\n"
    "flags:\n"
    "  --listen ADDR          API address (default 0.0.0.0:4190; env MESHD_CONTROLLER_LISTEN)\n"
    "  --data-dir DIR         where state is persisted (default /var/lib/meshd-controller;\n"
    "                         env MESHD_CONTROLLER_DATA_DIR)\n"
    "  --registry-file FILE   services and endpoints in TOML (env MESHD_CONTROLLER_REGISTRY_FILE)\n"
    "  --admin ADDR           /metrics, /ready, /live (default 127.0.0.1:4194; 'off' to disable;\n"
    "                         env MESHD_CONTROLLER_ADMIN)\n"
    "  --log-level LEVEL      debug, info, warn or error (default info)\n"
    "  --version, -h/--help\n";

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "meshd-controller: %s\n", message.c_str());
  return code;
}

uint64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  metrics::mark_start_time();
  std::string listen = env_or("MESHD_CONTROLLER_LISTEN", "0.0.0.0:4190");
  std::string data_dir = env_or("MESHD_CONTROLLER_DATA_DIR", "/var/lib/meshd-controller");
  std::string registry_file = env_or("MESHD_CONTROLLER_REGISTRY_FILE", "");
  std::string level = "info";
  std::string admin = env_or("MESHD_CONTROLLER_ADMIN", "127.0.0.1:4194");
  bool help = false, version = false;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  FlagParser flags;
  flags.value("--listen", "", &listen)
      .value("--data-dir", "", &data_dir)
      .value("--registry-file", "", &registry_file)
      .value("--log-level", "", &level)
      .value("--admin", "", &admin)
      .toggle("--help", "-h", &help)
      .toggle("--version", "", &version);
  auto rest = flags.parse(args);
  if (!rest) return fail(2, rest.error() + " (see --help)");
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (version) {
    std::printf("meshd-controller %s (%s)\n", MESHD_VERSION, MESHD_GIT_REV);
    return 0;
  }
  if (!rest->empty()) return fail(2, "unexpected argument '" + std::string(rest->front()) + "' (see --help)");
  log::Level lvl;
  if (!log::parse_level(level.c_str(), &lvl)) return fail(2, "invalid --log-level '" + level + "'");
  log::set_level(lvl);
  auto addr = SocketAddr::parse(listen);
  if (!addr) return fail(2, "invalid --listen: " + addr.error());
  if (data_dir.empty()) return fail(2, "--data-dir must not be empty");
  std::optional<SocketAddr> admin_addr;
  if (admin != "off") {
    auto a = SocketAddr::parse(admin);
    if (!a) return fail(2, "invalid --admin: " + a.error());
    admin_addr = *a;
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int stop_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (stop_fd < 0) return fail(1, std::string("signalfd: ") + strerror(errno));

  static controller::Stats stats;
  controller::Controller ctl(&stats);
  if (auto r = ctl.start({data_dir, registry_file}, now_ms()); !r) return fail(1, r.error());
  controller::ApiServer api(&ctl, &stats, now_ms);
  admin::Server admin_server;
  if (admin_addr) {
    if (auto r = admin_server.bind(*admin_addr); !r)
      return fail(1, "cannot listen on " + admin_addr->str() + " (admin): " + r.error().what());
    admin_server.start([](std::string_view path) -> admin::Response {
      if (path == "/metrics")
        return {200, "text/plain; version=0.0.4; charset=utf-8", controller::render_metrics(stats)};
      if (path == "/live" || path == "/ready") return {200, "text/plain; charset=utf-8", "ok\n"};
      return {404, "text/plain; charset=utf-8", "not found; try /metrics /ready /live\n"};
    });
  }
  if (auto r = api.listen(*addr); !r) return fail(1, r.error());
  LOG_INFO("meshd-controller", "meshd-controller %s serving %zu registry entries on %s", MESHD_VERSION,
           ctl.registry().size(), addr->str().c_str());

  // The registry file is checked every tick; a change applies within one.
  api.run(stop_fd, 250, [&] {
    auto changes = ctl.poll_file(now_ms());
    if (!changes)
      LOG_ERROR("meshd-controller", "%s; keeping the last good registry", changes.error().c_str());
    else if (!changes->empty())
      api.publish(*changes);
    auto expired = ctl.expire_leases(now_ms());
    if (!expired)
      LOG_ERROR("meshd-controller", "expiring leases: %s", expired.error().c_str());
    else if (!expired->empty())
      api.publish(*expired);
    if (auto compacted = ctl.maybe_compact(); !compacted)
      LOG_ERROR("meshd-controller", "compacting the store: %s", compacted.error().c_str());
  });
  admin_server.stop();
  LOG_INFO("meshd-controller", "stopped");
  close(stop_fd);
  return 0;
}
