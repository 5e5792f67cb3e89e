// meshd-ctl tap: the HTTP requests a proxy carries, live, one line each
// (method, authority, path, status, latency), like `linkerd viz tap`. It
// polls the proxy's GET /tap every kPollMs with a cursor; each poll keeps
// the proxy capturing for a few seconds more, so a tap that ends (or dies)
// costs the proxy nothing shortly after.
#include "ctl/tap.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <thread>

#include "base/flags.h"
#include "base/json.h"
#include "base/json_value.h"
#include "base/parse.h"
#include "ctl/admin_client.h"
#include "ctl/common.h"
#include "ctl/stat.h"

namespace meshd::ctl {

namespace tap {

namespace {

// Peer bytes for a terminal: no control characters.
std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) out += static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c;
  return out;
}

}  // namespace

std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                      c == '.' || c == '_' || c == '~' || c == '/';
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

std::string poll_path(const Filter& f, std::optional<uint64_t> after, size_t max) {
  std::string p = "/tap?max=" + std::to_string(max);
  if (after) p += "&after=" + std::to_string(*after);
  auto add = [&p](std::string_view name, const std::string& v) {
    if (!v.empty()) p += "&" + std::string(name) + "=" + percent_encode(v);
  };
  add("authority", f.authority);
  add("path", f.path);
  add("method", f.method);
  add("direction", f.direction);
  return p;
}

Parsed<Page> parse_page(std::string_view body) {
  JsonLimits limits;
  limits.max_bytes = 8u << 20;
  auto doc = parse_json(body, limits);
  if (!doc) return invalid(doc.error());
  if (!doc->is_object()) return invalid("not a JSON object");
  Page page;
  auto next = (*doc)["next"].as_uint();
  auto dropped = (*doc)["dropped"].as_uint();
  if (!next || !dropped) return invalid("no \"next\" or \"dropped\" count");
  page.next = *next;
  page.dropped = *dropped;
  const JsonValue& events = (*doc)["events"];
  if (!events.is_array()) return invalid("no \"events\" array");
  for (size_t i = 0; i < events.size(); ++i) {
    const JsonValue& v = events[i];
    Event e;
    auto seq = v["seq"].as_uint();
    auto direction = v["direction"].as_string();
    auto method = v["method"].as_string();
    auto latency = v["latency_ms"].as_double();
    if (!seq || !direction || !method || !latency)
      return invalid("event " + std::to_string(i) + " lacks seq, direction, method or latency_ms");
    e.seq = *seq;
    e.unix_ms = v["unix_ms"].as_uint().value_or(0);
    e.direction = std::string(*direction);
    e.method = std::string(*method);
    e.authority = std::string(v["authority"].as_string().value_or(""));
    e.path = std::string(v["path"].as_string().value_or(""));
    e.path_truncated = v["path_truncated"].as_bool().value_or(false);
    e.dst_service = std::string(v["dst_service"].as_string().value_or(""));
    e.tls = v["tls"].as_bool().value_or(false);
    if (auto s = v["status"].as_uint()) e.status = *s;
    if (auto g = v["grpc_status"].as_uint()) e.grpc_status = *g;
    e.error = std::string(v["error"].as_string().value_or(""));
    e.latency_ms = *latency;
    page.events.push_back(std::move(e));
  }
  return page;
}

std::string render_text(const Event& e) {
  std::string line = "req " + printable(e.direction) + " " + printable(e.method) + " " +
                     (e.authority.empty() ? "-" : printable(e.authority)) + " " + printable(e.path) +
                     (e.path_truncated ? "..." : "") + " -> ";
  if (e.status)
    line += std::to_string(*e.status) + (e.grpc_status ? " grpc-status=" + std::to_string(*e.grpc_status) : "");
  else
    line += "error " + (e.error.empty() ? std::string("unknown") : printable(e.error));
  line += " " + stat::format_ms(e.latency_ms);
  if (!e.dst_service.empty()) line += " dst=" + printable(e.dst_service);
  line += e.tls ? " tls=true\n" : " tls=false\n";
  return line;
}

std::string render_json(const Event& e) {
  JsonWriter j;
  j.begin_object();
  j.field("seq", e.seq).field("unix_ms", e.unix_ms).field("direction", e.direction).field("method", e.method);
  j.field("authority", e.authority).field("path", e.path).field("path_truncated", e.path_truncated);
  j.field("dst_service", e.dst_service).field("tls", e.tls);
  j.key("status");
  if (e.status)
    j.value(*e.status);
  else
    j.null();
  j.key("error");
  if (e.status)
    j.null();
  else
    j.value(e.error);
  j.key("grpc_status");
  if (e.grpc_status)
    j.value(*e.grpc_status);
  else
    j.null();
  j.field("latency_ms", e.latency_ms);
  j.end_object();
  return j.take() + "\n";
}

}  // namespace tap

namespace {

constexpr std::string_view kHelp =
    "Usage: meshd-ctl tap [OPTIONS]\n"
    "\n"
    "Streams the HTTP requests the local proxy carries (HTTP/1 requests and\n"
    "HTTP/2 streams), live, one line per request once its response head came\n"
    "(or it failed), like `linkerd viz tap`:\n"
    "\n"
    "  req outbound GET api.prod /users -> 200 1.80ms dst=api.prod tls=true\n"
    "  req inbound POST web:8080 /login -> error upstream_reset 3.10ms tls=true\n"
    "\n"
    "The latency is the time to the response head (response_latency_ms). The\n"
    "proxy records requests only while a tap polls it (and for 5s after), from\n"
    "when the tap starts; it holds at most 512 per worker thread between two\n"
    "polls, and the tap says on stderr how many it missed.\n"
    "\n"
    "Options:\n"
    "  --admin ADDR        the proxy's admin endpoint, HOST:PORT (default: $MESHD_ADMIN,\n"
    "                      else 127.0.0.1:4191)\n"
    "  --authority HOST    only requests to this authority (exactly, ignoring case)\n"
    "  --path PREFIX       only requests whose path starts with PREFIX (starts with /)\n"
    "  --method METHOD     only requests with this method (GET, POST, ...)\n"
    "  --direction DIR     only inbound or only outbound requests\n"
    "  --max N             stop after N requests\n"
    "  --duration DUR      stop after DUR (e.g. 30s, 5m; a bare number is seconds)\n"
    "  -o, --output FMT    text (default) or json: one JSON object per line\n"
    "  --timeout DUR       give up on one poll after DUR, connect included\n"
    "                      (default 2s)\n"
    "  -h, --help          show this help\n"
    "\n"
    "Without --max or --duration it runs until interrupted (Ctrl-C, SIGTERM).\n"
    "\n"
    "Exit status: 0 when stopped by --max, --duration or a signal, 1 when the\n"
    "proxy could not be read (not running, no answer, an answer that is not a\n"
    "tap), 2 on bad usage.\n";

constexpr uint64_t kPollMs = 200;
constexpr size_t kPollMax = 1000;  // the proxy's bound on events per answer

volatile std::sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

// SIGINT and SIGTERM end the tap cleanly while it runs; the previous
// handlers come back after.
class StopSignals {
 public:
  StopSignals() {
    g_stop = 0;
    struct sigaction sa = {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~StopSignals() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  struct sigaction old_int_ = {};
  struct sigaction old_term_ = {};
};

Parsed<uint64_t> duration_flag(const std::string& text) {
  auto seconds = parse_u64(text);
  uint64_t ms = 0;
  if (seconds) {
    if (*seconds > UINT64_MAX / 1000) return invalid("--duration: '" + text + "' is too long");
    ms = *seconds * 1000;
  } else {
    auto d = parse_duration_ms(text);
    if (!d) return invalid("--duration: " + d.error());
    ms = *d;
  }
  if (ms == 0) return invalid("--duration: must be more than 0");
  return ms;
}

}  // namespace

int run_tap(std::span<const std::string_view> args, const Io& io) {
  std::string admin_flag, output = "text", timeout_text, max_text, duration_text;
  tap::Filter filter;
  bool help = false, timeout_seen = false, max_seen = false, duration_seen = false;
  FlagParser flags;
  flags.value("--admin", "", &admin_flag)
      .value("--authority", "", &filter.authority)
      .value("--path", "", &filter.path)
      .value("--method", "", &filter.method)
      .value("--direction", "", &filter.direction)
      .value("--max", "", &max_text, &max_seen)
      .value("--duration", "", &duration_text, &duration_seen)
      .value("--output", "-o", &output)
      .value("--timeout", "", &timeout_text, &timeout_seen)
      .toggle("--help", "-h", &help);
  auto usage_error = [&io](const std::string& m) { return ctl::usage_error(io, "tap", m); };
  auto positional = flags.parse(args);
  if (!positional) return usage_error(positional.error());
  if (help) {
    write_all(io.out, kHelp);
    return kExitOk;
  }
  if (!positional->empty()) return usage_error("unexpected argument '" + std::string(positional->front()) + "'");
  if (!filter.direction.empty() && filter.direction != "inbound" && filter.direction != "outbound")
    return usage_error("--direction: '" + filter.direction + "' is not a direction (expected inbound or outbound)");
  if (!filter.path.empty() && !filter.path.starts_with('/'))
    return usage_error("--path: '" + filter.path + "' is not a path prefix (it starts with /)");
  uint64_t max = 0;  // 0: no bound
  if (max_seen) {
    auto n = parse_u64(max_text);
    if (!n || *n == 0) return usage_error("--max: '" + max_text + "' is not a count above 0");
    max = *n;
  }
  uint64_t duration_ms = 0;  // 0: no bound
  if (duration_seen) {
    auto d = duration_flag(duration_text);
    if (!d) return usage_error(d.error());
    duration_ms = *d;
  }
  if (auto ok = check_output(output); !ok) return usage_error(ok.error());
  const bool json = output == "json";
  auto timeout = timeout_flag(timeout_text, timeout_seen, kDefaultTimeoutMs);
  if (!timeout) return usage_error(timeout.error());
  auto target = resolve_admin_target(admin_flag);
  if (!target) return usage_error(target.error());

  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  const auto deadline = started + std::chrono::milliseconds(duration_ms);
  auto finished = [&] { return g_stop != 0 || (duration_ms > 0 && Clock::now() >= deadline); };
  StopSignals signals;
  std::optional<uint64_t> cursor;  // none: the first poll, which starts the tap
  uint64_t shown = 0, dropped = 0;
  bool full = false;  // the last answer held all it could: poll again at once
  auto last_poll = started;
  while (true) {
    if (cursor && !full) {
      // Sleep in slices, to notice a signal or the deadline soon.
      auto next = last_poll + std::chrono::milliseconds(kPollMs);
      while (!finished() && Clock::now() < next) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (finished()) break;
    last_poll = Clock::now();
    size_t want = kPollMax;
    if (max > 0) want = static_cast<size_t>(std::min<uint64_t>(kPollMax, max - shown));
    auto body = admin_get(*target, tap::poll_path(filter, cursor, want), *timeout);
    if (!body) {
      if (g_stop != 0) break;  // interrupted in the middle of a poll
      fprintf(io.err, "meshd-ctl: %s\n", describe_admin_error(*target, body.error()).c_str());
      return kExitFailure;
    }
    auto page = tap::parse_page(*body);
    if (!page) {
      fprintf(io.err, "meshd-ctl: admin endpoint %s sent a /tap answer that was refused: %s\n", target->text.c_str(),
              page.error().c_str());
      return kExitFailure;
    }
    if (cursor && page->dropped > 0) {
      dropped += page->dropped;
      fprintf(io.err, "meshd-ctl tap: missed %llu request(s): more than the proxy holds between two polls\n",
              static_cast<unsigned long long>(page->dropped));
      fflush(io.err);
    }
    full = page->events.size() >= want;
    cursor = page->next;
    for (const tap::Event& e : page->events) {
      write_all(io.out, json ? tap::render_json(e) : tap::render_text(e));
      if (max > 0 && ++shown >= max) break;
    }
    fflush(io.out);  // live: each poll's lines go out now, also into a pipe
    if (max > 0 && shown >= max) break;
  }
  if (dropped > 0)
    fprintf(io.err, "meshd-ctl tap: %llu request(s) missed in all\n", static_cast<unsigned long long>(dropped));
  return kExitOk;
}

}  // namespace meshd::ctl
