// meshd-ctl inject / uninject: the meshd init container and native sidecar
// added to (or removed from) the pod templates of Kubernetes manifests.
//
// Each document is parsed by ctl/yaml_edit.h for its structure only; the
// changes are whole lines inserted or removed, so comments, quoting and
// every field inject does not own come out as they went in.
#include "ctl/inject.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "base/flags.h"
#include "base/parse.h"
#include "ctl/command.h"
#include "ctl/common.h"
#include "ctl/yaml_edit.h"
#include "init/options.h"
#include "version.h"

#ifndef MESHD_VERSION
#define MESHD_VERSION "0.0.0"
#endif

namespace meshd::ctl {

namespace {

using yaml::Document;
using yaml::Edit;
using yaml::Entry;
using yaml::Node;
using yaml::Style;
using yaml::Value;

constexpr size_t kMaxInput = 16u << 20;

constexpr int kInboundPort = 4143;
constexpr int kOutboundPort = 4140;
constexpr int kAdminPort = 4191;
constexpr int kProxyUid = 2102;

constexpr std::string_view kXtablesVolume = "meshd-xtables-lock";
constexpr std::string_view kTrustVolume = "meshd-trust-anchors";
constexpr std::string_view kTokenVolume = "meshd-token";

constexpr std::string_view kInjectHelp =
    "Usage: meshd-ctl inject [FILE|-] [flags]\n"
    "\n"
    "Reads Kubernetes manifests (FILE, or stdin when FILE is '-' or absent;\n"
    "multi-document YAML) and writes them to stdout with meshd added to every\n"
    "pod template: Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets,\n"
    "ReplicationControllers, Jobs, CronJobs (and the items of a List).\n"
    "Other objects, and objects already injected, come out byte for byte;\n"
    "in the others only added lines differ, so comments survive.\n"
    "\n"
    "Added to the pod template, before any init container already there:\n"
    "  meshd-init   runs meshd-init (the iptables redirect to ports 4143/4140),\n"
    "               as root with NET_ADMIN and NET_RAW only, other capabilities\n"
    "               dropped, read-only root file system (an emptyDir on /run\n"
    "               holds the xtables lock)\n"
    "  meshd-proxy  the proxy as a native sidecar (an init container with\n"
    "               restartPolicy: Always, Kubernetes 1.29+, or 1.28 with the\n"
    "               SidecarContainers feature gate): it keeps running beside\n"
    "               the app, a Job still completes, and the app's containers\n"
    "               start only once its startup probe (/ready) passes. It runs\n"
    "               as UID/GID 2102 (the UID meshd-init exempts), no capabilities,\n"
    "               read-only root file system; ports meshd-inbound 4143 and\n"
    "               meshd-admin 4191; probes on the admin endpoint (/ready, /live)\n"
    "and the annotation meshd.io/injected: VERSION.\n"
    "\n"
    "seccomp: the proxy uses io_uring. The RuntimeDefault seccomp profile of\n"
    "containerd 2.0 and later, and Docker Engine (moby) 25.0 and later, blocks\n"
    "io_uring_setup, io_uring_enter and io_uring_register (containerd 1.6 and\n"
    "1.7 still allow them). So inject sets no seccompProfile on the proxy.\n"
    "Where RuntimeDefault applies anyway on those runtimes (a pod-level\n"
    "seccompProfile, or the kubelet's --seccomp-default), give the meshd-proxy\n"
    "container a Localhost profile that allows those three calls.\n"
    "\n"
    "Skipped, and reported on stderr: pod templates annotated\n"
    "meshd.io/inject: disabled, already injected ones (an init container named\n"
    "meshd-init or meshd-proxy), and hostNetwork: true pods (the redirect\n"
    "would apply to the node's own traffic).\n"
    "\n"
    "Flags (each one the default for all objects; the annotation on a pod\n"
    "template wins for that pod):\n"
    "  --image IMAGE                  proxy image (default meshd/meshd:VERSION)\n"
    "  --init-image IMAGE             init image (default meshd/meshd-init:VERSION)\n"
    "  --controller HOST:PORT[,...]   meshd.io/controller: the controller API (MESHD_CONTROLLER);\n"
    "                                 none by default: connections go where they were dialled\n"
    "  --trust-domain NAME            meshd.io/trust-domain: turns identity on: the pod's SPIFFE\n"
    "                                 id spiffe://NAME/ns/NAMESPACE/sa/SERVICE-ACCOUNT, from a\n"
    "                                 projected service account token (audience meshd)\n"
    "  --trust-anchors-configmap NAME the ConfigMap with the mesh CA as ca.crt (default\n"
    "                                 meshd-trust-anchors; with identity only)\n"
    "  --skip-inbound-ports PORTS     meshd.io/skip-inbound-ports: e.g. 22,8000-8100\n"
    "  --skip-outbound-ports PORTS    meshd.io/skip-outbound-ports\n"
    "  --skip-subnets CIDRS           meshd.io/skip-subnets: e.g. 10.0.0.0/8,fd00::/8\n"
    "  --opaque-ports PORTS           meshd.io/opaque-ports: inbound ports never waited on for\n"
    "                                 protocol detection, e.g. 3306,5432 (MESHD_OPAQUE_PORTS)\n"
    "  --proxy-cpu-request Q          meshd.io/proxy-cpu-request (default 100m)\n"
    "  --proxy-memory-request Q       meshd.io/proxy-memory-request (default 20Mi)\n"
    "  --proxy-memory-limit Q         meshd.io/proxy-memory-limit (default 250Mi)\n"
    "  -f, --filename FILE            the input (same as the FILE argument)\n"
    "  -h, --help                     this help\n"
    "\n"
    "Annotations are read from the pod template's metadata (a Pod's own).\n"
    "Flow-style YAML ({...}, [...]) and JSON are refused where inject has to\n"
    "edit (empty {} and [] excepted): write those objects in block style.\n"
    "\n"
    "Exit status: 0 when every document was read (some perhaps skipped), 1 on a\n"
    "manifest it cannot read or edit (nothing is written to stdout then), 2 on\n"
    "bad flags.\n";

constexpr std::string_view kUninjectHelp =
    "Usage: meshd-ctl uninject [FILE|-] [-f FILE]\n"
    "\n"
    "Reads Kubernetes manifests (FILE, or stdin) and writes them to stdout with\n"
    "what 'meshd-ctl inject' added removed: the meshd-init and meshd-proxy init\n"
    "containers, the volumes meshd-xtables-lock, meshd-trust-anchors and\n"
    "meshd-token, and the meshd.io/injected annotation. A list or mapping left\n"
    "empty is removed with its key. The meshd.io/* settings annotations stay.\n"
    "Objects not injected come out byte for byte.\n"
    "\n"
    "Exit status: 0 when every document was read, 1 on a manifest it cannot\n"
    "read (nothing is written to stdout then), 2 on bad flags.\n";

// ---- values -----------------------------------------------------------------

std::string after_colon(const std::string& message) {
  size_t at = message.find(": ");
  return at == std::string::npos ? message : message.substr(at + 2);
}

// "" when fine, else why not.
std::string check_port_list(std::string_view flag, const std::string& value) {
  std::string arg = "--" + std::string(flag) + "=" + value;
  auto o = init::parse_options({std::string_view(arg)});
  return o ? "" : after_colon(o.error());
}

std::string check_opaque_ports(const std::string& value) {
  if (value == "none") return "";
  auto items = split_list(value);
  if (items.empty()) return "needs ports, e.g. 3306,5432, or 'none'";
  for (const auto& item : items)
    if (auto p = parse_port(item); !p) return p.error();
  return "";
}

std::string check_controller(const std::string& value) {
  auto items = split_list(value);
  if (items.empty()) return "needs HOST:PORT";
  for (const auto& item : items) {
    size_t colon = item.rfind(':');
    if (colon == std::string::npos || colon == 0) return "'" + item + "' is not HOST:PORT";
    for (char c : item)
      if (c == ' ' || c == '"' || c == '\'' || c == '/') return "'" + item + "' is not HOST:PORT";
    if (auto p = parse_port(std::string_view(item).substr(colon + 1)); !p) return "'" + item + "': " + p.error();
  }
  return "";
}

std::string check_trust_domain(const std::string& value) {
  if (value.empty() || value.size() > 253) return "needs a DNS-like name, e.g. cluster.local";
  for (char c : value)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
      return "'" + value + "' is not a trust domain (lowercase letters, digits, '.' and '-')";
  return "";
}

// A Kubernetes quantity: "100m", "20Mi", "0.5", "1G".
std::string check_quantity(const std::string& value) {
  size_t i = 0;
  while (i < value.size() && value[i] >= '0' && value[i] <= '9') ++i;
  size_t digits = i;
  if (i < value.size() && value[i] == '.') {
    ++i;
    while (i < value.size() && value[i] >= '0' && value[i] <= '9') ++i;
  }
  static constexpr std::string_view kSuffixes[] = {"",  "m",  "k",  "M",  "G",  "T",  "P",
                                                   "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  std::string_view suffix = std::string_view(value).substr(i);
  bool ok = digits > 0;
  bool known = false;
  for (auto s : kSuffixes) known = known || suffix == s;
  if (!ok || !known) return "'" + value + "' is not a quantity (e.g. 100m, 20Mi)";
  return "";
}

// The value of a quantity check_quantity accepted, in base units (bytes).
double quantity_value(const std::string& value) {
  size_t i = value.find_first_not_of("0123456789.");
  double n = std::strtod(value.substr(0, i).c_str(), nullptr);
  std::string_view suffix = i == std::string::npos ? std::string_view() : std::string_view(value).substr(i);
  static constexpr std::pair<std::string_view, double> kScale[] = {
      {"m", 1e-3},    {"k", 1e3},     {"M", 1e6},     {"G", 1e9},     {"T", 1e12},    {"P", 1e15},   {"E", 1e18},
      {"Ki", 0x1p10}, {"Mi", 0x1p20}, {"Gi", 0x1p30}, {"Ti", 0x1p40}, {"Pi", 0x1p50}, {"Ei", 0x1p60}};
  for (const auto& [s, scale] : kScale)
    if (suffix == s) return n * scale;
  return n;
}

// The API server refuses a container whose request is above its limit,
// and a zero limit would kill the proxy at once.
std::string check_memory(const InjectOptions& o) {
  double request = quantity_value(o.proxy_memory_request), limit = quantity_value(o.proxy_memory_limit);
  if (limit <= 0) return "the proxy's memory limit (" + o.proxy_memory_limit + ") must be above zero";
  if (request > limit)
    return "the proxy's memory request (" + o.proxy_memory_request + ") is above its limit (" + o.proxy_memory_limit +
           "): the API server would refuse the pod";
  return "";
}

std::string check_image(const std::string& value) {
  if (value.empty()) return "needs an image";
  for (char c : value)
    if (c == ' ' || c == '\t' || c == '"' || c == '\'' || c == '\n') return "'" + value + "' is not an image reference";
  return "";
}

// The settings of one object: the flags, overridden by its annotations.
struct Setting {
  std::string_view annotation;  // "" for flag-only settings
  std::string_view flag;
  std::string InjectOptions::*field;
  std::string (*check)(const std::string&);
};

std::string check_skip_in(const std::string& v) { return check_port_list("skip-inbound-ports", v); }
std::string check_skip_out(const std::string& v) { return check_port_list("skip-outbound-ports", v); }
std::string check_subnets(const std::string& v) { return check_port_list("skip-subnets", v); }
std::string check_name(const std::string& v) {
  if (v.empty()) return "needs a name";
  for (char c : v)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
      return "'" + v + "' is not a Kubernetes object name";
  return "";
}

const Setting kSettings[] = {
    {"meshd.io/skip-inbound-ports", "skip-inbound-ports", &InjectOptions::skip_inbound_ports, check_skip_in},
    {"meshd.io/skip-outbound-ports", "skip-outbound-ports", &InjectOptions::skip_outbound_ports, check_skip_out},
    {"meshd.io/skip-subnets", "skip-subnets", &InjectOptions::skip_subnets, check_subnets},
    {"meshd.io/opaque-ports", "opaque-ports", &InjectOptions::opaque_ports, check_opaque_ports},
    {"meshd.io/controller", "controller", &InjectOptions::controller, check_controller},
    {"meshd.io/trust-domain", "trust-domain", &InjectOptions::trust_domain, check_trust_domain},
    {"meshd.io/proxy-cpu-request", "proxy-cpu-request", &InjectOptions::proxy_cpu_request, check_quantity},
    {"meshd.io/proxy-memory-request", "proxy-memory-request", &InjectOptions::proxy_memory_request, check_quantity},
    {"meshd.io/proxy-memory-limit", "proxy-memory-limit", &InjectOptions::proxy_memory_limit, check_quantity},
    {"", "image", &InjectOptions::image, check_image},
    {"", "init-image", &InjectOptions::init_image, check_image},
    {"", "trust-anchors-configmap", &InjectOptions::trust_anchors_configmap, check_name},
};

// ---- what inject adds ---------------------------------------------------------

using Fields = std::vector<std::pair<std::string, Value>>;

Value str(std::string_view s) { return Value::str(s); }
Value num(int n) { return Value::raw(std::to_string(n)); }
Value map(Fields f) { return Value::mapping(std::move(f)); }
Value seq(std::vector<Value> v) { return Value::sequence(std::move(v)); }
Value env(std::string_view name, std::string_view value) {
  return map({{"name", str(name)}, {"value", Value::quoted(value)}});
}
Value env_field(std::string_view name, std::string_view path) {
  return map({{"name", str(name)}, {"valueFrom", map({{"fieldRef", map({{"fieldPath", str(path)}})}})}});
}
Value http_probe(std::string_view path, Fields extra) {
  Fields f{{"httpGet", map({{"path", str(path)}, {"port", num(kAdminPort)}})}};
  for (auto& e : extra) f.push_back(std::move(e));
  return map(std::move(f));
}

bool identity_on(const InjectOptions& o) { return !o.trust_domain.empty(); }

Value init_container(const InjectOptions& o) {
  std::vector<Value> args = {str("--inbound-port"),  str(std::to_string(kInboundPort)),
                             str("--outbound-port"), str(std::to_string(kOutboundPort)),
                             str("--proxy-uid"),     str(std::to_string(kProxyUid))};
  auto add = [&](std::string_view flag, const std::string& value) {
    if (value.empty()) return;
    args.push_back(str(flag));
    args.push_back(str(value));
  };
  add("--skip-inbound-ports", o.skip_inbound_ports);
  add("--skip-outbound-ports", o.skip_outbound_ports);
  add("--skip-subnets", o.skip_subnets);
  return map({
      {"name", str(kInitContainer)},
      {"image", str(o.init_image.empty() ? "meshd/meshd-init:" + o.version : o.init_image)},
      {"args", seq(std::move(args))},
      {"resources", map({{"requests", map({{"cpu", str("10m")}, {"memory", str("10Mi")}})},
                         {"limits", map({{"memory", str("50Mi")}})}})},
      {"securityContext",
       map({{"runAsUser", num(0)},
            {"runAsNonRoot", Value::raw("false")},
            {"allowPrivilegeEscalation", Value::raw("false")},
            {"readOnlyRootFilesystem", Value::raw("true")},
            {"capabilities", map({{"add", seq({str("NET_ADMIN"), str("NET_RAW")})}, {"drop", seq({str("ALL")})}})}})},
      {"volumeMounts", seq({map({{"name", str(kXtablesVolume)}, {"mountPath", str("/run")}})})},
  });
}

Value proxy_container(const InjectOptions& o) {
  std::vector<Value> envs = {env("MESHD_ADMIN", "0.0.0.0:" + std::to_string(kAdminPort)),
                             env("MESHD_PROXY_UID", std::to_string(kProxyUid))};
  if (!o.controller.empty()) envs.push_back(env("MESHD_CONTROLLER", o.controller));
  if (!o.opaque_ports.empty()) envs.push_back(env("MESHD_OPAQUE_PORTS", o.opaque_ports));
  if (identity_on(o)) {
    envs.push_back(env_field("MESHD_POD_NAMESPACE", "metadata.namespace"));
    envs.push_back(env_field("MESHD_POD_SERVICE_ACCOUNT", "spec.serviceAccountName"));
    envs.push_back(env("MESHD_TRUST_DOMAIN", o.trust_domain));
    envs.push_back(env("MESHD_IDENTITY",
                       "spiffe://$(MESHD_TRUST_DOMAIN)/ns/$(MESHD_POD_NAMESPACE)/sa/$(MESHD_POD_SERVICE_ACCOUNT)"));
    envs.push_back(env("MESHD_TRUST_ANCHORS", "/var/run/meshd/trust/ca.crt"));
    envs.push_back(env("MESHD_IDENTITY_SA_TOKEN_FILE", "/var/run/meshd/token/token"));
  }
  auto port = [](std::string_view name, int number) {
    return map({{"name", str(name)}, {"containerPort", num(number)}, {"protocol", str("TCP")}});
  };
  Fields f = {
      {"name", str(kProxyContainer)},
      {"image", str(o.image.empty() ? "meshd/meshd:" + o.version : o.image)},
      {"restartPolicy", str("Always")},
      {"ports", seq({port("meshd-inbound", kInboundPort), port("meshd-admin", kAdminPort)})},
      {"env", seq(std::move(envs))},
      {"startupProbe", http_probe("/ready", {{"periodSeconds", num(1)}, {"failureThreshold", num(120)}})},
      {"readinessProbe", http_probe("/ready", {})},
      {"livenessProbe", http_probe("/live", {})},
      {"resources",
       map({{"requests", map({{"cpu", str(o.proxy_cpu_request)}, {"memory", str(o.proxy_memory_request)}})},
            {"limits", map({{"memory", str(o.proxy_memory_limit)}})}})},
      {"securityContext", map({{"runAsUser", num(kProxyUid)},
                               {"runAsGroup", num(kProxyUid)},
                               {"runAsNonRoot", Value::raw("true")},
                               {"allowPrivilegeEscalation", Value::raw("false")},
                               {"readOnlyRootFilesystem", Value::raw("true")},
                               {"capabilities", map({{"drop", seq({str("ALL")})}})}})},
  };
  if (identity_on(o)) {
    f.emplace_back("volumeMounts", seq({map({{"name", str(kTrustVolume)},
                                             {"mountPath", str("/var/run/meshd/trust")},
                                             {"readOnly", Value::raw("true")}}),
                                        map({{"name", str(kTokenVolume)},
                                             {"mountPath", str("/var/run/meshd/token")},
                                             {"readOnly", Value::raw("true")}})}));
  }
  return map(std::move(f));
}

Value volumes(const InjectOptions& o) {
  std::vector<Value> v = {map({{"name", str(kXtablesVolume)}, {"emptyDir", map({})}})};
  if (identity_on(o)) {
    v.push_back(map({{"name", str(kTrustVolume)}, {"configMap", map({{"name", str(o.trust_anchors_configmap)}})}}));
    v.push_back(
        map({{"name", str(kTokenVolume)},
             {"projected", map({{"sources", seq({map({{"serviceAccountToken", map({{"audience", str("meshd")},
                                                                                   {"expirationSeconds", num(3600)},
                                                                                   {"path", str("token")}})}})})}})}}));
  }
  return seq(std::move(v));
}

// ---- finding the pod template ---------------------------------------------------

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// The path from an object to its pod template; nullptr: not a workload.
const std::vector<std::string_view>* template_path(std::string_view kind) {
  static const std::vector<std::string_view> kSelf = {};
  static const std::vector<std::string_view> kTemplate = {"spec", "template"};
  static const std::vector<std::string_view> kCron = {"spec", "jobTemplate", "spec", "template"};
  if (kind == "Pod") return &kSelf;
  if (kind == "Deployment" || kind == "StatefulSet" || kind == "DaemonSet" || kind == "ReplicaSet" ||
      kind == "ReplicationController" || kind == "Job")
    return &kTemplate;
  if (kind == "CronJob") return &kCron;
  return nullptr;
}

// One object being worked on, for messages.
struct Object {
  const Document& doc;
  InjectResult& result;
  std::string where;       // "document 2 (Deployment web)"
  std::string short_name;  // "deployment/web"
  bool failed = false;

  void error(size_t line, const std::string& message) {
    result.errors.push_back(where + ", line " + std::to_string(doc.line_no(line)) + ": " + message);
    failed = true;
  }
};

struct PodTemplate {
  const Node* tmpl = nullptr;          // the pod template (or the Pod)
  const Entry* meta = nullptr;         // its metadata entry; nullptr when absent
  const Entry* spec = nullptr;         // its spec entry (a block mapping)
  const Entry* annotations = nullptr;  // metadata.annotations; nullptr when absent
};

// A step into a block mapping, refusing flow style there.
const Entry* step(Object& ob, const Node& from, std::string_view key, const std::string& path, bool required) {
  const Entry* e = from.entry(key);
  if (!e) {
    if (required) ob.error(from.line, "no '" + path + "' in this " + "object");
    return nullptr;
  }
  const Node& v = e->value;
  if (v.kind == Node::Kind::kFlow && !v.empty_value(ob.doc.text())) {
    ob.error(e->line, "flow-style '" + std::string(key) + "' is not supported; write it in block style");
    return nullptr;
  }
  if (v.is_map() || v.empty_value(ob.doc.text())) {
    if (required && !v.is_map()) {
      ob.error(e->line, "'" + path + "' is empty");
      return nullptr;
    }
    return e;
  }
  if (v.kind == Node::Kind::kAlias) {
    ob.error(e->line, "'" + path + "' is an alias (*...); aliases are not supported where inject edits");
    return nullptr;
  }
  ob.error(e->line, "'" + path + "' is not a mapping");
  return nullptr;
}

bool find_template(Object& ob, const Node& obj, const std::vector<std::string_view>& path, PodTemplate* out) {
  const Node* n = &obj;
  std::string so_far;
  for (std::string_view key : path) {
    so_far += (so_far.empty() ? "" : ".") + std::string(key);
    const Entry* e = step(ob, *n, key, so_far, true);
    if (!e) return false;
    n = &e->value;
  }
  out->tmpl = n;
  std::string prefix = so_far.empty() ? "" : so_far + ".";
  out->meta = step(ob, *n, "metadata", prefix + "metadata", false);
  if (ob.failed) return false;
  out->spec = step(ob, *n, "spec", prefix + "spec", true);
  if (!out->spec) return false;
  if (out->meta && out->meta->value.is_map()) {
    out->annotations = step(ob, out->meta->value, "annotations", prefix + "metadata.annotations", false);
    if (ob.failed) return false;
  }
  return true;
}

std::vector<std::pair<std::string, const Entry*>> read_annotations(const Object& ob, const PodTemplate& t) {
  std::vector<std::pair<std::string, const Entry*>> out;
  if (!t.annotations || !t.annotations->value.is_map()) return out;
  for (const Entry& e : t.annotations->value.entries) out.emplace_back(e.key, &e);
  (void)ob;
  return out;
}

bool yaml11_true(std::string_view v) {
  for (std::string_view t : {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y"})
    if (v == t) return true;
  return false;
}

std::string container_name(const Document& d, const Entry& item) {
  if (!item.value.is_map()) return "";
  const Node* name = item.value.get("name");
  return name ? d.scalar(*name) : "";
}

// The lines above `line` that are comments at column col, so that an
// insertion before an entry does not separate it from its comment.
size_t above_comments(const Document& d, size_t line, int col) {
  while (line > 0 && d.lines()[line - 1].comment && d.lines()[line - 1].indent == col) --line;
  return line;
}

// An entry's line to insert before, or the end of the mapping.
size_t before_entry(const Document& d, const Node& map, std::string_view key) {
  const Entry* e = map.entry(key);
  if (e && e->at_line_start) return above_comments(d, e->line, e->col);
  return map.end_line;
}

// The edit removing an empty value's text ("{}", "[]", "~") after its key.
void clear_empty(const Document& d, const Entry& e, std::vector<Edit>* edits) {
  const Node& v = e.value;
  if (v.kind == Node::Kind::kNull) return;
  size_t begin = v.text_begin;
  while (begin > 0 && d.text()[begin - 1] == ' ') --begin;
  edits->push_back(Edit{begin, v.text_end, ""});
}

// Adds the entries of `add` to the mapping under `key` in `parent`,
// creating it (before line `absent_at`) when absent.
void add_to_map(Object& ob, const Node& parent, std::string_view key, Value add, size_t absent_at, const Style& style,
                std::vector<Edit>* edits) {
  const Document& d = ob.doc;
  const Entry* e = parent.entry(key);
  if (!e) {
    edits->push_back(yaml::insert_lines_before(
        d, absent_at, yaml::emit_map_entries(Value::mapping({{std::string(key), std::move(add)}}), parent.col, style)));
  } else if (e->value.is_map()) {
    edits->push_back(yaml::insert_lines_before(d, e->value.end_line, yaml::emit_map_entries(add, e->value.col, style)));
  } else if (e->value.empty_value(d.text())) {
    clear_empty(d, *e, edits);
    edits->push_back(
        yaml::insert_lines_before(d, e->value.end_line, yaml::emit_map_entries(add, e->col + style.step, style)));
  } else {
    ob.error(e->line, "'" + std::string(key) + "' is not a mapping");
  }
}

// Adds the items of `add` to the sequence under `key` in `parent`: first
// or last; creating it (before line `absent_at`) when absent.
void add_to_seq(Object& ob, const Node& parent, std::string_view key, Value add, bool first, size_t absent_at,
                const Style& style, std::vector<Edit>* edits) {
  const Document& d = ob.doc;
  const Entry* e = parent.entry(key);
  if (!e) {
    edits->push_back(yaml::insert_lines_before(
        d, absent_at, yaml::emit_map_entries(Value::mapping({{std::string(key), std::move(add)}}), parent.col, style)));
    return;
  }
  const Node& v = e->value;
  if (v.kind == Node::Kind::kFlow && !v.empty_value(d.text())) {
    ob.error(e->line, "flow-style '" + std::string(key) + "' is not supported; write it in block style");
  } else if (v.is_seq()) {
    if (!v.entries.front().at_line_start) {
      ob.error(v.line, "'" + std::string(key) + "' starts on a line with other content");
      return;
    }
    size_t at = first ? v.line : v.end_line;
    edits->push_back(yaml::insert_lines_before(d, at, yaml::emit_seq_items(add, v.col, style)));
  } else if (v.empty_value(d.text())) {
    clear_empty(d, *e, edits);
    edits->push_back(yaml::insert_lines_before(
        d, v.end_line, yaml::emit_seq_items(add, style.seq_indented ? e->col + style.step : e->col, style)));
  } else {
    ob.error(e->line, "'" + std::string(key) + "' is not a list");
  }
}

bool refuse_flow(Object& ob, const Entry* e, std::string_view key) {
  if (!e || e->value.kind != Node::Kind::kFlow || e->value.empty_value(ob.doc.text())) return false;
  ob.error(e->line, "flow-style '" + std::string(key) + "' is not supported; write it in block style");
  return true;
}

void inject_object(Object& ob, const Node& obj, const std::vector<std::string_view>& path, const InjectOptions& flags,
                   std::vector<Edit>* edits) {
  const Document& d = ob.doc;
  PodTemplate t;
  if (!find_template(ob, obj, path, &t)) return;
  const Node& spec = t.spec->value;
  // A merge key ("<<: *base") brings in entries that are not written here:
  // an added initContainers or volumes would replace the merged ones, and
  // what is merged cannot be checked (already injected? hostNetwork?).
  for (const Node* m : {t.tmpl, &spec, t.meta ? &t.meta->value : nullptr}) {
    if (const Entry* merge = m ? m->entry("<<") : nullptr) {
      ob.error(merge->line, "a merge key ('<<') in the pod template is not supported; write its entries out");
      return;
    }
  }
  auto annotations = read_annotations(ob, t);
  auto annotation = [&](std::string_view key) -> const Entry* {
    for (const auto& [k, e] : annotations)
      if (k == key) return e;
    return nullptr;
  };
  auto skip = [&](const std::string& why) { ob.result.notes.push_back(ob.short_name + " skipped (" + why + ")"); };

  if (const Entry* e = annotation("meshd.io/inject"); e && d.scalar(e->value) == "disabled")
    return skip("meshd.io/inject: disabled");
  const Entry* init = spec.entry("initContainers");
  if (refuse_flow(ob, init, "initContainers")) return;
  if (init && init->value.is_seq()) {
    for (const Entry& item : init->value.entries) {
      std::string name = container_name(d, item);
      if (name == kProxyContainer || name == kInitContainer) return skip("already injected");
    }
  }
  if (annotation(kInjectedAnnotation)) return skip("already injected");
  // Kubernetes reads manifests as YAML 1.1: True, yes and on are true too.
  if (const Node* hn = spec.get("hostNetwork"); hn && yaml11_true(d.scalar(*hn)))
    return skip("hostNetwork: true: the redirect rules would apply to the node's own traffic");

  // The settings: flags, then this pod's annotations.
  InjectOptions o = flags;
  for (const Setting& s : kSettings) {
    if (s.annotation.empty()) continue;
    const Entry* e = annotation(s.annotation);
    if (!e) continue;
    if (e->value.kind != Node::Kind::kScalar && e->value.kind != Node::Kind::kNull) {
      ob.error(e->line, "annotation " + std::string(s.annotation) + ": must be a string");
      continue;
    }
    std::string value = d.scalar(e->value);
    if (std::string why = s.check(value); !why.empty()) {
      ob.error(e->line, "annotation " + std::string(s.annotation) + ": '" + value + "': " + why);
      continue;
    }
    o.*s.field = value;
  }
  if (std::string why = ob.failed ? "" : check_memory(o); !why.empty()) ob.error(t.spec->line, why);
  const Entry* vols = spec.entry("volumes");
  if (refuse_flow(ob, vols, "volumes")) return;
  if (ob.failed) return;

  // The pod spec's own indentation step when it tells one, else the document's.
  int local_step = spec.line > t.spec->line ? spec.col - t.spec->col : 0;
  Style style{local_step > 0 ? local_step : d.indent_step(), d.sequences_indented(&spec)};
  Value injected = Value::mapping({{std::string(kInjectedAnnotation), Value::quoted(o.version)}});
  if (t.meta && t.meta->value.is_map()) {
    add_to_map(ob, t.meta->value, "annotations", std::move(injected), t.meta->value.end_line, style, edits);
  } else {
    add_to_map(ob, *t.tmpl, "metadata", Value::mapping({{"annotations", std::move(injected)}}),
               before_entry(d, *t.tmpl, "spec"), style, edits);
  }
  add_to_seq(ob, spec, "initContainers", Value::sequence({init_container(o), proxy_container(o)}), true,
             before_entry(d, spec, "containers"), style, edits);
  add_to_seq(ob, spec, "volumes", volumes(o), false, spec.end_line, style, edits);
  if (!ob.failed) ob.result.notes.push_back(ob.short_name + " injected");
}

// Removes the items of the list or mapping under entry `e` at `indexes`;
// the whole entry when that leaves it empty. Returns whether it did so.
bool remove_items(const Document& d, const Entry& e, const std::vector<size_t>& indexes, std::vector<Edit>* edits) {
  if (indexes.empty()) return false;
  if (indexes.size() == e.value.entries.size() && e.at_line_start) {
    edits->push_back(yaml::remove_lines(d, e.line, e.end_line()));
    return true;
  }
  for (size_t i : indexes) {
    const Entry& item = e.value.entries[i];
    edits->push_back(yaml::remove_lines(d, item.line, item.end_line()));
  }
  return false;
}

void uninject_object(Object& ob, const Node& obj, const std::vector<std::string_view>& path, std::vector<Edit>* edits) {
  const Document& d = ob.doc;
  PodTemplate t;
  if (!find_template(ob, obj, path, &t)) return;
  const Node& spec = t.spec->value;
  const Entry* init = spec.entry("initContainers");
  const Entry* vols = spec.entry("volumes");
  std::vector<size_t> init_items, vol_items, ann_items;
  if (init && init->value.is_seq()) {
    for (size_t i = 0; i < init->value.entries.size(); ++i) {
      std::string name = container_name(d, init->value.entries[i]);
      if (name == kProxyContainer || name == kInitContainer) init_items.push_back(i);
    }
  }
  if (vols && vols->value.is_seq()) {
    for (size_t i = 0; i < vols->value.entries.size(); ++i) {
      std::string name = container_name(d, vols->value.entries[i]);
      if (name == kXtablesVolume || name == kTrustVolume || name == kTokenVolume) vol_items.push_back(i);
    }
  }
  if (t.annotations && t.annotations->value.is_map()) {
    for (size_t i = 0; i < t.annotations->value.entries.size(); ++i)
      if (t.annotations->value.entries[i].key == kInjectedAnnotation) ann_items.push_back(i);
  }
  if (init_items.empty() && ann_items.empty()) {
    ob.result.notes.push_back(ob.short_name + " skipped (not injected)");
    return;
  }
  if (init) remove_items(d, *init, init_items, edits);
  if (vols) remove_items(d, *vols, vol_items, edits);
  if (!ann_items.empty()) {
    bool all = ann_items.size() == t.annotations->value.entries.size();
    if (all && t.meta->value.entries.size() == 1 && t.meta->at_line_start) {
      edits->push_back(yaml::remove_lines(d, t.meta->line, t.meta->end_line()));
    } else {
      remove_items(d, *t.annotations, ann_items, edits);
    }
  }
  ob.result.notes.push_back(ob.short_name + " uninjected");
}

// ---- documents ------------------------------------------------------------------

// The kind of a document the reader could not parse (or a JSON one), so
// that objects inject has nothing to do with still pass through.
std::string guess_kind(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (line.starts_with("kind:")) {
      std::string k(trim(line.substr(5)));
      if (k.size() >= 2 && (k.front() == '"' || k.front() == '\'')) k = k.substr(1, k.size() - 2);
      return k;
    }
    if (size_t at = line.find("\"kind\""); at != std::string_view::npos) {
      std::string_view rest = trim(line.substr(at + 6));
      if (rest.starts_with(":")) {
        rest = trim(rest.substr(1));
        if (rest.starts_with("\"")) {
          size_t end = rest.find('"', 1);
          if (end != std::string_view::npos) return std::string(rest.substr(1, end - 1));
        }
      }
    }
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return "";
}

// metadata: {name: x, ...}: the name, for messages only.
std::string flow_name(std::string_view flow) {
  size_t at = flow.find("name:");
  while (at != std::string_view::npos && at > 0 && flow[at - 1] != '{' && flow[at - 1] != ' ' && flow[at - 1] != ',')
    at = flow.find("name:", at + 1);
  if (at == std::string_view::npos) return "";
  std::string_view rest = flow.substr(at + 5);
  size_t end = rest.find_first_of(",}");
  std::string name(trim(rest.substr(0, end)));
  if (name.size() >= 2 && (name.front() == '"' || name.front() == '\'')) name = name.substr(1, name.size() - 2);
  return name;
}

bool blank_text(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = trim(text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos));
    if (!line.empty() && line.front() != '#' && line.front() != '%') return false;  // '%': a directive
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return true;
}

InjectResult process(std::string_view input, const InjectOptions* inject) {
  InjectResult r;
  // A byte-order mark (editors on Windows write one) is kept as it was,
  // and kept out of the first key.
  constexpr std::string_view kBom = "\xEF\xBB\xBF";
  if (input.starts_with(kBom)) {
    r.output += kBom;
    input.remove_prefix(kBom.size());
  }
  auto parts = yaml::split_stream(input);
  int doc_no = 0;
  for (const auto& part : parts) {
    if (!part.is_document) {
      std::string_view rest = trim(std::string_view(part.text).substr(3));
      if (!rest.empty() && rest.front() != '#')
        r.errors.push_back("line " + std::to_string(part.first_line) + ": content on a document marker line ('" +
                           std::string(trim(part.text)) + "') is not supported; start the content on the next line");
      r.output += part.text;
      continue;
    }
    if (blank_text(part.text)) {
      r.output += part.text;
      continue;
    }
    ++doc_no;
    std::string where = "document " + std::to_string(doc_no);
    auto parsed = Document::parse(part.text, part.first_line);
    bool json = parsed && parsed->root().kind == Node::Kind::kFlow;
    if (!parsed || json) {
      std::string kind = guess_kind(part.text);
      if (!kind.empty() && kind != "List" && !template_path(kind)) {
        r.notes.push_back(lower(kind) + " skipped (not a workload)");
      } else if (json) {
        r.errors.push_back(where + (kind.empty() ? "" : " (" + kind + ")") + ", line " +
                           std::to_string(parsed->line_no(parsed->root().line)) +
                           ": JSON and flow-style documents are not supported; convert it to block YAML "
                           "(e.g. kubectl get -o yaml, or yq -P)");
      } else {
        r.errors.push_back(where + (kind.empty() ? "" : " (" + kind + ")") + ", " + parsed.error());
      }
      r.output += part.text;
      continue;
    }
    const Document& d = *parsed;
    const Node& root = d.root();
    if (!d.has_content()) {
      r.output += part.text;
      continue;
    }
    if (!root.is_map()) {
      r.errors.push_back(where + ", line " + std::to_string(d.line_no(root.line)) +
                         ": not a Kubernetes object (a mapping with apiVersion and kind)");
      continue;
    }
    std::vector<Edit> edits;
    auto one = [&](const Node& obj, const std::string& prefix) {
      const Node* kind_node = obj.get("kind");
      std::string kind = kind_node ? d.scalar(*kind_node) : "";
      std::string name;
      if (const Node* meta = obj.get("metadata"); meta && meta->is_map()) {
        if (const Node* n = meta->get("name")) name = d.scalar(*n);
        if (const Node* g = meta->get("generateName"); name.empty() && g) name = d.scalar(*g) + "*";
      } else if (meta && meta->kind == Node::Kind::kFlow) {
        name = flow_name(d.scalar(*meta));
      }
      Object ob{d, r,
                where + " (" + prefix + (kind.empty() ? "no kind" : kind) + (name.empty() ? "" : " " + name) + ")",
                (kind.empty() ? "object" : lower(kind)) + "/" + (name.empty() ? "(unnamed)" : name)};
      const auto* path = template_path(kind);
      if (!path) {
        r.notes.push_back(ob.short_name + " skipped (" + (kind.empty() ? "no kind" : "not a workload") + ")");
        return;
      }
      if (inject) {
        inject_object(ob, obj, *path, *inject, &edits);
      } else {
        uninject_object(ob, obj, *path, &edits);
      }
    };
    const Node* kind_node = root.get("kind");
    if (kind_node && d.scalar(*kind_node) == "List") {
      const Entry* items = root.entry("items");
      if (items && items->value.kind == Node::Kind::kFlow && !items->value.empty_value(d.text())) {
        r.errors.push_back(where + " (List), line " + std::to_string(d.line_no(items->line)) +
                           ": flow-style 'items' is not supported; write it in block style");
      } else if (items && items->value.is_seq()) {
        for (size_t i = 0; i < items->value.entries.size(); ++i) {
          const Entry& entry = items->value.entries[i];
          if (entry.value.is_map()) {
            one(entry.value, "List item " + std::to_string(i + 1) + ": ");
          } else if (entry.value.kind == Node::Kind::kFlow || entry.value.kind == Node::Kind::kAlias) {
            // Silently passing it on would leave a workload unmeshed.
            r.errors.push_back(where + " (List), line " + std::to_string(d.line_no(entry.line)) + ": item " +
                               std::to_string(i + 1) +
                               " is written in flow style or as an alias; write it in block "
                               "style");
          }
        }
      }
    } else {
      one(root, "");
    }
    r.output += edits.empty() ? part.text : yaml::apply_edits(part.text, std::move(edits));
  }
  return r;
}

// ---- the commands -----------------------------------------------------------------

Parsed<std::string> read_input(const std::string& path) {
  FILE* f = path == "-" ? stdin : fopen(path.c_str(), "rb");
  std::string name = path == "-" ? "stdin" : path;
  if (!f) return invalid("cannot open " + name + ": " + strerror(errno));
  std::string data;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    data.append(buf, n);
    if (data.size() > kMaxInput) break;
  }
  bool err = ferror(f) != 0;
  int saved = errno;
  if (f != stdin) fclose(f);
  if (err) return invalid("reading " + name + ": " + strerror(saved));
  if (data.size() > kMaxInput) return invalid(name + " is larger than 16 MiB; split the manifests");
  return data;
}

int run(std::span<const std::string_view> args, const Io& io, bool inject) {
  std::string_view command = inject ? "inject" : "uninject";
  InjectOptions o;
  o.version = MESHD_VERSION;
  bool help = false, file_seen = false;
  std::string file;
  FlagParser flags;
  flags.value("--filename", "-f", &file, &file_seen).toggle("--help", "-h", &help);
  std::vector<std::string> names;
  if (inject) {
    for (const Setting& s : kSettings) names.push_back("--" + std::string(s.flag));
    for (size_t i = 0; i < names.size(); ++i) flags.value(names[i], "", &(o.*kSettings[i].field));
  }
  auto positional = flags.parse(args);
  if (!positional) return usage_error(io, command, positional.error());
  if (help) {
    write_all(io.out, inject ? kInjectHelp : kUninjectHelp);
    return kExitOk;
  }
  if (positional->size() > 1 || (file_seen && !positional->empty()))
    return usage_error(io, command, "one input at most (FILE, '-' for stdin, or -f FILE)");
  std::string path = file_seen ? file : positional->empty() ? "-" : std::string(positional->front());
  if (path.empty()) return usage_error(io, command, "-f needs a file name ('-' for stdin)");
  if (inject) {
    if (std::string why = check_inject_options(o); !why.empty()) return usage_error(io, command, why);
  }
  auto input = read_input(path);
  if (!input) {
    fprintf(io.err, "meshd-ctl %.*s: %s\n", static_cast<int>(command.size()), command.data(), input.error().c_str());
    return kExitFailure;
  }
  InjectResult r = inject ? inject_manifests(*input, o) : uninject_manifests(*input);
  for (const auto& note : r.notes) fprintf(io.err, "%s\n", note.c_str());
  if (!r.errors.empty()) {
    for (const auto& e : r.errors)
      fprintf(io.err, "meshd-ctl %.*s: %s\n", static_cast<int>(command.size()), command.data(), e.c_str());
    fprintf(io.err, "meshd-ctl %.*s: nothing written (%zu error%s)\n", static_cast<int>(command.size()), command.data(),
            r.errors.size(), r.errors.size() == 1 ? "" : "s");
    return kExitFailure;
  }
  write_all(io.out, r.output);
  return kExitOk;
}

}  // namespace

std::string check_inject_options(const InjectOptions& o) {
  for (const Setting& s : kSettings) {
    const std::string& value = o.*s.field;
    bool optional = s.annotation.starts_with("meshd.io/skip") || s.annotation == "meshd.io/opaque-ports" ||
                    s.annotation == "meshd.io/controller" || s.annotation == "meshd.io/trust-domain" ||
                    s.flag == "image" || s.flag == "init-image";
    if (value.empty() && optional) continue;
    if (std::string why = s.check(value); !why.empty()) return "--" + std::string(s.flag) + ": " + why;
  }
  return check_memory(o);
}

InjectResult inject_manifests(std::string_view input, const InjectOptions& options) {
  InjectOptions o = options;
  if (o.version.empty()) o.version = MESHD_VERSION;
  return process(input, &o);
}

InjectResult uninject_manifests(std::string_view input) { return process(input, nullptr); }

int run_inject(std::span<const std::string_view> args, const Io& io) { return run(args, io, true); }
int run_uninject(std::span<const std::string_view> args, const Io& io) { return run(args, io, false); }

}  // namespace meshd::ctl
