#include "ctl/inject.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "ctl/command.h"
#include "ctl/yaml_edit.h"

using meshd::ctl::inject_manifests;
using meshd::ctl::InjectOptions;
using meshd::ctl::InjectResult;
using meshd::ctl::uninject_manifests;
using meshd::ctl::yaml::Document;
using meshd::ctl::yaml::Node;

namespace {

InjectOptions opts() {
  InjectOptions o;
  o.version = "1.2.3";
  return o;
}

InjectResult inject_ok(const std::string& in, const InjectOptions& o = opts()) {
  InjectResult r = inject_manifests(in, o);
  INFO(in);
  for (const auto& e : r.errors) INFO(e);
  REQUIRE(r.errors.empty());
  return r;
}

std::string uninject_ok(const std::string& in) {
  InjectResult r = uninject_manifests(in);
  INFO(in);
  REQUIRE(r.errors.empty());
  return r.output;
}

// Each document of a stream, parsed.
std::vector<Document> docs(const std::string& stream) {
  std::vector<Document> out;
  for (const auto& p : meshd::ctl::yaml::split_stream(stream)) {
    if (!p.is_document) continue;
    auto d = Document::parse(p.text, p.first_line);
    INFO(p.text);
    REQUIRE(d);
    if (d->has_content()) out.push_back(std::move(*d));
  }
  return out;
}

// Keeps the tests' calls short: at(node, {"spec", "template"}).
const Node* at(const Node& root, std::initializer_list<std::string_view> path) { return root.at(path); }

std::vector<std::string> names(const Document& d, const Node* seq) {
  std::vector<std::string> out;
  if (!seq) return out;
  for (const auto& e : seq->entries) out.push_back(d.scalar(*e.value.get("name")));
  return out;
}

// The value of env variable `name` in the container, "" when absent.
std::string env_of(const Document& d, const Node& container, const std::string& name) {
  const Node* env = container.get("env");
  if (!env) return "";
  for (const auto& e : env->entries)
    if (d.scalar(*e.value.get("name")) == name) {
      const Node* v = e.value.get("value");
      return v ? d.scalar(*v) : "(valueFrom)";
    }
  return "";
}

const std::string kDeployment =
    "apiVersion: apps/v1\n"
    "kind: Deployment\n"
    "metadata:\n"
    "  name: web  # the web tier\n"
    "spec:\n"
    "  template:\n"
    "    metadata:\n"
    "      labels:\n"
    "        app: web\n"
    "    spec:\n"
    "      containers:\n"
    "      - name: web\n"
    "        image: nginx\n";

}  // namespace

TEST_CASE("inject: a Deployment gets the init container, the native sidecar and the annotation", "[inject]") {
  InjectResult r = inject_ok(kDeployment);
  CHECK(r.notes == std::vector<std::string>{"deployment/web injected"});
  auto ds = docs(r.output);
  REQUIRE(ds.size() == 1);
  const Document& d = ds[0];
  const Node* tmpl = at(d.root(), {"spec", "template"});
  REQUIRE(tmpl);
  CHECK(d.scalar(*at(*tmpl, {"metadata", "annotations", "meshd.io/injected"})) == "1.2.3");
  const Node* init = at(*tmpl, {"spec", "initContainers"});
  CHECK(names(d, init) == std::vector<std::string>{"meshd-init", "meshd-proxy"});
  const Node& mi = init->entries[0].value;
  CHECK(d.scalar(*mi.get("image")) == "meshd/meshd-init:1.2.3");
  const Node* add = at(mi, {"securityContext", "capabilities", "add"});
  REQUIRE(add);
  REQUIRE(add->entries.size() == 2);
  CHECK(d.scalar(add->entries[0].value) == "NET_ADMIN");
  CHECK(d.scalar(add->entries[1].value) == "NET_RAW");
  const Node& proxy = init->entries[1].value;
  CHECK(d.scalar(*proxy.get("restartPolicy")) == "Always");
  CHECK(d.scalar(*proxy.get("image")) == "meshd/meshd:1.2.3");
  CHECK(d.scalar(*at(proxy, {"securityContext", "runAsUser"})) == "2102");
  CHECK(at(proxy, {"securityContext", "seccompProfile"}) == nullptr);
  CHECK(d.scalar(*at(proxy, {"startupProbe", "httpGet", "port"})) == "4191");
  CHECK(d.scalar(*at(proxy, {"startupProbe", "httpGet", "path"})) == "/ready");
  CHECK(d.scalar(*at(proxy, {"livenessProbe", "httpGet", "path"})) == "/live");
  CHECK(d.scalar(*at(proxy, {"resources", "requests", "cpu"})) == "100m");
  CHECK(env_of(d, proxy, "MESHD_ADMIN") == "0.0.0.0:4191");
  CHECK(env_of(d, proxy, "MESHD_CONTROLLER").empty());
  CHECK(env_of(d, proxy, "MESHD_IDENTITY").empty());
  CHECK(names(d, at(*tmpl, {"spec", "volumes"})) == std::vector<std::string>{"meshd-xtables-lock"});
  // The original lines are all there, in order; the comment survives.
  CHECK(r.output.find("  name: web  # the web tier\n") != std::string::npos);
  CHECK(r.output.starts_with("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web  # the web tier\n"));
  CHECK(
      r.output.ends_with("      containers:\n      - name: web\n        image: nginx\n"
                         "      volumes:\n      - name: meshd-xtables-lock\n        emptyDir: {}\n"));
}

TEST_CASE("inject: every workload kind, at its pod template", "[inject]") {
  const std::string pod_spec =
      "  containers:\n"
      "  - name: app\n"
      "    image: app\n";
  auto indent = [](const std::string& text, int n) {
    std::string out, pad(static_cast<size_t>(n), ' ');
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      out += pad + text.substr(pos, nl + 1 - pos);
      pos = nl + 1;
    }
    return out;
  };
  struct Case {
    std::string kind;
    std::string text;
    std::vector<std::string> path;
  };
  std::string tmpl = "template:\n  spec:\n" + indent(pod_spec, 2);
  std::vector<Case> cases = {
      {"Pod", "kind: Pod\nmetadata:\n  name: p\nspec:\n" + pod_spec, {}},
      {"Deployment", "kind: Deployment\nmetadata:\n  name: p\nspec:\n" + indent(tmpl, 2), {"spec", "template"}},
      {"StatefulSet", "kind: StatefulSet\nmetadata:\n  name: p\nspec:\n" + indent(tmpl, 2), {"spec", "template"}},
      {"DaemonSet", "kind: DaemonSet\nmetadata:\n  name: p\nspec:\n" + indent(tmpl, 2), {"spec", "template"}},
      {"ReplicaSet", "kind: ReplicaSet\nmetadata:\n  name: p\nspec:\n" + indent(tmpl, 2), {"spec", "template"}},
      {"Job", "kind: Job\nmetadata:\n  name: p\nspec:\n" + indent(tmpl, 2), {"spec", "template"}},
      {"CronJob",
       "kind: CronJob\nmetadata:\n  name: p\nspec:\n  schedule: \"* * * * *\"\n  jobTemplate:\n    spec:\n" +
           indent(tmpl, 6),
       {"spec", "jobTemplate", "spec", "template"}},
  };
  for (const auto& c : cases) {
    INFO(c.kind);
    InjectResult r = inject_ok(c.text);
    auto ds = docs(r.output);
    REQUIRE(ds.size() == 1);
    const Node* t = &ds[0].root();
    for (const auto& key : c.path) t = t ? t->get(key) : nullptr;
    REQUIRE(t);
    CHECK(names(ds[0], at(*t, {"spec", "initContainers"})) == std::vector<std::string>{"meshd-init", "meshd-proxy"});
    CHECK(at(*t, {"metadata", "annotations", "meshd.io/injected"}) != nullptr);
    CHECK(uninject_ok(r.output) == c.text);
  }
}

TEST_CASE("inject: other kinds and empty documents pass through byte for byte", "[inject]") {
  const std::string in =
      "# a comment before anything\n"
      "\n"
      "---\n"
      "apiVersion: v1\n"
      "kind: Service\n"
      "metadata: {name: web}\n"
      "spec:\n"
      "  ports: [{port: 80}]   # flow is fine here\n"
      "---\n"
      "---\n"
      "# only a comment\n"
      "---\n"
      "kind: ConfigMap\n"
      "metadata:\n"
      "  name: cm\n"
      "data:\n"
      "  pod.yaml: |\n"
      "    kind: Pod\n"
      "    spec:\n"
      "      containers: []\n"
      "...\n";
  InjectResult r = inject_ok(in);
  CHECK(r.output == in);
  CHECK(r.notes ==
        std::vector<std::string>{"service/web skipped (not a workload)", "configmap/cm skipped (not a workload)"});
  CHECK(uninject_ok(in) == in);
  // A JSON Service passes too; one the reader cannot parse, when its kind is clear.
  const std::string json = "{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"metadata\": {\"name\": \"x\"}}\n";
  CHECK(inject_ok(json).output == json);
  const std::string odd = "kind: Secret\nstringData:\n  a: 1\n   b: 2\n";
  CHECK(inject_ok(odd).output == odd);
}

TEST_CASE("inject: the other documents of a stream are untouched", "[inject]") {
  const std::string svc = "---\n# svc\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n";
  InjectResult r = inject_ok(kDeployment + svc + "---\n" + kDeployment);
  CHECK(r.notes.size() == 3);
  std::string once = inject_ok(kDeployment).output;
  CHECK(r.output == once + svc + "---\n" + once);
}

TEST_CASE("inject: skips what is already injected, disabled, or on the host network", "[inject]") {
  std::string once = inject_ok(kDeployment).output;
  InjectResult twice = inject_ok(once);
  CHECK(twice.output == once);
  CHECK(twice.notes == std::vector<std::string>{"deployment/web skipped (already injected)"});

  const std::string disabled =
      "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    meshd.io/inject: disabled\nspec:\n  containers:\n"
      "  - name: a\n";
  InjectResult r = inject_ok(disabled);
  CHECK(r.output == disabled);
  CHECK(r.notes == std::vector<std::string>{"pod/p skipped (meshd.io/inject: disabled)"});

  const std::string host = "kind: Pod\nmetadata:\n  name: h\nspec:\n  hostNetwork: true\n  containers:\n  - name: a\n";
  r = inject_ok(host);
  CHECK(r.output == host);
  REQUIRE(r.notes.size() == 1);
  CHECK(r.notes[0].starts_with("pod/h skipped (hostNetwork: true"));

  // An init container named meshd-proxy (injected by hand) counts as injected.
  const std::string by_hand =
      "kind: Pod\nmetadata:\n  name: p\nspec:\n  initContainers:\n  - name: meshd-proxy\n  containers:\n  - name: a\n";
  CHECK(inject_ok(by_hand).notes == std::vector<std::string>{"pod/p skipped (already injected)"});
}

TEST_CASE("inject: existing init containers, annotations and volumes are kept, after and around", "[inject]") {
  const std::string in =
      "kind: Deployment\n"
      "metadata:\n"
      "  name: w\n"
      "spec:\n"
      "    template:\n"
      "        metadata:\n"
      "            annotations:\n"
      "                team: a   # owner\n"
      "        spec:\n"
      "            initContainers:\n"
      "                - name: migrate\n"
      "                  image: m\n"
      "            containers:\n"
      "                - name: app\n"
      "            volumes:\n"
      "                - name: data\n"
      "                  emptyDir: {}\n";
  InjectOptions o = opts();
  o.trust_domain = "cluster.local";
  InjectResult r = inject_ok(in, o);
  auto ds = docs(r.output);
  const Document& d = ds[0];
  const Node* spec = at(d.root(), {"spec", "template", "spec"});
  CHECK(names(d, spec->get("initContainers")) == std::vector<std::string>{"meshd-init", "meshd-proxy", "migrate"});
  CHECK(names(d, spec->get("volumes")) ==
        std::vector<std::string>{"data", "meshd-xtables-lock", "meshd-trust-anchors", "meshd-token"});
  const Node* ann = at(d.root(), {"spec", "template", "metadata", "annotations"});
  CHECK(d.scalar(*ann->get("team")) == "a");
  CHECK(ann->entries.back().key == "meshd.io/injected");
  // The document's style: 4-space steps, sequences indented.
  CHECK(r.output.find("            initContainers:\n                - name: meshd-init\n") != std::string::npos);
  const Node& proxy = spec->get("initContainers")->entries[1].value;
  CHECK(env_of(d, proxy, "MESHD_TRUST_DOMAIN") == "cluster.local");
  CHECK(env_of(d, proxy, "MESHD_IDENTITY") ==
        "spiffe://$(MESHD_TRUST_DOMAIN)/ns/$(MESHD_POD_NAMESPACE)/sa/$(MESHD_POD_SERVICE_ACCOUNT)");
  CHECK(env_of(d, proxy, "MESHD_POD_NAMESPACE") == "(valueFrom)");
  CHECK(names(d, proxy.get("volumeMounts")) == std::vector<std::string>{"meshd-trust-anchors", "meshd-token"});
  const Node* token = spec->get("volumes")->entries[3].value.get("projected");
  REQUIRE(token);
  const Node* sat = at(token->get("sources")->entries[0].value, {"serviceAccountToken"});
  CHECK(d.scalar(*sat->get("audience")) == "meshd");
  CHECK(d.scalar(*sat->get("expirationSeconds")) == "3600");
  CHECK(uninject_ok(r.output) == in);
}

TEST_CASE("inject: uninject(inject(x)) == x", "[inject]") {
  const std::vector<std::string> inputs = {
      kDeployment,
      // No metadata in the template; no trailing newline.
      "kind: Job\nmetadata:\n  name: j\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n"
      "      containers:\n      - name: a",
      // A comment above containers stays with it.
      "kind: Pod\nmetadata:\n  name: p\n  labels:\n    a: b\nspec:\n  # the app\n  containers:\n  - name: a\n"
      "# trailing comment\n",
      // Annotations and volumes present already.
      "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    x: \"y\"\nspec:\n  containers:\n  - name: a\n"
      "  volumes:\n  - name: v\n    emptyDir: {}\n",
  };
  for (const auto& in : inputs) {
    InjectOptions o = opts();
    o.trust_domain = "example.org";
    o.controller = "meshd-controller.meshd:4190";
    std::string out = inject_ok(in, o).output;
    INFO(out);
    CHECK(out != in);
    CHECK(uninject_ok(out) == in);
    // Uninject leaves what was not injected alone.
    CHECK(uninject_ok(in) == in);
  }
}

TEST_CASE("inject: empty flow collections are replaced; others refused with the line", "[inject]") {
  const std::string in =
      "kind: Pod\n"
      "metadata:\n"
      "  name: p\n"
      "  annotations: {}\n"
      "spec:\n"
      "  initContainers: []   # none yet\n"
      "  containers:\n"
      "  - name: a\n"
      "  volumes: []\n";
  InjectResult r = inject_ok(in);
  auto ds = docs(r.output);
  const Node& root = ds[0].root();
  CHECK(names(ds[0], at(root, {"spec", "initContainers"})) == std::vector<std::string>{"meshd-init", "meshd-proxy"});
  CHECK(root.get("metadata")->get("annotations")->is_map());
  CHECK(r.output.find("  initContainers:   # none yet\n  - name: meshd-init\n") != std::string::npos);

  const std::string flow_spec =
      "apiVersion: apps/v1\n"
      "kind: Deployment\n"
      "metadata:\n"
      "  name: web\n"
      "spec:\n"
      "  template:\n"
      "    spec: {containers: [{name: a}]}\n";
  const std::string stream = "kind: Service\nmetadata:\n  name: s\n---\n" + flow_spec;
  InjectResult bad = inject_manifests(stream, opts());
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors[0] ==
        "document 2 (Deployment web), line 11: flow-style 'spec' is not supported; write it in block style");

  InjectResult flow_init = inject_manifests(
      "kind: Pod\nmetadata:\n  name: p\nspec:\n  initContainers: [{name: x}]\n  containers:\n  - name: a\n", opts());
  REQUIRE(flow_init.errors.size() == 1);
  CHECK(flow_init.errors[0] ==
        "document 1 (Pod p), line 5: flow-style 'initContainers' is not supported; write it in block style");

  InjectResult json = inject_manifests("{\"kind\": \"Deployment\", \"spec\": {}}\n", opts());
  REQUIRE(json.errors.size() == 1);
  CHECK(json.errors[0].starts_with("document 1 (Deployment), line 1: JSON and flow-style documents are not supported"));

  InjectResult parse_error = inject_manifests("kind: Pod\nspec:\n  containers:\n\t- name: a\n", opts());
  REQUIRE(parse_error.errors.size() == 1);
  CHECK(parse_error.errors[0] == "document 1 (Pod), line 4: a tab in indentation (YAML allows only spaces)");
}

TEST_CASE("inject: annotations override the flags, and bad values are named", "[inject]") {
  const std::string in =
      "kind: Pod\n"
      "metadata:\n"
      "  name: p\n"
      "  annotations:\n"
      "    meshd.io/controller: \"ctl.meshd:4190\"\n"
      "    meshd.io/skip-inbound-ports: 22,8000-8100\n"
      "    meshd.io/opaque-ports: \"5432\"\n"
      "    meshd.io/proxy-memory-limit: 1Gi\n"
      "spec:\n"
      "  containers:\n"
      "  - name: a\n";
  InjectOptions o = opts();
  o.controller = "other:4190";
  o.skip_outbound_ports = "25";
  InjectResult r = inject_ok(in, o);
  auto ds = docs(r.output);
  const Document& d = ds[0];
  const Node* init = at(d.root(), {"spec", "initContainers"});
  const Node& proxy = init->entries[1].value;
  CHECK(env_of(d, proxy, "MESHD_CONTROLLER") == "ctl.meshd:4190");
  CHECK(env_of(d, proxy, "MESHD_OPAQUE_PORTS") == "5432");
  CHECK(d.scalar(*at(proxy, {"resources", "limits", "memory"})) == "1Gi");
  std::vector<std::string> args;
  for (const auto& e : init->entries[0].value.get("args")->entries) args.push_back(d.scalar(e.value));
  CHECK(args == std::vector<std::string>{"--inbound-port", "4143", "--outbound-port", "4140", "--proxy-uid", "2102",
                                         "--skip-inbound-ports", "22,8000-8100", "--skip-outbound-ports", "25"});
  // The settings annotations stay on uninject.
  CHECK(uninject_ok(r.output) == in);

  auto bad = [](const std::string& annotation, const std::string& value) {
    std::string text = "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    " + annotation + ": \"" + value +
                       "\"\nspec:\n  containers:\n  - name: a\n";
    InjectResult res = inject_manifests(text, opts());
    REQUIRE(res.errors.size() == 1);
    return res.errors[0];
  };
  CHECK(bad("meshd.io/skip-inbound-ports", "22,70000")
            .starts_with("document 1 (Pod p), line 5: annotation meshd.io/skip-inbound-ports: '22,70000': "));
  CHECK(bad("meshd.io/skip-subnets", "10.0.0.0/33")
            .starts_with("document 1 (Pod p), line 5: annotation meshd.io/skip-subnets: '10.0.0.0/33': "));
  CHECK(bad("meshd.io/opaque-ports", "80-90")
            .starts_with("document 1 (Pod p), line 5: annotation meshd.io/opaque-ports"));
  CHECK(bad("meshd.io/controller", "no-port").find("is not HOST:PORT") != std::string::npos);
  CHECK(bad("meshd.io/trust-domain", "Bad Domain").find("annotation meshd.io/trust-domain") != std::string::npos);
  CHECK(bad("meshd.io/proxy-cpu-request", "lots").find("is not a quantity") != std::string::npos);
}

TEST_CASE("inject: a List's items are injected", "[inject]") {
  const std::string in =
      "apiVersion: v1\n"
      "kind: List\n"
      "items:\n"
      "- apiVersion: v1\n"
      "  kind: Pod\n"
      "  metadata:\n"
      "    name: a\n"
      "  spec:\n"
      "    containers:\n"
      "    - name: a\n"
      "- apiVersion: v1\n"
      "  kind: Service\n"
      "  metadata:\n"
      "    name: s\n";
  InjectResult r = inject_ok(in);
  CHECK(r.notes == std::vector<std::string>{"pod/a injected", "service/s skipped (not a workload)"});
  auto ds = docs(r.output);
  const Node& pod = ds[0].root().get("items")->entries[0].value;
  CHECK(names(ds[0], at(pod, {"spec", "initContainers"})) == std::vector<std::string>{"meshd-init", "meshd-proxy"});
  CHECK(uninject_ok(r.output) == in);
}

TEST_CASE("inject: the command: flags, files, errors and exit codes", "[inject]") {
  char path[] = "/tmp/inject_test_XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, kDeployment.data(), kDeployment.size()) == static_cast<ssize_t>(kDeployment.size()));
  close(fd);
  auto run = [](std::vector<std::string_view> args, std::string* out, std::string* err, bool inject = true) {
    char *o = nullptr, *e = nullptr;
    size_t on = 0, en = 0;
    meshd::ctl::Io io{open_memstream(&o, &on), open_memstream(&e, &en)};
    int rc = inject ? meshd::ctl::run_inject(args, io) : meshd::ctl::run_uninject(args, io);
    fclose(io.out);
    fclose(io.err);
    *out = std::string(o, on);
    *err = std::string(e, en);
    free(o);
    free(e);
    return rc;
  };
  std::string out, err;
  CHECK(run({path, "--controller", "c:4190"}, &out, &err) == meshd::ctl::kExitOk);
  CHECK(out.find("MESHD_CONTROLLER") != std::string::npos);
  CHECK(err == "deployment/web injected\n");
  std::string injected = out;
  CHECK(run({"-f", path}, &out, &err) == meshd::ctl::kExitOk);
  CHECK(run({"--help"}, &out, &err) == meshd::ctl::kExitOk);
  CHECK(out.find("--skip-inbound-ports") != std::string::npos);
  CHECK(out.find("io_uring") != std::string::npos);
  CHECK(run({path, "--bogus"}, &out, &err) == meshd::ctl::kExitUsage);
  CHECK(run({path, "--skip-inbound-ports", "x"}, &out, &err) == meshd::ctl::kExitUsage);
  CHECK(err.find("--skip-inbound-ports") != std::string::npos);
  CHECK(run({path, path}, &out, &err) == meshd::ctl::kExitUsage);
  CHECK(run({"/nonexistent/file.yaml"}, &out, &err) == meshd::ctl::kExitFailure);
  CHECK(out.empty());

  // A bad manifest: exit 1 and nothing on stdout, even with good documents before it.
  std::string bad = kDeployment + "---\nkind: Pod\nmetadata:\n  name: x\nspec: {containers: []}\n";
  FILE* f = fopen(path, "w");
  REQUIRE(f);
  fwrite(bad.data(), 1, bad.size(), f);
  fclose(f);
  CHECK(run({path}, &out, &err) == meshd::ctl::kExitFailure);
  CHECK(out.empty());
  CHECK(err.find("document 2 (Pod x), line 18: flow-style 'spec' is not supported") != std::string::npos);

  f = fopen(path, "w");
  REQUIRE(f);
  fwrite(injected.data(), 1, injected.size(), f);
  fclose(f);
  CHECK(run({path}, &out, &err, false) == meshd::ctl::kExitOk);
  CHECK(out == kDeployment);
  CHECK(err == "deployment/web uninjected\n");
  unlink(path);
}

TEST_CASE("inject: CRLF lines, directives and document markers", "[inject]") {
  const std::string crlf = "kind: Pod\r\nmetadata:\r\n  name: p\r\nspec:\r\n  containers:\r\n  - name: a\r\n";
  InjectResult r1 = inject_ok(crlf);
  CHECK(r1.output.find("\r\n  initContainers:\r\n  - name: meshd-init\r\n") != std::string::npos);
  size_t bare = 0;
  for (size_t i = 0; i < r1.output.size(); ++i) bare += r1.output[i] == '\n' && (i == 0 || r1.output[i - 1] != '\r');
  CHECK(bare == 0);
  CHECK(uninject_ok(r1.output) == crlf);

  const std::string directive = "%YAML 1.2\n---\n" + kDeployment + "...\n";
  InjectResult r = inject_ok(directive);
  CHECK(r.output.starts_with("%YAML 1.2\n---\napiVersion: apps/v1\n"));
  CHECK(r.output.ends_with("emptyDir: {}\n...\n"));
  CHECK(uninject_ok(r.output) == directive);

  InjectResult marker = inject_manifests("--- !!map\nkind: Pod\n", opts());
  REQUIRE_FALSE(marker.errors.empty());
  CHECK(marker.errors[0].starts_with("line 1: content on a document marker line"));
}

TEST_CASE("inject: what a review found: strings, merges, BOMs, YAML 1.1 booleans, quantities", "[inject]") {
  const std::string pod = "kind: Pod\nmetadata:\n  name: q\nspec:\n";
  const std::string app = "  containers:\n  - name: app\n    image: nginx\n";
  SECTION("a quoted string's line that starts with '#' is its text, not a comment to insert above") {
    std::string in = pod + "  hostname: 'a\n  # b'\n" + app;
    InjectResult r = inject_ok(in);
    auto ds = docs(r.output);
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].scalar(*at(ds[0].root(), {"spec", "hostname"})) == "a # b");
    CHECK(names(ds[0], at(ds[0].root(), {"spec", "initContainers"})) ==
          std::vector<std::string>{"meshd-init", "meshd-proxy"});
    CHECK(uninject_ok(r.output) == in);
  }
  SECTION("a keep-chomped block scalar keeps its trailing blank lines") {
    std::string in = "kind: Pod\nmetadata:\n  name: q\n  annotations:\n    last: |+\n      keep\n\nspec:\n" + app;
    InjectResult r = inject_ok(in);
    CHECK(r.output.find("      keep\n\n    meshd.io/injected") != std::string::npos);
    CHECK(uninject_ok(r.output) == in);
  }
  SECTION("a merge key in the pod template is refused: the merged entries would be replaced") {
    std::string in = "kind: Pod\nmetadata:\n  name: q\nspec:\n  <<: *base\n" + app;
    InjectResult r = inject_manifests(in, opts());
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].find("line 5: a merge key") != std::string::npos);
  }
  SECTION("a byte-order mark is kept and does not hide the kind") {
    std::string in = "\xEF\xBB\xBF" + pod + app;
    InjectResult r = inject_ok(in);
    CHECK(
        r.output.starts_with("\xEF\xBB\xBF"
                             "kind: Pod\n"));
    CHECK(r.notes == std::vector<std::string>{"pod/q injected"});
    CHECK(uninject_ok(r.output) == in);
  }
  SECTION("hostNetwork: True is true to Kubernetes") {
    InjectResult r = inject_ok(pod + "  hostNetwork: True\n" + app);
    CHECK(r.notes[0].find("skipped (hostNetwork") != std::string::npos);
  }
  SECTION("a memory request above the limit is refused before the API server does") {
    InjectOptions o = opts();
    o.proxy_memory_request = "1Gi";
    CHECK(meshd::ctl::check_inject_options(o).find("above its limit") != std::string::npos);
    InjectResult r = inject_manifests(
        "kind: Pod\nmetadata:\n  name: q\n  annotations:\n    meshd.io/proxy-memory-limit: 10Mi\nspec:\n" + app,
        opts());
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].find("(20Mi) is above its limit (10Mi)") != std::string::npos);
  }
  SECTION("a List item in flow style is an error, not a silent pass") {
    InjectResult r = inject_manifests("kind: List\nitems:\n- {kind: Pod, metadata: {name: f}}\n", opts());
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].find("item 1 is written in flow style") != std::string::npos);
  }
}
