"""A small mesh on one machine, for the e2e tests and for `make demo`.

Each "host" is a network namespace joined to the other by a veth pair, with
meshd-init's real iptables rules and a real meshd inside. Everything started
here is tracked and stopped by its pid, and every namespace is deleted, also
when a test fails.
"""
import itertools
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("MESHD_BUILD", os.path.join(HERE, "..", "..", "build"))
APPS = os.path.join(HERE, "apps.py")
PYTHON = "/usr/bin/python3"
PROXY_UID = 2102
_counter = itertools.count()


def binary(name):
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: run make first (or set MESHD_BUILD)")
    return path


def run(cmd, check=True, timeout=30, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


class Netns:
    """A network namespace: a test's private host."""

    def __init__(self, role):
        self.name = f"meshd-{role}-{os.getpid()}-{next(_counter)}"
        self.procs = []
        run(["ip", "netns", "add", self.name])
        self.exec(["ip", "link", "set", "lo", "up"])

    def cmd(self, argv):
        return ["ip", "netns", "exec", self.name] + argv

    def exec(self, argv, check=True, timeout=60):
        return run(self.cmd(argv), check=check, timeout=timeout)

    def spawn(self, argv, **kw):
        p = subprocess.Popen(self.cmd(argv), stdout=kw.pop("stdout", subprocess.PIPE),
                             stderr=kw.pop("stderr", subprocess.PIPE), text=True, **kw)
        self.procs.append(p)
        return p

    def app(self, *args, timeout=120):
        """Runs an apps.py client here and returns its JSON answer."""
        r = self.exec([PYTHON, APPS] + [str(a) for a in args], timeout=timeout)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def close(self):
        for p in self.procs:
            stop(p)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class Capture:
    """tcpdump on one host's LAN interface, into a file read back after."""

    def __init__(self, host):
        self.file = tempfile.NamedTemporaryFile(prefix="meshd-cap-", suffix=".pcap")
        # Immediate mode: packets are written as they come, not a buffer
        # block later; -Z root: the file stays writable after tcpdump drops
        # its privileges.
        self.proc = host.ns.spawn(["tcpdump", "-i", host.lan_dev, "-U", "--immediate-mode", "-Z", "root", "-s", "0",
                                   "-w", self.file.name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump says "listening on" once it captures.
        line = self.proc.stderr.readline()
        assert "listening" in line, line

    def bytes(self):
        time.sleep(0.3)
        stop(self.proc, signal.SIGINT)
        with open(self.file.name, "rb") as f:
            return f.read()


def stop(p, sig=signal.SIGKILL, timeout=10):
    """Stops a process we started, by its pid."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            p.kill()
            p.wait(timeout=5)
    return p.returncode


def wait_for(predicate, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Host:
    """A namespace with an address, the redirect rules and a meshd."""

    def __init__(self, role, v4, v6):
        self.ns = Netns(role)
        self.v4, self.v6 = v4, v6
        self.meshd = None
        self.apps = {}

    def install_rules(self, ipv6=False, extra=()):
        argv = [binary("meshd-init")] + (["--ipv6"] if ipv6 else []) + list(extra)
        return self.ns.exec(argv)

    def start_meshd(self, *flags, argv=None):
        # stderr goes to a file, not a pipe: a pipe nobody drains would block
        # meshd's logging, and the file is read back when the host closes.
        self.meshd_log = tempfile.NamedTemporaryFile("w+", prefix="meshd-log-", suffix=".txt")
        self.meshd = self.ns.spawn(argv or ([binary("meshd"), "--log-level", "warn"] + list(flags)),
                                   stderr=self.meshd_log)
        wait_for(lambda: self.meshd.poll() is not None or self.ready(), 10, "meshd to be ready")
        if self.meshd.poll() is not None:
            raise RuntimeError(f"meshd exited {self.meshd.returncode}: {self.log()}")
        return self.meshd

    def log(self):
        self.meshd_log.seek(0)
        return self.meshd_log.read()

    def ready(self, admin="127.0.0.1:4191"):
        r = self.ns.exec([PYTHON, APPS, "get", f"http://{admin}/ready"], check=False, timeout=10)
        return r.returncode == 0 and '"status": 200' in r.stdout

    def serve(self, port, family="4", name=None):
        p = self.ns.spawn([PYTHON, APPS, "serve", str(port), family] + ([name] if name else []))
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"app server on port {port} did not start: {p.stderr.read()}")
        self.apps[port] = p
        return p

    def metrics(self, admin="127.0.0.1:4191"):
        """The proxy's /metrics as {'name{labels}': value}."""
        out = self.ns.app("get", f"http://{admin}/metrics")
        assert out["status"] == 200, out
        return parse_metrics(out["body"])

    def status(self, admin="127.0.0.1:4191"):
        out = self.ns.app("get", f"http://{admin}/status.json")
        assert out["status"] == 200, out
        return json.loads(out["body"])

    def meshd_rss(self):
        with open(f"/proc/{self.meshd.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for meshd")

    def close(self):
        """Stops meshd with SIGTERM and fails if it did not exit cleanly or a
        sanitizer spoke (in the asan build, that includes leaks at exit)."""
        problem = None
        if self.meshd is not None:
            code = stop(self.meshd, signal.SIGTERM, timeout=20)
            log = self.log()
            if code not in (0, None) or "Sanitizer" in log or "runtime error:" in log:
                problem = f"meshd in {self.ns.name} exited {code}:\n{log[-4000:]}"
        self.ns.close()
        if problem:
            raise AssertionError(problem)


def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\S+?)(\{.*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def link(a, b):
    """Joins two hosts with a veth pair and gives each its addresses."""
    va, vb = f"veth{os.getpid() % 10000}a{next(_counter)}", f"veth{os.getpid() % 10000}b{next(_counter)}"
    run(["ip", "link", "add", va, "type", "veth", "peer", "name", vb])
    run(["ip", "link", "set", va, "netns", a.ns.name])
    run(["ip", "link", "set", vb, "netns", b.ns.name])
    for host, dev in ((a, va), (b, vb)):
        host.ns.exec(["ip", "addr", "add", f"{host.v4}/24", "dev", dev])
        host.ns.exec(["ip", "-6", "addr", "add", f"{host.v6}/64", "dev", dev, "nodad"])
        host.ns.exec(["ip", "link", "set", dev, "up"])


class Lan:
    """A switch (a bridge in a namespace of its own) that hosts plug into
    with a veth each, all in 10.78.0.0/24: for scenarios with more than two
    hosts (controllers, several servers, a client)."""

    def __init__(self):
        self.ns = Netns("lan")
        self.ns.exec(["ip", "link", "add", "br0", "type", "bridge"])
        self.ns.exec(["ip", "link", "set", "br0", "up"])

    def attach(self, host):
        inside, outside = f"vl{os.getpid() % 10000}i{next(_counter)}", f"vl{os.getpid() % 10000}o{next(_counter)}"
        run(["ip", "link", "add", inside, "type", "veth", "peer", "name", outside])
        run(["ip", "link", "set", inside, "netns", host.ns.name])
        run(["ip", "link", "set", outside, "netns", self.ns.name])
        self.ns.exec(["ip", "link", "set", outside, "master", "br0"])
        self.ns.exec(["ip", "link", "set", outside, "up"])
        host.ns.exec(["ip", "addr", "add", f"{host.v4}/24", "dev", inside])
        host.ns.exec(["ip", "link", "set", inside, "up"])
        host.lan_dev = inside

    def close(self):
        self.ns.close()


VIP = "10.96.0.10"
TRUST_DOMAIN = "mesh.test"
CTRL_IP = "10.78.0.10"
REGISTRY = f"""
[[service]]
name = "web.prod"
ports = [8080]
virtual_addresses = ["{VIP}:80"]
protocol = "opaque"
"""


class Cluster:
    """A small mesh on one LAN (10.78.0.0/24): controller replicas
    (10.78.0.10, .11, ...), two server hosts (.2, .3) whose meshd registers
    web.prod=8080 under a lease, each serving a named app on 8080, and a
    client host (.1) whose meshd learns web.prod from the controllers. Every
    host has the redirect rules; everything started is stopped by pid."""

    controller_flags = ()  # more flags for every controller replica

    def __init__(self, controllers=1, registry=REGISTRY, lease="3s", gossip=False, register=True, identity=False,
                 cert_ttl="1h", meshd_flags=(), controller_flags=()):
        self.hosts, self.controllers = [], []
        self.controller_flags = list(controller_flags)
        self.workdir = tempfile.TemporaryDirectory(prefix="meshd-cluster-")
        self.lan = Lan()
        self.identity, self.cert_ttl, self.meshd_flags = identity, cert_ttl, list(meshd_flags)
        self.ca_dir = os.path.join(self.workdir.name, "ca")
        try:
            if identity:
                run([binary("meshd-ctl"), "identity", "init", "--trust-domain", TRUST_DOMAIN, "--dir", self.ca_dir])
            self.ctrl_hosts = [self.host(f"ctrl{i}", f"10.78.0.{10 + i}") for i in range(controllers)]
            self.controller_addrs = ",".join(f"{h.v4}:4190" for h in self.ctrl_hosts)
            with open(os.path.join(self.workdir.name, "registry.toml"), "w") as f:
                f.write(registry)
            self.gossip = gossip
            if gossip:
                with open(os.path.join(self.workdir.name, "cluster.key"), "w") as f:
                    f.write(os.urandom(32).hex() + "\n")
            self.before_controllers()
            for i in range(controllers):
                self.start_controller(i)
            self.client = self.host("client", "10.78.0.1")
            # A route for addresses that exist only as virtual ones: without
            # one, connect() fails before the redirect rule can apply.
            self.client.ns.exec(["ip", "route", "add", "default", "dev", self.client.lan_dev])
            self.servers = [self.host(f"server{i + 1}", f"10.78.0.{i + 2}") for i in range(2)]
            for i, s in enumerate(self.servers):
                s.serve(8080, name=f"server{i + 1}")
                s.install_rules()
                if register:
                    s.start_meshd("--controller", self.controller_addrs, "--register", "web.prod=8080",
                                  "--register-lease", lease, *self.identity_flags(s))
                else:
                    s.start_meshd(*self.identity_flags(s))
            self.client.install_rules()
            self.client.start_meshd("--controller", self.controller_addrs, *self.identity_flags(self.client))
        except BaseException:
            self.close()
            raise

    def before_controllers(self):
        """For a scenario's own services on the controllers' hosts, started
        before the controllers that use them."""

    def identity_of(self, host):
        return f"spiffe://{TRUST_DOMAIN}/host/{host.role}"

    def token(self, identity, uses=1, ttl="10m", ca_dir=None):
        """A join token file for identity; returns its path."""
        r = run([binary("meshd-ctl"), "identity", "token", "--identity", identity, "--dir", ca_dir or self.ca_dir,
                 "--uses", str(uses), "--ttl", ttl])
        path = os.path.join(self.workdir.name, f"token-{next(_counter)}")
        with open(path, "w") as f:
            f.write(r.stdout)
        return path

    def identity_flags(self, host, ca_dir=None):
        """meshd's flags for an identity from this mesh's CA (another CA's with ca_dir)."""
        flags = list(self.meshd_flags)
        if not self.identity:
            return flags
        ca = ca_dir or self.ca_dir
        return flags + ["--trust-anchors", os.path.join(ca, "ca.crt"), "--identity", self.identity_of(host),
                        "--identity-token-file", self.token(self.identity_of(host), ca_dir=ca)]

    def host(self, role, ip):
        h = Host(role, ip, None)
        h.role = role
        self.hosts.append(h)
        self.lan.attach(h)
        return h

    def start_controller(self, i):
        h = self.ctrl_hosts[i]
        log = open(os.path.join(self.workdir.name, f"controller{i}.log"), "a+")
        argv = [binary("meshd-controller"), "--listen", "0.0.0.0:4190", "--data-dir",
                os.path.join(self.workdir.name, f"data{i}"), "--registry-file",
                os.path.join(self.workdir.name, "registry.toml")]
        if self.identity:
            argv += ["--identity-dir", self.ca_dir, "--trust-domain", TRUST_DOMAIN, "--cert-ttl", self.cert_ttl]
        argv += list(self.controller_flags)
        if self.gossip:
            others = ",".join(f"{o.v4}:4192" for o in self.ctrl_hosts if o is not h)
            argv += ["--cluster-key-file", os.path.join(self.workdir.name, "cluster.key"), "--gossip-listen",
                     f"{h.v4}:4192", "--join", others, "--node-name", f"ctrl{i}"]
        p = h.ns.spawn(argv, stdout=log, stderr=log)
        wait_for(lambda: p.poll() is not None or self.services(i) is not None, 10, "the controller")
        assert p.poll() is None, open(log.name).read()
        if i < len(self.controllers):
            self.controllers[i] = p
        else:
            self.controllers.append(p)
        return p

    def services(self, i=0):
        anchors = ["--trust-anchors", os.path.join(self.ca_dir, "ca.crt")] if self.identity else []
        r = self.ctrl_hosts[i].ns.exec([binary("meshd-ctl"), "services", "-o", "json"] + anchors, check=False)
        if r.returncode != 0:
            return None
        return {s["name"]: s for s in json.loads(r.stdout)["services"]}

    def endpoints(self, host=None):
        r = (host or self.client).ns.exec([binary("meshd-ctl"), "endpoints", "web.prod", "-o", "json"], check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def names(self, address, port, count):
        return self.client.ns.app("names", address, port, count)

    def wait_registered(self, count, controller=0):
        wait_for(lambda: (self.services(controller) or {}).get("web.prod", {}).get("endpoints") == count, 15,
                 f"{count} registered endpoints of web.prod")

    def close(self):
        problems = []
        for h in self.hosts:
            try:
                h.close()
            except AssertionError as e:
                problems.append(str(e))
        self.lan.close()
        self.workdir.cleanup()
        if problems:
            raise AssertionError("\n".join(problems))


class Pair:
    """Two meshed hosts, 'client' and 'server', on one link."""

    def __init__(self, ipv6=False, meshd_flags=(), init_flags=()):
        self.client = self.server = None
        try:
            self.client = Host("client", "10.77.0.1", "fd77::1")
            self.server = Host("server", "10.77.0.2", "fd77::2")
            link(self.client, self.server)
            for h in (self.client, self.server):
                h.install_rules(ipv6=ipv6, extra=init_flags)
                h.start_meshd(*meshd_flags)
        except BaseException:
            self.close()
            raise

    def close(self):
        problems = []
        for h in (self.client, self.server):
            if h is not None:
                try:
                    h.close()
                except AssertionError as e:
                    problems.append(str(e))
        if problems:
            raise AssertionError("\n".join(problems))


HTTP_VIP = "10.96.0.20"
TIMED_VIP = "10.96.0.21"  # timed.prod: the HTTP backend under a 400 ms request timeout
FLAKY_VIP = "10.96.0.22"  # flaky.prod: the HTTP backend, and one that answers 503 to everything
NGINX_VIP = "10.96.0.23"  # nginx.prod: Debian's nginx, HTTP/1.1
H2C_VIP = "10.96.0.24"    # h2c.prod: the same nginx, HTTP/2 with prior knowledge (h2c)
GRPC_VIP = "10.96.0.25"   # grpc.prod: apps.py grpc-serve, gRPC over h2c, every third call UNAVAILABLE
RETRY_VIP = "10.96.0.26"  # retry.prod: an HTTP backend answering 503 to every third request
SPREAD_VIP = "10.96.0.27"  # spread.prod: two HTTP backends (8088, 8089), each logging what it serves
MIXED_VIP = "10.96.0.28"   # mixed.prod: the backend on 8088, and the one answering 503 to everything
HALFDEAD_VIP = "10.96.0.29"  # halfdead.prod: the backend on 8089, and an address where nothing listens
STREAMS_VIP = "10.96.0.30"   # streams.prod: two gRPC-shaped h2c servers (8090 "a", 8091 "b")
H2HALF_VIP = "10.96.0.31"    # h2half.prod: the h2c server "a", and an address where nothing listens
H2HANG_VIP = "10.96.0.32"    # h2hang.prod: an h2c server that answers no stream, under a 400 ms timeout
BURST_VIP = "10.96.0.33"     # burst.prod: the HTTP backend, dialled only by the discovery burst test
HTTP_REGISTRY = f"""
[[service]]
name = "http.prod"
ports = [8080]
virtual_addresses = ["{HTTP_VIP}:80"]

[[service]]
name = "greet.prod"
ports = [9500]

[[service]]
name = "timed.prod"
ports = [8080]
virtual_addresses = ["{TIMED_VIP}:80"]
request_timeout = "400ms"

[[service]]
name = "flaky.prod"
ports = [8080, 8083]
virtual_addresses = ["{FLAKY_VIP}:80"]

[[service]]
name = "nginx.prod"
ports = [8084]
virtual_addresses = ["{NGINX_VIP}:80"]
retry_statuses = []

[[service]]
name = "h2c.prod"
ports = [8085]
virtual_addresses = ["{H2C_VIP}:80"]

[[service]]
name = "grpc.prod"
ports = [8086]
virtual_addresses = ["{GRPC_VIP}:80"]

[[service]]
name = "retry.prod"
ports = [8087]
virtual_addresses = ["{RETRY_VIP}:80"]

[[service]]
name = "spread.prod"
ports = [8088, 8089]
virtual_addresses = ["{SPREAD_VIP}:80"]

[[service]]
name = "mixed.prod"
ports = [8088, 8083]
virtual_addresses = ["{MIXED_VIP}:80"]

[[service]]
name = "halfdead.prod"
ports = [8089]
virtual_addresses = ["{HALFDEAD_VIP}:80"]
[[service.endpoint]]
address = "{CTRL_IP}:8099"

[[service]]
name = "streams.prod"
ports = [8090, 8091]
virtual_addresses = ["{STREAMS_VIP}:80"]

[[service]]
name = "burst.prod"
ports = [8080]
virtual_addresses = ["{BURST_VIP}:80"]

[[service]]
name = "h2hang.prod"
ports = [8092]
virtual_addresses = ["{H2HANG_VIP}:80"]
request_timeout = "400ms"

[[service]]
name = "h2half.prod"
ports = [8090]
virtual_addresses = ["{H2HALF_VIP}:80"]
[[service.endpoint]]
address = "{CTRL_IP}:8099"
"""

# Debian's nginx as a real server: one process (no master, no workers to
# find and stop), everything under DIR, static files in DIR/www.
NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
  default_type application/octet-stream;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 8084;
    root {dir}/www;
    location = /status/503 {{ return 503; }}
  }}
  server {{
    listen 8085 http2;
    root {dir}/www;
    keepalive_requests {h2_requests};
    location = /status/503 {{ return 503; }}
  }}
}}
"""


class Agent:
    """An apps.py agent in a namespace: runs the clients apps.py has (see
    AGENT_CLIENTS there) on request, in one process, so that a test making
    many client calls or metric reads does not start Python for each."""

    def __init__(self, ns):
        self.errors = tempfile.NamedTemporaryFile("w+", prefix="meshd-agent-", suffix=".txt")
        self.proc = ns.spawn([PYTHON, APPS, "agent"], stdin=subprocess.PIPE, stderr=self.errors)
        self.started = False

    def call(self, *args, timeout=60):
        if not self.started:
            self._line(30)  # "ready"
            self.started = True
        self.proc.stdin.write(json.dumps([str(a) for a in args]) + "\n")
        self.proc.stdin.flush()
        out = json.loads(self._line(timeout))
        if "agent_error" in out:
            raise RuntimeError(f"apps.py {args[0]} failed in the agent: {out['agent_error']}")
        return out

    def _line(self, timeout):
        # One request, one line: nothing is ever left in the pipe's buffer
        # between calls, so select() on the pipe is enough.
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise AssertionError(f"the apps.py agent gave no answer in {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            self.errors.seek(0)
            raise RuntimeError(f"the apps.py agent exited: {self.errors.read()[-2000:]}")
        return line


class AgentHost(Host):
    """A Host whose admin reads (ready, metrics, status) and clients go
    through an Agent: the same answers, without a Python start each."""

    def __init__(self, role, v4, v6):
        super().__init__(role, v4, v6)
        self.agent = Agent(self.ns)

    def app(self, *args, timeout=120):
        return self.agent.call(*args, timeout=timeout)

    def ready(self, admin="127.0.0.1:4191"):
        try:
            return self.agent.call("get", f"http://{admin}/ready", timeout=10).get("status") == 200
        except RuntimeError:  # not listening yet
            return False

    def metrics(self, admin="127.0.0.1:4191"):
        out = self.agent.call("get", f"http://{admin}/metrics")
        assert out["status"] == 200, out
        return parse_metrics(out["body"])

    def status(self, admin="127.0.0.1:4191"):
        out = self.agent.call("get", f"http://{admin}/status.json")
        assert out["status"] == 200, out
        return json.loads(out["body"])


class HttpMesh(Cluster):
    """For the HTTP tests: a controller that is the mesh's CA (10.78.0.10),
    a client host (10.78.0.1) and a server host (10.78.0.2), both meshed with
    identities, so the hop between their proxies is mutual TLS.

    The server runs the HTTP backend (apps.py http-serve, which logs every
    request line to self.backend_log) on 8080, registered as http.prod
    (also at HTTP_VIP:80), and servers that speak first (apps.py greet) on
    9500, registered as greet.prod, and on 3306, an opaque port, not
    registered (the inbound proxy does not look at an opaque port's first
    bytes, so it could not tell mesh TLS there). The HTTP backend is also
    timed.prod (at TIMED_VIP:80), whose registry entry sets a 400 ms
    request timeout, and one of flaky.prod's two endpoints (FLAKY_VIP:80);
    the other, on 8083, answers 503 to every request. Debian's nginx
    serves self.www (index.html, big.bin) as nginx.prod (NGINX_VIP:80,
    HTTP/1.1 on 8084) and h2c.prod (H2C_VIP:80, HTTP/2 on 8085). A gRPC-shaped
    h2c server (apps.py grpc-serve) on 8086 is grpc.prod (GRPC_VIP:80): every
    third call of a connection ends UNAVAILABLE. Another HTTP backend on 8087,
    retry.prod (RETRY_VIP:80), answers 503 to every third request it gets
    (the client's proxy retries them). Two more, on 8088 and 8089, logging to
    self.spread_logs, are spread.prod (SPREAD_VIP:80); mixed.prod (MIXED_VIP:80) is
    the one on 8088 and the one answering 503; halfdead.prod (HALFDEAD_VIP:80) is
    the one on 8089 and a port of the controller's host where nothing listens
    (refused); nginx ends an h2 connection after h2_requests requests
    (GOAWAY; its default 1000). Two gRPC-shaped h2c servers on 8090 and 8091, which name
    themselves in an x-server header ("a", "b"), are streams.prod
    (STREAMS_VIP:80); h2half.prod (H2HALF_VIP:80) is "a" and that refusing
    port; one on 8092 that answers no stream is h2hang.prod (H2HANG_VIP:80,
    400 ms request timeout). meshd_flags go to both meshds,
    client_flags to the client's only. Built from Cluster's parts; Cluster itself is
    unchanged."""

    def __init__(self, meshd_flags=(), client_flags=(), h2_requests=1000):
        # The state Cluster's methods (host, token, identity_flags,
        # start_controller, services, close) rely on.
        self.hosts, self.controllers = [], []
        self.workdir = tempfile.TemporaryDirectory(prefix="meshd-http-")
        self.identity, self.cert_ttl, self.meshd_flags, self.gossip = True, "1h", list(meshd_flags), False
        self.h2_requests = h2_requests
        self.ca_dir = os.path.join(self.workdir.name, "ca")
        self.backend_log = os.path.join(self.workdir.name, "backend.log")
        self.spread_logs = [os.path.join(self.workdir.name, f"spread-{p}.log") for p in (8088, 8089)]
        self.lan = Lan()
        try:
            run([binary("meshd-ctl"), "identity", "init", "--trust-domain", TRUST_DOMAIN, "--dir", self.ca_dir])
            self.ctrl_hosts = [self.host("ctrl0", CTRL_IP)]
            self.controller_addrs = f"{CTRL_IP}:4190"
            with open(os.path.join(self.workdir.name, "registry.toml"), "w") as f:
                f.write(HTTP_REGISTRY)
            self.start_controller(0)
            self.client = self.host("client", "10.78.0.1")
            self.client.ns.exec(["ip", "route", "add", "default", "dev", self.client.lan_dev])
            self.server = self.host("server", "10.78.0.2")
            self.servers = [self.server]
            self.start_backends()
            for h in (self.server, self.client):
                h.install_rules()
            self.server.start_meshd("--controller", self.controller_addrs, "--register", "http.prod=8080",
                                    "--register", "greet.prod=9500", "--register", "timed.prod=8080",
                                    "--register", "flaky.prod=8080", "--register", "flaky.prod=8083",
                                    "--register", "nginx.prod=8084", "--register", "h2c.prod=8085",
                                    "--register", "grpc.prod=8086", "--register", "retry.prod=8087",
                                    "--register", "spread.prod=8088", "--register", "spread.prod=8089",
                                    "--register", "mixed.prod=8088", "--register", "mixed.prod=8083",
                                    "--register", "halfdead.prod=8089",
                                    "--register", "streams.prod=8090", "--register", "streams.prod=8091",
                                    "--register", "h2half.prod=8090", "--register", "h2hang.prod=8092", "--register", "burst.prod=8080",
                                    *self.identity_flags(self.server))
            self.client.start_meshd("--controller", self.controller_addrs, *self.identity_flags(self.client),
                                    *client_flags)
            self.wait_meshed()
        except BaseException:
            self.close()
            raise

    def host(self, role, ip):
        # As Cluster.host, with an agent for the client and the server.
        h = AgentHost(role, ip, None) if role in ("client", "server") else Host(role, ip, None)
        h.role = role
        self.hosts.append(h)
        self.lan.attach(h)
        return h

    def start_backends(self):
        errors = os.path.join(self.workdir.name, "backends.err")
        for argv in (["http-serve", "8080", self.backend_log], ["http-serve", "8083", self.backend_log, "503"],
                     ["greet", "9500"], ["greet", "3306"], ["grpc-serve", "8086", "3"],
                     ["http-serve", "8087", os.path.join(self.workdir.name, "retry.log"), "503", "3"],
                     ["http-serve", "8088", self.spread_logs[0]], ["http-serve", "8089", self.spread_logs[1]],
                     ["grpc-serve", "8090", "0", "a"], ["grpc-serve", "8091", "0", "b"],
                     ["grpc-serve", "8092", "0", "hang"]):
            with open(errors, "a") as f:  # stderr to a file: a pipe nobody reads could fill and block
                p = self.server.ns.spawn([PYTHON, APPS] + argv, stderr=f)
            if p.stdout.readline().strip() != "ready":
                with open(errors) as f:
                    raise RuntimeError(f"apps.py {' '.join(argv)} did not start: {f.read()}")
        self.start_nginx()

    def start_nginx(self):
        d = os.path.join(self.workdir.name, "nginx")
        self.www = os.path.join(d, "www")
        os.makedirs(self.www)
        with open(os.path.join(self.www, "index.html"), "w") as f:
            f.write("<html>meshd e2e</html>\n")
        with open(os.path.join(self.www, "big.bin"), "wb") as f:
            f.write(os.urandom(256 * 1024))
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=d, h2_requests=self.h2_requests))
        log = os.path.join(d, "nginx-error.log")
        p = self.server.ns.spawn(["nginx", "-p", d, "-e", log, "-c", conf], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)

        def listening():
            if p.poll() is not None:
                with open(log) as f:
                    raise RuntimeError(f"nginx exited {p.returncode}: {f.read()}")
            out = self.server.ns.exec(["ss", "-Hltn", "sport = :8084 or sport = :8085"]).stdout
            return len(out.splitlines()) == 2
        wait_for(listening, 10, "nginx to listen")

    def wait_meshed(self):
        """Both proxies hold certificates and the controller has the server's
        registrations."""
        for h in (self.client, self.server):
            wait_for(lambda: h.status()["identity"]["state"] == "valid", 15, f"{h.role}'s certificate")
        want = {"http.prod": 1, "greet.prod": 1, "timed.prod": 1, "flaky.prod": 2, "nginx.prod": 1, "h2c.prod": 1,
                "grpc.prod": 1, "retry.prod": 1, "spread.prod": 2,
                "mixed.prod": 2, "halfdead.prod": 2, "streams.prod": 2, "h2half.prod": 2,
                "h2hang.prod": 1, "burst.prod": 1}
        wait_for(lambda: all((self.services() or {}).get(n, {}).get("endpoints") == k for n, k in want.items()), 15,
                 "the server's registrations")

    def backend_requests(self):
        """The request lines the HTTP backend has accepted, in order."""
        with open(self.backend_log) as f:
            return f.read().splitlines()


if __name__ == "__main__":
    sys.exit("mesh.py is a library for the e2e tests and demo.py")
