"""meshd's own behaviour, each test in a namespace of its own with explicit
--forward listeners on its loopback: limits, timeouts, drain, and the errors
an operator sees for bad settings."""
import os
import signal
import subprocess
import tempfile
import time

import pytest

from mesh import APPS, PYTHON, Host, binary, wait_for

BACKEND = 7000
FRONT = 7001


@pytest.fixture
def host():
    h = Host("proxy", "10.78.0.1", "fd78::1")
    yield h
    h.close()


def forward(host, *flags, target=f"127.0.0.1:{BACKEND}"):
    host.serve(BACKEND)
    return host.start_meshd("--forward", f"127.0.0.1:{FRONT}={target}", "--outbound-listen", "off",
                            "--inbound-listen", "off", *flags)


def metric(host, name):
    return host.metrics().get(name, 0)


@pytest.mark.timeout(60)
def test_explicit_forward(host):
    forward(host)
    up = host.ns.app("upload", "127.0.0.1", FRONT, 1 << 20, 1)
    assert up["sha256"] == up["expected_sha256"]
    status = host.status()
    assert status["listeners"] == [{"name": "forward", "address": f"127.0.0.1:{FRONT}", "direction": "outbound",
                                    "target": f"127.0.0.1:{BACKEND}"}]
    assert status["directions"]["outbound"]["opened_total"] == 1


@pytest.mark.timeout(60)
def test_max_connections_refuses_and_counts(host):
    forward(host, "--max-connections", "2")
    holders = [host.ns.spawn([PYTHON, APPS, "hold", "127.0.0.1", str(FRONT), "3"]) for _ in range(2)]
    wait_for(lambda: host.status()["directions"]["outbound"]["open"] == 2, 10, "two open connections")
    out = host.ns.app("outcome", "127.0.0.1", FRONT, "ECHO")
    assert out["outcome"] in ("reset", "eof"), out
    assert metric(host, 'tcp_refused_total{direction="outbound",reason="max_connections"}') == 1
    for p in holders:  # the two admitted connections still work
        assert p.wait(timeout=20) == 0
        assert '"second": "pong"' in p.stdout.read()


@pytest.mark.timeout(60)
def test_idle_timeout_closes_quiet_connections(host):
    forward(host, "--idle-timeout", "1s")
    out = host.ns.app("hold", "127.0.0.1", FRONT, 2.5)
    assert out["first"] == "ping" and out["second"] != "pong", out
    assert metric(host, 'tcp_close_total{direction="outbound",classification="failure",error="idle_timeout"}') == 1


@pytest.mark.timeout(60)
def test_readers_that_never_read_do_not_starve_others(host):
    """Clients that ask for a lot and never read must not pin the worker's
    receive buffers: what their sockets cannot take waits in per-connection
    spill buffers, and everyone else keeps being served."""
    # A small ring: without spilling, three stalled connections would hold
    # every buffer.
    forward(host, "--threads", "1", "--buffers-per-thread", "4")
    stall = host.ns.spawn([PYTHON, APPS, "stall", "127.0.0.1", str(FRONT), "40", str(64 << 20), "8"])
    assert "stalling" in stall.stdout.readline()

    wait_for(lambda: host.status()["directions"]["outbound"]["open"] == 40, 10, "40 stalled connections")
    time.sleep(2)  # their sockets fill up; the proxy's writes to them stop
    up = host.ns.app("upload", "127.0.0.1", FRONT, 1 << 20, 7, timeout=20)
    assert up["sha256"] == up["expected_sha256"]
    assert host.ns.app("who", "127.0.0.1", FRONT)["peer"] == "127.0.0.1"
    m = host.metrics()
    assert m["meshd_spill_bytes_in_use"] > 0, m
    assert m["meshd_buffer_bytes_in_use"] < m["meshd_buffer_pool_bytes"], m
    stall.kill()
    stall.wait(timeout=10)


@pytest.mark.timeout(60)
def test_connect_timeout(host):
    # A route into a link whose far end drops everything: the SYN is never
    # answered.
    host.ns.exec(["ip", "link", "add", "bh0", "type", "veth", "peer", "name", "bh1"])
    host.ns.exec(["ip", "link", "set", "bh0", "up"])
    host.ns.exec(["ip", "route", "add", "10.79.0.0/16", "dev", "bh0"])
    host.ns.exec(["iptables", "-A", "OUTPUT", "-d", "10.79.0.0/16", "-j", "DROP"])
    forward(host, "--connect-timeout", "500ms", target="10.79.0.9:80")
    out = host.ns.app("outcome", "127.0.0.1", FRONT, "ECHO")
    assert out["outcome"] == "reset" and out["seconds"] < 3, out
    assert metric(host, 'tcp_close_total{direction="outbound",classification="failure",error="connect_timeout"}') == 1


@pytest.mark.timeout(60)
def test_not_redirected_connection_is_refused_not_looped(host):
    host.start_meshd("--inbound-listen", "off")  # outbound on 127.0.0.1:4140, no rules installed
    out = host.ns.app("outcome", "127.0.0.1", 4140, "ECHO")
    assert out["outcome"] in ("reset", "eof"), out
    assert metric(host, 'tcp_close_total{direction="outbound",classification="failure",error="no_original_dst"}') == 1


@pytest.mark.timeout(60)
def test_sigterm_drains_open_connections_then_exits_0(host):
    meshd = forward(host, "--drain-timeout", "10s")
    holder = host.ns.spawn([PYTHON, APPS, "hold", "127.0.0.1", str(FRONT), "2"])
    wait_for(lambda: host.status()["directions"]["outbound"]["open"] == 1, 10, "an open connection")
    meshd.send_signal(signal.SIGTERM)
    # New connections are no longer accepted...
    wait_for(lambda: host.ns.app("outcome", "127.0.0.1", FRONT)["outcome"] == "refused", 5, "listener to close")
    # ...while the open one finishes its exchange.
    assert holder.wait(timeout=20) == 0
    assert '"second": "pong"' in holder.stdout.read()
    assert meshd.wait(timeout=10) == 0


@pytest.mark.timeout(60)
def test_drain_deadline_cuts_what_is_left(host):
    meshd = forward(host, "--drain-timeout", "500ms")
    holder = host.ns.spawn([PYTHON, APPS, "hold", "127.0.0.1", str(FRONT), "5"])
    wait_for(lambda: host.status()["directions"]["outbound"]["open"] == 1, 10, "an open connection")
    start = time.monotonic()
    meshd.send_signal(signal.SIGTERM)
    assert meshd.wait(timeout=10) == 0
    assert time.monotonic() - start < 3
    holder.wait(timeout=20)
    assert '"second": "pong"' not in holder.stdout.read()


def meshd_error(*args, env=None, netns=None):
    argv = [binary("meshd")] + list(args)
    if netns is not None:
        argv = netns.cmd(argv)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                       env={**os.environ, **(env or {})})
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    return r.returncode, lines


@pytest.mark.timeout(30)
@pytest.mark.parametrize("args,env,expect", [
    (["--connect-timeout", "5x"], None, "--connect-timeout '5x'"),
    (["--threads", "0"], None, "--threads '0'"),
    (["--forward", "127.0.0.1:9000"], None, "LISTEN=TARGET"),
    (["--forward", "127.0.0.1:9000=web!prod:80"], None, "web!prod"),
    (["--admin", "127.0.0.1:99999"], None, "99999"),
    (["--no-such-flag", "1"], None, "unknown flag --no-such-flag"),
    (["--buffers-per-thread", "300"], None, "power of two"),
    ([], {"MESHD_IDLE_TIMEOUT": "soon"}, "MESHD_IDLE_TIMEOUT 'soon'"),
    (["--outbound-listen", "127.0.0.1:5000", "--inbound-listen", "127.0.0.1:5000"], None, "used twice"),
])
def test_bad_settings_exit_2_with_one_line(args, env, expect):
    code, lines = meshd_error(*args, env=env)
    assert code == 2
    assert len(lines) == 1 and expect in lines[0], lines


@pytest.mark.timeout(30)
def test_bad_config_file_line_is_named():
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write("# meshd\nthreads = 1\nmax-connections = lots\n")
        f.flush()
        code, lines = meshd_error("--config", f.name)
    assert code == 2 and len(lines) == 1
    assert f"{f.name}:3" in lines[0] and "max-connections" in lines[0] and "lots" in lines[0]


@pytest.mark.timeout(30)
def test_settings_from_file_env_and_flags(host):
    """Flags win over the environment, which wins over the file."""
    host.serve(BACKEND)
    with tempfile.NamedTemporaryFile("w", suffix=".conf", dir="/tmp") as f:
        f.write(f"forward = 127.0.0.1:{FRONT}=127.0.0.1:{BACKEND}\nmax-connections = 7\n"
                "idle-timeout = 9s\nconnect-timeout = 9s\noutbound-listen = off\ninbound-listen = off\n")
        f.flush()
        os.chmod(f.name, 0o644)
        host.start_meshd(argv=["env", "MESHD_IDLE_TIMEOUT=8s", "MESHD_CONNECT_TIMEOUT=8s", binary("meshd"),
                               "--config", f.name, "--connect-timeout", "7s"])
        cfg = host.status()["config"]
    assert (cfg["max_connections"], cfg["idle_timeout_ms"], cfg["connect_timeout_ms"]) == (7, 8000, 7000)
    up = host.ns.app("upload", "127.0.0.1", FRONT, 1000, 1)
    assert up["sha256"] == up["expected_sha256"]


@pytest.mark.timeout(30)
def test_taken_port_is_one_clear_line(host):
    host.serve(BACKEND)
    code, lines = meshd_error("--forward", f"127.0.0.1:{BACKEND}=127.0.0.1:1", "--outbound-listen", "off",
                              "--inbound-listen", "off", netns=host.ns)
    assert code == 1 and len(lines) == 1 and f"cannot listen on 127.0.0.1:{BACKEND}" in lines[0], lines


@pytest.mark.timeout(30)
def test_second_meshd_cannot_share_the_first_ones_ports(host):
    """Every listener is a SO_REUSEPORT group; a second meshd must still not
    join it and take half the connections."""
    forward(host)
    code, lines = meshd_error("--forward", f"127.0.0.1:{FRONT}=127.0.0.1:{BACKEND}", "--outbound-listen", "off",
                              "--inbound-listen", "off", "--admin", "127.0.0.1:4192", netns=host.ns)
    assert code == 1 and len(lines) == 1 and f"cannot listen on 127.0.0.1:{FRONT}" in lines[0], lines


@pytest.mark.timeout(30)
def test_admin_endpoints(host):
    forward(host)
    assert host.ns.app("get", "http://127.0.0.1:4191/live")["status"] == 200
    assert host.ns.app("get", "http://127.0.0.1:4191/ready")["status"] == 200
    assert host.ns.app("get", "http://127.0.0.1:4191/nope")["status"] == 404
    body = host.ns.app("get", "http://127.0.0.1:4191/metrics")["body"]
    for family in ("tcp_open_total", "tcp_close_total", "tcp_open_connections", "tcp_read_bytes_total",
                   "tcp_write_bytes_total", "process_resident_memory_bytes", "meshd_build_info"):
        assert f"# TYPE {family} " in body
    # The proxy runs as the proxy uid once its sockets are bound.
    with open(f"/proc/{host.meshd.pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == ["2102"] * 4
