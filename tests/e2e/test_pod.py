"""A pod on this machine, played from what `meshd-ctl inject` writes.

The test injects a Job manifest, then does what the kubelet would with the
result: a network namespace for the pod, its volumes as directories (the
trust-anchor ConfigMap, the projected service-account token), environment
variables resolved (fieldRefs, $(VAR) references, mount paths), the init
containers in order with their securityContext (meshd-init as root with
only NET_ADMIN and NET_RAW in its bounding set; the meshd-proxy native
sidecar as UID 2102 without capabilities, the next step waiting for its
startup probe, sent from the node), then the app. The mesh around it is
real: a controller whose TokenReviews go to a stand-in Kubernetes API
server (TLS), meshed servers with host identities, and a meshed client.

Run as root: MESHD_BUILD=/path/to/build /usr/bin/python3 -m pytest tests/e2e/test_pod.py
"""
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

from mesh import APPS, PYTHON, TRUST_DOMAIN, VIP, Cluster, binary, parse_metrics, run, wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, iptables)"),
    pytest.mark.timeout(180),
]

POD_IP = "10.78.0.5"
NAMESPACE, SERVICE_ACCOUNT = "shop", "checkout"
POD_TOKEN = "pod-token-" + os.urandom(8).hex()
CONTROLLER_BEARER = "controller-token-" + os.urandom(8).hex()
APP_UID = 1000

JOB = f"""\
# A batch job of the shop: it calls web.prod once, then finishes.
apiVersion: batch/v1
kind: Job
metadata:
  name: settle
  namespace: {NAMESPACE}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels:
        app: settle
    spec:
      serviceAccountName: {SERVICE_ACCOUNT}
      restartPolicy: Never
      containers:
        - name: settle
          image: shop/settle:1.0  # the app: apps.py job stands in for it
          securityContext:
            runAsUser: {APP_UID}
"""


class PodMesh(Cluster):
    """The Cluster's mesh with identity, whose controller also reviews pods'
    service-account tokens with the stand-in API server on its host."""

    def __init__(self):
        self.kube_dir = None
        super().__init__(identity=True, controller_flags=[])

    def before_controllers(self):
        self.kube_dir = os.path.join(self.workdir.name, "kube")
        os.makedirs(self.kube_dir)
        cert, key = os.path.join(self.kube_dir, "api.crt"), os.path.join(self.kube_dir, "api.key")
        run(["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=kube-apiserver",
             "-addext", "subjectAltName=IP:127.0.0.1"])
        bearer = os.path.join(self.kube_dir, "controller.token")
        with open(bearer, "w") as f:
            f.write(CONTROLLER_BEARER + "\n")
        tokens = json.dumps({POD_TOKEN: f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"})
        api = self.ctrl_hosts[0].ns.spawn([PYTHON, APPS, "kube-api", "6443", cert, key, CONTROLLER_BEARER, tokens])
        assert api.stdout.readline().strip() == "ready", api.stderr.read()
        self.controller_flags = ["--kube-api", "https://127.0.0.1:6443", "--kube-ca", cert, "--kube-token-file",
                                 bearer, "--kube-audience", "meshd"]


@pytest.fixture
def mesh():
    m = PodMesh()
    try:
        m.wait_registered(2)
        yield m
    finally:
        m.close()


def inject(manifest):
    r = run([binary("meshd-ctl"), "inject", "--controller", "10.78.0.10:4190", "--trust-domain", TRUST_DOMAIN, "-"],
            input=manifest)
    return r.stdout


class Kubelet:
    """Runs one injected pod's containers in the pod's namespace."""

    def __init__(self, doc, host, workdir, trust_anchors):
        self.meta, self.spec = doc["metadata"], doc["spec"]["template"]["spec"]
        self.host, self.workdir = host, workdir
        self.volumes = {}
        for v in self.spec.get("volumes", []):
            d = os.path.join(workdir, "volumes", v["name"])
            os.makedirs(d)
            if "configMap" in v:
                assert v["configMap"]["name"] == "meshd-trust-anchors", v
                shutil.copy(trust_anchors, os.path.join(d, "ca.crt"))
            for source in v.get("projected", {}).get("sources", []):
                sat = source["serviceAccountToken"]
                # The kubelet writes a token for the pod's service account,
                # with the audience asked: the stand-in API knows it.
                assert sat["audience"] == "meshd", sat
                with open(os.path.join(d, sat["path"]), "w") as f:
                    f.write(POD_TOKEN)
            os.chmod(d, 0o755)
            for name in os.listdir(d):
                os.chmod(os.path.join(d, name), 0o644)
            self.volumes[v["name"]] = d

    def field(self, path):
        return {"metadata.namespace": self.meta["namespace"], "metadata.name": "settle-x7k2p",
                "spec.serviceAccountName": self.spec["serviceAccountName"], "status.podIP": POD_IP}[path]

    def env(self, container):
        mounts = {m["mountPath"]: self.volumes[m["name"]] for m in container.get("volumeMounts", [])}
        out = {}
        for e in container.get("env", []):
            if "valueFrom" in e:
                value = self.field(e["valueFrom"]["fieldRef"]["fieldPath"])
            else:
                # $(VAR) names an earlier variable of the container.
                value = re.sub(r"\$\((\w+)\)", lambda m: out.get(m.group(1), m.group(0)), str(e.get("value", "")))
            for path, d in mounts.items():
                if value.startswith(path.rstrip("/") + "/"):
                    value = d + value[len(path.rstrip("/")):]
            out[e["name"]] = value
        return out

    def image_binary(self, name):
        """The image's binary, copied where any UID can run it (the build
        tree may sit under a directory only root can enter)."""
        path = os.path.join(self.workdir, "bin", name)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            shutil.copy(binary(name), path)
            os.chmod(path, 0o755)
        return path

    def argv(self, container):
        entrypoint = "meshd-init" if "meshd-init" in container["image"] else "meshd"
        command = container.get("command") or [entrypoint]
        command = [self.image_binary(os.path.basename(c)) if os.path.basename(c).startswith("meshd") else c
                   for c in command]
        sc = container.get("securityContext", {})
        uid = sc.get("runAsUser", 0)
        caps = sc.get("capabilities", {})
        assert caps.get("drop") == ["ALL"], (container["name"], caps)
        keep = ",".join("+" + c.lower() for c in caps.get("add", []))
        # A container's capabilities: its bounding set is what it adds, nothing else.
        priv = ["setpriv", "--reuid", str(uid), "--regid", str(sc.get("runAsGroup", uid)), "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all" + ("," + keep if keep else "")]
        return priv + command + [str(a) for a in container.get("args", [])]

    def run_init(self, container):
        env = dict(os.environ, **self.env(container))
        return subprocess.run(self.host.ns.cmd(self.argv(container)), env=env, capture_output=True, text=True,
                              timeout=30)

    def start_sidecar(self, container, log):
        env = dict(os.environ, **self.env(container))
        return self.host.ns.spawn(self.argv(container), env=env, stdout=log, stderr=log)


def probe(ns_host, container, which):
    p = container[which]["httpGet"]
    return ns_host.ns.app("get", f"http://{POD_IP}:{p['port']}{p['path']}")


@pytest.fixture
def workdir():
    """The pod's files (volumes, logs, the images' binaries), readable by
    the pod's UIDs, unlike pytest's tmp_path."""
    d = tempfile.mkdtemp(prefix="meshd-pod-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_an_injected_job_runs_meshed_and_its_proxy_stops_when_it_is_done(mesh, workdir):
    injected = inject(JOB)
    assert "# A batch job of the shop" in injected and "# the app: apps.py job stands in for it" in injected
    doc = yaml.safe_load(injected)
    spec = doc["spec"]["template"]["spec"]
    inits = {c["name"]: c for c in spec["initContainers"]}
    assert [c["name"] for c in spec["initContainers"]] == ["meshd-init", "meshd-proxy"], spec["initContainers"]
    assert inits["meshd-proxy"]["restartPolicy"] == "Always"
    assert sorted(inits["meshd-init"]["securityContext"]["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]

    pod = mesh.host("pod", POD_IP)
    pod.ns.exec(["ip", "route", "add", "default", "dev", pod.lan_dev])
    kubelet = Kubelet(doc, pod, workdir, os.path.join(mesh.ca_dir, "ca.crt"))

    # 1. meshd-init, as the pod's first init container: the rules, then exit 0.
    r = kubelet.run_init(inits["meshd-init"])
    assert r.returncode == 0, r.stderr
    rules = pod.ns.exec(["iptables-save", "-t", "nat"]).stdout
    assert "MESHD_INBOUND" in rules and "--uid-owner 2102" in rules, rules

    # 2. The sidecar; the app starts once the startup probe, from the node, passes.
    proxy_log = open(os.path.join(workdir, "meshd-proxy.log"), "w+")
    sidecar = kubelet.start_sidecar(inits["meshd-proxy"], proxy_log)
    node = mesh.client

    def started():
        assert sidecar.poll() is None, open(proxy_log.name).read()
        return probe(node, inits["meshd-proxy"], "startupProbe")["status"] == 200

    # Ready means a certificate: granted on the pod's service-account token.
    wait_for(started, 20, "the sidecar's startup probe")
    assert probe(node, inits["meshd-proxy"], "livenessProbe")["status"] == 200
    status = json.loads(pod.ns.app("get", "http://127.0.0.1:4191/status.json")["body"])
    pod_identity = f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{SERVICE_ACCOUNT}"
    assert status["identity"]["name"] == pod_identity and status["identity"]["state"] == "valid", status

    # The admin port is open to the kubelet's probes, but /shutdown is not.
    assert node.ns.app("post", f"http://{POD_IP}:4191/shutdown")["status"] == 403
    assert pod.ns.app("get", "http://127.0.0.1:4191/shutdown")["status"] == 405

    # meshd-ctl check, as `kubectl exec` into the sidecar would run it (its env).
    check = subprocess.run(pod.ns.cmd([binary("meshd-ctl"), "check", "-o", "json"]), capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, **kubelet.env(inits["meshd-proxy"])))
    verdicts = {c["name"]: c["result"] for c in json.loads(check.stdout)["checks"]}
    assert check.returncode == 0 and all(v == "ok" for v in verdicts.values()), check.stdout

    # 3. Traffic in: the node's client reaches the pod's port through the sidecar.
    pod.serve(8080, name="pod")
    who = node.ns.app("who", POD_IP, 8080)
    assert who["peer"] == "127.0.0.1", who  # delivered by meshd, on loopback
    inbound = json.loads(pod.ns.app("get", "http://127.0.0.1:4191/status.json")["body"])["directions"]["inbound"]
    assert inbound["opened_total"] >= 1, inbound

    # 4. The Job: out through the sidecar with mTLS to web.prod, then /shutdown.
    apps = os.path.join(workdir, "apps.py")
    shutil.copy(APPS, apps)
    os.chmod(apps, 0o644)
    job = subprocess.run(pod.ns.cmd(["setpriv", "--reuid", str(APP_UID), "--regid", str(APP_UID), "--clear-groups",
                                     PYTHON, apps, "job", VIP, "80", "127.0.0.1:4191"]),
                         capture_output=True, text=True, timeout=30)
    assert job.returncode == 0, job.stderr
    out = json.loads(job.stdout.strip().splitlines()[-1])
    assert out["shutdown"] == 202 and out["who"]["peer"] == "127.0.0.1", out
    code = sidecar.wait(timeout=20)
    proxy_log.seek(0)
    log = proxy_log.read()
    assert code == 0 and "draining" in log and "stopped" in log and "Sanitizer" not in log, log

    # With the proxy gone and the rules still there, check says so and fails.
    check = subprocess.run(pod.ns.cmd([binary("meshd-ctl"), "check", "-o", "json"]), capture_output=True, text=True,
                           timeout=30, env=dict(os.environ, **kubelet.env(inits["meshd-proxy"])))
    verdicts = {c["name"]: c for c in json.loads(check.stdout)["checks"]}
    assert check.returncode == 1, check.stdout
    assert verdicts["proxy live"]["result"] == "fail" and "meshd" in verdicts["proxy live"]["fix"], verdicts
    assert verdicts["redirect rules"]["result"] == "ok", verdicts

    seen = sum(parse_metrics(s.ns.app("get", "http://127.0.0.1:4191/metrics")["body"]).get(
        f'tcp_open_total{{direction="inbound",tls="true",client_id="{pod_identity}"}}', 0) for s in mesh.servers)
    assert seen >= 1, "web.prod's proxies saw no mTLS connection from the pod's identity"
