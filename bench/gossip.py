#!/usr/bin/python3
"""Gossip between meshd-controller replicas: how fast a registry change
reaches every replica, and how fast a killed replica is declared dead.

  MESHD_BUILD=build /usr/bin/python3 bench/gossip.py [--replicas 5] [--changes 20]

Runs N controllers on loopback ports (in a network namespace of its own, so
that nothing else on the machine shares its ports; needs root) with the
default timers (probe 1s, suspicion 5 probes, push-pull every 5s).

- Propagation: for each change, a subscriber on every other replica
  (Subscribe, the proxies' own stream) waits for the update; the clock
  starts just before the Register request to replica 1 is sent and stops
  when the last replica's update arrives. p50/p99/max over the changes.
- Failure detection: SIGKILL the last replica; the time until every other
  replica's `meshd-ctl members` shows it dead (and when the first saw it
  suspect).
"""
import argparse
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
from mesh import Netns, binary, stop  # noqa: E402

BASE_PORT = 24000


# --- just enough protobuf for the API's Request/Response (src/proto/api.proto) ---
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, payload):
    if isinstance(payload, int):
        return varint(num << 3) + varint(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def frame(body):
    return struct.pack(">I", len(body)) + body


def subscribe_request(req_id, service):
    return frame(field(1, req_id) + field(3, field(1, service)))


def entry(service, address):
    return field(1, service) + field(2, address) + field(8, field(1, address) + field(2, 100))


def register_request(req_id, service, address):
    return frame(field(1, req_id) + field(4, field(1, "api:bench") + field(2, entry(service, address))))


def bulk_register_request(req_id, services, per_service):
    entries = b"".join(field(2, entry(f"bulk-{s}.prod", f"10.{100 + s // 250}.{s % 250}.{i + 1}:80"))
                       for s in range(services) for i in range(per_service))
    return frame(field(1, req_id) + field(4, field(1, "api:bulk") + entries))


def live_entries(port):
    r = subprocess.run([binary("meshd-ctl"), "services", "-o", "json", "--controller", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return -1
    return sum(s["endpoints"] for s in json.loads(r.stdout)["services"] if s["name"].startswith("bulk-"))


class Stream:
    """One API stream to a controller, read frame by frame."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_frame(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    body, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame")
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def members(port):
    r = subprocess.run([binary("meshd-ctl"), "members", "-o", "json", "--controller", f"127.0.0.1:{port}",
                        "--timeout", "1s"], capture_output=True, text=True, timeout=5)
    if r.returncode != 0:
        return {}
    return {m["name"]: m for m in json.loads(r.stdout)["members"]}


def inner(args):
    n = args.replicas
    workdir = tempfile.mkdtemp(prefix="meshd-bench-gossip-")
    key = os.path.join(workdir, "key")
    with open(key, "w") as f:
        f.write(os.urandom(32).hex())
    procs = []
    api = [BASE_PORT + 10 * i for i in range(n + 1)]  # the last one joins late

    def start(i):
        argv = [binary("meshd-controller"), "--listen", f"127.0.0.1:{api[i]}", "--admin", "off",
                "--data-dir", os.path.join(workdir, f"c{i}"), "--cluster-key-file", key,
                "--gossip-listen", f"127.0.0.1:{api[i] + 2}", "--node-name", f"c{i + 1}",
                "--log-level", "warn"]
        if i > 0:
            argv += ["--join", f"127.0.0.1:{api[0] + 2}"]
        procs.append(subprocess.Popen(argv, stderr=open(os.path.join(workdir, f"c{i}.log"), "w")))

    try:
        for i in range(n):
            start(i)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(sum(m["state"] == "alive" for m in members(p).values()) == n for p in api[:n]):
                break
            time.sleep(0.2)
        else:
            sys.exit("the replicas did not all see each other within 20s")

        propagation, per_replica = [], []
        for c in range(args.changes):
            service = f"bench-{c}.prod"
            subs = [Stream(p) for p in api[1:n]]
            for s in subs:
                s.send(subscribe_request(1, service))
                s.read_frame(5)  # the snapshot: no such service yet
            writer = Stream(api[0])
            t0 = time.monotonic()
            writer.send(register_request(1, service, f"10.9.{c // 250}.{c % 250 + 1}:80"))
            arrivals = []
            pending = {s.sock: s for s in subs}
            while pending:
                r, _, _ = select.select(list(pending), [], [], 30)
                if not r:
                    sys.exit(f"change {c} did not reach every replica within 30s")
                for sock in r:
                    pending.pop(sock).read_frame(1)
                    arrivals.append(time.monotonic() - t0)
            writer.read_frame(5)
            propagation.append(max(arrivals) * 1000)
            per_replica.extend(a * 1000 for a in arrivals)
            for s in subs + [writer]:
                s.sock.close()
            time.sleep(0.3)  # spread the changes over probe and gossip rounds

        # A bulk write: 1000 services x 10 endpoints in one request. More than
        # gossip's queue holds: anti-entropy brings what piggybacking did not.
        writer = Stream(api[0])
        t0 = time.monotonic()
        writer.send(bulk_register_request(1, 1000, 10))
        writer.read_frame(30)
        acked = time.monotonic() - t0
        pending = set(api[1:n])
        bulk_done = {}
        while pending and time.monotonic() - t0 < 120:
            for p in list(pending):
                if live_entries(p) == 10000:
                    bulk_done[p] = time.monotonic() - t0
                    pending.discard(p)
            time.sleep(0.05)
        writer.sock.close()
        # A replica that joins late catches up by one push-pull.
        t0 = time.monotonic()
        start(n)
        catch_up = None
        while time.monotonic() - t0 < 60:
            if live_entries(api[n]) == 10000:
                catch_up = time.monotonic() - t0
                break
            time.sleep(0.05)
        stop(procs.pop(), signal.SIGTERM)

        victim = procs[-1]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed = time.monotonic()
        first_suspect = None
        dead_at = {}
        while len(dead_at) < n - 1 and time.monotonic() - killed < 60:
            for p in api[:n - 1]:
                if p in dead_at:
                    continue
                state = members(p).get(f"c{n}", {}).get("state")
                if state == "suspect" and first_suspect is None:
                    first_suspect = time.monotonic() - killed
                if state == "dead":
                    dead_at[p] = time.monotonic() - killed
            time.sleep(0.05)

        print(f"gossip between {n} meshd-controller replicas (loopback; probe 1s, suspicion 5 probes, "
              f"push-pull 5s)")
        print(f"{'measure':44} {'p50':>9} {'p99':>9} {'max':>9}")
        print(f"{'change on one -> all replicas (ms, %d changes)' % len(propagation):44} "
              f"{pct(propagation, 50):9.1f} {pct(propagation, 99):9.1f} {max(propagation):9.1f}")
        print(f"{'change on one -> each replica (ms)':44} "
              f"{pct(per_replica, 50):9.1f} {pct(per_replica, 99):9.1f} {max(per_replica):9.1f}")
        if len(dead_at) == n - 1:
            vals = sorted(dead_at.values())
            print(f"{'killed replica -> dead on all others (s)':44} {pct(vals, 50):9.2f} {'':>9} {max(vals):9.2f}")
        else:
            print(f"killed replica: only {len(dead_at)} of {n - 1} replicas declared it dead within 60s")
        if first_suspect is not None:
            print(f"{'killed replica -> first seen suspect (s)':44} {first_suspect:9.2f}")
        if len(bulk_done) == n - 1:
            vals = sorted(bulk_done.values())
            print(f"{'10,000 entries on one -> all replicas (s)':44} {pct(vals, 50):9.2f} {'':>9} {max(vals):9.2f}"
                  f"   (acked after {acked:.2f}s)")
        else:
            print(f"bulk write: only {len(bulk_done)} of {n - 1} replicas had all 10,000 entries within 120s")
        if catch_up is not None:
            print(f"{'new replica start -> has all 10,000 (s)':44} {catch_up:9.2f}")
        else:
            print("new replica: did not catch up within 60s")
    finally:
        for p in procs:
            stop(p, signal.SIGTERM)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicas", type=int, default=5)
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        return inner(args)
    if os.geteuid() != 0:
        sys.exit("bench/gossip.py needs root (it runs in a network namespace of its own)")
    ns = Netns("benchgossip")
    try:
        argv = [sys.executable, os.path.abspath(__file__), "--inner", "--replicas", str(args.replicas),
                "--changes", str(args.changes)]
        r = subprocess.run(ns.cmd(argv), timeout=600)
        return r.returncode
    finally:
        ns.close()


if __name__ == "__main__":
    sys.exit(main())
