"""What would moving batch checks off the reactor thread buy?  Measured in one process.

    python bench/offload_bench.py [--seconds 1.5]

The broker checks every produced batch on its reactor thread: the CRC-32C (``check_batch``)
and the record framing, decompressing first (``check_records``).  crc32c, zlib, lz4 and zstd
release the GIL, so another thread could do that work while the reactor serves others.  For
batches as producers send them (one 200-byte record; 1,000 records uncompressed; the same
compressed with lz4, zstd and gzip) this prints:

* ``inline us``: reactor CPU per batch when it checks the batch itself;
* ``handoff us``: reactor CPU per batch when a worker thread checks it (submit to a thread
  pool, take the result back), i.e. what the reactor would still spend;
* ``2 threads x``: batches checked per second by two threads over one (how much of the work
  really runs outside the GIL, on a machine with a free core);
* ``nogil %``: the share of a check's time spent outside the GIL, from the same run;
* ``crc+zip %``: the share of a check's CPU in the parts that release the GIL (the CRC-32C
  and the decompression, timed alone): the most a worker could run beside the reactor.

CPU times are per thread (``time.thread_time``), so a loaded machine skews them less than wall
time; the "2 threads" ratio is wall time and needs a free core to mean anything (the load is
printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import repo_root  # noqa: F401  (this tree's code, not an installed one)

from broker.protocol import compression
from broker.protocol.records import HEADER_SIZE, build_batch, check_batch, parse_header
from broker.protocol.validate import check_records


def check(batch) -> None:
    header = check_batch(batch, 0)
    check_records(batch, 0, header)


def batches() -> dict[str, bytes]:
    value = os.urandom(100) * 2  # half-compressible 200-byte values
    many = [(None, value) for _ in range(1000)]
    return {
        "1 x 200 B": build_batch([(None, value)]),
        "1000 x 200 B": build_batch(many),
        "1000 x 200 B lz4": build_batch(many, compression_type=compression.LZ4),
        "1000 x 200 B zstd": build_batch(many, compression_type=compression.ZSTD),
        "1000 x 200 B gzip": build_batch(many, compression_type=compression.GZIP),
    }


def released_share(batch: bytes, seconds: float) -> float:
    """CPU of the CRC and of decompression, as a share of the whole check's."""
    header = parse_header(batch, 0)
    body = memoryview(batch)[HEADER_SIZE:]
    free = cpu_per_call(lambda: check_batch(batch, 0), seconds)
    if header.compression != compression.NONE:
        free += cpu_per_call(
            lambda: compression.decompress(header.compression, body, 1 << 27), seconds
        )
    return free / cpu_per_call(lambda: check(batch), seconds)


def cpu_per_call(fn, seconds: float) -> float:
    """This thread's CPU seconds per call of ``fn``, repeated for about ``seconds``."""
    calls, start = 0, time.thread_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(20):
            fn()
        calls += 20
    return (time.thread_time() - start) / calls


def handoff_cost(pool: ThreadPoolExecutor, batch: bytes, seconds: float) -> float:
    """The submitting thread's CPU per batch when a worker checks it (one in flight)."""
    return cpu_per_call(lambda: pool.submit(check, batch).result(), seconds)


def rate(batch: bytes, threads: int, seconds: float) -> float:
    """Batches checked per wall second by ``threads`` threads together."""
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def work(i):
        n = 0
        while time.perf_counter() < stop:
            for _ in range(10):
                check(batch)
            n += 10
        counts[i] = n

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    began = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - began)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    print(f"batch checks on the reactor thread or a worker; {os.cpu_count()} CPUs, load {load:.2f}")
    print(
        f"{'batch':<20} {'bytes':>8} {'inline us':>10} {'handoff us':>11} "
        f"{'2 threads x':>12} {'nogil %':>8} {'crc+zip %':>10}"
    )
    with ThreadPoolExecutor(1) as pool:
        for name, batch in batches().items():
            inline = cpu_per_call(lambda b=batch: check(b), args.seconds)
            handoff = handoff_cost(pool, batch, args.seconds)
            one, two = rate(batch, 1, args.seconds), rate(batch, 2, args.seconds)
            speedup = two / one
            # Amdahl with two threads: speedup = 1 / (g + (1 - g) / 2), g the GIL-held share.
            held = min(1.0, max(0.0, 2 / speedup - 1))
            released = released_share(batch, args.seconds / 3)
            print(
                f"{name:<20} {len(batch):>8,} {inline * 1e6:>10.1f} {handoff * 1e6:>11.1f} "
                f"{speedup:>12.2f} {100 * (1 - held):>7.0f}% {100 * released:>9.0f}%"
            )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
