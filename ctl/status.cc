#include "ctl/status.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string_view>

#include "base/flags.h"
#include "base/parse.h"
#include "ctl/admin_client.h"
#include "ctl/command.h"
#include "ctl/common.h"
#include "identity/cert.h"

namespace meshd::ctl {

namespace {

constexpr std::string_view kStatusHelp =
    "Usage: meshd-ctl status [--admin HOST:PORT] [-o text|json] [--timeout DUR]\n"
    "\n"
    "Shows what the local proxy is doing: version, uptime, listeners, connection\n"
    "and byte counters, memory, and whether the iptables redirect is installed.\n"
    "It asks the proxy's admin endpoint (GET /status.json); the redirect line is\n"
    "read from the nat table (iptables-save -t nat), which needs root.\n"
    "\n"
    "Options:\n"
    "  --admin HOST:PORT   the proxy's admin endpoint (HOST is an IP address or\n"
    "                      localhost); default $MESHD_ADMIN, else 127.0.0.1:4191\n"
    "  -o, --output FMT    text (default): a summary for people\n"
    "                      json: the status document exactly as the proxy served it\n"
    "                      (no redirect check; for scripts and jq)\n"
    "  --timeout DUR       give up after DUR, connect included (e.g. 500ms, 5s;\n"
    "                      default 2s)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 when the proxy answered, 1 when it could not be asked (not\n"
    "running, no answer, an answer that is not a status document), 2 on bad usage.\n";

// ---- rendering (pure) -------------------------------------------------------

// Counters are integers, but a proxy that ever sends one as a double (or one
// past int64) should still render rather than show "?".
std::optional<uint64_t> uint_of(const JsonValue& v) {
  if (auto u = v.as_uint()) return u;
  if (auto d = v.as_double(); d && std::isfinite(*d) && *d >= 0) {
    if (*d >= 18446744073709551615.0) return UINT64_MAX;
    return static_cast<uint64_t>(*d);
  }
  return std::nullopt;
}

std::string count_text(const JsonValue& v) {
  auto u = uint_of(v);
  return u ? std::to_string(*u) : "?";
}

std::string bytes_text(const JsonValue& v) {
  auto u = uint_of(v);
  return u ? format_bytes(*u) : "?";
}

std::string string_or(const JsonValue& v, std::string_view fallback) {
  auto s = v.as_string();
  return std::string(s ? *s : fallback);
}

void add_line(std::string& out, std::string_view label, std::string_view text) {
  out += label;
  // Labels are padded to one column so the values line up.
  constexpr size_t kWidth = 13;
  out.append(label.size() < kWidth ? kWidth - label.size() : 1, ' ');
  out += text;
  out += '\n';
}

std::string headline(const JsonValue& doc) {
  std::string s = "meshd " + string_or(doc["version"], "?");
  if (auto rev = doc["git_rev"].as_string(); rev && !rev->empty()) s += " (" + std::string(*rev) + ")";
  if (auto pid = doc["pid"].as_int()) s += "  pid " + std::to_string(*pid);
  if (auto up = doc["uptime_seconds"].as_double()) s += "  up " + format_uptime(*up);
  if (auto state = doc["state"].as_string()) s += "  state " + std::string(*state);
  return s;
}

std::string listeners_text(const JsonValue& doc) {
  const JsonValue& listeners = doc["listeners"];
  if (!listeners.is_array()) return "?";
  if (listeners.size() == 0) return "none";
  std::string s;
  for (const JsonValue& l : listeners.items()) {
    if (!s.empty()) s += ", ";
    std::string name = string_or(l["name"], "");
    if (name.empty()) name = string_or(l["direction"], "?");
    s += name + " " + string_or(l["address"], "?");
    if (auto target = l["target"].as_string(); target && !target->empty()) s += " -> " + std::string(*target);
  }
  return s;
}

std::string connections_text(const JsonValue& doc) {
  const JsonValue& dirs = doc["directions"];
  if (!dirs.is_object() || dirs.size() == 0) return "?";
  std::string s;
  uint64_t refused = 0;
  bool any_refused = false;
  // Document order, so a direction added later shows without a change here.
  for (const auto& [name, d] : dirs.members()) {
    if (!s.empty()) s += "  ";
    s += name + " " + count_text(d["open"]) + " open (" + count_text(d["opened_total"]) + " total)";
    if (auto r = uint_of(d["refused_total"])) {
      refused += *r;
      any_refused = true;
    }
  }
  if (any_refused) s += "  refused " + std::to_string(refused);
  return s;
}

std::string bytes_line_text(const JsonValue& doc) {
  const JsonValue& dirs = doc["directions"];
  if (!dirs.is_object() || dirs.size() == 0) return "?";
  std::string s;
  for (const auto& [name, d] : dirs.members()) {
    if (!s.empty()) s += "  ";
    s += name + " read " + bytes_text(d["read_bytes_total"]) + " write " + bytes_text(d["write_bytes_total"]);
  }
  return s;
}

std::string memory_text(const JsonValue& doc) {
  const JsonValue& mem = doc["memory"];
  std::string s;
  if (auto rss = uint_of(mem["rss_bytes"])) s += "rss " + format_bytes(*rss);
  if (auto in_use = uint_of(mem["buffer_bytes_in_use"])) {
    if (!s.empty()) s += "  ";
    s += "buffers " + format_bytes(*in_use) + " in use";
    if (auto pool = uint_of(mem["buffer_pool_bytes"])) s += " of " + format_bytes(*pool);
  }
  return s.empty() ? "?" : s;
}

// "10.0.0.5:4190 fresh, TLS, connected 3m2s, last update 4s ago, 12 destinations"
// or why not; "none" when the proxy runs without a controller.
std::string controller_text(const JsonValue& doc, double now_unix_s) {
  const JsonValue& c = doc["controller"];
  if (!c.is_object()) return "none (no --controller: connections go where they were dialled)";
  std::string s = string_or(c["address"], "?");
  std::string state = string_or(c["state"], "?");
  auto ago = [&](const JsonValue& ms) -> std::string {
    auto v = uint_of(ms);
    if (!v || *v == 0) return "never";
    return format_uptime(now_unix_s - static_cast<double>(*v) / 1000.0) + " ago";
  };
  if (state == "disconnected") {
    s += " disconnected, serving what it last said (stale)";
    if (auto e = c["last_error"].as_string(); e && !e->empty()) s += ": " + std::string(*e);
  } else {
    s += " " + state;
    // Whether the registry (and the certificates) come from a verified
    // controller, or in clear from whoever answers at that address.
    if (auto tls = c["tls"].as_bool()) s += *tls ? ", TLS" : ", plaintext";
    if (auto since = uint_of(c["connected_since_unix_ms"]))
      s += ", connected " + format_uptime(now_unix_s - static_cast<double>(*since) / 1000.0);
  }
  s += ", last update " + ago(c["last_update_unix_ms"]);
  s += ", " + count_text(c["destinations"]) + " destinations";
  return s;
}

// "spiffe://td/host/web valid, expires in 23h59m (2026-11-27T10:00:00Z),
// renewed 5m ago", or why there is no usable certificate.
std::string identity_text(const JsonValue& doc, double now_unix_s) {
  const JsonValue& id = doc["identity"];
  if (!id.is_object()) return "none (no --trust-anchors: no mTLS)";
  std::string s = string_or(id["name"], "?");
  std::string state = string_or(id["state"], "?");
  std::string error = string_or(id["last_error"], "");
  auto expires = uint_of(id["expires_unix_ms"]);
  if (state == "none" || !expires || *expires == 0)
    return s + " waiting for its first certificate" + (error.empty() ? "" : ": " + error);
  double left = static_cast<double>(*expires) / 1000.0 - now_unix_s;
  std::string when = identity::format_time(*expires / 1000);
  if (state == "expired" || left <= 0) {
    s += " EXPIRED at " + when + ": mTLS connections fail closed";
    if (!error.empty()) s += "; renewal: " + error;
    return s;
  }
  s += " valid, expires in " + format_uptime(left) + " (" + when + ")";
  if (auto renewed = uint_of(id["renewed_unix_ms"]); renewed && *renewed > 0)
    s += ", renewed " + format_uptime(std::max(0.0, now_unix_s - static_cast<double>(*renewed) / 1000.0)) + " ago";
  if (!error.empty()) s += "; last renewal failed: " + error;
  return s;
}

}  // namespace

int port_of(std::string_view address) {
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return 0;
  auto port = parse_port(address.substr(colon + 1));
  return port ? *port : 0;
}

std::string listener_mismatch(const JsonValue& doc, std::string_view direction, int port) {
  const JsonValue& listeners = doc["listeners"];
  if (!listeners.is_array() || port == 0) return "";
  for (const JsonValue& l : listeners.items()) {
    if (l["direction"].as_string() == direction && port_of(string_or(l["address"], "")) == port) return "";
  }
  return "no " + std::string(direction) + " listener on port " + std::to_string(port);
}

namespace {

std::string redirect_text(const JsonValue& doc, const RedirectReport& redirect) {
  if (!redirect) return "unknown (" + redirect.error() + ")";
  const init::NatState& nat = *redirect;
  std::string warnings;
  auto one = [&](std::string_view dir, int port) {
    if (std::string w = listener_mismatch(doc, dir, port); !w.empty()) warnings += (warnings.empty() ? "" : ", ") + w;
    return std::string(dir) + " -> " + (port ? std::to_string(port) : "?");
  };
  std::string s;
  if (nat.inbound_installed && nat.outbound_installed) {
    // Two statements: operands of + are evaluated in no fixed order, and
    // the warnings should follow the order of the line.
    std::string in = one("inbound", nat.inbound_redirect_port);
    s = "installed (" + in + ", " + one("outbound", nat.outbound_redirect_port) + ")";
  } else if (nat.inbound_installed)
    s = "partial (" + one("inbound", nat.inbound_redirect_port) + "; outbound not installed)";
  else if (nat.outbound_installed)
    s = "partial (inbound not installed; " + one("outbound", nat.outbound_redirect_port) + ")";
  else
    s = "not installed";
  if (!warnings.empty()) s += "  WARNING: " + warnings;
  return s;
}

// ---- the command ------------------------------------------------------------

RedirectReport read_redirect() {
  auto table = init::read_nat_table(/*ipv6=*/false);
  if (!table) {
    // Without root iptables-save cannot read the table; say the fix rather
    // than relaying its error text.
    if (::geteuid() != 0) return invalid("run as root to check");
    return invalid(table.error());
  }
  return init::parse_nat_state(*table);
}

}  // namespace

std::string format_uptime(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  uint64_t s = static_cast<uint64_t>(seconds);
  char buf[64];
  if (s < 60)
    snprintf(buf, sizeof buf, "%llus", static_cast<unsigned long long>(s));
  else if (s < 3600)
    snprintf(buf, sizeof buf, "%llum%llus", static_cast<unsigned long long>(s / 60),
             static_cast<unsigned long long>(s % 60));
  else if (s < 86400)
    snprintf(buf, sizeof buf, "%lluh%llum", static_cast<unsigned long long>(s / 3600),
             static_cast<unsigned long long>(s % 3600 / 60));
  else
    snprintf(buf, sizeof buf, "%llud%lluh", static_cast<unsigned long long>(s / 86400),
             static_cast<unsigned long long>(s % 86400 / 3600));
  return buf;
}

std::string format_bytes(uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  // Move up a unit before rounding could print "1024 KiB".
  while (v >= 1023.5 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  if (v < 9.95)
    snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  else
    snprintf(buf, sizeof buf, "%.0f %s", v, kUnits[unit]);
  return buf;
}

std::string render_status_text(const JsonValue& doc, const RedirectReport& redirect, double now_unix_s) {
  std::string out = headline(doc) + "\n";
  add_line(out, "threads", count_text(doc["threads"]));
  add_line(out, "listeners", listeners_text(doc));
  add_line(out, "connections", connections_text(doc));
  add_line(out, "bytes", bytes_line_text(doc));
  add_line(out, "memory", memory_text(doc));
  add_line(out, "controller", controller_text(doc, now_unix_s));
  add_line(out, "identity", identity_text(doc, now_unix_s));
  add_line(out, "redirect", redirect_text(doc, redirect));
  return out;
}

int run_status(std::span<const std::string_view> args, const Io& io) {
  std::string admin_flag, output = "text", timeout_text;
  bool help = false, timeout_seen = false;
  FlagParser flags;
  flags.value("--admin", "", &admin_flag)
      .value("--output", "-o", &output)
      .value("--timeout", "", &timeout_text, &timeout_seen)
      .toggle("--help", "-h", &help);
  auto positional = flags.parse(args);
  auto usage_error = [&io](const std::string& m) { return ctl::usage_error(io, "status", m); };
  if (!positional) return usage_error(positional.error());
  if (help) {
    write_all(io.out, kStatusHelp);
    return kExitOk;
  }
  if (!positional->empty()) return usage_error("unexpected argument '" + std::string(positional->front()) + "'");
  if (auto ok = check_output(output); !ok) return usage_error(ok.error());
  auto timeout = timeout_flag(timeout_text, timeout_seen, kDefaultTimeoutMs);
  if (!timeout) return usage_error(timeout.error());
  const uint64_t timeout_ms = *timeout;
  auto target = resolve_admin_target(admin_flag);
  if (!target) return usage_error(target.error());

  auto body = admin_get(*target, "/status.json", timeout_ms);
  if (!body) {
    fprintf(io.err, "meshd-ctl: %s\n", describe_admin_error(*target, body.error()).c_str());
    return kExitFailure;
  }
  if (output == "json") {
    write_all(io.out, *body);
    if (body->empty() || body->back() != '\n') write_all(io.out, "\n");
    return kExitOk;
  }

  JsonLimits limits;
  limits.max_bytes = kDefaultMaxResponseBytes;
  auto doc = parse_json(*body, limits);
  if (!doc) {
    fprintf(io.err, "meshd-ctl: admin endpoint %s sent a /status.json that is not valid JSON: %s\n",
            target->text.c_str(), doc.error().c_str());
    return kExitFailure;
  }
  if (!doc->is_object()) {
    fprintf(io.err, "meshd-ctl: admin endpoint %s sent a /status.json that is not a JSON object\n",
            target->text.c_str());
    return kExitFailure;
  }
  write_all(io.out, render_status_text(*doc, read_redirect(), static_cast<double>(::time(nullptr))));
  return kExitOk;
}

}  // namespace meshd::ctl
