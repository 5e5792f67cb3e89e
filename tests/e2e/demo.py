#!/usr/bin/env python3
"""make demo: a small mesh on this machine.

Six network-namespace "hosts" on one LAN (a bridge): three meshd-controller
replicas that gossip, two servers and a client, each with meshd-init's
redirect rules and a meshd. The servers' proxies register the app they front
(web.prod) with a controller; the client's proxy learns from its replica
where web.prod is and balances the client app's connections to web.prod's
virtual address across the servers, none of the applications knowing. The
controllers are the mesh's CA: every proxy holds a certificate for its own
identity, the proxies speak mutual TLS to each other (shown on the wire),
and the servers admit only the client's identity (an outsider is refused).
The proxies count HTTP/1 and gRPC golden metrics as the bytes pass. A
server dies and traffic moves to the other one; the client's replica dies and
its proxy moves to another; every controller dies and traffic still flows.
Ends with `meshd-ctl status` on the client.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mesh import APPS, PYTHON, REGISTRY, TRUST_DOMAIN, VIP, Capture, Cluster, binary, stop, wait_for  # noqa: E402

MiB = 1 << 20
API_VIP = "10.96.0.11"
GRPC_VIP = "10.96.0.12"


def step(text):
    print(f"\n== {text}", flush=True)


def ctl(host, *args):
    r = subprocess.run(host.ns.cmd([binary("meshd-ctl")] + list(args)), capture_output=True, text=True, timeout=15)
    if r.returncode != 0:
        raise SystemExit(f"demo failed: meshd-ctl {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def main():
    if os.geteuid() != 0:
        sys.exit("make demo needs root (network namespaces and iptables): run it with sudo")
    step("a LAN of network namespaces: controllers 10.78.0.10-.12 (gossiping, HMAC cluster key), servers "
         "10.78.0.2 and .3, client 10.78.0.1; every host has meshd-init's rules and a meshd")
    client_id = f"spiffe://{TRUST_DOMAIN}/host/client"
    registry = REGISTRY + f"""
[[service]]
name = "api.prod"
ports = [8081]
virtual_addresses = ["{API_VIP}:80"]

[[service]]
name = "grpc.prod"
ports = [8082]
virtual_addresses = ["{GRPC_VIP}:80"]

  [[service.policy]]
  port = 8080
  default = "deny"
    [[service.policy.rule]]
    name = "web-clients"
    identities = ["{client_id}"]
"""
    mesh = Cluster(controllers=3, gossip=True, identity=True, registry=registry)
    try:
        client = mesh.client
        for h in mesh.hosts:
            print(f"  {h.ns.name}: {h.v4}" + (f", meshd pid {h.meshd.pid} (uid 2102)" if h.meshd else ""))
        rules = client.ns.exec(["iptables-save", "-t", "nat"]).stdout
        print("client's nat table:\n  " + "\n  ".join(l for l in rules.splitlines() if "MESHD" in l))

        step("the registry, the same on every replica: web.prod is defined in the controllers' file (virtual "
             f"address {VIP}:80); each server's meshd registers its endpoint (meshd --register web.prod=8080)")
        for i in range(3):
            mesh.wait_registered(2, controller=i)
        print(ctl(mesh.ctrl_hosts[0], "services"), end="")
        print("meshd-ctl members (the replicas, as controller 10.78.0.10 sees them):")
        print(ctl(mesh.ctrl_hosts[0], "members", "--controller", "10.78.0.10:4190"), end="")

        step("identity: `meshd-ctl identity init` made the mesh's CA (a P-256 root and issuer, trust domain "
             f"{TRUST_DOMAIN}); each proxy made its key in memory and got a 1h certificate from a controller, on a "
             "one-use join token from `meshd-ctl identity token`")
        for h in [client] + mesh.servers:
            line = next(l for l in ctl(h, "status").splitlines() if l.startswith("identity"))
            print(f"  {h.role}: {line[len('identity'):].strip()}")

        step(f"the client app dials {VIP}:80 forty times (an address that exists only in the registry)")
        out = mesh.names(VIP, 80, 40)
        print(f"answered by: {out['names']}  errors: {out['errors'] or 'none'}")
        if out["errors"] or len(out["names"]) != 2:
            raise SystemExit("demo failed: web.prod was not balanced over both servers")

        step("8 MiB up and 8 MiB down through the virtual address, checked by sha256; 200 concurrent connections")
        for name, r in (("upload", client.ns.app("upload", VIP, 80, 8 * MiB, 1)),
                        ("download", client.ns.app("download", VIP, 80, 8 * MiB, 2))):
            ok = r["sha256"] == r["expected_sha256"] and r["count"] == r["expected_count"]
            print(f"{name}: {r['count']} bytes, sha256 {'matches' if ok else 'DIFFERS'}")
            if not ok:
                raise SystemExit("demo failed: bytes differ")
        many = client.ns.app("many", VIP, 80, 200, 0.2)
        print(f"{many['ok']} echoed correctly, {many['failed']} failed")

        step("on the wire between the proxies (tcpdump on server 1's interface), the app's bytes are mutual TLS: the "
             "marker string the client echoes is nowhere in the capture")
        marker = "MESHD-DEMO-MARKER"
        cap = Capture(mesh.servers[0])
        out = client.ns.app("marker", VIP, 80, marker, 20)
        wire = cap.bytes()
        print(f"{out['ok']} of 20 echoed; {len(wire)} bytes captured; marker in the capture: {marker.encode() in wire}")
        if marker.encode() in wire or out["ok"] != 20:
            raise SystemExit("demo failed: mesh traffic was not encrypted")
        m = client.metrics()
        print("client's handshakes: " + ", ".join(
            f"{k.split('{')[1].rstrip('}')} {int(v)}" for k, v in sorted(m.items())
            if k.startswith("tls_handshakes_total") and 'outbound' in k))

        step("authorization: web.prod admits only " + client_id + " (a policy in the registry); a host outside "
             "the mesh (10.78.0.50, no proxy, no certificate) is refused")
        outsider = mesh.host("outsider", "10.78.0.50")
        print(f"outsider -> {mesh.servers[0].v4}:8080: {outsider.ns.app('outcome', mesh.servers[0].v4, 8080, 'NAME')['outcome']}")
        print(f"client   -> {mesh.servers[0].v4}:8080: {client.ns.app('outcome', mesh.servers[0].v4, 8080, 'NAME')['outcome']}")
        for s_ in mesh.servers:
            for k, v in sorted(s_.metrics().items()):
                if k.startswith("inbound_tcp_authz") and v:
                    print(f"  {s_.role}: {k} {int(v)}")

        step(f"HTTP: each server also runs an HTTP/1.1 app on 8081, registered as api.prod (virtual address "
             f"{API_VIP}:80, meshed); the client app makes 60 requests with curl (a fifth answered 503) while "
             "`meshd-ctl stat` watches: the proxies read HTTP as it passes and count the golden metrics. The "
             "client's proxy sends each 503'd GET twice more (idempotent, within the retry budget) before the "
             "client gets the 503: the servers' proxies count every attempt. Each curl sends its 20 requests on "
             "one connection, and the client's proxy balances each request over both servers, moving between "
             "pooled connections")
        ca = os.path.join(mesh.ca_dir, "ca.crt")
        for s_ in mesh.servers:
            http_app = s_.ns.spawn([PYTHON, APPS, "http-serve", "8081", os.path.join(mesh.workdir.name, "http.log")])
            if http_app.stdout.readline().strip() != "ready":
                raise SystemExit("demo failed: the HTTP app did not start")
            s_.apps[8081] = http_app
            ctl(mesh.ctrl_hosts[0], "register", "api.prod", f"{s_.v4}:8081", "--meshed", "--identity",
                mesh.identity_of(s_), "--trust-anchors", ca, "--controller", f"{mesh.ctrl_hosts[0].v4}:4190")
        wait_for(lambda: (mesh.services() or {}).get("api.prod", {}).get("endpoints") == 2, 15, "api.prod's endpoints")
        batch = " ".join([f"http://{API_VIP}/ok"] * 16 + [f"http://{API_VIP}/status/503"] * 4)
        load = subprocess.Popen(client.ns.cmd(
            ["sh", "-c", f"for i in 1 2 3; do sleep 0.3; curl -s {batch} >/dev/null; done"]))
        print(ctl(client, "stat", "--interval", "2s"), end="")
        load.wait(timeout=20)
        for h in (client, mesh.servers[0]):
            m = h.metrics()
            print(f"  {h.role}'s proxy:")
            for k, v in sorted(m.items()):
                if (k.split("{")[0] in ("request_total", "response_total") or
                        k.startswith(('outbound_http_retries_total{dst="api.prod"',
                                      'outbound_http_endpoint_switches_total{dst="api.prod"',
                                      'outbound_upstream_reused_total{dst="api.prod"'))) and v:
                    print(f"    {k} {int(v)}")
        seen = [sum(v for k, v in s_.metrics().items() if k.startswith("request_total{") and 'direction="inbound"' in k)
                for s_ in mesh.servers]
        print("  requests each server's proxy saw (the 503'd GETs three times): " +
              ", ".join(f"{s_.role} {int(n)}" for s_, n in zip(mesh.servers, seen)))

        step(f"gRPC over HTTP/2 (h2c): each server also runs a gRPC-shaped app on 8082, registered as grpc.prod "
             f"({GRPC_VIP}:80); the client makes 30 calls with nghttp on one connection. Its proxy terminates "
             "HTTP/2 and balances each call on its own over both servers. Every third call a server gets fails "
             "with grpc-status 14 (UNAVAILABLE) while HTTP says 200: the proxies read the status from each "
             "stream's trailers")
        for s_ in mesh.servers:
            grpc_app = s_.ns.spawn([PYTHON, APPS, "grpc-serve", "8082", "3"])
            if grpc_app.stdout.readline().strip() != "ready":
                raise SystemExit("demo failed: the gRPC app did not start")
            s_.apps[8082] = grpc_app
            ctl(mesh.ctrl_hosts[0], "register", "grpc.prod", f"{s_.v4}:8082", "--meshed", "--identity",
                mesh.identity_of(s_), "--trust-anchors", ca, "--controller", f"{mesh.ctrl_hosts[0].v4}:4190")
        wait_for(lambda: (mesh.services() or {}).get("grpc.prod", {}).get("endpoints") == 2, 15,
                 "grpc.prod's endpoints")
        r = client.ns.exec(["nghttp", "-n", "-m", "30", f"http://{GRPC_VIP}/helloworld.Greeter/SayHello"],
                           check=False)
        if r.returncode != 0:
            raise SystemExit(f"demo failed: nghttp: {r.stderr.strip()[-300:]}")
        m = client.metrics()
        print("  client's proxy:")
        for k, v in sorted(m.items()):
            if k.split("{")[0] in ("request_total", "response_total") and "grpc.prod" in k and v:
                print(f"    {k} {int(v)}")
        calls = [sum(v for k, v in s_.metrics().items()
                     if k.startswith("request_total{") and 'direction="inbound"' in k and GRPC_VIP in k)
                 for s_ in mesh.servers]
        print("  calls each server's proxy saw (one client connection): " +
              ", ".join(f"{s_.role} {int(n)}" for s_, n in zip(mesh.servers, calls)))

        step("meshd-ctl tap  (each request through the client's proxy, live)")
        tap = subprocess.Popen(client.ns.cmd([binary("meshd-ctl"), "tap", "--max", "6", "--duration", "10s"]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)  # its first poll turns capture on
        paths = ["/ok/a", "/ok/b", "/status/503", "/slow/150", "/ok/c", "/ok/d"]
        client.ns.exec(["sh", "-c", " ; ".join(f"curl -s -o /dev/null http://{API_VIP}{p}" for p in paths)])
        try:
            out, err = tap.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            tap.kill()
            out, err = tap.communicate()
        print(out, end="")
        if tap.returncode != 0:
            raise SystemExit(f"demo failed: meshd-ctl tap: {err.strip()}")

        step("meshd-ctl endpoints web.prod  (what the client's proxy balances over)")
        print(ctl(client, "endpoints", "web.prod"), end="")

        step(f"meshd-ctl check  (in {client.ns.name}: pre-flight and health, one line each, with the mesh's CA)")
        print(ctl(client, "check", "--trust-anchors", os.path.join(mesh.ca_dir, "ca.crt")), end="")

        step("server 2 dies (its proxy and its app): the next connections go to server 1, none fails")
        s2 = mesh.servers[1]
        s2.meshd.kill()
        s2.meshd.wait(timeout=10)
        s2.meshd = None
        stop(s2.apps[8080])
        out = mesh.names(VIP, 80, 20)
        print(f"answered by: {out['names']}  errors: {out['errors'] or 'none'}")
        print(ctl(client, "endpoints", "web.prod"), end="")
        print("...and once its lease (3s) runs out, the controller and the proxy forget it:")
        wait_for(lambda: len(json.loads(ctl(client, "endpoints", "web.prod", "-o", "json"))["endpoints"]) == 1, 15,
                 "the lease to expire")
        print(ctl(client, "endpoints", "web.prod"), end="")

        connected = client.status()["controller"]["address"]
        step(f"the client's replica ({connected}) dies: its proxy moves to another replica")
        victim = next(i for i, h in enumerate(mesh.ctrl_hosts) if f"{h.v4}:4190" == connected)
        mesh.controllers[victim].kill()
        mesh.controllers[victim].wait(timeout=10)
        wait_for(lambda: (client.status()["controller"]["address"] != connected and
                          client.status()["controller"]["state"] == "fresh"), 15, "the proxy to move")
        print(f"now connected to {client.status()['controller']['address']}")
        out = mesh.names(VIP, 80, 10)
        print(f"answered by: {out['names']}  errors: {out['errors'] or 'none'}")

        step("every controller dies: the client's proxy keeps what it knew")
        for i, p in enumerate(mesh.controllers):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        wait_for(lambda: client.status()["controller"]["state"] == "disconnected", 10, "the proxy to notice")
        out = mesh.names(VIP, 80, 10)
        print(f"answered by: {out['names']}  errors: {out['errors'] or 'none'}")

        step("what the client's proxy counted (GET /metrics, outbound, dst=web.prod)")
        m = client.metrics()
        for k, v in sorted(m.items()):
            if 'dst="web.prod"' in k and v and ("_bucket" not in k) and k.split("{")[0] in (
                    "tcp_open_total", "tcp_close_total", "tcp_read_bytes_total", "tcp_write_bytes_total",
                    "outbound_balancer_endpoints", "outbound_connect_failures_total",
                    "outbound_connect_latency_ms_count"):
                print(f"  {k} {int(v)}")

        step(f"meshd-ctl status  (in {client.ns.name})")
        print(ctl(client, "status"), end="")
        # The controller was killed on purpose: forget it before the checks
        # at close, which expect every meshd to stop cleanly.
        mesh.controllers = []
        for s in mesh.servers:
            if s.meshd is not None and stop(s.meshd, signal.SIGTERM) != 0:
                raise SystemExit(f"demo failed: meshd in {s.ns.name} did not stop cleanly")
            s.meshd = None
    finally:
        mesh.close()
    step("done: namespaces, rules and processes removed")


if __name__ == "__main__":
    main()
