#!/usr/bin/python3
"""One hop of HTTP: meshd's HTTP-aware outbound path side by side with
HAProxy (mode http) and nginx (proxy_pass), and HTTP/2 through meshd.

  direct:   wrk -> nginx backend (server host, port 8081)
  meshd:    wrk -> SERVER:8080, redirected by meshd-init's rules to meshd's
            outbound listener (no controller: the destination is relayed
            as dialled, and HTTP/1 is tapped: request_total etc.) -> backend
  HAProxy:  wrk -> haproxy (mode http, 127.0.0.1:18002) -> backend :8081
  nginx:    wrk -> nginx (proxy_pass, upstream keepalive, 127.0.0.1:18003)
            -> backend :8081
  h2:       h2load -c1 -m100 -> backend (listen ... http2, h2c with prior
            knowledge) direct (:8091) and through meshd's outbound (:8090),
            every stream followed by the h2 tap

Run by bench/run.sh (BENCH_ONLY=http, and in the full run), or alone as
root: MESHD_BUILD=build /usr/bin/python3 bench/http_hop.py. Two network
namespaces on one veth pair: a client host with meshd-init's rules (ports
8081 and 8091 left out of the redirect, so the direct rows and the explicit
proxies' upstream connections pass untouched) and a server host with the
backend (nginx, 1 process) on both. Every proxy runs in the client host
with one thread (meshd --threads 1, HAProxy nbthread 1, nginx 1 worker
plus its master), on the same CPUs (BENCH_PIN / BENCH_*_CPUS as run.sh).

Each round runs wrk (-t1 -c50 --latency, keep-alive, GET /) through every
row in turn; the table gives medians over rounds and meshd/peer ratios as
the median of the ratio within each round. The meshd row counts only if
meshd really parsed the requests: its request_total{direction="outbound"}
must have grown by about wrk's request count during the run (and it must
have detected http1), else the row fails and says so. The h2 rows need
h2load (Debian: nghttp2-client); meshd relays h2 as it comes and follows
every stream (HPACK decoded, per-stream golden metrics): its
protocol_detect_total{protocol="h2"} must grow, and request_total by about
h2load's request count.

Knobs (environment): BENCH_HTTP_DURATION (default BENCH_DURATION, else 8;
seconds per measured run), BENCH_HTTP_H2_DURATION (default the same),
BENCH_WARMUP=1, BENCH_REPEAT=3, BENCH_CONNS=50, BENCH_PIN=none|split,
BENCH_LOAD_CPUS / BENCH_PROXY_CPUS, MESHD_BIN, BENCH_HTTP_LOG_LEVEL=warn,
BENCH_MESHD_EXTRA (extra meshd flags, as run.sh).
Writes build/bench/http.md, http.json and raw/http-*.txt. Every process
started here is stopped by its pid and every namespace deleted, also on
failure or interrupt. (Not named http.py: in bench/ that would shadow the
standard library's http package for every script run from here.)
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree (before nsbench, which is one)

import nsbench  # noqa: E402  (first: it puts tests/e2e, where mesh.py is, on the path)
import mesh  # noqa: E402  (Netns/Host, link(), binary(), stop(), wait_for())
from nsbench import HZ, OUTDIR, fmt_ratio, med, pinned, rss_kb, wait_listen  # noqa: E402
from report import fmt_us, parse_h2load, parse_wrk  # noqa: E402

DURATION = nsbench.env_int("http", "BENCH_HTTP_DURATION", nsbench.env_int("http", "BENCH_DURATION", 8, 1, 600), 1, 600)
H2_DURATION = nsbench.env_int("http", "BENCH_HTTP_H2_DURATION", DURATION, 1, 600)
WARMUP = nsbench.env_int("http", "BENCH_WARMUP", 1, 0, 60)
REPEAT = nsbench.env_int("http", "BENCH_REPEAT", 3, 1, 20)
CONNS = nsbench.env_int("http", "BENCH_CONNS", 50, 1, 4000)
H2_STREAMS = 100
# The issue's targets, meshd against HAProxy mode http in the same run.
TARGET_RPS = 1.3  # meshd req/s >= 1.3x HAProxy's
TARGET_CPU = 0.6  # meshd CPU per request <= 0.6x HAProxy's

CLIENT_IP, SERVER_IP = "10.79.0.1", "10.79.0.2"
CLIENT_IP6, SERVER_IP6 = "fd79::1", "fd79::2"  # mesh.link() wants both families
MESHED_PORT, DIRECT_PORT = 8080, 8081  # backend HTTP/1.1: redirected to meshd / skipped by the rules
H2_MESHED_PORT, H2_DIRECT_PORT = 8090, 8091  # backend h2c, the same two ways
HAPROXY_PORT, NGINX_PORT = 18002, 18003  # the explicit proxies, client host loopback
OUTBOUND = "127.0.0.1:4140"  # meshd's outbound listener (meshd-init's default redirect target)
ADMIN = "127.0.0.1:4191"
ROWS = ("direct", "meshd", "haproxy", "nginx")
PEERS = ("haproxy", "nginx")
LABEL = {"direct": "direct", "meshd": "meshd outbound (tapped)", "haproxy": "HAProxy http",
         "nginx": "nginx proxy_pass"}


def log(msg):
    print(f"http: {msg}", file=sys.stderr, flush=True)


LOAD_CPUS, PROXY_CPUS, PINNING = nsbench.cpu_lists("proxy", "each proxy", "proxy")


def children_of(pid):
    """Pids whose parent is pid (nginx's worker under its master)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


# ---------------------------------------------------------------- configs
def backend_config(d):
    """The backend: HTTP/1.1 on 8080/8081, h2c (prior knowledge) on
    8090/8091; returns the nginx command."""
    return nsbench.nginx_backend(d, "backend", [
        [f"{SERVER_IP}:{p} backlog=4096" for p in (MESHED_PORT, DIRECT_PORT)],
        [f"{SERVER_IP}:{p} http2 backlog=4096" for p in (H2_MESHED_PORT, H2_DIRECT_PORT)]])


def haproxy_config(d):
    with open(f"{d}/haproxy.cfg", "w") as f:
        f.write(f"""global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:{HAPROXY_PORT}
    default_backend be
backend be
    server s1 {SERVER_IP}:{DIRECT_PORT}
""")


def nginx_proxy_config(d):
    """nginx proxy_pass to the backend's direct port, upstream keepalive;
    returns the nginx command."""
    return nsbench.nginx_config(d, "proxy", f"""    upstream be {{
        server {SERVER_IP}:{DIRECT_PORT};
        keepalive {max(CONNS, 32)};
        keepalive_requests 100000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{NGINX_PORT} backlog=4096;
        location / {{
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
""")


# ---------------------------------------------------------------- the two hosts
class Bench(nsbench.Bench):
    def __init__(self, tmp):
        super().__init__(tmp)
        self.client = self.server = None
        self.workers = []  # nginx proxy workers: stopped by pid if their master left them behind
        self.rows = {}  # name -> {"pids": [...], "url": ...} or {"fail": reason}
        self.backend = None

    def setup(self):
        haproxy_config(self.tmp)
        self.client = mesh.Host("hclient", CLIENT_IP, CLIENT_IP6)
        self.server = mesh.Host("hserver", SERVER_IP, SERVER_IP6)
        mesh.link(self.client, self.server)
        for h in (self.client, self.server):
            nsbench.sysctls(h.ns)
        # The redirect in the client host; the direct ports pass untouched.
        skip = f"{DIRECT_PORT},{H2_DIRECT_PORT}"
        self.client.install_rules(extra=["--skip-outbound-ports", skip])

        backend = self.spawn(self.server, "backend", pinned(LOAD_CPUS, backend_config(self.tmp)))
        for port in (MESHED_PORT, DIRECT_PORT, H2_MESHED_PORT, H2_DIRECT_PORT):
            wait_listen(self.server.ns, SERVER_IP, port, backend, "the backend nginx")
        self.backend = backend.pid

        self.rows["direct"] = {"pids": [], "url": f"http://{SERVER_IP}:{DIRECT_PORT}/"}
        self.start_meshd()
        self.start_haproxy()
        self.start_nginx()

    def start_meshd(self):
        meshd = nsbench.meshd_bin()
        argv = [meshd, "--log-level", os.environ.get("BENCH_HTTP_LOG_LEVEL", "warn"), "--threads", "1",
                "--outbound-listen", OUTBOUND, "--inbound-listen", "off", "--admin", ADMIN, "--drain-timeout", "2s",
                *shlex.split(os.environ.get("BENCH_MESHD_EXTRA", ""))]
        try:
            self.client.start_meshd(argv=pinned(PROXY_CPUS, argv))
            self.rows["meshd"] = {"pids": [self.client.meshd.pid], "url": f"http://{SERVER_IP}:{MESHED_PORT}/"}
        except (RuntimeError, AssertionError, subprocess.SubprocessError) as e:
            self.rows["meshd"] = {"fail": f"{e} {self.meshd_log()}".strip()}

    def meshd_log(self, n=300):
        if self.client is None or self.client.meshd is None:
            return ""
        return self.client.log()[-n:].replace("\n", " ")

    def start_haproxy(self):
        try:
            p = self.spawn(self.client, "haproxy", pinned(PROXY_CPUS, ["haproxy", "-f", f"{self.tmp}/haproxy.cfg",
                                                                       "-db"]))
            wait_listen(self.client.ns, "127.0.0.1", HAPROXY_PORT, p, "haproxy")
            self.rows["haproxy"] = {"pids": [p.pid], "url": f"http://127.0.0.1:{HAPROXY_PORT}/"}
        except (RuntimeError, AssertionError, subprocess.SubprocessError) as e:
            self.rows["haproxy"] = {"fail": f"{e}: {self.tail('haproxy')}"}

    def start_nginx(self):
        try:
            p = self.spawn(self.client, "nginx", pinned(PROXY_CPUS, nginx_proxy_config(self.tmp)))
            wait_listen(self.client.ns, "127.0.0.1", NGINX_PORT, p, "the nginx proxy")
            workers = mesh.wait_for(lambda: children_of(p.pid), 10, "the nginx proxy's worker")
            self.workers += workers
            # The master counts as nginx's, as in run.sh: it is part of what runs.
            self.rows["nginx"] = {"pids": [p.pid, *workers], "url": f"http://127.0.0.1:{NGINX_PORT}/"}
        except (RuntimeError, AssertionError, subprocess.SubprocessError) as e:
            self.rows["nginx"] = {"fail": f"{e}: {self.tail('nginx')}"}

    def metrics(self):
        """meshd's /metrics as {'name{labels}': value}, or None."""
        try:
            return self.client.metrics(ADMIN)
        except (AssertionError, RuntimeError, subprocess.SubprocessError, ValueError, KeyError):
            return None

    def close(self):
        self.stop_spawned()
        for pid in self.workers:  # only if the master died without them
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.close_hosts((self.client, self.server))


def metric_sum(m, name, **labels):
    """Sum of every sample of name whose labels include the given ones."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in m.items() if k.startswith(name + "{") and all(w in k for w in want))


# ---------------------------------------------------------------- measuring
def run_load(b, argv, seconds, out_path):
    return nsbench.run_load(b.client.ns, LOAD_CPUS, argv, seconds, out_path)


def wrk_argv(url, seconds):
    return ["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", "--latency", url]


def h2load_argv(url, seconds):
    return ["h2load", "-c1", "-t1", f"-m{H2_STREAMS}", "-D", str(seconds), url]


def measure(b, name, proto, rnd):
    """One measured run of one row (proto: "h1" with wrk, "h2" with h2load)."""
    row = b.rows[name] if proto == "h1" else b.h2rows[name]
    pids = row["pids"]
    for p in pids:
        if not os.path.exists(f"/proc/{p}"):
            return {"fail": f"died: {b.meshd_log() if name == 'meshd' else b.tail(name)}"}
    seconds = DURATION if proto == "h1" else H2_DURATION
    argv = wrk_argv if proto == "h1" else h2load_argv
    if WARMUP:
        rc, text = run_load(b, argv(row["url"], WARMUP), WARMUP, None)
        why = (nsbench.wrk_trouble(text, strict=True) if proto == "h1" else None) if rc == 0 else text.strip()[-300:]
        if why:
            return {"fail": f"warm-up failed: {why}"}
    out = os.path.join(OUTDIR, "raw", f"http-{proto}-{name}-{rnd}.txt")
    m0 = b.metrics() if name == "meshd" else None
    (rc, text), use = nsbench.metered(pids, b.backend, seconds,
                                      lambda: run_load(b, argv(row["url"], seconds), seconds, out))
    if use is None:
        return {"fail": f"died during the run: {b.meshd_log() if name == 'meshd' else b.tail(name)}"}
    m1 = b.metrics() if name == "meshd" else None
    if rc != 0:
        return {"fail": f"{'wrk' if proto == 'h1' else 'h2load'} exit {rc}: {text.strip()[-300:]}"}
    try:
        if proto == "h1":
            if why := nsbench.wrk_trouble(text, strict=True):
                return {"fail": why}
            s = parse_wrk(out)
        else:
            s = parse_h2load(text)
            if s["failed"] > s["requests"] / 100:
                return {"fail": f"h2load: {s['failed']} requests failed, {s['requests']} succeeded"}
    except (OSError, ValueError) as e:
        return {"fail": str(e)}
    if s["requests"] == 0:
        return {"fail": "0 requests completed"}
    if name == "meshd":
        if m0 is None or m1 is None:
            return {"fail": "cannot read meshd's /metrics"}
        # Not a plain TCP relay: meshd parsed (about) every request the
        # load tool completed (HTTP/1 requests, h2 streams); up to one in
        # flight per connection (h2: per stream) when the tool stops.
        in_flight = CONNS if proto == "h1" else H2_STREAMS
        req = metric_sum(m1, "request_total", direction="outbound") - metric_sum(
            m0, "request_total", direction="outbound")
        rsp = metric_sum(m1, "response_total", direction="outbound") - metric_sum(
            m0, "response_total", direction="outbound")
        s.update({"tapped_requests": req, "tapped_responses": rsp})
        if not s["requests"] * 0.99 <= req <= s["requests"] * 1.01 + in_flight:
            return {"fail": f"meshd did not tap this run: request_total{{direction=\"outbound\"}} grew by "
                            f"{req:.0f}, {'wrk' if proto == 'h1' else 'h2load'} completed {s['requests']} requests"}
        if proto == "h2":
            h2 = metric_sum(m1, "protocol_detect_total", direction="outbound", protocol="h2") - metric_sum(
                m0, "protocol_detect_total", direction="outbound", protocol="h2")
            s["h2_connections"] = h2
            if h2 < 1:
                return {"fail": "the h2 connection did not pass meshd (protocol_detect_total{protocol=\"h2\"} "
                                "did not grow)"}
    s["other_pct"] = use["other_pct"]
    if pids:
        s["cpu_us"] = sum(use["ticks"]) * 1e6 / HZ / s["requests"]
        s["rss_peak_kb"] = sum(use["peak"].values())
    return s


def check_meshd_tap(b):
    """Before the rounds: one short run through meshd must be detected as
    http1 and counted as requests, else the row would measure a TCP relay."""
    rc, text = run_load(b, ["wrk", "-t1", "-c2", "-d1s", b.rows["meshd"]["url"]], 1, None)
    if rc != 0 or "Requests/sec" not in text:
        return f"first requests failed: {text.strip()[-300:]}"
    m = b.metrics()
    if m is None:
        return "cannot read meshd's /metrics"
    http1 = metric_sum(m, "protocol_detect_total", direction="outbound", protocol="http1")
    req = metric_sum(m, "request_total", direction="outbound")
    if http1 < 1 or req < 1:
        return (f"meshd did not tap HTTP/1 (protocol_detect_total{{protocol=\"http1\"}} {http1:.0f}, "
                f"request_total {req:.0f}): is --http on and the redirect in place?")
    return None


# ---------------------------------------------------------------- report
def ratio(res, a, b_, key):
    """Median over rounds of a/b within a round."""
    return nsbench.round_ratio(res.get(a, {}), res.get(b_, {}), key)


def fmt_mb(kb):
    return "-" if not kb else f"{kb / 1024:.1f} MB"  # not report's: no reading (0) shows as "-" too


def verdict(v, target, higher):
    if v is None:
        return "n/a"
    return "PASS" if (v >= target if higher else v <= target) else "MISS"


def render(res, h2res, fails, h2fails, idle, meta):
    def col(name, key, fmt):
        v = med([s.get(key) for s in res.get(name, {}).values()])
        return "-" if v is None else fmt(v)

    def rng(name):
        xs = [s["rps"] for s in res.get(name, {}).values()]
        return f"{min(xs):,.0f}..{max(xs):,.0f}" if xs else "-"

    def peak(name):
        return fmt_mb(max([s.get("rss_peak_kb", 0) for s in res.get(name, {}).values()], default=0))

    rows = []

    def line(label, cells, r_hap="", r_ngx=""):
        rows.append((label, *cells, r_hap, r_ngx))

    rr = {p: ratio(res, "meshd", p, "rps") for p in PEERS}
    cr = {p: ratio(res, "meshd", p, "cpu_us") for p in PEERS}
    line("req/s (median)", [col(n, "rps", lambda v: f"{v:,.0f}") for n in ROWS], fmt_ratio(rr["haproxy"]),
         fmt_ratio(rr["nginx"]))
    line("  req/s min..max", [rng(n) for n in ROWS])
    for key, label in (("p50_us", "  p50"), ("p99_us", "  p99")):
        line(label, [col(n, key, fmt_us) for n in ROWS], fmt_ratio(ratio(res, "meshd", "haproxy", key)),
             fmt_ratio(ratio(res, "meshd", "nginx", key)))
    line("CPU us/req (proxy)", [col(n, "cpu_us", lambda v: f"{v:.2f}") for n in ROWS], fmt_ratio(cr["haproxy"]),
         fmt_ratio(cr["nginx"]))
    iv = {n: idle.get(n) for n in ROWS}
    line("RSS idle", [fmt_mb(iv[n]) for n in ROWS],
         *[fmt_ratio(iv["meshd"] / iv[p]) if iv["meshd"] and iv[p] else "n/a" for p in PEERS])
    pk = {n: max([s.get("rss_peak_kb", 0) for s in res.get(n, {}).values()], default=0) for n in ROWS}
    line("RSS peak under load", [peak(n) for n in ROWS],
         *[fmt_ratio(pk["meshd"] / pk[p]) if pk["meshd"] and pk[p] else "n/a" for p in PEERS])
    line("wrk errors (all runs)", [str(sum(s["errors"] for s in res.get(n, {}).values())) if res.get(n) else "-"
                                   for n in ROWS])
    tap = [s for s in res.get("meshd", {}).values() if "tapped_requests" in s]
    line("requests meshd counted / wrk's",
         ["", f"{sum(s['tapped_requests'] for s in tap):,.0f} / {sum(s['requests'] for s in tap):,}" if tap else "-",
          "", ""])

    head = ("HTTP/1.1 one hop", *(LABEL[n] for n in ROWS), "meshd/HAProxy", "meshd/nginx")
    text1, md1 = nsbench.table(head, rows)

    targets = [f"meshd/HAProxy req/s: {fmt_ratio(rr['haproxy'])} (target >= {TARGET_RPS:.2f}x: "
               f"{verdict(rr['haproxy'], TARGET_RPS, True)})",
               f"meshd/HAProxy CPU per request: {fmt_ratio(cr['haproxy'])} (target <= {TARGET_CPU:.2f}x: "
               f"{verdict(cr['haproxy'], TARGET_CPU, False)})"]

    h2rows = []
    if meta.get("h2_skipped"):
        h2text, h2md = [f"h2: skipped: {meta['h2_skipped']}"], [f"h2: skipped: {meta['h2_skipped']}"]
    else:
        def h2col(name, key, fmt):
            v = med([s.get(key) for s in h2res.get(name, {}).values()])
            return "-" if v is None else fmt(v)

        h2r = ratio(h2res, "meshd", "direct", "rps")
        h2rows.append(("req/s (median)", h2col("direct", "rps", lambda v: f"{v:,.0f}"),
                       h2col("meshd", "rps", lambda v: f"{v:,.0f}"), fmt_ratio(h2r)))
        h2rows.append(("  mean request time", h2col("direct", "mean_us", fmt_us), h2col("meshd", "mean_us", fmt_us),
                       fmt_ratio(ratio(h2res, "meshd", "direct", "mean_us"))))
        h2rows.append(("  max request time", h2col("direct", "max_us", fmt_us), h2col("meshd", "max_us", fmt_us), ""))
        h2rows.append(("CPU us/req (proxy)", "-", h2col("meshd", "cpu_us", lambda v: f"{v:.2f}"), ""))
        h2rows.append(("RSS peak under load", "-",
                       fmt_mb(max([s.get("rss_peak_kb", 0) for s in h2res.get("meshd", {}).values()], default=0)),
                       ""))
        h2head = (f"h2, 1 connection, {H2_STREAMS} streams", "direct",
                  "meshd outbound: relayed, every stream tapped", "meshd/direct")
        h2text, h2md = nsbench.table(h2head, h2rows)

    other = max([s["other_pct"] for rs in (res, h2res) for n in rs for s in rs[n].values()], default=0.0)
    warm = f" after a {WARMUP}s warm-up" if WARMUP else ""
    setup = (f"wrk -t1 -c{CONNS} --latency, keep-alive GET /, {DURATION}s{warm}; median of "
             f"{REPEAT} rounds; ratios = median over rounds of meshd/peer within a round; {PINNING}")
    path = (f"client host: wrk and the proxies (one thread each: meshd --threads 1 on its outbound listener behind "
            f"meshd-init's redirect, HAProxy 'mode http' nbthread 1, nginx proxy_pass with upstream keepalive, 1 "
            f"worker + master); server host (veth): nginx backend, 1 process, 200 \"ok\\n\"")
    notes = [f"meshd binary: {meta.get('meshd_bin', '?')}; versions: {meta.get('versions', '?')}",
             "CPU = utime+stime of the proxy's processes (every thread; nginx: master + worker), 10 ms ticks, over "
             "the measured run / requests completed; RSS = VmRSS (nginx: both processes), idle before any traffic, "
             "peak sampled every 200 ms under load",
             "the meshd row counts only when meshd's request_total{direction=\"outbound\"} grew by wrk's request "
             "count during the run (it parsed every request: not a TCP relay)",
             f"h2: h2load -c1 -m{H2_STREAMS} -D {H2_DURATION}s{' (after a warm-up run)' if WARMUP else ''} against the "
             "backend's h2c (prior knowledge) port; meshd detects the h2 preface and relays the bytes as they are",
             nsbench.load_note("the load tool, backend and proxy", other, meta["background"])]
    fail_lines = [f"{n} failed: {why}" for n, why in fails.items()]
    fail_lines += [f"h2 {n} failed: {why}" for n, why in h2fails.items()]

    text = [f"== one-hop HTTP: {setup}", f"   {path}"] + text1 + [f"  {t}" for t in targets] + [""] + h2text
    text += [f"  {x}" for x in fail_lines + notes]
    md = ["### One hop of HTTP: meshd outbound (tapped) vs HAProxy http vs nginx proxy_pass", "",
          setup + ".  ", path + ".", ""] + md1 + [""] + [f"- **{t}**" for t in targets] + [""] + h2md + [""]
    md += [f"- {x}" for x in fail_lines + notes] + [""]
    return "\n".join(text), "\n".join(md)


# ---------------------------------------------------------------- main
def have(tool):
    return shutil.which(tool) is not None


def versions():
    def first(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"

    ng = first(["nginx", "-v"]).rsplit("/", 1)[-1]
    ha = first(["haproxy", "-v"]).split()[2:3]
    h2 = first(["h2load", "--version"]).rsplit("/", 1)[-1] if have("h2load") else "none"
    wrk = first(["wrk", "-v"]).split()
    return f"nginx {ng}, HAProxy {ha[0] if ha else '?'}, wrk {wrk[1] if len(wrk) > 1 else '?'}, h2load {h2}"


def run_rounds(b, proto, names, res, fails):
    """REPEAT rounds through each row of names that has not failed (proto
    "h1": wrk, "h2": h2load): samples into res[name][round], failures into
    fails."""
    tag = "" if proto == "h1" else "h2 "
    for rnd in range(1, REPEAT + 1):
        for name in names:
            s = nsbench.attempt(log, fails, name, f"{tag}round {rnd}/{REPEAT}: {name}", f"{tag}{name}",
                                lambda: measure(b, name, proto, rnd))
            if s is None:
                continue
            res[name][rnd] = s
            latency = f"p99 {fmt_us(s['p99_us'])}" if proto == "h1" else f"mean {fmt_us(s['mean_us'])}"
            cpu = f", {s['cpu_us']:.2f} us CPU/req" if "cpu_us" in s else ""
            log(f"  {s['rps']:,.0f} req/s, {latency}{cpu}")


def main():
    # meshd itself is not looked for in the build when run.sh names another binary.
    why = nsbench.preflight(("wrk", "haproxy", "nginx", "taskset", "ss", "ip", "sysctl", "iptables-restore"),
                            ("meshd-init",) if os.environ.get("MESHD_BIN") else ("meshd", "meshd-init"))
    if why:
        print(f"== one-hop HTTP: skipped: {why}")
        return 1
    meta, tmp = nsbench.begin("http")
    meta["versions"] = versions()
    if not have("h2load"):
        meta["h2_skipped"] = "h2load not found (Debian package nghttp2-client: make bench-deps)"
    b = Bench(tmp)
    res, h2res = {n: {} for n in ROWS}, {n: {} for n in ("direct", "meshd")}
    fails, h2fails, idle, problems = {}, {}, {}, []
    started = time.monotonic()
    with b.guarded(log, problems):
        log(f"setting up the namespaces, the backend and the proxies ({PINNING})")
        b.setup()
        time.sleep(1)  # settle before the idle readings
        for name, row in b.rows.items():
            if "fail" in row:
                fails[name] = row["fail"]
            elif row["pids"]:
                idle[name] = sum(rss_kb(p) for p in row["pids"])
        if "meshd" not in fails and (why := check_meshd_tap(b)):
            fails["meshd"] = why
        run_rounds(b, "h1", ROWS, res, fails)
        if not meta.get("h2_skipped"):
            b.h2rows = {"direct": {"pids": [], "url": f"http://{SERVER_IP}:{H2_DIRECT_PORT}/"}}
            if "meshd" in b.rows and "fail" not in b.rows["meshd"]:
                b.h2rows["meshd"] = {"pids": b.rows["meshd"]["pids"], "url": f"http://{SERVER_IP}:{H2_MESHED_PORT}/"}
            else:
                h2fails["meshd"] = "meshd did not start"
            run_rounds(b, "h2", b.h2rows, h2res, h2fails)
    for name in ROWS:
        if not res[name] and name not in fails:
            fails[name] = problems[0] if problems else "no samples"
    text, md = render(res, h2res, fails, h2fails, idle, meta)
    nsbench.publish("http", "http_hop.py", text, md,
                    {"h1": res, "h2": h2res, "idle_rss_kb": idle, "fails": fails, "h2_fails": h2fails, "meta": meta,
                     "problems": problems, "targets": {"rps_vs_haproxy": TARGET_RPS, "cpu_vs_haproxy": TARGET_CPU}},
                    problems, started)
    return 0 if not fails and not h2fails and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
