"""meshd-controller replicas gossiping: three (or four) controllers in their
own namespaces on one bridge, with a shared cluster key. A registration on
one is served by all; a killed replica is declared dead; a partitioned one
catches up by anti-entropy once healed; a replica with another key is kept
out and its packets are counted; a lease renewed on one replica keeps its
entries on all, and expires everywhere when the renewals stop."""
import json
import os
import signal
import subprocess
import tempfile
import time

import pytest

from mesh import APPS, PYTHON, Netns, binary, parse_metrics, run, stop, wait_for

SUBNET = "10.88.0"
# Fast enough for a test, the defaults otherwise (probe 1s, suspicion 5 probes).
SYNC_INTERVAL = "2s"


class Replica:
    def __init__(self, cluster, index, key_file):
        self.index = index
        self.name = f"c{index}"
        self.ip = f"{SUBNET}.{index}"
        self.ns = Netns(f"gossip{index}")
        self.dir = os.path.join(cluster.workdir, self.name)
        self.key_file = key_file
        self.proc = None
        self.log = None

    def start(self, join):
        self.log = open(os.path.join(self.dir + ".log"), "a+")
        argv = [binary("meshd-controller"), "--listen", "0.0.0.0:4190", "--data-dir", self.dir,
                "--cluster-key-file", self.key_file, "--gossip-listen", f"{self.ip}:4192",
                "--node-name", self.name, "--gossip-sync-interval", SYNC_INTERVAL]
        if join:
            argv += ["--join", ",".join(join)]
        self.proc = self.ns.spawn(argv, stdout=self.log, stderr=self.log)
        wait_for(lambda: self.proc.poll() is not None or self.ctl("members", check=False).returncode == 0, 10,
                 f"controller {self.name}")
        assert self.proc.poll() is None, self.read_log()

    def read_log(self):
        self.log.seek(0)
        return self.log.read()

    def ctl(self, *args, check=True):
        r = self.ns.exec([binary("meshd-ctl")] + list(args) + ["--controller", "127.0.0.1:4190"], check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"meshd-ctl {' '.join(args)} on {self.name}: {r.stderr}")
        return r

    def members(self):
        r = self.ctl("members", "-o", "json", check=False)
        if r.returncode != 0:
            return {}
        return {m["name"]: m for m in json.loads(r.stdout)["members"]}

    def services(self):
        r = self.ctl("services", "-o", "json", check=False)
        if r.returncode != 0:
            return {}
        return {s["name"]: s for s in json.loads(r.stdout)["services"]}

    def endpoints(self, service):
        return self.services().get(service, {}).get("endpoints", 0)

    def metrics(self):
        r = self.ns.exec([PYTHON, APPS, "get", "http://127.0.0.1:4194/metrics"])
        out = json.loads(r.stdout)
        assert out["status"] == 200, out
        return parse_metrics(out["body"])


class Cluster:
    """Replicas on one bridge (in a namespace of its own), all stopped and
    deleted on close, by pid and by name, also when a test fails."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.replicas = []
        self.hub = Netns("gossiphub")
        self.hub.exec(["ip", "link", "add", "br0", "type", "bridge"])
        self.hub.exec(["ip", "link", "set", "br0", "up"])
        self.key = self.write_key("cluster.key", os.urandom(32).hex())

    def write_key(self, name, text):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text + "\n")
        return path

    def add(self, key_file=None):
        r = Replica(self, len(self.replicas) + 1, key_file or self.key)
        self.replicas.append(r)
        tag = f"{os.getpid() % 10000}g{r.index}"
        inner, outer = f"vi{tag}", f"vo{tag}"
        run(["ip", "link", "add", inner, "type", "veth", "peer", "name", outer])
        run(["ip", "link", "set", inner, "netns", r.ns.name])
        run(["ip", "link", "set", outer, "netns", self.hub.name])
        self.hub.exec(["ip", "link", "set", outer, "master", "br0"])
        self.hub.exec(["ip", "link", "set", outer, "up"])
        r.ns.exec(["ip", "addr", "add", f"{r.ip}/24", "dev", inner])
        r.ns.exec(["ip", "link", "set", inner, "up"])
        return r

    def start(self, n):
        for _ in range(n):
            self.add()
        self.replicas[0].start([])
        for r in self.replicas[1:]:
            r.start([f"{self.replicas[0].ip}:4192"])
        for r in self.replicas:
            wait_for(lambda: sum(m["state"] == "alive" for m in r.members().values()) == n, 10,
                     f"{r.name} to see {n} alive members")

    def close(self):
        problems = []
        for r in self.replicas:
            if r.proc is not None and r.proc.poll() is None:
                code = stop(r.proc, signal.SIGTERM, timeout=10)
                log = r.read_log()
                if code != 0 or "Sanitizer" in log or "runtime error:" in log:
                    problems.append(f"{r.name} exited {code}:\n{log[-3000:]}")
            r.ns.close()
        self.hub.close()
        if problems:
            raise AssertionError("\n".join(problems))


@pytest.fixture
def cluster():
    with tempfile.TemporaryDirectory(prefix="meshd-gossip-") as d:
        c = Cluster(d)
        try:
            yield c
        finally:
            c.close()


@pytest.mark.timeout(60)
def test_a_registration_on_one_replica_is_served_by_all(cluster):
    cluster.start(3)
    c1, c2, c3 = cluster.replicas
    c1.ctl("register", "web.prod", "10.0.0.7:8080", "--owner", "api:ops")
    wait_for(lambda: c3.endpoints("web.prod") == 1 and c2.endpoints("web.prod") == 1, 5,
             "the registration to reach c2 and c3")
    # And back: a delete on c3 reaches c1.
    c3.ctl("deregister", "web.prod", "10.0.0.7:8080")
    wait_for(lambda: "web.prod" not in c1.services(), 5, "the delete to reach c1")
    m = c1.metrics()
    assert m['gossip_members{state="alive"}'] == 3
    assert m["gossip_entries_applied_total"] >= 1
    assert sum(v for k, v in m.items() if k.startswith("gossip_packets_dropped_total")) == 0
    text = c1.ctl("members").stdout
    assert "*c1" in text and "c3" in text and "alive" in text
    # A clean shutdown says goodbye: left, not dead after a suspicion.
    assert stop(c3.proc, signal.SIGTERM) == 0
    wait_for(lambda: c1.members()["c3"]["state"] == "left", 3, "c1 to see c3 leave")


@pytest.mark.timeout(90)
def test_a_killed_replica_is_declared_dead_and_catches_up_when_back(cluster):
    cluster.start(3)
    c1, c2, c3 = cluster.replicas
    c3.proc.kill()
    c3.proc.wait(timeout=10)
    killed = time.monotonic()
    # Probe 1s, then suspicion 5 probes: dead within about 7s.
    wait_for(lambda: c1.members()["c3"]["state"] == "dead", 15, "c1 to declare c3 dead")
    took = time.monotonic() - killed
    assert took >= 3, f"declared dead after {took:.1f}s: before any suspicion could time out"
    assert c2.members()["c3"]["state"] in ("suspect", "dead")
    # Changes while it is down reach it when it is back (it joins by push-pull).
    c1.ctl("register", "api.prod", "10.0.0.21:9000")
    c3.start([f"{c1.ip}:4192"])
    wait_for(lambda: c3.endpoints("api.prod") == 1, 10, "the restarted c3 to catch up")
    wait_for(lambda: c1.members()["c3"]["state"] == "alive", 10, "c1 to see c3 alive again")
    assert c1.members()["c3"]["incarnation"] >= 1  # it refuted its death


@pytest.mark.timeout(90)
def test_a_partitioned_replica_converges_after_the_partition_heals(cluster):
    cluster.start(3)
    c1, c2, c3 = cluster.replicas
    rules = [["INPUT", "-s", f"{SUBNET}.0/24", "-j", "DROP"], ["OUTPUT", "-d", f"{SUBNET}.0/24", "-j", "DROP"]]
    for rule in rules:
        c2.ns.exec(["iptables", "-I"] + rule)
    c1.ctl("register", "db.prod", "10.0.1.5:5432")
    wait_for(lambda: c3.endpoints("db.prod") == 1, 5, "c3 to get the change")
    # Longer than the piggyback retransmits and a suspicion: only
    # anti-entropy can bring the change to c2 now.
    wait_for(lambda: c1.members()["c2"]["state"] == "dead", 15, "c1 to give up on c2")
    assert c2.endpoints("db.prod") == 0
    for rule in rules:
        c2.ns.exec(["iptables", "-D"] + rule)
    wait_for(lambda: c2.endpoints("db.prod") == 1, 15, "c2 to converge after the heal")
    wait_for(lambda: c1.members()["c2"]["state"] == "alive", 15, "c1 to see c2 alive again")
    assert c2.metrics()['anti_entropy_syncs_total{result="ok"}'] >= 1


@pytest.mark.timeout(60)
def test_a_replica_with_another_key_is_not_admitted(cluster):
    cluster.start(2)
    c1, c2 = cluster.replicas
    intruder = cluster.add(cluster.write_key("other.key", os.urandom(32).hex()))
    intruder.start([f"{c1.ip}:4192"])
    intruder.ctl("register", "evil.prod", "10.6.6.6:80")
    wait_for(lambda: c1.metrics()['gossip_packets_dropped_total{reason="wrong_cluster"}'] >= 1, 10,
             "c1 to drop the intruder's packets")
    time.sleep(3)
    assert set(c1.members()) == {"c1", "c2"}
    assert set(intruder.members()) == {"c3"}
    assert "evil.prod" not in c1.services() and "evil.prod" not in c2.services()


FORGER = r"""
import hashlib, hmac, os, socket, struct, sys, time
key = bytes.fromhex(open(sys.argv[1]).read().strip())
key_id = hmac.new(key, b"meshd gossip key id", hashlib.sha256).digest()[:4]
def seal(payload, sent_ms, mac_key=key):
    head = b"MGS1" + key_id + struct.pack(">QQ", sent_ms, int.from_bytes(os.urandom(8), "big"))
    return head + hmac.new(mac_key, head + payload, hashlib.sha256).digest() + payload
now = int(time.time() * 1000)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
valid = seal(b"", now)  # an empty Packet, properly sealed
for packet in (b"garbage", seal(b"", now - 120000), seal(b"", now, b"x" * 32), valid, valid,
               seal(b"\xff\xff\xff", now), b"x" * 2000):
    s.sendto(packet, (sys.argv[2], 4192))
"""


@pytest.mark.timeout(60)
def test_bad_packets_are_dropped_and_counted(cluster):
    cluster.start(2)
    c1, c2 = cluster.replicas
    c2.ns.exec([PYTHON, "-c", FORGER, cluster.key, c1.ip])
    want = {"malformed": 2, "stale": 1, "bad_mac": 1, "replay": 1, "oversize": 1}

    def dropped():
        m = c1.metrics()
        return {r: m[f'gossip_packets_dropped_total{{reason="{r}"}}'] for r in want}

    wait_for(lambda: dropped() == want, 5, f"the drops to be counted (got {dropped()})")
    assert c1.proc.poll() is None
    assert c1.members()["c2"]["state"] == "alive"


@pytest.mark.timeout(30)
def test_gossip_without_a_good_key_is_one_clear_line(cluster):
    r = cluster.add()
    short = cluster.write_key("short.key", "tooshort")
    for extra, expect in (([], "needs a cluster key: --cluster-key-file"),
                          (["--cluster-key-file", short], "holds 8 bytes; at least 32")):
        p = subprocess.run(r.ns.cmd([binary("meshd-controller"), "--data-dir", r.dir, "--join", "10.88.0.1:4192"] +
                                    extra), capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and expect in lines[0], p.stderr


@pytest.mark.timeout(90)
def test_a_lease_renewed_on_one_replica_lives_on_all_and_expires_everywhere(cluster):
    cluster.start(3)
    c1, c2, c3 = cluster.replicas
    register = ["register", "cache.prod", "10.0.0.31:6379", "--owner", "lease:proxy-1", "--lease", "3s"]
    c1.ctl(*register)
    wait_for(lambda: c3.endpoints("cache.prod") == 1, 5, "the leased entry to reach c3")
    # Renewed on c1 only (a proxy re-registers with its controller), for
    # more than twice the lease: c3 keeps it because it hears the renewals.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        c1.ctl(*register)
        assert c3.endpoints("cache.prod") == 1
        time.sleep(0.7)
    # The owner stops renewing: gone from every replica.
    for r in (c1, c2, c3):
        wait_for(lambda: r.endpoints("cache.prod") == 0, 8, f"the lease to expire on {r.name}")
