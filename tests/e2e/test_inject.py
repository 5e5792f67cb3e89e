"""meshd-ctl inject / uninject on a multi-document manifest, checked with a
real YAML parser (PyYAML) and yamllint.

Run: MESHD_BUILD=/path/to/build /usr/bin/python3 -m pytest tests/e2e/test_inject.py
"""

import os
import shutil
import subprocess
import textwrap

import pytest
import yaml

BUILD = os.environ.get("MESHD_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
CTL = os.path.join(BUILD, "meshd-ctl")

pytestmark = pytest.mark.skipif(not os.path.exists(CTL), reason=f"{CTL} not built")

MANIFEST = textwrap.dedent(
    """\
    # The shop: a web Deployment, a nightly report CronJob, a migration Job.
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      namespace: shop  # the shop's namespace
    spec:
      replicas: 2
      selector:
        matchLabels:
          app: web
      template:
        metadata:
          labels:
            app: web
          annotations:
            meshd.io/opaque-ports: "5432"
            meshd.io/skip-outbound-ports: 22,8000-8100
        spec:
          # keep the app first in the pod's list of containers
          containers:
            - name: web
              image: nginx:1.25
              ports:
                - containerPort: 80
              command:
                - sh
                - -c
                - |
                  # this is script text, not YAML:
                  initContainers: none
                  exec nginx -g 'daemon off;'
    ---
    apiVersion: batch/v1
    kind: Job
    metadata:
      name: migrate
    spec:
      backoffLimit: 1
      template:
        spec:
          restartPolicy: Never
          initContainers:
          - name: wait-db
            image: busybox
          containers:
          - name: migrate
            image: migrate:1
    ---
    apiVersion: batch/v1
    kind: CronJob
    metadata:
      name: report
    spec:
      schedule: "0 3 * * *"
      jobTemplate:
        spec:
          template:
            spec:
              restartPolicy: OnFailure
              containers:
              - name: report
                image: report:2
    ---
    # the Service in front of web
    apiVersion: v1
    kind: Service
    metadata:
      name: web
    spec:
      selector: {app: web}
      ports:
      - port: 80
        targetPort: 80
    ---
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: settings
    data:
      # a comment in data
      app.conf: |
        listen 80;
    """
)


def ctl(*args, stdin=None, timeout=10):
    return subprocess.run([CTL, *args], input=stdin, capture_output=True, timeout=timeout)


@pytest.fixture
def manifest(tmp_path):
    p = tmp_path / "shop.yaml"
    p.write_text(MANIFEST)
    return p


def pod_template(obj):
    kind = obj["kind"]
    if kind == "Pod":
        return obj
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_inject_structure(manifest):
    r = ctl("inject", str(manifest), "--controller", "meshd-controller.meshd:4190")
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    for line in [
        "deployment/web injected",
        "job/migrate injected",
        "cronjob/report injected",
        "service/web skipped (not a workload)",
        "configmap/settings skipped (not a workload)",
    ]:
        assert line in err.splitlines()
    out = r.stdout.decode()
    docs = [d for d in yaml.safe_load_all(out) if d is not None]
    original = [d for d in yaml.safe_load_all(MANIFEST) if d is not None]
    assert [d["kind"] for d in docs] == ["Deployment", "Job", "CronJob", "Service", "ConfigMap"]
    # Documents inject does not own are equal; the Service and ConfigMap byte for byte.
    assert docs[3:] == original[3:]
    assert out.endswith(MANIFEST[MANIFEST.index("# the Service in front of web") :])

    for d, orig in zip(docs[:3], original[:3]):
        t = pod_template(d)
        assert t["metadata"]["annotations"]["meshd.io/injected"]
        init = t["spec"]["initContainers"]
        orig_init = pod_template(orig)["spec"].get("initContainers", [])
        assert [c["name"] for c in init] == ["meshd-init", "meshd-proxy"] + [c["name"] for c in orig_init]
        mi, proxy = init[0], init[1]
        caps = mi["securityContext"]["capabilities"]
        assert sorted(caps["add"]) == ["NET_ADMIN", "NET_RAW"]
        assert caps["drop"] == ["ALL"]
        assert mi["securityContext"]["runAsUser"] == 0
        assert mi["args"][:6] == ["--inbound-port", "4143", "--outbound-port", "4140", "--proxy-uid", "2102"]
        assert proxy["restartPolicy"] == "Always"
        sc = proxy["securityContext"]
        assert sc["runAsUser"] == 2102 and sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "seccompProfile" not in sc
        for probe, path in [("startupProbe", "/ready"), ("readinessProbe", "/ready"), ("livenessProbe", "/live")]:
            assert proxy[probe]["httpGet"] == {"path": path, "port": 4191}
        assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {"meshd-inbound": 4143, "meshd-admin": 4191}
        env = env_of(proxy)
        assert env["MESHD_ADMIN"] == "0.0.0.0:4191"
        assert env["MESHD_CONTROLLER"] == "meshd-controller.meshd:4190"
        assert env["MESHD_PROXY_UID"] == "2102"
        assert proxy["resources"] == {"requests": {"cpu": "100m", "memory": "20Mi"}, "limits": {"memory": "250Mi"}}
        assert {v["name"] for v in t["spec"]["volumes"]} >= {"meshd-xtables-lock"}
        # The app's own containers are unchanged.
        assert t["spec"]["containers"] == pod_template(orig)["spec"]["containers"]

    web = pod_template(docs[0])
    assert env_of(web["spec"]["initContainers"][1])["MESHD_OPAQUE_PORTS"] == "5432"
    assert web["spec"]["initContainers"][0]["args"][6:] == ["--skip-outbound-ports", "22,8000-8100"]
    # Comments survive, and the block scalar is untouched.
    for comment in ["# the shop's namespace", "# keep the app first", "# this is script text, not YAML:",
                    "# a comment in data", "# The shop:"]:
        assert comment in out


def test_inject_identity(manifest):
    r = ctl("inject", str(manifest), "--trust-domain", "cluster.local")
    assert r.returncode == 0, r.stderr
    d = next(yaml.safe_load_all(r.stdout))
    t = pod_template(d)
    proxy = t["spec"]["initContainers"][1]
    env = env_of(proxy)
    assert env["MESHD_TRUST_DOMAIN"] == "cluster.local"
    assert env["MESHD_POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["MESHD_IDENTITY"].startswith("spiffe://$(MESHD_TRUST_DOMAIN)/ns/$(MESHD_POD_NAMESPACE)/sa/")
    vols = {v["name"]: v for v in t["spec"]["volumes"]}
    assert vols["meshd-trust-anchors"]["configMap"]["name"] == "meshd-trust-anchors"
    sat = vols["meshd-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert sat == {"audience": "meshd", "expirationSeconds": 3600, "path": "token"}
    assert all(m["readOnly"] for m in proxy["volumeMounts"])


@pytest.mark.skipif(shutil.which("yamllint") is None, reason="yamllint not installed")
def test_output_lints(manifest, tmp_path):
    out = tmp_path / "injected.yaml"
    r = ctl("inject", str(manifest), "--trust-domain", "cluster.local")
    assert r.returncode == 0, r.stderr
    out.write_bytes(r.stdout)
    lint = subprocess.run(["yamllint", "-f", "parsable", "-d", "relaxed", str(out)], capture_output=True, text=True,
                          timeout=30)
    errors = [line for line in lint.stdout.splitlines() if "[error]" in line]
    assert not errors, lint.stdout


def test_idempotent_and_reversible(manifest):
    once = ctl("inject", str(manifest)).stdout
    twice = ctl("inject", "-", stdin=once)
    assert twice.returncode == 0
    assert twice.stdout == once
    assert b"already injected" in twice.stderr
    back = ctl("uninject", "-", stdin=once)
    assert back.returncode == 0, back.stderr
    assert back.stdout == MANIFEST.encode()
    # Uninject of something not injected changes nothing.
    assert ctl("uninject", str(manifest)).stdout == MANIFEST.encode()


def test_stdin(manifest):
    from_file = ctl("inject", str(manifest))
    from_stdin = ctl("inject", stdin=MANIFEST.encode())
    assert from_stdin.returncode == 0
    assert from_stdin.stdout == from_file.stdout


def test_bad_input(tmp_path):
    bad = MANIFEST + "---\nkind: Pod\nmetadata:\n  name: p\nspec: {containers: [{name: a}]}\n"
    r = ctl("inject", stdin=bad.encode())
    assert r.returncode == 1
    assert r.stdout == b""
    assert b"document 6 (Pod p), line" in r.stderr
    assert b"flow-style 'spec' is not supported" in r.stderr

    r = ctl("inject", stdin=b"kind: Deployment\nspec:\n\ttemplate: {}\n")
    assert r.returncode == 1 and r.stdout == b""
    assert b"tab" in r.stderr

    r = ctl("inject", "--skip-inbound-ports", "99999", stdin=MANIFEST.encode())
    assert r.returncode == 2 and r.stdout == b""

    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(17 << 20)
    r = ctl("inject", str(big))
    assert r.returncode == 1 and r.stdout == b""
    assert b"larger than 16 MiB" in r.stderr

    r = ctl("inject", str(tmp_path / "missing.yaml"))
    assert r.returncode == 1 and r.stdout == b""


def test_no_workload_is_identity():
    text = b"# nothing to do\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"
    r = ctl("inject", stdin=text)
    assert r.returncode == 0
    assert r.stdout == text
