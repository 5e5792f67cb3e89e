"""meshd-ctl tap, end to end: the client's outbound meshd and the server's
inbound meshd capture a summary of each HTTP request (method, authority,
path, status or error, latency; for gRPC over HTTP/2, each call with the
grpc-status of its trailers) only while a tap polls their admin
endpoint's /tap, and meshd-ctl tap prints them live, one line each, with
filters applied by the proxy. Real curl through the mesh of mesh.HttpMesh
(mutual TLS between the proxies); the taps run in the hosts' namespaces
against the default admin address."""
import json
import re
import subprocess
import time

import pytest

from mesh import GRPC_VIP, HTTP_VIP, HttpMesh, binary, stop

# Two workers: events from both are merged by the proxy's sequence numbers.
THREADS = ("--threads", "2")
RESOLVE = ("--resolve", f"web.test:80:{HTTP_VIP}")
# meshd-ctl tap's first poll starts the tap (requests before it are not
# captured): how long a test waits for it after starting the command.
TAP_START = 1.5
LINE = re.compile(r"^req (inbound|outbound) (\S+) (\S+) (\S+) -> (\d{3}|error \S+)( grpc-status=\d+)? ([\d.]+)ms"
                  r"( dst=\S+)? tls=(true|false)$")


@pytest.fixture(scope="module")
def mesh():
    m = HttpMesh(meshd_flags=THREADS)
    try:
        yield m
    finally:
        m.close()


def curl(host, *urls, method=None, extra=()):
    """Requests the URLs (one connection, kept alive); their status codes."""
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-w", "%{http_code}\n", *RESOLVE]
    argv += list(extra) + (["-X", method] if method else [])
    for url in urls:
        argv += ["-o", "/dev/null", url]
    r = host.ns.exec(argv, check=False)
    return r.stdout.split()


def start_tap(host, *args):
    p = host.ns.spawn([binary("meshd-ctl"), "tap", *args])
    time.sleep(TAP_START)
    assert p.poll() is None, f"meshd-ctl tap exited {p.returncode}: {p.stderr.read()}"
    return p


def finish_tap(p, timeout=20):
    """Waits for a tap bounded by --max; (exit status, stdout lines, stderr)."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(p)
        out, err = p.communicate()
        raise AssertionError(f"meshd-ctl tap did not finish in {timeout}s; it printed:\n{out}\nstderr:\n{err}")
    return p.returncode, out.splitlines(), err


def admin_tap(host, query=""):
    out = host.app("get", "http://127.0.0.1:4191/tap" + (f"?{query}" if query else ""))
    assert out["status"] == 200, out
    return json.loads(out["body"])


# --- tests (in this order: the first needs proxies nobody tapped yet) ------

@pytest.mark.timeout(60)
def test_an_untapped_proxy_records_nothing(mesh):
    assert curl(mesh.client, "http://web.test/ok/idle-1", "http://web.test/ok/idle-2") == ["200", "200"]
    assert mesh.backend_requests()[-1] == "GET /ok/idle-2 HTTP/1.1"
    # Nothing was ever numbered in either proxy: no event was recorded.
    # (This read starts a tap: it comes after the requests.)
    for host in (mesh.client, mesh.server):
        page = admin_tap(host)
        assert page == {"next": 0, "dropped": 0, "uncaptured_total": 0, "events": []}, (host.role, page)


@pytest.mark.timeout(60)
def test_tap_streams_each_request_with_its_status_and_latency(mesh):
    tap = start_tap(mesh.client, "--max", "4")
    assert curl(mesh.client, "http://web.test/ok/one", "http://web.test/status/503",
                "http://web.test/slow/300") == ["200", "503", "200"]
    # The backend does not do DELETE: its 501 is what the tap shows.
    assert curl(mesh.client, "http://web.test/ok/two", method="DELETE") == ["501"]
    rc, lines, err = finish_tap(tap)
    assert rc == 0, err
    assert err == ""
    assert len(lines) == 4, lines
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    got = [(m[1], m[2], m[3], m[4], m[5], m[8], m[9]) for m in parsed]
    assert got == [
        ("outbound", "GET", "web.test", "/ok/one", "200", " dst=http.prod", "true"),
        ("outbound", "GET", "web.test", "/status/503", "503", " dst=http.prod", "true"),
        ("outbound", "GET", "web.test", "/slow/300", "200", " dst=http.prod", "true"),
        ("outbound", "DELETE", "web.test", "/ok/two", "501", " dst=http.prod", "true"),
    ], lines
    # The latency is the time to the response head: the slow one waited.
    assert float(parsed[2][7]) >= 300, lines[2]
    assert float(parsed[0][7]) < 300, lines[0]


@pytest.mark.timeout(60)
def test_filters_and_json_output(mesh):
    tap = start_tap(mesh.client, "--max", "2", "--path", "/ok/keep", "--method", "GET", "--authority", "WEB.test",
                    "--direction", "outbound", "-o", "json")
    # Inbound on the server's proxy: no dst_service there.
    inbound = start_tap(mesh.server, "--max", "1", "--direction", "inbound", "--path", "/ok/keep/b")
    assert curl(mesh.client, "http://web.test/ok/skip", "http://web.test/ok/keep/a") == ["200", "200"]
    assert curl(mesh.client, "http://web.test/ok/keep/x", method="POST") == ["200"]
    assert curl(mesh.client, "http://other.test/ok/keep/y", extra=("--resolve", f"other.test:80:{HTTP_VIP}")) == ["200"]
    assert curl(mesh.client, "http://web.test/ok/keep/b") == ["200"]
    rc, lines, err = finish_tap(tap)
    assert rc == 0, err
    events = [json.loads(line) for line in lines]
    assert [(e["method"], e["authority"], e["path"], e["status"]) for e in events] == [
        ("GET", "web.test", "/ok/keep/a", 200), ("GET", "web.test", "/ok/keep/b", 200)], lines
    for e in events:
        assert e["direction"] == "outbound" and e["dst_service"] == "http.prod" and e["tls"] is True, e
        assert e["error"] is None and e["latency_ms"] >= 0, e
    assert events[0]["seq"] < events[1]["seq"]
    rc, lines, err = finish_tap(inbound)
    assert rc == 0, err
    assert len(lines) == 1 and LINE.match(lines[0]), lines
    assert lines[0].startswith("req inbound GET web.test /ok/keep/b -> 200 "), lines
    assert " dst=" not in lines[0] and lines[0].endswith(" tls=true"), lines


@pytest.mark.timeout(60)
def test_grpc_calls_show_their_status_from_the_trailers(mesh):
    """Three gRPC calls over one h2c connection (nghttp): the third fails
    with UNAVAILABLE under HTTP 200; both proxies show each call once its
    trailers came, with their grpc-status."""
    outbound = start_tap(mesh.client, "--max", "3", "--authority", GRPC_VIP)
    inbound = start_tap(mesh.server, "--max", "3", "--authority", GRPC_VIP, "-o", "json")
    r = mesh.client.ns.exec(["nghttp", "-n", "-m", "3", f"http://{GRPC_VIP}/helloworld.Greeter/SayHello"],
                            check=False)
    assert r.returncode == 0, r.stderr
    rc, lines, err = finish_tap(outbound)
    assert rc == 0, err
    assert all(LINE.match(line) for line in lines), lines
    assert sorted(line.split(" -> ")[1].split(" ")[1] for line in lines) == [
        "grpc-status=0", "grpc-status=0", "grpc-status=14"], lines
    for line in lines:
        assert line.startswith(f"req outbound POST {GRPC_VIP} /helloworld.Greeter/SayHello -> 200 ") or \
            line.startswith(f"req outbound GET {GRPC_VIP} /helloworld.Greeter/SayHello -> 200 "), line
        assert " dst=grpc.prod tls=true" in line, line
    rc, lines, err = finish_tap(inbound)
    assert rc == 0, err
    events = [json.loads(line) for line in lines]
    assert sorted(e["grpc_status"] for e in events) == [0, 0, 14], lines
    assert all(e["status"] == 200 and e["direction"] == "inbound" for e in events), lines


@pytest.mark.timeout(60)
def test_a_request_without_response_shows_its_error(mesh):
    tap = start_tap(mesh.server, "--max", "1", "--path", "/reset")
    mesh.client.ns.exec(["curl", "-sS", "--noproxy", "*", "--max-time", "10", *RESOLVE, "http://web.test/reset"],
                        check=False)
    rc, lines, err = finish_tap(tap)
    assert rc == 0, err
    assert len(lines) == 1 and LINE.match(lines[0]), lines
    assert lines[0].startswith("req inbound GET web.test /reset -> error "), lines


@pytest.mark.timeout(60)
def test_capture_stops_after_the_last_poll(mesh):
    # The cursor now; this poll keeps capture on for 5s.
    cursor = admin_tap(mesh.client)["next"]
    time.sleep(5.5)
    assert curl(mesh.client, "http://web.test/ok/after-1", "http://web.test/ok/after-2") == ["200", "200"]
    # This poll turns capture on again, after the requests: none was captured.
    page = admin_tap(mesh.client, f"after={cursor}")
    assert page["events"] == [] and page["next"] == cursor and page["dropped"] == 0, page
    # And while polled, they are.
    assert curl(mesh.client, "http://web.test/ok/after-3") == ["200"]
    page = admin_tap(mesh.client, f"after={cursor}")
    assert [e["path"] for e in page["events"]] == ["/ok/after-3"], page


@pytest.mark.timeout(30)
def test_bad_queries_and_no_proxy(mesh):
    out = mesh.client.app("get", "http://127.0.0.1:4191/tap?colour=blue")
    assert out["status"] == 400 and "unknown parameter 'colour'" in out["body"], out
    out = mesh.client.app("get", "http://127.0.0.1:4191/tap?direction=sideways")
    assert out["status"] == 400 and "parameter 'direction'" in out["body"], out
    r = mesh.client.ns.exec([binary("meshd-ctl"), "tap", "--admin", "127.0.0.1:1", "--max", "1"], check=False)
    assert r.returncode == 1, r
    assert r.stderr.startswith("meshd-ctl: no proxy answering at 127.0.0.1:1"), r.stderr
