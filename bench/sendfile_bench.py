"""Does sendfile help a fetch?  Serve the same segment bytes over loopback TCP two ways.

    python bench/sendfile_bench.py [--mib 256] [--slices-kib 64,1024] [--reps 3]

This process sends a file to a receiver in a child process (its own interpreter and GIL, as
a consumer is) over 127.0.0.1, in fetch-sized slices, either with ``os.pread`` +
``socket.sendall`` (the bytes pass through Python) or with ``os.sendfile`` (the kernel copies
page cache to socket).  Runs alternate, from the page cache.  Reported per slice size: each
way's throughput and the sender's CPU per MB (what a broker's reactor thread would spend),
and the ratios sendfile / pread.  The machine is shared: read the ratios, and the load.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time

from benchlib import LoopbackReceiver


def transfer(
    receiver: LoopbackReceiver, fd: int, size: int, chunk: int, use_sendfile: bool
) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) to move the file through one connection."""
    sock = socket.create_connection(("127.0.0.1", receiver.port))
    try:
        cpu = time.process_time()
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
        got = receiver.received()
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu
    finally:
        sock.close()
    if got != size:
        raise RuntimeError(f"the receiver got {got} of {size} bytes")
    return elapsed, cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="file size in MiB")
    parser.add_argument(
        "--slices-kib", default="64,1024", help="bytes per fetch, KiB, comma-separated"
    )
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    size = args.mib << 20
    slices = [int(s) for s in args.slices_kib.split(",")]
    receiver = LoopbackReceiver()
    load = os.getloadavg()[0]
    with tempfile.NamedTemporaryFile(prefix="sendfile-bench-") as f:
        block = os.urandom(1 << 20)
        for _ in range(args.mib):
            f.write(block)
        f.flush()
        fd = os.open(f.name, os.O_RDONLY)
        try:
            transfer(receiver, fd, size, 1 << 20, False)  # warm the page cache
            print(
                f"{args.mib} MiB over loopback TCP to a receiver process, best of {args.reps}, "
                f"load {load:.2f}:"
            )
            print(
                f"{'slice':>8}  {'pread MB/s':>10}  {'sendfile MB/s':>13}  {'ratio':>5}  "
                f"{'pread cpu us/MB':>15}  {'sendfile cpu us/MB':>18}  {'ratio':>5}"
            )
            for kib in slices:
                wall = {False: float("inf"), True: float("inf")}
                cpu = {False: float("inf"), True: float("inf")}
                for rep in range(args.reps):
                    for mode in (False, True) if rep % 2 == 0 else (True, False):
                        w, c = transfer(receiver, fd, size, kib << 10, mode)
                        wall[mode], cpu[mode] = min(wall[mode], w), min(cpu[mode], c)
                mb = size / 1e6
                rate = {m: mb / wall[m] for m in wall}
                per_mb = {m: cpu[m] / mb * 1e6 for m in cpu}
                print(
                    f"{kib:>5} KiB  {rate[False]:>10,.0f}  {rate[True]:>13,.0f}  "
                    f"{rate[True] / rate[False]:>5.2f}  {per_mb[False]:>15,.0f}  "
                    f"{per_mb[True]:>18,.0f}  {per_mb[True] / max(per_mb[False], 1e-9):>5.2f}"
                )
        finally:
            os.close(fd)
            receiver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
