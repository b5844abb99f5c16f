"""Broker benchmark: the 2011 Kafka paper's section-5 tests against one real headrace broker.

Run from the repository root::

    .venv/bin/python bench/broker_bench.py            # 1,000,000 messages, ~15-30 s on 2 CPUs
    .venv/bin/python bench/broker_bench.py --quick    # 200,000 messages, ~5 s
    .venv/bin/python bench/broker_bench.py --json results.json

What is started
---------------
A ZooKeeper from Debian's package (``headrace.devcluster.ZooKeeperProcess``) and ONE broker
(``BrokerProcess``, broker id 1, ``python -m headrace.cli broker``), both on free ports of
127.0.0.1, with their configs, logs and data in a temporary directory that is removed at the
end, also on errors, Ctrl-C and SIGTERM (``--keep`` keeps it).  Every topic has one partition,
as in the paper's single-broker tests.  The clients are confluent-kafka (librdkafka) in this
process; the broker is a separate process, so the two share the machine's CPUs.

What is measured (200-byte values, no key, no compression, librdkafka's default acks=all)
---------------------------------------------------------------------------------------
1. **Produce, default batching**: ``--messages`` (1,000,000; 200,000 with ``--quick``)
   ``Producer.produce()`` calls to partition 0, timed from the first call until ``flush()``
   returns (every message acknowledged).  Only ``bootstrap.servers`` and a queue large enough
   for all the messages are set; librdkafka batches by itself (linger.ms 5, up to 10,000
   messages or 1 MB per batch).  The paper's row: 400,000 msgs/s with batches of 50.
2. **Produce, one message per request**: ``linger.ms=0`` and ``batch.num.messages=1``, so
   every message is its own record batch and its own Produce request; requests are still
   pipelined (librdkafka's default in-flight limit), as the 2011 producer did not wait for
   the broker either.  100,000 messages (20,000 with ``--quick``; ``--single-messages``).
   The paper's row: 50,000 msgs/s with batch size 1.  An informational row repeats it with
   ``max.in.flight=1`` (one request at a time: a request-latency bound, not a throughput
   target) on a tenth of the count.  The log is scanned afterwards to check that it really
   holds one batch per message.
3. **Consume**: a ``Consumer`` with ``assign()`` of partition 0 from offset 0 (no group,
   ``enable.auto.commit`` off) reads back every message of test 1 with ``consume()``, timed
   from ``assign()`` until the last message arrives.  The paper's row: 22,000 msgs/s.

Each test runs ``--reps`` times (default 3), producing to a fresh topic each time (consume
re-reads test 1's first topic with a fresh consumer); the tables show the best run and, as
``msgs/s(med)``, the median, since single runs last about a second on a shared machine.  A
target is met if the best run meets it; if the median does not, the verdict says so.

Baseline: raw loopback TCP in the same run, a Python sender (this process) and receiver (a
child process) moving exactly as many bytes as the broker stored for test 1 (record batches:
the 200-byte values plus per-record and per-batch overhead) in 1 MiB ``sendall()`` chunks,
best of 3 (or of ``--reps`` if more).  Every row's MB/s counts the record-batch bytes the
broker stored for it (what crossed the socket, less request headers), and its ratio is that
MB/s over the baseline's; "payload MB/s" counts the 200-byte values only.  MB is 10**6
bytes.

Diagnostics: the broker's CPU time (``/proc/<pid>/stat``: utime + stime, all its threads, and
separately its main thread, which runs the Twisted reactor that does all request work) and
this process's CPU time (the Python loop plus librdkafka's threads) over each test, as a share
of one core of the test's wall time.  A broker near 100 % of a core is the bottleneck: its
reactor is single-threaded.  "others" is what the rest of the machine used meanwhile
(``/proc/stat`` less the two: ZooKeeper and any unrelated process), so a run on a shared,
busy machine says so instead of passing for a slow broker.

Targets: >= 500,000 msgs/s produce with batching, >= 50,000 msgs/s one message per request,
>= 500,000 msgs/s consume.  A missed target is printed as such, and listed at the end.
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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka import libversion as librdkafka_version  # noqa: E402

from broker.protocol.records import split_batches  # noqa: E402
from consumers.client import BrokerConnection  # noqa: E402
from headrace.devcluster import BrokerProcess, ZooKeeperProcess, free_port  # noqa: E402

MB = 1_000_000
MiB = 1 << 20
VALUE_BYTES = 200
BROKER_ID = 1

TARGET_PRODUCE_BATCHED = 500_000
TARGET_PRODUCE_SINGLE = 50_000
TARGET_CONSUME = 500_000
PAPER_PRODUCE_BATCHED = 400_000  # batch size 50, one broker, 2011
PAPER_PRODUCE_SINGLE = 50_000  # batch size 1
PAPER_CONSUME = 22_000

TOPIC_BATCHED = "bench-batched"
TOPIC_SINGLE = "bench-single"
TOPIC_SYNC = "bench-single-sync"

SATURATED = 0.85  # a share of one core above which a single-threaded side counts as saturated


class BenchmarkError(RuntimeError):
    """A check of the results failed (lost messages, wrong batching): numbers would be wrong."""


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    quick: bool
    messages: int
    single_messages: int
    sync_messages: int
    reps: int


def settings_from(args: argparse.Namespace) -> Settings:
    messages = args.messages or (200_000 if args.quick else 1_000_000)
    single = args.single_messages or (20_000 if args.quick else 100_000)
    sync = max(1, single // 10) if args.sync_messages is None else args.sync_messages
    return Settings(quick=args.quick, messages=messages, single_messages=single,
                    sync_messages=sync, reps=args.reps)


# --- CPU accounting ------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_cpu(path: str) -> float:
    """utime + stime in seconds from a /proc/.../stat file."""
    with open(path) as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is field 3, "state"
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
    machine: float


class CpuMeter:
    """Reads the broker's and this process's CPU time before and after each test."""

    def __init__(self, broker_pid: int):
        self.pid = broker_pid

    def mark(self) -> CpuMark:
        return CpuMark(time.perf_counter(), _stat_cpu(f"/proc/{self.pid}/stat"),
                       _stat_cpu(f"/proc/{self.pid}/task/{self.pid}/stat"), self_cpu(),
                       machine_busy())

    @staticmethod
    def between(start: CpuMark, end: CpuMark) -> dict:
        wall = end.wall - start.wall
        used = {"wall_s": wall, "broker_cpu_s": end.broker - start.broker,
                "broker_reactor_cpu_s": end.reactor - start.reactor,
                "client_cpu_s": end.client - start.client,
                "machine_busy_cpu_s": end.machine - start.machine}
        # Everything else that ran meanwhile: ZooKeeper, and whatever else shares the machine.
        used["other_cpu_s"] = max(0.0, used["machine_busy_cpu_s"] - used["broker_cpu_s"]
                                  - used["client_cpu_s"])
        for key in ("broker_cpu", "broker_reactor_cpu", "client_cpu", "machine_busy_cpu",
                    "other_cpu"):
            used[f"{key}_share"] = used[f"{key}_s"] / wall if wall > 0 else 0.0
        used["cpus"] = os.cpu_count() or 1
        used["bottleneck"] = bottleneck(used)
        return used


def bottleneck(used: dict) -> str:
    reactor, client = used["broker_reactor_cpu_share"], used["client_cpu_share"]
    if reactor >= SATURATED and reactor >= client:
        return "broker (reactor thread saturated)"
    if client >= SATURATED:
        return "client (Python loop + librdkafka)"
    if used["machine_busy_cpu_share"] >= SATURATED * used["cpus"]:
        if used["other_cpu_share"] >= 0.25:
            return f"CPUs taken by other processes ({used['other_cpu_share']:.1f} cores)"
        return "all CPUs busy"
    return "neither saturated (waiting on round trips)"


# --- helpers -------------------------------------------------------------------------------


@contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def create_topic(port: int, name: str, partitions: int = 1) -> None:
    """CreateTopics v4, as tests/conftest.py does it."""
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        body = conn.request(19, 4, {
            "topics": [{"name": name, "num_partitions": partitions, "replication_factor": 1,
                        "assignments": [], "configs": []}],
            "timeout_ms": 10000, "validate_only": False})
    code = body["topics"][0]["error_code"]
    if code != 0:
        raise BenchmarkError(f"CreateTopics {name}: error code {code}: {body}")


def wait_for_leader(port: int, topic: str, timeout: float = 20.0) -> None:
    """Until Metadata shows partition 0 of ``topic`` led by our broker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with BrokerConnection("127.0.0.1", port, timeout=10) as conn:
            body = conn.request(3, 8, {"topics": [{"name": topic}],
                                       "allow_auto_topic_creation": False})
        topics = body["topics"]
        if topics and topics[0]["error_code"] == 0 and any(
                p["partition_index"] == 0 and p["leader_id"] == BROKER_ID
                for p in topics[0]["partitions"]):
            return
        time.sleep(0.05)
    raise BenchmarkError(f"topic {topic} has no leader after {timeout} s")


def log_end_offset(port: int, topic: str) -> int:
    """ListOffsets v1 with timestamp -1 (latest) for partition 0."""
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        body = conn.request(2, 1, {"replica_id": -1, "topics": [
            {"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}]})
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


def payload(seed: int = 7) -> bytes:
    """One pseudo-random (incompressible) 200-byte value, sent as every message."""
    return random.Random(seed).randbytes(VALUE_BYTES)


# --- 1 and 2: produce ----------------------------------------------------------------------


def bench_produce(name: str, broker: BrokerProcess, meter: CpuMeter, topic: str, count: int,
                  extra: dict, target: int | None, paper: int | None) -> dict:
    errors: list = []

    def on_delivery(err, _msg):  # called for failures only (delivery.report.only.error)
        errors.append(err)

    config = {
        "bootstrap.servers": broker.bootstrap,
        "queue.buffering.max.messages": max(100_000, count + 1000),
        "queue.buffering.max.kbytes": 2_097_151,
        "delivery.report.only.error": True,
        "on_delivery": on_delivery,
        **extra,
    }
    producer = Producer(config)
    value = payload()
    finished = False
    try:
        producer.list_topics(topic, timeout=10)  # connect and learn the leader before timing
        produce, poll = producer.produce, producer.poll
        buffer_full = 0
        with gc_paused():
            before = meter.mark()
            start = time.perf_counter()
            for _ in repeat(None, count):
                try:
                    produce(topic, value, partition=0)
                except BufferError:  # the local queue is full: let librdkafka drain it
                    buffer_full += 1
                    poll(0.005)
                    produce(topic, value, partition=0)
            loop_end = time.perf_counter()
            left = producer.flush(120 + count / 2000)
            end = time.perf_counter()
            after = meter.mark()
        finished = left == 0
    finally:
        if not finished:  # an error or a signal: drop what is queued, let go of the broker
            producer.purge()
            producer.flush(5)
        close = getattr(producer, "close", None)  # confluent-kafka >= 2.13
        if close is not None:
            close()
    if left:
        raise BenchmarkError(f"{name}: {left} messages still undelivered after flush()")
    if errors:
        raise BenchmarkError(f"{name}: {len(errors)} delivery errors, first: {errors[0]}")
    end_offset = log_end_offset(broker.port, topic)
    stats = log_stats(broker, topic)
    if end_offset != count or stats["records"] != count:
        raise BenchmarkError(f"{name}: log end offset {end_offset}, {stats['records']} records "
                             f"in the log, after producing {count}")
    elapsed = end - start
    result = {
        "test": name,
        "topic": topic,
        "messages": count,
        "config": {k: v for k, v in config.items() if k != "on_delivery"},
        "seconds": elapsed,
        "produce_loop_s": loop_end - start,
        "buffer_full_retries": buffer_full,
        "msgs_per_s": count / elapsed,
        "payload_mb_per_s": count * VALUE_BYTES / elapsed / MB,
        "mb_per_s": stats["log_bytes"] / elapsed / MB,
        "requests_per_s": stats["batches"] / elapsed,
        "msgs_per_request": count / max(stats["batches"], 1),
        **stats,
        "cpu": CpuMeter.between(before, after),
    }
    if extra.get("batch.num.messages") == 1 and stats["batches"] != count:
        raise BenchmarkError(f"{name}: {stats['batches']} batches for {count} messages; "
                             "expected one per message")
    add_target(result, target, paper)
    return result


# --- 3: consume ----------------------------------------------------------------------------


def bench_consume(broker: BrokerProcess, meter: CpuMeter, topic: str, count: int,
                  stats: dict, target: int, paper: int) -> dict:
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "broker-bench",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    })
    try:
        consumer.list_topics(topic, timeout=10)  # connect before timing
        consume = consumer.consume
        received = 0
        last_offset = -1
        batch_calls = 0
        deadline = time.monotonic() + 120 + count / 2000
        with gc_paused():
            before = meter.mark()
            start = time.perf_counter()
            consumer.assign([TopicPartition(topic, 0, 0)])
            while received < count:
                messages = consume(10_000, 1.0)
                batch_calls += 1
                if not messages:
                    if time.monotonic() > deadline:
                        raise BenchmarkError(f"consume: only {received:,} of {count:,} messages "
                                             "before the deadline")
                    continue
                for message in messages:
                    if message.error() is not None:
                        raise BenchmarkError(f"consume: {message.error()}")
                received += len(messages)
                last_offset = messages[-1].offset()
            end = time.perf_counter()
            after = meter.mark()
        if received != count or last_offset != count - 1:
            raise BenchmarkError(f"consume: {received:,} messages, last offset {last_offset:,}; "
                                 f"expected {count:,} ending at {count - 1:,}")
        if len(messages[-1].value()) != VALUE_BYTES:
            raise BenchmarkError("consume: the last message's value is not 200 bytes")
    finally:
        consumer.close()
    elapsed = end - start
    result = {
        "test": "consume",
        "topic": topic,
        "messages": count,
        "seconds": elapsed,
        "consume_calls": batch_calls,
        "msgs_per_s": count / elapsed,
        "payload_mb_per_s": count * VALUE_BYTES / elapsed / MB,
        "mb_per_s": stats["log_bytes"] / elapsed / MB,
        "log_bytes": stats["log_bytes"],
        "cpu": CpuMeter.between(before, after),
    }
    add_target(result, target, paper)
    return result


def best_of(runs: list[dict]) -> dict:
    """The fastest run, with every run's time, rate and CPU use kept under "runs"."""
    best = dict(max(runs, key=lambda r: r["msgs_per_s"]))
    best["reps"] = len(runs)
    best["msgs_per_s_median"] = statistics.median(r["msgs_per_s"] for r in runs)
    best["runs"] = [{"topic": r["topic"], "seconds": r["seconds"], "msgs_per_s": r["msgs_per_s"],
                     "cpu": r["cpu"]} for r in runs]
    if "target_msgs_per_s" in best:
        best["target_met_median"] = best["msgs_per_s_median"] >= best["target_msgs_per_s"]
    return best


def add_target(result: dict, target: int | None, paper: int | None) -> None:
    if target is not None:
        result["target"] = f">= {target:,} msgs/s"
        result["target_msgs_per_s"] = target
        result["target_met"] = result["msgs_per_s"] >= target
    if paper is not None:
        result["paper_2011_msgs_per_s"] = paper


# --- baseline: raw loopback TCP ------------------------------------------------------------

RECEIVER = r"""
import socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
print(server.getsockname()[1], flush=True)
conn, _ = server.accept()
buf = memoryview(bytearray(1 << 20))
total = 0
while True:
    n = conn.recv_into(buf)
    if not n:
        break
    total += n
conn.sendall(str(total).encode())
conn.close()
"""


def raw_loopback_once(total_bytes: int) -> float:
    """Seconds to move ``total_bytes`` to a receiver process and hear back that it has them."""
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
    try:
        port = int(receiver.stdout.readline())
        chunk = os.urandom(MiB)
        full, rest = divmod(total_bytes, MiB)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sendall = sock.sendall
            with gc_paused():
                start = time.perf_counter()
                for _ in repeat(None, full):
                    sendall(chunk)
                if rest:
                    sendall(chunk[:rest])
                sock.shutdown(socket.SHUT_WR)
                reply = b""
                while True:
                    data = sock.recv(64)
                    if not data:
                        break
                    reply += data
                elapsed = time.perf_counter() - start
        if int(reply or b"-1") != total_bytes:
            raise BenchmarkError(f"raw loopback: the receiver got {reply!r} of {total_bytes} bytes")
        receiver.wait(timeout=10)
        return elapsed
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()


def bench_baseline(total_bytes: int, reps: int) -> dict:
    times = [raw_loopback_once(total_bytes) for _ in range(reps)]
    best = min(times)
    return {"bytes": total_bytes, "chunk_bytes": MiB, "times_s": times, "seconds": best,
            "mb_per_s": total_bytes / best / MB}


# --- output --------------------------------------------------------------------------------


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


def verdict(result: dict) -> str:
    if "target_met" not in result:
        return "- (informational)"
    if not result["target_met"]:
        return f"{result['target']}: NO, MISSED"
    if result.get("target_met_median") is False:
        return f"{result['target']}: yes (best run only; the median misses)"
    return f"{result['target']}: yes"


def print_results(rows_in: list[dict], baseline: dict) -> None:
    rows = []
    for r in rows_in:
        paper = r.get("paper_2011_msgs_per_s")
        rows.append([
            r["test"], f"{r['messages']:,}", f"{r['seconds']:.2f}", f"{r['msgs_per_s']:,.0f}",
            f"{r['msgs_per_s_median']:,.0f}", f"{r['mb_per_s']:,.1f}",
            f"{r['payload_mb_per_s']:,.1f}",
            f"{r['mb_per_s'] / baseline['mb_per_s']:.3f}", verdict(r),
            "-" if paper is None else f"{paper:,}",
        ])
    rows.append(["raw loopback TCP (baseline)", "-", f"{baseline['seconds']:.2f}", "-", "-",
                 f"{baseline['mb_per_s']:,.1f}", "-", "1.000", "-", "-"])
    reps = rows_in[0]["reps"] if rows_in else 1
    print_table(
        f"Results (one broker, one partition, 200-byte messages; best of {reps} runs, "
        "msgs/s(med) the median; MB/s of stored record batches)",
        ["test", "messages", "s", "msgs/s", "msgs/s(med)", "MB/s", "payload MB/s", "ratio to raw",
         "target", "paper 2011 msgs/s"],
        rows,
    )


def print_details(rows_in: list[dict]) -> None:
    rows = []
    for r in rows_in:
        if "batches" in r:
            detail = (f"{r['batches']:,} requests ({r['msgs_per_request']:,.1f} msgs each, "
                      f"{r['requests_per_s']:,.0f}/s); produce() loop {r['produce_loop_s']:.2f} s")
            if r["buffer_full_retries"]:
                detail += f", {r['buffer_full_retries']:,} queue-full waits"
        else:
            detail = f"{r['consume_calls']:,} consume() calls"
        rows.append([r["test"], f"{r['log_bytes'] / MB:,.1f} MB", detail])
    print_table("Requests", ["test", "log", "detail"], rows)


def print_cpu(rows_in: list[dict]) -> None:
    rows = []
    for r in rows_in:
        c = r["cpu"]
        rows.append([
            r["test"], f"{c['wall_s']:.2f}", f"{c['broker_cpu_s']:.2f}",
            f"{100 * c['broker_cpu_share']:.0f} %", f"{100 * c['broker_reactor_cpu_share']:.0f} %",
            f"{c['client_cpu_s']:.2f}", f"{100 * c['client_cpu_share']:.0f} %",
            f"{100 * c['other_cpu_share']:.0f} %",
            f"{100 * c['machine_busy_cpu_share'] / c['cpus']:.0f} %", c["bottleneck"],
        ])
    print_table(
        "CPU over each test's best run (share of one core of its wall time; 'others': ZooKeeper "
        "and any other process; 'machine': share of all CPUs busy)",
        ["test", "wall s", "broker CPU s", "broker", "reactor thr.", "client CPU s", "client",
         "others", "machine", "bottleneck"],
        rows,
    )


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="200,000 messages, 20,000 one per request")
    parser.add_argument("--messages", type=int, default=0, metavar="N",
                        help="messages for the batched produce and the consume "
                             "(default 1,000,000; quick 200,000)")
    parser.add_argument("--single-messages", type=int, default=0, metavar="N",
                        help="messages for the one-per-request produce (default 100,000; "
                             "quick 20,000)")
    parser.add_argument("--sync-messages", type=int, default=None, metavar="N",
                        help="messages for the informational max.in.flight=1 row "
                             "(default: a tenth of --single-messages; 0 skips it)")
    parser.add_argument("--reps", type=int, default=3, metavar="N",
                        help="runs of each test, each producing to a fresh topic; the best is "
                             "reported, the median beside it (default 3)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (configs, broker log, data)")
    parser.add_argument("--tmp-dir", metavar="DIR", default=tempfile.gettempdir(),
                        help="where to make the temporary directory (default: the system's)")
    args = parser.parse_args(argv)
    for name in ("messages", "single_messages", "sync_messages"):
        if (getattr(args, name) or 0) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    return args


def _raise_system_exit(signum, _frame):
    raise SystemExit(128 + signum)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """No second Ctrl-C or SIGTERM may cut the clean-up short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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


def run(settings: Settings, workdir: Path, meta: dict) -> dict:
    results: dict = {"meta": meta}
    zookeeper = ZooKeeperProcess(workdir / "zookeeper", free_port())
    broker: BrokerProcess | None = None
    reps = settings.reps
    try:
        # Own sessions: a Ctrl-C reaches only this script, which stops the broker first.
        step(f"starting ZooKeeper on 127.0.0.1:{zookeeper.port}",
             lambda: zookeeper.start(timeout=60, detach=True))
        broker = BrokerProcess(workdir, BROKER_ID, f"{zookeeper.connect}/headrace-bench",
                               free_port(), overrides={"num.partitions": "1",
                                                       "auto.create.topics.enable": "false"})
        step(f"starting broker {BROKER_ID} on {broker.bootstrap}",
             lambda: broker.start(timeout=60, detach=True))
        meta["broker_pid"] = broker.process.pid
        topics = {base: [f"{base}-{i}" for i in range(reps)]
                  for base in (TOPIC_BATCHED, TOPIC_SINGLE, TOPIC_SYNC)}
        if not settings.sync_messages:
            del topics[TOPIC_SYNC]

        def make_topics():
            for names in topics.values():
                for topic in names:
                    create_topic(broker.port, topic)
            for names in topics.values():
                for topic in names:
                    wait_for_leader(broker.port, topic)

        step(f"creating {sum(map(len, topics.values()))} one-partition topics", make_topics)
        meter = CpuMeter(broker.process.pid)
        started_log_bytes = broker.log_path.stat().st_size
        rows = []
        times = f" x {reps}" if reps > 1 else ""

        n = settings.messages
        batched = step(f"1. producing {n:,} messages, default batching{times}",
                       lambda: best_of([bench_produce(
                           "produce, batched", broker, meter, topic, n, {},
                           TARGET_PRODUCE_BATCHED, PAPER_PRODUCE_BATCHED)
                           for topic in topics[TOPIC_BATCHED]]))
        rows.append(batched)

        baseline_bytes = batched["log_bytes"]
        baseline = step(f"   baseline: raw loopback TCP, {baseline_bytes / MB:,.1f} MB x "
                        f"{max(3, reps)}",
                        lambda: bench_baseline(baseline_bytes, max(3, reps)))
        results["baseline"] = baseline

        single_config = {"linger.ms": 0, "batch.num.messages": 1}
        k = settings.single_messages
        rows.append(step(f"2. producing {k:,} messages, one per request{times}",
                         lambda: best_of([bench_produce(
                             "produce, 1 msg/request", broker, meter, topic, k, single_config,
                             TARGET_PRODUCE_SINGLE, PAPER_PRODUCE_SINGLE)
                             for topic in topics[TOPIC_SINGLE]])))
        if settings.sync_messages:
            k = settings.sync_messages
            rows.append(step(f"   producing {k:,} messages, one per request, max.in.flight=1"
                             f"{times}",
                             lambda: best_of([bench_produce(
                                 "produce, 1 msg/request, in-flight 1", broker, meter, topic, k,
                                 {**single_config, "max.in.flight": 1}, None, None)
                                 for topic in topics[TOPIC_SYNC]])))

        first = topics[TOPIC_BATCHED][0]
        stats = {"log_bytes": baseline_bytes}
        rows.append(step(f"3. consuming {n:,} messages from offset 0{times}",
                         lambda: best_of([bench_consume(broker, meter, first, n, stats,
                                                        TARGET_CONSUME, PAPER_CONSUME)
                                          for _ in range(reps)])))
        results["tests"] = rows
        # Read before stopping: the broker's own shutdown logs a warning that is no finding.
        # Start-up (kazoo's first connection is often dropped by a ZooKeeper that answers
        # "ruok" but is not quite serving yet) and the tests are reported apart.
        text = broker.log_path.read_bytes()
        for key, part in (("broker_log_problems_at_start", text[:started_log_bytes]),
                          ("broker_log_problems", text[started_log_bytes:])):
            meta[key] = [line for line in part.decode(errors="replace").splitlines()
                         if " WARNING " in line or " ERROR " in line or "Traceback" in line]
        return results
    finally:
        with signals_ignored():
            if broker is not None:
                broker.stop()
            zookeeper.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    signal.signal(signal.SIGTERM, _raise_system_exit)  # so the clean-up runs
    signal.signal(signal.SIGHUP, _raise_system_exit)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    began = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="broker-bench-", dir=Path(args.tmp_dir).resolve()))
    meta = {
        "mode": "quick" if settings.quick else "default",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "librdkafka": librdkafka_version()[0],
        "value_bytes": VALUE_BYTES,
        "tmp_dir": str(workdir),
    }
    print(f"headrace broker benchmark ({meta['mode']} mode): Python {meta['python']} on "
          f"{meta['machine']}, {meta['cpus']} CPUs, load {meta['load_average_at_start'][0]:.2f}, "
          f"librdkafka {meta['librdkafka']}")
    print(f"One broker + ZooKeeper on 127.0.0.1, data in {workdir}.  MB = 10^6 bytes.")
    try:
        results = run(settings, workdir, meta)
    except KeyboardInterrupt:
        print("\ninterrupted; broker and ZooKeeper stopped", file=sys.stderr)
        return 130
    except (BenchmarkError, KafkaException, RuntimeError) as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        if not args.keep:
            print("(run with --keep to keep the broker's log)", file=sys.stderr)
        return 1
    finally:
        with signals_ignored():
            if args.keep:
                print(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)

    rows = results["tests"]
    print_results(rows, results["baseline"])
    print_details(rows)
    print_cpu(rows)
    meta["wall_s"] = time.perf_counter() - began
    missed = [f"{r['test']} ({r['msgs_per_s']:,.0f} msgs/s, {r['target']})"
              for r in rows if r.get("target_met") is False]
    contended = [r["test"] for r in rows if r["cpu"]["other_cpu_share"] >= 0.25]
    if contended:
        print(f"\nOther processes used a quarter of a core or more during: {', '.join(contended)}; "
              "those numbers are low, so rerun on an idle machine before reading much into them.")
    at_start = meta.get("broker_log_problems_at_start")
    if at_start:
        print(f"\nThe broker logged {len(at_start)} warning/error line(s) while starting "
              f"(before the tests), the first: {at_start[0]}")
    problems = meta.get("broker_log_problems")
    if problems:
        print(f"\nThe broker logged {len(problems)} warning/error line(s) during the tests:")
        for line in problems[:10]:
            print(f"  {line}")
    print(f"\nTargets missed: {'; '.join(missed) if missed else 'none'}.  "
          f"Total time {meta['wall_s']:.1f} s.")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
            out.write("\n")
        print(f"JSON results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
