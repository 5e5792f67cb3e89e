// meshd-ctl register / deregister: add or remove an endpoint of a service in
// a controller's registry, as an operator (or a script) would.
#include <unistd.h>

#include <string>
#include <vector>

#include "base/addr.h"
#include "base/flags.h"
#include "base/parse.h"
#include "ctl/command.h"
#include "ctl/common.h"
#include "ctl/controller_client.h"

namespace meshd::ctl {
namespace {

constexpr std::string_view kRegisterHelp =
    "Usage: meshd-ctl register SERVICE ADDRESS [flags]\n"
    "\n"
    "Adds ADDRESS (IP:PORT) as an endpoint of SERVICE in the controller's registry,\n"
    "or replaces it. Without --lease it stays until deregistered; with a lease it\n"
    "goes unless its owner registers or renews again in time.\n"
    "\n"
    "  --owner NAME            who owns it (default api:HOSTNAME)\n"
    "  --lease DURATION        remove it unless renewed within this long (1s-24h)\n"
    "  --weight N              balancing weight 0-10000 (default 100)\n"
    "  --identity URI          the spiffe:// identity the endpoint presents\n"
    "  --meshed                the endpoint runs meshd inbound\n"
    "  --label KEY=VALUE[,..]  labels (zone, version, ...)\n"
    "  --trust-anchors FILE    the mesh's CA: TLS to a verified controller (default $MESHD_TRUST_ANCHORS)\n"
    "  --controller HOST:PORT  the controller's API (default $MESHD_CONTROLLER, else 127.0.0.1:4190)\n"
    "  --timeout DURATION      give up after this long (default 2s)\n";

constexpr std::string_view kDeregisterHelp =
    "Usage: meshd-ctl deregister SERVICE ADDRESS [--owner NAME] [--controller HOST:PORT]\n"
    "\n"
    "Removes endpoint ADDRESS of SERVICE from the controller's registry. With\n"
    "--owner, only if that owner registered it.\n";

std::string default_owner() {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  return std::string("api:") + host;
}

int call(const Io& io, std::string_view command, const ControllerFlags& controller, uint64_t timeout_ms,
         const proto::Request& req, const std::string& what) {
  auto resp = call_controller(io, command, controller, timeout_ms, req);
  if (!resp) return resp.error();
  fprintf(io.out, "%s (%u change%s)\n", what.c_str(), resp->ack().applied(), resp->ack().applied() == 1 ? "" : "s");
  return kExitOk;
}

}  // namespace

int run_register(std::span<const std::string_view> args, const Io& io) {
  ControllerFlags controller;
  std::string timeout_text, owner = default_owner(), lease_text, weight_text, identity, labels;
  bool help = false, meshed = false, timeout_seen = false, lease_seen = false, weight_seen = false;
  FlagParser flags;
  controller.add_to(flags);
  flags.value("--timeout", "", &timeout_text, &timeout_seen)
      .value("--owner", "", &owner)
      .value("--lease", "", &lease_text, &lease_seen)
      .value("--weight", "", &weight_text, &weight_seen)
      .value("--identity", "", &identity)
      .value("--label", "", &labels)
      .toggle("--meshed", "", &meshed)
      .toggle("--help", "-h", &help);
  auto usage = [&io](const std::string& m) { return usage_error(io, "register", m); };
  auto pos = flags.parse(args);
  if (!pos) return usage(pos.error());
  if (help) {
    write_all(io.out, kRegisterHelp);
    return kExitOk;
  }
  if (pos->size() != 2) return usage("expected SERVICE ADDRESS");
  auto addr = SocketAddr::parse((*pos)[1]);
  if (!addr) return usage("ADDRESS: " + addr.error());
  auto timeout = timeout_flag(timeout_text, timeout_seen, kDefaultTimeoutMs);
  if (!timeout) return usage(timeout.error());

  proto::Request req;
  req.set_id(1);
  auto* reg = req.mutable_register_();
  reg->set_owner(owner);
  if (lease_seen) {
    auto ms = parse_duration_ms(lease_text);
    if (!ms) return usage("--lease: " + ms.error());
    reg->set_lease_ms(*ms);
  }
  proto::Entry* e = reg->add_entries();
  e->set_service(std::string((*pos)[0]));
  e->set_endpoint(addr->str());
  proto::Endpoint* ep = e->mutable_address_of();
  ep->set_address(addr->str());
  ep->set_weight(100);
  if (weight_seen) {
    auto w = parse_u64(weight_text);
    if (!w || *w > 10000) return usage("--weight: expected a whole number 0-10000, not '" + weight_text + "'");
    ep->set_weight(static_cast<uint32_t>(*w));
  }
  ep->set_identity(identity);
  ep->set_meshed(meshed);
  for (const auto& kv : split_list(labels)) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return usage("--label: expected KEY=VALUE, not '" + kv + "'");
    (*ep->mutable_labels())[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return call(io, "register", controller, *timeout, req,
              "registered " + addr->str() + " in " + std::string((*pos)[0]) + " as " + owner);
}

int run_deregister(std::span<const std::string_view> args, const Io& io) {
  ControllerFlags controller;
  std::string timeout_text, owner;
  bool help = false, timeout_seen = false;
  FlagParser flags;
  controller.add_to(flags);
  flags.value("--timeout", "", &timeout_text, &timeout_seen).value("--owner", "", &owner).toggle("--help", "-h", &help);
  auto usage = [&io](const std::string& m) { return usage_error(io, "deregister", m); };
  auto pos = flags.parse(args);
  if (!pos) return usage(pos.error());
  if (help) {
    write_all(io.out, kDeregisterHelp);
    return kExitOk;
  }
  if (pos->size() != 2) return usage("expected SERVICE ADDRESS");
  auto timeout = timeout_flag(timeout_text, timeout_seen, kDefaultTimeoutMs);
  if (!timeout) return usage(timeout.error());
  proto::Request req;
  req.set_id(1);
  auto* d = req.mutable_deregister();
  d->set_owner(owner);
  d->set_service(std::string((*pos)[0]));
  d->set_endpoint(std::string((*pos)[1]));
  return call(io, "deregister", controller, *timeout, req,
              "deregistered " + std::string((*pos)[1]) + " from " + std::string((*pos)[0]));
}

}  // namespace meshd::ctl
