#include "config/config.h"

#include <unistd.h>

#include <sched.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "base/parse.h"
#include "controller/registry.h"
#include "identity/spiffe.h"
#include "policy/authz.h"

namespace meshd::config {
namespace {

// One value as written, with where it came from, for error messages.
struct Raw {
  std::string text;
  std::string origin;  // "--threads", "MESHD_THREADS", "meshd.conf:4"
};
using RawValues = std::map<std::string, std::vector<Raw>>;

using Apply = Parsed<bool> (*)(Config&, const std::vector<Raw>&);

struct Setting {
  const char* name;
  const char* hint;
  const char* default_text;
  const char* help;
  bool repeatable;
  Apply apply;
};

std::string where(const Raw& r) { return r.origin + " '" + r.text + "'"; }

Parsed<bool> error(const Raw& r, const std::string& why) { return invalid("invalid " + where(r) + ": " + why); }

Parsed<std::vector<SocketAddr>> addr_list(const Raw& r) {
  std::vector<SocketAddr> out;
  if (r.text == "off") return out;
  for (const auto& item : split_list(r.text)) {
    auto a = SocketAddr::parse(item);
    if (!a) return invalid("invalid " + where(r) + ": " + a.error());
    out.push_back(*a);
  }
  if (out.empty()) return invalid("invalid " + where(r) + ": expected IP:PORT[,IP:PORT...] or off");
  return out;
}

template <uint64_t Min, uint64_t Max>
Parsed<bool> set_u32(uint32_t* field, const Raw& r) {
  auto v = parse_u64(r.text);
  if (!v) return error(r, v.error());
  if (*v < Min || *v > Max) return error(r, "must be between " + std::to_string(Min) + " and " + std::to_string(Max));
  *field = static_cast<uint32_t>(*v);
  return true;
}

// A size (parse_size) within [Min, Max]; `range` says the bounds as a user
// writes them ("1KiB and 1MiB").
template <uint64_t Min, uint64_t Max>
Parsed<bool> set_size(uint32_t* field, const Raw& r, std::string_view range) {
  static_assert(Max <= UINT32_MAX);
  auto s = parse_size(r.text);
  if (!s) return error(r, s.error());
  if (*s < Min || *s > Max) return error(r, "must be between " + std::string(range));
  *field = static_cast<uint32_t>(*s);
  return true;
}

// A comma-separated list, or 'none' for an empty one; each item is read
// by parse_item (a Parsed<T> whose error names what is wrong with it).
template <typename T, typename F>
Parsed<bool> set_list(std::vector<T>* field, const Raw& r, F parse_item) {
  field->clear();
  if (r.text == "none") return true;
  for (const auto& item : split_list(r.text)) {
    Parsed<T> v = parse_item(item);
    if (!v) return error(r, v.error());
    field->push_back(*v);
  }
  return true;
}

constexpr uint64_t kMaxDurationMs = 30ull * 24 * 3600 * 1000;

Parsed<bool> set_duration(uint64_t* field, const Raw& r, bool zero_ok) {
  if (zero_ok && (r.text == "off" || r.text == "0")) {
    *field = 0;
    return true;
  }
  auto v = parse_duration_ms(r.text);
  if (!v) return error(r, v.error());
  if (*v == 0) return error(r, zero_ok ? "use 'off' to disable" : "must be more than zero");
  // Deadlines are "now + duration" in milliseconds: a bound keeps that sum
  // far from overflow (a wrapped deadline would fire at once).
  if (*v > kMaxDurationMs) return error(r, "must be at most 30 days");
  *field = *v;
  return true;
}

const Setting kSettings[] = {
    {"outbound-listen", "ADDR[,ADDR]", "127.0.0.1:4140,[::1]:4140",
     "where redirected outbound connections arrive ('off' to disable)", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       auto l = addr_list(v.back());
       if (!l) return invalid(l.error());
       c.outbound_listen = *l;
       return true;
     }},
    {"inbound-listen", "ADDR[,ADDR]", "0.0.0.0:4143,[::]:4143",
     "where redirected inbound connections arrive ('off' to disable)", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       auto l = addr_list(v.back());
       if (!l) return invalid(l.error());
       c.inbound_listen = *l;
       return true;
     }},
    {"forward", "LISTEN=TARGET", "",
     "explicit forwarding: accept on LISTEN, connect to TARGET, an IP:PORT or NAME:PORT (a service the controller "
     "knows, balanced over its endpoints; else a DNS name) (repeatable; comma-separated in a variable)",
     true,
     [](Config& c, const std::vector<Raw>& values) -> Parsed<bool> {
       c.forwards.clear();
       for (const auto& r : values) {
         for (const auto& item : split_list(r.text)) {
           auto eq = item.find('=');
           if (eq == std::string::npos) return error(r, "expected LISTEN=TARGET, e.g. 127.0.0.1:9000=10.0.0.5:80");
           auto listen = SocketAddr::parse(item.substr(0, eq));
           if (!listen) return error(r, "listen address " + listen.error());
           auto target = HostPort::parse(item.substr(eq + 1));
           if (!target) return error(r, "target " + target.error());
           if (auto ip = target->literal(); ip && ip->is_unspecified())
             return error(r, "target must be a concrete address, not a wildcard");
           c.forwards.push_back({*listen, *target});
         }
       }
       return true;
     }},
    {"admin", "ADDR", "127.0.0.1:4191", "admin endpoint: /metrics /ready /live /status.json, and POST /shutdown from loopback ('off' to disable)", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       if (v.back().text == "off") {
         c.admin.reset();
         return true;
       }
       auto a = SocketAddr::parse(v.back().text);
       if (!a) return error(v.back(), a.error());
       c.admin = *a;
       return true;
     }},
    {"threads", "N|auto", "auto", "worker threads, one io_uring each; auto: one per CPU this process may use", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       if (v.back().text == "auto") {
         c.threads = 0;  // resolved once every source is read
         return true;
       }
       uint32_t n = 0;
       auto r = set_u32<1, 256>(&n, v.back());
       c.threads = n;
       return r;
     }},
    {"connect-timeout", "DURATION", "3s", "how long an upstream connect may take", false,
     [](Config& c, const std::vector<Raw>& v) { return set_duration(&c.connect_timeout_ms, v.back(), false); }},
    {"idle-timeout", "DURATION", "1h", "close a connection with no bytes either way for this long ('off': never)",
     false, [](Config& c, const std::vector<Raw>& v) { return set_duration(&c.idle_timeout_ms, v.back(), true); }},
    {"drain-timeout", "DURATION", "30s", "on SIGTERM, how long open connections may take to finish", false,
     [](Config& c, const std::vector<Raw>& v) { return set_duration(&c.drain_timeout_ms, v.back(), false); }},
    {"max-connections", "N", "20000", "open connections at most; further ones are refused (reset) and counted", false,
     [](Config& c, const std::vector<Raw>& v) { return set_u32<1, 10'000'000>(&c.max_connections, v.back()); }},
    {"buffer-size", "SIZE", "64KiB", "size of one receive buffer", false,
     [](Config& c, const std::vector<Raw>& v) {
       return set_size<1024, (1u << 20)>(&c.buffer_size, v.back(), "1KiB and 1MiB");
     }},
    {"buffers-per-thread", "N", "64",
     "receive buffers per worker (a power of two); bounds memory whatever the connection count", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       auto r = set_u32<2, 32768>(&c.buffers_per_thread, v.back());
       if (!r) return r;
       if ((c.buffers_per_thread & (c.buffers_per_thread - 1)) != 0) return error(v.back(), "must be a power of two");
       return true;
     }},
    {"inbound-target", "loopback|original", "loopback",
     "inbound connections go to the application on loopback at the original port, or to the original address", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       if (v.back().text == "loopback")
         c.inbound_target = InboundTarget::kLoopback;
       else if (v.back().text == "original")
         c.inbound_target = InboundTarget::kOriginal;
       else
         return error(v.back(), "expected 'loopback' or 'original'");
       return true;
     }},
    {"proxy-uid", "UID", "2102",
     "started as root, meshd switches to this UID after binding, so that the redirect rules (which exclude it) "
     "never send its own connections back to it",
     false, [](Config& c, const std::vector<Raw>& v) { return set_u32<1, 4'294'967'294u>(&c.proxy_uid, v.back()); }},
    {"controller", "HOST:PORT[,HOST:PORT]", "off",
     "the meshd-controller API address(es): discovery for outbound connections, and where --register goes ('off': "
     "none; traffic then goes where it was dialled)",
     false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       c.controllers.clear();
       if (v.back().text == "off") return true;
       auto l = HostPort::parse_list(v.back().text);
       if (!l) return error(v.back(), l.error());
       c.controllers = *l;
       return true;
     }},
    {"register", "NAME=PORT", "",
     "a service this host fronts: registered with the controller under a lease that meshd renews, removed on "
     "shutdown (repeatable; comma-separated in a variable)",
     true,
     [](Config& c, const std::vector<Raw>& values) -> Parsed<bool> {
       c.registrations.clear();
       for (const auto& r : values) {
         for (const auto& item : split_list(r.text)) {
           auto eq = item.find('=');
           if (eq == std::string::npos) return error(r, "expected NAME=PORT, e.g. web.prod=8080");
           std::string name = item.substr(0, eq);
           if (auto ok = controller::validate_service_name(name); !ok) return error(r, ok.error());
           auto port = parse_port(item.substr(eq + 1));
           if (!port) return error(r, port.error());
           c.registrations.push_back({name, *port});
         }
       }
       return true;
     }},
    {"register-lease", "DURATION", "30s", "how long a registration lives unless renewed (renewed every third)", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       auto r = set_duration(&c.register_lease_ms, v.back(), false);
       if (r && (c.register_lease_ms < 3000 || c.register_lease_ms > 86'400'000))
         return error(v.back(), "must be between 3s and 24h");
       return r;
     }},
    {"discovery-timeout", "DURATION", "1s",
     "how long a new outbound connection to an address not yet looked up waits for the controller's answer before "
     "going where it was dialled (0: never wait)",
     false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       auto r = set_duration(&c.discovery_timeout_ms, v.back(), true);
       if (r && c.discovery_timeout_ms > 60'000) return error(v.back(), "must be at most 60s");
       return r;
     }},
    {"discovery-evict", "DURATION", "10m",
     "a destination no connection used for this long is unsubscribed and forgotten", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       auto r = set_duration(&c.discovery_evict_ms, v.back(), false);
       if (r && c.discovery_evict_ms < 1000) return error(v.back(), "must be at least 1s");
       return r;
     }},
    {"detect-timeout", "DURATION", "500ms",
     "how long a connection waits for the client's first bytes: inbound with identity on, to recognise mesh TLS; "
     "outbound to a service, to choose its upstream (an HTTP/1 request may take a pooled connection); then it is "
     "relayed as it is",
     false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       auto r = set_duration(&c.detect_timeout_ms, v.back(), false);
       if (r && c.detect_timeout_ms > 60'000) return error(v.back(), "must be at most 1m");
       return r;
     }},
    {"opaque-ports", "PORT[,PORT]", "25,587,3306,4444,5432,6379,9300,11211",
     "inbound ports never waited on for detection (protocols where the server speaks first); 'none' for no port",
     false,
     [](Config& c, const std::vector<Raw>& v) {
       return set_list<uint16_t>(&c.opaque_ports, v.back(), [](const std::string& item) { return parse_port(item); });
     }},
    {"http", "on|off", "on",
     "HTTP awareness on intercepted connections: HTTP/1 requests and responses and HTTP/2 streams are parsed as "
     "they pass (golden metrics, gRPC status, HTTP/1 smuggling refused); off relays every connection as plain TCP",
     false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       if (v.back().text != "on" && v.back().text != "off") return error(v.back(), "must be 'on' or 'off'");
       c.http = v.back().text == "on";
       return true;
     }},
    {"http-max-request-line", "SIZE", "8KiB", "longest HTTP/1 request line accepted; a longer one is answered 414",
     false,
     [](Config& c, const std::vector<Raw>& v) {
       return set_size<256, (64u << 10)>(&c.http_max_request_line, v.back(), "256B and 64KiB");
     }},
    {"http-max-head-bytes", "SIZE", "32KiB",
     "largest HTTP/1 head (request or response line and headers) accepted; a larger request is answered 431", false,
     [](Config& c, const std::vector<Raw>& v) {
       return set_size<1024, (1u << 20)>(&c.http_max_head, v.back(), "1KiB and 1MiB");
     }},
    {"request-timeout", "DURATION", "off",
     "how long an HTTP/1 request waits for its response to begin, from its last byte, before the proxy answers 504 "
     "(meshd-proxy-error: request_timeout); a service's registry entry may set its own (request_timeout)",
     false, [](Config& c, const std::vector<Raw>& v) { return set_duration(&c.request_timeout_ms, v.back(), true); }},
    {"retry-statuses", "STATUS[,STATUS]", "503",
     "outbound HTTP/1 responses retried when the request is idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) "
     "and small, on another endpoint when there is one, within each service's retry budget (10 per second plus "
     "20% of its requests); such requests are also retried when the server closes before answering; 'none' for "
     "no retries",
     false,
     [](Config& c, const std::vector<Raw>& v) {
       return set_list<uint16_t>(&c.retry_statuses, v.back(), [](const std::string& item) -> Parsed<uint16_t> {
         auto n = parse_u64(item);
         if (!n || *n < 500 || *n > 599) return invalid("'" + item + "' is not a 5xx status (500-599)");
         return static_cast<uint16_t>(*n);
       });
     }},
    {"upstream-idle-timeout", "DURATION", "4s",
     "how long an idle outbound HTTP/1 connection to a service endpoint is kept for a later request (each request "
     "is balanced over the service's endpoints and reuses these); 0 keeps none, and a client connection's requests "
     "then all go to the endpoint it was balanced to",
     false,
     [](Config& c, const std::vector<Raw>& v) { return set_duration(&c.upstream_idle_timeout_ms, v.back(), true); }},
    {"policy-file", "FILE", "",
     "inbound authorization policies in TOML (per port: a default and rules allowing identities or networks)", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       c.policy_file = v.back().text;
       return true;
     }},
    {"default-inbound-policy", "POLICY", "all-unauthenticated",
     "who may connect to inbound ports no policy names: all-unauthenticated, all-authenticated (a mesh identity) "
     "or deny",
     false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       if (auto p = policy::parse_default_policy(v.back().text); !p) return error(v.back(), p.error());
       c.default_inbound_policy = v.back().text;
       return true;
     }},
    {"trust-anchors", "FILE", "",
     "PEM trust anchors of the mesh (ca.crt from `meshd-ctl identity init`): turns on identity and mTLS between "
     "proxies",
     false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       c.trust_anchors_file = v.back().text;
       return true;
     }},
    {"trust-domain", "NAME", "", "the mesh's SPIFFE trust domain (for the default --identity)", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       if (v.back().text.empty()) return true;
       if (auto ok = identity::check_trust_domain(v.back().text); !ok) return error(v.back(), ok.error());
       c.trust_domain = v.back().text;
       return true;
     }},
    {"identity", "SPIFFE-ID", "",
     "the identity this proxy asks the controller to certify (default spiffe://TRUST-DOMAIN/host/HOSTNAME)", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       if (v.back().text.empty()) return true;
       if (auto ok = identity::check_identity(v.back().text); !ok) return error(v.back(), ok.error());
       c.identity = v.back().text;
       return true;
     }},
    {"identity-token-file", "FILE", "",
     "the join token (from `meshd-ctl identity token`) that gets this proxy its first certificate; renewals need "
     "none",
     false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       c.identity_token_file = v.back().text;
       return true;
     }},
    {"identity-sa-token-file", "FILE", "",
     "in a pod: the projected Kubernetes service-account token that gets this proxy its certificates (the controller "
     "reviews it with the API server; re-read at each request, as the kubelet rotates it); instead of "
     "--identity-token-file",
     false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       c.identity_sa_token_file = v.back().text;
       return true;
     }},
    {"log-level", "LEVEL", "info", "debug, info, warn or error", false,
     [](Config& c, const std::vector<Raw>& v) -> Parsed<bool> {
       if (!log::parse_level(v.back().text.c_str(), &c.log_level))
         return error(v.back(), "expected debug, info, warn or error");
       return true;
     }},
};

const Setting* find_setting(std::string_view name) {
  for (const auto& s : kSettings)
    if (name == s.name) return &s;
  return nullptr;
}

std::string env_name(std::string_view setting) {
  std::string out = "MESHD_";
  for (char c : setting) out += c == '-' ? '_' : static_cast<char>(toupper(static_cast<unsigned char>(c)));
  return out;
}

Parsed<bool> read_file(const std::string& path, RawValues* out) {
  // A directory, a FIFO or /dev/zero would read as nothing, block, or
  // never end: only a regular file of sane size is a config file.
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return invalid("cannot read config file '" + path + "': " + strerror(errno));
  if (!S_ISREG(st.st_mode)) return invalid("config file '" + path + "' is not a regular file");
  if (st.st_size > (1 << 20)) return invalid("config file '" + path + "' is larger than 1 MiB");
  std::ifstream in(path);
  if (!in) return invalid("cannot read config file '" + path + "': " + strerror(errno));
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    auto t = trim(line);
    if (t.empty() || t.front() == '#') continue;
    std::string origin = path + ":" + std::to_string(lineno);
    auto eq = t.find('=');
    if (eq == std::string_view::npos)
      return invalid(origin + ": expected 'setting = value', got '" + std::string(t) + "'");
    std::string name(trim(t.substr(0, eq)));
    std::string value(trim(t.substr(eq + 1)));
    const Setting* s = find_setting(name);
    if (s == nullptr) return invalid(origin + ": unknown setting '" + name + "'");
    if (!s->repeatable) (*out)[name].clear();
    (*out)[name].push_back({value, origin + " " + name});
  }
  return true;
}

}  // namespace

std::string help_text() {
  std::ostringstream o;
  o << "usage: meshd [--setting value ...]\n\n"
       "meshd is the meshd service mesh's proxy: it forwards the TCP connections that\n"
       "meshd-init's redirect rules send to it (outbound and inbound), and those of\n"
       "--forward listeners, and counts them on the admin endpoint.\n\n"
       "Each setting is also read from the config file (--config FILE, lines of\n"
       "'setting = value') and from the environment (MESHD_SETTING_NAME); flags win\n"
       "over the environment, which wins over the file.\n\n"
       "  --config FILE          config file to read first (MESHD_CONFIG)\n";
  for (const auto& s : kSettings) {
    std::string left = std::string("--") + s.name + " " + s.hint;
    o << "  " << left;
    for (size_t i = left.size(); i < 21; ++i) o << ' ';
    o << "  " << s.help;
    if (s.default_text[0] != '\0') o << " (default: " << s.default_text << ")";
    o << "\n";
  }
  o << "  --help                 this text\n"
       "  --version              print the version\n";
  return o.str();
}

Parsed<Loaded> load(int argc, const char* const* argv, const char* const* envp) {
  Loaded out;
  RawValues file_values, env_values, flag_values;
  std::string config_file;

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      out.action = Action::kHelp;
      return out;
    }
    if (arg == "--version") {
      out.action = Action::kVersion;
      return out;
    }
    if (!arg.starts_with("--")) return invalid("unexpected argument '" + std::string(arg) + "' (see --help)");
    std::string name(arg.substr(2));
    std::string value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else {
      if (i + 1 >= argc) return invalid("--" + name + " needs a value (see --help)");
      value = argv[++i];
    }
    if (name == "config") {
      config_file = value;
      continue;
    }
    const Setting* s = find_setting(name);
    if (s == nullptr) return invalid("unknown flag --" + name + " (see --help)");
    if (!s->repeatable) flag_values[name].clear();
    flag_values[name].push_back({value, "--" + name});
  }

  for (const char* const* e = envp; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv = *e;
    if (!kv.starts_with("MESHD_")) continue;
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    std::string var(kv.substr(0, eq));
    std::string value(kv.substr(eq + 1));
    if (var == "MESHD_CONFIG") {
      if (config_file.empty()) config_file = value;
      continue;
    }
    const Setting* found = nullptr;
    for (const auto& s : kSettings)
      if (env_name(s.name) == var) found = &s;
    // Other tools' variables share the prefix (MESHD_BUILD, MESHD_ADMIN for
    // meshd-ctl): only names of our settings are read.
    if (found == nullptr) continue;
    env_values[found->name] = {{value, var}};
  }

  if (!config_file.empty()) {
    auto r = read_file(config_file, &file_values);
    if (!r) return invalid(r.error());
    out.config.config_file = config_file;
  }

  // Defaults are written in the table's own syntax and go through the same
  // parsers as anything an operator writes, so what --help shows is what
  // runs.
  Config& c = out.config;
  for (const auto& s : kSettings) {
    std::vector<Raw> fallback = {{s.default_text, std::string("default of ") + s.name}};
    const std::vector<Raw>* chosen = &fallback;
    if (auto it = flag_values.find(s.name); it != flag_values.end())
      chosen = &it->second;
    else if (auto it2 = env_values.find(s.name); it2 != env_values.end())
      chosen = &it2->second;
    else if (auto it3 = file_values.find(s.name); it3 != file_values.end())
      chosen = &it3->second;
    auto r = s.apply(c, *chosen);
    if (!r) return invalid(r.error());
    bool is_default = chosen == &fallback;
    if (std::string_view(s.name) == "outbound-listen") c.outbound_listen_is_default = is_default;
    if (std::string_view(s.name) == "inbound-listen") c.inbound_listen_is_default = is_default;
  }
  if (c.threads == 0) {
    cpu_set_t set;
    c.threads = sched_getaffinity(0, sizeof set, &set) == 0 ? static_cast<unsigned>(CPU_COUNT(&set)) : 1;
    if (c.threads == 0) c.threads = 1;
  }

  if (!c.trust_anchors_file.empty()) {
    if (c.controllers.empty())
      return invalid("--trust-anchors needs --controller (the controller issues certificates)");
    if (c.identity.empty()) {
      if (c.trust_domain.empty()) return invalid("--trust-anchors needs --identity or --trust-domain");
      char host[256] = "localhost";
      gethostname(host, sizeof host - 1);
      c.identity = identity::host_identity(c.trust_domain, host);
      if (auto ok = identity::check_identity(c.identity); !ok)
        return invalid("the default identity from the host name: " + ok.error() + "; give --identity");
    }
  } else if (!c.identity.empty() || !c.identity_token_file.empty() || !c.identity_sa_token_file.empty()) {
    return invalid("--identity, --identity-token-file and --identity-sa-token-file need --trust-anchors");
  }
  if (!c.identity_token_file.empty() && !c.identity_sa_token_file.empty())
    return invalid("--identity-token-file and --identity-sa-token-file are two ways to get a certificate: give one");

  // Cross-setting checks: two listeners on one address would steal each
  // other's connections.
  std::vector<std::pair<SocketAddr, std::string>> seen;
  auto claim = [&](const SocketAddr& a, const std::string& what) -> Parsed<bool> {
    for (const auto& [addr, owner] : seen)
      if (addr == a) return invalid("address " + a.str() + " is used twice: by " + owner + " and by " + what);
    seen.emplace_back(a, what);
    return true;
  };
  for (const auto& a : c.outbound_listen)
    if (auto r = claim(a, "outbound-listen"); !r) return invalid(r.error());
  for (const auto& a : c.inbound_listen)
    if (auto r = claim(a, "inbound-listen"); !r) return invalid(r.error());
  for (const auto& f : c.forwards)
    if (auto r = claim(f.listen, "forward"); !r) return invalid(r.error());
  if (c.admin)
    if (auto r = claim(*c.admin, "admin"); !r) return invalid(r.error());
  // A forward whose target is one of meshd's own listeners would feed each
  // connection back into itself until max-connections.
  for (const auto& f : c.forwards) {
    auto target = f.target.literal();
    if (!target) continue;  // a name: what it resolves to is checked per connection
    for (const auto& [addr, owner] : seen) {
      bool same_port = addr.port() == target->port() && addr.family() == target->family();
      if (addr == *target || (same_port && addr.is_unspecified() && target->is_loopback()))
        return invalid("forward target " + target->str() + " is meshd's own " + owner + " listener " + addr.str() +
                       ": it would loop");
    }
  }
  if (c.http_max_request_line > c.http_max_head)
    return invalid("http-max-request-line (" + std::to_string(c.http_max_request_line) +
                   " bytes) is larger than http-max-head-bytes (" + std::to_string(c.http_max_head) +
                   "): the request line is part of the head");
  uint64_t pool = static_cast<uint64_t>(c.buffer_size) * c.buffers_per_thread;
  if (pool > (256ull << 20))
    return invalid("buffers-per-thread x buffer-size is " + std::to_string(pool >> 20) +
                   " MiB per worker; at most 256 MiB");
  if (!c.registrations.empty() && c.controllers.empty())
    return invalid("register needs a controller: set controller to the meshd-controller's address");
  if (c.outbound_listen.empty() && c.inbound_listen.empty() && c.forwards.empty())
    return invalid("nothing to do: outbound-listen and inbound-listen are off and no --forward is given");
  return out;
}

}  // namespace meshd::config
