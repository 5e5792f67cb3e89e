"""meshd-init against real iptables, each test in network namespaces it
creates and always deletes.

Run as root: MESHD_BUILD=/path/to/build /usr/bin/python3 -m pytest tests/e2e/test_init.py
"""

import itertools
import os
import re
import select
import subprocess
import tempfile
import textwrap

import pytest

BUILD = os.environ.get("MESHD_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
INIT = os.path.join(BUILD, "meshd-init")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, iptables)"),
    pytest.mark.skipif(not os.path.exists(INIT), reason=f"{INIT} not built"),
]

_counter = itertools.count()


def _run(cmd, check=True, timeout=20, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}: {r.stderr.strip()}")
    return r


def ns_run(ns, *cmd, check=True, **kw):
    return _run(["ip", "netns", "exec", ns, *cmd], check=check, **kw)


def meshd_init(ns, *args, check=False):
    return ns_run(ns, INIT, *args, check=check)


def nat(ns, ipv6=False):
    """The nat table, without what changes between two identical saves:
    '#' lines (tool version, timestamps) and packet/byte counters."""
    out = ns_run(ns, "ip6tables-save" if ipv6 else "iptables-save", "-t", "nat").stdout
    lines = [l for l in out.splitlines() if not l.startswith("#")]
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[0:0]", l) for l in lines)


@pytest.fixture
def make_netns():
    """Creates uniquely named namespaces (loopback up); deletes them after
    the test, pass or fail."""
    created = []

    def make():
        name = f"mi{os.getpid()}-{next(_counter)}"
        _run(["ip", "netns", "add", name])
        created.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    yield make
    for name in created:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


@pytest.fixture
def netns(make_netns):
    return make_netns()


@pytest.fixture
def procs():
    """Processes a test starts; killed by pid afterwards."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def add_unrelated_rules(ns):
    # Someone else's rules, in the chains meshd-init hooks into and in a
    # chain of their own: they must survive apply and cleanup untouched.
    ns_run(ns, "iptables", "-t", "nat", "-N", "OTHER")
    ns_run(ns, "iptables", "-t", "nat", "-A", "OTHER", "-p", "udp", "--dport", "53", "-j", "RETURN")
    ns_run(ns, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "udp", "-j", "OTHER")
    ns_run(ns, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "192.0.2.1", "-p", "tcp",
           "-m", "comment", "--comment", "keep me", "-j", "DNAT", "--to-destination", "192.0.2.2")
    ns_run(ns, "ip6tables", "-t", "nat", "-A", "OUTPUT", "-d", "2001:db8::1", "-p", "tcp",
           "-j", "DNAT", "--to-destination", "[2001:db8::2]")


EXPECTED_V4 = [
    "-A PREROUTING -p tcp -j MESHD_INBOUND",
    "-A OUTPUT -p tcp -j MESHD_OUTPUT",
    "-A MESHD_INBOUND -p tcp -m tcp --dport 4190 -j RETURN",
    "-A MESHD_INBOUND -p tcp -m tcp --dport 4191 -j RETURN",
    "-A MESHD_INBOUND -p tcp -m tcp --dport 4192 -j RETURN",
    "-A MESHD_INBOUND -p tcp -j MESHD_INBOUND_REDIRECT",
    "-A MESHD_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 4143",
    "-A MESHD_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 4140",
    "-A MESHD_OUTPUT -m owner --uid-owner 2102 -j RETURN",
    "-A MESHD_OUTPUT -o lo -j RETURN",
    "-A MESHD_OUTPUT -p tcp -j MESHD_OUTBOUND_REDIRECT",
]


@pytest.mark.timeout(60)
def test_apply_installs_chains_jumps_and_redirects(netns):
    r = meshd_init(netns, "--ipv6", "--skip-inbound-ports", "22,8000-8100",
                   "--skip-outbound-ports", "3306", "--skip-subnets", "10.96.0.0/12,fd00::/8")
    assert r.returncode == 0, r.stderr
    v4, v6 = nat(netns).splitlines(), nat(netns, ipv6=True).splitlines()
    for table in (v4, v6):
        for line in EXPECTED_V4:
            assert line in table
        for chain in ("MESHD_INBOUND", "MESHD_INBOUND_REDIRECT", "MESHD_OUTPUT", "MESHD_OUTBOUND_REDIRECT"):
            assert f":{chain} - [0:0]" in table
        assert "-A MESHD_INBOUND -p tcp -m tcp --dport 22 -j RETURN" in table
        assert "-A MESHD_INBOUND -p tcp -m tcp --dport 8000:8100 -j RETURN" in table
        assert "-A MESHD_OUTPUT -p tcp -m tcp --dport 3306 -j RETURN" in table
    # Each subnet lands in its own family only.
    assert "-A MESHD_OUTPUT -d 10.96.0.0/12 -j RETURN" in v4
    assert not any("fd00::/8" in l for l in v4)
    assert "-A MESHD_OUTPUT -d fd00::/8 -j RETURN" in v6
    assert not any("10.96.0.0" in l for l in v6)


@pytest.mark.timeout(60)
def test_applying_twice_changes_nothing(netns):
    add_unrelated_rules(netns)
    assert meshd_init(netns, "--ipv6").returncode == 0
    first = (nat(netns), nat(netns, ipv6=True))
    r = meshd_init(netns, "--ipv6")
    assert r.returncode == 0, r.stderr
    assert (nat(netns), nat(netns, ipv6=True)) == first
    lines = first[0].splitlines()
    assert sum(l.startswith("-A PREROUTING") and l.endswith("-j MESHD_INBOUND") for l in lines) == 1
    assert sum(l.startswith("-A OUTPUT") and l.endswith("-j MESHD_OUTPUT") for l in lines) == 1


@pytest.mark.timeout(60)
def test_reapply_with_other_ports_refills_the_chains(netns):
    assert meshd_init(netns).returncode == 0
    assert meshd_init(netns, "--inbound-port", "5143", "--outbound-port", "5140").returncode == 0
    table = nat(netns).splitlines()
    assert "-A MESHD_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 5143" in table
    assert "-A MESHD_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 5140" in table
    assert not any("--to-ports 4143" in l or "--to-ports 4140" in l for l in table)
    assert sum(l.startswith("-A PREROUTING") for l in table) == 1
    assert sum(l.startswith("-A OUTPUT") for l in table) == 1


@pytest.mark.timeout(60)
def test_cleanup_restores_the_table_exactly(netns):
    add_unrelated_rules(netns)
    before = (nat(netns), nat(netns, ipv6=True))
    assert meshd_init(netns, "--ipv6").returncode == 0
    during = nat(netns)
    assert "MESHD_OUTPUT" in during
    assert 'keep me' in during and "-A OTHER -p udp -m udp --dport 53 -j RETURN" in during
    r = meshd_init(netns, "--cleanup", "--ipv6")
    assert r.returncode == 0, r.stderr
    assert (nat(netns), nat(netns, ipv6=True)) == before
    # Cleaning up what is not there is a no-op.
    r = meshd_init(netns, "--cleanup", "--ipv6")
    assert r.returncode == 0, r.stderr
    assert (nat(netns), nat(netns, ipv6=True)) == before


@pytest.mark.timeout(60)
def test_cleanup_removes_both_families_whatever_the_environment_says_now(netns):
    """A service manager's stop runs the cleanup with today's settings: an
    edit since the install (IPv6 turned off, a typo) must not leave traffic
    redirected to a proxy that is gone."""
    before = (nat(netns), nat(netns, ipv6=True))
    assert meshd_init(netns, "--ipv6").returncode == 0
    env = dict(os.environ, MESHD_INIT_SKIP_INBOUND_PORTS="22,80-", MESHD_INIT_IPV6="false")
    install = ns_run(netns, INIT, check=False, env=env)
    assert install.returncode == 2 and "MESHD_INIT_SKIP_INBOUND_PORTS" in install.stderr
    r = ns_run(netns, INIT, "--cleanup", check=False, env=env)
    assert r.returncode == 0, r.stderr
    assert "ignoring" in r.stderr and "80-" in r.stderr
    assert (nat(netns), nat(netns, ipv6=True)) == before


@pytest.mark.timeout(60)
def test_dry_run_changes_nothing_and_prints_the_restore_input(make_netns):
    dry, real = make_netns(), make_netns()
    before = nat(dry)
    r = meshd_init(dry, "--dry-run", "--skip-subnets", "10.0.0.0/8")
    assert r.returncode == 0, r.stderr
    assert nat(dry) == before
    assert r.stdout.startswith("# IPv4: iptables-restore --noflush")
    assert "*nat\n" in r.stdout and r.stdout.endswith("COMMIT\n")
    # What it printed is what it would feed: feeding it by hand gives the
    # same table as letting meshd-init apply it.
    ns_run(dry, "iptables-restore", "--noflush", input=r.stdout)
    assert meshd_init(real, "--skip-subnets", "10.0.0.0/8").returncode == 0
    assert nat(dry) == nat(real)
    # A dry-run cleanup changes nothing either.
    installed = nat(real)
    r = meshd_init(real, "--cleanup", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "-X MESHD_OUTPUT" in r.stdout
    assert nat(real) == installed


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args,named", [
    (["--inbound-port", "70000"], "70000"),
    (["--outbound-port", "0"], "'0'"),
    (["--skip-inbound-ports", "22,x8"], "x8"),
    (["--skip-outbound-ports", "90-80"], "90-80"),
    (["--skip-subnets", "10.0.0.0/33"], "10.0.0.0/33"),
    (["--skip-subnets", "10.0.0.0/8,not-a-cidr"], "not-a-cidr"),
    (["--proxy-uid", "nobody"], "nobody"),
    (["--frobnicate"], "--frobnicate"),
])
def test_bad_flags_exit_2_with_one_line(netns, args, named):
    before = nat(netns)
    r = meshd_init(netns, *args)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert named in lines[0]
    assert nat(netns) == before


@pytest.mark.timeout(60)
def test_without_cap_net_admin_exit_1_with_one_line(netns):
    before = nat(netns)
    r = ns_run(netns, "setpriv", "--reuid=2102", "--regid=2102", "--clear-groups", INIT, check=False)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_NET_ADMIN" in lines[0], r.stderr
    assert nat(netns) == before


@pytest.mark.timeout(60)
def test_iptables_missing_exit_1_with_one_line(netns):
    # Hide /usr/sbin (where iptables lives; /sbin links to it) in a private
    # mount namespace of this one command.
    r = ns_run(netns, "unshare", "--mount", "sh", "-c",
               f"mount -t tmpfs none /usr/sbin && exec {INIT}", check=False)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "iptables-save not found" in lines[0], r.stderr


@pytest.mark.timeout(60)
def test_rules_iptables_refuses_exit_1_and_change_nothing(netns):
    before = nat(netns)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "x.rules"), "w") as f:
            f.write(":MESHD_OUTPUT - [0:0]\n-A MESHD_OUTPUT -p tcp -j MESHD_NO_SUCH_CHAIN\n"
                    "-A OUTPUT -p tcp -j MESHD_OUTPUT\n")
        r = meshd_init(netns, "--templates", d)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "iptables-restore" in lines[0], r.stderr
    assert "MESHD_NO_SUCH_CHAIN" in lines[0]
    # iptables-restore applies all or nothing.
    assert nat(netns) == before


@pytest.mark.timeout(60)
def test_bad_template_exit_2(netns):
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "x.rules"), "w") as f:
            f.write("# fine\n:MESHD_OUTPUT - [0:0]\n-A MESHD_OUTPUT -j REDIRECT --to-ports {{outbund_port}}\n")
        r = meshd_init(netns, "--templates", d)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "meshd-init: x.rules:3: unknown placeholder {{outbund_port}} (known: inbound_port, outbound_port, "
        "proxy_uid, skip_inbound_port, skip_outbound_port, skip_subnet)")


# A stand-in for the proxy (or a plain server): on each connection, replies
# with its tag and the connection's original destination, then closes.
SERVER = textwrap.dedent("""
    import socket, struct, sys
    tag, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(16)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        try:
            raw = c.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
            orig = socket.inet_ntoa(raw[4:8]) + ":" + str(struct.unpack("!H", raw[2:4])[0])
        except OSError:
            orig = "none"
        c.sendall(f"{tag} {orig}".encode())
        c.close()
""")

CLIENT = textwrap.dedent("""
    import socket, sys
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
        print(c.recv(200).decode())
    except OSError as e:
        print("error", e)
""")


def start_server(procs, ns, tag, host, port):
    p = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", SERVER, tag, host, str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    ready, _, _ = select.select([p.stdout], [], [], 10)
    assert ready and p.stdout.readline().strip() == "ready", f"{tag} server did not start"


def who(reply):
    """The tag of the server that answered (its original-destination report
    only means something where a redirect happened)."""
    return reply.split()[0]


def connect(ns, host, port, as_uid=None):
    cmd = ["/usr/bin/python3", "-c", CLIENT, host, str(port)]
    if as_uid is not None:
        cmd = ["setpriv", f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups", *cmd]
    return ns_run(ns, *cmd).stdout.strip()


@pytest.mark.timeout(60)
def test_real_traffic_is_redirected_and_the_proxy_uid_is_not(make_netns, procs):
    # pod (10.99.0.1) <-veth-> peer (10.99.0.2), both namespaces ours.
    pod, peer = make_netns(), make_netns()
    _run(["ip", "-n", pod, "link", "add", "vm0", "type", "veth", "peer", "name", "vp0", "netns", peer])
    _run(["ip", "-n", pod, "addr", "add", "10.99.0.1/24", "dev", "vm0"])
    _run(["ip", "-n", peer, "addr", "add", "10.99.0.2/24", "dev", "vp0"])
    _run(["ip", "-n", pod, "link", "set", "vm0", "up"])
    _run(["ip", "-n", peer, "link", "set", "vp0", "up"])

    start_server(procs, peer, "peer", "10.99.0.2", 80)
    start_server(procs, pod, "outbound-proxy", "127.0.0.1", 4140)
    start_server(procs, pod, "inbound-proxy", "0.0.0.0", 4143)
    start_server(procs, pod, "app", "0.0.0.0", 8080)
    start_server(procs, pod, "admin", "0.0.0.0", 4191)

    # Before: nothing redirected.
    assert who(connect(pod, "10.99.0.2", 80)) == "peer"
    assert who(connect(peer, "10.99.0.1", 8080)) == "app"

    r = meshd_init(pod)
    assert r.returncode == 0, r.stderr

    # The app's outgoing connection reaches the outbound proxy, which can
    # still tell where it was going.
    assert connect(pod, "10.99.0.2", 80) == "outbound-proxy 10.99.0.2:80"
    # The proxy's own connections go where they were sent.
    assert who(connect(pod, "10.99.0.2", 80, as_uid=2102)) == "peer"
    # Incoming connections reach the inbound proxy, except skipped ports.
    assert connect(peer, "10.99.0.1", 8080) == "inbound-proxy 10.99.0.1:8080"
    assert who(connect(peer, "10.99.0.1", 4191)) == "admin"
    # Loopback traffic stays local.
    assert who(connect(pod, "127.0.0.1", 8080)) == "app"

    r = meshd_init(pod, "--cleanup")
    assert r.returncode == 0, r.stderr
    assert who(connect(pod, "10.99.0.2", 80)) == "peer"
    assert who(connect(peer, "10.99.0.1", 8080)) == "app"
