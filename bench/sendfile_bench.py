"""Does sendfile help a fetch?  Serve the same segment bytes over loopback TCP two ways.

    .venv/bin/python bench/sendfile_bench.py [--mib 512] [--chunk-kib 1024] [--reps 5]

A writer thread sends a file to a reader thread over 127.0.0.1 in fetch-sized slices, either
with ``os.pread`` + ``socket.sendall`` (what the broker does today: the bytes pass through
Python) or with ``os.sendfile`` (the kernel copies page cache to socket).  Both runs are in
this process, interleaved, from the page cache; the ratio is sendfile / pread throughput.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time


def _drain(server: socket.socket, total: int, done: list) -> None:
    conn, _ = server.accept()
    with conn:
        left = total
        buf = bytearray(1 << 20)
        while left:
            n = conn.recv_into(buf)
            if not n:
                break
            left -= n
    done.append(left)


def transfer(path: str, size: int, chunk: int, use_sendfile: bool) -> float:
    """Seconds to move the file's bytes through one loopback connection."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    done: list = []
    reader = threading.Thread(target=_drain, args=(server, size, done))
    reader.start()
    sock = socket.create_connection(server.getsockname())
    fd = os.open(path, os.O_RDONLY)
    try:
        began = time.perf_counter()
        position = 0
        while position < size:
            n = min(chunk, size - position)
            if use_sendfile:
                sent = 0
                while sent < n:
                    sent += os.sendfile(sock.fileno(), fd, position + sent, n - sent)
            else:
                sock.sendall(os.pread(fd, n, position))
            position += n
        sock.shutdown(socket.SHUT_WR)
        reader.join()
        elapsed = time.perf_counter() - began
    finally:
        os.close(fd)
        sock.close()
        server.close()
    assert done == [0], "the reader did not get every byte"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="file size in MiB")
    parser.add_argument("--chunk-kib", type=int, default=1024, help="bytes per fetch, KiB")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    size = args.mib << 20
    chunk = args.chunk_kib << 10
    with tempfile.NamedTemporaryFile(dir=os.path.dirname(os.path.abspath(__file__)), prefix="sendfile-bench-") as f:
        block = os.urandom(1 << 20)
        for _ in range(args.mib):
            f.write(block)
        f.flush()
        transfer(f.name, size, chunk, False)  # warm the page cache
        best = {False: float("inf"), True: float("inf")}
        for rep in range(args.reps):
            for mode in ((False, True) if rep % 2 == 0 else (True, False)):
                best[mode] = min(best[mode], transfer(f.name, size, chunk, mode))
    mb = size / 1e6
    pread_rate, sendfile_rate = mb / best[False], mb / best[True]
    print(f"{args.mib} MiB over loopback TCP in {args.chunk_kib} KiB fetches, best of {args.reps}:")
    print(f"  pread + sendall : {pread_rate:8,.0f} MB/s")
    print(f"  sendfile        : {sendfile_rate:8,.0f} MB/s")
    print(f"  sendfile / pread: {sendfile_rate / pread_rate:.2f}")


if __name__ == "__main__":
    main()
