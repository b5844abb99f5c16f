"""Pieces the benchmark scripts in this folder share, so that each script holds only its tests.

What is here:

* units and constants (``MB``, ``MiB``, ``VALUE_BYTES``, ``BROKER_ID``, ``SATURATED``) and
  ``BenchmarkError``, raised when a check of the results fails;
* timing and output helpers: ``gc_paused``, ``step`` (a progress line with its duration),
  ``print_table``, ``platform_meta`` / ``new_meta`` (what a run records about itself) /
  ``header`` (the first line every script prints), ``finish`` (the "Targets missed" line, the
  total time and the ``--json`` file), ``best_run`` (the fastest of a test's runs and their
  median), ``add_ratio_targets``, ``verdict`` and ``ratio_target_cells`` (the cells they make);
* arguments: ``bench_parser`` (description and ``--quick``), ``add_count_args`` /
  ``check_count_args`` (``--messages`` or ``--events``, and ``--reps``), ``add_output_args``
  (``--json``, ``--keep``, ``--tmp-dir``);
* clean-up: ``raise_system_exit`` and ``exit_on_signals`` (so that SIGTERM / SIGHUP / Ctrl-C
  run the ``finally`` blocks), ``signals_ignored`` (no second signal cuts a clean-up short),
  ``run_cleaning_up`` (runs a benchmark in a temporary directory and removes it afterwards),
  ``main_in_tmp_dir`` (both, then the report, for a script's ``main``);
* CPU accounting from ``/proc`` and ``getrusage``: ``stat_cpu``, ``machine_busy``,
  ``self_cpu``, ``CpuMark`` and ``CpuMeter`` (the broker's process and reactor thread, this
  process, optionally this thread, and the rest of the machine), ``machine_bottleneck``,
  ``cpu_headers`` / ``cpu_cells`` (a CPU table's columns);
* ``LoopbackReceiver``: raw loopback TCP to a child process, the baseline of transfers;
* one real broker: ``running_broker`` (ZooKeeper + broker 1 on free ports of 127.0.0.1),
  ``create_topics`` / ``create_topic`` / ``wait_for_leader``, ``log_end_offset``,
  ``log_stats`` / ``check_log`` (what the partition's segment files hold), ``payload``;
* timed client runs: ``Timed``, ``rdkafka_produce_timed`` and ``consume_timed`` (the loops
  of confluent-kafka's produce and of a consume), ``rdkafka_consume_timed`` (confluent-kafka's
  consumer in that loop), ``ours_produce_timed`` (our Producer's), ``check_delivery`` and
  ``close_rdkafka_producer`` (the end of a produce run), ``collect_broker_log_problems`` /
  ``print_broker_notes`` (warnings in the broker's log).

The scripts are run as ``python bench/<name>.py``, which puts this folder on ``sys.path``;
importing this module first (``repo_root``) puts the repository root before an installed
headrace.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from itertools import cycle, islice, repeat
from pathlib import Path

import repo_root  # noqa: F401  (this tree's code, not an installed one)

from broker.protocol.errors import KafkaError
from broker.protocol.records import split_batches
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection
from headrace.devcluster import BrokerProcess, ZooKeeperProcess, free_port
from headrace.topics import create_topic_simple

MB = 1_000_000
MiB = 1 << 20
VALUE_BYTES = 200
BROKER_ID = 1

STARTED = time.perf_counter()  # about when the script started: it imports this module first
SATURATED = 0.85  # a share of one core above which a single-threaded side counts as saturated


class BenchmarkError(RuntimeError):
    """A check of the results failed (lost messages, wrong sizes, wrong batching): the numbers
    would be meaningless."""


# --- timing and output ---------------------------------------------------------------------


@contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def step(text: str, fn: Callable[[], object]):
    print(f"  {text} ...", end="", flush=True)
    start = time.perf_counter()
    try:
        value = fn()
    except BaseException:
        print(" failed", flush=True)
        raise
    print(f" {time.perf_counter() - start:.1f} s", flush=True)
    return value


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    """Columns padded to their widest cell; the first left-aligned, the others right."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def format_row(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        )

    print(f"\n{title}")
    header = format_row(headers)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(format_row(row))


def platform_meta() -> dict:
    """What every script records about the machine it ran on."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }


def new_meta(quick: bool, workdir: Path, **facts) -> dict:
    """What a script records about its run: the mode, the machine (``platform_meta``), the
    script's own ``facts`` and its temporary directory."""
    return {
        "mode": "quick" if quick else "default",
        **platform_meta(),
        **facts,
        "tmp_dir": str(workdir),
    }


def header(name: str, meta: dict) -> str:
    """The start of the first line every script prints."""
    return (
        f"headrace {name} benchmark ({meta['mode']} mode): Python {meta['python']} on "
        f"{meta['machine']}, {meta['cpus']} CPUs, load {meta['load_average_at_start'][0]:.2f}"
    )


def finish(results: dict, missed: list[str], separator: str, json_path: str | None) -> None:
    """The last lines: missed targets and the total time (recorded as the meta's ``wall_s``);
    then the JSON file, if asked for."""
    meta = results["meta"]
    meta["wall_s"] = time.perf_counter() - STARTED
    print(
        f"\nTargets missed: {separator.join(missed) if missed else 'none'}.  "
        f"Total time {meta['wall_s']:.1f} s."
    )
    if json_path:
        with open(json_path, "w") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
        print(f"JSON results written to {json_path}")


# --- signals and clean-up ------------------------------------------------------------------


def raise_system_exit(signum, _frame):
    raise SystemExit(128 + signum)


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP raise SystemExit and Ctrl-C KeyboardInterrupt, so clean-up runs."""
    signal.signal(signal.SIGTERM, raise_system_exit)
    signal.signal(signal.SIGHUP, raise_system_exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored


@contextmanager
def signals_ignored() -> Iterator[None]:
    """No second Ctrl-C or SIGTERM may cut the clean-up short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def add_output_args(parser) -> None:
    """--json, --keep and --tmp-dir, as the broker and client benchmarks take them."""
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (configs, broker log, data)",
    )
    parser.add_argument(
        "--tmp-dir",
        metavar="DIR",
        default=tempfile.gettempdir(),
        help="where to make the temporary directory (default: the system's)",
    )


def run_cleaning_up(
    run: Callable[[], dict], workdir: Path, keep: bool, errors: tuple[type[BaseException], ...]
) -> dict | int:
    """``run()``'s results, or the exit code after a failure (``errors``) or Ctrl-C; the
    temporary directory ``workdir`` is removed in any case unless ``keep``."""
    try:
        return run()
    except KeyboardInterrupt:
        print("\ninterrupted; broker and ZooKeeper stopped", file=sys.stderr)
        return 130
    except errors as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        if not keep:
            print("(run with --keep to keep the broker's log)", file=sys.stderr)
        return 1
    finally:
        with signals_ignored():
            if keep:
                print(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)


def main_in_tmp_dir(
    args,
    prefix: str,
    run: Callable[[Path], dict],
    errors: tuple[type[BaseException], ...] = (BenchmarkError, RuntimeError, OSError),
    report: Callable[[dict], None] | None = None,
) -> int:
    """The end of a script's ``main``: signals raise (``exit_on_signals``), ``run(workdir)``
    gets a fresh directory under ``--tmp-dir`` that is removed afterwards (unless ``--keep``),
    then ``report(results)`` prints what it measured; returns the exit code."""
    exit_on_signals()
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=Path(args.tmp_dir).resolve()))
    outcome = run_cleaning_up(lambda: run(workdir), workdir, args.keep, errors)
    if isinstance(outcome, int):
        return outcome
    if report is not None:
        report(outcome)
    return 0


def bench_parser(doc: str, quick: str | None = None) -> argparse.ArgumentParser:
    """A script's parser, described by its docstring's first paragraph; with ``--quick`` (its
    help text ``quick``) if given."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    return parser


def sized_parser(doc: str, quick: str, **sizes: str) -> argparse.ArgumentParser:
    """``bench_parser`` with ``--messages`` (per produce run), one ``--NAME N`` per keyword of
    ``sizes`` (``catchup_mb`` gives ``--catchup-mb``; the value is its help text) and
    ``--reps``; each 0 unless given, meaning the mode's default."""
    parser = bench_parser(doc, quick)
    parser.add_argument("--messages", type=int, default=0, metavar="N", help="per produce run")
    for name, text in sizes.items():
        option = f"--{name.replace('_', '-')}"
        parser.add_argument(option, type=int, default=0, metavar="N", help=text)
    parser.add_argument("--reps", type=int, default=0, metavar="N", help="repetitions of each part")
    return parser


def with_meta(meta: dict, results: dict, json_path: str | None) -> dict:
    """A run's ``results`` under its ``meta``, which gets the load average at the end and
    where the report's ``finish`` is to write the JSON (``json_path``, popped there)."""
    meta["load_average_at_end"] = os.getloadavg()
    meta["json_path"] = json_path
    return {"meta": meta, **results}


def add_count_args(parser, count: str, count_help: str, reps_help: str) -> None:
    """``count`` (``--messages`` or ``--events``: 0 means the mode's default) and ``--reps``."""
    parser.add_argument(count, type=int, default=0, metavar="N", help=count_help)
    parser.add_argument("--reps", type=int, default=3, metavar="N", help=reps_help)


def check_count_args(parser, args, count: str) -> None:
    """``add_count_args``'s arguments in range, or a usage error."""
    if getattr(args, count) < 0:
        parser.error(f"--{count} must not be negative")
    if args.reps < 1:
        parser.error("--reps must be at least 1")


# --- CPU accounting ------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def stat_cpu(path: str) -> float:
    """utime + stime in seconds from a /proc/.../stat file."""
    with open(path) as f:
        text = f.read()
    fields = text[text.rindex(")") + 2 :].split()  # fields[0] is field 3, "state"
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy, all CPUs (from the "cpu" line of /proc/stat:
    everything but idle and iowait; guest time is already inside user)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread, librdkafka's included
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMark:
    wall: float
    broker: float
    reactor: float
    client: float
    main: float | None  # this thread's CPU time, if the meter tracks it
    machine: float


class CpuMeter:
    """The broker's CPU (/proc: the whole process and its main thread, which runs the reactor),
    this process's (getrusage: all threads), with ``main_thread`` this thread's (thread_time),
    and the machine's, before and after a run.  Marks must be taken on the same thread.

    ``bottleneck(used, *args)`` names what limited a run; ``between`` passes it its ``args``.
    """

    def __init__(self, broker_pid: int, bottleneck: Callable[..., str], main_thread: bool = False):
        self.pid = broker_pid
        self.bottleneck = bottleneck
        self.main_thread = main_thread

    def mark(self) -> CpuMark:
        return CpuMark(
            time.perf_counter(),
            stat_cpu(f"/proc/{self.pid}/stat"),
            stat_cpu(f"/proc/{self.pid}/task/{self.pid}/stat"),
            self_cpu(),
            time.thread_time() if self.main_thread else None,
            machine_busy(),
        )

    def between(self, start: CpuMark, end: CpuMark, *args) -> dict:
        wall = end.wall - start.wall
        used = {
            "wall_s": wall,
            "broker_cpu_s": end.broker - start.broker,
            "broker_reactor_cpu_s": end.reactor - start.reactor,
            "client_cpu_s": end.client - start.client,
        }
        keys = ["broker_cpu", "broker_reactor_cpu", "client_cpu"]
        if self.main_thread:
            used["client_main_cpu_s"] = end.main - start.main
            keys += ["client_main_cpu", "client_other_cpu"]
        used["machine_busy_cpu_s"] = end.machine - start.machine
        if self.main_thread:
            used["client_other_cpu_s"] = max(0.0, used["client_cpu_s"] - used["client_main_cpu_s"])
        # Everything else that ran meanwhile: ZooKeeper, and whatever else shares the machine.
        used["other_cpu_s"] = max(
            0.0, used["machine_busy_cpu_s"] - used["broker_cpu_s"] - used["client_cpu_s"]
        )
        for key in [*keys, "machine_busy_cpu", "other_cpu"]:
            used[f"{key}_share"] = used[f"{key}_s"] / wall if wall > 0 else 0.0
        used["cpus"] = os.cpu_count() or 1
        used["bottleneck"] = self.bottleneck(used, *args)
        return used


def machine_bottleneck(used: dict) -> str:
    """The verdict when neither the broker nor the client saturated a core."""
    if used["machine_busy_cpu_share"] >= SATURATED * used["cpus"]:
        if used["other_cpu_share"] >= 0.25:
            return f"CPUs taken by other processes ({used['other_cpu_share']:.1f} cores)"
        return "all CPUs busy"
    return "neither saturated (waiting on round trips)"


def cpu_headers(main_thread: bool = False) -> list[str]:
    """The headers of ``cpu_cells``."""
    threads = ["main thr.", "other thr."] if main_thread else []
    return [
        "wall s",
        "broker CPU s",
        "broker",
        "reactor thr.",
        "client CPU s",
        "client",
        *threads,
        "others",
        "machine",
        "bottleneck",
    ]


def cpu_cells(c: dict, main_thread: bool = False) -> list[str]:
    """One row of a CPU table from ``CpuMeter.between``: seconds and shares of one core."""
    threads = (
        [f"{100 * c['client_main_cpu_share']:.0f} %", f"{100 * c['client_other_cpu_share']:.0f} %"]
        if main_thread
        else []
    )
    return [
        f"{c['wall_s']:.2f}",
        f"{c['broker_cpu_s']:.2f}",
        f"{100 * c['broker_cpu_share']:.0f} %",
        f"{100 * c['broker_reactor_cpu_share']:.0f} %",
        f"{c['client_cpu_s']:.2f}",
        f"{100 * c['client_cpu_share']:.0f} %",
        *threads,
        f"{100 * c['other_cpu_share']:.0f} %",
        f"{100 * c['machine_busy_cpu_share'] / c['cpus']:.0f} %",
        c["bottleneck"],
    ]


# --- raw loopback TCP, the baseline of network transfers --------------------------------------

RECEIVER = r"""
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
print(server.getsockname()[1], flush=True)
buf = bytearray(1 << 20)
while True:
    conn, _ = server.accept()
    total = 0
    with conn:
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            total += n
    print(total, flush=True)
"""


class LoopbackReceiver:
    """A child process on a free port of 127.0.0.1 that drains each connection it accepts and
    then reports on its stdout how many bytes it got."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "-c", RECEIVER],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.port = int(self.process.stdout.readline())

    def received(self) -> int:
        """Bytes of the next connection, once its sender has shut down its side."""
        return int(self.process.stdout.readline())

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


# --- one real broker -----------------------------------------------------------------------


@contextmanager
def running_broker(
    workdir: Path, meta: dict, overrides: dict[str, str] | None = None
) -> Iterator[BrokerProcess]:
    """ZooKeeper and broker BROKER_ID on free ports (broker properties ``overrides`` on top of
    one partition per topic and no auto-creation), stopped on leaving, whatever happens."""
    zookeeper = ZooKeeperProcess(workdir / "zookeeper", free_port())
    broker: BrokerProcess | None = None
    try:
        # Own sessions: a Ctrl-C reaches only this script, which stops the broker first.
        step(
            f"starting ZooKeeper on 127.0.0.1:{zookeeper.port}",
            lambda: zookeeper.start(timeout=60, detach=True),
        )
        broker = BrokerProcess(
            workdir,
            BROKER_ID,
            f"{zookeeper.connect}/headrace-bench",
            free_port(),
            overrides={
                "num.partitions": "1",
                "auto.create.topics.enable": "false",
                **(overrides or {}),
            },
        )
        step(
            f"starting broker {BROKER_ID} on {broker.bootstrap}",
            lambda: broker.start(timeout=60, detach=True),
        )
        meta["broker_pid"] = broker.process.pid
        yield broker
    finally:
        with signals_ignored():
            if broker is not None:
                broker.stop()
            zookeeper.stop()


def create_topic(port: int, name: str, partitions: int = 1) -> None:
    """CreateTopics, as ``headrace topics create`` sends it; a refusal fails the benchmark."""
    try:
        create_topic_simple(f"127.0.0.1:{port}", name, partitions)
    except KafkaError as exc:
        raise BenchmarkError(f"CreateTopics {name}: {exc!r}") from exc


def wait_for_leader(port: int, topic: str, timeout: float = 20.0) -> None:
    """Until Metadata shows partition 0 of ``topic`` led by our broker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with BrokerConnection("127.0.0.1", port, timeout=10) as conn:
            body = conn.request(
                ApiKey.METADATA, {"topics": [{"name": topic}], "allow_auto_topic_creation": False}
            )
        topics = body["topics"]
        if (
            topics
            and topics[0]["error_code"] == 0
            and any(
                p["partition_index"] == 0 and p["leader_id"] == BROKER_ID
                for p in topics[0]["partitions"]
            )
        ):
            return
        time.sleep(0.05)
    raise BenchmarkError(f"topic {topic} has no leader after {timeout} s")


def create_topics(broker: BrokerProcess, topics: dict[str, list[str]]) -> None:
    """Create every topic named in ``topics`` (one partition each), then wait for leaders."""

    def make_topics():
        for names in topics.values():
            for topic in names:
                create_topic(broker.port, topic)
        for names in topics.values():
            for topic in names:
                wait_for_leader(broker.port, topic)

    step(f"creating {sum(map(len, topics.values()))} one-partition topics", make_topics)


def log_end_offset(port: int, topic: str) -> int:
    """ListOffsets v1 with timestamp -1 (latest) for partition 0."""
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        body = conn.request(
            ApiKey.LIST_OFFSETS,
            {
                "replica_id": -1,
                "topics": [
                    {"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}
                ],
            },
            version=1,
        )
    entry = body["topics"][0]["partitions"][0]
    if entry["error_code"] != 0:
        raise BenchmarkError(f"ListOffsets {topic}: error code {entry['error_code']}")
    return entry["offset"]


def partition_dir(broker: BrokerProcess, topic: str) -> Path:
    return broker.workdir / f"broker-{broker.broker_id}-logs" / f"{topic}-0"


def log_stats(broker: BrokerProcess, topic: str) -> dict:
    """Bytes and record batches in the partition's segment files, and records they hold."""
    directory = partition_dir(broker, topic)
    size = batches = records = 0
    for segment in sorted(directory.glob("*.log")):
        data = segment.read_bytes()
        size += len(data)
        for _position, header in split_batches(data):
            batches += 1
            records += header.record_count
    return {"log_bytes": size, "batches": batches, "records": records}


def check_log(broker: BrokerProcess, name: str, topic: str, count: int) -> dict:
    """``log_stats`` of ``topic``, after checking that it and its log end offset hold
    ``count`` records."""
    end_offset = log_end_offset(broker.port, topic)
    stats = log_stats(broker, topic)
    if end_offset != count or stats["records"] != count:
        raise BenchmarkError(
            f"{name}: log end offset {end_offset}, {stats['records']} records "
            f"in the log, after producing {count}"
        )
    return stats


def payload(seed: int = 7) -> bytes:
    """One pseudo-random (incompressible) 200-byte value, sent as every message."""
    return random.Random(seed).randbytes(VALUE_BYTES)


def close_rdkafka_producer(producer, finished: bool) -> None:
    """After a run: if it did not finish (an error or a signal), drop what is queued; then let
    go of the broker."""
    if not finished:
        producer.purge()
        producer.flush(5)
    close = getattr(producer, "close", None)  # confluent-kafka >= 2.13
    if close is not None:
        close()


@dataclass
class Timed:
    """What a timed run of a client saw: clock readings and CPU marks either side."""

    start: float
    end: float
    before: CpuMark
    after: CpuMark
    loop_end: float = 0.0  # produce: when the last call returned, before flush()
    left: int = 0  # produce: messages flush() left undelivered
    buffer_full: int = 0  # produce: calls that found the local queue full
    calls: int = 0  # consume: fetch calls
    received: int = 0  # consume: messages
    value_bytes: int = 0  # consume: bytes of the values ``take`` touched
    last: object = None  # consume: the last message


def rdkafka_produce_timed(
    producer,
    topic: str,
    value: bytes | Sequence[bytes],
    count: int,
    meter: CpuMeter,
    pause_gc: bool,
    **options,
) -> Timed:
    """``count`` calls of confluent-kafka's ``produce(topic, value, **options)`` and its
    ``flush()``, timed with the garbage collector paused (if ``pause_gc``); a full local queue
    is drained for 5 ms and the call made again, until it is taken.  ``value`` is one value
    for every message, or values taken in turn."""
    produce, poll = producer.produce, producer.poll
    values = repeat(value, count) if isinstance(value, bytes) else islice(cycle(value), count)
    buffer_full = 0
    with gc_paused() if pause_gc else nullcontext():
        before = meter.mark()
        start = time.perf_counter()
        for one in values:
            while True:
                try:
                    produce(topic, one, **options)
                    break
                except BufferError:
                    buffer_full += 1
                    poll(0.005)
        loop_end = time.perf_counter()
        left = producer.flush(120 + count / 2000)
        end = time.perf_counter()
        after = meter.mark()
    return Timed(start, end, before, after, loop_end, left, buffer_full)


def consume_timed(
    label: str,
    count: int,
    meter: CpuMeter,
    pause_gc: bool,
    assign: Callable[[], object],
    fetch: Callable[[], list],
    take: Callable[[list], int],
) -> Timed:
    """From ``assign()``, ``fetch()`` until ``count`` messages arrived, each non-empty list
    handed to ``take`` (which checks it and returns the bytes of the values it touched);
    timed with the garbage collector paused (if ``pause_gc``)."""
    received = calls = value_bytes = 0
    deadline = time.monotonic() + 120 + count / 2000
    with gc_paused() if pause_gc else nullcontext():
        before = meter.mark()
        start = time.perf_counter()
        assign()
        while received < count:
            messages = fetch()
            calls += 1
            if not messages:
                if time.monotonic() > deadline:
                    raise BenchmarkError(
                        f"{label}: only {received:,} of {count:,} messages before the deadline"
                    )
                continue
            value_bytes += take(messages)
            received += len(messages)
        end = time.perf_counter()
        after = meter.mark()
    return Timed(
        start,
        end,
        before,
        after,
        calls=calls,
        received=received,
        value_bytes=value_bytes,
        last=messages[-1] if count else None,
    )


def rdkafka_consume_timed(
    bootstrap: str,
    group: str,
    topic: str,
    label: str,
    count: int,
    meter: CpuMeter,
    pause_gc: bool,
    take: Callable[[list], int],
) -> Timed:
    """``consume_timed`` with confluent-kafka's consumer: partition 0 of ``topic`` assigned
    from offset 0, up to 10,000 messages a ``consume()``; connected before the clock starts.
    ``group`` only because confluent-kafka requires one: it is never subscribed."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        consumer.list_topics(topic, timeout=10)  # connect before timing
        return consume_timed(
            label,
            count,
            meter,
            pause_gc,
            lambda: consumer.assign([TopicPartition(topic, 0, 0)]),
            partial(consumer.consume, 10_000, 1.0),
            take,
        )
    finally:
        consumer.close()


def ours_produce_timed(bootstrap: str, topic: str, count: int, name: str, **options) -> float:
    """Seconds our Producer (``options`` on top of acks=all) takes to deliver ``count``
    200-byte messages to partition 0 of ``topic``, after one warm-up message (metadata,
    connection, producer id); a delivery failure fails the benchmark."""
    from consumers.producer import Producer

    value = payload()
    with Producer(bootstrap_servers=bootstrap, acks="all", **options) as producer:
        producer.send(topic, value, partition=0).result(30)
        start = time.perf_counter()
        futures = [producer.send(topic, value, partition=0) for _ in range(count)]
        left = producer.flush(120)
        elapsed = time.perf_counter() - start
    errors = [f.exception() for f in (futures[0], futures[-1]) if f.exception() is not None]
    check_delivery(name, left, errors)
    return elapsed


def check_delivery(name: str, left: int, errors: list) -> None:
    if left:
        raise BenchmarkError(f"{name}: {left} messages still undelivered after flush()")
    if errors:
        raise BenchmarkError(f"{name}: {len(errors)} delivery errors, first: {errors[0]}")


def collect_broker_log_problems(broker: BrokerProcess, started_log_bytes: int, meta: dict) -> None:
    """Warning and error lines of the broker's log into ``meta``, those logged while starting
    (before ``started_log_bytes``) apart from those logged during the tests.  Call it before
    stopping the broker: its own shutdown logs a warning that is no finding."""
    text = broker.log_path.read_bytes()
    for key, part in (
        ("broker_log_problems_at_start", text[:started_log_bytes]),
        ("broker_log_problems", text[started_log_bytes:]),
    ):
        meta[key] = [
            line
            for line in part.decode(errors="replace").splitlines()
            if " WARNING " in line or " ERROR " in line or "Traceback" in line
        ]


def print_broker_notes(meta: dict, contended: list[str]) -> None:
    """Runs other processes slowed down, and what the broker logged."""
    if contended:
        print(
            f"\nOther processes used a quarter of a core or more during: "
            f"{', '.join(contended)}; those numbers are low, so rerun on an idle machine "
            "before reading much into them."
        )
    at_start = meta.get("broker_log_problems_at_start")
    if at_start:
        print(
            f"\nThe broker logged {len(at_start)} warning/error line(s) while starting "
            f"(before the tests), the first: {at_start[0]}"
        )
    problems = meta.get("broker_log_problems")
    if problems:
        print(f"\nThe broker logged {len(problems)} warning/error line(s) during the tests:")
        for line in problems[:10]:
            print(f"  {line}")


def best_run(runs: list[dict], rate: str, kept: tuple[str, ...] | None = None) -> dict:
    """The fastest of ``runs`` by ``rate``, with how many there were, their median ``rate``,
    and every run (only its ``kept`` keys, if given) under "runs"."""
    best = dict(max(runs, key=lambda r: r[rate]))
    best["reps"] = len(runs)
    best[f"{rate}_median"] = statistics.median(r[rate] for r in runs)
    best["runs"] = runs if kept is None else [{k: r[k] for k in kept} for r in runs]
    return best


def add_ratio_targets(
    ours: dict, theirs: dict, rate: str, target: int, target_ratio: float
) -> None:
    """Ratios of ``ours`` to ``theirs`` (best over best, and the median of the per-rep
    ratios) on the ``rate`` key, and whether the targets were met (by best and by median)."""
    ratios = [a[rate] / b[rate] for a, b in zip(ours["runs"], theirs["runs"])]
    ours["ratio"] = ours[rate] / theirs[rate]
    ours["ratio_median"] = statistics.median(ratios)
    ours[f"target_{rate}"] = target
    ours["target_ratio"] = target_ratio
    ours["target_met"] = ours[rate] >= target
    ours["target_met_median"] = ours[f"{rate}_median"] >= target
    ours["target_ratio_met"] = ours["ratio"] >= target_ratio
    ours["target_ratio_met_median"] = ours["ratio_median"] >= target_ratio


def verdict(met: bool | None, met_median: bool | None, text: str) -> str:
    """A target's line: missed, met by the best run only, or met."""
    if met is None:
        return "-"
    if not met:
        return f"{text}: NO, MISSED"
    if not met_median:
        return f"{text}: yes (best only)"
    return f"{text}: yes"


def ratio_target_cells(r: dict, rate: str) -> list[str]:
    """What ``add_ratio_targets`` left in a row, as its last four cells: the ratio, the median
    ratio, and the verdicts on the ``rate`` target and on the ratio target ("-" where none)."""
    has = "ratio" in r
    return [
        f"{r['ratio']:.3f}" if has else "-",
        f"{r['ratio_median']:.3f}" if has else "-",
        verdict(
            r.get("target_met"), r.get("target_met_median"), f">= {r.get(f'target_{rate}', 0):,}"
        ),
        verdict(
            r.get("target_ratio_met"),
            r.get("target_ratio_met_median"),
            f">= {r.get('target_ratio', 0):.1f}",
        ),
    ]


# --- a cluster of real brokers -------------------------------------------------------------


@contextmanager
def running_cluster(
    workdir: Path, meta: dict, size: int, overrides: dict[str, str] | None = None
) -> Iterator[dict[int, BrokerProcess]]:
    """ZooKeeper and brokers 1..``size`` on free ports (like ``running_broker``), as a dict by
    broker id; every broker still running is stopped on leaving, whatever happens."""
    zookeeper = ZooKeeperProcess(workdir / "zookeeper", free_port())
    brokers: dict[int, BrokerProcess] = {}
    try:
        step(
            f"starting ZooKeeper on 127.0.0.1:{zookeeper.port}",
            lambda: zookeeper.start(timeout=60, detach=True),
        )
        for broker_id in range(1, size + 1):
            broker = BrokerProcess(
                workdir,
                broker_id,
                f"{zookeeper.connect}/headrace-bench",
                free_port(),
                overrides={
                    "num.partitions": "1",
                    "auto.create.topics.enable": "false",
                    **(overrides or {}),
                },
            )
            brokers[broker_id] = broker
            step(
                f"starting broker {broker_id} on {broker.bootstrap}",
                lambda broker=broker: broker.start(timeout=60, detach=True),
            )
        meta["broker_pids"] = {i: b.process.pid for i, b in brokers.items() if b.process}
        yield brokers
    finally:
        with signals_ignored():
            for broker in brokers.values():
                if broker.process is not None:
                    broker.process.send_signal(signal.SIGCONT)  # a stopped one cannot exit
                broker.stop()
            zookeeper.stop()
