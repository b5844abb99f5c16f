"""Storage benchmark of headrace's log engine: append, read and recovery, each against a baseline.

Run from the repository root::

    .venv/bin/python bench/storage_bench.py            # full run, ~40 s on 2 CPUs
    .venv/bin/python bench/storage_bench.py --quick    # smaller sizes, ~5 s
    .venv/bin/python bench/storage_bench.py --json results.json

What is measured
----------------
1. **Append** of pre-built record batches (``PartitionLog.append``, default ``LogConfig``, so
   no fsync) for batches of 1, 50 and 1,000 records of 200-byte values, and for ~1 MiB
   batches made of one big record or of ~5,000 200-byte records.  Baseline: ``os.write`` of
   the very same byte strings to a plain file opened ``O_WRONLY | O_APPEND`` in the same
   directory.  Building the batches is client work and is not timed.
2. **Sequential read** from the page cache: a log of 1,000-record batches is read from offset 0
   to its end with ``PartitionLog.read(offset, 1 MiB)``, the next offset taken from the last
   batch header of each answer (``records.split_batches``).  Baseline: ``os.pread`` of 1 MiB
   chunks over the same segment files.  An extra, informational row does the same with
   ``read_slice`` + ``os.sendfile`` to ``/dev/null`` against ``os.sendfile`` of 1 MiB chunks.
3. **Recovery** after an unclean shutdown: a ``LogManager`` with one partition gets ~1 GiB of
   ~1 MiB batches (128 MiB with ``--quick``), flushed and checkpointed, then a 10 MiB tail of
   1,000-record batches that is never flushed, then ``crash()``.  Timed: a new
   ``LogManager(...).startup()``, after which the log end offset must equal what was appended.
   Baseline: ``os.pread`` of the tail bytes in 1 MiB chunks plus ``crc32c`` over them (the
   minimum work a recovery must do).  For comparison, the same recovery with the checkpointed
   recovery point set to 0 (a full scan) against pread + crc32c of the whole log, to show
   that recovery time follows the tail, not the log size.

How
---
The machine this runs on is shared and noisy, so absolute numbers matter less than ratios
against a baseline run in the same process, on the same bytes, close in time.  Each
measurement runs ``--reps`` times interleaved with its baseline (order alternating
B,L / L,B so slow drift hits both), after an untimed warm-up.  The primary statistic is the
**best** run of each side (noise only ever adds time); the median of the per-pair ratios is
printed beside it as a check of how stable the ratio was.  Throughput ratios are
library / baseline (1.0 = as fast as the raw syscalls); recovery ratios are time
library / baseline (how many times the minimum work).  MB is 10**6 bytes.

Every ``os.pread`` (the library's reads and the baselines alike) allocates a new bytes object
of up to 1 MiB.  With glibc's default, adaptive malloc thresholds such buffers come either
from reused heap memory or from fresh pages (mmap, or a heap grown again after a trim), and
which one depends on the process's allocation history: in trials the read ratio swung
between 0.68 and 1.20 with the order of the parts alone.  So the script pins the thresholds
(``mallopt``: M_MMAP_THRESHOLD 16 MiB, M_TRIM_THRESHOLD 128 MiB; glibc only), giving both
sides the same, stable allocator; ``--no-malloc-pin`` turns this off.

The garbage collector is paused inside timed loops.  Data lives in a temporary directory on
the file system of ``--tmp-dir`` (default: this script's directory; a warning if it is tmpfs) and
stays in the page cache (caches are not dropped); the directory is removed at the end, also
on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import math
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import crc32c
from benchlib import (
    MB,
    VALUE_BYTES,
    BenchmarkError,
    MiB,
    finish,
    gc_paused,
    header,
    platform_meta,
    print_table,
    raise_system_exit,
)

from broker.log.checkpoint import RECOVERY_POINT_FILE, write_checkpoint
from broker.log.config import LogConfig
from broker.log.manager import LogManager
from broker.log.partition import PartitionLog
from broker.protocol.records import build_batch, split_batches

GiB = 1024 * MiB

READ_CHUNK = MiB
TIMESTAMP_MS = 1_700_000_000_000

TARGET_BIG_APPEND_RATIO = 0.7
TARGET_SMALL_APPENDS_PER_S = 100_000
TARGET_READ_RATIO = 0.7
TARGET_RECOVERY_S = 1.0


class WarningCollector(logging.Handler):
    """Keeps the library's warnings out of the tables and counts them for the summary.

    The warning every unclean start-up logs is expected; anything else is worth a look.
    """

    EXPECTED = ("was not shut down cleanly",)

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.unexpected: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not any(text in message for text in self.EXPECTED):
            self.unexpected[message] = self.unexpected.get(message, 0) + 1


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    quick: bool
    reps: int  # interleaved pairs (library, baseline) per measurement
    run_seconds: float  # aimed-at duration of one timed library run
    max_run_bytes: int  # bound on the bytes one append run writes
    read_log_bytes: int
    recovery_log_bytes: int
    recovery_tail_bytes: int
    recovery_reps: int
    tail_batch_records: int
    full_scan: str  # "auto", "on" or "off"
    full_scan_cap_s: float  # "auto": skip the full scan if it is estimated to take longer


def settings_from(args: argparse.Namespace) -> Settings:
    if args.quick:
        base = dict(
            reps=5,
            run_seconds=0.15,
            max_run_bytes=64 * MiB,
            read_log_bytes=32 * MiB,
            recovery_log_bytes=128 * MiB,
            recovery_reps=7,
        )
    else:
        base = dict(
            reps=7,
            run_seconds=0.5,
            max_run_bytes=512 * MiB,
            read_log_bytes=256 * MiB,
            recovery_log_bytes=GiB,
            recovery_reps=9,
        )
    if args.reps:
        base["reps"] = base["recovery_reps"] = args.reps
    full_scan = "on" if args.full_scan_baseline else "off" if args.no_full_scan else "auto"
    return Settings(
        quick=args.quick,
        recovery_tail_bytes=10 * MiB,
        tail_batch_records=args.tail_batch_records,
        full_scan=full_scan,
        full_scan_cap_s=args.full_scan_cap,
        **base,
    )


# --- batches -------------------------------------------------------------------------------


def record_values(count: int, seed: int = 1) -> list[bytes]:
    """``count`` distinct pseudo-random values of VALUE_BYTES bytes each."""
    blob = random.Random(seed).randbytes(VALUE_BYTES + count)
    return [blob[i : i + VALUE_BYTES] for i in range(count)]


def batch_of_records(count: int) -> bytes:
    return build_batch([(None, v) for v in record_values(count)], timestamp=TIMESTAMP_MS)


def batch_of_records_within(size: int) -> tuple[bytes, int]:
    """The largest batch of 200-byte records that is at most ``size`` bytes, and its count."""
    count = size // (VALUE_BYTES + 10)
    while True:
        batch = batch_of_records(count)
        if len(batch) <= size:
            return batch, count
        count -= (len(batch) - size) // VALUE_BYTES + 1


def batch_of_one_record(size: int) -> bytes:
    """A one-record batch of exactly ``size`` bytes."""
    value_bytes = size - 80
    for _attempt in range(5):
        value = random.Random(2).randbytes(value_bytes)
        batch = build_batch([(None, value)], timestamp=TIMESTAMP_MS)
        if len(batch) == size:
            return batch
        value_bytes -= len(batch) - size
    raise BenchmarkError(f"cannot build a one-record batch of exactly {size} bytes")


# --- timing helpers ------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Pairs:
    """Times of interleaved library and baseline runs of the same work."""

    library: list[float]
    baseline: list[float]

    @property
    def library_best(self) -> float:
        return min(self.library)

    @property
    def baseline_best(self) -> float:
        return min(self.baseline)

    def speed_ratio_best(self) -> float:
        """Library throughput / baseline throughput, from the best run of each."""
        return self.baseline_best / self.library_best

    def speed_ratio_median(self) -> float:
        """Median over the pairs of library throughput / baseline throughput."""
        return statistics.median(b / lib for lib, b in zip(self.library, self.baseline))

    def time_ratio_best(self) -> float:
        """Library time / baseline time, from the best run of each."""
        return self.library_best / self.baseline_best

    def time_ratio_median(self) -> float:
        return statistics.median(lib / b for lib, b in zip(self.library, self.baseline))

    def speed_ratios(self) -> dict:
        """A result's throughput ratios (best, median) and every run's time."""
        return {
            "ratio_best": self.speed_ratio_best(),
            "ratio_median": self.speed_ratio_median(),
            "times": self.as_json(),
        }

    def as_json(self) -> dict:
        return {"library_s": self.library, "baseline_s": self.baseline}


def interleaved(library: Callable[[], float], baseline: Callable[[], float], reps: int) -> Pairs:
    """Run each side ``reps`` times, alternating which goes first; each returns its time."""
    pairs = Pairs([], [])
    for i in range(reps):
        if i % 2 == 0:
            pairs.baseline.append(baseline())
            pairs.library.append(library())
        else:
            pairs.library.append(library())
            pairs.baseline.append(baseline())
    return pairs


def calibrate(run: Callable[[int], float], max_n: int, settings: Settings) -> int:
    """How many operations make one run last about ``settings.run_seconds`` (at most
    ``max_n``).  The pilot runs double as the warm-up."""
    pilot_s = settings.run_seconds / 4
    n = 4
    while True:
        n = min(n, max_n)
        elapsed = run(n)
        if elapsed >= pilot_s or n >= max_n:
            break
        n *= 4
    return max(1, min(max_n, math.ceil(settings.run_seconds * n / max(elapsed, 1e-9))))


# --- 1. append -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AppendCase:
    name: str
    batch: bytes
    records: int
    target: str  # "appends/s", "ratio" or ""


def append_cases() -> list[AppendCase]:
    many, count = batch_of_records_within(MiB)
    return [
        AppendCase("1 record", batch_of_records(1), 1, "appends/s"),
        AppendCase("50 records", batch_of_records(50), 50, ""),
        AppendCase("1,000 records", batch_of_records(1000), 1000, ""),
        AppendCase("1 MiB, 1 record", batch_of_one_record(MiB), 1, "ratio"),
        AppendCase(f"1 MiB, {count:,} records", many, count, "ratio"),
    ]


def bench_append(case: AppendCase, workdir: Path, settings: Settings) -> dict:
    log_dir = workdir / "append-0"  # a partition directory is named <topic>-<partition>
    raw_path = workdir / "raw-append.bin"
    batch = case.batch
    config = LogConfig()

    def library_run(n: int) -> float:
        plog = PartitionLog.open(log_dir, config)
        try:
            append = plog.append
            with gc_paused():
                start = time.perf_counter()
                for _ in repeat(None, n):
                    append(batch)
                elapsed = time.perf_counter() - start
            if plog.log_end_offset != n * case.records or plog.size != n * len(batch):
                raise BenchmarkError(
                    f"append {case.name}: log end {plog.log_end_offset}, size {plog.size} after "
                    f"{n} appends of {case.records} records / {len(batch)} bytes"
                )
        finally:
            plog.close_without_flush()
            shutil.rmtree(log_dir)
        return elapsed

    def raw_run(n: int) -> float:
        fd = os.open(raw_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            write = os.write
            with gc_paused():
                start = time.perf_counter()
                for _ in repeat(None, n):
                    write(fd, batch)
                elapsed = time.perf_counter() - start
            if os.fstat(fd).st_size != n * len(batch):
                raise BenchmarkError(f"raw append {case.name}: short writes")
        finally:
            os.close(fd)
            raw_path.unlink()
        return elapsed

    max_n = max(1, settings.max_run_bytes // len(batch))
    n = calibrate(library_run, max_n, settings)
    raw_run(min(n, 1000))  # warm-up
    pairs = interleaved(lambda: library_run(n), lambda: raw_run(n), settings.reps)
    best = pairs.library_best
    result = {
        "case": case.name,
        "batch_bytes": len(batch),
        "records_per_batch": case.records,
        "appends_per_run": n,
        "bytes_per_run": n * len(batch),
        "appends_per_s": n / best,
        "records_per_s": n * case.records / best,
        "mb_per_s": n * len(batch) / best / MB,
        "raw_mb_per_s": n * len(batch) / pairs.baseline_best / MB,
        "raw_writes_per_s": n / pairs.baseline_best,
        **pairs.speed_ratios(),
    }
    if case.target == "appends/s":
        result["target"] = f">= {TARGET_SMALL_APPENDS_PER_S:,} appends/s"
        result["target_met"] = result["appends_per_s"] >= TARGET_SMALL_APPENDS_PER_S
    elif case.target == "ratio":
        result["target"] = f"ratio >= {TARGET_BIG_APPEND_RATIO}"
        result["target_met"] = result["ratio_best"] >= TARGET_BIG_APPEND_RATIO
    return result


# --- 2. read -------------------------------------------------------------------------------


def read_through(plog: PartitionLog, end_offset: int, offsets: list[int] | None = None) -> int:
    """Read the whole log as a consumer would, 1 MiB per call; returns the bytes read."""
    read = plog.read
    offset = plog.log_start_offset
    total = 0
    while offset < end_offset:
        if offsets is not None:
            offsets.append(offset)
        data = read(offset, READ_CHUNK)
        if not data:
            raise BenchmarkError(f"read: empty answer at offset {offset} < log end {end_offset}")
        total += len(data)
        last = None
        for _position, batch in split_batches(data):
            last = batch
        if last is None:
            raise BenchmarkError(f"read: no whole batch in the answer at offset {offset}")
        offset = last.next_offset
    return total


def pread_through(files: list[tuple[int, int]]) -> int:
    """Read (fd, size) files in 1 MiB chunks; returns the bytes read."""
    pread = os.pread
    total = 0
    for fd, size in files:
        position = 0
        while position < size:
            chunk = pread(fd, READ_CHUNK, position)
            if not chunk:
                raise BenchmarkError("raw read: file shorter than expected")
            position += len(chunk)
        total += position
    return total


def sendfile_all(out_fd: int, in_fd: int, position: int, size: int) -> None:
    while size > 0:
        sent = os.sendfile(out_fd, in_fd, position, size)
        if sent <= 0:
            raise BenchmarkError("sendfile sent nothing")
        position += sent
        size -= sent


def bench_read(workdir: Path, settings: Settings, batch: bytes) -> list[dict]:
    log_dir = workdir / "read-0"
    plog = PartitionLog.open(log_dir, LogConfig())
    fds: list[int] = []
    null_fd = os.open(os.devnull, os.O_WRONLY)
    try:
        for _ in range(math.ceil(settings.read_log_bytes / len(batch))):
            plog.append(batch)
        end_offset = plog.log_end_offset
        log_bytes = plog.size
        for segment in plog.segments:
            fds.append(os.open(segment.log_path, os.O_RDONLY))
        files = [(fd, segment.size) for fd, segment in zip(fds, plog.segments)]

        offsets: list[int] = []
        if read_through(plog, end_offset, offsets) != log_bytes:  # warm-up and check
            raise BenchmarkError("read: the log read back has the wrong size")
        if pread_through(files) != log_bytes:
            raise BenchmarkError("raw read: wrong size")
        one_pass = min(timed(lambda: read_through(plog, end_offset)) for _ in range(2))
        passes = max(1, round(settings.run_seconds / one_pass))

        def library_run() -> float:
            with gc_paused():
                start = time.perf_counter()
                for _ in range(passes):
                    read_through(plog, end_offset)
                return time.perf_counter() - start

        def raw_run() -> float:
            with gc_paused():
                start = time.perf_counter()
                for _ in range(passes):
                    pread_through(files)
                return time.perf_counter() - start

        results = [
            _read_result(
                "read() + split_batches vs pread",
                "ratio",
                log_bytes,
                passes,
                len(offsets),
                interleaved(library_run, raw_run, settings.reps),
            )
        ]

        # Informational: zero-copy path.  The offsets come from the read pass above, so the
        # library side does what a broker's fetch does: read_slice, then sendfile.
        read_slice = plog.read_slice

        def sendfile_library_run() -> float:
            with gc_paused():
                start = time.perf_counter()
                for _ in range(passes):
                    for offset in offsets:
                        file_slice = read_slice(offset, READ_CHUNK)
                        sendfile_all(null_fd, file_slice.fd, file_slice.position, file_slice.size)
                return time.perf_counter() - start

        def sendfile_raw_run() -> float:
            with gc_paused():
                start = time.perf_counter()
                for _ in range(passes):
                    for fd, size in files:
                        for position in range(0, size, READ_CHUNK):
                            sendfile_all(null_fd, fd, position, min(READ_CHUNK, size - position))
                return time.perf_counter() - start

        try:
            sendfile_library_run()  # warm-up
        except OSError as exc:
            print(f"(sendfile to {os.devnull} not possible here: {exc}; row skipped)")
        else:
            results.append(
                _read_result(
                    "read_slice() + sendfile vs sendfile (info)",
                    "",
                    log_bytes,
                    passes,
                    len(offsets),
                    interleaved(sendfile_library_run, sendfile_raw_run, settings.reps),
                )
            )
        return results
    finally:
        for fd in fds:
            os.close(fd)
        os.close(null_fd)
        plog.close_without_flush()
        shutil.rmtree(log_dir)


def _read_result(
    name: str, target: str, log_bytes: int, passes: int, calls: int, pairs: Pairs
) -> dict:
    run_bytes = log_bytes * passes
    result = {
        "case": name,
        "log_bytes": log_bytes,
        "passes_per_run": passes,
        "library_calls_per_pass": calls,
        "mb_per_s": run_bytes / pairs.library_best / MB,
        "raw_mb_per_s": run_bytes / pairs.baseline_best / MB,
        **pairs.speed_ratios(),
    }
    if target:
        result["target"] = f"ratio >= {TARGET_READ_RATIO}"
        result["target_met"] = result["ratio_best"] >= TARGET_READ_RATIO
    return result


# --- 3. recovery ---------------------------------------------------------------------------

TOPIC = "bench"


def pread_crc(ranges: list[tuple[Path, int, int]]) -> int:
    """The minimum work of a recovery: read (path, start, end) ranges in 1 MiB chunks and
    CRC-32C them.  Returns the bytes read."""
    total = 0
    for path, start, end in ranges:
        fd = os.open(path, os.O_RDONLY)
        try:
            crc = 0
            position = start
            while position < end:
                chunk = os.pread(fd, min(READ_CHUNK, end - position), position)
                if not chunk:
                    raise BenchmarkError(f"{path} is shorter than {end} bytes")
                crc = crc32c.crc32c(chunk, crc)
                position += len(chunk)
            total += position - start
        finally:
            os.close(fd)
    return total


def bench_recovery(
    workdir: Path, settings: Settings, big_batch: bytes, tail_batch: bytes, tail_records: int
) -> list[dict]:
    log_dir = workdir / "logs"
    config = LogConfig()
    setup: dict = {}

    manager = LogManager([log_dir], config)
    manager.startup()
    try:
        plog = manager.get_or_create_log(TOPIC, 0)
        start = time.perf_counter()
        for _ in range(max(1, round(settings.recovery_log_bytes / len(big_batch)))):
            plog.append(big_batch)
        setup["append_s"] = time.perf_counter() - start
        start = time.perf_counter()
        plog.flush()
        setup["flush_s"] = time.perf_counter() - start
        manager.checkpoint_recovery_points()
        recovery_point = plog.recovery_point
        flushed_bytes = plog.size
        flushed_sizes = {s.log_path: s.size for s in plog.segments}
        for _ in range(math.ceil(settings.recovery_tail_bytes / len(tail_batch))):
            plog.append(tail_batch)
        expected_end = plog.log_end_offset
        expected_bytes = plog.size
        tail_ranges = [
            (s.log_path, flushed_sizes.get(s.log_path, 0), s.size)
            for s in plog.segments
            if s.size > flushed_sizes.get(s.log_path, 0)
        ]
        all_ranges = [(s.log_path, 0, s.size) for s in plog.segments]
        setup.update(
            log_bytes=expected_bytes,
            flushed_bytes=flushed_bytes,
            tail_bytes=expected_bytes - flushed_bytes,
            tail_records_per_batch=tail_records,
            segments=len(plog.segments),
            recovery_point=recovery_point,
            log_end_offset=expected_end,
            recovery_point_mid_segment=recovery_point not in [s.base_offset for s in plog.segments],
        )
    finally:
        manager.crash()

    def recover_once() -> float:
        recovering = LogManager([log_dir], config)
        with gc_paused():
            start = time.perf_counter()
            recovering.startup()
            elapsed = time.perf_counter() - start
        try:
            recovered = recovering.get_log(TOPIC, 0)
            if not recovering.recovered_unclean:
                raise BenchmarkError("recovery: the log manager did not see an unclean shutdown")
            if recovered.log_end_offset != expected_end or recovered.size != expected_bytes:
                raise BenchmarkError(
                    f"recovery: log end {recovered.log_end_offset} / {recovered.size} bytes, "
                    f"expected {expected_end} / {expected_bytes} bytes"
                )
            checked = getattr(recovered, "recovery_checked_bytes", None)
            last_checked[0] = checked
        finally:
            recovering.crash()  # leave the directory unclean for the next run
        return elapsed

    def baseline(ranges: list[tuple[Path, int, int]], expected: int) -> Callable[[], float]:
        def run() -> float:
            with gc_paused():
                start = time.perf_counter()
                done = pread_crc(ranges)
                elapsed = time.perf_counter() - start
            if done != expected:
                raise BenchmarkError("recovery baseline read the wrong number of bytes")
            return elapsed

        return run

    last_checked: list[int | None] = [None]
    tail_bytes = setup["tail_bytes"]
    recover_once()  # warm-up
    pairs = interleaved(recover_once, baseline(tail_ranges, tail_bytes), settings.recovery_reps)
    results = [
        _recovery_result(
            "from checkpoint (tail only)", setup, tail_bytes, last_checked[0], pairs, target=True
        )
    ]

    estimate = pairs.library_best * expected_bytes / max(tail_bytes, 1)
    run_full = settings.full_scan == "on" or (
        settings.full_scan == "auto" and (settings.quick or estimate <= settings.full_scan_cap_s)
    )
    if run_full:
        write_checkpoint(log_dir / RECOVERY_POINT_FILE, {(TOPIC, 0): 0})
        reps = settings.recovery_reps if settings.quick else max(2, settings.recovery_reps // 2)
        recover_once()  # warm-up
        full = interleaved(recover_once, baseline(all_ranges, expected_bytes), reps)
        results.append(
            _recovery_result(
                "recovery point 0 (full scan)",
                setup,
                expected_bytes,
                last_checked[0],
                full,
                target=False,
            )
        )
    else:
        reason = (
            "skipped (--no-full-scan)"
            if settings.full_scan == "off"
            else f"skipped (estimated {estimate:.1f} s > --full-scan-cap)"
        )
        results.append(
            {"case": "recovery point 0 (full scan)", "skipped": reason, "estimated_s": estimate}
        )
    results[0]["setup"] = setup
    return results


def _recovery_result(
    name: str, setup: dict, rechecked: int, reported: int | None, pairs: Pairs, target: bool
) -> dict:
    result = {
        "case": name,
        "log_bytes": setup["log_bytes"],
        "bytes_to_recheck": rechecked,
        "bytes_checked_reported": reported,
        "recovery_s": pairs.library_best,
        "recovery_median_s": statistics.median(pairs.library),
        "baseline_s": pairs.baseline_best,
        "ratio_best": pairs.time_ratio_best(),
        "ratio_median": pairs.time_ratio_median(),
        "times": pairs.as_json(),
    }
    if target:
        result["target"] = f"< {TARGET_RECOVERY_S:g} s"
        result["target_met"] = pairs.library_best < TARGET_RECOVERY_S
    return result


# --- output --------------------------------------------------------------------------------


def verdict(result: dict) -> str:
    if "target_met" not in result:
        return "-"
    return f"{result['target']}: {'yes' if result['target_met'] else 'NO'}"


def ratio_cells(result: dict) -> list[str]:
    """The last cells of an append or read row: the ratios and the verdict."""
    return [f"{result['ratio_best']:.2f}", f"{result['ratio_median']:.2f}", verdict(result)]


def print_append(results: list[dict]) -> None:
    rows = [
        [
            r["case"],
            f"{r['batch_bytes']:,}",
            f"{r['appends_per_s']:,.0f}",
            f"{r['records_per_s']:,.0f}",
            f"{r['mb_per_s']:,.1f}",
            f"{r['raw_mb_per_s']:,.1f}",
            *ratio_cells(r),
        ]
        for r in results
    ]
    print_table(
        "1. Append (PartitionLog.append vs os.write of the same bytes, O_APPEND file)",
        [
            "batch",
            "bytes",
            "appends/s",
            "records/s",
            "MB/s",
            "raw MB/s",
            "ratio",
            "ratio(med)",
            "target",
        ],
        rows,
    )


def print_read(results: list[dict]) -> None:
    rows = [
        [
            r["case"],
            f"{r['log_bytes'] / MiB:,.0f} MiB",
            f"{r['library_calls_per_pass']:,}",
            f"{r['mb_per_s']:,.0f}",
            f"{r['raw_mb_per_s']:,.0f}",
            *ratio_cells(r),
        ]
        for r in results
    ]
    print_table(
        "2. Sequential read from the page cache, 1 MiB per call (1,000-record batches)",
        ["path", "log", "calls/pass", "MB/s", "raw MB/s", "ratio", "ratio(med)", "target"],
        rows,
    )


def print_recovery(results: list[dict]) -> None:
    rows = []
    for r in results:
        if r.get("skipped"):
            rows.append([r["case"], "-", "-", "-", "-", "-", "-", "-", r["skipped"]])
            continue
        reported = r["bytes_checked_reported"]
        rows.append(
            [
                r["case"],
                f"{r['log_bytes'] / MiB:,.1f} MiB",
                f"{r['bytes_to_recheck'] / MiB:,.1f} MiB",
                "-" if reported is None else f"{reported / MiB:,.1f} MiB",
                f"{r['recovery_s']:.4f}",
                f"{r['recovery_median_s']:.4f}",
                f"{r['baseline_s']:.4f}",
                f"{r['ratio_best']:.2f}x",
                verdict(r),
            ]
        )
    print_table(
        "3. Recovery after crash(): LogManager.startup() vs pread + crc32c of the same bytes",
        [
            "recovery",
            "log",
            "to re-check",
            "checked",
            "startup s",
            "median s",
            "baseline s",
            "time ratio",
            "target",
        ],
        rows,
    )
    setup = results[0]["setup"]
    print(
        f"   setup: {setup['segments']} segment(s), recovery point {setup['recovery_point']:,} "
        f"({'inside' if setup['recovery_point_mid_segment'] else 'at the start of'} a segment), "
        f"log end {setup['log_end_offset']:,}; tail batches of {setup['tail_records_per_batch']:,} "
        f"records; appending the flushed part took {setup['append_s']:.2f} s, "
        f"its flush {setup['flush_s']:.2f} s"
    )


def file_system_of(path: Path) -> str:
    """The type and mount point of the file system holding ``path`` (from /proc/self/mounts)."""
    best = ("?", "")
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                mount_point, fs_type = fields[1], fields[2]
                inside = str(path) == mount_point or str(path).startswith(
                    mount_point.rstrip("/") + "/"
                )
                if inside and len(mount_point) >= len(best[1]):
                    best = (fs_type, mount_point)
    except OSError:
        pass
    return f"{best[0]} on {best[1] or '?'}"


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer runs (< 30 s)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--reps",
        type=int,
        default=0,
        help="interleaved library/baseline pairs per measurement "
        "(default 7, quick 5; recovery 9 and 7)",
    )
    parser.add_argument(
        "--tmp-dir",
        metavar="DIR",
        default=str(Path(__file__).resolve().parent),
        help="where to make the temporary directory (default: this script's directory)",
    )
    parser.add_argument(
        "--only",
        default="append,read,recovery",
        help="comma-separated subset of append,read,recovery",
    )
    parser.add_argument(
        "--tail-batch-records",
        type=int,
        default=1000,
        help="records per batch in the unflushed recovery tail (default 1000)",
    )
    full = parser.add_mutually_exclusive_group()
    full.add_argument(
        "--full-scan-baseline",
        action="store_true",
        help="always time the full-scan recovery, even of the 1 GiB log",
    )
    parser.add_argument(
        "--no-malloc-pin",
        action="store_true",
        help="leave glibc's adaptive malloc thresholds alone (noisier reads)",
    )
    full.add_argument(
        "--no-full-scan", action="store_true", help="never time the full-scan recovery"
    )
    parser.add_argument(
        "--full-scan-cap",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="without --quick, skip the full scan if estimated to take longer (default 5)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - {"append", "read", "recovery"}
    if unknown:
        parser.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}")
    return args


def pin_malloc_thresholds() -> str:
    """Fix glibc's adaptive mmap/trim thresholds (see the module docstring); returns what was
    done, for the report."""
    if platform.libc_ver()[0] != "glibc":
        return "not pinned (not glibc)"
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    try:
        libc = ctypes.CDLL(None)
        done = libc.mallopt(m_mmap_threshold, 16 * MiB)
        done = done and libc.mallopt(m_trim_threshold, 128 * MiB)
    except (OSError, AttributeError) as exc:
        return f"not pinned ({exc})"
    return "pinned (mmap 16 MiB, trim 128 MiB)" if done else "not pinned (mallopt failed)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    parts = args.only.split(",")
    signal.signal(signal.SIGTERM, raise_system_exit)  # so the temporary directory goes too
    warnings = WarningCollector()
    library_log = logging.getLogger("broker")
    library_log.addHandler(warnings)
    library_log.propagate = False
    malloc = "not pinned (--no-malloc-pin)" if args.no_malloc_pin else pin_malloc_thresholds()

    parent = Path(args.tmp_dir).resolve()
    workdir = Path(tempfile.mkdtemp(prefix="storage-bench-", dir=parent))
    fs = file_system_of(workdir)
    meta = {
        "mode": "quick" if settings.quick else "default",
        "statistic": "best of N interleaved runs (median of per-pair ratios shown beside it)",
        "reps": settings.reps,
        **platform_meta(),
        "crc32c_hardware": getattr(crc32c, "hardware_based", None),
        "malloc_thresholds": malloc,
        "tmp_dir": str(workdir),
        "file_system": fs,
    }
    print(header("storage", meta))
    print(f"Data in {workdir} ({fs}); malloc thresholds {malloc}.")
    print(
        "Each ratio compares the library with a raw-syscall baseline run interleaved with it "
        f"in this process; best of {settings.reps} runs per side, median of per-pair ratios "
        "as 'ratio(med)'.  MB = 10^6 bytes."
    )
    if fs.startswith("tmpfs"):
        print("warning: the temporary directory is on tmpfs; use --tmp-dir for a disk file system")
    results: dict = {"meta": meta}
    try:
        batch1000 = batch_of_records(1000)
        if "append" in parts:
            results["append"] = [bench_append(case, workdir, settings) for case in append_cases()]
            print_append(results["append"])
        if "read" in parts:
            results["read"] = bench_read(workdir, settings, batch1000)
            print_read(results["read"])
        if "recovery" in parts:
            big, _count = batch_of_records_within(MiB)
            tail = (
                batch1000
                if settings.tail_batch_records == 1000
                else batch_of_records(settings.tail_batch_records)
            )
            results["recovery"] = bench_recovery(
                workdir, settings, big, tail, settings.tail_batch_records
            )
            print_recovery(results["recovery"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    missed = [
        f"{part}: {r['case']}"
        for part in ("append", "read", "recovery")
        for r in results.get(part, [])
        if r.get("target_met") is False
    ]
    if warnings.unexpected:
        print("\nUnexpected warnings from the library:")
        for message, count in warnings.unexpected.items():
            print(f"  {count} x {message}")
    meta["unexpected_library_warnings"] = warnings.unexpected
    finish(results, missed, ", ", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
