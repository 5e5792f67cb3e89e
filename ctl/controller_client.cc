#include "ctl/controller_client.h"

#include <cstdlib>

#include "base/flags.h"
#include "ctl/common.h"
#include "discovery/controller_call.h"
#include "proto/frame.h"

namespace meshd::ctl {

Parsed<AdminTarget> resolve_controller_target(std::string_view flag_value) {
  if (!flag_value.empty()) {
    auto t = parse_admin_target(flag_value);
    if (!t) return invalid("--controller: " + t.error());
    return t;
  }
  if (const char* env = std::getenv("MESHD_CONTROLLER"); env != nullptr && *env != '\0') {
    auto t = parse_admin_target(env);
    if (!t) return invalid("MESHD_CONTROLLER: " + t.error());
    return t;
  }
  return parse_admin_target("127.0.0.1:4190");
}

void ControllerFlags::add_to(FlagParser& flags) {
  flags.value("--controller", "", &controller).value("--trust-anchors", "", &trust_anchors);
}

std::expected<proto::Response, int> call_controller(const Io& io, std::string_view command,
                                                    const ControllerFlags& controller, uint64_t timeout_ms,
                                                    const proto::Request& request) {
  auto target = resolve_controller_target(controller.controller);
  if (!target) return std::unexpected(usage_error(io, command, target.error()));
  std::string anchors = controller.trust_anchors;
  std::string anchors_source = "--trust-anchors";
  if (const char* env = std::getenv("MESHD_TRUST_ANCHORS"); anchors.empty() && env != nullptr) {
    anchors = env;
    anchors_source = "MESHD_TRUST_ANCHORS";
  }
  discovery::ControlTls tls;
  if (!anchors.empty()) {
    auto loaded = discovery::ControlTls::from_file(anchors, {});
    if (!loaded) return std::unexpected(usage_error(io, command, anchors_source + ": " + loaded.error()));
    tls = std::move(*loaded);
  }
  auto resp = discovery::controller_call(target->addr, target->text, request, timeout_ms, tls);
  if (!resp) {
    fprintf(io.err, "meshd-ctl: %s\n", resp.error().c_str());
    return std::unexpected(kExitFailure);
  }
  if (!resp->error().empty()) {
    fprintf(io.err, "meshd-ctl: controller %s refused: %s\n", target->text.c_str(), resp->error().c_str());
    return std::unexpected(kExitFailure);
  }
  return std::move(*resp);
}

int run_controller_query(std::span<const std::string_view> args, const Io& io, std::string_view command,
                         std::string_view help, void (*request_kind)(proto::Request*),
                         std::string (*render)(const proto::Response&, bool json)) {
  ControllerFlags controller;
  std::string output = "text", timeout_text;
  bool show_help = false, timeout_seen = false;
  FlagParser flags;
  controller.add_to(flags);
  flags.value("--output", "-o", &output)
      .value("--timeout", "", &timeout_text, &timeout_seen)
      .toggle("--help", "-h", &show_help);
  auto usage = [&](const std::string& m) { return usage_error(io, command, m); };
  auto positional = flags.parse(args);
  if (!positional) return usage(positional.error());
  if (show_help) {
    write_all(io.out, help);
    return kExitOk;
  }
  if (!positional->empty()) return usage("unexpected argument '" + std::string(positional->front()) + "'");
  if (auto ok = check_output(output); !ok) return usage(ok.error());
  auto timeout = timeout_flag(timeout_text, timeout_seen, kDefaultTimeoutMs);
  if (!timeout) return usage(timeout.error());
  proto::Request req;
  req.set_id(1);
  request_kind(&req);
  auto resp = call_controller(io, command, controller, *timeout, req);
  if (!resp) return resp.error();
  write_all(io.out, render(*resp, output == "json"));
  return kExitOk;
}

}  // namespace meshd::ctl
