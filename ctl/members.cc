// meshd-ctl members: the controller replicas a controller knows through
// gossip, with the state its failure detector gives each.
#include <time.h>

#include <string>

#include "base/json.h"
#include "ctl/command.h"
#include "ctl/common.h"
#include "ctl/controller_client.h"

namespace meshd::ctl {
namespace {

constexpr std::string_view kHelp =
    "Usage: meshd-ctl members [--controller HOST:PORT] [-o text|json] [--timeout DURATION]\n"
    "\n"
    "Lists the controller replicas the controller knows through gossip: name,\n"
    "state (alive, suspect, dead or left), incarnation (raised by a member to\n"
    "refute a suspicion), gossip address, and since when it has been in that\n"
    "state, as that controller saw it. '*' marks the controller that answered.\n"
    "\n"
    "  --trust-anchors FILE    the mesh's CA: TLS to a verified controller (default $MESHD_TRUST_ANCHORS)\n"
    "  --controller HOST:PORT  the controller's API (default $MESHD_CONTROLLER, else 127.0.0.1:4190)\n"
    "  -o, --output FORMAT     text (default) or json\n"
    "  --timeout DURATION      give up after this long (default 2s)\n";

std::string utc(uint64_t unix_ms) {
  time_t t = static_cast<time_t>(unix_ms / 1000);
  tm parts{};
  gmtime_r(&t, &parts);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return buf;
}

}  // namespace

std::string render_members_text(const proto::MemberList& list) {
  if (list.members().empty()) return "no members\n";
  std::string out;
  char line[512];
  snprintf(line, sizeof line, "%-24s %-8s %11s  %-24s %s\n", "NAME", "STATE", "INCARNATION", "ADDRESS", "SINCE");
  out += line;
  for (const auto& m : list.members()) {
    std::string name = (m.self() ? "*" : "") + m.name();
    snprintf(line, sizeof line, "%-24s %-8s %11llu  %-24s %s\n", name.c_str(), m.state().c_str(),
             static_cast<unsigned long long>(m.incarnation()), m.address().c_str(), utc(m.since_unix_ms()).c_str());
    out += line;
  }
  return out;
}

std::string render_members_json(const proto::MemberList& list) {
  JsonWriter j;
  j.begin_object().key("members").begin_array();
  for (const auto& m : list.members()) {
    j.begin_object()
        .field("name", m.name())
        .field("state", m.state())
        .field("incarnation", m.incarnation())
        .field("address", m.address())
        .field("api_address", m.api_address())
        .field("since_unix_ms", m.since_unix_ms())
        .field("self", m.self())
        .end_object();
  }
  j.end_array().end_object();
  return j.take() + "\n";
}

int run_members(std::span<const std::string_view> args, const Io& io) {
  return run_controller_query(
      args, io, "members", kHelp, [](proto::Request* r) { r->mutable_list_members(); },
      [](const proto::Response& r, bool json) {
        return json ? render_members_json(r.members()) : render_members_text(r.members());
      });
}

}  // namespace meshd::ctl
