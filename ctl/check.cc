// meshd-ctl check: one line per check, pass or fail, each failure with the
// fix. The verdicts are pure functions (check.h); this file also gathers
// the facts they judge.
#include "ctl/check.h"

#include <grp.h>
#include <pwd.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "base/flags.h"
#include "base/json.h"
#include "base/parse.h"
#include "ctl/admin_client.h"
#include "ctl/command.h"
#include "ctl/common.h"
#include "ctl/controller_client.h"
#include "ctl/status.h"
#include "discovery/controller_call.h"
#include "io/buffer_ring.h"
#include "io/ring.h"

namespace meshd::ctl {
namespace {

constexpr std::string_view kHelp =
    "Usage: meshd-ctl check [--pre] [--admin HOST:PORT] [--controller HOST:PORT]\n"
    "                       [--trust-anchors FILE] [-o text|json] [--timeout DURATION]\n"
    "\n"
    "Checks that this host (or pod) can run meshd and that the mesh is working\n"
    "here, one line per check with its fix when it fails:\n"
    "\n"
    "  io_uring        the kernel has it and lets the proxy use it\n"
    "                  (/proc/sys/kernel/io_uring_disabled, io_uring_group)\n"
    "  capabilities    NET_ADMIN and NET_RAW, to read and install the redirect rules\n"
    "  iptables        the nat table can be read\n"
    "  redirect rules  installed, redirecting to the proxy's listening ports, and\n"
    "                  leaving the proxy's own UID alone\n"
    "  proxy live      the admin endpoint answers /live\n"
    "  proxy ready     /ready: started, not draining, certificate held\n"
    "  controller      the proxy is connected to it, and it answers from here\n"
    "  certificate     held, valid, and renewed in time\n"
    "  clock           within 5 s of the controller's (30 s fails: gossip and\n"
    "                  certificates depend on it)\n"
    "\n"
    "  --pre                   pre-flight, before meshd runs: only io_uring,\n"
    "                          capabilities (required) and iptables\n"
    "  --admin HOST:PORT       the proxy's admin endpoint (default $MESHD_ADMIN, else 127.0.0.1:4191)\n"
    "  --controller HOST:PORT  the controller to reach (default $MESHD_CONTROLLER, else the one the\n"
    "                          proxy uses)\n"
    "  --trust-anchors FILE    the mesh's CA, to reach a controller over TLS (default $MESHD_TRUST_ANCHORS)\n"
    "  --inbound-port PORT     the inbound redirect port expected when no proxy answers (default 4143)\n"
    "  --outbound-port PORT    likewise outbound (default 4140)\n"
    "  --proxy-uid UID         likewise the proxy's UID (default 2102)\n"
    "  -o, --output FORMAT     text (default) or json\n"
    "  --timeout DURATION      for each network check (default 2s)\n"
    "\n"
    "Exit status: 0 when no check failed (warnings and skipped checks do not\n"
    "fail), 1 when one did, 2 bad usage. Run it as root: without NET_ADMIN\n"
    "the rules cannot be read.\n";

CheckResult ok(std::string name, std::string detail) { return {std::move(name), Verdict::kOk, std::move(detail), {}}; }
CheckResult fail(std::string name, std::string detail, std::string hint) {
  return {std::move(name), Verdict::kFail, std::move(detail), std::move(hint)};
}
CheckResult warn(std::string name, std::string detail, std::string hint) {
  return {std::move(name), Verdict::kWarn, std::move(detail), std::move(hint)};
}
CheckResult skip(std::string name, std::string detail) {
  return {std::move(name), Verdict::kSkip, std::move(detail), {}};
}

std::string text_or(const JsonValue& v, std::string_view fallback) {
  auto s = v.as_string();
  return std::string(s ? *s : fallback);
}

std::string duration_text(uint64_t ms) { return format_uptime(static_cast<double>(ms) / 1000.0); }

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kOk: return "ok";
    case Verdict::kWarn: return "warn";
    case Verdict::kFail: return "fail";
    case Verdict::kSkip: return "skip";
  }
  return "?";
}

// CAP_NET_ADMIN is 12, CAP_NET_RAW 13 (linux/capability.h).
constexpr uint64_t kCapNetAdmin = 1ull << 12;
constexpr uint64_t kCapNetRaw = 1ull << 13;

}  // namespace

CheckResult check_io_uring(const IoUringFacts& f) {
  const std::string name = "io_uring";
  if (f.disabled && *f.disabled == 2)
    return fail(name, "disabled by the kernel (kernel.io_uring_disabled = 2)",
                "sysctl -w kernel.io_uring_disabled=0 (and in /etc/sysctl.d/ to keep it), or 1 with the proxy's "
                "user in kernel.io_uring_group");
  const bool proven = f.running_as_proxy && f.setup_errno == 0;
  if (f.disabled && *f.disabled == 1 && !proven && !f.proxy_in_group)
    return warn(name,
                "kernel.io_uring_disabled = 1 lets only root and the group kernel.io_uring_group use it, and "
                "whether UID " +
                    std::to_string(f.proxy_uid) + " is in that group cannot be told here (no user entry)",
                "run meshd-ctl check as the proxy's UID (in a pod, in the meshd-proxy container), or set "
                "kernel.io_uring_disabled=0");
  if (f.disabled && *f.disabled == 1 && !proven && f.proxy_in_group == false) {
    std::string why = "kernel.io_uring_disabled = 1 lets only root and the group kernel.io_uring_group (" +
                      (f.group < 0 ? std::string("none set") : std::to_string(f.group)) +
                      ") use it, and the proxy's UID " + std::to_string(f.proxy_uid) + " is not in it";
    return fail(name, why,
                "sysctl -w kernel.io_uring_group=GID with the proxy's user in that group, or "
                "kernel.io_uring_disabled=0");
  }
  if (f.setup_errno == ENOSYS)
    return fail(name, "this kernel has no io_uring (ENOSYS)",
                "meshd needs Linux 5.19 or later with CONFIG_IO_URING; a container's seccomp profile may also "
                "block it (run the proxy with a profile that allows io_uring_setup/enter/register)");
  if (f.setup_errno == EPERM)
    return fail(name, "setting up a ring was refused (EPERM)",
                "io_uring is blocked by seccomp (containerd's and Docker's default profiles block it), by "
                "kernel.io_uring_disabled, or by an LSM: allow io_uring for the proxy");
  if (f.setup_errno == EINVAL)
    return fail(name, "the kernel's io_uring lacks provided-buffer rings (EINVAL)", "meshd needs Linux 5.19 or later");
  if (f.setup_errno == ENOMEM)
    return fail(name, "no memory for a ring (ENOMEM): the locked-memory limit is too low",
                "raise RLIMIT_MEMLOCK (LimitMEMLOCK= in the unit; ulimit -l) or use Linux 5.12+, which does not "
                "count rings against it");
  if (f.setup_errno != 0)
    return fail(name, std::string("setting up a ring failed: ") + std::strerror(f.setup_errno),
                "see /proc/sys/kernel/io_uring_disabled and the kernel log");
  std::string detail = "available";
  if (!f.disabled)
    detail += " (no kernel.io_uring_disabled knob)";
  else if (*f.disabled == 0)
    detail += " (kernel.io_uring_disabled = 0)";
  else if (proven)
    detail += " (kernel.io_uring_disabled = 1, and the proxy's UID, this process's, may use it)";
  else
    detail += " (kernel.io_uring_disabled = 1, the proxy's UID is in kernel.io_uring_group)";
  return ok(name, detail);
}

CheckResult check_capabilities(uint64_t cap_eff, bool required) {
  const std::string name = "capabilities";
  std::string missing;
  if ((cap_eff & kCapNetAdmin) == 0) missing += "NET_ADMIN";
  if ((cap_eff & kCapNetRaw) == 0) missing += std::string(missing.empty() ? "" : ", ") + "NET_RAW";
  if (missing.empty()) return ok(name, "NET_ADMIN and NET_RAW (enough to read and install the redirect rules)");
  std::string detail = "missing " + missing + ": the redirect rules cannot be read or installed from here";
  std::string hint = "run as root (sudo meshd-ctl check), or in a pod from the meshd-init container's privileges";
  return required ? fail(name, detail, hint) : warn(name, detail, hint);
}

CheckResult check_iptables(const std::string& read_error, bool have_net_raw) {
  const std::string name = "iptables";
  if (read_error.empty()) return ok(name, "the nat table can be read");
  if (!have_net_raw)
    return fail(name, read_error, "the legacy iptables backend also needs NET_RAW: run as root (sudo meshd-ctl check)");
  return fail(name, read_error,
              "install iptables (apt-get install iptables), run as root, and make sure the kernel has the nat "
              "table (modprobe iptable_nat, or nf_tables with iptables-nft)");
}

CheckResult check_redirect_rules(const init::NatTable& nat, const JsonValue* status, const ExpectedRedirect& flags) {
  const std::string name = "redirect rules";
  const std::string install = "run meshd-init as root (on a host: systemctl restart meshd, which runs it first)";
  bool in_jump = nat.has_jump("PREROUTING", init::kInboundChain);
  bool out_jump = nat.has_jump("OUTPUT", init::kOutputChain);
  if (!in_jump && !out_jump) return fail(name, "not installed: no traffic is redirected to meshd", install);
  if (!in_jump || !out_jump)
    return fail(name, std::string("half installed: ") + (in_jump ? "outbound" : "inbound") + " is not redirected",
                install);
  // What the rules say: the REDIRECT ports and the UID left alone.
  int in_port = init::redirect_port(nat, init::kInboundRedirectChain);
  int out_port = init::redirect_port(nat, init::kOutboundRedirectChain);
  std::optional<uint32_t> excluded_uid;
  for (const auto& r : nat.rules) {
    auto words = init::split_rule_words(r.spec);
    for (size_t i = 0; i + 1 < words.size(); ++i) {
      if (words[i] == "--uid-owner" && r.chain == init::kOutputChain && r.target == "RETURN")
        if (auto u = parse_u64(words[i + 1]); u && *u <= UINT32_MAX) excluded_uid = static_cast<uint32_t>(*u);
    }
  }
  std::string found = "inbound -> " + std::to_string(in_port) + ", outbound -> " + std::to_string(out_port) + ", UID " +
                      (excluded_uid ? std::to_string(*excluded_uid) : std::string("?")) + " left alone";
  std::string problems;
  auto add = [&problems](const std::string& p) { problems += (problems.empty() ? "" : "; ") + p; };
  uint32_t proxy_uid = flags.proxy_uid;
  if (status != nullptr) {
    for (auto [dir, port] : {std::pair<std::string_view, int>{"inbound", in_port}, {"outbound", out_port}}) {
      if (port == 0) add("no " + std::string(dir) + " redirect port");
      // A listener of the proxy must be on the redirect port, or the
      // workload's traffic goes nowhere.
      else if (auto m = listener_mismatch(*status, dir, port); !m.empty())
        add("the proxy has " + m);
    }
    if (auto u = (*status)["config"]["proxy_uid"].as_uint()) proxy_uid = static_cast<uint32_t>(*u);
  } else {
    if (in_port != flags.inbound_port)
      add("inbound goes to port " + std::to_string(in_port) + ", not " + std::to_string(flags.inbound_port));
    if (out_port != flags.outbound_port)
      add("outbound goes to port " + std::to_string(out_port) + ", not " + std::to_string(flags.outbound_port));
  }
  if (!excluded_uid)
    add("no rule leaves the proxy's own traffic alone");
  else if (*excluded_uid != proxy_uid)
    add("the rules leave UID " + std::to_string(*excluded_uid) + " alone, but the proxy runs as " +
        std::to_string(proxy_uid) + ": its own connections would loop back to it");
  if (!problems.empty())
    return fail(name, found + ": " + problems,
                "give meshd-init and meshd the same ports and UID (--inbound-port, --outbound-port, --proxy-uid; "
                "on a host /etc/meshd/init.env and /etc/meshd/meshd.conf), then run meshd-init again");
  return ok(name, found);
}

CheckResult check_proxy_live(const ProbeAnswer& live) {
  const std::string name = "proxy live";
  if (live.status == 200) return ok(name, "the admin endpoint answers");
  if (live.status == 0)
    return fail(name, live.body, "start meshd (systemctl start meshd; in a pod, see the meshd-proxy container's log)");
  return fail(name, "/live answered " + std::to_string(live.status), "see meshd's log");
}

CheckResult check_proxy_ready(const ProbeAnswer& ready) {
  const std::string name = "proxy ready";
  std::string body = ready.body;
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
  if (ready.status == 200) return ok(name, "serving");
  if (ready.status == 0) return skip(name, "no proxy answering");
  if (body == "waiting for a certificate")
    return fail(name, "waiting for its first certificate",
                "see the certificate and controller checks, and meshd's log (identity lines)");
  if (body == "draining") return fail(name, "draining: it is shutting down", "start it again if that was not meant");
  return fail(name, "/ready answered " + std::to_string(ready.status) + (body.empty() ? "" : " (" + body + ")"),
              "see meshd's log");
}

CheckResult check_controller(const JsonValue* status, bool direct_tried, const std::string& direct_target,
                             const std::string& direct_error) {
  const std::string name = "controller";
  const JsonValue* c = status != nullptr ? status->find("controller") : nullptr;
  std::string proxy_view;
  bool proxy_connected = false;
  if (c != nullptr) {
    proxy_connected = (*c)["connected"].as_bool().value_or(false);
    std::string state = text_or((*c)["state"], "?");
    proxy_view = "the proxy is " + std::string(proxy_connected ? "connected to " : "not connected to ") +
                 text_or((*c)["address"], "?") + (proxy_connected ? " (" + state + ")" : "");
    std::string err = text_or((*c)["last_error"], "");
    if (!proxy_connected && !err.empty()) proxy_view += " (" + err + ")";
  }
  if (!direct_tried && c == nullptr)
    return skip(name, status != nullptr ? "the proxy runs without a controller (--controller off)"
                                        : "no controller given (--controller, MESHD_CONTROLLER)");
  std::string direct = !direct_tried          ? ""
                       : direct_error.empty() ? direct_target + " answers from here"
                                              : "from here: " + direct_error;
  std::string detail = proxy_view + (proxy_view.empty() || direct.empty() ? "" : "; ") + direct;
  const std::string hint =
      "check that meshd-controller runs and that its API port (4190) is reachable; a TLS controller needs the "
      "trust anchors (--trust-anchors or MESHD_TRUST_ANCHORS)";
  if (c != nullptr && !proxy_connected) return fail(name, detail, hint);
  if (c == nullptr && !direct_error.empty()) return fail(name, detail, hint);
  // The proxy is connected but this tool could not reach it: often only
  // the trust anchors missing here; the proxy's view is what traffic uses.
  if (direct_tried && !direct_error.empty()) return warn(name, detail, hint);
  return ok(name, detail);
}

CheckResult check_certificate(const JsonValue* status, uint64_t now_unix_ms) {
  const std::string name = "certificate";
  if (status == nullptr) return skip(name, "no proxy answering");
  const JsonValue* id = status->find("identity");
  if (id == nullptr)
    return warn(name, "identity is off: connections between proxies are not mutual TLS",
                "give meshd --trust-anchors and a token (--identity-token-file, or in a pod "
                "--identity-sa-token-file; meshd-ctl inject --trust-domain does it)");
  std::string who = text_or((*id)["name"], "?");
  uint64_t expires = (*id)["expires_unix_ms"].as_uint().value_or(0);
  uint64_t renewed = (*id)["renewed_unix_ms"].as_uint().value_or(0);
  std::string last_error = text_or((*id)["last_error"], "");
  std::string why = last_error.empty() ? "" : " (last attempt: " + last_error + ")";
  const std::string hint =
      "see the controller check and meshd's identity log lines; a first certificate needs a valid token";
  if (expires == 0) return fail(name, "none yet for " + who + why, hint);
  if (expires <= now_unix_ms)
    return fail(name, who + " expired " + duration_text(now_unix_ms - expires) + " ago" + why, hint);
  uint64_t left = expires - now_unix_ms;
  std::string detail = who + ", valid for " + duration_text(left);
  if (renewed != 0 && renewed < expires) {
    uint64_t lifetime = expires - renewed;
    if (left < lifetime / 4) return fail(name, detail + ": renewal is overdue" + why, hint);
  }
  return ok(name, detail);
}

CheckResult check_clock(uint64_t controller_unix_ms, uint64_t sent_unix_ms, uint64_t received_unix_ms) {
  const std::string name = "clock";
  if (received_unix_ms < sent_unix_ms) return warn(name, "the local clock stepped during the check", "run it again");
  // The controller read its clock somewhere in [sent, received]: only what
  // lies outside that window is skew.
  uint64_t skew = 0;
  bool behind = false;
  if (controller_unix_ms < sent_unix_ms) {
    skew = sent_unix_ms - controller_unix_ms;
    behind = true;
  } else if (controller_unix_ms > received_unix_ms) {
    skew = controller_unix_ms - received_unix_ms;
  }
  std::string detail = skew == 0 ? "within " + std::to_string(received_unix_ms - sent_unix_ms) +
                                       " ms of the controller's (the round trip)"
                                 : "the controller's clock is " + std::to_string(skew) + " ms " +
                                       (behind ? "behind" : "ahead of") + " this one";
  const std::string hint = "synchronise clocks with NTP (systemd-timesyncd, chrony) on every host";
  if (skew > kMaxSkewMs) return fail(name, detail, hint);
  if (skew > kWarnSkewMs) return warn(name, detail, hint);
  return ok(name, detail);
}

std::string render_checks_text(const std::vector<CheckResult>& results) {
  std::string out;
  size_t counts[4] = {0, 0, 0, 0};
  for (const auto& r : results) {
    ++counts[static_cast<int>(r.verdict)];
    char head[64];
    snprintf(head, sizeof head, "[%-4s] %-15s ", verdict_name(r.verdict), r.name.c_str());
    out += head + r.detail + "\n";
    if (!r.hint.empty() && r.verdict != Verdict::kOk)
      out += "       " + std::string(15, ' ') + " fix: " + r.hint + "\n";
  }
  out += "\n" + std::to_string(counts[0]) + " ok, " + std::to_string(counts[2]) + " failed, " +
         std::to_string(counts[1]) + " warnings, " + std::to_string(counts[3]) + " skipped\n";
  return out;
}

std::string render_checks_json(const std::vector<CheckResult>& results) {
  JsonWriter j;
  j.begin_object().field("ok", !any_failed(results)).key("checks").begin_array();
  for (const auto& r : results) {
    j.begin_object().field("name", r.name).field("result", verdict_name(r.verdict)).field("detail", r.detail);
    if (!r.hint.empty()) j.field("fix", r.hint);
    j.end_object();
  }
  j.end_array().end_object();
  return j.take() + "\n";
}

bool any_failed(const std::vector<CheckResult>& results) {
  for (const auto& r : results)
    if (r.verdict == Verdict::kFail) return true;
  return false;
}

// ---- gathering the facts ------------------------------------------------------

namespace {

std::optional<int64_t> read_proc_number(const char* path) {
  std::ifstream f(path);
  int64_t v = 0;
  if (!(f >> v)) return std::nullopt;
  return v;
}

uint64_t effective_capabilities() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.starts_with("CapEff:")) return std::strtoull(line.c_str() + 7, nullptr, 16);
  }
  return 0;
}

// Whether the user with this UID is in group `gid` (primary or
// supplementary, through NSS); nullopt when there is no such user to ask.
std::optional<bool> uid_in_group(uint32_t uid, int64_t gid) {
  if (gid < 0) return false;
  const passwd* pw = getpwuid(uid);
  if (pw == nullptr) return std::nullopt;
  if (static_cast<int64_t>(pw->pw_gid) == gid) return true;
  std::vector<gid_t> groups(64);
  int n = static_cast<int>(groups.size());
  if (getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<size_t>(n));
    if (getgrouplist(pw->pw_name, pw->pw_gid, groups.data(), &n) < 0) return std::nullopt;
  }
  for (int i = 0; i < n; ++i)
    if (static_cast<int64_t>(groups[static_cast<size_t>(i)]) == gid) return true;
  return false;
}

IoUringFacts io_uring_facts(uint32_t proxy_uid) {
  IoUringFacts f;
  f.proxy_uid = proxy_uid;
  if (auto d = read_proc_number("/proc/sys/kernel/io_uring_disabled")) f.disabled = static_cast<int>(*d);
  if (auto g = read_proc_number("/proc/sys/kernel/io_uring_group")) f.group = *g;
  f.proxy_in_group = uid_in_group(proxy_uid, f.group);
  f.running_as_proxy = geteuid() == proxy_uid;
  // What meshd's workers do at start: a ring, and a provided-buffer ring on it.
  io::Ring ring;
  if (auto r = ring.init(8); !r) {
    f.setup_errno = r.error().value;
    return f;
  }
  io::BufferRing buffers;
  if (auto r = buffers.init(ring.raw(), 0, 2, 4096); !r) f.setup_errno = r.error().value;
  return f;
}

uint64_t wall_ms() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  return static_cast<uint64_t>(tv.tv_sec) * 1000 + static_cast<uint64_t>(tv.tv_usec) / 1000;
}

ProbeAnswer probe(const AdminTarget& admin, std::string_view path, uint64_t timeout_ms) {
  auto body = admin_get(admin, path, timeout_ms, 64 * 1024);
  if (body) return {200, *body};
  const AdminError& e = body.error();
  if (e.kind == AdminError::Kind::kStatus) return {e.status, e.said};
  return {0, describe_admin_error(admin, e)};
}

}  // namespace

int run_check(std::span<const std::string_view> args, const Io& io) {
  std::string admin_flag, output = "text", timeout_text, in_text, out_text, uid_text;
  ControllerFlags controller;
  bool help = false, timeout_seen = false, pre = false;
  FlagParser flags;
  controller.add_to(flags);
  flags.value("--admin", "", &admin_flag)
      .value("--output", "-o", &output)
      .value("--timeout", "", &timeout_text, &timeout_seen)
      .value("--inbound-port", "", &in_text)
      .value("--outbound-port", "", &out_text)
      .value("--proxy-uid", "", &uid_text)
      .toggle("--pre", "", &pre)
      .toggle("--help", "-h", &help);
  auto positional = flags.parse(args);
  auto usage = [&io](const std::string& m) { return usage_error(io, "check", m); };
  if (!positional) return usage(positional.error());
  if (help) {
    write_all(io.out, kHelp);
    return kExitOk;
  }
  if (!positional->empty()) return usage("unexpected argument '" + std::string(positional->front()) + "'");
  if (auto okay = check_output(output); !okay) return usage(okay.error());
  auto timeout = timeout_flag(timeout_text, timeout_seen, kDefaultTimeoutMs);
  if (!timeout) return usage(timeout.error());
  ExpectedRedirect expected;
  if (!in_text.empty()) {
    auto p = parse_port(in_text);
    if (!p) return usage("--inbound-port: " + p.error());
    expected.inbound_port = *p;
  }
  if (!out_text.empty()) {
    auto p = parse_port(out_text);
    if (!p) return usage("--outbound-port: " + p.error());
    expected.outbound_port = *p;
  }
  if (!uid_text.empty()) {
    auto u = parse_u64(uid_text);
    if (!u || *u > UINT32_MAX) return usage("--proxy-uid: expected a UID, not '" + uid_text + "'");
    expected.proxy_uid = static_cast<uint32_t>(*u);
  }
  auto admin = resolve_admin_target(admin_flag);
  if (!admin) return usage(admin.error());

  std::vector<CheckResult> results;
  // The proxy first: its config says which ports and UID the rest expects.
  ProbeAnswer live, ready;
  std::optional<JsonValue> status;
  if (!pre) {
    live = probe(*admin, "/live", *timeout);
    if (live.status == 200) {
      ready = probe(*admin, "/ready", *timeout);
      if (auto body = admin_get(*admin, "/status.json", *timeout)) {
        JsonLimits limits;
        limits.max_bytes = kDefaultMaxResponseBytes;
        if (auto doc = parse_json(*body, limits); doc && doc->is_object()) status = std::move(*doc);
      }
    }
  }
  const JsonValue* st = status ? &*status : nullptr;
  uint32_t proxy_uid = expected.proxy_uid;
  if (st != nullptr)
    if (auto u = (*st)["config"]["proxy_uid"].as_uint()) proxy_uid = static_cast<uint32_t>(*u);

  results.push_back(check_io_uring(io_uring_facts(proxy_uid)));
  uint64_t caps = effective_capabilities();
  results.push_back(check_capabilities(caps, pre));
  const bool can_read_rules = (caps & kCapNetAdmin) != 0;
  auto table = can_read_rules ? init::read_nat_table(/*ipv6=*/false) : Parsed<std::string>(invalid(""));
  if (can_read_rules)
    results.push_back(check_iptables(table ? std::string() : table.error(), (caps & kCapNetRaw) != 0));
  else
    results.push_back(skip("iptables", "needs NET_ADMIN (see capabilities)"));
  if (pre) {
    // Nothing is running yet: what follows would only report that.
  } else {
    if (!can_read_rules)
      results.push_back(skip("redirect rules", "needs NET_ADMIN (see capabilities)"));
    else if (!table)
      results.push_back(skip("redirect rules", "the nat table could not be read (see iptables)"));
    else
      results.push_back(check_redirect_rules(init::parse_nat_table(*table), st, expected));
    results.push_back(check_proxy_live(live));
    results.push_back(check_proxy_ready(ready));

    // The controller: the one named here, else the one the proxy uses.
    std::string target_text = controller.controller;
    if (target_text.empty())
      if (const char* env = std::getenv("MESHD_CONTROLLER"); env != nullptr) target_text = env;
    if (target_text.empty() && st != nullptr) target_text = text_or((*st)["controller"]["address"], "");
    bool tried = false;
    std::string direct_error;
    std::optional<uint64_t> controller_now;
    uint64_t sent = 0, received = 0;
    if (!target_text.empty()) {
      tried = true;
      ControllerFlags c = controller;
      c.controller = target_text;
      proto::Request req;
      req.set_id(1);
      req.mutable_list_services();
      // Errors go to a scratch stream: they become the check's detail.
      char* buf = nullptr;
      size_t len = 0;
      FILE* scratch = open_memstream(&buf, &len);
      Io quiet{scratch, scratch};
      sent = wall_ms();
      auto resp = call_controller(quiet, "check", c, *timeout, req);
      received = wall_ms();
      fclose(scratch);
      std::string said(buf != nullptr ? buf : "", len);
      free(buf);
      if (resp) {
        if (resp->now_unix_ms() != 0) controller_now = resp->now_unix_ms();
      } else {
        if (said.starts_with("meshd-ctl: ")) said.erase(0, 11);
        while (!said.empty() && said.back() == '\n') said.pop_back();
        direct_error = said.empty() ? "no answer" : said;
      }
    }
    results.push_back(check_controller(st, tried, target_text, direct_error));
    results.push_back(check_certificate(st, wall_ms()));
    if (controller_now)
      results.push_back(check_clock(*controller_now, sent, received));
    else
      results.push_back(
          skip("clock", tried ? "the controller did not answer with its clock" : "no controller to compare with"));
  }

  write_all(io.out, output == "json" ? render_checks_json(results) : render_checks_text(results));
  return any_failed(results) ? kExitFailure : kExitOk;
}

}  // namespace meshd::ctl
