"""Log cleaner throughput: MB of log cleaned per second against a raw read+write copy of the
same segments, in the same run.

Run from the repository root::

    .venv/bin/python bench/cleaner_bench.py            # ~96 MiB of log, 3 rounds
    .venv/bin/python bench/cleaner_bench.py --quick    # ~16 MiB, 2 rounds

What is measured
----------------
A compacted partition log (``cleanup.policy=compact``, 16 MiB segments) is filled with
batches of 100 keyed records (200-byte values, keys drawn from ``--keys`` distinct ones, no
compression), then copied aside.  Each round, on a fresh copy of it:

* **raw copy**: every segment but the active one read in 1 MiB chunks and written to a new
  file, fsynced - the I/O a clean cannot avoid;
* **clean**: ``LogCleaner.clean_now`` on the log: the offset map over the dirty section, then
  every group rewritten with the latest record per key, fsynced, indexed and swapped in.

Reported: MB/s of log read (the segments' bytes) by each, their ratio (clean / raw), and the
bytes left after the clean.  Both read from the page cache (the copy is made just before).
Quote ratios with the machine's load, which is printed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import repo_root  # noqa: F401 (puts the repository root on sys.path)

from broker.log import LogConfig, PartitionLog
from broker.log.cleaner import CleanerConfig, LogCleaner
from broker.protocol.records import build_batch

MB = 1024 * 1024
CONFIG = LogConfig(
    segment_bytes=16 * MB,
    cleanup_policy="compact",
    min_cleanable_dirty_ratio=0.0,
    file_delete_delay_ms=0,
)


def fill(directory: Path, total_bytes: int, keys: int) -> None:
    rng = random.Random(1)
    plog = PartitionLog.open(directory, CONFIG)
    value = b"v" * 200
    now = int(time.time() * 1000)
    while plog.size < total_bytes:
        rows = [(b"key-%08d" % rng.randrange(keys), value, None, now) for _ in range(100)]
        plog.append(build_batch(rows))
    plog.close()


def raw_copy(directory: Path) -> tuple[int, float]:
    """Read every closed segment in 1 MiB chunks into a new file, fsynced."""
    segments = sorted(directory.glob("*.log"))[:-1]
    began = time.perf_counter()
    total = 0
    for path in segments:
        src = os.open(path, os.O_RDONLY)
        dst = os.open(str(path) + ".copy", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            position = 0
            while chunk := os.pread(src, MB, position):
                os.write(dst, chunk)
                position += len(chunk)
            os.fsync(dst)
            total += position
        finally:
            os.close(src)
            os.close(dst)
    return total, time.perf_counter() - began


def clean(directory: Path) -> tuple[int, float, int]:
    plog = PartitionLog.open(directory, CONFIG)
    plog.high_watermark = plog.log_end_offset
    cleaner = LogCleaner(CleanerConfig(), plog.clock)
    began = time.perf_counter()
    result = cleaner.clean_now(plog)
    seconds = time.perf_counter() - began
    left = plog.size
    plog.close()
    assert result is not None
    return result.bytes_read, seconds, left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16 MiB of log, 2 rounds")
    parser.add_argument("--mb", type=int, default=None, help="size of the log in MiB")
    parser.add_argument("--keys", type=int, default=20_000, help="distinct keys")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    size_mb = args.mb or (16 if args.quick else 96)
    rounds = args.rounds or (2 if args.quick else 3)
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-") as tmp:
        original = Path(tmp) / "original" / "kv-0"
        original.parent.mkdir()
        fill(original, size_mb * MB, args.keys)
        raw_rates, clean_rates, lefts = [], [], []
        for i in range(rounds):
            work = Path(tmp) / f"round-{i}"
            shutil.copytree(original.parent, work)
            read, seconds = raw_copy(work / "kv-0")
            raw_rates.append(read / MB / seconds)
            read, seconds, left = clean(work / "kv-0")
            clean_rates.append(read / MB / seconds)
            lefts.append(left)
            shutil.rmtree(work)
            print(
                f"round {i + 1}: raw copy {raw_rates[-1]:.0f} MB/s, clean {clean_rates[-1]:.1f} "
                f"MB/s ({clean_rates[-1] / raw_rates[-1]:.3f}), {left / MB:.1f} MiB left"
            )
    raw, cleaned = statistics.median(raw_rates), statistics.median(clean_rates)
    print(
        f"median over {rounds} rounds of {size_mb} MiB ({args.keys} keys): raw copy {raw:.0f} "
        f"MB/s, cleaner {cleaned:.1f} MB/s, ratio {cleaned / raw:.3f}"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
