#include "base/sd_notify.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <string>

namespace {

// A datagram socket standing in for systemd's: bound to `name` (a path, or
// "@name" for an abstract one).
int listen_at(const std::string& name) {
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, name.data(), name.size());
  if (name[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + (name[0] == '@' ? 0 : 1));
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0);
  return fd;
}

std::string receive(int fd) {
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  return n < 0 ? std::string("(nothing)") : std::string(buf, static_cast<size_t>(n));
}

}  // namespace

TEST_CASE("sd_notify: a datagram to $NOTIFY_SOCKET, a path or an abstract name", "[sd_notify]") {
  unsetenv("NOTIFY_SOCKET");
  REQUIRE(meshd::sd_notify("READY=1").empty());  // no service manager: nothing to do

  std::string path = "/tmp/meshd-notify-test-" + std::to_string(getpid());
  unlink(path.c_str());
  int fd = listen_at(path);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  REQUIRE(meshd::sd_notify("READY=1\nSTATUS=serving").empty());
  REQUIRE(receive(fd) == "READY=1\nSTATUS=serving");
  close(fd);
  unlink(path.c_str());
  // Nobody listening there any more: said, not crashed on.
  REQUIRE(meshd::sd_notify("STOPPING=1").find(path) != std::string::npos);

  std::string abstract = "@meshd-notify-test-" + std::to_string(getpid());
  fd = listen_at(abstract);
  setenv("NOTIFY_SOCKET", abstract.c_str(), 1);
  REQUIRE(meshd::sd_notify("STOPPING=1").empty());
  REQUIRE(receive(fd) == "STOPPING=1");
  close(fd);

  setenv("NOTIFY_SOCKET", "relative/path", 1);
  REQUIRE(meshd::sd_notify("READY=1").find("neither a path") != std::string::npos);
  unsetenv("NOTIFY_SOCKET");
}
