#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/), kept in git.

detect: real ClientHellos, as `openssl s_client` sends them to a listener
that keeps the first flight (with and without the mesh ALPN, with and
without SNI, TLS 1.2 and 1.3), re-cut into smaller records, truncated, and
plaintext. frame: the frame target's layout (frame_fuzz.cc) around streams
of framed proto::Request messages, hand-encoded. Run again only to change
the seeds: python3 tests/fuzz/make_seeds.py
"""
import os
import socket
import subprocess
import threading

HERE = os.path.dirname(os.path.abspath(__file__))


def client_hello(*args):
    """The record(s) openssl s_client writes first, with these options."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = bytearray()

    def serve():
        conn, _ = srv.accept()
        conn.settimeout(5)
        # Records until the handshake message they carry is whole.
        while True:
            hs = bytearray()
            pos = 0
            while pos + 5 <= len(got):
                n = int.from_bytes(got[pos + 3 : pos + 5], "big")
                hs += got[pos + 5 : pos + 5 + n]
                pos += 5 + n
            if len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big") and pos <= len(got):
                break
            chunk = conn.recv(65536)
            if not chunk:
                break
            got.extend(chunk)
        conn.close()

    t = threading.Thread(target=serve)
    t.start()
    subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10,
    )
    t.join()
    srv.close()
    return bytes(got)


def refragment(record, size):
    """The same handshake bytes in records of at most size bytes."""
    payload, out = record[5:], bytearray()
    for off in range(0, len(payload), size):
        piece = payload[off : off + size]
        out += b"\x16\x03\x01" + len(piece).to_bytes(2, "big") + piece
    return bytes(out)


def detect_seeds():
    mesh = client_hello("-alpn", "meshd/1", "-servername", "web.prod.mesh")
    seeds = {
        "mesh-tls13-sni": mesh,
        "mesh-in-list": client_hello("-alpn", "h2,meshd/1,http/1.1", "-noservername"),
        "mesh-tls12": client_hello("-tls1_2", "-alpn", "meshd/1", "-servername", "backend.example"),
        "other-alpn-h2": client_hello("-alpn", "h2,http/1.1", "-servername", "backend.example"),
        "other-no-alpn-no-sni": client_hello("-noservername"),
        "mesh-records-64": refragment(mesh, 64),
        "mesh-records-7": refragment(mesh, 7),
        "mesh-truncated-100": mesh[:100],
        "mesh-truncated-header": mesh[:5],
        "mesh-then-more": mesh + b"\x14\x03\x03\x00\x01\x01",
        "record-empty": b"\x16\x03\x01\x00\x00",
        "record-too-long": b"\x16\x03\x01\x40\x01\x01",
        "http1": b"GET / HTTP/1.1\r\nHost: web.prod\r\n\r\n",
        "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "ssh": b"SSH-2.0-OpenSSH_9.2\r\n",
    }
    assert mesh[:1] == b"\x16" and len(mesh) > 100, "openssl s_client sent no ClientHello"
    return seeds


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(num, value):
    """A protobuf field: varint for ints, length-delimited for bytes."""
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    return varint(num << 3 | 2) + varint(len(value)) + value


def frame(payload):
    return len(payload).to_bytes(4, "big") + payload


def frame_seeds():
    requests = [
        field(1, 1) + field(2, b""),  # list_services
        field(1, 2) + field(3, field(1, b"web.prod")),  # subscribe
        field(1, 3) + field(3, field(2, b"10.0.0.7:8080")),  # subscribe by address
        field(1, 4) + field(4, field(1, b"lease:node-1") + field(2, field(1, b"web.prod") + field(2, b"10.0.0.7:8080"))
                           + field(3, 30000)),  # register
        field(1, 5) + field(5, field(2, b"web.prod") + field(3, b"10.0.0.7:8080")),  # deregister
        field(1, 6) + field(6, field(1, b"lease:node-1")),  # renew
        field(1, 7) + field(7, field(1, 2)),  # unsubscribe
        field(1, 8) + field(9, field(1, b"spiffe://td/ns/prod/sa/web") + field(2, b"\x30\x82") + field(3, b"mjt1.a.b")),
        b"",  # an empty Request is valid
    ]
    stream = b"".join(frame(r) for r in requests)

    def seed(small_max, sizes, body):
        return bytes([small_max, len(sizes)]) + bytes(sizes) + body

    return {
        "requests-whole": seed(255, [], stream),
        "requests-chunks": seed(64, [1, 5, 17], stream),
        "requests-empty-feeds": seed(32, [0, 3, 0, 250], stream),
        "requests-then-partial": seed(255, [2], stream + frame(requests[1])[:7]),
        "over-small-limit": seed(8, [4], frame(requests[3]) + frame(requests[0])),
        "over-default-limit": seed(255, [3], frame(requests[0]) + (4 << 20 | 1).to_bytes(4, "big") + b"x"),
        "not-a-request": seed(255, [1], frame(requests[0]) + frame(b"\xff\xff\xff") + frame(requests[0])),
        "bad-utf8-string": seed(255, [6], frame(field(3, field(1, b"\xc3\x28")))),
    }


def write(name, seeds):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    for k, v in seeds.items():
        with open(os.path.join(d, k), "wb") as f:
            f.write(v)
    print(f"{d}: {len(seeds)} seeds")


if __name__ == "__main__":
    write("detect", detect_seeds())
    write("frame", frame_seeds())
