#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/), kept in git.

detect: real ClientHellos, as `openssl s_client` sends them to a listener
that keeps the first flight (with and without the mesh ALPN, with and
without SNI, TLS 1.2 and 1.3), re-cut into smaller records, truncated, and
plaintext. frame: the frame target's layout (frame_fuzz.cc) around streams
of framed proto::Request messages, hand-encoded. h2: the h2 target's layout
(h2_fuzz.cc) around real conversations, nghttp (Huffman-coded HPACK with a
dynamic table) with the e2e tests' gRPC-shaped server, recorded by a relay,
and hand-built frames for the cases a real peer rarely sends (padding,
CONTINUATION, resets, GOAWAY, PUSH_PROMISE). Run again only to change the
seeds (needs nghttp): python3 tests/fuzz/make_seeds.py
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


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def hpack_literal(name, value):
    """A literal header field without indexing, new name, no Huffman."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def record_nghttp(*args):
    """The bytes nghttp and apps.py grpc-serve exchange, as (client, server),
    through a relay on loopback that records both directions."""
    import select
    import sys
    import time
    apps = os.path.join(HERE, "..", "e2e", "apps.py")
    srv_port = 18000 + os.getpid() % 1000
    server = subprocess.Popen([sys.executable, apps, "grpc-serve", str(srv_port), "3"], stdout=subprocess.PIPE)
    try:
        assert server.stdout.readline().strip() == b"ready"
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        port = lst.getsockname()[1]
        client = subprocess.Popen(["nghttp", "-n", *args, f"http://127.0.0.1:{port}/helloworld.Greeter/SayHello"])
        c, _ = lst.accept()
        u = socket.create_connection(("127.0.0.1", srv_port))
        got = {c: bytearray(), u: bytearray()}
        peer = {c: u, u: c}
        deadline = time.time() + 10
        open_ = {c, u}
        while open_ and time.time() < deadline:
            for s in select.select(list(open_), [], [], 0.5)[0]:
                data = s.recv(65536)
                if not data:
                    open_.clear()
                    break
                got[s] += data
                peer[s].sendall(data)
            if client.poll() is not None and not select.select([c, u], [], [], 0.2)[0]:
                break
        client.wait(10)
        c.close()
        u.close()
        return bytes(got[c]), bytes(got[u])
    finally:
        server.kill()
        server.wait()


def h2_seeds():
    def seed(control, script, client, server):
        return bytes([control]) + bytes(script) + len(client).to_bytes(2, "big") + client + server

    real_c, real_s = record_nghttp("-m", "6")
    many_c, many_s = record_nghttp("-m", "40", "-H", "x-trace: abcdefghijklmnopqrstuvwxyz0123456789")
    get = b"\x82\x86" + hpack_literal(b":authority", b"api.prod") + hpack_literal(b":path", b"/a")
    status = b"\x88"
    c = H2_PREFACE + h2_frame(4, 0, 0, b"\x00\x01\x00\x00\x20\x00")  # SETTINGS_HEADER_TABLE_SIZE 8192
    padded = b"\x03" + b"\x00" * 5 + get[:4] + b"\x00\x00\x00"
    c += h2_frame(1, 0x08 | 0x20 | 0x01, 1, padded) + h2_frame(9, 0, 1, get[4:9]) + h2_frame(9, 0x04, 1, get[9:])
    c += h2_frame(1, 0x05, 3, get) + h2_frame(1, 0x05, 5, get) + h2_frame(3, 0, 5, (8).to_bytes(4, "big"))
    s = h2_frame(4, 0, 0) + h2_frame(4, 1, 0)
    s += h2_frame(5, 0x04, 1, (2).to_bytes(4, "big") + get)  # PUSH_PROMISE
    s += h2_frame(1, 0x04, 1, status + hpack_literal(b"content-type", b"application/grpc"))
    s += h2_frame(0, 0, 1, b"\x00" * 5) + h2_frame(1, 0x05, 1, hpack_literal(b"grpc-status", b"14"))
    s += h2_frame(3, 0, 3, (7).to_bytes(4, "big"))  # REFUSED_STREAM
    s += h2_frame(7, 0, 0, (3).to_bytes(4, "big") + (0).to_bytes(4, "big") + b"bye")
    return {
        "nghttp-grpc": seed(0, [0x20, 0x21, 0x40, 0x41, 0x0e, 0x0f, 0xfe, 0xff], real_c, real_s),
        "nghttp-grpc-split": seed(64, [2, 3, 4, 5, 6, 7, 8, 9], real_c, real_s),
        "nghttp-40-streams": seed(32, [0xfe, 0xfe, 0xff, 0xff, 0x10, 0x11, 0x30, 0x31], many_c, many_s),
        "hand-built": seed(0, [0x10, 0x11, 0x06, 0x07, 0x20, 0x21, 0x02, 0x03], c, s),
        "hand-built-held-preface": seed(64 | 10, [0xfe, 0xff] * 4, c[10:], s),
        "hand-built-bytewise": seed(0, [2, 3, 2, 3, 2, 3, 2, 3], c, s),
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
    write("h2", h2_seeds())
