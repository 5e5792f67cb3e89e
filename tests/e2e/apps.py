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
"""
import asyncio
import hashlib
import json
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


async def serve(port, family):
    host = "::" if family == "6" else "0.0.0.0"
    server = await asyncio.start_server(handle, host, port, backlog=4096, reuse_address=True)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


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


def main():
    raise_fd_limit()
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "dns":
        dns_serve(int(args[0]), args[1], int(args[2]) if len(args) > 2 else 30)
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
    else:
        sys.exit(f"apps.py: unknown mode {mode}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
