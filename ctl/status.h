// `meshd-ctl status`: the pieces that are pure functions, exposed so they
// can be unit-tested without a proxy or root.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/json_value.h"
#include "base/result.h"
#include "init/nat_state.h"

namespace meshd::ctl {

// What the redirect line reports: the nat table's state, or why it could
// not be read (e.g. "run as root to check").
using RedirectReport = Parsed<init::NatState>;

// The human summary of a /status.json document. Fields that are missing or
// of an unexpected type print as "?" (or are left out), and unknown fields
// are ignored: a newer or older proxy must still get a readable summary.
// now_unix_s: the clock the controller line's "ago" is measured against.
std::string render_status_text(const JsonValue& doc, const RedirectReport& redirect, double now_unix_s);

// The port of "0.0.0.0:4143" or "[::]:4143"; 0 when there is none.
int port_of(std::string_view address);

// A redirect to a port nothing listens on blackholes the workload's traffic,
// the one failure status and check most need to point out. Empty when the
// port matches a listener of that direction (or there is nothing to compare,
// or port is 0); else "no inbound listener on port N".
std::string listener_mismatch(const JsonValue& doc, std::string_view direction, int port);

// "13s", "2m13s", "5h3m", "3d4h": the two most significant units.
std::string format_uptime(double seconds);
// "512 B", "256 KiB", "1.2 MiB": one decimal below 10 units, none above.
std::string format_bytes(uint64_t bytes);

}  // namespace meshd::ctl
