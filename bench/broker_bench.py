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
import os
import socket
import sys
import time
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

from benchlib import (
    MB,
    SATURATED,
    VALUE_BYTES,
    BenchmarkError,
    CpuMeter,
    LoopbackReceiver,
    MiB,
    add_count_args,
    add_output_args,
    bench_parser,
    best_run,
    check_count_args,
    check_delivery,
    check_log,
    close_rdkafka_producer,
    collect_broker_log_problems,
    cpu_cells,
    cpu_headers,
    create_topics,
    finish,
    gc_paused,
    header,
    machine_bottleneck,
    main_in_tmp_dir,
    new_meta,
    payload,
    print_broker_notes,
    print_table,
    rdkafka_consume_timed,
    rdkafka_produce_timed,
    running_broker,
    step,
)
from confluent_kafka import KafkaException, Producer
from confluent_kafka import libversion as librdkafka_version

from headrace.devcluster import BrokerProcess

TARGET_PRODUCE_BATCHED = 500_000
TARGET_PRODUCE_SINGLE = 50_000
TARGET_CONSUME = 500_000
PAPER_PRODUCE_BATCHED = 400_000  # batch size 50, one broker, 2011
PAPER_PRODUCE_SINGLE = 50_000  # batch size 1
PAPER_CONSUME = 22_000

TOPIC_BATCHED = "bench-batched"
TOPIC_SINGLE = "bench-single"
TOPIC_SYNC = "bench-single-sync"


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
    return Settings(
        quick=args.quick,
        messages=messages,
        single_messages=single,
        sync_messages=sync,
        reps=args.reps,
    )


# --- CPU accounting ------------------------------------------------------------------------


def bottleneck(used: dict) -> str:
    reactor, client = used["broker_reactor_cpu_share"], used["client_cpu_share"]
    if reactor >= SATURATED and reactor >= client:
        return "broker (reactor thread saturated)"
    if client >= SATURATED:
        return "client (Python loop + librdkafka)"
    return machine_bottleneck(used)


# --- 1 and 2: produce ----------------------------------------------------------------------


def bench_produce(
    name: str,
    broker: BrokerProcess,
    meter: CpuMeter,
    topic: str,
    count: int,
    extra: dict,
    target: int | None,
    paper: int | None,
) -> dict:
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
    finished = False
    try:
        producer.list_topics(topic, timeout=10)  # connect and learn the leader before timing
        timed = rdkafka_produce_timed(producer, topic, payload(), count, meter, True, partition=0)
        finished = timed.left == 0
    finally:
        close_rdkafka_producer(producer, finished)
    check_delivery(name, timed.left, errors)
    stats = check_log(broker, name, topic, count)
    elapsed = timed.end - timed.start
    result = {
        "test": name,
        "topic": topic,
        "messages": count,
        "config": {k: v for k, v in config.items() if k != "on_delivery"},
        "seconds": elapsed,
        "produce_loop_s": timed.loop_end - timed.start,
        "buffer_full_retries": timed.buffer_full,
        "msgs_per_s": count / elapsed,
        "payload_mb_per_s": count * VALUE_BYTES / elapsed / MB,
        "mb_per_s": stats["log_bytes"] / elapsed / MB,
        "requests_per_s": stats["batches"] / elapsed,
        "msgs_per_request": count / max(stats["batches"], 1),
        **stats,
        "cpu": meter.between(timed.before, timed.after),
    }
    if extra.get("batch.num.messages") == 1 and stats["batches"] != count:
        raise BenchmarkError(
            f"{name}: {stats['batches']} batches for {count} messages; expected one per message"
        )
    add_target(result, target, paper)
    return result


# --- 3: consume ----------------------------------------------------------------------------


def bench_consume(
    broker: BrokerProcess,
    meter: CpuMeter,
    topic: str,
    count: int,
    stats: dict,
    target: int,
    paper: int,
) -> dict:
    def take(messages: list) -> int:
        for message in messages:
            if message.error() is not None:
                raise BenchmarkError(f"consume: {message.error()}")
        return 0

    timed = rdkafka_consume_timed(
        broker.bootstrap, "broker-bench", topic, "consume", count, meter, True, take
    )
    last_offset = timed.last.offset()
    if timed.received != count or last_offset != count - 1:
        raise BenchmarkError(
            f"consume: {timed.received:,} messages, last offset {last_offset:,}; "
            f"expected {count:,} ending at {count - 1:,}"
        )
    if len(timed.last.value()) != VALUE_BYTES:
        raise BenchmarkError("consume: the last message's value is not 200 bytes")
    elapsed = timed.end - timed.start
    result = {
        "test": "consume",
        "topic": topic,
        "messages": count,
        "seconds": elapsed,
        "consume_calls": timed.calls,
        "msgs_per_s": count / elapsed,
        "payload_mb_per_s": count * VALUE_BYTES / elapsed / MB,
        "mb_per_s": stats["log_bytes"] / elapsed / MB,
        "log_bytes": stats["log_bytes"],
        "cpu": meter.between(timed.before, timed.after),
    }
    add_target(result, target, paper)
    return result


def best_of(runs: list[dict]) -> dict:
    """The fastest run, with every run's time, rate and CPU use kept under "runs"."""
    best = best_run(runs, "msgs_per_s", ("topic", "seconds", "msgs_per_s", "cpu"))
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


def raw_loopback_once(total_bytes: int) -> float:
    """Seconds to move ``total_bytes`` to a receiver process and hear back that it has them."""
    receiver = LoopbackReceiver()
    try:
        chunk = os.urandom(MiB)
        full, rest = divmod(total_bytes, MiB)
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=60) as sock:
            sendall = sock.sendall
            with gc_paused():
                start = time.perf_counter()
                for _ in repeat(None, full):
                    sendall(chunk)
                if rest:
                    sendall(chunk[:rest])
                sock.shutdown(socket.SHUT_WR)
                got = receiver.received()
                elapsed = time.perf_counter() - start
        if got != total_bytes:
            raise BenchmarkError(f"raw loopback: the receiver got {got} of {total_bytes} bytes")
        return elapsed
    finally:
        receiver.close()


def bench_baseline(total_bytes: int, reps: int) -> dict:
    times = [raw_loopback_once(total_bytes) for _ in range(reps)]
    best = min(times)
    return {
        "bytes": total_bytes,
        "chunk_bytes": MiB,
        "times_s": times,
        "seconds": best,
        "mb_per_s": total_bytes / best / MB,
    }


# --- output --------------------------------------------------------------------------------


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
        rows.append(
            [
                r["test"],
                f"{r['messages']:,}",
                f"{r['seconds']:.2f}",
                f"{r['msgs_per_s']:,.0f}",
                f"{r['msgs_per_s_median']:,.0f}",
                f"{r['mb_per_s']:,.1f}",
                f"{r['payload_mb_per_s']:,.1f}",
                f"{r['mb_per_s'] / baseline['mb_per_s']:.3f}",
                verdict(r),
                "-" if paper is None else f"{paper:,}",
            ]
        )
    rows.append(
        [
            "raw loopback TCP (baseline)",
            "-",
            f"{baseline['seconds']:.2f}",
            "-",
            "-",
            f"{baseline['mb_per_s']:,.1f}",
            "-",
            "1.000",
            "-",
            "-",
        ]
    )
    reps = rows_in[0]["reps"] if rows_in else 1
    print_table(
        f"Results (one broker, one partition, 200-byte messages; best of {reps} runs, "
        "msgs/s(med) the median; MB/s of stored record batches)",
        [
            "test",
            "messages",
            "s",
            "msgs/s",
            "msgs/s(med)",
            "MB/s",
            "payload MB/s",
            "ratio to raw",
            "target",
            "paper 2011 msgs/s",
        ],
        rows,
    )


def print_details(rows_in: list[dict]) -> None:
    rows = []
    for r in rows_in:
        if "batches" in r:
            detail = (
                f"{r['batches']:,} requests ({r['msgs_per_request']:,.1f} msgs each, "
                f"{r['requests_per_s']:,.0f}/s); produce() loop {r['produce_loop_s']:.2f} s"
            )
            if r["buffer_full_retries"]:
                detail += f", {r['buffer_full_retries']:,} queue-full waits"
        else:
            detail = f"{r['consume_calls']:,} consume() calls"
        rows.append([r["test"], f"{r['log_bytes'] / MB:,.1f} MB", detail])
    print_table("Requests", ["test", "log", "detail"], rows)


def print_cpu(rows_in: list[dict]) -> None:
    print_table(
        "CPU over each test's best run (share of one core of its wall time; 'others': ZooKeeper "
        "and any other process; 'machine': share of all CPUs busy)",
        ["test", *cpu_headers()],
        [[r["test"], *cpu_cells(r["cpu"])] for r in rows_in],
    )


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__, "200,000 messages, 20,000 one per request")
    add_count_args(
        parser,
        "--messages",
        "messages for the batched produce and the consume (default 1,000,000; quick 200,000)",
        "runs of each test, each producing to a fresh topic; the best is "
        "reported, the median beside it (default 3)",
    )
    parser.add_argument(
        "--single-messages",
        type=int,
        default=0,
        metavar="N",
        help="messages for the one-per-request produce (default 100,000; quick 20,000)",
    )
    parser.add_argument(
        "--sync-messages",
        type=int,
        default=None,
        metavar="N",
        help="messages for the informational max.in.flight=1 row "
        "(default: a tenth of --single-messages; 0 skips it)",
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    for name in ("single_messages", "sync_messages"):
        if (getattr(args, name) or 0) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    check_count_args(parser, args, "messages")
    return args


def run(settings: Settings, workdir: Path, meta: dict) -> dict:
    results: dict = {"meta": meta}
    reps = settings.reps
    with running_broker(workdir, meta) as broker:
        topics = {
            base: [f"{base}-{i}" for i in range(reps)]
            for base in (TOPIC_BATCHED, TOPIC_SINGLE, TOPIC_SYNC)
        }
        if not settings.sync_messages:
            del topics[TOPIC_SYNC]
        create_topics(broker, topics)
        meter = CpuMeter(broker.process.pid, bottleneck)
        started_log_bytes = broker.log_path.stat().st_size
        rows = []
        times = f" x {reps}" if reps > 1 else ""

        n = settings.messages
        batched = step(
            f"1. producing {n:,} messages, default batching{times}",
            lambda: best_of(
                [
                    bench_produce(
                        "produce, batched",
                        broker,
                        meter,
                        topic,
                        n,
                        {},
                        TARGET_PRODUCE_BATCHED,
                        PAPER_PRODUCE_BATCHED,
                    )
                    for topic in topics[TOPIC_BATCHED]
                ]
            ),
        )
        rows.append(batched)

        baseline_bytes = batched["log_bytes"]
        baseline = step(
            f"   baseline: raw loopback TCP, {baseline_bytes / MB:,.1f} MB x {max(3, reps)}",
            lambda: bench_baseline(baseline_bytes, max(3, reps)),
        )
        results["baseline"] = baseline

        single_config = {"linger.ms": 0, "batch.num.messages": 1}
        k = settings.single_messages
        rows.append(
            step(
                f"2. producing {k:,} messages, one per request{times}",
                lambda: best_of(
                    [
                        bench_produce(
                            "produce, 1 msg/request",
                            broker,
                            meter,
                            topic,
                            k,
                            single_config,
                            TARGET_PRODUCE_SINGLE,
                            PAPER_PRODUCE_SINGLE,
                        )
                        for topic in topics[TOPIC_SINGLE]
                    ]
                ),
            )
        )
        if settings.sync_messages:
            k = settings.sync_messages
            rows.append(
                step(
                    f"   producing {k:,} messages, one per request, max.in.flight=1{times}",
                    lambda: best_of(
                        [
                            bench_produce(
                                "produce, 1 msg/request, in-flight 1",
                                broker,
                                meter,
                                topic,
                                k,
                                {**single_config, "max.in.flight": 1},
                                None,
                                None,
                            )
                            for topic in topics[TOPIC_SYNC]
                        ]
                    ),
                )
            )

        first = topics[TOPIC_BATCHED][0]
        stats = {"log_bytes": baseline_bytes}
        rows.append(
            step(
                f"3. consuming {n:,} messages from offset 0{times}",
                lambda: best_of(
                    [
                        bench_consume(broker, meter, first, n, stats, TARGET_CONSUME, PAPER_CONSUME)
                        for _ in range(reps)
                    ]
                ),
            )
        )
        results["tests"] = rows
        # Read before stopping: the broker's own shutdown logs a warning that is no finding.
        # Start-up (kazoo's first connection is often dropped by a ZooKeeper that answers
        # "ruok" but is not quite serving yet) and the tests are reported apart.
        collect_broker_log_problems(broker, started_log_bytes, meta)
        return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)

    def start(workdir: Path) -> dict:
        meta = new_meta(
            settings.quick,
            workdir,
            librdkafka=librdkafka_version()[0],
            value_bytes=VALUE_BYTES,
        )
        print(f"{header('broker', meta)}, librdkafka {meta['librdkafka']}")
        print(f"One broker + ZooKeeper on 127.0.0.1, data in {workdir}.  MB = 10^6 bytes.")
        return run(settings, workdir, meta)

    def report(results: dict) -> None:
        meta, rows = results["meta"], results["tests"]
        print_results(rows, results["baseline"])
        print_details(rows)
        print_cpu(rows)
        missed = [
            f"{r['test']} ({r['msgs_per_s']:,.0f} msgs/s, {r['target']})"
            for r in rows
            if r.get("target_met") is False
        ]
        print_broker_notes(meta, [r["test"] for r in rows if r["cpu"]["other_cpu_share"] >= 0.25])
        finish(results, missed, "; ", args.json)

    return main_in_tmp_dir(
        args, "broker-bench-", start, (BenchmarkError, KafkaException, RuntimeError), report
    )


if __name__ == "__main__":
    sys.exit(main())
