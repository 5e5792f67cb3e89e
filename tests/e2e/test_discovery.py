"""Discovery end to end: a controller, a client host and two server hosts on
one LAN (network namespaces joined by a bridge), each with the redirect rules
and a meshd. The servers register what they front (meshd --register); the
client's meshd learns where web.prod is from the controller and balances
connections to its virtual address across the servers; a dead server is
skipped after its first failed connect; when the controller goes away,
traffic keeps flowing on what the proxy last knew."""
import json
import os
import shutil
import signal
import time

import pytest

from mesh import APPS, CTRL_IP, PYTHON, REGISTRY, VIP, Cluster, binary, stop, wait_for


@pytest.fixture
def mesh():
    m = Cluster()
    yield m
    m.close()


@pytest.mark.timeout(120)
def test_a_virtual_address_is_balanced_and_a_dead_endpoint_skipped(mesh):
    mesh.wait_registered(2)
    out = mesh.names(VIP, 80, 40)
    assert out["errors"] == [], out
    assert set(out["names"]) == {"server1", "server2"}, out
    # An endpoint's own address is balanced across its service too.
    out = mesh.names("10.78.0.2", 8080, 40)
    assert out["errors"] == [] and set(out["names"]) == {"server1", "server2"}, (out, mesh.endpoints())
    m = mesh.client.metrics()
    assert m['tcp_open_total{direction="outbound",dst="web.prod"}'] == 80
    assert m['outbound_balancer_endpoints{dst="web.prod",state="ready"}'] == 2
    assert m['discovery_connected{controller="10.78.0.10:4190"}'] == 1
    assert m['outbound_connect_latency_ms_count{dst="web.prod",endpoint="10.78.0.2:8080"}'] > 0
    eps = mesh.endpoints()
    assert [e["address"] for e in eps["endpoints"]] == ["10.78.0.2:8080", "10.78.0.3:8080"], eps
    assert all(e["state"] == "ready" for e in eps["endpoints"]), eps
    text = mesh.client.ns.exec([binary("meshd-ctl"), "endpoints", "web.prod"]).stdout
    assert "10.78.0.3:8080" in text and "ready" in text, text

    # An address no service has goes where it was dialled, counted without dst.
    mesh.ctrl_hosts[0].serve(9000, name="ctrl")
    before = m.get('tcp_open_total{direction="outbound"}', 0)
    out = mesh.names(CTRL_IP, 9000, 5)
    assert out == {"names": {"ctrl": 5}, "errors": []}, out
    assert mesh.client.metrics()['tcp_open_total{direction="outbound"}'] == before + 5

    # Server 2 dies (proxy and app): connects to it are refused. The first
    # failure marks it failing and the connection is retried on server 1,
    # so the client sees no error at all.
    s2 = mesh.servers[1]
    s2.meshd.kill()
    s2.meshd.wait(timeout=10)
    s2.meshd = None
    stop(s2.apps[8080])
    out = mesh.names(VIP, 80, 30)
    assert out == {"names": {"server1": 30}, "errors": []}, out
    m = mesh.client.metrics()
    failures = m['outbound_connect_failures_total{dst="web.prod",endpoint="10.78.0.3:8080"}']
    assert 1 <= failures <= 5, failures  # skipped while failing, not tried on every connection
    # Its lease runs out: the registry, then the proxy, forget it.
    wait_for(lambda: [e["address"] for e in (mesh.endpoints() or {}).get("endpoints", [])] == ["10.78.0.2:8080"], 15,
             "the dead endpoint's lease to expire in the proxy's view")
    assert mesh.names(VIP, 80, 5) == {"names": {"server1": 5}, "errors": []}


@pytest.mark.timeout(120)
def test_traffic_flows_when_the_controller_is_gone(mesh):
    mesh.wait_registered(2)
    assert mesh.names(VIP, 80, 10)["errors"] == []
    # A connection held open across the controller's death.
    held = mesh.client.ns.spawn([PYTHON, APPS, "hold", VIP, "80", "3"])
    time.sleep(0.5)
    mesh.controllers[0].kill()
    mesh.controllers[0].wait(timeout=10)
    wait_for(lambda: mesh.client.status()["controller"]["state"] == "disconnected", 10, "the proxy to notice")
    # New connections still go where the proxy last knew web.prod was (all
    # to the server without the held connection, the least loaded one).
    out = mesh.names(VIP, 80, 20)
    assert out["errors"] == [] and sum(out["names"].values()) == 20, out
    out_held, _ = held.communicate(timeout=20)
    assert json.loads(out_held.strip().splitlines()[-1]) == {"first": "ping", "second": "pong"}
    out = mesh.names(VIP, 80, 20)
    assert out["errors"] == [] and set(out["names"]) == {"server1", "server2"}, out
    status = mesh.client.ns.exec([binary("meshd-ctl"), "status"]).stdout
    assert "disconnected, serving what it last said (stale)" in status, status
    eps = mesh.endpoints()
    assert eps["stale"] and len(eps["endpoints"]) == 2, eps

    # A proxy that starts with no controller reachable: connections to real
    # addresses go to them as dialled, without waiting for discovery.
    assert stop(mesh.client.meshd, signal.SIGTERM) == 0
    mesh.client.start_meshd("--controller", mesh.controller_addrs)
    start = time.monotonic()
    out = mesh.names("10.78.0.3", 8080, 10)
    assert out == {"names": {"server2": 10}, "errors": []}, out
    assert time.monotonic() - start < 5

    # The controller comes back (its state was on disk): the proxy reconnects.
    mesh.start_controller(0)
    wait_for(lambda: mesh.client.status()["controller"]["state"] == "fresh", 15, "the proxy to reconnect")
    out = mesh.names(VIP, 80, 20)
    assert out["errors"] == [] and set(out["names"]) == {"server1", "server2"}, out


@pytest.mark.timeout(120)
def test_the_proxy_moves_to_another_controller_replica():
    # Two replicas serving the same registry file (here with the endpoints in
    # it); the proxy is connected to one of them, which is then killed.
    registry = REGISTRY + "".join(f"""
  [[service.endpoint]]
  address = "10.78.0.{i}:8080"
""" for i in (2, 3))
    m = Cluster(controllers=2, registry=registry)
    try:
        assert m.names(VIP, 80, 10)["errors"] == []
        first = m.client.status()["controller"]["address"]
        victim = 0 if first == "10.78.0.10:4190" else 1
        m.controllers[victim].kill()
        m.controllers[victim].wait(timeout=10)
        wait_for(lambda: (m.client.status()["controller"]["address"] != first and
                          m.client.status()["controller"]["state"] == "fresh"), 15, "the other replica")
        out = m.names(VIP, 80, 20)
        assert out["errors"] == [] and set(out["names"]) == {"server1", "server2"}, out
        assert m.client.metrics()["discovery_streams_failed_total"] >= 1
    finally:
        m.close()


@pytest.mark.timeout(120)
def test_forward_to_a_name_the_registry_knows_or_dns_does(mesh):
    """--forward LISTEN=NAME:PORT: a service name is balanced over its
    endpoints; another name is resolved with DNS (c-ares, the namespace's
    resolv.conf pointing at a DNS server on the controller host); a name
    nobody knows resets the client and is counted."""
    mesh.wait_registered(2)
    dns = mesh.ctrl_hosts[0].ns.spawn([PYTHON, APPS, "dns", "53", "api.example=10.78.0.3", "5"])
    assert dns.stdout.readline().strip() == "ready"
    # `ip netns exec` mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf.
    etc = f"/etc/netns/{mesh.client.ns.name}"
    os.makedirs(etc, exist_ok=True)
    try:
        with open(f"{etc}/resolv.conf", "w") as f:
            f.write(f"nameserver {CTRL_IP}\noptions timeout:1 attempts:1\n")
        assert stop(mesh.client.meshd, signal.SIGTERM) == 0
        mesh.client.start_meshd("--controller", mesh.controller_addrs, "--forward",
                                "127.0.0.1:9000=web.prod:80,127.0.0.1:9001=api.example:8080,"
                                "127.0.0.1:9002=nowhere.example:80")
        out = mesh.names("127.0.0.1", 9000, 20)
        assert out["errors"] == [] and set(out["names"]) == {"server1", "server2"}, out
        out = mesh.names("127.0.0.1", 9001, 5)
        assert out == {"names": {"server2": 5}, "errors": []}, out
        out = mesh.client.ns.app("outcome", "127.0.0.1", 9002)
        assert out["outcome"] == "reset", out
        m = mesh.client.metrics()
        assert m['tcp_open_total{direction="outbound",dst="web.prod"}'] == 20
        assert m['tcp_close_total{direction="outbound",classification="failure",error="resolve_failed"}'] == 1
    finally:
        shutil.rmtree(etc, ignore_errors=True)


@pytest.mark.timeout(150)
def test_replicas_gossip_so_a_proxy_on_any_of_them_routes_and_moves():
    """Three controllers gossiping. Endpoints registered on one replica reach
    a proxy connected to another; that replica is killed, the proxy moves to
    a third and keeps routing; the dead replica is declared dead."""
    m = Cluster(controllers=3, gossip=True, register=False)
    try:
        def members(i):
            r = m.ctrl_hosts[i].ns.exec([binary("meshd-ctl"), "members", "-o", "json"], check=False)
            return {x["name"]: x["state"] for x in json.loads(r.stdout)["members"]} if r.returncode == 0 else {}
        wait_for(lambda: list(members(0).values()).count("alive") == 3, 15, "three alive members")
        # Which replica the client's proxy picked (at random): register on another.
        wait_for(lambda: m.client.status()["controller"]["state"] == "fresh", 10, "the client's controller")
        connected = m.client.status()["controller"]["address"]
        serving = next(i for i, h in enumerate(m.ctrl_hosts) if f"{h.v4}:4190" == connected)
        other = (serving + 1) % 3
        for ip in ("10.78.0.2", "10.78.0.3"):
            m.ctrl_hosts[other].ns.exec([binary("meshd-ctl"), "register", "web.prod", f"{ip}:8080", "--controller",
                                         f"{m.ctrl_hosts[other].v4}:4190"])
        wait_for(lambda: (m.services(serving) or {}).get("web.prod", {}).get("endpoints") == 2, 10,
                 "the registrations to reach the proxy's replica by gossip")
        out = m.names(VIP, 80, 20)
        assert out["errors"] == [] and set(out["names"]) == {"server1", "server2"}, out

        m.controllers[serving].kill()
        m.controllers[serving].wait(timeout=10)
        wait_for(lambda: (m.client.status()["controller"]["address"] != connected and
                          m.client.status()["controller"]["state"] == "fresh"), 15, "the proxy to move")
        out = m.names(VIP, 80, 20)
        assert out["errors"] == [] and set(out["names"]) == {"server1", "server2"}, out
        wait_for(lambda: members(other).get(f"ctrl{serving}") == "dead", 20, "the killed replica to be declared dead")
    finally:
        m.close()
