"""What the namespaced benchmarks, bench/mtls.py and bench/http_hop.py,
share: the build and results folders, knobs, CPU placement, /proc readings,
the hosts' settings, wrk runs, the tables and the end of a run.

Importing it puts tests/e2e on sys.path (for mesh.py); the scripts set
sys.dont_write_bytecode before importing it, so that no __pycache__ lands in
the source tree. (No file in bench/ may take a standard library module's
name: it would shadow that module for every script run from here.)
"""
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("MESHD_BUILD", os.path.join(ROOT, "build"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import mesh  # noqa: E402  (Netns/Host/Lan, binary(), stop(), wait_for())

OUTDIR = os.path.join(os.environ["MESHD_BUILD"], "bench")
HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


# ---------------------------------------------------------------- knobs and placement
# Both read their knobs alike; prog names the script in the error.
def env_int(prog, name, default, lo, hi):
    raw = os.environ.get(name, str(default))
    try:
        v = int(raw)
    except ValueError:
        sys.exit(f"{prog}: {name} must be an integer, not '{raw}'")
    if not lo <= v <= hi:
        sys.exit(f"{prog}: {name} must be {lo}..{hi}")
    return v


# Both place load and proxies as bench/run.sh does; only the words for the proxies differ.
def cpu_lists(proxies, split, sharing):
    """(load cpus, proxy cpus, description): the description names the
    proxies as proxies (pinned by BENCH_LOAD_CPUS / BENCH_PROXY_CPUS), split
    (BENCH_PIN=split) or sharing (no pinning)."""
    load, proxy = os.environ.get("BENCH_LOAD_CPUS"), os.environ.get("BENCH_PROXY_CPUS")
    every = f"0-{NCPU - 1}"
    if load or proxy:
        return load or every, proxy or every, f"wrk+backend on CPU {load or every}, {proxies} on CPU {proxy or every}"
    if os.environ.get("BENCH_PIN", "none") == "split" and NCPU >= 2:
        return "0", "1", f"wrk+backend on CPU 0, {split} on CPU 1"
    return every, every, f"no pinning: wrk, backend and {sharing} share CPUs {every}"


# Every process a benchmark starts runs on the CPUs cpu_lists() gave its role.
def pinned(cpus, argv):
    return ["taskset", "-c", cpus] + argv  # taskset execs: the pid stays the command's


# The meshd under test: run.sh's MESHD_BIN, else the build's.
def meshd_bin():
    return os.environ.get("MESHD_BIN") or mesh.binary("meshd")


# Both skip with a reason, not a traceback, when the machine cannot run them.
def preflight(tools, binaries):
    """Why this machine cannot run the benchmark (root, tools on PATH, meshd
    binaries in the build), or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"{tool} not found (make bench-deps)"
    for name in binaries:
        try:
            mesh.binary(name)
        except RuntimeError as e:
            return str(e)
    return None


# ---------------------------------------------------------------- /proc readings
# CPU per request is counted from these ticks, the same way for every proxy.
def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, every thread


# Memory is compared as VmRSS, 0 when the process is gone.
def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# How busy the whole machine was, to tell what else ran beside the benchmark.
def busy_ticks():
    """user+nice+system and steal over every CPU."""
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return int(v[0]) + int(v[1]) + int(v[2]), int(v[7])


# The load tool's CPU: a finished child of this process, so not "other load".
def children_ticks():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((r.ru_utime + r.ru_stime) * HZ)


# Reported with every table: a busy machine makes the figures noisy.
def background_pct():
    s0, _ = busy_ticks()
    time.sleep(1)
    s1, _ = busy_ticks()
    return min(100.0, 100.0 * (s1 - s0) / (HZ * NCPU))


# The peak memory under load, which one reading after the run would miss.
class RssSampler:
    """Peak VmRSS of each pid, sampled every 200 ms while a run lasts."""

    def __init__(self, pids):
        self.pids, self.peak = pids, {p: rss_kb(p) for p in pids}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.done.wait(0.2):
            for p in self.pids:
                self.peak[p] = max(self.peak[p], rss_kb(p))

    def stop(self):
        self.done.set()
        self.thread.join()
        return self.peak


# Every measured run is accounted the same way, whichever proxy it goes through.
def metered(pids, backend, seconds, run):
    """(run()'s result, usage): usage is {"ticks": CPU ticks of each pid,
    "peak": {pid: peak VmRSS kB}, "other_pct": % of the machine that went to
    anything but those pids, the backend pid and our children}, or None when
    one of pids is gone after the run."""
    t0 = [proc_ticks(p) for p in pids]
    bk0, ch0, (s0, st0) = proc_ticks(backend), children_ticks(), busy_ticks()
    sampler = RssSampler(pids)
    result = run()
    peak = sampler.stop()
    try:
        t1 = [proc_ticks(p) for p in pids]
    except OSError:
        return result, None
    bk1, ch1, (s1, st1) = proc_ticks(backend), children_ticks(), busy_ticks()
    ticks = [y - x for x, y in zip(t0, t1)]
    other = (s1 - s0) - sum(ticks) - (bk1 - bk0) - (ch1 - ch0)
    other_pct = 100.0 * (max(other, 0) + st1 - st0) / (HZ * NCPU * seconds)
    return result, {"ticks": ticks, "peak": peak, "other_pct": other_pct}


# ---------------------------------------------------------------- the hosts
# Both wait for a server by its listening socket, and fail at once if it exits.
def wait_listen(ns, addr, port, proc, what, timeout=10):
    def ok():
        if proc.poll() is not None:
            return True
        r = ns.exec(["ss", "-Hltn", f"src {addr} and sport = :{port}"], check=False, timeout=10)
        return bool(r.stdout.strip())

    mesh.wait_for(ok, timeout, what)
    if proc.poll() is not None:
        raise RuntimeError(f"{what} exited {proc.returncode}")


# Many short connections per second must not run out of ports or conntrack entries.
def sysctls(ns):
    # The Connection: close runs open a few thousand connections a second;
    # the nat table meshd-init loads turns conntrack on in these namespaces,
    # and a TIME_WAIT entry per connection for 120 s would fill the host's
    # table. The same for every proxy compared.
    for key, value in (("net.ipv4.ip_local_port_range", "1024 65000"), ("net.ipv4.tcp_tw_reuse", "1"),
                       ("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "2"),
                       ("net.core.somaxconn", "4096")):
        ns.exec(["sysctl", "-q", "-w", f"{key}={value}"], check=False)


# Every nginx here (the backends, http_hop's proxy) runs alike: in the foreground, one worker, its files under d.
def nginx_config(d, name, http, master=True):
    """Writes d/<name>.conf (without a master process unless master), its
    http block unbounded keep-alive plus http; returns the nginx command."""
    t = f"{d}/{name}-tmp"
    os.makedirs(t, exist_ok=True)
    with open(f"{d}/{name}.conf", "w") as f:
        f.write(("" if master else "master_process off;\n") + f"""daemon off;
worker_processes 1;
pid {d}/{name}.pid;
error_log {d}/{name}-error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    # keepalive_requests also bounds the streams of one h2 connection (nginx >= 1.19.7)
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
{http}}}
""")
    return ["nginx", "-p", f"{d}/", "-c", f"{d}/{name}.conf", "-e", f"{d}/{name}-error.log"]


# Every proxy compared talks to the same kind of backend: one nginx process answering 200 "ok\n".
def nginx_backend(d, name, servers):
    """nginx_config() with a server for each list of `listen` arguments in servers."""
    http = "    default_type text/plain;\n"
    for listens in servers:
        http += "    server {\n" + "".join(f"        listen {a};\n" for a in listens)
        http += '        location / { return 200 "ok\\n"; }\n    }\n'
    return nginx_config(d, name, http, master=False)


# Both benches start their processes in the hosts' namespaces and must stop every one by pid.
class Bench:
    def __init__(self, tmp):
        self.tmp = tmp
        self.extra = []  # every process started here but the meshds (their Host owns them)

    def spawn(self, host, name, argv):
        out = open(os.path.join(self.tmp, f"{name}.log"), "w+")
        p = host.ns.spawn(argv, stdout=out, stderr=subprocess.STDOUT)
        self.extra.append(p)
        return p

    def tail(self, name, n=300):
        try:
            with open(os.path.join(self.tmp, f"{name}.log")) as f:
                return f.read()[-n:].replace("\n", " ")
        except OSError:
            return "no log"

    def stop_spawned(self):
        for p in reversed(self.extra):
            mesh.stop(p, signal.SIGTERM, timeout=5)

    # Both measure inside it: whatever happens, what was started is stopped and the table still printed.
    @contextlib.contextmanager
    def guarded(self, log, problems):
        """An interrupt or error in the with-body is logged and appended to
        problems, not raised; then self.close()'s problems, and tmp is removed."""
        try:
            yield
        except KeyboardInterrupt:
            log("interrupted")
            problems.append("interrupted")
        except Exception as e:  # noqa: BLE001 - reported, then everything is stopped
            log(f"error: {e}")
            problems.append(str(e))
        finally:
            problems += self.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def close_hosts(self, hosts):
        """Closes each host that was made; the problems seen."""
        problems = []
        for h in hosts:
            if h is None:
                continue
            try:
                h.close()  # meshd by SIGTERM (clean exit checked), then the namespace
            except AssertionError as e:
                problems.append(str(e)[:600])
            except Exception as e:  # noqa: BLE001 - keep closing the rest
                problems.append(f"{h.ns.name}: {e}")
        return problems


# ---------------------------------------------------------------- wrk
# Both run wrk (or h2load) pinned in the client host and keep its output.
def run_load(ns, cpus, argv, seconds, out_path):
    """(exit code, output) of argv on cpus in ns, bounded by seconds + 30;
    the output also written to out_path unless that is None."""
    try:
        r = subprocess.run(ns.cmd(pinned(cpus, argv)), capture_output=True, text=True, timeout=seconds + 30)
        text, rc = r.stdout + r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        text, rc = f"{argv[0]} timed out: {e}", -1
    if out_path:
        with open(out_path, "w") as f:
            f.write(text)
    return rc, text


# Both reject a wrk run on the same counts; only the tolerance differs.
def wrk_trouble(text, strict):
    """Why a wrk run does not count, or None: no requests, or more socket
    errors than requests, or (strict) socket errors and non-2xx answers for
    more than 1% of requests."""
    m = re.search(r"^\s*(\d+) requests in", text, re.M)
    if not m:
        return "no request count in wrk output: " + text.strip()[-200:]
    done = int(m.group(1))
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = sum(int(g) for g in e.groups()) if e else 0
    if strict:
        n = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        bad = int(n.group(1)) if n else 0
        if done == 0 or errors + bad > done / 100:
            return f"{done} requests, {errors} socket errors, {bad} non-2xx ({e.group(0) if e else ''})"
    elif done == 0 or errors > done:
        return f"{done} requests, {errors} socket errors ({e.group(0) if e else ''})"
    return None


# Both run their rows alike: a row that failed once is left out of the later rounds, with its first reason.
def attempt(log, fails, name, start, who, measure):
    """measure()'s sample for row name, logged as start; None when the row
    failed before or fails now (the reason then into fails, logged for who)."""
    if name in fails:
        return None
    log(start)
    s = measure()
    if "fail" in s:
        fails[name] = s["fail"]
        log(f"  {who} failed: {s['fail']}")
        return None
    return s


# ---------------------------------------------------------------- report
# Medians over rounds, where a failed or missing reading is None.
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# Both compare proxies within each round: a disturbance that hits a whole round cancels out.
def round_ratio(ra, rb, key):
    """Median over the rounds both ran of ra[round][key] / rb[round][key]."""
    return med([ra[r][key] / rb[r][key] for r in ra if r in rb and ra[r].get(key) is not None and rb[r].get(key)])


# Every ratio column prints alike.
def fmt_ratio(v):
    return "n/a" if v is None else f"{v:.2f}x"


# Both print a plain-text table and write the same rows as markdown.
def table(head, rows):
    """(text lines, markdown lines): the first column left-aligned, the others right in markdown."""
    w = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    text = ["  ".join(h.ljust(x) for h, x in zip(head, w)), "  ".join("-" * x for x in w)]
    text += ["  ".join(c.ljust(x) for c, x in zip(r, w)).rstrip() for r in rows]
    md = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    return text, md


# Every table says how much else ran beside it, with the same threshold for "noisy".
def load_note(what, other, background):
    """what: all that the benchmark itself runs, as in "anything but {what}"."""
    return (f"other load = CPU used by anything but {what} (worst run): {other:.0f}%; "
            f"before the run the machine was {background:.0f}% busy"
            + ("; WARNING: busy machine, figures are noisy" if max(other, background) > 5 else ""))


# ---------------------------------------------------------------- a run from start to end
def _interrupted(*_):
    raise KeyboardInterrupt


# Both mains start alike once preflight() passed.
def begin(prog):
    """Makes OUTDIR/raw, lets SIGTERM and SIGHUP unwind like ^C (so that
    Bench.guarded() still stops everything); returns the meta every report
    starts from and a new temporary folder for the run's files."""
    os.makedirs(os.path.join(OUTDIR, "raw"), exist_ok=True)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)
    meta = {"background": background_pct(), "meshd_bin": meshd_bin()}
    return meta, tempfile.mkdtemp(prefix=f"meshd-bench-{prog}-")


# Both end alike: the table on stdout, then OUTDIR/<name>.md and <name>.json.
def publish(name, script, text, md, data, problems, started):
    """script: the file name for the markdown's "generated by" line."""
    print(text)
    for p in problems:
        print(f"  problem: {p}")
    with open(os.path.join(OUTDIR, f"{name}.md"), "w") as f:
        f.write(f"<!-- generated by bench/{script} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}) -->\n")
        f.write(md)
    with open(os.path.join(OUTDIR, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=1)
    print(f"\n(markdown written to {os.path.join(OUTDIR, f'{name}.md')}; {time.monotonic() - started:.0f} s)")
