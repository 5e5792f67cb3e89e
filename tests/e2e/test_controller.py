"""meshd-controller, first steps of issue 3: a registry file it watches, a
disk that keeps what it acknowledged, an API that survives garbage, and
meshd-ctl services. Each test runs the controller in a namespace of its own."""
import json
import os
import signal
import tempfile
import time

import pytest

from mesh import APPS, PYTHON, Netns, binary, parse_metrics, stop, wait_for

REGISTRY = """
[[service]]
name = "web.prod"
ports = [80]
virtual_addresses = ["10.96.0.10:80"]
protocol = "http1"

  [[service.endpoint]]
  address = "10.0.0.7:8080"

  [[service.endpoint]]
  address = "10.0.0.8:8080"
"""


@pytest.fixture
def ns():
    n = Netns("ctrl")
    yield n
    n.close()


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory(prefix="meshd-controller-") as d:
        yield d


def start_controller(ns, workdir, registry=True, listen="127.0.0.1:4190"):
    log = open(os.path.join(workdir, "controller.log"), "a+")
    argv = [binary("meshd-controller"), "--listen", listen, "--data-dir", os.path.join(workdir, "data")]
    if registry:
        argv += ["--registry-file", os.path.join(workdir, "registry.toml")]
    p = ns.spawn(argv, stdout=log, stderr=log)
    wait_for(lambda: p.poll() is not None or services(ns, check=False) is not None, 10, "the controller")
    assert p.poll() is None, open(log.name).read()
    return p, log


def services(ns, check=True):
    r = ns.exec([binary("meshd-ctl"), "services", "-o", "json"], check=False)
    if r.returncode != 0:
        if check:
            raise AssertionError(r.stderr)
        return None
    return {s["name"]: s for s in json.loads(r.stdout)["services"]}


def metrics(ns):
    r = ns.exec([PYTHON, APPS, "get", "http://127.0.0.1:4194/metrics"])
    out = json.loads(r.stdout)
    assert out["status"] == 200, out
    return parse_metrics(out["body"])


def write(workdir, text):
    path = os.path.join(workdir, "registry.toml")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


@pytest.mark.timeout(60)
def test_registry_file_is_served_and_watched(ns, workdir):
    write(workdir, REGISTRY)
    p, log = start_controller(ns, workdir)
    s = services(ns)
    assert s["web.prod"]["endpoints"] == 2 and s["web.prod"]["virtual_addresses"] == ["10.96.0.10:80"]
    # An edit applies without a restart.
    write(workdir, REGISTRY + '\n[[service]]\nname = "db.prod"\nprotocol = "opaque"\n')
    wait_for(lambda: "db.prod" in services(ns), 5, "the edit to apply")
    # A bad edit is refused with its line, and the last good state stays.
    write(workdir, REGISTRY + '\n[[service]]\nname = "db.prod"\n  [[service.endpoint]]\n  adress = "10.0.0.9:5432"\n')
    time.sleep(1)
    assert set(services(ns)) == {"web.prod", "db.prod"}
    assert stop(p, signal.SIGTERM) == 0
    log.seek(0)
    assert "registry.toml:17: unknown key 'adress' in an endpoint" in log.read()


@pytest.mark.timeout(60)
def test_state_survives_a_restart(ns, workdir):
    write(workdir, REGISTRY)
    p, _ = start_controller(ns, workdir)
    assert stop(p, signal.SIGTERM) == 0
    os.remove(os.path.join(workdir, "registry.toml"))
    # Without its file, the controller serves what it had acknowledged.
    p, _ = start_controller(ns, workdir, registry=False)
    assert services(ns)["web.prod"]["endpoints"] == 2
    assert stop(p, signal.SIGTERM) == 0


@pytest.mark.timeout(60)
def test_garbage_on_the_api_closes_that_stream_only(ns, workdir):
    write(workdir, REGISTRY)
    p, log = start_controller(ns, workdir)
    probe = ns.spawn(["/usr/bin/python3", "-c", """
import socket, sys
s = socket.create_connection(("127.0.0.1", 4190), timeout=5)
s.sendall(b"\\xff\\xff\\xff\\xff" + b"x" * 64)  # a frame of 4 GiB announced
print("closed" if s.recv(1) == b"" else "open")
"""])
    assert probe.wait(timeout=10) == 0 and probe.stdout.read().strip() == "closed"
    assert services(ns)["web.prod"]["endpoints"] == 2  # everyone else is still served
    assert metrics(ns)['controller_streams_closed_total{reason="bad_input"}'] == 1
    assert stop(p, signal.SIGTERM) == 0
    log.seek(0)
    assert "frame of 4294967295 bytes announced" in log.read()


@pytest.mark.timeout(30)
def test_no_controller_is_one_clear_line(ns):
    r = ns.exec([binary("meshd-ctl"), "services"], check=False)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("meshd-ctl: no controller answering at 127.0.0.1:4190")


def ctl(ns, *args, check=True):
    r = ns.exec([binary("meshd-ctl")] + list(args), check=False)
    if check and r.returncode != 0:
        raise AssertionError(r.stderr)
    return r


@pytest.mark.timeout(60)
def test_register_and_deregister_are_acknowledged_durably(ns, workdir):
    p, _ = start_controller(ns, workdir, registry=False)
    ctl(ns, "register", "api.prod", "10.0.0.21:9000", "--owner", "api:ops", "--label", "zone=a,version=v1")
    ctl(ns, "register", "api.prod", "[FD00::22]:9000", "--owner", "api:ops", "--weight", "50")
    assert services(ns)["api.prod"]["endpoints"] == 2
    # The ack means on disk: a restart keeps both.
    assert stop(p, signal.SIGTERM) == 0
    p, _ = start_controller(ns, workdir, registry=False)
    assert services(ns)["api.prod"]["endpoints"] == 2
    # Only the owner (or anyone, without --owner) may deregister.
    r = ctl(ns, "deregister", "api.prod", "10.0.0.21:9000", "--owner", "api:intruder", check=False)
    assert r.returncode == 1 and "belongs to api:ops" in r.stderr
    ctl(ns, "deregister", "api.prod", "[fd00::22]:9000")
    assert services(ns)["api.prod"]["endpoints"] == 1
    r = ctl(ns, "register", "Bad_Name", "10.0.0.1:1", check=False)
    assert r.returncode == 1 and "'Bad_Name'" in r.stderr
    r = ctl(ns, "register", "api.prod", "10.0.0.1", check=False)
    assert r.returncode == 2 and "IP:PORT" in r.stderr
    assert stop(p, signal.SIGTERM) == 0


@pytest.mark.timeout(60)
def test_an_owner_that_disappears_loses_its_entries_when_the_lease_expires(ns, workdir):
    p, log = start_controller(ns, workdir, registry=False)
    ctl(ns, "register", "cache.prod", "10.0.0.31:6379", "--owner", "lease:node-a", "--lease", "2s")
    ctl(ns, "register", "cache.prod", "10.0.0.32:6379", "--owner", "lease:node-b", "--lease", "2s")
    assert services(ns)["cache.prod"]["endpoints"] == 2
    # node-b keeps renewing (by registering again); node-a goes quiet.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        ctl(ns, "register", "cache.prod", "10.0.0.32:6379", "--owner", "lease:node-b", "--lease", "2s")
        time.sleep(0.5)
    assert services(ns)["cache.prod"]["endpoints"] == 1
    m = metrics(ns)
    assert m["controller_leases_expired_total"] == 1 and m["controller_registry_entries"] == 1
    assert stop(p, signal.SIGTERM) == 0
    log.seek(0)
    assert "lease of lease:node-a expired: removing its 1 entries" in log.read()


@pytest.mark.timeout(90)
def test_a_proxy_registers_what_it_fronts_and_leaves_on_shutdown(workdir):
    """meshd --register on one host, the controller on the other: the
    endpoint appears with the host's address, is renewed, disappears at once
    on a clean shutdown, and by lease expiry when the proxy is killed."""
    from mesh import Pair
    p = Pair()
    try:
        ctrl, log = start_controller(p.client.ns, workdir, registry=False, listen="0.0.0.0:4190")
        flags = ["--controller", "10.77.0.1:4190", "--register", "echo.prod=8080", "--register-lease", "3s"]
        assert stop(p.server.meshd, signal.SIGTERM) == 0
        p.server.start_meshd(*flags)
        wait_for(lambda: services(p.client.ns).get("echo.prod", {}).get("endpoints") == 1, 10, "the registration")
        time.sleep(4)  # longer than the lease: renewals keep it
        assert services(p.client.ns)["echo.prod"]["endpoints"] == 1
        # A clean shutdown deregisters at once.
        assert stop(p.server.meshd, signal.SIGTERM) == 0
        assert "echo.prod" not in services(p.client.ns)  # its only entry is gone
        # A killed proxy cannot: its lease expires.
        p.server.start_meshd(*flags)
        wait_for(lambda: "echo.prod" in services(p.client.ns), 10, "the registration again")
        p.server.meshd.kill()
        p.server.meshd.wait(timeout=10)
        p.server.meshd = None
        wait_for(lambda: "echo.prod" not in services(p.client.ns), 10, "the lease to expire")
        assert stop(ctrl, signal.SIGTERM) == 0
        log.seek(0)
        assert "lease of lease:" in log.read()
    finally:
        p.close()
