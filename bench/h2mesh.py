#!/usr/bin/python3
"""HTTP/2 through the mesh: one client connection with many streams to a
service, terminated by the client's proxy and balanced stream by stream
(meshd's default), against the same connection relayed as it is and
followed by the tap (--upstream-idle-timeout 0, which turns per-request
balancing off).

  h2load -c1 -m100 (client host) -> meshd outbound -> mTLS -> meshd
  inbound (server host) -> nginx h2c (h2c.prod, GET /index.html)

The e2e tests' two-host mesh (tests/e2e/mesh.py HttpMesh: a controller, a
client and a server host, meshed with identities, one thread per proxy) is
started once per row. After a warm-up, h2load runs BENCH_H2MESH_SECONDS
(8) on one connection with 100 concurrent streams. Reported: requests per
second, h2load's mean and max time per request, the client proxy's CPU
per request (utime+stime from /proc) and its RSS after the run; the
ratio terminated/relayed says what terminating costs (framing, HPACK,
copies) for what it buys (each stream balanced on its own).

Run by bench/run.sh (BENCH_ONLY=h2mesh, and in the full run), or alone as
root: MESHD_BUILD=build /usr/bin/python3 bench/h2mesh.py. Writes
build/bench/h2mesh.md. Every process is stopped by its pid and every
namespace deleted by HttpMesh.close(), also on failure.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree (before nsbench, which is one)

import nsbench  # noqa: E402  (first: it puts tests/e2e, where mesh.py is, on the path)
import mesh  # noqa: E402
from nsbench import HZ  # noqa: E402
from report import parse_h2load  # noqa: E402

SECONDS = nsbench.env_int("h2mesh", "BENCH_H2MESH_SECONDS", 8, 1, 600)
STREAMS = 100


def h2load(m, argv):
    r = m.client.ns.exec(["h2load", "-c1", "-t1", f"-m{STREAMS}", *argv, f"http://{mesh.H2C_VIP}/index.html"],
                         check=False, timeout=SECONDS + 60)
    if r.returncode != 0:
        raise RuntimeError(f"h2load exit {r.returncode}: {(r.stdout + r.stderr).strip()[-300:]}")
    return parse_h2load(r.stdout)


def run(flags):
    # nginx keeps the connection for the whole run (its default ends it after
    # 1000 requests, which the relayed client would see as failures).
    m = mesh.HttpMesh(meshd_flags=("--threads", "1"), client_flags=flags, h2_requests=1_000_000_000)
    try:
        h2load(m, ["-n", "2000"])  # warm-up: certificates, connections, caches
        pid = m.client.meshd.pid
        before = nsbench.proc_ticks(pid)
        got = h2load(m, ["-D", str(SECONDS)])
        ticks = nsbench.proc_ticks(pid) - before
        if got["failed"] or not got["requests"]:
            raise RuntimeError(f"h2load: {got['failed']} failed of {got['requests']}")
        got["cpu_us"] = ticks / HZ * 1e6 / got["requests"]
        got["rss_mb"] = nsbench.rss_kb(pid) / 1024
        return got
    finally:
        m.close()


def main():
    started = time.monotonic()
    os.makedirs(nsbench.OUTDIR, exist_ok=True)
    rows = {"terminated, per-stream balancing (default)": run(()),
            "relayed and tapped (--upstream-idle-timeout 0)": run(("--upstream-idle-timeout", "0"))}
    on, off = rows.values()
    lines = [f"h2load -c1 -m{STREAMS} for {SECONDS} s: client -> meshd -> mTLS -> meshd -> nginx h2c "
             "(one thread per proxy)", "",
             "| | req/s | mean | max | client proxy CPU us/req | client proxy RSS |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['rps']:,.0f} | {r['mean_us'] / 1000:.2f} ms | {r['max_us'] / 1000:.2f} ms | "
                     f"{r['cpu_us']:.1f} | {r['rss_mb']:.1f} MB |")
    lines += ["", f"terminated/relayed req/s: {on['rps'] / off['rps']:.2f}x, "
              f"CPU per request: {on['cpu_us'] / off['cpu_us']:.2f}x"]
    text = "\n".join(lines)
    nsbench.publish("h2mesh", "h2mesh.py", text, text + "\n", rows, [], started)


if __name__ == "__main__":
    main()
