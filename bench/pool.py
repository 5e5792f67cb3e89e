#!/usr/bin/python3
"""Clients that open a connection per request, through the mesh, with and
without meshd's pool of idle upstream connections.

  client app -> (new connection each request) -> meshd outbound (client
  host) -> mTLS -> meshd inbound (server host) -> Python HTTP/1.1 backend

The e2e tests' two-host mesh (tests/e2e/mesh.py HttpMesh: a controller, a
client and a server host, both meshed with identities) is started twice:
once as meshd runs by default (--upstream-idle-timeout 4s: the client's
proxy keeps the mTLS connection to the server's proxy between clients, and
a request takes it), once with --upstream-idle-timeout 0 (every client
connection gets a connection of its own: a connect and a resumed TLS 1.3
handshake between the proxies, and a new connection to the backend). The
client is one Python process making BENCH_POOL_REQUESTS requests one
after another, each over a connection of its own (HTTP/1.1, no
Connection: close: as curl or a client without a session), after 50 to
warm up. Reported: requests per second, p50 and p99 of each request (from
connect to the body), the connections the server's proxy accepted and the
TLS handshakes the client's proxy made.

Run by bench/run.sh (BENCH_ONLY=pool, and in the full run), or alone as
root: MESHD_BUILD=build /usr/bin/python3 bench/pool.py. Writes
build/bench/pool.md. Every process is stopped by its pid and every
namespace deleted by HttpMesh.close(), also on failure.
"""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree (before nsbench, which is one)

import nsbench  # noqa: E402  (first: it puts tests/e2e, where mesh.py is, on the path)
import mesh  # noqa: E402

REQUESTS = nsbench.env_int("pool", "BENCH_POOL_REQUESTS", 2000, 100, 100000)

# One connection per request; prints "rps p50_ms p99_ms".
CLIENT = r'''
import socket, sys, time
n, host = int(sys.argv[1]), sys.argv[2]
lat = []
start = time.monotonic()
for i in range(n):
    t = time.monotonic()
    s = socket.create_connection((host, 80), timeout=10)
    s.sendall(b"GET /ok/pool HTTP/1.1\r\nHost: pool.test\r\n\r\n")
    got = b""
    while b"ok /ok/pool" not in got:
        d = s.recv(4096)
        if not d:
            sys.exit("the connection ended before the response: " + repr(got[:200]))
        got += d
    s.close()
    lat.append(time.monotonic() - t)
lat.sort()
print(f"{n / (time.monotonic() - start):.0f} {lat[n // 2] * 1000:.3f} {lat[min(n - 1, n * 99 // 100)] * 1000:.3f}")
'''


def total(metrics, name, **labels):
    return sum(v for k, v in metrics.items()
               if k.split("{")[0] == name and all(f'{a}="{b}"' in k for a, b in labels.items()))


def run(flags):
    m = mesh.HttpMesh(meshd_flags=("--threads", "1"), client_flags=flags)
    try:
        m.client.ns.exec([sys.executable, "-c", CLIENT, "50", mesh.HTTP_VIP], timeout=120)
        before_s, before_c = m.server.metrics(), m.client.metrics()
        r = m.client.ns.exec([sys.executable, "-c", CLIENT, str(REQUESTS), mesh.HTTP_VIP], timeout=600)
        after_s, after_c = m.server.metrics(), m.client.metrics()
        rps, p50, p99 = (float(x) for x in r.stdout.split())
        return {
            "rps": rps, "p50_ms": p50, "p99_ms": p99,
            "accepted": total(after_s, "tcp_open_total", direction="inbound") -
            total(before_s, "tcp_open_total", direction="inbound"),
            "handshakes": total(after_c, "tls_handshakes_total", direction="outbound") -
            total(before_c, "tls_handshakes_total", direction="outbound"),
        }
    finally:
        m.close()


def main():
    started = time.monotonic()
    os.makedirs(nsbench.OUTDIR, exist_ok=True)
    rows = {"pooled (default)": run(()), "--upstream-idle-timeout 0": run(("--upstream-idle-timeout", "0"))}
    on, off = rows["pooled (default)"], rows["--upstream-idle-timeout 0"]
    lines = [f"{REQUESTS} requests, each over a new client connection, client -> meshd -> mTLS -> meshd -> "
             "Python backend (one thread per proxy)", "",
             "| | req/s | p50 | p99 | connections the server's proxy accepted | client proxy's TLS handshakes |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['rps']:,.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
                     f"{r['accepted']:,.0f} | {r['handshakes']:,.0f} |")
    lines += ["", f"pooled/unpooled req/s: {on['rps'] / off['rps']:.2f}x, p50: {on['p50_ms'] / off['p50_ms']:.2f}x"]
    text = "\n".join(lines)
    nsbench.publish("pool", "pool.py", text, text + "\n", rows, [], started)


if __name__ == "__main__":
    main()
