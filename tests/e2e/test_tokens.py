"""Join tokens across controller replicas: two controllers gossip, and hosts
join the mesh with a token by asking one replica or the other. A token's
uses are counted by all replicas (a spent one-use token is refused on the
other replica within seconds), and a revocation, which only a holder of the
token key can make, reaches every replica and survives restarts."""
import json
import os
import signal
import tempfile
import time

import pytest

from mesh import APPS, PYTHON, TRUST_DOMAIN, Cluster, binary, parse_metrics, run, stop, wait_for

pytestmark = pytest.mark.timeout(240)

JOINER = f"spiffe://{TRUST_DOMAIN}/host/joiner"


@pytest.fixture
def mesh():
    c = Cluster(controllers=2, gossip=True, identity=True)
    try:
        yield c
    finally:
        c.close()


def controller_metrics(mesh, i):
    out = mesh.ctrl_hosts[i].ns.app("get", "http://127.0.0.1:4194/metrics")
    assert out["status"] == 200, out
    return parse_metrics(out["body"])


def refused(mesh, i, reason):
    return controller_metrics(mesh, i).get(f'controller_certify_refused_total{{reason="{reason}"}}', 0)


def marks(mesh, i):
    return controller_metrics(mesh, i).get("controller_join_token_marks", 0)


def settled_marks(mesh):
    """The replicas' mark count once they agree and it holds still (the
    hosts the cluster started spent a token each, on either replica)."""
    def agreed():
        a = marks(mesh, 0)
        if a != marks(mesh, 1):
            return None
        time.sleep(1)  # gossip takes milliseconds: still equal, then settled
        return (a,) if marks(mesh, 0) == marks(mesh, 1) == a else None
    return wait_for(agreed, 15, "the replicas to agree on the tokens spent so far")[0]


def mint(mesh, uses):
    """A token for JOINER, and the file a proxy reads it from."""
    r = run([binary("meshd-ctl"), "identity", "token", "--identity", JOINER, "--dir", mesh.ca_dir, "--uses",
             str(uses), "--ttl", "10m", "-o", "json"])
    token = json.loads(r.stdout)
    assert token["identity"] == JOINER and token["uses"] == uses, token
    path = os.path.join(mesh.workdir.name, f"token-{token['id']}")
    with open(path, "w") as f:
        f.write(token["token"] + "\n")
    return token, path


_joiners = iter(range(50, 100))


def join(mesh, token_file, controller):
    """A host whose proxy asks only replica `controller` for its first
    certificate, with the token in token_file. Not waited for: a proxy is
    not ready until it has a certificate, and some here never get one."""
    n = next(_joiners)
    h = mesh.host(f"joiner{n}", f"10.78.0.{n}")
    # As Host.start_meshd, so that Host.close stops it and reads its log.
    h.meshd_log = tempfile.NamedTemporaryFile("w+", prefix="meshd-log-", suffix=".txt")
    h.meshd = h.ns.spawn([binary("meshd"), "--log-level", "warn", "--threads", "1", "--controller",
                          f"{mesh.ctrl_hosts[controller].v4}:4190", "--trust-anchors",
                          os.path.join(mesh.ca_dir, "ca.crt"), "--identity", JOINER, "--identity-token-file",
                          token_file], stderr=h.meshd_log)
    wait_for(lambda: h.meshd.poll() is not None or identity_status(h), 10, "the proxy's admin endpoint")
    assert h.meshd.poll() is None, h.log()
    return h


def identity_status(host):
    """The proxy's identity status, or None while its admin does not answer."""
    r = host.ns.exec([PYTHON, APPS, "get", "http://127.0.0.1:4191/status.json"], check=False, timeout=10)
    if r.returncode != 0:
        return None
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return json.loads(out["body"])["identity"] if out.get("status") == 200 else None


def done(*hosts):
    """Stops proxies whose part is played (io_uring memory is scarce)."""
    for h in hosts:
        stop(h.meshd, signal.SIGTERM)


def refused_with(host, text):
    st = identity_status(host) or {}
    return st.get("state") != "valid" and text in (st.get("last_error") or "")


def revoke(mesh, i, what, ca_dir=None, check=True):
    r = mesh.ctrl_hosts[i].ns.exec(
        [binary("meshd-ctl"), "identity", "revoke", what, "--dir", ca_dir or mesh.ca_dir, "--trust-anchors",
         os.path.join(mesh.ca_dir, "ca.crt"), "--controller", "127.0.0.1:4190", "--timeout", "10s"], check=False)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_a_token_spent_on_one_replica_is_refused_on_the_other(mesh):
    before = settled_marks(mesh)
    token, path = mint(mesh, uses=1)
    first = join(mesh, path, controller=0)
    wait_for(lambda: (identity_status(first) or {}).get("state") == "valid", 15, "the first host's certificate")
    assert identity_status(first)["name"] == JOINER
    # The spend reaches the other replica by gossip within a few seconds
    # (milliseconds, unless a datagram was lost: then the next push-pull,
    # every 5s by default).
    wait_for(lambda: marks(mesh, 1) == before + 1, 8, "replica 1 to hear of the spend")
    second = join(mesh, path, controller=1)
    wait_for(lambda: refused_with(second, "used up"), 15, "replica 1 to refuse the spent token")
    assert f"join token {token['id']} has been used up (1 of 1" in identity_status(second)["last_error"]
    assert refused(mesh, 1, "token_used_up") >= 1
    # The first replica refuses it too, of course; and both still serve.
    third = join(mesh, path, controller=0)
    wait_for(lambda: refused_with(third, "used up"), 15, "replica 0 to refuse the spent token")
    assert refused(mesh, 0, "token_used_up") >= 1
    assert identity_status(first)["state"] == "valid"
    done(first, second, third)


def test_a_revoked_token_is_refused_by_every_replica_and_after_restarts(mesh):
    before = settled_marks(mesh)
    # Any number of uses: only the revocation stops them.
    by_token, by_token_file = mint(mesh, uses=0)
    by_id, by_id_file = mint(mesh, uses=0)

    # Only a holder of this mesh's token key can revoke.
    other = os.path.join(mesh.workdir.name, "other-ca")
    run([binary("meshd-ctl"), "identity", "init", "--trust-domain", TRUST_DOMAIN, "--dir", other])
    r = revoke(mesh, 0, by_token["id"], ca_dir=other, check=False)
    assert r.returncode == 1 and "not signed with this mesh's token key" in r.stderr, r.stderr
    assert marks(mesh, 0) == before

    # One revoked on each replica, by the token itself and by its id.
    out = revoke(mesh, 0, by_token["token"]).stdout
    assert f"join token {by_token['id']} revoked until" in out, out
    out = revoke(mesh, 1, by_id["id"]).stdout
    assert f"join token {by_id['id']} revoked until" in out, out
    assert "was revoked already" in revoke(mesh, 1, by_id["id"]).stdout
    wait_for(lambda: marks(mesh, 0) == marks(mesh, 1) == before + 2, 8, "both revocations to reach both replicas")
    # Each replica refuses the token revoked on the other.
    j1 = join(mesh, by_token_file, controller=1)
    j2 = join(mesh, by_id_file, controller=0)
    for h in (j1, j2):
        wait_for(lambda: refused_with(h, "has been revoked"), 15, "the revoked token to be refused")
    assert refused(mesh, 0, "token_revoked") >= 1 and refused(mesh, 1, "token_revoked") >= 1
    done(j1, j2)

    # Both replicas restart; replica 0 comes back alone, so what it knows
    # comes from its disk, not from gossip.
    for p in mesh.controllers:
        stop(p, signal.SIGTERM)
    mesh.start_controller(0)
    j3 = join(mesh, by_id_file, controller=0)  # revoked on replica 1, before the restart
    wait_for(lambda: refused_with(j3, "has been revoked"), 15, "the restarted replica to refuse it")
    done(j3)
    mesh.start_controller(1)
    j4 = join(mesh, by_token_file, controller=1)
    wait_for(lambda: refused_with(j4, "has been revoked"), 15, "the other restarted replica to refuse it")
    assert refused(mesh, 0, "token_revoked") >= 1 and refused(mesh, 1, "token_revoked") >= 1
    done(j4)
    # A token nobody revoked still works on either.
    fresh, fresh_file = mint(mesh, uses=1)
    j5 = join(mesh, fresh_file, controller=1)
    wait_for(lambda: (identity_status(j5) or {}).get("state") == "valid", 15,
             "a certificate for a token nobody revoked")
