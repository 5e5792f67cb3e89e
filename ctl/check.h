// `meshd-ctl check`: pre-flight and health checks. Each check is a pure
// function from the facts gathered (files under /proc, the nat table, the
// proxy's /status.json, the controller's clock) to a verdict, so that every
// verdict and its fix hint can be unit-tested without root, a kernel knob
// or a running proxy; run_check() gathers the facts and prints.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/json_value.h"
#include "init/nat_state.h"

namespace meshd::ctl {

enum class Verdict { kOk, kWarn, kFail, kSkip };

struct CheckResult {
  std::string name;  // "io_uring", "redirect rules", ...
  Verdict verdict = Verdict::kOk;
  std::string detail;  // what was found, one line
  std::string hint;    // how to fix it; empty when ok
};

// io_uring: `disabled` is /proc/sys/kernel/io_uring_disabled (nullopt: the
// file is absent, kernels before 6.6, where io_uring cannot be turned off
// this way); `group` is /proc/sys/kernel/io_uring_group (-1: none);
// `proxy_in_group` whether the proxy UID's user belongs to that group
// (nullopt: no user entry to tell, as in a container image);
// `running_as_proxy` whether this process runs as the proxy's UID (then
// its own ring setup answers for the proxy); `setup_errno` what setting up
// a ring with a provided-buffer ring, as meshd does, gave in this process
// (0: it worked).
struct IoUringFacts {
  std::optional<int> disabled;
  int64_t group = -1;
  std::optional<bool> proxy_in_group = false;
  bool running_as_proxy = false;
  int setup_errno = 0;
  uint32_t proxy_uid = 2102;
};
CheckResult check_io_uring(const IoUringFacts& f);

// The capabilities that installing the redirect rules needs, from CapEff
// in /proc/self/status (hex). `required`: fail without them (pre-flight on
// the machine that will run meshd-init); otherwise a warning, as reading the
// rules is all that is left undone.
CheckResult check_capabilities(uint64_t cap_eff, bool required);

// iptables' nat table: `read_error` is what reading it gave (empty: read);
// without NET_RAW, the legacy backend cannot read it.
CheckResult check_iptables(const std::string& read_error, bool have_net_raw);

// The redirect rules: installed, redirecting to the ports the proxy listens
// on, and leaving the proxy's own UID alone. `status` is the proxy's
// /status.json (null when no proxy answered: then the expected ports and UID
// are the defaults, or what the flags said).
struct ExpectedRedirect {
  int inbound_port = 4143;
  int outbound_port = 4140;
  uint32_t proxy_uid = 2102;
};
CheckResult check_redirect_rules(const init::NatTable& nat, const JsonValue* status, const ExpectedRedirect& flags);

// The proxy's /live and /ready answers: HTTP status (0: no answer) and body.
struct ProbeAnswer {
  int status = 0;
  std::string body;  // or, with no answer, why
};
CheckResult check_proxy_live(const ProbeAnswer& live);
CheckResult check_proxy_ready(const ProbeAnswer& ready);

// The controller: what the proxy says of its connection (its /status.json,
// or null) and whether this tool reached it itself (`direct_error` empty:
// it did; `direct_tried` false: there was no controller to try).
CheckResult check_controller(const JsonValue* status, bool direct_tried, const std::string& direct_target,
                             const std::string& direct_error);

// The proxy's certificate, from /status.json's identity object. Near expiry
// means past the point where the proxy should have renewed it: it renews at
// about 70% of the lifetime, so less than a quarter left is overdue.
CheckResult check_certificate(const JsonValue* status, uint64_t now_unix_ms);

// Clock skew against the controller: its clock when it answered, and ours
// just before the request and just after the answer (the round trip bounds
// what can be told apart). Replicas refuse gossip more than 30 s off, and a
// certificate is not valid before it was issued.
inline constexpr uint64_t kMaxSkewMs = 30'000;
inline constexpr uint64_t kWarnSkewMs = 5'000;
CheckResult check_clock(uint64_t controller_unix_ms, uint64_t sent_unix_ms, uint64_t received_unix_ms);

// "[ ok ] name  detail\n       fix: hint\n" lines and a closing count.
std::string render_checks_text(const std::vector<CheckResult>& results);
std::string render_checks_json(const std::vector<CheckResult>& results);
// Exit status: failure when any check failed.
bool any_failed(const std::vector<CheckResult>& results);

}  // namespace meshd::ctl
