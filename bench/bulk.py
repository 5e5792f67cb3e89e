#!/usr/bin/python3
"""Single-stream bulk transfer for bench/run.sh.

  bulk.py sink PORT              accept on 127.0.0.1:PORT; per connection read an
                                 8-byte big-endian length, then that many bytes,
                                 then reply with the count it received (8 bytes)
  bulk.py send PORT MIB TIMEOUT  connect, send the length and MIB MiB, wait for the
                                 sink's count; print "BYTES SECONDS" (the clock
                                 stops at the count, so the proxy must have relayed
                                 every byte)

The length prefix keeps the test independent of half-close handling (nginx
stream closes both directions on a client FIN unless proxy_half_close is on).

Chunks are 1 MiB so Python's per-call overhead is noise next to the copies.
"""
import socket
import struct
import sys
import time

CHUNK = 1 << 20


def sink(port: int) -> None:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        conn, _ = ls.accept()
        total = 0
        try:
            head = b""
            while len(head) < 8:
                part = conn.recv(8 - len(head))
                if not part:
                    break
                head += part
            if len(head) == 8:
                want = struct.unpack(">Q", head)[0]
                while total < want:
                    n = conn.recv_into(view[: min(CHUNK, want - total)])
                    if n == 0:
                        break
                    total += n
                conn.sendall(struct.pack(">Q", total))
        except OSError:
            pass
        finally:
            conn.close()


def send(port: int, mib: int, timeout: float) -> int:
    want = mib * CHUNK
    data = memoryview(b"\xa5" * CHUNK)
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    t0 = time.perf_counter()
    s.sendall(struct.pack(">Q", want))
    for _ in range(mib):
        s.sendall(data)
    reply = b""
    while len(reply) < 8:
        part = s.recv(8 - len(reply))
        if not part:
            break
        reply += part
    t1 = time.perf_counter()
    s.close()
    if len(reply) != 8:
        print(f"no byte count from sink (connection closed after {len(reply)} bytes)", file=sys.stderr)
        return 1
    got = struct.unpack(">Q", reply)[0]
    if got != want:
        print(f"sink received {got} bytes, sent {want}", file=sys.stderr)
        return 1
    print(f"{got} {t1 - t0:.6f}")
    return 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "sink":
        sink(int(sys.argv[2]))
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "send":
        try:
            return send(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        except OSError as e:
            print(f"send failed: {e}", file=sys.stderr)
            return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
