// meshd-ctl services: the services a controller knows, from its registry.
#include <string>

#include "base/json.h"
#include "ctl/command.h"
#include "ctl/common.h"
#include "ctl/controller_client.h"

namespace meshd::ctl {
namespace {

constexpr std::string_view kHelp =
    "Usage: meshd-ctl services [--controller HOST:PORT] [-o text|json] [--timeout DURATION]\n"
    "\n"
    "Lists the services a meshd-controller knows: name, ports, protocol,\n"
    "virtual addresses, how many endpoints, and who defined it.\n"
    "\n"
    "  --trust-anchors FILE    the mesh's CA: TLS to a verified controller (default $MESHD_TRUST_ANCHORS)\n"
    "  --controller HOST:PORT  the controller's API (default $MESHD_CONTROLLER, else 127.0.0.1:4190)\n"
    "  -o, --output FORMAT     text (default) or json\n"
    "  --timeout DURATION      give up after this long (default 2s)\n";

const char* protocol_name(proto::Protocol p) {
  switch (p) {
    case proto::PROTOCOL_OPAQUE: return "opaque";
    case proto::PROTOCOL_HTTP1: return "http1";
    case proto::PROTOCOL_H2: return "h2";
    default: return "detect";
  }
}

std::string join_ports(const proto::Service& s) {
  std::string out;
  for (uint32_t p : s.ports()) out += (out.empty() ? "" : ",") + std::to_string(p);
  return out.empty() ? "-" : out;
}

std::string join_vips(const proto::Service& s) {
  std::string out;
  for (const auto& v : s.virtual_addresses()) out += (out.empty() ? "" : ",") + v;
  return out.empty() ? "-" : out;
}

}  // namespace

std::string render_services_text(const proto::ServiceList& list) {
  if (list.services().empty()) return "no services\n";
  std::string out;
  char line[512];
  snprintf(line, sizeof line, "%-24s %-12s %-8s %9s  %-24s %s\n", "SERVICE", "PORTS", "PROTOCOL", "ENDPOINTS",
           "VIRTUAL ADDRESSES", "OWNER");
  out += line;
  for (const auto& s : list.services()) {
    const auto& d = s.definition();
    snprintf(line, sizeof line, "%-24s %-12s %-8s %9u  %-24s %s\n", d.name().c_str(), join_ports(d).c_str(),
             protocol_name(d.protocol()), s.endpoints(), join_vips(d).c_str(),
             s.owner().empty() ? "-" : s.owner().c_str());
    out += line;
  }
  return out;
}

std::string render_services_json(const proto::ServiceList& list) {
  JsonWriter j;
  j.begin_object().key("services").begin_array();
  for (const auto& s : list.services()) {
    const auto& d = s.definition();
    j.begin_object().field("name", d.name()).key("ports").begin_array();
    for (uint32_t p : d.ports()) j.value(static_cast<uint64_t>(p));
    j.end_array().field("protocol", protocol_name(d.protocol())).key("virtual_addresses").begin_array();
    for (const auto& v : d.virtual_addresses()) j.value(v);
    j.end_array().field("endpoints", static_cast<uint64_t>(s.endpoints())).field("owner", s.owner()).end_object();
  }
  j.end_array().end_object();
  return j.take() + "\n";
}

int run_services(std::span<const std::string_view> args, const Io& io) {
  return run_controller_query(
      args, io, "services", kHelp, [](proto::Request* r) { r->mutable_list_services(); },
      [](const proto::Response& r, bool json) {
        return json ? render_services_json(r.services()) : render_services_text(r.services());
      });
}

}  // namespace meshd::ctl
