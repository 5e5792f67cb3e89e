#!/usr/bin/env python3
"""make demo: a small mesh on this machine.

Two network-namespace "hosts", each with meshd-init's redirect rules and a
meshd, joined by a veth pair. An application on one talks to an application
on the other by plain IP and port; the bytes cross both proxies (outbound on
the client host, inbound on the server host) without either application
knowing. Ends with `meshd-ctl status` on both hosts.
"""
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mesh import Pair, binary, stop, wait_for  # noqa: E402

MiB = 1 << 20


def step(text):
    print(f"\n== {text}", flush=True)


def main():
    if os.geteuid() != 0:
        sys.exit("make demo needs root (network namespaces and iptables): run it with sudo")
    step("two hosts in network namespaces, 10.77.0.1 (client) and 10.77.0.2 (server), "
         "each with meshd-init's rules and a meshd")
    pair = Pair()
    try:
        client, server = pair.client, pair.server
        print(f"client host: netns {client.ns.name}, meshd pid {client.meshd.pid} (uid 2102)")
        print(f"server host: netns {server.ns.name}, meshd pid {server.meshd.pid} (uid 2102)")
        rules = client.ns.exec(["iptables-save", "-t", "nat"]).stdout
        print("client's nat table:\n  " + "\n  ".join(l for l in rules.splitlines() if "MESHD" in l))

        step("an app on the server host listens on 0.0.0.0:8080; the client app dials 10.77.0.2:8080")
        server.serve(8080)
        who = client.ns.app("who", "10.77.0.2", 8080)
        print(f"the server app sees its peer as {who['peer']}: the connection arrived through its meshd")

        step("8 MiB up and 8 MiB down, checked by sha256")
        up = client.ns.app("upload", "10.77.0.2", 8080, 8 * MiB, 1)
        down = client.ns.app("download", "10.77.0.2", 8080, 8 * MiB, 2)
        for name, r in (("upload", up), ("download", down)):
            ok = r["sha256"] == r["expected_sha256"] and r["count"] == r["expected_count"]
            print(f"{name}: {r['count']} bytes, sha256 {'matches' if ok else 'DIFFERS'}")
            if not ok:
                raise SystemExit("demo failed: bytes differ")

        step("200 concurrent connections")
        many = client.ns.app("many", "10.77.0.2", 8080, 200, 0.2)
        print(f"{many['ok']} echoed correctly, {many['failed']} failed")

        step("a refused port: nothing listens on 10.77.0.2:9")
        out = client.ns.app("outcome", "10.77.0.2", 9)
        print(f"the client sees '{out['outcome']}' after {out['seconds'] * 1000:.0f} ms, as it would without a mesh")

        step("what the proxies counted (GET /metrics on the admin port)")
        for host, direction in ((client, "outbound"), (server, "inbound")):
            m = host.metrics()
            picked = {k: int(v) for k, v in m.items() if f'direction="{direction}"' in k and v and
                      k.split("{")[0] in ("tcp_open_total", "tcp_close_total", "tcp_read_bytes_total",
                                          "tcp_write_bytes_total")}
            print(f"{host.ns.name}:")
            for k, v in sorted(picked.items()):
                print(f"  {k} {v}")

        step("a meshd-controller on the server host: its registry (proxies subscribe to it in the next step "
             "of the project; today they forward by original destination)")
        with tempfile.TemporaryDirectory(prefix="meshd-demo-") as work:
            registry = os.path.join(work, "registry.toml")
            with open(registry, "w") as f:
                f.write('[[service]]\nname = "echo.demo"\nports = [8080]\nprotocol = "opaque"\n\n'
                        '  [[service.endpoint]]\n  address = "10.77.0.2:8080"\n  meshed = true\n')
            log = open(os.path.join(work, "controller.log"), "w")
            ctrl = server.ns.spawn([binary("meshd-controller"), "--listen", "0.0.0.0:4190", "--data-dir",
                                    os.path.join(work, "data"), "--registry-file", registry], stdout=log, stderr=log)
            ctl = [binary("meshd-ctl")]

            def listed():
                r = subprocess.run(server.ns.cmd(ctl + ["services"]), capture_output=True, text=True, timeout=10)
                return r if r.returncode == 0 else None
            wait_for(listed, 10, "the controller")
            r = subprocess.run(client.ns.cmd(ctl + ["register", "echo.demo", "10.77.0.1:8081", "--controller",
                                                    "10.77.0.2:4190", "--lease", "30s", "--owner", "lease:client"]),
                               capture_output=True, text=True, timeout=10)
            print(f"from the client host: meshd-ctl register echo.demo 10.77.0.1:8081 --lease 30s\n  {r.stdout.strip()}")
            print("meshd-ctl services (on the server host):")
            print(listed().stdout, end="")
            if stop(ctrl, signal.SIGTERM) != 0:
                raise SystemExit("demo failed: meshd-controller did not stop cleanly")

        for host in (client, server):
            step(f"meshd-ctl status  (in {host.ns.name})")
            r = subprocess.run(host.ns.cmd([binary("meshd-ctl"), "status"]), capture_output=True, text=True,
                               timeout=10)
            print(r.stdout + r.stderr, end="")
            if r.returncode != 0:
                raise SystemExit("demo failed: meshd-ctl status")
    finally:
        pair.close()
    step("done: namespaces, rules and processes removed")


if __name__ == "__main__":
    main()
