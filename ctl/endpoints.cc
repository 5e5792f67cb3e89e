// meshd-ctl endpoints SERVICE: a service's endpoints as the local proxy sees
// them (GET /endpoints/SERVICE on its admin endpoint): state (ready,
// failing or ejected), smoothed connect and response latency, open
// connections, weight, labels.
// A service the proxy has not used yet is looked up on the spot.
#include <cinttypes>
#include <string>

#include "base/flags.h"
#include "base/json_value.h"
#include "ctl/admin_client.h"
#include "ctl/command.h"
#include "ctl/common.h"

namespace meshd::ctl {
namespace {

constexpr std::string_view kHelp =
    "Usage: meshd-ctl endpoints SERVICE [--admin HOST:PORT] [-o text|json] [--timeout DURATION]\n"
    "\n"
    "Shows the endpoints of SERVICE as the local meshd sees them (what its\n"
    "balancer chooses from): address, state (ready; failing after a failed\n"
    "connect; ejected after 5 failed HTTP requests in a row, until a probe\n"
    "request succeeds), smoothed connect latency, the peak-EWMA of HTTP\n"
    "response latency, open connections, connects and failures, weight,\n"
    "whether it is meshed, and its labels.\n"
    "\n"
    "  --admin HOST:PORT     the proxy's admin endpoint (default $MESHD_ADMIN, else 127.0.0.1:4191)\n"
    "  -o, --output FORMAT   text (default) or json\n"
    "  --timeout DURATION    give up after this long (default 4s)\n";

std::string num(const JsonValue& v) {
  if (auto u = v.as_uint()) return std::to_string(*u);
  return "?";
}

std::string str(const JsonValue& v) {
  auto s = v.as_string();
  return s ? std::string(*s) : "?";
}

// Microseconds as milliseconds with two decimals; "-" when none was measured.
std::string ms_or_dash(const JsonValue& us) {
  auto v = us.as_uint();
  if (!v || *v == 0) return "-";
  char b[32];
  snprintf(b, sizeof b, "%.2f", static_cast<double>(*v) / 1000.0);
  return b;
}
}  // namespace

std::string render_endpoints_text(const JsonValue& doc) {
  std::string out = "service " + str(doc["service"]);
  if (doc["exists"].as_bool() == false) out += " (not in the registry)";
  if (doc["stale"].as_bool() == true) out += " (stale: the controller has not confirmed it on the current stream)";
  out += "\n";
  const JsonValue& eps = doc["endpoints"];
  if (!eps.is_array() || eps.size() == 0) return out + "no endpoints\n";
  char line[640];
  snprintf(line, sizeof line, "%-28s %-8s %6s %10s %11s %6s %9s %8s %-6s %s\n", "ENDPOINT", "STATE", "WEIGHT",
           "CONNECT_MS", "RESPONSE_MS", "OPEN", "CONNECTS", "FAILURES", "MESHED", "LABELS");
  out += line;
  for (const JsonValue& e : eps.items()) {
    std::string latency = ms_or_dash(e["ewma_connect_us"]);
    std::string response = ms_or_dash(e["response_peak_us"]);
    std::string labels;
    if (e["labels"].is_object())
      for (const auto& [k, v] : e["labels"].members()) labels += (labels.empty() ? "" : ",") + k + "=" + str(v);
    std::string identity = str(e["identity"]);
    if (!identity.empty() && identity != "?") labels += (labels.empty() ? "" : " ") + identity;
    snprintf(line, sizeof line, "%-28s %-8s %6s %10s %11s %6s %9s %8s %-6s %s\n", str(e["address"]).c_str(),
             str(e["state"]).c_str(), num(e["weight"]).c_str(), latency.c_str(), response.c_str(),
             num(e["active"]).c_str(), num(e["connects"]).c_str(), num(e["connect_failures"]).c_str(),
             e["meshed"].as_bool() == true ? "yes" : "no", labels.empty() ? "-" : labels.c_str());
    out += line;
  }
  return out;
}

int run_endpoints(std::span<const std::string_view> args, const Io& io) {
  std::string admin_flag, output = "text", timeout_text;
  bool help = false, timeout_seen = false;
  FlagParser flags;
  flags.value("--admin", "", &admin_flag)
      .value("--output", "-o", &output)
      .value("--timeout", "", &timeout_text, &timeout_seen)
      .toggle("--help", "-h", &help);
  auto usage_error = [&io](const std::string& m) { return ctl::usage_error(io, "endpoints", m); };
  auto positional = flags.parse(args);
  if (!positional) return usage_error(positional.error());
  if (help) {
    write_all(io.out, kHelp);
    return kExitOk;
  }
  if (positional->size() != 1) return usage_error("expected one SERVICE, e.g. meshd-ctl endpoints web.prod");
  if (auto ok = check_output(output); !ok) return usage_error(ok.error());
  auto timeout = timeout_flag(timeout_text, timeout_seen, 4000);
  if (!timeout) return usage_error(timeout.error());
  auto target = resolve_admin_target(admin_flag);
  if (!target) return usage_error(target.error());
  std::string service(positional->front());
  auto body = admin_get(*target, "/endpoints/" + service, *timeout);
  if (!body) {
    fprintf(io.err, "meshd-ctl: %s\n", describe_admin_error(*target, body.error()).c_str());
    return kExitFailure;
  }
  if (output == "json") {
    write_all(io.out, *body);
    return kExitOk;
  }
  auto doc = parse_json(*body, JsonLimits{});
  if (!doc || !doc->is_object()) {
    fprintf(io.err, "meshd-ctl: admin endpoint %s sent endpoints that are not a JSON object\n", target->text.c_str());
    return kExitFailure;
  }
  write_all(io.out, render_endpoints_text(*doc));
  return kExitOk;
}

}  // namespace meshd::ctl
