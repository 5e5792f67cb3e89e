"""The transparent proxy between two meshed hosts: an application in one
namespace talks to an application in the other by plain IP and port, through
the client's outbound meshd and the server's inbound meshd, and neither
notices anything but the bytes it expected."""
import threading

import pytest

from mesh import APPS, PYTHON, Pair, wait_for

MiB = 1 << 20
PORT = 8080


@pytest.fixture(scope="module")
def apps(pair):
    pair.server.serve(PORT)
    pair.client.serve(PORT + 1)
    return pair


def counter(metrics, name, direction, **labels):
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return metrics.get(f'{name}{{direction="{direction}"{extra}}}', 0)


@pytest.mark.timeout(60)
def test_both_directions_through_both_proxies(apps):
    before_c, before_s = apps.client.metrics(), apps.server.metrics()
    # client -> server: the server's app sees the connection arrive from its
    # own proxy on loopback, at the port it listens on.
    who = apps.client.ns.app("who", "10.77.0.2", PORT)
    assert who == {"peer": "127.0.0.1", "local": "127.0.0.1"}
    # server -> client, the other way round.
    who = apps.server.ns.app("who", "10.77.0.1", PORT + 1)
    assert who == {"peer": "127.0.0.1", "local": "127.0.0.1"}
    after_c, after_s = apps.client.metrics(), apps.server.metrics()
    for before, after in ((before_c, after_c), (before_s, after_s)):
        assert counter(after, "tcp_open_total", "outbound") - counter(before, "tcp_open_total", "outbound") == 1
        assert counter(after, "tcp_open_total", "inbound") - counter(before, "tcp_open_total", "inbound") == 1


@pytest.mark.timeout(120)
def test_64_mib_byte_exact_both_ways(apps):
    up = apps.client.ns.app("upload", "10.77.0.2", PORT, 64 * MiB, 1)
    assert up["count"] == up["expected_count"] and up["sha256"] == up["expected_sha256"]
    down = apps.client.ns.app("download", "10.77.0.2", PORT, 64 * MiB, 2)
    assert down["count"] == down["expected_count"] and down["sha256"] == down["expected_sha256"]


@pytest.mark.timeout(60)
def test_half_close_still_gets_the_whole_answer(apps):
    # upload shuts down its write side first; the server answers only after
    # it has seen that EOF, so the answer crosses a half-closed connection.
    up = apps.client.ns.app("upload", "10.77.0.2", PORT, 3 * MiB + 17, 3)
    assert up["sha256"] == up["expected_sha256"]


@pytest.mark.timeout(60)
def test_refused_upstream_closes_client_promptly(apps):
    before = apps.client.metrics()
    out = apps.client.ns.app("outcome", "10.77.0.2", 9)  # nothing listens on port 9
    assert out["outcome"] == "reset", out
    assert out["seconds"] < 3, out
    after = apps.client.metrics()
    failed = counter(after, "tcp_close_total", "outbound", classification="failure", error="upstream_reset") - \
        counter(before, "tcp_close_total", "outbound", classification="failure", error="upstream_reset")
    assert failed == 1


@pytest.mark.timeout(60)
def test_reset_is_propagated_as_reset(apps):
    out = apps.client.ns.app("outcome", "10.77.0.2", PORT, "RESET")
    assert out["outcome"] == "reset", out


@pytest.mark.timeout(120)
def test_1000_concurrent_connections(apps):
    out = apps.client.ns.app("many", "10.77.0.2", PORT, 1000, 1.0, timeout=100)
    assert out == {"ok": 1000, "failed": 0, "errors": []}


@pytest.mark.timeout(120)
def test_slow_reader_does_not_grow_proxy_memory(apps):
    """200 MiB offered to a client that stops reading: both proxies must stop
    reading too (one buffer per direction), not soak the rest up."""
    rss_before = {h: h.meshd_rss() for h in (apps.client, apps.server)}
    proc = apps.client.ns.spawn([PYTHON, APPS, "download", "10.77.0.2", str(PORT), str(200 * MiB), "4", str(MiB), "3"])
    line = proc.stdout.readline()
    assert "paused" in line, proc.stderr.read()
    peak = {h: 0 for h in rss_before}
    for _ in range(20):  # sample through the pause
        for h in peak:
            peak[h] = max(peak[h], h.meshd_rss())
        threading.Event().wait(0.1)
    out = proc.stdout.readline()
    proc.wait(timeout=90)
    assert '"count": %d' % (200 * MiB) in out, out
    for h, rss in rss_before.items():
        # The ceiling is the whole buffer pool (8 MiB on this machine) plus
        # slack for the allocator; 200 MiB would show far beyond it.
        assert peak[h] - rss < 24 * MiB, (h.ns.name, rss, peak[h])


@pytest.mark.timeout(60)
def test_metrics_count_what_was_sent(apps):
    before_c, before_s = apps.client.metrics(), apps.server.metrics()
    sizes = [1000, 20000, 300000]
    for i, n in enumerate(sizes):
        up = apps.client.ns.app("upload", "10.77.0.2", PORT, n, 10 + i)
        assert up["sha256"] == up["expected_sha256"]
    sent = sum(n + len("SINK\n") for n in sizes)
    answer = len(sizes) * (64 + 1 + 1)  # "<sha256 hex> <count>\n"
    answer += sum(len(str(n)) for n in sizes)

    def settled():
        c, s = apps.client.metrics(), apps.server.metrics()
        return (c, s) if counter(s, "tcp_open_connections", "inbound") == 0 and \
            counter(c, "tcp_open_connections", "outbound") == 0 else None
    after_c, after_s = wait_for(settled, 5, "connections to close")
    for direction, before, after in (("outbound", before_c, after_c), ("inbound", before_s, after_s)):
        delta = {name: counter(after, name, direction) - counter(before, name, direction)
                 for name in ("tcp_open_total", "tcp_read_bytes_total", "tcp_write_bytes_total")}
        assert delta == {"tcp_open_total": 3, "tcp_read_bytes_total": sent, "tcp_write_bytes_total": answer}
        closed = counter(after, "tcp_close_total", direction, classification="success") - \
            counter(before, "tcp_close_total", direction, classification="success")
        assert closed == 3


@pytest.mark.timeout(90)
def test_ipv6_transparency():
    p = Pair(ipv6=True)
    try:
        p.server.serve(PORT, "6")
        who = p.client.ns.app("who", "fd77::2", PORT)
        assert who == {"peer": "::1", "local": "::1"}
        up = p.client.ns.app("upload", "fd77::2", PORT, 8 * MiB, 5)
        assert up["sha256"] == up["expected_sha256"]
        m = p.client.metrics()
        assert counter(m, "tcp_open_total", "outbound") == 2
        assert counter(p.server.metrics(), "tcp_open_total", "inbound") == 2
    finally:
        p.close()
