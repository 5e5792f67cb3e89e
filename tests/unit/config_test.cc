// Settings from flags, environment and file: values, precedence, and the
// one-line errors that name what was wrong.
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "config/config.h"

using meshd::config::load;

namespace {
struct Args {
  std::vector<std::string> items;
  std::vector<const char*> argv;
  Args(std::initializer_list<const char*> list) {
    items.push_back("meshd");
    for (auto* s : list) items.push_back(s);
    for (auto& s : items) argv.push_back(s.c_str());
    argv.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(argv.size()) - 1; }
};

auto load_args(Args a, std::vector<const char*> env = {}) {
  env.push_back(nullptr);
  return load(a.argc(), a.argv.data(), env.data());
}
}  // namespace

TEST_CASE("config: defaults") {
  auto c = load_args({});
  REQUIRE(c);
  REQUIRE(c->config.outbound_listen.size() == 2);
  REQUIRE(c->config.outbound_listen[0].str() == "127.0.0.1:4140");
  REQUIRE(c->config.outbound_listen[1].str() == "[::1]:4140");
  REQUIRE(c->config.inbound_listen[0].str() == "0.0.0.0:4143");
  REQUIRE(c->config.admin->str() == "127.0.0.1:4191");
  REQUIRE(c->config.connect_timeout_ms == 3000);
  REQUIRE(c->config.threads >= 1);
  REQUIRE(c->config.proxy_uid == 2102);
  REQUIRE(c->config.buffer_size == 64 * 1024);
  REQUIRE(c->config.buffers_per_thread == 64);
  REQUIRE(c->config.idle_timeout_ms == 3'600'000);
  REQUIRE(c->config.drain_timeout_ms == 30'000);
  REQUIRE(c->config.max_connections == 20'000);
  REQUIRE(c->config.forwards.empty());
  REQUIRE(c->config.outbound_listen_is_default);
  // --help shows the defaults that run.
  REQUIRE(meshd::config::help_text().find("(default: 64KiB)") != std::string::npos);
}

TEST_CASE("config: threads auto, listener lists named explicitly are not defaults") {
  auto c = load_args({"--threads", "auto", "--outbound-listen", "127.0.0.1:4140"});
  REQUIRE(c);
  REQUIRE(c->config.threads >= 1);
  REQUIRE_FALSE(c->config.outbound_listen_is_default);
  REQUIRE(c->config.inbound_listen_is_default);
}

TEST_CASE("config: flags in both forms, repeatable forward") {
  auto c = load_args({"--threads=3", "--forward", "127.0.0.1:9000=10.0.0.5:80", "--forward", "[::1]:9001=[fd00::5]:80",
                      "--idle-timeout", "off", "--admin", "off"});
  REQUIRE(c);
  REQUIRE(c->config.threads == 3);
  REQUIRE(c->config.forwards.size() == 2);
  REQUIRE(c->config.forwards[1].target.str() == "[fd00::5]:80");
  REQUIRE(c->config.idle_timeout_ms == 0);
  REQUIRE_FALSE(c->config.admin.has_value());
}

TEST_CASE("config: flags win over the environment") {
  auto c = load_args({"--connect-timeout", "2s"},
                     {"MESHD_CONNECT_TIMEOUT=9s", "MESHD_MAX_CONNECTIONS=5", "MESHD_BUILD=/ignored"});
  REQUIRE(c);
  REQUIRE(c->config.connect_timeout_ms == 2000);
  REQUIRE(c->config.max_connections == 5);
}

TEST_CASE("config: file values, overridden by env and flags") {
  char path[] = "/tmp/meshd-config-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  std::string text =
      "# comment\n\nthreads = 2\nforward = 127.0.0.1:9000=10.0.0.5:80\nforward = 127.0.0.1:9001=10.0.0.6:80\n"
      "max-connections = 10\ndrain-timeout = 2m\n";
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  auto c = load_args({"--config", path, "--threads", "1"}, {"MESHD_MAX_CONNECTIONS=11"});
  unlink(path);
  REQUIRE(c);
  REQUIRE(c->config.threads == 1);
  REQUIRE(c->config.max_connections == 11);
  REQUIRE(c->config.drain_timeout_ms == 120000);
  REQUIRE(c->config.forwards.size() == 2);
}

TEST_CASE("config: errors name the setting, the source and the value") {
  auto e = load_args({"--connect-timeout", "30"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("--connect-timeout '30'") != std::string::npos);
  REQUIRE(e.error().find("duration") != std::string::npos);

  e = load_args({}, {"MESHD_THREADS=many"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("MESHD_THREADS 'many'") != std::string::npos);

  e = load_args({"--outbound-listen", "127.0.0.1"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("IP:PORT") != std::string::npos);

  e = load_args({"--forward", "127.0.0.1:1=0.0.0.0:80"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("wildcard") != std::string::npos);

  e = load_args({"--threads"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("needs a value") != std::string::npos);

  e = load_args({"positional"});
  REQUIRE_FALSE(e);
  e = load_args({"--buffer-size", "1GiB"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("--buffer-size") != std::string::npos);

  e = load_args({"--outbound-listen", "off", "--inbound-listen", "off"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("nothing to do") != std::string::npos);

  e = load_args({"--idle-timeout", "18446744073709551615ms"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("30 days") != std::string::npos);

  e = load_args({"--request-timeout", "5"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("--request-timeout") != std::string::npos);
  REQUIRE(load_args({"--request-timeout", "off"})->config.request_timeout_ms == 0);
  REQUIRE(load_args({"--request-timeout", "1500ms"})->config.request_timeout_ms == 1500);
  REQUIRE(load_args({})->config.request_timeout_ms == 0);  // no timeout unless asked: long polls and streams work

  e = load_args({"--retry-statuses", "503,404"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("--retry-statuses") != std::string::npos);
  REQUIRE(e.error().find("'404' is not a 5xx status") != std::string::npos);
  REQUIRE_FALSE(load_args({"--retry-statuses", "5o3"}));
  REQUIRE(load_args({})->config.retry_statuses == std::vector<uint16_t>{503});
  REQUIRE(load_args({"--retry-statuses", "502, 503,504"})->config.retry_statuses ==
          std::vector<uint16_t>{502, 503, 504});
  REQUIRE(load_args({"--retry-statuses", "none"})->config.retry_statuses.empty());
  REQUIRE(load_args({})->config.upstream_idle_timeout_ms == 4000);
  REQUIRE(load_args({"--upstream-idle-timeout", "0"})->config.upstream_idle_timeout_ms == 0);
  REQUIRE(load_args({"--upstream-idle-timeout", "1500ms"})->config.upstream_idle_timeout_ms == 1500);
  e = load_args({"--upstream-idle-timeout", "soon"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("--upstream-idle-timeout") != std::string::npos);

  e = load_args({"--forward", "127.0.0.1:9000=127.0.0.1:9000", "--outbound-listen", "off"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("loop") != std::string::npos);
  e = load_args({"--forward", "127.0.0.1:9000=127.0.0.1:4143"});  // the inbound listener is 0.0.0.0:4143
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("loop") != std::string::npos);
  // Another host's meshd inbound port is a fine target.
  REQUIRE(load_args({"--forward", "127.0.0.1:9000=10.0.0.1:4143"}));

  e = load_args({"--buffers-per-thread", "32768", "--buffer-size", "1MiB"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("256 MiB") != std::string::npos);

  e = load_args({"--config", "/tmp"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("not a regular file") != std::string::npos);

  e = load_args({"--config", "/nonexistent/meshd.conf"});
  REQUIRE_FALSE(e);
  REQUIRE(e.error().find("/nonexistent/meshd.conf") != std::string::npos);
}

TEST_CASE("config: file errors name the line") {
  char path[] = "/tmp/meshd-config-test-XXXXXX";
  int fd = mkstemp(path);
  std::string text = "threads = 1\nbogus = 2\n";
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  auto e = load_args({"--config", path});
  REQUIRE_FALSE(e);
  REQUIRE(e.error() == std::string(path) + ":2: unknown setting 'bogus'");
  unlink(path);
}

TEST_CASE("config: help lists every setting") {
  auto h = meshd::config::help_text();
  for (auto* s : {"--outbound-listen", "--inbound-listen", "--forward", "--admin", "--threads", "--connect-timeout",
                  "--idle-timeout", "--drain-timeout", "--max-connections", "--proxy-uid", "--config"})
    REQUIRE(h.find(s) != std::string::npos);
}
