#!/usr/bin/env python3
"""The applications of the e2e tests: a server and clients that know nothing
of meshd. They run inside the test's network namespaces (ip netns exec) and
talk plain TCP to plain IPs and ports; meshd must be invisible to them.

Server protocol: the client's first line names what it wants.
  ECHO              echo every byte until EOF, then close
  SINK              read until EOF, then answer "<sha256> <count>" and close
  SOURCE <n> <seed> send n deterministic bytes, then close
  WHO               answer "<peer address> <local address>" and close
  NAME              answer the name the server was started with, and close

apps.py dns PORT NAME=IP[,NAME=IP] [TTL] serves those A records over UDP.
  RESET             close with an RST (SO_LINGER 0)
Clients print one JSON object on stdout.
apps.py http-serve PORT LOGFILE and apps.py greet PORT: see "HTTP/1.1 apps" below.
"""
import asyncio
import base64
import hashlib
import json
import os
import random
import resource
import socket
import struct
import sys
import time


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# Payloads repeat a random block whose length (a prime) is no multiple of
# any buffer size, so bytes lost, doubled or reordered anywhere still change
# the checksum, while making 64 MiB stays cheap.
BLOCK = 1048573


def payload_block(n, seed):
    """The block that payload(n, seed) repeats."""
    return random.Random(seed).randbytes(min(n, BLOCK))


def payload(n, seed):
    return (payload_block(n, seed) * (n // BLOCK + 1))[:n]


async def handle(reader, writer):
    try:
        line = (await reader.readline()).decode().split()
        if not line:
            return
        cmd = line[0]
        if cmd == "ECHO":
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        elif cmd == "SINK":
            h, count = hashlib.sha256(), 0
            while True:
                data = await reader.read(1 << 20)
                if not data:
                    break
                h.update(data)
                count += len(data)
            writer.write(f"{h.hexdigest()} {count}\n".encode())
            await writer.drain()
        elif cmd == "SOURCE":
            # Streams payload(n, seed) block by block, so that many large
            # sources at once cost the server little.
            n, seed = int(line[1]), int(line[2])
            block = payload_block(n, seed)
            sent = 0
            while sent < n:
                piece = block[:n - sent]
                writer.write(piece)
                sent += len(piece)
                await writer.drain()
        elif cmd == "NAME":
            writer.write(f"{SERVER_NAME}\n".encode())
            await writer.drain()
        elif cmd == "WHO":
            peer = writer.get_extra_info("peername")
            local = writer.get_extra_info("sockname")
            writer.write(f"{peer[0]} {local[0]}\n".encode())
            await writer.drain()
        elif cmd == "RESET":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


SERVER_NAME = "server"


async def serve_connections(handler, port, host="0.0.0.0"):
    """Accepts on port, each connection to handler(reader, writer); says
    "ready" on stdout once listening (what the tests wait for)."""
    server = await asyncio.start_server(handler, host, port, backlog=4096, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def serve(port, family):
    await serve_connections(handle, port, "::" if family == "6" else "0.0.0.0")


def connect(host, port, timeout=10):
    return socket.create_connection((host, port), timeout=timeout)


def client_upload(host, port, n, seed):
    data = payload(n, seed)
    s = connect(host, port)
    s.sendall(b"SINK\n" + data)
    s.shutdown(socket.SHUT_WR)  # half-close: the answer must still arrive
    answer = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        answer += chunk
    digest, count = answer.decode().split()
    return {"sha256": digest, "count": int(count), "expected_sha256": hashlib.sha256(data).hexdigest(),
            "expected_count": n, "sent_bytes": n + 5}


def client_download(host, port, n, seed, pause_after=0, pause_seconds=0.0):
    s = connect(host, port, timeout=30)
    s.sendall(f"SOURCE {n} {seed}\n".encode())
    h, count, paused = hashlib.sha256(), 0, False
    while True:
        if pause_after and not paused and count >= pause_after:
            print(json.dumps({"paused": count}), flush=True)  # the test samples memory now
            time.sleep(pause_seconds)
            paused = True
        chunk = s.recv(1 << 16 if pause_after and not paused else 1 << 20)
        if not chunk:
            break
        h.update(chunk)
        count += len(chunk)
    return {"sha256": h.hexdigest(), "count": count,
            "expected_sha256": hashlib.sha256(payload(n, seed)).hexdigest(), "expected_count": n}


def client_who(host, port):
    s = connect(host, port)
    s.sendall(b"WHO\n")
    peer, local = s.makefile().readline().split()
    return {"peer": peer, "local": local}


def dns_serve(port, table, ttl):
    """A tiny authoritative DNS server over UDP: A records from table
    (name=ip,...), NODATA for other types of a known name, NXDOMAIN else."""
    records = dict(item.split("=") for item in table.split(","))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(512)
        if len(data) < 12:
            continue
        labels, i = [], 12
        while i < len(data) and data[i] != 0:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode(errors="replace"))
            i += 1 + n
        question = data[12:i + 5]
        qtype = struct.unpack("!H", data[i + 1:i + 3])[0]
        name = ".".join(labels).lower()
        ip = records.get(name)
        rcode = 0 if ip else 3
        answers = b""
        if ip and qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, ttl, 4) + socket.inet_aton(ip)
        flags = 0x8400 | rcode  # response, authoritative
        header = data[:2] + struct.pack("!HHHHH", flags, 1, 1 if answers else 0, 0, 0)
        sock.sendto(header + question + answers, peer)


def client_names(host, port, count):
    """Opens count connections one after another and counts which server
    answered each (by the name it was started with)."""
    names, errors = {}, []
    for _ in range(count):
        try:
            s = connect(host, port)
            s.settimeout(10)
            s.sendall(b"NAME\n")
            name = s.makefile().readline().strip()
            s.close()
            if name:
                names[name] = names.get(name, 0) + 1
            else:
                errors.append("eof")
        except OSError as e:
            errors.append(type(e).__name__)
    return {"names": names, "errors": errors}


def client_outcome(host, port, command):
    """Connects, sends a command, and reports how the connection ended."""
    start = time.monotonic()
    try:
        s = connect(host, port)
        s.settimeout(10)
        if command:
            s.sendall(command.encode() + b"\n")
        data = s.recv(4096)
        outcome = "data" if data else "eof"
    except ConnectionResetError:
        outcome = "reset"
    except ConnectionRefusedError:
        outcome = "refused"
    except socket.timeout:
        outcome = "timeout"
    return {"outcome": outcome, "seconds": time.monotonic() - start}


async def one_echo(host, port, i, hold):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 20)
    msg = f"hello {i} ".encode() * 20
    writer.write(b"ECHO\n" + msg)
    await writer.drain()
    if hold:
        await asyncio.sleep(hold)  # keep every connection open at once
    got = await asyncio.wait_for(reader.readexactly(len(msg)), 30)
    writer.close()
    return got == msg


async def client_many(host, port, count, hold):
    results = await asyncio.gather(*(one_echo(host, port, i, hold) for i in range(count)), return_exceptions=True)
    ok = sum(1 for r in results if r is True)
    errors = sorted({type(r).__name__ for r in results if r is not True})
    return {"ok": ok, "failed": count - ok, "errors": errors}


def client_marker(host, port, marker, count, seconds=0.0):
    """Echoes a marker string through count connections (one after another,
    for at least `seconds` if given, never more than 100000): what a capture
    of the wire must (plaintext) or must not (mTLS) show."""
    ok, errors, done = 0, [], 0
    deadline = time.monotonic() + seconds
    while done < 100000 and (done < count or time.monotonic() < deadline):
        done += 1
        try:
            s = connect(host, port)
            msg = (marker + " ").encode() * 8
            s.sendall(b"ECHO\n" + msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            s.close()
            ok += got == msg
        except OSError as e:
            errors.append(type(e).__name__)
    return {"ok": ok, "errors": errors, "connections": done}


def client_hold(host, port, seconds):
    """Opens an echo connection, holds it idle, then checks it still works."""
    s = connect(host, port, timeout=seconds + 10)
    s.sendall(b"ECHO\nping")
    first = s.recv(4)
    time.sleep(seconds)
    try:
        s.sendall(b"pong")
        second = s.recv(4)
    except OSError as e:
        second = type(e).__name__.encode()
    return {"first": first.decode(), "second": second.decode(errors="replace")}


async def one_stall(host, port, n, seconds):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"SOURCE {n} 1\n".encode())
    await writer.drain()
    await asyncio.sleep(seconds)  # never read: the data piles up towards us
    writer.close()


async def client_stall(host, port, count, n, seconds):
    """Opens count connections that ask for n bytes each and never read."""
    print(json.dumps({"stalling": count}), flush=True)
    await asyncio.gather(*(one_stall(host, port, n, seconds) for _ in range(count)))
    return {"done": count}


def http_get(url):
    import urllib.request
    import urllib.error
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode()}


# --- HTTP/1.1 apps, for test_http.py ----------------------------------------
#
# apps.py http-serve PORT LOGFILE [STATUS]: a threaded HTTP/1.1 backend (keep-alive,
# pipelining as http.server does it) that appends the request line of every
# complete head it accepts to LOGFILE, so a test can tell which requests
# reached it. Its own limits are raised far above the proxy's, so that a
# request the proxy should have refused would be accepted and logged here.
# Every response carries X-Peer-Port, the port of the connection it came on.
# With STATUS, every request is answered with that status (a broken
# endpoint); otherwise by path:
#   /ok...            200 "ok <path>\n"
#   /status/<code>    that status (no body for 204 and 304; none for HEAD)
#   /chunked          200 with a chunked body of three chunks
#   /slow/<ms>        200 after ms milliseconds
#   /trickle/<ms>     200 whose head and first chunk come at once, the rest after ms
#   /upload           200 {"length": n, "sha256": hex} of the request body (CL or chunked)
#   /upgrade          101 Switching Protocols (Upgrade: websocket), then echoes raw bytes
#   /hangup           closes without answering
#   /503-then-hangup  503 (the connection kept) the first time on a connection; closes without answering after
#   /reset            resets without answering
# apps.py greet PORT: a server that speaks first ("HELLO <port>\r\n" as soon
# as a client connects), then echoes.

def http_serve(port, log_path, fail_status=0, fail_every=1):
    """The HTTP/1.1 backend. With fail_status, every fail_every-th request
    it serves (all of them by default) is answered fail_status instead."""
    # Imported here: the other apps need none of it, and start faster.
    import http.client
    import http.server
    import threading

    log, log_lock = open(log_path, "a"), threading.Lock()
    served = [0]

    def failing():
        if not fail_status:
            return False
        with log_lock:
            served[0] += 1
            return served[0] % fail_every == 0

    class HttpBackend(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "apps-http"
        sys_version = ""

        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            pass  # the request log is written by parse_request

        def parse_request(self):
            ok = super().parse_request()
            if ok:
                with log_lock:
                    log.write(self.requestline + "\n")
                    log.flush()
            return ok

        def read_body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                body = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return body
                    body += self.rfile.read(size)
                    self.rfile.readline()  # the CRLF after the chunk's data
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def answer(self, status, body=b"", headers=(), send_body=True):
            self.send_response(status)
            self.send_header("X-Peer-Port", str(self.client_address[1]))
            for k, v in headers:
                self.send_header(k, v)
            if status not in (204, 304):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body and status not in (204, 304):
                self.wfile.write(body)

        def chunked_head(self):
            self.send_response(200)
            self.send_header("X-Peer-Port", str(self.client_address[1]))
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def chunk(self, data):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        def route(self):
            path = self.path
            head = self.command == "HEAD"
            upgrade = self.headers.get("Upgrade", "").lower() == "websocket"
            # Every request's body is read whole, whatever the route: what
            # is left of it would be taken for the next request.
            body = b"" if upgrade else self.read_body()
            if failing():
                self.answer(fail_status, f"status {fail_status}\n".encode(), send_body=not head)
            elif path.startswith("/ok"):
                self.answer(200, f"ok {path}\n".encode(), send_body=not head)
            elif path.startswith("/status/"):
                code = int(path.split("/")[2])
                self.answer(code, f"status {code}\n".encode(), send_body=not head)
            elif path == "/chunked":
                self.chunked_head()
                for piece in (b"first,", b"second,", b"third"):
                    self.chunk(piece)
                self.wfile.write(b"0\r\n\r\n")
            elif path.startswith("/slow/"):
                time.sleep(int(path.split("/")[2]) / 1000)
                self.answer(200, b"slow\n")
            elif path.startswith("/trickle/"):
                self.chunked_head()
                self.chunk(b"head-first,")
                self.wfile.flush()
                time.sleep(int(path.split("/")[2]) / 1000)
                self.chunk(b"then the rest")
                self.wfile.write(b"0\r\n\r\n")
            elif path == "/upload":
                out = json.dumps({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode()
                self.answer(200, out, [("Content-Type", "application/json")])
            elif path == "/upgrade" and upgrade:
                self.send_response(101)
                self.send_header("Connection", "Upgrade")
                self.send_header("Upgrade", "websocket")
                self.end_headers()
                self.wfile.flush()
                # Raw bytes from here on, whatever they look like.
                while data := self.rfile.read1(65536):
                    self.wfile.write(data)
                self.close_connection = True
            elif path == "/hangup":
                self.close_connection = True
            elif path == "/503-then-hangup":
                if getattr(self, "answered_503", False):
                    self.close_connection = True
                else:
                    self.answered_503 = True
                    self.answer(503, b"status 503\n", send_body=not head)
            elif path == "/reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.server.resets.add(self.connection)  # closed without the FIN of a shutdown first
                self.close_connection = True
            else:
                self.answer(404, b"not found\n", send_body=not head)

        def do_GET(self):
            self.route()

        do_HEAD = do_POST = do_PUT = do_GET

    # Far above the proxy's bounds: the backend takes whatever gets through.
    http.client._MAXHEADERS = 100000
    http.client._MAXLINE = 1 << 20

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024
        resets = set()  # connections /reset asked to end with an RST

        def handle_error(self, request, client_address):
            pass  # a peer that went away mid-request is no news here

        def shutdown_request(self, request):
            if request in self.resets:
                self.resets.discard(request)
                self.close_request(request)  # SO_LINGER 0: an RST, no FIN before it
                return
            super().shutdown_request(request)

    server = Server(("0.0.0.0", port), HttpBackend)
    print("ready", flush=True)
    server.serve_forever()


def greet_serve(port):
    """A server that speaks first: the greeting goes before any client byte."""
    async def greet(reader, writer):
        try:
            writer.write(f"HELLO {port}\r\n".encode())
            await writer.drain()
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    asyncio.run(serve_connections(greet, port))


def grpc_serve(port, fail_every, name=""):
    """A gRPC-shaped HTTP/2 server (h2c, prior knowledge), enough for the
    proxies' taps: every request stream, once the client ends it, gets a
    200 head (content-type application/grpc, and x-server: name when a
    name is given), one empty gRPC message and trailers whose grpc-status
    is 14 (UNAVAILABLE) for every fail_every-th stream of a connection,
    else 0. Named "hang", it answers no stream at all. Headers are sent as HPACK literals
    without indexing, so the server never needs the client's table:
    request headers are not decoded at all."""
    def frame(ftype, flags, stream, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload

    def literal(name, value):
        return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value

    async def conn(reader, writer):
        streams = 0
        try:
            # Our SETTINGS before reading the client's preface, as grpc-go
            # does: the proxies must not take it for a server speaking first.
            writer.write(frame(4, 0, 0, b"\x00\x03\x00\x00\x00\x64"))  # MAX_CONCURRENT_STREAMS 100
            await writer.drain()
            if await reader.readexactly(24) != b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n":
                return
            while True:
                head = await reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                ftype, flags, stream = head[3], head[4], int.from_bytes(head[5:], "big") & 0x7fffffff
                payload = await reader.readexactly(length)
                if ftype == 4 and not flags & 1:
                    writer.write(frame(4, 1, 0))  # SETTINGS ACK
                elif ftype == 6 and not flags & 1:
                    writer.write(frame(6, 1, 0, payload))  # PING ACK
                elif ftype == 7:
                    return  # GOAWAY
                elif ftype in (0, 1) and flags & 1 and name != "hang":  # DATA or HEADERS ending a request
                    streams += 1
                    code = b"14" if fail_every and streams % fail_every == 0 else b"0"
                    tag = literal(b"x-server", name.encode()) if name else b""
                    writer.write(frame(1, 4, stream, b"\x88" + literal(b"content-type", b"application/grpc") + tag))
                    writer.write(frame(0, 0, stream, b"\x00\x00\x00\x00\x00"))
                    writer.write(frame(1, 5, stream, literal(b"grpc-status", code)))
                await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    asyncio.run(serve_connections(conn, port))


def parse_http_response(data):
    """The response at the start of data, as (response, its length), or None
    while it is incomplete (or has no length: it is read until close). An
    interim 1xx is a response of its own; so is a 101, with what follows it
    not HTTP any more."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    lines = data[:head_end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), v.strip())
    resp = {"line": lines[0], "status": int(parts[1]), "reason": parts[2] if len(parts) > 2 else "",
            "headers": headers, "body": ""}
    at = head_end + 4
    if resp["status"] < 200 or resp["status"] in (204, 304):
        return resp, at
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = b""
        while True:
            line_end = data.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(data[at:line_end].split(b";")[0], 16)
            if size == 0:
                at = line_end + 2
                while True:  # trailers, up to an empty line
                    e = data.find(b"\r\n", at)
                    if e < 0:
                        return None
                    if e == at:
                        resp["body"] = body.decode("latin-1")
                        return resp, at + 2
                    at = e + 2
            if len(data) < line_end + 2 + size + 2:
                return None
            body += data[line_end + 2:line_end + 2 + size]
            at = line_end + 2 + size + 2
    if "content-length" in headers:
        n = int(headers["content-length"])
        if len(data) < at + n:
            return None
        resp["body"] = data[at:at + n].decode("latin-1")
        return resp, at + n
    return None


def read_http_responses(sock, count, deadline):
    """Reads responses from sock until count final ones have come whole
    (count 0: until the connection ends). Returns (responses, rest, end):
    rest is what came after the last whole response (after a 101: the raw
    bytes), end "done", "eof", "reset" or "timeout"."""
    data, responses, finals = b"", [], 0
    while True:
        while (parsed := parse_http_response(data)) is not None:
            resp, n = parsed
            data = data[n:]
            responses.append(resp)
            if resp["status"] == 101:
                return responses, data.decode("latin-1"), "done"
            if resp["status"] >= 200:
                finals += 1
                if count and finals == count:
                    return responses, data.decode("latin-1"), "done"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            end = "timeout"
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            end = "reset"
            break
        except socket.timeout:
            end = "timeout"
            break
        if not chunk:
            end = "eof"
            break
        data += chunk
    if end in ("eof", "reset") and b"\r\n\r\n" in data:  # a response read until close (or cut short)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) >= 2 and parts[0].startswith("HTTP/") and parts[1].isdigit():
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers.setdefault(k.strip().lower(), v.strip())
            responses.append({"line": lines[0], "status": int(parts[1]), "reason": parts[2] if len(parts) > 2 else "",
                              "headers": headers, "body": body.decode("latin-1"), "until_close": True})
            data = b""
    return responses, data.decode("latin-1"), end


def client_http_raw(host, port, request_b64, count, timeout, pause=0.0):
    """Sends the bytes given (base64) in one write, then reads count
    responses (0: until the connection ends). Several pieces (base64,
    comma-separated) go in one write each, pause seconds apart."""
    start = time.monotonic()
    s = connect(host, port, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i, piece in enumerate(request_b64.split(",")):
        if i:
            time.sleep(pause)
        s.sendall(base64.b64decode(piece))
    responses, rest, end = read_http_responses(s, count, time.monotonic() + timeout)
    s.close()
    return {"responses": responses, "rest": rest, "end": end, "seconds": time.monotonic() - start}


def client_http_suite(host, port, authority):
    """One keep-alive connection with http.client: a chunked upload, HEAD,
    204, 304, an upload that waits for 100 Continue, a chunked download, and
    a 503. Reports each step and the connection's local port after it."""
    import http.client
    conn = http.client.HTTPConnection(host, port, timeout=10)
    steps = []

    def step(name, resp, extra=None):
        body = resp.read()
        out = {"name": name, "status": resp.status, "body": body.decode("latin-1"),
               "content_length": resp.getheader("Content-Length"), "peer": resp.getheader("X-Peer-Port"),
               "local": conn.sock.getsockname()[1] if conn.sock else None}
        out.update(extra or {})
        steps.append(out)

    hdrs = {"Host": authority}
    pieces = [b"a" * 1000, b"b" * 70000, b"c" * 3]
    conn.request("POST", "/upload", body=iter(pieces), headers=hdrs, encode_chunked=True)
    step("chunked-upload", conn.getresponse(),
         {"expected": {"length": 71003, "sha256": hashlib.sha256(b"".join(pieces)).hexdigest()}})
    conn.request("HEAD", "/ok/head", headers=hdrs)
    step("head", conn.getresponse())
    conn.request("GET", "/status/204", headers=hdrs)
    step("204", conn.getresponse())
    conn.request("GET", "/status/304", headers=hdrs)
    step("304", conn.getresponse())
    # Expect: 100-continue, the body only after the interim response.
    body = b"expected-body " * 1000
    conn.putrequest("PUT", "/upload", skip_host=True)
    conn.putheader("Host", authority)
    conn.putheader("Content-Length", str(len(body)))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    conn.sock.settimeout(5)
    interim = b""
    while b"\r\n\r\n" not in interim:
        chunk = conn.sock.recv(1)  # exactly the interim head, nothing of what follows
        if not chunk:
            break
        interim += chunk
    conn.send(body)
    step("expect-100", conn.getresponse(), {"interim": interim.decode("latin-1"),
                                            "expected": {"length": len(body),
                                                         "sha256": hashlib.sha256(body).hexdigest()}})
    conn.request("GET", "/chunked", headers=hdrs)
    step("chunked-download", conn.getresponse())
    conn.request("GET", "/status/503", headers=hdrs)
    step("503", conn.getresponse())
    conn.close()
    return {"steps": steps}


def client_http_upgrade(host, port, authority):
    """Upgrade: websocket, then raw bytes both ways over what was HTTP."""
    s = connect(host, port, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"GET /upgrade HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
              "\r\n".encode())
    responses, rest, end = read_http_responses(s, 1, time.monotonic() + 10)
    echoes = []
    # After the 101 nothing is HTTP: not even bytes that look like a bad
    # request (bare LF, CL with TE) may be refused or changed.
    messages = [b"\x81\x05hello", b"GET / HTTP/1.1\nHost: x\nContent-Length: 3\nTransfer-Encoding: chunked\n\n",
                os.urandom(50000)]
    got_rest = rest.encode("latin-1")
    for m in messages:
        s.sendall(m)
        got = got_rest
        got_rest = b""
        while len(got) < len(m):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        echoes.append(got == m)
    s.shutdown(socket.SHUT_WR)
    tail = s.recv(100)
    s.close()
    return {"responses": responses, "end": end, "echoes": echoes, "tail": tail.decode("latin-1")}


def client_greet(host, port):
    """How long a server's greeting takes to arrive, and an echo after it."""
    start = time.monotonic()
    s = connect(host, port, timeout=5)
    connected = time.monotonic()
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        line += chunk
    greeted = time.monotonic()
    s.sendall(b"ping\r\n")
    echo = b""
    while len(echo) < 6:
        chunk = s.recv(64)
        if not chunk:
            break
        echo += chunk
    s.close()
    return {"greeting": line.decode(), "echo": echo.decode(), "connect_seconds": connected - start,
            "greeting_seconds": greeted - connected}


def client_http_hosts(host, port, count, seed, batch):
    """count requests, each with a Host of its own (random names), on one
    keep-alive connection, batch pipelined requests at a time."""
    rng = random.Random(seed)
    names = [f"h{i}-{rng.getrandbits(40):x}.scan.test" for i in range(count)]
    s = connect(host, port, timeout=10)
    statuses, done = {}, 0
    while done < count:
        group = names[done:done + batch]
        s.sendall(b"".join(f"GET /ok/scan HTTP/1.1\r\nHost: {n}\r\n\r\n".encode() for n in group))
        responses, rest, end = read_http_responses(s, len(group), time.monotonic() + 10)
        for r in responses:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        if end != "done" or rest:
            return {"statuses": statuses, "end": end, "sent": done + len(group)}
        done += len(group)
    s.close()
    return {"statuses": statuses, "end": "done", "sent": done}

# The clients an agent runs, by mode; each takes apps.py's arguments.
# --- A pod's stand-ins, for test_pod.py -----------------------------------------
#
# apps.py kube-api PORT CERT KEY BEARER TOKENS_JSON: the Kubernetes API server's
# TokenReview, over TLS: a review posted with "Authorization: Bearer BEARER"
# (the controller's own token) of a token listed in TOKENS_JSON
# ({"token": "system:serviceaccount:NS:SA"}) is authenticated as that user for
# the audiences asked; any other token is not; a wrong bearer gets 401.
def kube_api_serve(port, cert, key, bearer, tokens_json):
    import http.server
    import ssl
    tokens = json.loads(tokens_json)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
                return self.answer(404, {"kind": "Status", "message": "not found"})
            if self.headers.get("Authorization") != f"Bearer {bearer}":
                return self.answer(401, {"kind": "Status", "message": "Unauthorized"})
            spec = json.loads(body)["spec"]
            user = tokens.get(spec["token"])
            status = {"authenticated": False, "error": "invalid bearer token"}
            if user:
                status = {"authenticated": True, "user": {"username": user}, "audiences": spec.get("audiences", [])}
            self.answer(201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status})

        def answer(self, code, doc):
            data = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


# apps.py job HOST PORT ADMIN: a Kubernetes Job's work in a meshed pod: asks
# HOST:PORT who it is talking to (WHO), then, done, tells its proxy to shut
# down (POST http://ADMIN/shutdown), as a Job must for its pod to finish.
def client_job(host, port, admin):
    import urllib.request
    who = client_who(host, port)
    req = urllib.request.Request(f"http://{admin}/shutdown", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return {"who": who, "shutdown": r.status, "said": r.read().decode().strip()}


def http_post(url):
    import urllib.request
    import urllib.error
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=5) as r:
            return {"status": r.status, "body": r.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode()}


AGENT_CLIENTS = {
    "get": lambda a: http_get(a[0]),
    "http-raw": lambda a: client_http_raw(a[0], int(a[1]), a[2], int(a[3]), float(a[4]) if len(a) > 4 else 10,
                                          float(a[5]) if len(a) > 5 else 0.0),
    "http-suite": lambda a: client_http_suite(a[0], int(a[1]), a[2]),
    "http-upgrade": lambda a: client_http_upgrade(a[0], int(a[1]), a[2]),
    "greet-time": lambda a: client_greet(a[0], int(a[1])),
    "http-hosts": lambda a: client_http_hosts(a[0], int(a[1]), int(a[2]), int(a[3]), int(a[4])),
}


def agent():
    """apps.py agent: runs clients on request, one JSON array per line on
    stdin (the mode, then its arguments), one JSON answer per line on
    stdout, until EOF. For tests that run many clients on one host: one
    Python process for all of them (Python starts slowly on a busy machine)."""
    print("ready", flush=True)
    for line in sys.stdin:
        argv = json.loads(line)
        try:
            out = AGENT_CLIENTS[argv[0]]([str(a) for a in argv[1:]])
        except Exception as e:  # the caller sees it in the answer
            out = {"agent_error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)



def main():
    raise_fd_limit()
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "dns":
        dns_serve(int(args[0]), args[1], int(args[2]) if len(args) > 2 else 30)
        return
    if mode == "agent":
        agent()
        return
    if mode == "http-serve":
        http_serve(int(args[0]), args[1], int(args[2]) if len(args) > 2 else 0, int(args[3]) if len(args) > 3 else 1)
        return
    if mode == "grpc-serve":
        grpc_serve(int(args[0]), int(args[1]) if len(args) > 1 else 0, args[2] if len(args) > 2 else "")
        return
    if mode == "kube-api":
        kube_api_serve(int(args[0]), args[1], args[2], args[3], args[4])
        return
    if mode == "greet":
        greet_serve(int(args[0]))
        return
    if mode == "serve":
        global SERVER_NAME
        if len(args) > 2:
            SERVER_NAME = args[2]
        asyncio.run(serve(int(args[0]), args[1] if len(args) > 1 else "4"))
        return
    if mode == "upload":
        out = client_upload(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif mode == "download":
        out = client_download(args[0], int(args[1]), int(args[2]), int(args[3]),
                              int(args[4]) if len(args) > 4 else 0, float(args[5]) if len(args) > 5 else 0)
    elif mode == "names":
        out = client_names(args[0], int(args[1]), int(args[2]))
    elif mode == "who":
        out = client_who(args[0], int(args[1]))
    elif mode == "outcome":
        out = client_outcome(args[0], int(args[1]), args[2] if len(args) > 2 else "")
    elif mode == "many":
        out = asyncio.run(client_many(args[0], int(args[1]), int(args[2]), float(args[3])))
    elif mode == "marker":
        out = client_marker(args[0], int(args[1]), args[2], int(args[3]) if len(args) > 3 else 1,
                            float(args[4]) if len(args) > 4 else 0.0)
    elif mode == "hold":
        out = client_hold(args[0], int(args[1]), float(args[2]))
    elif mode == "stall":
        out = asyncio.run(client_stall(args[0], int(args[1]), int(args[2]), int(args[3]), float(args[4])))
    elif mode == "get":
        out = http_get(args[0])
    elif mode == "post":
        out = http_post(args[0])
    elif mode == "job":
        out = client_job(args[0], int(args[1]), args[2])
    elif mode in AGENT_CLIENTS:
        out = AGENT_CLIENTS[mode](args)
    else:
        sys.exit(f"apps.py: unknown mode {mode}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
