"""HTTP awareness in the relay, end to end: a client application talks
HTTP/1.1 (or HTTP/2: nghttp, h2c) to a backend on another host through the client's outbound meshd,
mutual TLS between the proxies, and the server's inbound meshd. Each proxy
taps the bytes it forwards (they pass verbatim): it pairs requests with
responses for the golden metrics, refuses requests a backend might read
differently (smuggling) or that are too large, and steps aside for what is
not HTTP (a server that speaks first, an upgraded connection, an opaque
port). Real clients (Debian's curl and nghttp, Python's http.client, raw
sockets), real backends (apps.py http-serve and grpc-serve, Debian's nginx),
real redirect rules and a real controller; see mesh.HttpMesh."""
import base64
import json
import re
import struct
import time

import pytest

import hashlib
import os

from mesh import (BURST_VIP, CTRL_IP, FLAKY_VIP, GRPC_VIP, H2C_VIP, H2HALF_VIP, H2HANG_VIP, HALFDEAD_VIP, HTTP_VIP, MIXED_VIP, NGINX_VIP,
                  RETRY_VIP, SPREAD_VIP, STREAMS_VIP, TIMED_VIP, HttpMesh, binary, wait_for)

# One worker thread per proxy: the bound on authorities per worker is then
# the proxy's bound.
THREADS = ("--threads", "1")
AUTHORITY_CAP = 100
BACKEND = "10.78.0.2"


@pytest.fixture(scope="module")
def mesh():
    m = HttpMesh(meshd_flags=THREADS)
    try:
        yield m
    finally:
        m.close()


# --- metrics ---------------------------------------------------------------

LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(m, name):
    """(labels, value) for each series of `name` in parsed /metrics m."""
    out = []
    for key, v in m.items():
        if key == name:
            out.append(({}, v))
        elif key.startswith(name + "{"):
            out.append((dict(LABEL.findall(key[len(name):])), v))
    return out


def value(m, name, labels):
    """The series whose labels are exactly `labels` (0 when there is none)."""
    return sum(v for have, v in samples(m, name) if have == labels)


def total(m, name, **labels):
    """The sum over the series that carry at least these labels; a label
    given as None must be absent."""
    return sum(v for have, v in samples(m, name)
               if all(have.get(k) == want for k, want in labels.items()))


def bucket(m, name, labels, le):
    """A histogram bucket's count, whatever the spelling of le ("100" or
    "100.0")."""
    return sum(v for have, v in samples(m, name)
               if have.get("le") not in (None, "+Inf") and float(have["le"]) == le
               and {k: x for k, x in have.items() if k != "le"} == labels)


def out_labels(authority, service="http.prod"):
    """The client's proxy's labels for requests to `authority` (mTLS)."""
    return {"direction": "outbound", "authority": authority, "dst_service": service, "tls": "true"}


def in_labels(authority):
    """The server's proxy's: inbound has no service."""
    return {"direction": "inbound", "authority": authority, "tls": "true"}


class Delta:
    """Both proxies' /metrics now, to compare with later."""

    def __init__(self, mesh):
        self.mesh = mesh
        self.before = {"outbound": mesh.client.metrics(), "inbound": mesh.server.metrics()}
        self.after = None

    def take(self):
        self.after = {"outbound": self.mesh.client.metrics(), "inbound": self.mesh.server.metrics()}
        return self

    # side: "outbound" (the client's proxy) or "inbound" (the server's).
    def value(self, side, name, labels):
        return value(self.after[side], name, labels) - value(self.before[side], name, labels)

    def total(self, side, name, **labels):
        return total(self.after[side], name, **labels) - total(self.before[side], name, **labels)

    def bucket(self, side, name, labels, le):
        return bucket(self.after[side], name, labels, le) - bucket(self.before[side], name, labels, le)

    def until(self, check, timeout=5):
        """Takes the metrics again until check(self) holds (what a proxy
        counts at a connection's end comes a little after the client saw
        it); returns self either way, for the assertions to say what is
        wrong."""
        try:
            wait_for(lambda: check(self.take()), timeout, "the metrics")
        except AssertionError:
            pass
        return self

    def labels(self, direction, authority, service="http.prod"):
        return out_labels(authority, service) if direction == "outbound" else in_labels(authority)


def golden(d, authority, requests, responses, inbound=None):
    """Asserts that request_total, response_total (responses: {(status,
    classification): count}) and the latency histogram's count went up as
    expected on both proxies for `authority`; inbound: (requests, responses)
    for the server's proxy when they differ (it counts every retry)."""
    for direction in ("outbound", "inbound"):
        if direction == "inbound" and inbound is not None:
            requests, responses = inbound
        labels = d.labels(direction, authority)
        got = {"requests": d.value(direction, "request_total", labels),
               "latency": d.value(direction, "response_latency_ms_count", labels),
               "responses": {f"{status} {cls}": d.value(direction, "response_total",
                                                        {**labels, "status_code": str(status), "classification": cls})
                             for (status, cls) in responses}}
        want = {"requests": requests, "latency": requests,
                "responses": {f"{status} {cls}": n for (status, cls), n in responses.items()}}
        assert got == want, (direction, authority, got, want, series_of(d.after[direction], authority))


def series_of(m, authority):
    """The series naming `authority`, for failure messages."""
    return {k: v for k, v in m.items() if f'authority="{authority}"' in k and "_bucket" not in k}


# --- clients -----------------------------------------------------------------

def raw(mesh, request, count=0, timeout=10, host=HTTP_VIP, port=80, pause=0.0):
    """Sends raw bytes from the client host (several pieces: one write
    each, pause apart) and reads count responses (0: until the end)."""
    pieces = request if isinstance(request, list) else [request]
    b64 = ",".join(base64.b64encode(p if isinstance(p, bytes) else p.encode()).decode() for p in pieces)
    return mesh.client.app("http-raw", host, port, b64, count, timeout, pause, timeout=timeout + 30)


def curl(host, *args):
    r = host.ns.exec(["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-w", "\n<<%{num_connects} %{http_code}>>\n"]
                     + list(args), check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def client_hello(sni):
    """A whole TLS 1.3 ClientHello record (one cipher suite, no key share)
    asking for server name sni: what an application's TLS client sends first."""
    name = sni.encode()
    server_name = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    extensions = struct.pack("!HH", 0, len(server_name)) + server_name
    body = (b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


# --- tests -------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_curl_keep_alive_counted_on_both_proxies(mesh):
    d = Delta(mesh)
    out = curl(mesh.client, "--resolve", f"web.test:80:{HTTP_VIP}", "http://web.test/ok/one", "http://web.test/ok/two")
    # One connection (curl reused it), both answers whole.
    assert out == "ok /ok/one\n\n<<1 200>>\nok /ok/two\n\n<<0 200>>\n", out
    assert mesh.backend_requests()[-2:] == ["GET /ok/one HTTP/1.1", "GET /ok/two HTTP/1.1"]
    d.take()
    golden(d, "web.test", 2, {(200, "success"): 2})
    for direction in ("outbound", "inbound"):
        # One connection, detected as HTTP/1 once; over mTLS, so tls="true"
        # (and no plaintext series for it).
        assert d.value(direction, "protocol_detect_total", {"direction": direction, "protocol": "http1"}) == 1
        assert d.total(direction, "request_total", authority="web.test", tls="false") == 0
        # Both answers came at once: in the histogram's lower buckets.
        labels = d.labels(direction, "web.test")
        assert d.bucket(direction, "response_latency_ms_bucket", labels, 1000) == 2
        assert d.value(direction, "response_latency_ms_bucket", {**labels, "le": "+Inf"}) == 2


@pytest.mark.timeout(60)
def test_http_client_uploads_head_204_304_expect_and_503_on_one_connection(mesh):
    d = Delta(mesh)
    out = mesh.client.app("http-suite", HTTP_VIP, 80, "suite.test")
    steps = {s["name"]: s for s in out["steps"]}
    for name in ("chunked-upload", "expect-100"):
        assert steps[name]["status"] == 200, steps[name]
        assert json.loads(steps[name]["body"]) == steps[name]["expected"], steps[name]
    # 100 Continue came before the body was sent, and only then the 200.
    assert steps["expect-100"]["interim"].startswith("HTTP/1.1 100 "), steps["expect-100"]
    assert steps["head"]["status"] == 200 and steps["head"]["body"] == ""
    assert int(steps["head"]["content_length"]) == len("ok /ok/head\n")
    assert (steps["204"]["status"], steps["204"]["body"]) == (204, "")
    assert (steps["304"]["status"], steps["304"]["body"]) == (304, "")
    assert (steps["chunked-download"]["status"], steps["chunked-download"]["body"]) == (200, "first,second,third")
    assert steps["503"]["status"] == 503
    # One connection end to end: the client's and the backend's.
    assert len({s["local"] for s in out["steps"]}) == 1, out
    assert len({s["peer"] for s in out["steps"]}) == 1, out
    d.take()
    # HEAD's Content-Length, 204 and 304 frame no body: were they read as
    # having one, the responses after them would not pair up.
    # The GET answered 503 was sent twice more by the client's proxy (the
    # default --retry-statuses), answered 503 each time: the server's proxy
    # counts all three, the client's the one the client got.
    want = {(200, "success"): 4, (204, "success"): 1, (304, "success"): 1, (503, "failure"): 1,
            (100, "success"): 0, (100, "failure"): 0}
    golden(d, "suite.test", 7, want, inbound=(9, {**want, (503, "failure"): 3}))
    assert d.total("outbound", "outbound_http_retries_total", dst="http.prod") == 2


@pytest.mark.timeout(60)
def test_pipelined_requests_are_answered_in_order_and_paired(mesh):
    d = Delta(mesh)
    req = "".join(f"GET {p} HTTP/1.1\r\nHost: Pipe.Test:8080\r\n\r\n" for p in ("/ok/p1", "/chunked", "/ok/p3"))
    out = raw(mesh, req, 3)
    assert out["end"] == "done", out
    assert [(r["status"], r["body"]) for r in out["responses"]] == \
        [(200, "ok /ok/p1\n"), (200, "first,second,third"), (200, "ok /ok/p3\n")], out
    d.take()
    # The authority as sent, lowercased.
    golden(d, "pipe.test:8080", 3, {(200, "success"): 3})
    assert d.total("outbound", "request_total", authority="Pipe.Test:8080") == 0


BAD_REQUESTS = [
    # (name, request, status, reason). Each path names its case, so that the
    # backend's log shows whether the request got through.
    ("cl_and_te", "POST /bad/cl_and_te HTTP/1.1\r\nHost: bad.test\r\nContent-Length: 5\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "cl_and_te"),
    ("two_lengths", "POST /bad/two_lengths HTTP/1.1\r\nHost: bad.test\r\nContent-Length: 5\r\n"
     "Content-Length: 6\r\n\r\nhello!", 400, "content_length_mismatch"),
    ("bare_lf_header", "GET /bad/bare_lf_header HTTP/1.1\r\nHost: bad.test\nX-After: 1\r\n\r\n", 400, "bare_lf"),
    ("bare_lf_everywhere", "GET /bad/bare_lf_everywhere HTTP/1.1\nHost: bad.test\n\n", 400, "bare_lf"),
    ("obs_fold", "GET /bad/obs_fold HTTP/1.1\r\nHost: bad.test\r\nX-Folded: a\r\n b\r\n\r\n", 400, "obs_fold"),
    ("chunk_size", "POST /bad/chunk_size HTTP/1.1\r\nHost: bad.test\r\nTransfer-Encoding: chunked\r\n\r\n"
     "zz\r\nhello\r\n0\r\n\r\n", 400, "chunk_size"),
    ("long_request_line", "GET /bad/long_request_line?" + "q" * 9000 + " HTTP/1.1\r\nHost: bad.test\r\n\r\n",
     414, "request_line_too_long"),
    ("huge_head", "GET /bad/huge_head HTTP/1.1\r\nHost: bad.test\r\n" +
     "".join(f"X-Big-{i}: {'b' * 8000}\r\n" for i in range(5)) + "\r\n", 431, "head_too_large"),
    ("many_headers", "GET /bad/many_headers HTTP/1.1\r\nHost: bad.test\r\n" +
     "".join(f"X-H{i}: v\r\n" for i in range(120)) + "\r\n", 431, "too_many_headers"),
]


def assert_refused(out, status, reason):
    """The proxy's own answer, alone, then the end of the connection."""
    assert len(out["responses"]) == 1, out
    r = out["responses"][0]
    assert r["line"].startswith(f"HTTP/1.1 {status} "), out
    assert r["headers"].get("connection", "").lower() == "close", r
    assert r["headers"].get("meshd-proxy-error") == reason, r
    assert out["end"] in ("eof", "reset"), out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,request_,status,reason", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_smuggling_and_oversize_requests_are_refused_before_the_backend(mesh, name, request_, status, reason):
    d = Delta(mesh)
    out = raw(mesh, request_, timeout=5)
    assert_refused(out, status, reason)
    # The backend never saw it; the next request on a new connection goes
    # through (and is logged: the log does show what arrives).
    good = raw(mesh, f"GET /ok/after-{name} HTTP/1.1\r\nHost: bad.test\r\n\r\n", 1)
    assert [r["status"] for r in good["responses"]] == [200], good
    log = mesh.backend_requests()
    assert not [line for line in log if f"/bad/{name}" in line], log[-5:]
    assert f"GET /ok/after-{name} HTTP/1.1" in log
    d.take()
    # Refused by the first proxy the client reached, and counted there.
    assert d.value("outbound", "http_rejected_total",
                   {"direction": "outbound", "status_code": str(status), "reason": reason}) == 1
    assert d.total("outbound", "http_rejected_total") == 1
    assert d.total("inbound", "http_rejected_total") == 0


@pytest.mark.timeout(60)
def test_a_refusal_behind_a_pending_request_resets_instead_of_answering(mesh):
    # An answer now would read as the pending request's response: the
    # proxy resets instead, and the backend still never sees the bad one.
    d = Delta(mesh)
    first = "GET /slow/1500 HTTP/1.1\r\nHost: bad.test\r\n\r\n"
    bad = ("POST /bad/behind HTTP/1.1\r\nHost: bad.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
           "0\r\n\r\n")
    out = raw(mesh, [first, bad], pause=0.5, timeout=5)
    assert not [r for r in out["responses"] if "meshd-proxy-error" in r["headers"]], out
    assert out["end"] in ("reset", "eof") and out["seconds"] < 5, out
    wait_for(lambda: "GET /slow/1500 HTTP/1.1" in mesh.backend_requests(), 5, "the first request at the backend")
    log = mesh.backend_requests()
    assert not [line for line in log if "/bad/behind" in line], log[-5:]
    d.take()
    assert d.value("outbound", "http_rejected_total",
                   {"direction": "outbound", "status_code": "400", "reason": "cl_and_te"}) == 1


@pytest.mark.timeout(60)
def test_upgrade_then_raw_bytes_flow_both_ways(mesh):
    d = Delta(mesh)
    out = mesh.client.app("http-upgrade", HTTP_VIP, 80, "ws.test")
    assert out["responses"][0]["status"] == 101, out
    assert out["responses"][0]["headers"].get("upgrade") == "websocket", out
    # A websocket-ish frame, bytes that would be a smuggling attempt were
    # they HTTP, and 50 kB of noise: all echoed unchanged.
    assert out["echoes"] == [True, True, True], out
    assert out["tail"] == "", out
    d.until(lambda d: all(d.total(x, "http_tap_abandoned_total", direction=x, reason="upgrade") == 1
                          for x in ("outbound", "inbound")))
    for direction in ("outbound", "inbound"):
        assert d.value(direction, "http_tap_abandoned_total", {"direction": direction, "reason": "upgrade"}) == 1
        assert d.total(direction, "http_rejected_total") == 0
    golden(d, "ws.test", 1, {(101, "success"): 1})


@pytest.mark.timeout(60)
def test_a_server_that_speaks_first_is_not_kept_waiting(mesh):
    d = Delta(mesh)
    # 9500: not an opaque port, a meshed service (mTLS between the proxies).
    # The first connection learns the service and gets a session ticket;
    # the second then shows what detection costs: it must not wait for the
    # client, which says nothing until it is greeted.
    for _ in range(2):
        out = mesh.client.app("greet-time", BACKEND, 9500)
        assert (out["greeting"], out["echo"]) == ("HELLO 9500\r\n", "ping\r\n"), out
    assert out["greeting_seconds"] < 0.5, out
    # 3306: an opaque port, never looked at.
    out = mesh.client.app("greet-time", BACKEND, 3306)
    assert (out["greeting"], out["echo"]) == ("HELLO 3306\r\n", "ping\r\n"), out
    assert out["greeting_seconds"] < 0.5, out
    d.take()
    assert d.total("outbound", "tcp_open_total", direction="outbound", dst="greet.prod", tls="true") == 2
    for direction in ("outbound", "inbound"):
        detected = {p: d.value(direction, "protocol_detect_total", {"direction": direction, "protocol": p})
                    for p in ("server_first", "skipped", "http1", "opaque")}
        assert detected == {"server_first": 2, "skipped": 1, "http1": 0, "opaque": 0}, (direction, detected)
        assert d.total(direction, "request_total") == 0


@pytest.mark.timeout(60)
def test_h2_tls_and_other_bytes_are_detected_and_left_alone(mesh):
    d = Delta(mesh)
    hello = client_hello("Shop.Example")
    # The last sends nothing: a TCP health check, counted when it closes.
    for payload in (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", hello, b"\x00\x01binary, not HTTP\r\n\r\n", b""):
        raw(mesh, payload, timeout=1)

    def detected(d, direction):
        return {p: d.value(direction, "protocol_detect_total", {"direction": direction, "protocol": p})
                for p in ("h2", "tls", "opaque", "http1", "silent")}
    d.until(lambda d: all(detected(d, x)["silent"] == 1 for x in ("outbound", "inbound")))
    for direction in ("outbound", "inbound"):
        got = detected(d, direction)
        # The client's proxy terminates HTTP/2: a preface without a stream
        # never opens a connection to the server, whose proxy sees no h2.
        h2 = 1 if direction == "outbound" else 0
        assert got == {"h2": h2, "tls": 1, "opaque": 1, "http1": 0, "silent": 1}, (direction, got)
        # The application's own TLS, by the server name it asked for.
        assert d.value(direction, "tls_sni_total", {"direction": direction, "sni": "shop.example"}) == 1, direction
        assert d.total(direction, "request_total") == 0
        assert d.total(direction, "http_rejected_total") == 0


@pytest.mark.timeout(60)
def test_a_request_without_a_response_is_a_failure(mesh):
    """POSTs (never sent again: not idempotent) that the backend closes on,
    or resets, without answering."""
    d = Delta(mesh)
    out = raw(mesh, "POST /hangup HTTP/1.1\r\nHost: hangup.test\r\nContent-Length: 0\r\n\r\n")
    assert (out["responses"], out["end"]) == ([], "eof"), out
    out = raw(mesh, "POST /reset HTTP/1.1\r\nHost: reset.test\r\nContent-Length: 0\r\n\r\n")
    assert out["responses"] == [] and out["end"] in ("reset", "eof"), out

    def failed(d, direction, authority, **labels):
        return d.total(direction, "response_total", **d.labels(direction, authority), classification="failure",
                       status_code=None, **labels)
    d.until(lambda d: all(failed(d, x, a) == 1 for x in ("outbound", "inbound") for a in ("hangup.test", "reset.test")))
    for direction in ("outbound", "inbound"):
        # The backend closed: error="closed", and no status.
        assert failed(d, direction, "hangup.test", error="closed") == 1, series_of(d.after[direction], "hangup.test")
        assert d.total(direction, "response_total", authority="hangup.test") == 1
        # It reset: a failure with some other error.
        assert failed(d, direction, "reset.test") == 1, series_of(d.after[direction], "reset.test")
        assert failed(d, direction, "reset.test", error="closed") == 0, series_of(d.after[direction], "reset.test")
        for a in ("hangup.test", "reset.test"):
            assert d.value(direction, "request_total", d.labels(direction, a)) == 1


@pytest.mark.timeout(60)
def test_latency_is_the_time_to_the_response_head(mesh):
    d = Delta(mesh)
    # 250 ms before the head: never in the 200 ms bucket.
    out = raw(mesh, "GET /slow/250 HTTP/1.1\r\nHost: slow.test\r\n\r\n", 1)
    assert [r["status"] for r in out["responses"]] == [200], out
    # The head at once, the body's end 1 s later: the head's time counts.
    out = raw(mesh, "GET /trickle/1000 HTTP/1.1\r\nHost: trickle.test\r\n\r\n", 1)
    assert [r["body"] for r in out["responses"]] == ["head-first,then the rest"], out
    assert out["seconds"] >= 1, out
    d.take()
    for direction in ("outbound", "inbound"):
        slow = d.labels(direction, "slow.test")
        assert d.bucket(direction, "response_latency_ms_bucket", slow, 200) == 0
        assert d.bucket(direction, "response_latency_ms_bucket", slow, 2000) == 1
        assert d.value(direction, "response_latency_ms_count", slow) == 1
        assert 250 <= d.value(direction, "response_latency_ms_sum", slow) < 2000
        trickle = d.labels(direction, "trickle.test")
        assert d.bucket(direction, "response_latency_ms_bucket", trickle, 500) == 1
    golden(d, "trickle.test", 1, {(200, "success"): 1})
    golden(d, "slow.test", 1, {(200, "success"): 1})


@pytest.mark.timeout(60)
def test_a_hung_endpoint_is_answered_504_after_the_services_request_timeout(mesh):
    d = Delta(mesh)
    # timed.prod's registry entry: 400 ms. A response that begins in time
    # is not cut, however long its body then takes.
    out = raw(mesh, "GET /slow/100 HTTP/1.1\r\nHost: timed.test\r\n\r\n", 1, host=TIMED_VIP)
    assert [r["status"] for r in out["responses"]] == [200], out
    out = raw(mesh, "GET /trickle/800 HTTP/1.1\r\nHost: timed.test\r\n\r\n", 1, host=TIMED_VIP)
    assert [r["body"] for r in out["responses"]] == ["head-first,then the rest"], out
    # A hung backend: the mesh answers for it, and says so.
    out = raw(mesh, "GET /slow/5000 HTTP/1.1\r\nHost: timed.test\r\n\r\n", timeout=8, host=TIMED_VIP)
    assert_refused(out, 504, "request_timeout")
    assert 0.4 <= out["seconds"] < 2, out
    # Pipelined behind an answered request: the clock starts again for it,
    # and it is the one answered 504.
    out = raw(mesh, "GET /ok/first HTTP/1.1\r\nHost: timed.test\r\n\r\n"
                    "GET /slow/5000 HTTP/1.1\r\nHost: timed.test\r\n\r\n", timeout=8, host=TIMED_VIP)
    assert [r["status"] for r in out["responses"]] == [200, 504], out
    assert out["responses"][1]["headers"].get("meshd-proxy-error") == "request_timeout", out
    # http.prod has no timeout (none in its entry, no --request-timeout):
    # 1 s is waited for.
    out = raw(mesh, "GET /slow/1000 HTTP/1.1\r\nHost: untimed.test\r\n\r\n", 1)
    assert [r["status"] for r in out["responses"]] == [200], out

    labels = out_labels("timed.test", "timed.prod")
    d.until(lambda d: d.total("outbound", "tcp_close_total", error="request_timeout") >= 2)
    assert d.value("outbound", "response_total", {**labels, "status_code": "504", "classification": "failure"}) == 2
    assert d.value("outbound", "response_total", {**labels, "status_code": "200", "classification": "success"}) == 3
    assert d.value("outbound", "request_total", labels) == 5
    assert d.total("outbound", "tcp_close_total", error="request_timeout") == 2
    # The timed-out requests reached the backend: the mesh did not refuse them.
    assert len([r for r in mesh.backend_requests() if "/slow/5000" in r]) >= 2


@pytest.mark.timeout(60)
def test_an_endpoint_failing_every_request_is_ejected_and_probed(mesh):
    """flaky.prod has two endpoints, one answering 503 to everything. Each
    request is on a connection of its own, balanced on its own: failure
    accrual takes the broken endpoint out after 5 failures in a row, so the
    clients see few 503s (half of them without it), and it is probed again
    later (each failed probe keeps it out for longer)."""
    d = Delta(mesh)
    statuses = []
    for i in range(40):
        out = raw(mesh, f"GET /ok/flaky{i} HTTP/1.1\r\nHost: flaky.test\r\nConnection: close\r\n\r\n", 1,
                  host=FLAKY_VIP)
        assert len(out["responses"]) == 1, out
        statuses.append(out["responses"][0]["status"])
    failed = statuses.count(503)
    assert statuses.count(200) + failed == 40, statuses
    assert 5 <= failed <= 10, statuses
    assert statuses[-10:].count(503) <= 2, statuses  # out, bar the odd probe

    r = mesh.client.ns.exec([binary("meshd-ctl"), "endpoints", "flaky.prod", "-o", "json"], check=False)
    assert r.returncode == 0, r.stderr
    eps = {e["address"]: e for e in json.loads(r.stdout)["endpoints"]}
    broken, good = eps["10.78.0.2:8083"], eps["10.78.0.2:8080"]
    assert broken["state"] == "ejected" and broken["ejections"] >= 1 and broken["request_failures"] >= 5, eps
    assert good["state"] == "ready" and good["ejections"] == 0 and good["response_peak_us"] > 0, eps
    d.take()
    assert d.value("outbound", "outbound_balancer_ejections_total",
                   {"dst": "flaky.prod", "endpoint": "10.78.0.2:8083"}) == broken["ejections"]
    labels = out_labels("flaky.test", "flaky.prod")
    assert d.value("outbound", "response_total", {**labels, "status_code": "503", "classification": "failure"}) == failed


def spread_requests(mesh):
    """The request lines each of spread.prod's two backends served."""
    out = []
    for path in mesh.spread_logs:
        with open(path) as f:
            out.append(f.read().splitlines())
    return out


def curl_on_one_connection(mesh, vip, authority, count, *args):
    """curl's GET /ok/1 .. /ok/count on one keep-alive connection (args: more
    of curl's, as -d for POSTs): per response, its status and X-Peer-Port
    (the backend's view of the connection it came on)."""
    r = mesh.client.ns.exec(["curl", "-sS", "--noproxy", "*", "--max-time", "20", "--resolve", f"{authority}:80:{vip}",
                             "-w", "<<%{num_connects} %{http_code} %header{x-peer-port}>>\n", *args,
                             f"http://{authority}/ok/[1-{count}]"], check=False)
    assert r.returncode == 0, r.stderr
    answers = re.findall(r"<<(\d) (\d+) (\d*)>>", r.stdout)
    assert [a[0] for a in answers] == ["1"] + ["0"] * (count - 1), r.stdout  # curl's one connection
    return [(int(a[1]), a[2]) for a in answers]


@pytest.mark.timeout(60)
def test_requests_on_one_keep_alive_connection_are_balanced_one_by_one(mesh):
    """curl sends 40 requests on one connection to spread.prod, which has two
    endpoints. The client's proxy balances each request, so both backends
    serve some, and moving between them reuses one pooled connection per
    endpoint (the backends see two connections in all, by their peer
    ports): after the first move, every move is a reuse."""
    d = Delta(mesh)
    before = [len(x) for x in spread_requests(mesh)]
    answers = curl_on_one_connection(mesh, SPREAD_VIP, "spread.test", 40)
    assert {status for status, _ in answers} == {200}, answers
    served = [x[n:] for x, n in zip(spread_requests(mesh), before)]
    assert sorted(served[0] + served[1]) == sorted(f"GET /ok/{i} HTTP/1.1" for i in range(1, 41)), served
    assert served[0] and served[1], served
    ports = {port for _, port in answers}
    assert len(ports) == 2, answers  # one upstream connection per endpoint, reused
    d.take()
    switches = d.value("outbound", "outbound_http_endpoint_switches_total", {"dst": "spread.prod"})
    reused = d.value("outbound", "outbound_upstream_reused_total", {"dst": "spread.prod"})
    assert switches >= 1 and reused == switches - 1, (switches, reused)
    for direction in ("outbound", "inbound"):
        labels = d.labels(direction, "spread.test", "spread.prod")
        assert d.value(direction, "response_total", {**labels, "status_code": "200", "classification": "success"}) == 40

    # POSTs could not be sent again should an idle connection turn out
    # closed: they stay on their connection, which the server keeps
    # showing alive (while its endpoint is not failing).
    answers = curl_on_one_connection(mesh, SPREAD_VIP, "spread.test", 20, "-d", "x")
    assert {status for status, _ in answers} == {200}, answers
    assert len({port for _, port in answers}) == 1, answers


@pytest.mark.timeout(60)
def test_client_connections_one_after_another_reuse_one_upstream_connection(mesh):
    """Five curls, one after another, each a connection of its own: the
    client's proxy keeps the upstream connection (mTLS to the server's
    proxy) when each client goes, and the next client's request takes it,
    so the backend sees one connection (one peer port) for all five."""
    d = Delta(mesh)
    ports = []
    for i in range(5):
        r = mesh.client.ns.exec(["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-o", "/dev/null", "-w",
                                 "%{http_code} %header{x-peer-port}", f"http://{HTTP_VIP}/ok/pooled{i}"], check=False)
        assert r.returncode == 0, r.stderr
        status, port = r.stdout.split()
        assert status == "200", r.stdout
        ports.append(port)
    assert len(set(ports)) == 1, ports
    d.take()
    assert d.value("outbound", "outbound_upstream_reused_total", {"dst": "http.prod"}) >= 4
    assert d.total("outbound", "tcp_open_total", dst="http.prod") == 5  # the clients' connections
    assert d.total("inbound", "tcp_open_total", direction="inbound") <= 1  # at most the first came anew
    assert value(d.after["outbound"], "meshd_upstream_idle_connections", {}) >= 1  # kept for the next client


@pytest.mark.timeout(60)
def test_an_endpoint_that_refuses_connections_costs_no_request(mesh):
    """halfdead.prod: one endpoint refuses connections. Requests balanced to it
    (on one client connection) go to the other endpoint instead, over the
    idle connection already there: every request is answered, and the
    backend sees one connection."""
    d = Delta(mesh)
    answers = curl_on_one_connection(mesh, HALFDEAD_VIP, "halfdead.test", 20)
    assert [status for status, _ in answers] == [200] * 20, answers
    assert len({port for _, port in answers}) == 1, answers
    d.take()
    assert d.value("outbound", "outbound_connect_failures_total",
                   {"dst": "halfdead.prod", "endpoint": f"{CTRL_IP}:8099"}) >= 1


@pytest.mark.timeout(60)
def test_failed_attempts_go_to_the_other_endpoint_and_the_broken_one_is_ejected(mesh):
    """mixed.prod: one endpoint answers 503 to everything. curl's requests on
    one connection are balanced one by one, and each 503 is sent again to
    the other endpoint: the client sees only 200s. The attempts that failed
    feed failure accrual, which ejects the broken endpoint (5 failures in a
    row), and the connection's later requests all go to the good one."""
    d = Delta(mesh)
    answers = curl_on_one_connection(mesh, MIXED_VIP, "mixed.test", 30)
    assert [status for status, _ in answers] == [200] * 30, answers
    d.take()
    labels = d.labels("inbound", "mixed.test")
    failed_attempts = d.value("inbound", "response_total", {**labels, "status_code": "503", "classification": "failure"})
    assert 5 <= failed_attempts <= 10, failed_attempts  # enough for the ejection, then kept away
    assert d.value("outbound", "outbound_http_retries_total", {"dst": "mixed.prod"}) == failed_attempts
    assert d.value("outbound", "outbound_balancer_ejections_total", {"dst": "mixed.prod", "endpoint": "10.78.0.2:8083"}) >= 1
    assert d.value("outbound", "outbound_http_endpoint_switches_total", {"dst": "mixed.prod"}) >= 1


@pytest.mark.timeout(60)
def test_nginx_serves_curl_through_the_mesh(mesh):
    d = Delta(mesh)
    got = os.path.join(mesh.workdir.name, "big.got")
    r = mesh.client.ns.exec(["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-H", "Host: nginx.test",
                             "-o", got, "-w", "<<%{num_connects} %{http_code}>>", f"http://{NGINX_VIP}/big.bin",
                             "-o", "/dev/null", f"http://{NGINX_VIP}/index.html"], check=False)
    assert r.returncode == 0, r.stderr
    # Two requests, one connection (keep-alive), the body intact.
    assert r.stdout.count("<<") == 2 and "<<1 200>>" in r.stdout and "<<0 200>>" in r.stdout, r.stdout
    with open(got, "rb") as a, open(os.path.join(mesh.www, "big.bin"), "rb") as b:
        assert hashlib.sha256(a.read()).digest() == hashlib.sha256(b.read()).digest()
    out = curl(mesh.client, "-H", "Host: nginx.test", f"http://{NGINX_VIP}/status/503")
    assert "<<1 503>>" in out, out
    d.until(lambda d: d.value("outbound", "request_total", out_labels("nginx.test", "nginx.prod")) == 3)
    labels = out_labels("nginx.test", "nginx.prod")
    assert d.value("outbound", "request_total", labels) == 3
    assert d.value("outbound", "response_total", {**labels, "status_code": "200", "classification": "success"}) == 2
    assert d.value("outbound", "response_total", {**labels, "status_code": "503", "classification": "failure"}) == 1
    assert d.value("inbound", "request_total", in_labels("nginx.test")) == 3


@pytest.mark.timeout(60)
def test_nghttp_h2c_streams_are_counted_one_by_one_on_both_proxies(mesh):
    """HTTP/2 with prior knowledge from a real client (nghttp) to a real
    server (nginx): ten streams on one connection, recognised as h2 by
    both proxies, relayed as they are, and each stream counted as a
    request with its status and latency."""
    d = Delta(mesh)
    r = mesh.client.ns.exec(["nghttp", "-nv", "-t", "10", "-m", "10", f"http://{H2C_VIP}/index.html"], check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert r.stdout.count(":status: 200") == 10, r.stdout[-2000:]
    d.until(lambda d: d.total("inbound", "response_total", direction="inbound", authority=H2C_VIP) >= 10)
    for side in ("outbound", "inbound"):
        assert d.value(side, "protocol_detect_total", {"direction": side, "protocol": "h2"}) == 1, side
        assert d.total(side, "request_total", direction=side, authority=H2C_VIP) == 10, side
        assert d.total(side, "response_total", direction=side, authority=H2C_VIP, status_code="200",
                       classification="success") == 10, side
        assert d.total(side, "response_latency_ms_count", direction=side, authority=H2C_VIP) == 10, side
    assert d.total("outbound", "request_total", dst_service="h2c.prod") == 10


def test_grpc_status_in_trailers_decides_success(mesh):
    """gRPC over h2c: the HTTP status is 200 for every call, and the
    grpc-status in each stream's trailers says whether it worked. The
    server fails every third call of a connection with UNAVAILABLE (14):
    both proxies count 6 successes and 3 failures, per stream, from the
    trailers."""
    d = Delta(mesh)
    r = mesh.client.ns.exec(["nghttp", "-n", "-m", "9", f"http://{GRPC_VIP}/helloworld.Greeter/SayHello"],
                            check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    d.until(lambda d: d.total("inbound", "response_total", direction="inbound", authority=GRPC_VIP) >= 9)
    for side in ("outbound", "inbound"):
        assert d.total(side, "request_total", direction=side, authority=GRPC_VIP) == 9, side
        ok = d.total(side, "response_total", direction=side, authority=GRPC_VIP, status_code="200",
                     grpc_status="0", classification="success")
        failed = d.total(side, "response_total", direction=side, authority=GRPC_VIP, status_code="200",
                         grpc_status="14", classification="failure")
        assert (ok, failed) == (6, 3), side
    assert d.total("outbound", "response_total", dst_service="grpc.prod", classification="failure") == 3


def grpc_calls(mesh, vip, n):
    """n gRPC-shaped calls on one h2c connection (nghttp), all answered 200:
    the x-server header of each response, in the order nghttp printed them."""
    r = mesh.client.ns.exec(["nghttp", "-nv", "-m", str(n), f"http://{vip}/meshd.Test/Call"], check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert r.stdout.count(":status: 200") == n, r.stdout[-2000:]
    return re.findall(r"x-server: (\w+)", r.stdout)


@pytest.mark.timeout(60)
def test_h2_streams_on_one_connection_are_balanced_one_by_one(mesh):
    """The client's proxy terminates HTTP/2: 20 calls on one connection to
    streams.prod go to both of its endpoints (P2C per stream, the streams
    in flight counting as each endpoint's load), each endpoint's share
    over one mTLS connection to the server's proxy, which a second client
    connection's calls share; both proxies count every call."""
    d = Delta(mesh)
    servers = grpc_calls(mesh, STREAMS_VIP, 20)
    assert len(servers) == 20 and servers.count("a") >= 5 and servers.count("b") >= 5, servers
    servers = grpc_calls(mesh, STREAMS_VIP, 20)
    assert len(servers) == 20 and servers.count("a") >= 5 and servers.count("b") >= 5, servers
    d.until(lambda d: d.total("inbound", "response_total", direction="inbound", authority=STREAMS_VIP) >= 40)
    for side in ("outbound", "inbound"):
        assert d.total(side, "request_total", direction=side, authority=STREAMS_VIP) == 40, side
        assert d.total(side, "response_total", direction=side, authority=STREAMS_VIP, status_code="200",
                       grpc_status="0", classification="success") == 40, side
    assert d.total("outbound", "request_total", dst_service="streams.prod", tls="true") == 40
    # Two client connections in; at most one connection to each endpoint
    # (mTLS), shared by both (one may be open already, from another test).
    assert d.value("outbound", "protocol_detect_total", {"direction": "outbound", "protocol": "h2"}) == 2
    assert d.value("inbound", "protocol_detect_total", {"direction": "inbound", "protocol": "h2"}) <= 2


@pytest.mark.timeout(60)
def test_h2_downloads_larger_than_every_window_arrive_whole(mesh):
    """20 downloads of a 256 KiB file at once on one h2c connection through
    the terminating proxy: 5 MiB, more than a stream's window (256 KiB)
    and the connection's (4 MiB) on each of its sides, and more than the
    client's own windows, so every byte crosses only as windows reopen
    end to end. Every stream gets the whole file."""
    d = Delta(mesh)
    r = mesh.client.ns.exec(["nghttp", "-nv", "-m", "20", f"http://{H2C_VIP}/big.bin"], check=False, timeout=40)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert r.stdout.count(":status: 200") == 20, r.stdout[-2000:]
    got = {}
    for length, stream in re.findall(r"recv DATA frame <length=(\d+), flags=0x0\d, stream_id=(\d+)>", r.stdout):
        got[stream] = got.get(stream, 0) + int(length)
    assert sorted(got.values()) == [256 * 1024] * 20, got
    d.until(lambda d: d.total("outbound", "response_total", direction="outbound", authority=H2C_VIP) >= 20)
    assert d.total("outbound", "response_total", direction="outbound", authority=H2C_VIP, status_code="200",
                   classification="success") == 20


@pytest.mark.timeout(60)
def test_h2_streams_past_a_servers_goaway_are_sent_again(mesh):
    """nginx ends an HTTP/2 connection after 1000 requests (its default
    keepalive_requests): a GOAWAY, and the streams already sent past its
    last one are refused unprocessed. 1500 requests, 100 at a time, on one
    client connection all succeed: the client's proxy sends the refused
    ones again over a new connection to the endpoint."""
    d = Delta(mesh)
    r = mesh.client.ns.exec(["h2load", "-c1", "-t1", "-m100", "-n", "1500", f"http://{H2C_VIP}/index.html"],
                            check=False, timeout=40)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert "1500 succeeded, 0 failed, 0 errored, 0 timeout" in r.stdout, r.stdout[-1500:]
    d.until(lambda d: d.total("outbound", "response_total", direction="outbound", authority=H2C_VIP) >= 1500)
    assert d.total("outbound", "response_total", direction="outbound", authority=H2C_VIP, status_code="200",
                   classification="success") == 1500
    # The server's proxy saw nginx refuse streams past its GOAWAY, and a
    # new connection from the client's proxy.
    assert d.total("inbound", "response_total", direction="inbound", authority=H2C_VIP,
                   error="refused_stream") > 0
    assert d.value("inbound", "protocol_detect_total", {"direction": "inbound", "protocol": "h2"}) >= 1


@pytest.mark.timeout(60)
def test_an_h2_get_answered_503_is_retried_within_budget(mesh):
    """Through the terminating proxy, a GET stream answered 503 (nginx's
    /status/503 on h2c.prod) is sent again like an HTTP/1 request: twice
    more, then the last 503 reaches the client. The server's proxy counts
    the three attempts, the client's one request and two retries; a POST
    is not retried."""
    d = Delta(mesh)
    r = mesh.client.ns.exec(["nghttp", "-nv", f"http://{H2C_VIP}/status/503"], check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert r.stdout.count(":status: 503") == 1, r.stdout[-2000:]
    d.until(lambda d: d.total("outbound", "response_total", direction="outbound", authority=H2C_VIP) >= 1)
    assert d.total("outbound", "outbound_http_retries_total", dst="h2c.prod") == 2
    assert d.total("outbound", "response_total", direction="outbound", authority=H2C_VIP, status_code="503") == 1
    d.until(lambda d: d.total("inbound", "response_total", direction="inbound", authority=H2C_VIP) >= 3)
    assert d.total("inbound", "response_total", direction="inbound", authority=H2C_VIP, status_code="503") == 3
    r = mesh.client.ns.exec(["nghttp", "-nv", "-d", "/etc/hostname", f"http://{H2C_VIP}/status/503"], check=False)
    assert r.stdout.count(":status: 503") == 1, r.stdout[-2000:]
    d.until(lambda d: d.total("inbound", "response_total", direction="inbound", authority=H2C_VIP) >= 4)
    assert d.total("outbound", "outbound_http_retries_total", dst="h2c.prod") == 2


@pytest.mark.timeout(60)
def test_h2_streams_bound_for_an_endpoint_that_refuses_go_to_the_other(mesh):
    """h2half.prod's second endpoint refuses connections. The streams the
    balancer gives it wait unsent while it connects; when the connect
    fails they go to the other endpoint, whole: the client gets every
    answer."""
    d = Delta(mesh)
    for _ in range(3):  # fresh connections, so that the dead endpoint gets picked again
        servers = grpc_calls(mesh, H2HALF_VIP, 6)
        assert servers == ["a"] * 6, servers
    d.until(lambda d: d.total("outbound", "response_total", direction="outbound", authority=H2HALF_VIP) >= 18)
    assert d.total("outbound", "response_total", direction="outbound", authority=H2HALF_VIP,
                   classification="success") == 18
    assert d.total("outbound", "response_total", direction="outbound", authority=H2HALF_VIP,
                   classification="failure") == 0


@pytest.mark.timeout(60)
def test_an_h2_stream_left_unanswered_gets_504_from_the_mesh(mesh):
    """h2hang.prod answers no stream; its registry entry sets a 400 ms
    request timeout. Each of two calls on one connection gets the client's
    proxy's own 504 (saying so in meshd-proxy-error) after about that long,
    the stream is cancelled towards the server, and the connection stays
    usable: both calls end, each counted as a timeout."""
    d = Delta(mesh)
    start = time.monotonic()
    r = mesh.client.ns.exec(["nghttp", "-nv", "-m", "2", f"http://{H2HANG_VIP}/meshd.Test/Call"], check=False)
    took = time.monotonic() - start
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    assert r.stdout.count(":status: 504") == 2, r.stdout[-2000:]
    assert r.stdout.count("meshd-proxy-error: request_timeout") == 2, r.stdout[-2000:]
    assert 0.3 < took < 5, took
    d.until(lambda d: d.total("outbound", "response_total", direction="outbound", authority=H2HANG_VIP) >= 2)
    assert d.total("outbound", "response_total", direction="outbound", authority=H2HANG_VIP, status_code="504",
                   classification="failure") == 2


@pytest.mark.timeout(60)
def test_a_burst_of_first_connections_to_a_new_service_all_wait_for_discovery(mesh):
    """Eight connections at once to a service the client's proxy has never
    looked up: the first asks discovery, and all eight wait for its
    answer, then go to the service. (A connection accepted after the
    answer came must not make the proxy forget to wake those already
    waiting: they would go to the virtual address as dialled after the
    discovery timeout, and fail.)"""
    start = time.monotonic()
    r = mesh.client.ns.exec(["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-Z", "--parallel-immediate",
                             "--parallel-max", "8", "-w", "<<%{http_code}>>",
                             *[a for i in range(8) for a in ("-o", "/dev/null", f"http://{BURST_VIP}/ok/burst{i}")]],
                            check=False)
    took = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("<<200>>") == 8, r.stdout
    assert took < 3, took


def sent_three_times(mesh, path, authority, status):
    """curl's GET of path (Host: authority), which the client's proxy sends
    three times in all (twice more, the budget allowing); the client gets
    `status`, a failure. Returns curl's output."""
    d = Delta(mesh)
    out = curl(mesh.client, "-i", "-H", f"Host: {authority}", f"http://{HTTP_VIP}{path}")
    assert f"<<1 {status}>>" in out, out
    labels = {**out_labels(authority), "status_code": str(status), "classification": "failure"}
    d.until(lambda d: d.value("outbound", "response_total", labels) == 1)
    assert d.total("outbound", "outbound_http_retries_total", dst="http.prod") == 2
    assert d.value("outbound", "request_total", out_labels(authority)) == 1
    assert d.value("inbound", "request_total", in_labels(authority)) == 3  # each attempt
    return out


def test_a_503_to_every_third_request_is_retried_within_budget(mesh):
    """retry.prod answers 503 to every third request it gets. 30 GETs on one
    keep-alive connection all succeed for the client: its proxy drops each
    503 and sends the request again (the same connection, the same server).
    The server's proxy counts every attempt, so the two proxies show the
    success rate before retries (inbound) and after (outbound); the retries
    are counted apart. POST is not idempotent: its 503s reach the client."""
    d = Delta(mesh)
    out = curl(mesh.client, *[a for i in range(30) for a in ("-o", "/dev/null", f"http://{RETRY_VIP}/ok/{i}")])
    codes = re.findall(r"<<(\d+) (\d+)>>", out)
    assert [c for _, c in codes] == ["200"] * 30, out
    assert sum(int(n) for n, _ in codes) == 1, out  # one connection, kept alive
    d.until(lambda d: d.total("inbound", "response_total", direction="inbound", authority=RETRY_VIP) >= 30)
    retries = d.total("outbound", "outbound_http_retries_total", dst="retry.prod")
    # Every third of the 30 + retries requests the server got was a 503.
    assert retries == (30 + retries) // 3 and retries >= 14, retries
    assert d.total("outbound", "request_total", direction="outbound", authority=RETRY_VIP) == 30
    assert d.total("outbound", "response_total", direction="outbound", authority=RETRY_VIP, status_code="200",
                   classification="success") == 30
    assert d.total("outbound", "response_total", direction="outbound", authority=RETRY_VIP, status_code="503") == 0
    assert d.total("inbound", "request_total", direction="inbound", authority=RETRY_VIP) == 30 + retries
    assert d.total("inbound", "response_total", direction="inbound", authority=RETRY_VIP, status_code="503",
                   classification="failure") == retries
    assert d.total("outbound", "outbound_http_retries_refused_total", dst="retry.prod") == 0

    d = Delta(mesh)
    out = curl(mesh.client, *[a for i in range(6) for a in ("-o", "/dev/null", "-X", "POST", "-d", "x",
                                                             f"http://{RETRY_VIP}/ok/post{i}")])
    codes = [c for _, c in re.findall(r"<<(\d+) (\d+)>>", out)]
    assert codes.count("503") == 2 and codes.count("200") == 4, out
    d.until(lambda d: d.total("outbound", "response_total", direction="outbound", authority=RETRY_VIP) >= 6)
    assert d.total("outbound", "outbound_http_retries_total", dst="retry.prod") == 0
    assert d.total("outbound", "response_total", direction="outbound", authority=RETRY_VIP, status_code="503") == 2

    # The first request of a connection too; a 503 every time is sent twice
    # more, then the client gets it.
    sent_three_times(mesh, "/status/503", "first.test", 503)


def test_a_get_the_server_hangs_up_on_is_sent_again_then_answered_502(mesh):
    """The server closes without answering, every time: the GET goes twice
    more over another connection, then the client gets a 502 saying so
    rather than a connection that ends with no answer."""
    out = sent_three_times(mesh, "/hangup", "hangup.test", 502)
    assert "meshd-proxy-error: retry_failed" in out, out
    assert mesh.backend_requests()[-3:] == ["GET /hangup HTTP/1.1"] * 3


def test_a_503_then_a_hang_up_ends_with_the_last_answer(mesh):
    """The server answers 503 and keeps the connection, then closes it when
    the request comes again on it: the third attempt goes over another
    connection, whose 503 (retries spent) is what the client gets."""
    out = sent_three_times(mesh, "/503-then-hangup", "hangup503.test", 503)
    assert "meshd-proxy-error" not in out, out


def test_a_service_whose_registry_entry_says_no_retries_is_not_retried(mesh):
    """nginx.prod's registry entry has retry_statuses = []: its 503 goes to
    the client at once, whatever the proxy's --retry-statuses."""
    d = Delta(mesh)
    out = curl(mesh.client, "-H", "Host: noretry.test", f"http://{NGINX_VIP}/status/503")
    assert "<<1 503>>" in out, out
    d.until(lambda d: d.value("inbound", "request_total", in_labels("noretry.test")) >= 1)
    assert d.total("outbound", "outbound_http_retries_total", dst="nginx.prod") == 0
    assert d.value("inbound", "request_total", in_labels("noretry.test")) == 1


# Last of the tests on the shared mesh: it fills the proxies' authority
# tables (requests with authorities new after it are counted under "").
@pytest.mark.timeout(90)
def test_random_hosts_are_bounded_to_a_fixed_number_of_authorities(mesh):
    d = Delta(mesh)
    out = mesh.client.app("http-hosts", HTTP_VIP, 80, 300, 11, 10)
    assert out == {"statuses": {"200": 300}, "end": "done", "sent": 300}, out
    d.take()
    for direction in ("outbound", "inbound"):
        m = d.after[direction]
        authorities = {labels["authority"] for labels, _ in samples(m, "request_total")
                       if labels.get("direction") == direction}
        # Server names of the application's own TLS share the bound.
        snis = {labels["sni"] for labels, _ in samples(m, "tls_sni_total") if labels.get("direction") == direction}
        # One worker: at most its cap of distinct names, plus "" for the rest.
        assert "" in authorities, authorities
        assert len((authorities | snis) - {""}) == AUTHORITY_CAP, (len(authorities), snis)
        assert d.total(direction, "http_authority_overflow_total") > 0
        # Every request is still counted, named or not.
        assert d.total(direction, "request_total", direction=direction) == 300
        assert d.total(direction, "response_total", direction=direction, status_code="200") == 300
        assert d.total(direction, "request_total", direction=direction, authority="") > 0


# --- flags: meshes of their own --------------------------------------------

@pytest.mark.timeout(90)
def test_http_off_relays_plain_tcp_and_counts_nothing():
    m = HttpMesh(meshd_flags=THREADS + ("--http", "off"))
    try:
        out = curl(m.client, "--resolve", f"web.test:80:{HTTP_VIP}", "http://web.test/ok/one",
                   "http://web.test/ok/two")
        assert out == "ok /ok/one\n\n<<1 200>>\nok /ok/two\n\n<<0 200>>\n", out
        # Nothing refuses either: what the tap would refuse reaches the
        # backend (which takes the chunked body, as the tap would not).
        out = raw(m, "POST /ok/cl-te HTTP/1.1\r\nHost: off.test\r\nContent-Length: 5\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1)
        assert [r["status"] for r in out["responses"]] == [200], out
        assert "POST /ok/cl-te HTTP/1.1" in m.backend_requests()
        for h in (m.client, m.server):
            metrics = h.metrics()
            counted = {k: v for k, v in metrics.items() if v and re.match(
                r"(request_total|response_total|response_latency_ms_\w+|protocol_detect_total|http_\w+)\{", k)}
            assert counted == {}, counted
            assert total(metrics, "tcp_open_total") == 2  # curl's connection, and the raw one
    finally:
        m.close()


@pytest.mark.timeout(90)
def test_request_line_and_head_limits_and_request_timeout_follow_the_flags():
    m = HttpMesh(meshd_flags=THREADS + ("--http-max-request-line", "1024", "--http-max-head-bytes", "4096"),
                 client_flags=("--request-timeout", "700ms"))
    try:
        # The proxy-wide request timeout, for a service that sets none;
        # timed.prod's own 400 ms still wins for it.
        out = raw(m, "GET /slow/5000 HTTP/1.1\r\nHost: flag.test\r\n\r\n", timeout=8)
        assert_refused(out, 504, "request_timeout")
        assert 0.7 <= out["seconds"] < 2.5, out
        out = raw(m, "GET /slow/5000 HTTP/1.1\r\nHost: flag.test\r\n\r\n", timeout=8, host=TIMED_VIP)
        assert_refused(out, 504, "request_timeout")
        assert 0.4 <= out["seconds"] < 0.7, out

        def line(n):  # a request line of exactly n bytes (without CRLF)
            head = "GET /ok/limit?"
            tail = " HTTP/1.1"
            return head + "q" * (n - len(head) - len(tail)) + tail

        def request(request_line, header_bytes=0):
            pad = f"X-Pad: {'p' * header_bytes}\r\n" if header_bytes else ""
            return f"{request_line}\r\nHost: limits.test\r\n{pad}\r\n"
        out = raw(m, request(line(1024)), 1)
        assert [r["status"] for r in out["responses"]] == [200], out
        assert_refused(raw(m, request(line(1025)), timeout=5), 414, "request_line_too_long")
        small = request(line(100), 3900)
        assert len(small) < 4096
        out = raw(m, small, 1)
        assert [r["status"] for r in out["responses"]] == [200], out
        assert_refused(raw(m, request(line(100), 4100), timeout=5), 431, "head_too_large")
        assert len([r for r in m.backend_requests() if "/ok/limit" in r]) == 2
        metrics = m.client.metrics()
        for status, reason in (("414", "request_line_too_long"), ("431", "head_too_large")):
            assert value(metrics, "http_rejected_total",
                         {"direction": "outbound", "status_code": status, "reason": reason}) == 1
    finally:
        m.close()
