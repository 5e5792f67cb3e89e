"""Identity and mTLS between meshed workloads, in namespaces: a real
controller acting as the CA (meshd-ctl identity init, join tokens), proxies
that get certificates for in-memory keys, and traffic that is encrypted on
the wire between them."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

from mesh import PYTHON, REGISTRY, TRUST_DOMAIN, VIP, Capture, Cluster, binary, run, stop, wait_for

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def mesh():
    c = Cluster(identity=True)
    try:
        c.wait_registered(2)
        yield c
    finally:
        c.close()


def identity_status(host):
    return host.status()["identity"]


def series_sum(m, name, **labels):
    """The sum of name's series in parsed /metrics m that carry at least
    these labels (whatever others they have)."""
    total = 0
    for key, v in m.items():
        if not key.startswith(name + "{"):
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', key[len(name):]))
        if all(have.get(k) == v_ for k, v_ in labels.items()):
            total += v
    return total


def test_every_proxy_gets_a_certificate_for_its_identity(mesh):
    for h in [mesh.client] + mesh.servers:
        st = wait_for(lambda: identity_status(h)["state"] == "valid" and identity_status(h), 10, "a certificate")
        assert st["name"] == mesh.identity_of(h)
        assert st["expires_unix_ms"] > time.time() * 1000 + 3000 * 1000
        m = h.metrics()
        assert m["identity_renewals_total{result=\"ok\"}"] >= 1
    out = run(mesh.client.ns.cmd([binary("meshd-ctl"), "status"])).stdout
    assert f"identity     {mesh.identity_of(mesh.client)} valid, expires in" in out, out
    assert re.search(r"controller   \S+:4190 fresh, TLS, connected", out), out
    # The registrar tells clients what the servers' identities are.
    eps = mesh.endpoints()
    assert sorted(e["identity"] for e in eps["endpoints"]) == sorted(mesh.identity_of(s) for s in mesh.servers)


def test_traffic_between_meshed_workloads_is_encrypted_on_the_wire(mesh):
    marker = "MESHD-SECRET-MARKER-4f1c"
    cap = Capture(mesh.servers[0])
    out = mesh.client.ns.app("marker", VIP, 80, marker, 20)
    wire = cap.bytes()
    assert out == {"ok": 20, "errors": [], "connections": 20}, out
    assert len(wire) > 2000  # the capture saw the traffic
    assert marker.encode() not in wire
    for h, d in ((mesh.client, "outbound"), (mesh.servers[0], "inbound")):
        m = h.metrics()
        done = m[f'tls_handshakes_total{{direction="{d}",resumed="false"}}'] + \
            m[f'tls_handshakes_total{{direction="{d}",resumed="true"}}']
        assert done >= 1, (d, m)
        assert m[f'tls_handshake_failures_total{{direction="{d}"}}'] == 0
    client_id = mesh.identity_of(mesh.client)

    def app_bytes():
        """Bytes over mTLS as the client's proxy (outbound) and the servers'
        (inbound, from this client) count them: (read, write) each."""
        c = mesh.client.metrics()
        s = [h.metrics() for h in mesh.servers]
        out = tuple(series_sum(c, n, direction="outbound", dst="web.prod", tls="true")
                    for n in ("tcp_read_bytes_total", "tcp_write_bytes_total"))
        in_ = tuple(sum(series_sum(m, n, direction="inbound", tls="true", client_id=client_id) for m in s)
                    for n in ("tcp_read_bytes_total", "tcp_write_bytes_total"))
        return out, in_
    before = app_bytes()
    # Half-close crosses mTLS (close_notify, then FIN): the upload's answer
    # comes back after the client shut its side; a download streams whole.
    up = mesh.client.ns.app("upload", VIP, 80, 3 << 20, 7)
    assert (up["sha256"], up["count"]) == (up["expected_sha256"], up["expected_count"]), up
    down = mesh.client.ns.app("download", VIP, 80, 3 << 20, 8)
    assert (down["sha256"], down["count"]) == (down["expected_sha256"], down["expected_count"]), down
    # Both proxies count the application's bytes (the plaintext), not TLS's:
    # what the client sent and received, exactly, on either side of the hop.
    sent = (3 << 20) + len("SINK\n") + len(f"SOURCE {3 << 20} 8\n")
    received = len(f"{up['sha256']} {3 << 20}\n") + (3 << 20)

    def counted():
        after = app_bytes()
        return tuple(tuple(a - b for a, b in zip(after[i], before[i])) for i in range(2))
    deadline = time.monotonic() + 5  # the last bytes are counted as the proxies finish
    while (delta := counted()) != ((sent, received),) * 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert delta == ((sent, received),) * 2, (sent, received, delta)
    # The connections are counted apart, as mutual TLS; inbound by the
    # client's proven identity (none without one: no handshake failed).
    assert mesh.client.metrics()['tcp_open_total{direction="outbound",dst="web.prod",tls="true"}'] >= 20
    m = mesh.servers[0].metrics()
    assert m[f'tcp_open_total{{direction="inbound",tls="true",client_id="{client_id}"}}'] >= 1, m
    assert m[f'tcp_close_total{{direction="inbound",tls="true",client_id="{client_id}",'
             'classification="success"}'] >= 1, m
    assert m['tcp_open_total{direction="inbound",tls="true"}'] == 0, m

    # Meshing off on the client: the same bytes go as they are, in clear.
    stop(mesh.client.meshd, signal.SIGTERM)
    mesh.client.start_meshd("--controller", mesh.controller_addrs)
    cap = Capture(mesh.servers[0])
    out = mesh.client.ns.app("marker", VIP, 80, marker, 5)
    wire = cap.bytes()
    assert out == {"ok": 5, "errors": [], "connections": 5}, out
    assert marker.encode() in wire


# Holds one connection open and idle after 200 kB went each way.
IDLE_CLIENT = f"""
import socket, sys
s = socket.create_connection(("{VIP}", 80), timeout=10)
s.sendall(b"ECHO\\n" + b"x" * 200000)
got = 0
while got < 200000:
    got += len(s.recv(1 << 20))
print("idle", flush=True)
sys.stdin.read()
"""


def test_idle_mtls_connections_hold_no_buffers(mesh):
    p = mesh.client.ns.spawn([PYTHON, "-c", IDLE_CLIENT], stdin=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == "idle", p.stderr.read()
        time.sleep(0.2)  # the last sends complete
        for h, d in [(mesh.client, "outbound")] + [(s, "inbound") for s in mesh.servers]:
            m = h.metrics()
            if series_sum(m, "tcp_open_connections", direction=d, tls="true") == 0:
                continue  # the server the client did not pick
            # Open over mTLS, and idle: no decrypted bytes, spill or ring
            # buffer held for it (the session's output is drained too).
            assert (m["meshd_tls_plain_bytes_in_use"], m["meshd_spill_bytes_in_use"],
                    m["meshd_buffer_bytes_in_use"]) == (0, 0, 0), (h.ns.name, m)
    finally:
        stop(p)
    assert sum(series_sum(s.metrics(), "tcp_open_total", direction="inbound", tls="true",
                          client_id=mesh.identity_of(mesh.client)) for s in mesh.servers) >= 1


# A raw server: the sha256 and length of everything it received.
DIGEST_SERVER = """
import hashlib, socket
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 9400))
l.listen()
print("ready", flush=True)
c, _ = l.accept()
h, n = hashlib.sha256(), 0
while (d := c.recv(1 << 20)):
    h.update(d)
    n += len(d)
c.sendall(f"{h.hexdigest()} {n}".encode())
c.close()
"""

# A ClientHello that is not the mesh's (16 kB: an unknown extension pads
# it), sent in two pieces: 100 bytes, then the rest with 40 kB of data
# behind it in one go.
HELLO_CLIENT = """
import hashlib, json, socket, sys, time
pad = 15949
body = bytes([3, 3]) + bytes(33) + bytes([0, 2, 0x13, 1, 1, 0]) + (pad + 4).to_bytes(2, "big") + \\
    bytes([0xff, 0xff]) + pad.to_bytes(2, "big") + bytes(pad)
hello = bytes([0x16, 3, 1]) + (len(body) + 4).to_bytes(2, "big") + bytes([1]) + len(body).to_bytes(3, "big") + body
data = hello + bytes(range(256)) * 160
s = socket.create_connection((sys.argv[1], 9400), timeout=10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(data[:100])
time.sleep(0.2)
s.sendall(data[100:])
s.shutdown(socket.SHUT_WR)
answer = b""
while (chunk := s.recv(4096)):
    answer += chunk
print(json.dumps({"answer": answer.decode(), "expected": f"{hashlib.sha256(data).hexdigest()} {len(data)}"}))
"""


def test_detection_keeps_every_byte_of_a_long_foreign_client_hello(mesh):
    # Detection reads the first piece into a small slot; the second does
    # not fit it and moves to a full one. The app gets every byte, counted.
    # (Port 9400: not one of the opaque ports, which skip detection.)
    server = mesh.servers[0]
    app = server.ns.spawn([PYTHON, "-c", DIGEST_SERVER])
    try:
        assert app.stdout.readline().strip() == "ready", app.stderr.read()
        before = series_sum(server.metrics(), "tcp_read_bytes_total", direction="inbound")
        r = mesh.client.ns.exec([PYTHON, "-c", HELLO_CLIENT, server.v4], timeout=30)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["answer"] == out["expected"], out
        sent = int(out["expected"].split()[1])
        wait_for(lambda: series_sum(server.metrics(), "tcp_read_bytes_total", direction="inbound") - before == sent,
                 5, f"the server's proxy to count {sent} bytes read")
    finally:
        stop(app)


def test_a_certificate_from_another_root_is_refused(mesh):
    # Another mesh's CA, and a proxy holding its certificate: it can get one
    # only from a controller of that CA, so this one is started here.
    other = os.path.join(mesh.workdir.name, "other-ca")
    run([binary("meshd-ctl"), "identity", "init", "--trust-domain", "mesh.test", "--dir", other])
    impostor = mesh.host("impostor", "10.78.0.20")
    impostor.ns.exec(["ip", "route", "add", "default", "dev", impostor.lan_dev])
    ctl_log = open(os.path.join(mesh.workdir.name, "other-controller.log"), "a+")
    impostor.ns.spawn([binary("meshd-controller"), "--listen", "127.0.0.1:4190", "--admin", "off",
                       "--data-dir", os.path.join(mesh.workdir.name, "other-data"), "--identity-dir", other,
                       "--trust-domain", "mesh.test"], stdout=ctl_log, stderr=ctl_log)
    wait_for(lambda: impostor.ns.exec([binary("meshd-ctl"), "services"], check=False).returncode == 0, 10,
             "the other controller")
    # Its controller says server1 is a meshed endpoint, so it originates mTLS.
    impostor.ns.exec([binary("meshd-ctl"), "register", "web.prod", f"{mesh.servers[0].v4}:8080", "--meshed",
                      "--identity", mesh.identity_of(mesh.servers[0])])
    identity = mesh.identity_of(mesh.client)  # even claiming the client's name
    token = mesh.token(identity, ca_dir=other)
    impostor.install_rules()
    impostor.start_meshd("--controller", "127.0.0.1:4190", "--trust-anchors", os.path.join(other, "ca.crt"),
                         "--identity", identity, "--identity-token-file", token)
    # It dials a server's endpoint directly; the server's proxy terminates
    # the mesh TLS and refuses a client certificate it cannot verify.
    out = impostor.ns.app("outcome", mesh.servers[0].v4, 8080, "NAME")
    assert out["outcome"] in ("reset", "eof"), out
    wait_for(lambda: mesh.servers[0].metrics()['tls_handshake_failures_total{direction="inbound"}'] >= 1, 5,
             "the server to count the refused handshake")


# A Certify request, framed (4-byte length, then the protobuf) by hand:
# Request{id 1, certify{identity, join_token}}.
PLAIN_CERTIFY = r"""
import socket, sys
def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([v & 0x7f | 0x80])
        v >>= 7
    return out + bytes([v])
def field(n, b): return bytes([n << 3 | 2]) + varint(len(b)) + b
body = field(9, field(1, sys.argv[2].encode()) + field(3, sys.argv[3].encode()))
req = b"\x08\x01" + body
s = socket.create_connection((sys.argv[1], 4190), timeout=5)
s.sendall(len(req).to_bytes(4, "big") + req)
got = b""
while len(got) < 4 or len(got) < 4 + int.from_bytes(got[:4], "big"):
    b = s.recv(4096)
    if not b: break
    got += b
sys.stdout.write(got[4:].decode("utf-8", "replace"))
"""


def test_the_controller_stream_is_tls_to_a_proven_controller(mesh):
    controller = mesh.ctrl_hosts[0]
    anchors = os.path.join(mesh.ca_dir, "ca.crt")
    # A host joins while the controller's side of the wire is captured: the
    # join token and the certificate cross encrypted.
    identity = f"spiffe://{TRUST_DOMAIN}/host/joiner"
    token_file = mesh.token(identity)
    token = open(token_file).read().strip()
    cap = Capture(controller)
    joiner = mesh.host("joiner", "10.78.0.21")
    joiner.start_meshd("--controller", mesh.controller_addrs, "--trust-anchors", anchors, "--identity", identity,
                       "--identity-token-file", token_file)
    wait_for(lambda: identity_status(joiner)["state"] == "valid", 10, "the joiner's certificate")
    wire = cap.bytes()
    assert b"\x16\x03\x03" in wire  # TLS records to and from :4190
    assert token.encode() not in wire and identity.encode() not in wire
    assert joiner.status()["controller"]["tls"] is True

    # A join token sent in clear is refused without being looked at; plain
    # discovery is still served (a proxy with meshing off finds services).
    spent = open(mesh.token(identity)).read().strip()
    r = joiner.ns.exec([PYTHON, "-c", PLAIN_CERTIFY, controller.v4, identity, spent])
    assert "certificates and revocations are served only over TLS" in r.stdout, r.stdout
    assert "meshd --trust-anchors" in r.stdout
    r = joiner.ns.exec([binary("meshd-ctl"), "services", "--controller", f"{controller.v4}:4190"])
    assert "web.prod" in r.stdout

    # A client that trusts another mesh's root does not take this controller
    # for its own: meshd-ctl and the proxy both refuse it, and say why.
    other = os.path.join(mesh.workdir.name, "other-ca")
    run([binary("meshd-ctl"), "identity", "init", "--trust-domain", TRUST_DOMAIN, "--dir", other])
    r = joiner.ns.exec([binary("meshd-ctl"), "services", "--controller", f"{controller.v4}:4190",
                        "--trust-anchors", os.path.join(other, "ca.crt")], check=False)
    assert r.returncode != 0
    assert "not from this mesh's trust anchor" in r.stderr, r.stderr
    stranger = mesh.host("stranger", "10.78.0.22")
    # Not ready without a certificate: started as Host.start_meshd does, but
    # not waited for (Host.close stops it and reads its log).
    stranger.meshd_log = tempfile.NamedTemporaryFile("w+", prefix="meshd-log-", suffix=".txt")
    stranger.meshd = stranger.ns.spawn(
        [binary("meshd"), "--log-level", "warn", "--controller", mesh.controller_addrs, "--trust-anchors",
         os.path.join(other, "ca.crt"), "--identity", identity, "--identity-token-file",
         mesh.token(identity, ca_dir=other)], stderr=stranger.meshd_log)
    wait_for(lambda: "not from this mesh's trust anchor" in stranger.log(), 10, "the stranger's refusal")
    st = identity_status(stranger)
    assert st["state"] != "valid", st
    assert stranger.status()["controller"]["connected"] is False


def policy_registry(identities, networks=()):
    ids = ", ".join(f'"{i}"' for i in identities)
    nets = ", ".join(f'"{n}"' for n in networks)
    return REGISTRY + f"""
  [[service.policy]]
  port = 8080
  default = "deny"
    [[service.policy.rule]]
    name = "allowed-clients"
    identities = [{ids}]
""" + (f"""    [[service.policy.rule]]
    name = "office"
    networks = [{nets}]
""" if networks else "")


def test_inbound_policy_refuses_the_unlisted_and_admits_them_once_listed():
    client_id = f"spiffe://{TRUST_DOMAIN}/host/client"
    c = Cluster(identity=True, registry=policy_registry([client_id]))
    try:
        c.wait_registered(2)
        server = c.servers[0]
        # A meshed client with another identity, and a host with no proxy.
        other = c.host("other", "10.78.0.30")
        other.ns.exec(["ip", "route", "add", "default", "dev", other.lan_dev])
        other.install_rules()
        other.start_meshd("--controller", c.controller_addrs, *c.identity_flags(other))
        outsider = c.host("outsider", "10.78.0.31")

        def outcome(host, target=(server.v4, 8080)):
            return host.ns.app("outcome", target[0], target[1], "NAME")["outcome"]

        # Policies arrive with the servers' own subscriptions: wait for them.
        wait_for(lambda: server.status().get("policy", {}).get("policies"), 10, "the registry's policy")
        assert outcome(c.client) == "data"
        assert outcome(other) == "reset"
        assert outcome(outsider) == "reset"
        # (A meshed client's connection to an endpoint is balanced over both.)
        def total(name):
            return sum(s.metrics().get(name, 0) for s in c.servers)
        assert total('inbound_tcp_authz_allow_total{port="8080",rule="allowed-clients"}') >= 1
        assert total('inbound_tcp_authz_deny_total{port="8080",reason="default_deny"}') >= 2
        assert total('tcp_close_total{direction="inbound",classification="failure",error="unauthorized"}') >= 1
        assert total(f'tcp_close_total{{direction="inbound",tls="true",client_id="{c.identity_of(other)}",'
                     'classification="failure",error="unauthorized"}') >= 1

        # The operator allows both: new connections get through, no restart.
        with open(os.path.join(c.workdir.name, "registry.toml"), "w") as f:
            f.write(policy_registry([client_id, c.identity_of(other)], ["10.78.0.31/32"]))
        wait_for(lambda: outcome(other) == "data", 10, "the other identity to be allowed")
        assert outcome(outsider) == "data"
        assert outcome(c.client) == "data"
        assert total('inbound_tcp_authz_allow_total{port="8080",rule="office"}') >= 1
    finally:
        c.close()


def test_renewal_under_traffic_fails_no_request():
    c = Cluster(identity=True, cert_ttl="6s")
    try:
        c.wait_registered(2)
        # 14 s of connections, one after another: each proxy renews every
        # ~4 s meanwhile.
        out = c.client.ns.app("marker", VIP, 80, "renewal", 100, 14, timeout=120)
        assert out["errors"] == [] and out["ok"] == out["connections"], out
        for h in [c.client] + c.servers:
            st = identity_status(h)
            assert st["renewals_ok"] >= 3, st
            assert st["renewals_failed"] == 0, st
        m = c.client.metrics()
        assert m['tls_handshake_failures_total{direction="outbound"}'] == 0
        assert m['tcp_close_total{direction="outbound",dst="web.prod",tls="true",classification="success"}'] >= \
            out["ok"]
    finally:
        c.close()


def test_an_expired_certificate_fails_closed_while_plaintext_routes_work():
    c = Cluster(identity=True, cert_ttl="5s")
    try:
        c.wait_registered(2)
        # A host outside the mesh (no proxy): traffic to it is plaintext.
        plain = c.host("plain", "10.78.0.40")
        plain.serve(9000, name="plain")
        assert c.client.ns.app("names", VIP, 80, 2)["errors"] == []
        for p in c.controllers:
            stop(p)
        # No controller, no renewal: the certificates run out.
        wait_for(lambda: identity_status(c.client)["state"] == "expired", 15, "the client's certificate to expire")
        st = identity_status(c.client)
        assert st["renewals_failed"] >= 1 and st["last_error"], st
        out = c.client.ns.app("outcome", VIP, 80, "NAME")
        assert out["outcome"] in ("reset", "eof"), out
        m = c.client.metrics()
        assert m['tcp_close_total{direction="outbound",dst="web.prod",tls="true",classification="failure",'
                 'error="no_identity"}'] >= 1
        assert c.client.ns.app("names", plain.v4, 9000, 3) == {"names": {"plain": 3}, "errors": []}
    finally:
        c.close()
