#!/usr/bin/python3
"""Two-hop benchmark: the mesh path with mutual TLS between two meshd
proxies, side by side with two HAProxy doing the same two hops with TLS.

  meshd:   wrk -> meshd A (--forward 127.0.0.1:18001=web.prod:8080)
                -> mTLS -> meshd B (inbound, iptables redirect) -> nginx
  HAProxy: wrk -> haproxy A (tcp, 127.0.0.1:18002, `server ... ssl verify
                required`) -> TLS -> haproxy B (`bind ... ssl verify
                required`) -> nginx

Run by bench/run.sh after the one-hop part (or alone, as root:
MESHD_BUILD=build /usr/bin/python3 bench/mtls.py). Both pairs live in the
same two network namespaces of tests/e2e/mesh.py (a client and a server host
on one bridge, plus a controller host), with meshd-init's real rules in both;
the HAProxy port is left out of the redirect, so both pairs cross the same
veth path and the same nat chains. One thread each: meshd --threads 1,
HAProxy nbthread 1. One backend (nginx, 1 process) on the server host's
loopback serves both.

Each round measures, for each pair in turn: keep-alive requests (wrk -c50)
and new connections (wrk -H 'Connection: close': one TLS handshake between
the proxies per request). The table gives medians over rounds, and ratios
meshd/HAProxy as the median of the ratio within each round.

Knobs (environment): BENCH_MTLS_DURATION=10 (seconds per keep-alive run),
BENCH_MTLS_CLOSE_DURATION=5, BENCH_WARMUP=1, BENCH_REPEAT=3, BENCH_CONNS=50,
BENCH_PIN=none|split, BENCH_LOAD_CPUS / BENCH_PROXY_CPUS (as run.sh),
MESHD_BIN (another meshd binary), BENCH_MTLS_LOG_LEVEL=warn (meshd's).
A meshd run counts only if its hop really is mTLS (both proxies count
handshakes) and wrk completes requests without more socket errors than
requests; else the row says why, with the handshake counters.
Writes build/bench/mtls.md, mtls.json and raw/mtls-*.txt. Every process
started here is stopped by its pid and every namespace deleted, also on
failure or interrupt.
"""
import json
import os
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree (before nsbench, which is one)

import nsbench  # noqa: E402  (first: it puts tests/e2e, where mesh.py is, on the path)
import mesh  # noqa: E402  (Netns/Host/Lan, binary(), stop(), wait_for())
from nsbench import HZ, OUTDIR, fmt_ratio, med, pinned, rss_kb, wait_listen  # noqa: E402
from report import fmt_mb, fmt_us, parse_wrk  # noqa: E402

DURATION = nsbench.env_int("mtls", "BENCH_MTLS_DURATION", 10, 1, 600)
CLOSE_DURATION = nsbench.env_int("mtls", "BENCH_MTLS_CLOSE_DURATION", 5, 1, 600)
WARMUP = nsbench.env_int("mtls", "BENCH_WARMUP", 1, 0, 60)
REPEAT = nsbench.env_int("mtls", "BENCH_REPEAT", 3, 1, 20)
CONNS = nsbench.env_int("mtls", "BENCH_CONNS", 50, 1, 4000)
TARGET_RPS = 1.3  # issue 4: meshd two-hop mTLS >= 1.3x HAProxy two-hop TLS req/s

CTRL_IP, CLIENT_IP, SERVER_IP = "10.78.0.10", "10.78.0.1", "10.78.0.2"
BACKEND_PORT = 8080  # the app port on the server host (registered as web.prod)
MESHD_PORT = 18001  # meshd A's --forward listener, client host loopback
HAPROXY_PORT = 18002  # haproxy A, client host loopback
HAPROXY_TLS_PORT = 8443  # haproxy B on the server host's LAN address
TRUST_DOMAIN = "mesh.test"
SERVICE = "web.prod"


def log(msg):
    print(f"mtls: {msg}", file=sys.stderr, flush=True)


LOAD_CPUS, PROXY_CPUS, PINNING = nsbench.cpu_lists("proxies", "all four proxies", "the two proxies")


# ---------------------------------------------------------------- setup pieces
def run(argv, **kw):
    return mesh.run(argv, **kw)


def make_haproxy_certs(d):
    """A P-256 CA and two leaves (server, client) for the HAProxy pair, the
    same key type as meshd's identities."""
    def sh(*argv):
        run(["openssl", *argv], timeout=30)

    sh("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/ca.key")
    sh("req", "-x509", "-new", "-key", f"{d}/ca.key", "-sha256", "-days", "2", "-subj", "/CN=bench-ca",
       "-out", f"{d}/ca.pem")
    for i, n in enumerate(("server", "client")):
        sh("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{d}/{n}.key")
        sh("req", "-new", "-key", f"{d}/{n}.key", "-subj", f"/CN={n}.mesh.test", "-out", f"{d}/{n}.csr")
        with open(f"{d}/{n}.ext", "w") as f:
            f.write(f"subjectAltName=DNS:{n}.mesh.test\nextendedKeyUsage=serverAuth,clientAuth\n")
        sh("x509", "-req", "-in", f"{d}/{n}.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key", "-set_serial",
           str(1000 + i), "-days", "2", "-sha256", "-extfile", f"{d}/{n}.ext", "-out", f"{d}/{n}.crt")
        with open(f"{d}/{n}.pem", "w") as out:
            for part in (f"{d}/{n}.crt", f"{d}/{n}.key"):
                with open(part) as f:
                    out.write(f.read())


HAPROXY_COMMON = """global
    nbthread 1
    maxconn 4096
    stats socket {sock} level admin
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
"""


def haproxy_configs(d):
    a = HAPROXY_COMMON.format(sock=f"{d}/haproxy-a.sock") + f"""frontend fe
    bind 127.0.0.1:{HAPROXY_PORT}
    default_backend be
backend be
    server b {SERVER_IP}:{HAPROXY_TLS_PORT} ssl verify required ca-file {d}/ca.pem crt {d}/client.pem verifyhost server.mesh.test ssl-min-ver TLSv1.3
"""
    b = HAPROXY_COMMON.format(sock=f"{d}/haproxy-b.sock") + f"""frontend fe
    bind {SERVER_IP}:{HAPROXY_TLS_PORT} ssl crt {d}/server.pem ca-file {d}/ca.pem verify required ssl-min-ver TLSv1.3
    default_backend be
backend be
    server app 127.0.0.1:{BACKEND_PORT}
"""
    for name, text in (("a", a), ("b", b)):
        with open(f"{d}/haproxy-{name}.cfg", "w") as f:
            f.write(text)


def haproxy_cli(sock, command):
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(5)
        c.connect(sock)
        c.sendall(command.encode() + b"\n")
        data = b""
        while chunk := c.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def haproxy_ssl_counts(sock, proxy, kind):
    """(full, resumed) handshakes of one frontend (kind FRONTEND) or one
    server line, from `show stat` (HAProxy's ssl stats module: ssl_sess
    counts the new sessions, ssl_reused_sess the resumed ones), or None."""
    lines = haproxy_cli(sock, "show stat").splitlines()
    if not lines or not lines[0].startswith("# "):
        return None
    head = lines[0][2:].split(",")
    if "ssl_sess" not in head or "ssl_reused_sess" not in head:
        return None
    for line in lines[1:]:
        row = dict(zip(head, line.split(",")))
        if row.get("pxname") == proxy and (row.get("svname") == kind):
            try:
                return int(row["ssl_sess"] or 0), int(row["ssl_reused_sess"] or 0)
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------- the mesh
class Bench(nsbench.Bench):
    def __init__(self, tmp):
        super().__init__(tmp)
        self.hosts, self.lan = [], None
        self.pairs = {}  # name -> {a: pid, b: pid, port} or {fail: reason}

    def host(self, role, ip):
        h = mesh.Host(role, ip, None)
        h.role = role
        self.hosts.append(h)
        self.lan.attach(h)
        nsbench.sysctls(h.ns)
        return h

    def token(self, identity):
        r = run([mesh.binary("meshd-ctl"), "identity", "token", "--identity", identity, "--dir", self.ca,
                 "--uses", "1", "--ttl", "10m"])
        path = os.path.join(self.tmp, f"token-{identity.rsplit('/', 1)[1]}")
        with open(path, "w") as f:
            f.write(r.stdout)
        return path

    def identity_flags(self, host):
        ident = f"spiffe://{TRUST_DOMAIN}/host/{host.role}"
        return ["--trust-anchors", os.path.join(self.ca, "ca.crt"), "--identity", ident,
                "--identity-token-file", self.token(ident)]

    def setup(self):
        self.ca = os.path.join(self.tmp, "ca")
        run([mesh.binary("meshd-ctl"), "identity", "init", "--trust-domain", TRUST_DOMAIN, "--dir", self.ca])
        make_haproxy_certs(self.tmp)
        haproxy_configs(self.tmp)
        with open(os.path.join(self.tmp, "registry.toml"), "w") as f:
            f.write(f'[[service]]\nname = "{SERVICE}"\nports = [{BACKEND_PORT}]\nprotocol = "opaque"\n')

        self.lan = mesh.Lan()
        self.ctrl = self.host("ctrl", CTRL_IP)
        self.client = self.host("client", CLIENT_IP)
        self.server = self.host("server", SERVER_IP)

        ctl = self.spawn(self.ctrl, "controller", [
            mesh.binary("meshd-controller"), "--listen", "0.0.0.0:4190", "--data-dir",
            os.path.join(self.tmp, "data"), "--registry-file", os.path.join(self.tmp, "registry.toml"),
            "--identity-dir", self.ca, "--trust-domain", TRUST_DOMAIN])
        mesh.wait_for(lambda: ctl.poll() is not None or self.ctrl.ns.exec(
            [mesh.binary("meshd-ctl"), "services"], check=False).returncode == 0, 15, "the controller")
        if ctl.poll() is not None:
            raise RuntimeError(f"meshd-controller exited: {self.tail('controller', 400)}")

        # Same rules on both hosts; the HAProxy TLS port passes untouched.
        skip = ["--skip-inbound-ports", str(HAPROXY_TLS_PORT), "--skip-outbound-ports", str(HAPROXY_TLS_PORT)]
        for h in (self.client, self.server):
            h.install_rules(extra=skip)

        nginx = nsbench.nginx_backend(self.tmp, "nginx", [[f"127.0.0.1:{BACKEND_PORT} backlog=4096"]])
        backend = self.spawn(self.server, "backend", pinned(LOAD_CPUS, nginx))
        wait_listen(self.server.ns, "127.0.0.1", BACKEND_PORT, backend, "the backend nginx")
        self.backend = backend.pid

        self.start_meshd_pair()
        self.start_haproxy_pair()

    def start_meshd_pair(self):
        ctrl = f"{CTRL_IP}:4190"
        meshd = nsbench.meshd_bin()
        try:
            common = ["--log-level", os.environ.get("BENCH_MTLS_LOG_LEVEL", "warn"), "--threads", "1",
                      "--controller", ctrl]
            self.server.start_meshd(argv=pinned(PROXY_CPUS, [meshd, *common, "--register",
                                                             f"{SERVICE}={BACKEND_PORT}",
                                                             *self.identity_flags(self.server)]))
            self.client.start_meshd(argv=pinned(PROXY_CPUS, [meshd, *common, "--forward",
                                                             f"127.0.0.1:{MESHD_PORT}={SERVICE}:{BACKEND_PORT}",
                                                             *self.identity_flags(self.client)]))
            for h in (self.client, self.server):
                mesh.wait_for(lambda h=h: h.status().get("identity", {}).get("state") == "valid", 15,
                              f"meshd {h.role} to hold a certificate")
            mesh.wait_for(lambda: self.endpoints() == 1, 15, f"{SERVICE} to be registered")
            self.pairs["meshd"] = {"a": self.client.meshd.pid, "b": self.server.meshd.pid, "port": MESHD_PORT}
        except (RuntimeError, AssertionError, subprocess.SubprocessError) as e:
            logs = " | ".join(h.log()[-300:] for h in (self.client, self.server) if h.meshd is not None)
            self.pairs["meshd"] = {"fail": f"{e} {logs}".strip()}

    def endpoints(self):
        r = self.ctrl.ns.exec([mesh.binary("meshd-ctl"), "services", "-o", "json"], check=False)
        if r.returncode != 0:
            return None
        for s in json.loads(r.stdout)["services"]:
            if s["name"] == SERVICE:
                return s.get("endpoints")
        return None

    def start_haproxy_pair(self):
        try:
            b = self.spawn(self.server, "haproxy-b",
                           pinned(PROXY_CPUS, ["haproxy", "-f", f"{self.tmp}/haproxy-b.cfg", "-db"]))
            wait_listen(self.server.ns, SERVER_IP, HAPROXY_TLS_PORT, b, "haproxy B")
            a = self.spawn(self.client, "haproxy-a",
                           pinned(PROXY_CPUS, ["haproxy", "-f", f"{self.tmp}/haproxy-a.cfg", "-db"]))
            wait_listen(self.client.ns, "127.0.0.1", HAPROXY_PORT, a, "haproxy A")
            self.pairs["haproxy"] = {"a": a.pid, "b": b.pid, "port": HAPROXY_PORT}
        except (RuntimeError, AssertionError, subprocess.SubprocessError) as e:
            self.pairs["haproxy"] = {"fail": f"{e}: {self.tail('haproxy-a', 200)} {self.tail('haproxy-b', 200)}"}

    def haproxy_suite(self):
        """The suite and key share HAProxy B negotiates, from one s_client handshake."""
        t = self.tmp
        r = self.client.ns.exec(["sh", "-c", f"echo | timeout 5 openssl s_client -connect {SERVER_IP}:{HAPROXY_TLS_PORT} "
                                 f"-cert {t}/client.crt -key {t}/client.key -CAfile {t}/ca.pem -brief 2>&1"],
                                check=False)
        keep = [ln.strip() for ln in r.stdout.splitlines()
                if ln.startswith(("Protocol version", "Ciphersuite", "Server Temp Key", "Peer Temp Key"))]
        return "; ".join(keep) or "unknown"

    def close(self):
        self.stop_spawned()
        problems = self.close_hosts(self.hosts)
        if self.lan is not None:
            self.lan.close()
        return problems


# ---------------------------------------------------------------- measuring
def run_wrk(ns, port, seconds, out_path, close):
    argv = (["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", "--latency"] +
            (["-H", "Connection: close"] if close else []) + [f"http://127.0.0.1:{port}/"])
    return nsbench.run_load(ns, LOAD_CPUS, argv, seconds, out_path)


def handshake_counts(b, name):
    """Handshakes so far: {'full', 'resumed'} as proxy A (the TLS client)
    counts them, 'b_full', 'b_resumed' as B (the server) does, 'b_failed'
    for meshd's failed inbound handshakes; None when unreadable."""
    try:
        if name == "meshd":
            a, s = b.client.metrics(), b.server.metrics()
            key = 'tls_handshakes_total{{direction="{}",resumed="{}"}}'
            return {"full": a.get(key.format("outbound", "false"), 0), "resumed": a.get(key.format("outbound", "true"), 0),
                    "b_full": s.get(key.format("inbound", "false"), 0), "b_resumed": s.get(key.format("inbound", "true"), 0),
                    "b_failed": s.get('tls_handshake_failures_total{direction="inbound"}', 0)}
        ca = haproxy_ssl_counts(f"{b.tmp}/haproxy-a.sock", "be", "b")
        cb = haproxy_ssl_counts(f"{b.tmp}/haproxy-b.sock", "fe", "FRONTEND")
        if ca is None or cb is None:
            return None
        return {"full": ca[0], "resumed": ca[1], "b_full": cb[0], "b_resumed": cb[1], "b_failed": 0}
    except (OSError, AssertionError, RuntimeError, subprocess.SubprocessError, KeyError, ValueError):
        return None


def measure(b, name, mode, rnd):
    pair = b.pairs[name]
    close = mode == "close"
    seconds = CLOSE_DURATION if close else DURATION
    pids = [pair["a"], pair["b"]]
    for p in pids:
        if not os.path.exists(f"/proc/{p}"):
            return {"fail": "died: " + (b.tail(f"haproxy-{'a' if p == pair['a'] else 'b'}", 400)
                                        if name == "haproxy" else " | ".join(h.log()[-300:] for h in (b.client, b.server)))}
    hs0 = handshake_counts(b, name)
    if WARMUP:
        rc, text = run_wrk(b.client.ns, pair["port"], WARMUP, None, close)
        if rc != 0 or (why := nsbench.wrk_trouble(text, strict=False)):
            return {"fail": f"warm-up failed: {why if rc == 0 else text.strip()[-300:]}" + hs_note(hs0, b, name)}
        hs0 = handshake_counts(b, name)
    out = os.path.join(OUTDIR, "raw", f"mtls-{name}-{mode}-{rnd}.txt")
    (rc, text), use = nsbench.metered(pids, b.backend, seconds,
                                      lambda: run_wrk(b.client.ns, pair["port"], seconds, out, close))
    if use is None:
        return {"fail": "a proxy died during the run"}
    hs1 = handshake_counts(b, name)
    if rc != 0:
        return {"fail": f"wrk exit {rc}: {text.strip()[-300:]}"}
    if why := nsbench.wrk_trouble(text, strict=False):
        return {"fail": why + hs_note(hs0, b, name)}
    try:
        s = parse_wrk(out)
    except (OSError, ValueError) as e:
        return {"fail": f"wrk: {e}"}
    if s["requests"] == 0:
        return {"fail": "wrk completed 0 requests"}
    ticks, peak = use["ticks"], use["peak"]
    s.update({
        "cpu_us": sum(ticks) * 1e6 / HZ / s["requests"],
        "cpu_a_us": ticks[0] * 1e6 / HZ / s["requests"],
        "cpu_b_us": ticks[1] * 1e6 / HZ / s["requests"],
        "rss_a_kb": peak[pids[0]], "rss_b_kb": peak[pids[1]],
        "other_pct": use["other_pct"],
    })
    if hs0 is not None and hs1 is not None:
        for k in hs1:
            s[f"hs_{k}"] = hs1[k] - hs0[k]
    return s


def hs_note(hs0, b, name):
    """What the handshake counters and meshd's logs say about a failed run."""
    hs1 = handshake_counts(b, name)
    note = ""
    if hs0 is not None and hs1 is not None:
        d = {k: hs1[k] - hs0[k] for k in hs1}
        note = (f"; handshakes since the run began: A full {d['full']:.0f} resumed {d['resumed']:.0f}, "
                f"B full {d['b_full']:.0f} resumed {d['b_resumed']:.0f} failed {d['b_failed']:.0f}")
    if name == "meshd":
        for h in (b.client, b.server):
            tail = h.log().strip().splitlines()[-1:] if h.meshd is not None else []
            if tail:
                note += f"; meshd {h.role} log: {tail[0][-200:]}"
    return note


def check_meshd_tls(b):
    """The meshd row counts only if its hop is really mutual TLS: one
    request, then both sides must have counted a handshake."""
    rc, text = run_wrk(b.client.ns, MESHD_PORT, 1, None, False)
    if rc != 0 or "Requests/sec" not in text:
        return f"first requests failed: {text.strip()[-300:]}"
    out_ = b.client.metrics()
    in_ = b.server.metrics()
    o = sum(v for k, v in out_.items() if k.startswith('tls_handshakes_total{direction="outbound"'))
    i = sum(v for k, v in in_.items() if k.startswith('tls_handshakes_total{direction="inbound"'))
    if o < 1 or i < 1:
        return f"the hop is not mTLS (outbound handshakes {o:.0f}, inbound {i:.0f}): check discovery/identity"
    return None


# ---------------------------------------------------------------- report
def round_ratio(res, key, mode):
    return nsbench.round_ratio(res["meshd"][mode], res["haproxy"][mode], key)


def summarize(res, mode, key):
    return {name: med([s.get(key) for s in res[name][mode].values()]) for name in ("meshd", "haproxy")}


def render(b, res, fails, idle, meta):
    rows = []  # (metric, meshd, haproxy, ratio)

    def row(label, key, mode, fmt, ratio=True):
        v = summarize(res, mode, key)
        rows.append((label, fmt(v["meshd"]) if v["meshd"] is not None else "-",
                     fmt(v["haproxy"]) if v["haproxy"] is not None else "-",
                     fmt_ratio(round_ratio(res, key, mode)) if ratio else ""))

    def rng(name, mode):
        xs = [s["rps"] for s in res[name][mode].values()]
        return f"{min(xs):,.0f}..{max(xs):,.0f}" if xs else "-"

    row("keep-alive req/s (median)", "rps", "ka", lambda v: f"{v:,.0f}")
    rows.append(("  keep-alive req/s min..max", rng("meshd", "ka"), rng("haproxy", "ka"), ""))
    row("  keep-alive p50", "p50_us", "ka", fmt_us)
    row("  keep-alive p99", "p99_us", "ka", fmt_us)
    row("  CPU us/req, A+B", "cpu_us", "ka", lambda v: f"{v:.2f}")
    row("  CPU us/req, A (client side)", "cpu_a_us", "ka", lambda v: f"{v:.2f}")
    row("  CPU us/req, B (server side)", "cpu_b_us", "ka", lambda v: f"{v:.2f}")
    for side, label in (("a", "A"), ("b", "B")):
        iv = {n: idle.get(n, {}).get(side) for n in ("meshd", "haproxy")}
        rows.append((f"RSS {label} idle", fmt_mb(iv["meshd"]), fmt_mb(iv["haproxy"]),
                     fmt_ratio(iv["meshd"] / iv["haproxy"]) if iv["meshd"] and iv["haproxy"] else "n/a"))
        av = {n: idle.get(n, {}).get(f"{side}_after") for n in ("meshd", "haproxy")}
        rows.append((f"RSS {label} after the runs (no connection)", fmt_mb(av["meshd"]), fmt_mb(av["haproxy"]),
                     fmt_ratio(av["meshd"] / av["haproxy"]) if av["meshd"] and av["haproxy"] else "n/a"))
        for mode, what in (("ka", "keep-alive"), ("close", "Connection: close")):
            lv = {n: max([s[f"rss_{side}_kb"] for s in res[n][mode].values()], default=None)
                  for n in ("meshd", "haproxy")}
            rows.append((f"RSS {label} peak, {what}", fmt_mb(lv["meshd"]), fmt_mb(lv["haproxy"]),
                         fmt_ratio(lv["meshd"] / lv["haproxy"]) if lv["meshd"] and lv["haproxy"] else "n/a"))
    row("new connections/s (Connection: close)", "rps", "close", lambda v: f"{v:,.0f}")
    row("  Connection: close p50", "p50_us", "close", fmt_us)
    row("  Connection: close p99", "p99_us", "close", fmt_us)
    row("  CPU us/connection, A+B", "cpu_us", "close", lambda v: f"{v:.1f}")
    resumed = {}
    for name in ("meshd", "haproxy"):
        runs = [s for s in res[name]["close"].values() if "hs_full" in s]
        parts = []
        for who, f, r in (("A", "hs_full", "hs_resumed"), ("B", "hs_b_full", "hs_b_resumed")):
            full, rs = sum(s[f] for s in runs), sum(s[r] for s in runs)
            parts.append(f"{who} {rs:,.0f}/{full + rs:,.0f}" + (f" ({100 * rs / (full + rs):.0f}%)" if full + rs else ""))
        resumed[name] = ", ".join(parts) if runs else "n/a"
    rows.append(("  TLS sessions resumed/handshakes (A says, B says)", resumed["meshd"], resumed["haproxy"], ""))
    errs = {n: sum(s["errors"] for m in ("ka", "close") for s in res[n][m].values()) for n in ("meshd", "haproxy")}
    rows.append(("wrk errors (all runs)", str(errs["meshd"]), str(errs["haproxy"]), ""))
    other = max([s["other_pct"] for n in ("meshd", "haproxy") for m in ("ka", "close") for s in res[n][m].values()],
                default=0.0)

    rr = round_ratio(res, "rps", "ka")
    verdict = "n/a" if rr is None else ("MET" if rr >= TARGET_RPS else "MISSED")
    setup = (f"wrk -t1 -c{CONNS} --latency, keep-alive {DURATION}s and Connection: close {CLOSE_DURATION}s "
             f"(each after a {WARMUP}s warm-up); median of {REPEAT} rounds; ratios = median over rounds of "
             f"meshd/HAProxy within a round; {PINNING}")
    path = ("meshd: wrk -> meshd A --forward -> mTLS 1.3 -> meshd B inbound (iptables redirect) -> nginx; "
            "HAProxy: wrk -> haproxy A (tcp, ssl verify required, crt) -> TLS 1.3 -> haproxy B (bind ssl "
            "verify required) -> nginx; one thread each, two namespaces on one bridge")
    notes = [f"meshd binary: {meta.get('meshd_bin', '?')}; HAProxy's hop: {meta['haproxy_suite']}; meshd's hop: TLS13-CHACHA20-POLY1305 first, X25519 key "
             "share, P-256 certificates (wolfSSL, no AES-NI in the Debian build)",
             "CPU = utime+stime of both proxy processes (every thread), 10 ms ticks, over the measured run / "
             "wrk's request count; RSS = VmRSS, idle before any traffic, peak sampled every 200 ms under load",
             nsbench.load_note("wrk, backend and the two proxies", other, meta["background"])]

    head = ("two-hop", "meshd mTLS", "HAProxy TLS", "meshd/HAProxy")
    table_text, table_md = nsbench.table(head, rows)
    below = [f"{name} failed: {why}" for name, why in fails.items()] + notes  # the lines below the table
    target = (f"meshd two-hop mTLS req/s / HAProxy two-hop TLS req/s: {fmt_ratio(rr)}",
              f"(target >= {TARGET_RPS:.2f}x: {verdict})")  # bold in markdown
    text = [f"== two-hop mTLS: {setup}", f"   {path}"] + table_text + [f"  {x}" for x in below]
    text.append(f"  {target[0]} {target[1]}")
    md = ["### Two hops with mutual TLS (meshd) vs TLS (HAProxy)", "", setup + ".  ", path + ".", ""] + table_md
    md += [""] + [f"- {x}" for x in below] + [f"- **{target[0]}** {target[1]}", ""]
    return "\n".join(text), "\n".join(md)


# ---------------------------------------------------------------- main
def main():
    why = nsbench.preflight(("wrk", "haproxy", "nginx", "openssl", "taskset", "ss", "ip", "sysctl"),
                            ("meshd", "meshd-controller", "meshd-ctl", "meshd-init"))
    if why:
        print(f"== two-hop mTLS: skipped: {why}")
        return 1
    meta, tmp = nsbench.begin("mtls")
    b = Bench(tmp)
    res = {n: {"ka": {}, "close": {}} for n in ("meshd", "haproxy")}
    fails, idle, problems = {}, {}, []
    started = time.monotonic()
    with b.guarded(log, problems):
        log(f"setting up the namespaces, the controller, both pairs ({PINNING})")
        b.setup()
        time.sleep(1)  # settle before the idle readings
        for name, pair in b.pairs.items():
            if "fail" in pair:
                fails[name] = pair["fail"]
                continue
            idle[name] = {"a": rss_kb(pair["a"]), "b": rss_kb(pair["b"])}
        meta["haproxy_suite"] = b.haproxy_suite() if "haproxy" not in fails else "n/a"
        if "meshd" not in fails and (why := check_meshd_tls(b)):
            fails["meshd"] = why
        for rnd in range(1, REPEAT + 1):
            for mode in ("ka", "close"):
                for name in ("meshd", "haproxy"):
                    what = f"{name} {'keep-alive' if mode == 'ka' else 'Connection: close'}"
                    s = nsbench.attempt(log, fails, name, f"round {rnd}/{REPEAT}: {what}", name,
                                        lambda: measure(b, name, mode, rnd))
                    if s is None:
                        continue
                    res[name][mode][rnd] = s
                    extra = (f", resumed: A {s['hs_resumed']:.0f}/{s['hs_full'] + s['hs_resumed']:.0f}, "
                             f"B {s['hs_b_resumed']:.0f}/{s['hs_b_full'] + s['hs_b_resumed']:.0f}"
                             if "hs_full" in s and mode == "close" else "")
                    log(f"  {s['rps']:,.0f} req/s, p99 {fmt_us(s['p99_us'])}, {s['cpu_us']:.2f} us CPU/req{extra}")
        time.sleep(1)  # every connection closed: what the proxies keep
        for name, pair in b.pairs.items():
            if name in idle and name not in fails:
                idle[name].update({"a_after": rss_kb(pair["a"]), "b_after": rss_kb(pair["b"])})
    if "haproxy_suite" not in meta:
        meta["haproxy_suite"] = "n/a"
    for name in ("meshd", "haproxy"):
        if not res[name]["ka"] and name not in fails:
            fails[name] = problems[0] if problems else "no samples"
    text, md = render(b, res, fails, idle, meta)
    nsbench.publish("mtls", "mtls.py", text, md,
                    {"results": res, "idle_rss_kb": idle, "fails": fails, "meta": meta, "problems": problems},
                    problems, started)
    return 0 if not fails and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
