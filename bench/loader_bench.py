"""Loader benchmark: ``headrace load`` (JSON access-log events into Parquet on local disk)
against pyarrow alone, one real broker.

Run from the repository root::

    .venv/bin/python bench/loader_bench.py            # 1,000,000 events, ~65 s on 2 CPUs
    .venv/bin/python bench/loader_bench.py --quick    # 200,000 events, ~15 s
    .venv/bin/python bench/loader_bench.py --events 500000 --reps 2 --json results.json
    .venv/bin/python bench/loader_bench.py --profile /tmp/worker.prof   # and cProfile a worker
    git archive main | tar -x -C /tmp/old   # then, against that older tree:
    .venv/bin/python bench/loader_bench.py --against /tmp/old

What is started
---------------
As in the other broker benchmarks (``benchlib.py``, next to this file): a ZooKeeper from
Debian's package and ONE broker (broker id 1) on free ports of 127.0.0.1, with configs, logs,
data, the events file and every load's output in a temporary directory under the system's temp
dir (``--tmp-dir``), removed at the end, also on errors, Ctrl-C, SIGTERM and SIGHUP (``--keep``
keeps it).  One topic with ``--partitions`` partitions (6) is created with CreateTopics v4.

The events
----------
``--events`` (1,000,000; 200,000 with ``--quick``) JSON access-log events of about 310 bytes
(ts as ISO-8601 text with milliseconds and ``Z``, client_ip, method, path, status, bytes,
referrer, user_agent, latency_ms), pseudo-random from a fixed seed (``--seed``), their times
spread evenly over the three hours before the run (so every partition spans 3-4 event hours,
one Parquet file each).  They are written once to a newline-delimited file in the temporary
directory (for the baseline) and produced once with headrace's ``Producer`` (``--compression``,
lz4; event i to partition i % partitions, so every partition is in time order); the log end
offsets are checked.  Producing is timed too, for information.  (Not confluent-kafka: librdkafka
enables lz4 only for brokers that answer FindCoordinator, so to this broker it sends lz4
batches uncompressed.)

What is measured
----------------
1. **Loader**: ``headrace load --workers N --format json --time-field ts --until-caught-up``
   as a child process (``python -m headrace.cli``), for N = 1 and N = 2 (``--workers``), every
   load with a fresh group and a fresh output directory (``--to DIR``, local disk), all other
   settings the loader's defaults (snappy, 1,000,000 rows / 256 MiB a file, fsync and rename per
   file).  Timed from starting the process until it exits, so the rate includes Python's
   start-up, imports, ZooKeeper, planning, spawning the workers and joining the group.  The
   summary line the loader prints gives the time inside ``loaders.run.load`` (from the summary:
   ``summary events/s``).  Right after each load the same command runs again with the same
   group, which must load 0 events: its wall time is the fixed cost of a run, and
   ``N / (wall - no-op wall)`` estimates the loader's rate once it is running
   (``net events/s``).  Each output is checked: the loader's exit status 0 and its summary
   count, then, read back from the Parquet files, every offset of every partition exactly once,
   no quarantined records and no dead letters.
2. **Baseline**, same run, same machine: ``pyarrow.json.read_json`` of the events file (from
   the page cache) and ``pyarrow.parquet.write_table`` of the table to ONE Parquet file
   (snappy, as the loader) in the temporary directory, then ``fsync`` of that file (the loader
   fsyncs each file too), in this process, with pyarrow's defaults (``use_threads=True``: it
   parses on every CPU).  An informational row does the same with ``use_threads=False``.

Each of these runs ``--reps`` times (3), rotating their order each rep; the tables show each
one's best run and the median (``events/s(med)``); ``ratio`` is the loader's best over the
baseline's best, ``ratio(med)`` the median of the per-rep ratios (loader over the baseline of
the same rep).

Targets: the loader with 2 workers >= 200,000 events/s and >= 0.6 of the baseline (the
1-worker ratio is reported beside it).  A target is met if the best run meets it; if the median
does not, the verdict says so.  Missed targets are listed at the end.

Diagnostics: CPU over each best run: the loader's processes (CLI and workers, from
``getrusage(RUSAGE_CHILDREN)``) or this process (baseline), the broker's and ZooKeeper's
(``/proc``), the rest of the machine (other processes: the machine may be shared) and the share
of all CPUs busy.  ``--profile PATH``
then runs one more load of the topic in this process - ``loaders.worker.Worker(config).run()``
on a fresh group, after ``make_plan``, writing to local disk - under cProfile, saves the stats
to PATH (read them with ``python -m pstats PATH``) and prints where the worker's time went.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
from benchlib import (
    MB,
    BenchmarkError,
    add_count_args,
    add_output_args,
    add_ratio_targets,
    bench_parser,
    best_run,
    check_count_args,
    collect_broker_log_problems,
    create_topic,
    finish,
    header,
    machine_busy,
    main_in_tmp_dir,
    new_meta,
    print_broker_notes,
    print_table,
    ratio_target_cells,
    running_broker,
    self_cpu,
    signals_ignored,
    stat_cpu,
    step,
)
from repo_root import ROOT

from broker.protocol.errors import KafkaError
from consumers.cluster import ClusterClient
from consumers.producer import Producer as OurProducer
from headrace.devcluster import BrokerProcess

TOPIC = "access"
TARGET_RATE = 200_000  # events/s, with TARGET_WORKERS workers
TARGET_RATIO = 0.6  # of the baseline, with TARGET_WORKERS workers
TARGET_WORKERS = 2
SPAN_MS = 3 * 3_600_000  # the events' times cover the three hours before the run

BASELINE, BASELINE_1T = "pyarrow", "pyarrow, 1 thread"
ZK_CHROOT = "/headrace-bench"  # where benchlib.running_broker puts the broker


def load_name(workers: int, against: bool = False) -> str:
    name = f"headrace load, {workers} worker{'s' if workers > 1 else ''}"
    return f"{name} (--against)" if against else name


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    quick: bool
    events: int
    partitions: int
    workers: tuple[int, ...]
    reps: int
    compression: str
    noop: bool
    single_thread: bool
    profile: str | None
    seed: int
    against: Path | None


def settings_from(args: argparse.Namespace) -> Settings:
    events = args.events or (200_000 if args.quick else 1_000_000)
    workers = tuple(sorted({int(w) for w in args.workers.split(",") if w.strip()}))
    return Settings(
        quick=args.quick,
        events=events,
        partitions=args.partitions,
        workers=workers,
        reps=args.reps,
        compression=args.compression,
        noop=not args.no_noop,
        single_thread=not args.no_single_thread,
        profile=args.profile,
        seed=args.seed,
        against=Path(args.against).resolve() if args.against else None,
    )


# --- the events ----------------------------------------------------------------------------

METHODS = ["GET"] * 80 + ["POST"] * 12 + ["PUT"] * 3 + ["HEAD"] * 3 + ["DELETE"] * 2
STATUSES = [200] * 84 + [304] * 6 + [301] * 2 + [302] * 2 + [404] * 4 + [500] + [503]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36",
    "curl/8.5.0",
    "python-requests/2.31.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
]
UA_WEIGHTS = [30, 15, 8, 18, 15, 3, 3, 8]
WORDS = [
    "shoes",
    "red+dress",
    "laptop",
    "usb-c+cable",
    "coffee",
    "garden+chair",
    "headphones",
    "desk+lamp",
    "running",
    "backpack",
    "watch",
    "phone+case",
]


def make_paths(rng: random.Random, count: int) -> list[str]:
    """A pool of request paths, some far more common than others (picked with weights)."""
    out = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.35:
            out.append(f"/api/v1/products/{rng.randrange(1, 200_000)}")
        elif kind < 0.5:
            out.append(f"/search?q={rng.choice(WORDS)}&page={rng.randrange(1, 6)}")
        elif kind < 0.65:
            out.append(f"/static/js/app.{rng.getrandbits(32):08x}.js")
        elif kind < 0.8:
            out.append(f"/images/catalog/{rng.randrange(1, 50_000)}/large.jpg")
        elif kind < 0.9:
            out.append(f"/api/v1/users/{rng.randrange(1, 1_000_000)}/cart")
        else:
            out.append(rng.choice(["/", "/login", "/checkout", "/api/v1/health", "/favicon.ico"]))
    return out


def make_referrers(rng: random.Random, paths: list[str]) -> list[str]:
    return (
        ["-"] * 90
        + [
            "https://www.google.com/",
            "https://duckduckgo.com/",
            "https://www.bing.com/search?q=shop",
        ]
        * 5
        + [f"https://shop.example.com{rng.choice(paths)}" for _ in range(50)]
    )


def make_events(count: int, seed: int, end_ms: int) -> list[bytes]:
    """``count`` JSON access-log lines, times evenly over SPAN_MS before ``end_ms``."""
    rng = random.Random(seed)
    ips = [
        f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        for _ in range(20_000)
    ]
    paths = make_paths(rng, 5_000)
    referrers = make_referrers(rng, paths)
    path_weights = [1.0 / (i + 1) for i in range(len(paths))]  # Zipf-like popularity
    k = count
    pick_ip = rng.choices(ips, k=k)
    pick_method = rng.choices(METHODS, k=k)
    pick_path = rng.choices(paths, weights=path_weights, k=k)
    pick_status = rng.choices(STATUSES, k=k)
    pick_ref = rng.choices(referrers, k=k)
    pick_ua = rng.choices(USER_AGENTS, weights=UA_WEIGHTS, k=k)
    start_ms = end_ms - SPAN_MS
    step_ms = SPAN_MS / max(count, 1)
    randrange, expovariate = rng.randrange, rng.expovariate
    events = []
    append = events.append
    last_second, prefix = -1, ""
    for i in range(count):
        ms = start_ms + int(i * step_ms)
        second = ms // 1000
        if second != last_second:
            last_second = second
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        status = pick_status[i]
        size = 0 if status in (304, 301, 302) else randrange(200, 60_000)
        append(
            f'{{"ts":"{prefix}.{ms % 1000:03d}Z","client_ip":"{pick_ip[i]}",'
            f'"method":"{pick_method[i]}","path":"{pick_path[i]}","status":{status},'
            f'"bytes":{size},"referrer":"{pick_ref[i]}","user_agent":"{pick_ua[i]}",'
            f'"latency_ms":{expovariate(1 / 40):.3f}}}'.encode()
        )
    return events


def write_events_file(path: Path, events: list[bytes]) -> int:
    with open(path, "wb") as out:
        out.write(b"\n".join(events))
        out.write(b"\n")
    return path.stat().st_size


# --- the broker side -----------------------------------------------------------------------


def wait_for_leaders(
    cluster: ClusterClient, topic: str, partitions: int, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cluster.refresh([topic], allow_auto_create=False)
        if len(cluster.topics.get(topic, {})) == partitions and all(
            cluster.leader(topic, p) >= 0 for p in range(partitions)
        ):
            return
        time.sleep(0.1)
    raise BenchmarkError(
        f"topic {topic} has no leader for all {partitions} partitions after {timeout} s"
    )


def end_offsets(cluster: ClusterClient, topic: str, partitions: int) -> list[int]:
    return [cluster.list_offset(topic, p, -1) for p in range(partitions)]


def produce_events(
    broker: BrokerProcess, cluster: ClusterClient, events: list[bytes], settings: Settings
) -> dict:
    """Every event once, event i to partition i % partitions, with headrace's Producer
    (librdkafka sends lz4 uncompressed to this broker: it enables lz4 only for brokers that
    answer FindCoordinator); returns timings and checks the log end offsets."""
    n, parts = len(events), settings.partitions
    producer = OurProducer(
        broker.bootstrap,
        acks="all",
        compression=settings.compression,
        linger_ms=20,
        batch_size=512 * 1024,
        buffer_memory=256 * 1024 * 1024,
    )
    finished = False
    try:
        producer.cluster.partitions(TOPIC)  # metadata, untimed
        send = producer.send
        last: dict[int, object] = {}
        start = time.perf_counter()
        for i, value in enumerate(events):
            last[i % parts] = send(TOPIC, value, partition=i % parts)
        left = producer.flush(120 + n / 2000)
        elapsed = time.perf_counter() - start
        finished = left == 0
    finally:
        producer.close(None if finished else 0)
    if left:
        raise BenchmarkError(f"produce: {left} events still undelivered after flush()")
    for p, future in last.items():
        error = future.exception(0)
        if error is not None:
            raise BenchmarkError(f"produce: the last event of partition {p} failed: {error}")
    ends = end_offsets(cluster, TOPIC, parts)
    expected = [n // parts + (1 if p < n % parts else 0) for p in range(parts)]
    if ends != expected:
        raise BenchmarkError(f"produce: log end offsets {ends}, expected {expected}")
    log_bytes = sum(
        f.stat().st_size
        for f in (broker.workdir / f"broker-{broker.broker_id}-logs").glob(f"{TOPIC}-*/*.log")
    )
    return {
        "seconds": elapsed,
        "events_per_s": n / elapsed,
        "end_offsets": ends,
        "log_bytes": log_bytes,
        "compression": settings.compression,
    }


# --- CPU accounting ------------------------------------------------------------------------


def children_cpu() -> float:
    """CPU of the children this process has waited for, and of their waited-for children (the
    loader's CLI process and its worker processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def find_zookeeper_pid(workdir: Path) -> int | None:
    """The pid of the ZooKeeper this process started (benchlib.running_broker does not hand
    it out): our child whose command line names our workdir's zookeeper directory."""
    me, mark = os.getpid(), str(workdir / "zookeeper").encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            if ppid != me:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if mark in f.read():
                    return int(entry)
        except (OSError, ValueError):
            continue
    return None


class Meter:
    """CPU seconds of the broker and ZooKeeper (/proc), this process and its waited-for
    children (getrusage) and the whole machine, between two marks."""

    def __init__(self, broker_pid: int, zookeeper_pid: int | None):
        self.pid = broker_pid
        self.zk_pid = zookeeper_pid

    def mark(self) -> tuple[float, ...]:
        zk = stat_cpu(f"/proc/{self.zk_pid}/stat") if self.zk_pid else 0.0
        return (
            time.perf_counter(),
            stat_cpu(f"/proc/{self.pid}/stat"),
            zk,
            self_cpu(),
            children_cpu(),
            machine_busy(),
        )

    def between(self, a, b, who: str) -> dict:
        wall = b[0] - a[0]
        broker, zk, me, kids, machine = (b[i] - a[i] for i in range(1, 6))
        subject = kids if who == "children" else me
        others = max(0.0, machine - broker - zk - me - kids)
        cpus = os.cpu_count() or 1
        return {
            "wall_s": wall,
            "subject_cpu_s": subject,
            "subject_share": subject / wall,
            "broker_cpu_s": broker,
            "broker_share": broker / wall,
            "zookeeper_cpu_s": zk,
            "zookeeper_share": zk / wall,
            "bench_cpu_s": me if who == "children" else 0.0,
            "other_cpu_s": others,
            "other_share": others / wall,
            "machine_busy_cpu_s": machine,
            "machine_share": machine / wall / cpus,
            "cpus": cpus,
        }


# --- the baseline --------------------------------------------------------------------------


def run_baseline(meter: Meter, events_file: Path, out_dir: Path, n: int, threads: bool) -> dict:
    name = BASELINE if threads else BASELINE_1T
    target = out_dir / f"baseline-{'mt' if threads else '1t'}.parquet"
    read_options = pj.ReadOptions(use_threads=threads)
    before = meter.mark()
    start = time.perf_counter()
    table = pj.read_json(events_file, read_options=read_options)
    read_end = time.perf_counter()
    pq.write_table(table, target, compression="snappy")
    write_end = time.perf_counter()
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    end = time.perf_counter()
    after = meter.mark()
    rows = table.num_rows
    del table
    size = target.stat().st_size
    target.unlink()
    if rows != n:
        raise BenchmarkError(f"{name}: read {rows:,} rows from the events file, expected {n:,}")
    elapsed = end - start
    return {
        "test": name,
        "events": n,
        "seconds": elapsed,
        "events_per_s": n / elapsed,
        "read_s": read_end - start,
        "write_s": write_end - read_end,
        "fsync_s": end - write_end,
        "parquet_bytes": size,
        "files": 1,
        "cpu": meter.between(before, after, "self"),
    }


# --- the loader ----------------------------------------------------------------------------

SUMMARY = re.compile(r"loaded ([\d,]+) events in ([\d.]+) s \(([\d,]+)/s\); (\d+) hour")


def load_command(zookeeper: str, group: str, out: Path, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "headrace.cli",
        "load",
        "--zookeeper",
        zookeeper,
        "--topic",
        TOPIC,
        "--group",
        group,
        "--to",
        str(out),
        "--workers",
        str(workers),
        "--format",
        "json",
        "--time-field",
        "ts",
        "--until-caught-up",
    ]


def run_child(command: list[str], timeout: float, cwd: Path = ROOT) -> tuple[int, str, str, float]:
    """Run ``command`` in its own session (so its workers can be stopped with it) in ``cwd``
    (whose code it runs); returns (exit status, stdout, stderr, seconds from start to exit).
    On a timeout, an error or a signal, the whole process group is stopped."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        with signals_ignored():
            stop_group(proc)
        raise
    return proc.returncode, out, err, time.perf_counter() - start


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the child's process group (the CLI stops its workers before it exits), then
    SIGKILL to the group (the CLI and its workers) if it has not exited within 10 s.  The CLI is
    not reaped before that, so the group's id cannot have been reused."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.communicate(timeout=10)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def parse_summary(name: str, status: int, out: str, err: str) -> tuple[int, float, int]:
    """(events loaded, seconds, hours marked) from the loader's last summary line."""
    match = None
    for found in SUMMARY.finditer(out):
        match = found
    if status != 0 or match is None:
        raise BenchmarkError(
            f"{name}: exit status {status}\nstdout:\n{out[-2000:]}\nstderr:\n{err[-3000:]}"
        )
    return int(match.group(1).replace(",", "")), float(match.group(2)), int(match.group(4))


def check_output(name: str, out: Path, ends: list[int]) -> dict:
    """Every offset of every partition exactly once in the topic's Parquet files, nothing in
    quarantine or dead letters; returns the files' count and bytes."""
    topic_dir = out / TOPIC
    files = sorted(topic_dir.rglob("*.parquet"))
    odd = [f for f in files if "_quarantine" in f.parts or "_dead_letters" in f.parts]
    if odd:
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in odd)
        raise BenchmarkError(
            f"{name}: {rows:,} events in quarantine or dead letters, e.g. {odd[0]}"
        )
    if not files:
        raise BenchmarkError(f"{name}: no Parquet files under {topic_dir}")
    table = pa.concat_tables(pq.read_table(f, columns=["_partition", "_offset"]) for f in files)
    stats = (
        table.group_by("_partition")
        .aggregate(
            [
                ("_offset", "count"),
                ("_offset", "count_distinct"),
                ("_offset", "min"),
                ("_offset", "max"),
            ]
        )
        .to_pylist()
    )
    got = {s["_partition"]: s for s in stats}
    for p, end in enumerate(ends):
        s = got.pop(p, None)
        if end == 0 and s is None:
            continue
        if (
            s is None
            or s["_offset_count"] != end
            or s["_offset_count_distinct"] != end
            or s["_offset_min"] != 0
            or s["_offset_max"] != end - 1
        ):
            raise BenchmarkError(
                f"{name}: partition {p} holds {s} in the Parquet files, "
                f"expected offsets 0..{end - 1} once each"
            )
    if got:
        raise BenchmarkError(f"{name}: rows of unknown partitions {sorted(got)}")
    return {
        "files": len(files),
        "parquet_bytes": sum(f.stat().st_size for f in files),
        "success_markers": len(list(topic_dir.rglob("_SUCCESS"))),
    }


def run_load(
    meter: Meter,
    zookeeper: str,
    workdir: Path,
    workers: int,
    rep: int,
    ends: list[int],
    settings: Settings,
    source: Path | None = None,
) -> dict:
    """One load (and its no-op rerun) with the code of ``source`` (default: this tree's)."""
    name = load_name(workers, source is not None)
    cwd = source or ROOT
    n = sum(ends)
    group = f"bench-{workers}w-{rep}-{os.getpid()}-{time.monotonic_ns() % 1_000_000}"
    out = workdir / f"out-{group}"
    timeout = 300 + n / 5_000
    before = meter.mark()
    status, stdout, stderr, wall = run_child(
        load_command(zookeeper, group, out, workers), timeout, cwd
    )
    after = meter.mark()
    loaded, summary_s, marked = parse_summary(name, status, stdout, stderr)
    if loaded != n:
        raise BenchmarkError(
            f"{name}: the loader says it loaded {loaded:,} events, expected {n:,}\n{stdout[-2000:]}"
        )
    result = {
        "test": name,
        "workers": workers,
        "against": source is not None,
        "events": n,
        "group": group,
        "seconds": wall,
        "events_per_s": n / wall,
        "summary_s": summary_s,
        "summary_events_per_s": n / summary_s if summary_s > 0 else None,
        "startup_s": wall - summary_s,
        "hours_marked": marked,
        "cpu": meter.between(before, after, "children"),
    }
    result.update(check_output(name, out, ends))
    if settings.noop:
        status, stdout, stderr, noop_wall = run_child(
            load_command(zookeeper, group, out, workers), timeout, cwd
        )
        again, noop_summary_s, _ = parse_summary(f"{name} (no-op rerun)", status, stdout, stderr)
        if again != 0:
            raise BenchmarkError(
                f"{name}: the rerun with the same group loaded {again:,} events again, expected 0"
            )
        result["noop_s"] = noop_wall
        result["noop_summary_s"] = noop_summary_s
        net = wall - noop_wall
        result["net_events_per_s"] = n / net if net > 0 else None
    shutil.rmtree(out, ignore_errors=True)
    return result


# --- profiling -----------------------------------------------------------------------------

# (label, module file suffix, function name): inclusive time of these in the profile.
PROFILE_PARTS = [
    ("Worker.run (everything)", "loaders/worker.py", "run"),
    ("  GroupConsumer.poll: fetch + decode", "consumers/group.py", "poll"),
    ("    Consumer._fetch_from (wait + receive)", "consumers/consumer.py", "_fetch_from"),
    ("    BrokerConnection.receive", "consumers/client.py", "receive"),
    ("    decode_value_block (JSON lines)", "loaders/blocks.py", "decode_value_block"),
    ("      lz4 decompress", "broker/protocol/compression.py", "decompress"),
    ("      record_fields (numpy)", "broker/protocol/columns.py", "record_fields"),
    ("        guess_spans (record starts)", "broker/protocol/columns.py", "guess_spans"),
    ("      _join (one buffer, blanks)", "loaders/blocks.py", "_join"),
    ("      _decode_records (Python varint loop)", "broker/protocol/records.py", "_decode_records"),
    ("  Worker._feed_all", "loaders/worker.py", "_feed_all"),
    ("    Converter.convert", "loaders/convert.py", "convert"),
    ("      Converter._json", "loaders/convert.py", "_json"),
    ("        Converter._fast (pyarrow.json.read_json)", "loaders/convert.py", "_fast"),
    ("      epoch_ms_of (ts column)", "loaders/eventtime.py", "epoch_ms_of"),
    ("    Chunk.take", "loaders/chunk.py", "take"),
    ("      Chunk._materialise", "loaders/chunk.py", "_materialise"),
    ("  Worker._cut: publish + commit", "loaders/worker.py", "_cut"),
    ("    Chunk.files (concat_tables)", "loaders/chunk.py", "files"),
    ("    parquet_bytes (write_table)", "loaders/chunk.py", "parquet_bytes"),
    ("    Storage.publish (write, fsync, rename)", "loaders/storage.py", "publish"),
    ("    commit_offset (ZooKeeper)", "loaders/registry.py", "commit_offset"),
]


def profile_worker(zookeeper: str, workdir: Path, ends: list[int], path: str) -> dict:
    """One worker in this process under cProfile: plan, then ``Worker(config).run()``."""
    from kazoo.client import KazooClient

    from loaders.config import LoaderConfig
    from loaders.registry import make_plan
    from loaders.report import Stats
    from loaders.worker import Worker

    n = sum(ends)
    group = f"bench-profile-{os.getpid()}"
    out = workdir / f"out-{group}"
    config = LoaderConfig(
        zookeeper=zookeeper,
        topics=[TOPIC],
        group=group,
        url=str(out),
        workers=1,
        format="json",
        time_field="ts",
    )
    zk = KazooClient(hosts=zookeeper, timeout=10)
    zk.start(timeout=15)
    cluster = ClusterClient(zookeeper=zookeeper, client_id="loader-bench")
    try:
        make_plan(zk, cluster, group, [TOPIC])
    finally:
        cluster.close()
        zk.stop()
        zk.close()
    stats = Stats()
    worker = Worker(config, report=stats.add)
    profiler = cProfile.Profile()
    gc_time = {"s": 0.0, "started": 0.0, "collections": [0, 0, 0]}

    def on_gc(phase, info):  # the collector's own time, which cProfile cannot see
        if phase == "start":
            gc_time["started"] = time.perf_counter()
        else:
            gc_time["s"] += time.perf_counter() - gc_time["started"]
            gc_time["collections"][info["generation"]] += 1

    gc.collect()
    gc.callbacks.append(on_gc)
    cpu0, start = time.process_time(), time.perf_counter()
    profiler.enable()
    try:
        worker.run()
    finally:
        profiler.disable()
        gc.callbacks.remove(on_gc)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    profiler.dump_stats(path)
    loaded = stats.total("rows") + stats.total("dead_letters")
    if loaded != n:
        raise BenchmarkError(f"profiled worker: loaded {loaded:,} events, expected {n:,}")
    check_output("profiled worker", out, ends)
    shutil.rmtree(out, ignore_errors=True)
    return {
        "path": path,
        "wall_s": wall,
        "cpu_s": cpu,
        "events": n,
        "events_per_s": n / wall,
        "group": group,
        "gc_s": gc_time["s"],
        "gc_collections": gc_time["collections"],
    }


def print_profile(info: dict, top: int = 25) -> None:
    stats = pstats.Stats(info["path"])
    parts = []
    for label, suffix, func in PROFILE_PARTS:
        total = calls = 0.0
        for (filename, _line, name), (_cc, nc, _tt, ct, _callers) in stats.stats.items():
            if name == func and filename.endswith(suffix):
                total += ct
                calls += nc
        parts.append(
            [label, f"{calls:,.0f}", f"{total:.2f}", f"{100 * total / info['wall_s']:.0f} %"]
        )
    parts.append(
        [
            "garbage collector (inside the above)",
            "{:,}/{:,}/{:,}".format(*info["gc_collections"]),
            f"{info['gc_s']:.2f}",
            f"{100 * info['gc_s'] / info['wall_s']:.0f} %",
        ]
    )
    print_table(
        f"Profile of one worker in this process ({info['events']:,} events, "
        f"{info['wall_s']:.1f} s wall, {info['cpu_s']:.1f} s CPU, "
        f"{info['events_per_s']:,.0f} events/s under cProfile): inclusive wall time",
        ["part", "calls", "s", "of run"],
        parts,
    )
    text = io.StringIO()
    pstats.Stats(info["path"], stream=text).sort_stats("tottime").print_stats(top)
    lines = text.getvalue().splitlines()
    first = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    print(f"\nTop {top} functions by own time (python -m pstats {info['path']} for more):")
    for line in lines[first:]:
        if line.strip():
            print(f"  {line.rstrip()}")


# --- summary -------------------------------------------------------------------------------


def summarize(runs: list[dict]) -> dict:
    return best_run(runs, "events_per_s")


def add_ratios(row: dict, baseline: dict) -> None:
    if row.get("workers") == TARGET_WORKERS and not row.get("against"):
        add_ratio_targets(row, baseline, "events_per_s", TARGET_RATE, TARGET_RATIO)
    else:
        pairs = [
            a["events_per_s"] / b["events_per_s"] for a, b in zip(row["runs"], baseline["runs"])
        ]
        row["ratio"] = row["events_per_s"] / baseline["events_per_s"]
        row["ratio_median"] = statistics.median(pairs)


def print_results(rows_in: list[dict], event_bytes: float) -> None:
    rows = []
    for r in rows_in:
        rows.append(
            [
                r["test"],
                f"{r['events']:,}",
                f"{r['seconds']:.2f}",
                f"{r['events_per_s']:,.0f}",
                f"{r['events_per_s_median']:,.0f}",
                f"{r['events_per_s'] * event_bytes / MB:,.1f}",
                *ratio_target_cells(r, "events_per_s"),
            ]
        )
    reps = rows_in[0]["reps"]
    print_table(
        f"Results (best of {reps} runs, events/s(med) the median; loader rows from process start "
        "to exit; ratio = best over the pyarrow baseline's best, ratio(med) = median of per-rep "
        "ratios)",
        [
            "test",
            "events",
            "s",
            "events/s",
            "events/s(med)",
            "input MB/s",
            "ratio",
            "ratio(med)",
            "target events/s",
            "target ratio",
        ],
        rows,
    )


def print_against(rows_in: list[dict]) -> None:
    """This tree's loader over the --against tree's, per worker count (best and median of the
    per-rep ratios)."""
    theirs = {r["workers"]: r for r in rows_in if r.get("against")}
    rows = []
    for r in rows_in:
        other = theirs.get(r.get("workers"))
        if other is None or r.get("against"):
            continue
        pairs = [a["events_per_s"] / b["events_per_s"] for a, b in zip(r["runs"], other["runs"])]
        cpu = [
            a["cpu"]["subject_cpu_s"] / b["cpu"]["subject_cpu_s"]
            for a, b in zip(r["runs"], other["runs"])
        ]
        rows.append(
            [
                r["test"],
                f"{r['events_per_s'] / other['events_per_s']:.2f}",
                f"{statistics.median(pairs):.2f}",
                f"{statistics.median(cpu):.2f}",
            ]
        )
    if rows:
        print_table(
            "This tree's loader over the --against tree's (events/s: best over best, "
            "median of per-rep ratios; CPU s: median of per-rep ratios, lower is better)",
            ["test", "speed", "speed(med)", "CPU"],
            rows,
        )


def print_runs(rows_in: list[dict]) -> None:
    rows = [
        [r["test"], "  ".join(f"{run['events_per_s']:,.0f}" for run in r["runs"])] for r in rows_in
    ]
    print_table("Runs (events/s in rep order)", ["test", "runs"], rows)


def print_loads(rows_in: list[dict]) -> None:
    rows = []
    for r in rows_in:
        if "workers" not in r:
            continue
        for i, run in enumerate(r["runs"]):
            net = run.get("net_events_per_s")
            rows.append(
                [
                    r["test"],
                    str(i + 1),
                    f"{run['seconds']:.2f}",
                    f"{run['summary_s']:.1f}",
                    f"{run['startup_s']:.2f}",
                    f"{run['noop_s']:.2f}" if "noop_s" in run else "-",
                    f"{run['events_per_s']:,.0f}",
                    f"{run['summary_events_per_s']:,.0f}" if run["summary_events_per_s"] else "-",
                    f"{net:,.0f}" if net else "-",
                    str(run["files"]),
                    f"{run['parquet_bytes'] / MB:,.1f}",
                    str(run["hours_marked"]),
                ]
            )
    print_table(
        "Loads (wall: process start to exit; load(): the loader's own summary time, "
        "from inside loaders.run.load; outside: interpreter start, imports, exit; no-op: the same "
        "command again, nothing left to load; net = events / (wall - no-op wall))",
        [
            "test",
            "rep",
            "wall s",
            "load() s",
            "outside s",
            "no-op s",
            "events/s",
            "summary events/s",
            "net events/s",
            "files",
            "Parquet MB",
            "_SUCCESS",
        ],
        rows,
    )


def print_baselines(rows_in: list[dict]) -> None:
    rows = []
    for r in rows_in:
        if "workers" in r:
            continue
        for i, run in enumerate(r["runs"]):
            rows.append(
                [
                    r["test"],
                    str(i + 1),
                    f"{run['seconds']:.2f}",
                    f"{run['read_s']:.2f}",
                    f"{run['write_s']:.2f}",
                    f"{run['fsync_s']:.2f}",
                    f"{run['events_per_s']:,.0f}",
                    f"{run['parquet_bytes'] / MB:,.1f}",
                ]
            )
    print_table(
        "Baseline runs (read_json, write_table, fsync)",
        ["test", "rep", "s", "read s", "write s", "fsync s", "events/s", "Parquet MB"],
        rows,
    )


def print_cpu(rows_in: list[dict]) -> None:
    rows = []
    for r in rows_in:
        c = r["cpu"]
        rows.append(
            [
                r["test"],
                f"{c['wall_s']:.2f}",
                f"{c['subject_cpu_s']:.2f}",
                f"{100 * c['subject_share']:.0f} %",
                f"{c['broker_cpu_s']:.2f}",
                f"{100 * c['broker_share']:.0f} %",
                f"{100 * c['zookeeper_share']:.0f} %",
                f"{100 * c['other_share']:.0f} %",
                f"{100 * c['machine_share']:.0f} %",
            ]
        )
    print_table(
        "CPU over each best run (share of one core of its wall time; loader: the CLI process "
        "and its workers; pyarrow: this process; others: any other process on the machine; "
        "machine: share of all CPUs busy)",
        [
            "test",
            "wall s",
            "CPU s",
            "CPU",
            "broker CPU s",
            "broker",
            "ZooKeeper",
            "others",
            "machine",
        ],
        rows,
    )


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__, "200,000 events")
    add_count_args(
        parser,
        "--events",
        "events to produce and load (default 1,000,000; quick 200,000)",
        "runs of each load and baseline, rotating their order (default 3)",
    )
    parser.add_argument(
        "--partitions", type=int, default=6, metavar="N", help="partitions of the topic (default 6)"
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        metavar="LIST",
        help="loader worker counts to time, comma-separated (default 1,2)",
    )
    parser.add_argument(
        "--compression",
        default="lz4",
        choices=["none", "gzip", "snappy", "lz4", "zstd"],
        help="the producer's compression (default lz4)",
    )
    parser.add_argument(
        "--no-noop",
        action="store_true",
        help="skip the no-op rerun after each load (no fixed-cost estimate)",
    )
    parser.add_argument(
        "--no-single-thread",
        action="store_true",
        help="skip the informational single-threaded pyarrow baseline",
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="also run one worker in this process under cProfile, save the "
        "stats to PATH and print a summary",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the events (default 7)")
    parser.add_argument(
        "--against",
        metavar="DIR",
        help="also time the loader of another source tree (an older commit: "
        "git archive REV | tar -x -C DIR), in the same reps, as rows "
        "marked (--against); see the ours/theirs table",
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    check_count_args(parser, args, "events")
    if args.partitions < 1:
        parser.error("--partitions must be at least 1")
    try:
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error("--workers wants a comma-separated list of numbers")
    if not workers or min(workers) < 1:
        parser.error("--workers wants numbers of 1 or more")
    if args.against and not (Path(args.against) / "loaders" / "run.py").is_file():
        parser.error(f"--against {args.against}: not a headrace source tree (no loaders/run.py)")
    return args


def run(settings: Settings, workdir: Path, meta: dict) -> dict:
    results: dict = {"meta": meta}
    n = settings.events
    events = step(
        f"making {n:,} events",
        lambda: make_events(n, settings.seed, int(time.time() * 1000) - 60_000),
    )
    events_file = workdir / "events.ndjson"
    file_bytes = step(
        f"writing them to {events_file.name}", lambda: write_events_file(events_file, events)
    )
    meta["events_file_bytes"] = file_bytes
    meta["event_bytes_mean"] = (file_bytes - n) / n
    meta["event_example"] = events[0].decode()
    print(f"  mean event {meta['event_bytes_mean']:.0f} bytes, e.g. {meta['event_example']}")
    with running_broker(workdir, meta) as broker:
        zookeeper = f"{broker.zookeeper_connect}"
        if not zookeeper.endswith(ZK_CHROOT):
            raise BenchmarkError(f"unexpected ZooKeeper connect string {zookeeper}")
        cluster = ClusterClient(broker.bootstrap, client_id="loader-bench")
        try:

            def make_topic():
                create_topic(broker.port, TOPIC, settings.partitions)
                wait_for_leaders(cluster, TOPIC, settings.partitions)

            step(f"creating topic {TOPIC} with {settings.partitions} partitions", make_topic)
            produced = step(
                f"producing {n:,} events ({settings.compression})",
                lambda: produce_events(broker, cluster, events, settings),
            )
        finally:
            cluster.close()
        events.clear()  # the memory, before the loads
        results["produce"] = produced
        print(
            f"  produced {produced['events_per_s']:,.0f} events/s; "
            f"{produced['log_bytes'] / MB:,.1f} MB in the broker's log "
            f"({file_bytes / produced['log_bytes']:.1f} x smaller than the events)"
        )
        ends = produced["end_offsets"]
        started_log_bytes = broker.log_path.stat().st_size
        zk_pid = find_zookeeper_pid(workdir)
        meta["zookeeper_pid"] = zk_pid
        meter = Meter(broker.process.pid, zk_pid)

        tests: list[tuple[str, object]] = [
            (BASELINE, lambda rep: run_baseline(meter, events_file, workdir, n, True))
        ]
        if settings.single_thread:
            tests.append(
                (BASELINE_1T, lambda rep: run_baseline(meter, events_file, workdir, n, False))
            )
        for w in settings.workers:
            tests.append(
                (
                    load_name(w),
                    lambda rep, w=w: run_load(meter, zookeeper, workdir, w, rep, ends, settings),
                )
            )
            if settings.against:
                tests.append(
                    (
                        load_name(w, True),
                        lambda rep, w=w: run_load(
                            meter, zookeeper, workdir, w, rep, ends, settings, settings.against
                        ),
                    )
                )
        runs: dict[str, list[dict]] = {name: [] for name, _ in tests}
        with open(events_file, "rb") as f:  # into the page cache (it should be), untimed
            while f.read(16 * 1024 * 1024):
                pass
        for rep in range(settings.reps):
            shift = rep % len(tests)
            order = tests[shift:] + tests[:shift]
            for name, fn in order:
                result = step(f"rep {rep + 1}/{settings.reps}: {name}", partial(fn, rep))
                runs[name].append(result)
                print(f"    {result['events_per_s']:,.0f} events/s")
        rows = [summarize(runs[name]) for name, _ in tests]
        baseline = rows[0]
        for row in rows[1:]:
            if "workers" in row:
                add_ratios(row, baseline)
        results["tests"] = rows
        if settings.profile:
            results["profile"] = step(
                "profiling one worker in this process (cProfile)",
                lambda: profile_worker(zookeeper, workdir, ends, settings.profile),
            )
        collect_broker_log_problems(broker, started_log_bytes, meta)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)

    def start(workdir: Path) -> dict:
        meta = new_meta(
            settings.quick,
            workdir,
            pyarrow=pa.__version__,
            events=settings.events,
            partitions=settings.partitions,
            workers=list(settings.workers),
            reps=settings.reps,
            producer_compression=settings.compression,
        )
        print(f"{header('loader', meta)}, pyarrow {meta['pyarrow']}")
        print(
            f"One broker + ZooKeeper on 127.0.0.1, data and loader output in {workdir}.  "
            "MB = 10^6 bytes."
        )
        return run(settings, workdir, meta)

    errors = (
        BenchmarkError,
        KafkaError,
        RuntimeError,
        OSError,
        subprocess.TimeoutExpired,
        pa.ArrowException,
    )
    return main_in_tmp_dir(
        args, "loader-bench-", start, errors, lambda results: report(results, args.json)
    )


def report(results: dict, json_path: str | None) -> None:
    meta, rows = results["meta"], results["tests"]
    print_results(rows, meta["event_bytes_mean"])
    print_runs(rows)
    print_loads(rows)
    print_baselines(rows)
    print_cpu(rows)
    print_against(rows)
    if "profile" in results:
        print_profile(results["profile"])
    missed = []
    for r in rows:
        if r.get("target_met") is False:
            missed.append(
                f"{r['test']} {r['events_per_s']:,.0f} events/s (>= {r['target_events_per_s']:,})"
            )
        if r.get("target_ratio_met") is False:
            missed.append(f"{r['test']} {r['ratio']:.3f} of pyarrow (>= {r['target_ratio']:.1f})")
    print_broker_notes(meta, [r["test"] for r in rows if r["cpu"]["other_share"] >= 0.25])
    finish(results, missed, "; ", json_path)


if __name__ == "__main__":
    sys.exit(main())
