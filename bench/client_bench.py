"""Client benchmark: headrace's own Producer and Consumer against confluent-kafka, one real broker.

Run from the repository root::

    .venv/bin/python bench/client_bench.py            # 1,000,000 messages, ~35 s on 2 CPUs
    .venv/bin/python bench/client_bench.py --quick    # 200,000 messages, ~7 s
    .venv/bin/python bench/client_bench.py --json results.json

What is started
---------------
As in ``broker_bench.py`` (both use ``benchlib.py``, next to them): a ZooKeeper from Debian's
package and ONE broker (broker id 1) on free ports of 127.0.0.1, with configs, logs and data in
a temporary directory that is removed at the end, also on errors, Ctrl-C, SIGTERM and SIGHUP
(``--keep`` keeps it).  Every topic has one partition.  Both clients run in this process, the
broker in its own, so they share the machine's CPUs.

What is measured (200-byte incompressible values, no key, no compression)
-----------------------------------------------------------------------
1. **Produce**: ``--messages`` (1,000,000; 200,000 with ``--quick``) sends of the same value,
   each client to its own fresh topic, timed from the first call until ``flush()`` returns.

   * headrace: ``consumers.producer.Producer(bootstrap, acks="all")``, otherwise its defaults
     (linger 5 ms, 512 KiB batches, 64 MiB ``buffer_memory``: ``send()`` blocks while it is
     full).  acks="all" is librdkafka's default; with one replica the broker treats 1 and all
     alike.  ``send(topic, value)``; every returned DeliveryFuture gets
     ``add_done_callback(cb)``, and ``cb`` (run on the producer's sender thread) counts the
     message and checks ``future.exception()``.  After ``flush()`` the last future's
     ``result()`` must hold offset N-1.
   * confluent-kafka: ``Producer`` with ``bootstrap.servers`` and
     ``queue.buffering.max.messages`` = N + 1000 (so ``produce()`` never meets a full queue),
     otherwise librdkafka's defaults (linger 5 ms, acks all, up to 10,000 messages / 1 MB a
     batch); ``produce(topic, value, on_delivery=cb)``, and ``cb`` (run inside ``flush()``)
     counts the message and checks ``err``.

   So both produce one Python-level delivery result per message and count errors the same
   way.  Both must report N deliveries and no error; the log end offset and the records in the
   partition's segment files must be N.  Neither passes a partition (one-partition topics).
   Two informational rows (``--no-variants`` skips them) show what the per-message check
   costs: headrace checking only the last future, and confluent-kafka with
   ``delivery.report.only.error``.
2. **Consume**: both read the same topic, the first one confluent-kafka produced in test 1
   (N messages), from offset 0 with no consumer group, timed from ``assign()`` until the last
   message has reached the Python loop; the loop touches every message's value (summing the
   lengths, which must come to N * 200) and checks the last offset.

   * headrace: ``consumers.consumer.Consumer(bootstrap, auto_offset_reset="earliest")``
     (defaults: 1 MiB per partition per fetch, 500 ms max wait), ``assign([(topic, 0, 0)])``,
     ``poll(1.0)`` in a loop, ``len(m.value)`` per message.
   * confluent-kafka: ``Consumer`` with ``group.id`` (confluent-kafka insists on one; the
     consumer never subscribes, so it joins no group) and auto commit and offset store off,
     ``assign([TopicPartition(topic, 0, 0)])``, ``consume(10_000, 1.0)`` in a loop,
     ``m.error()`` and ``len(m.value())`` per message.

   Both connect and fetch metadata before the clock starts.

Each test runs ``--reps`` times (default 3), alternating which client goes first; every produce
run writes a fresh topic.  The tables show each client's best run and, as ``msgs/s(med)``, the
median; ``ours/rdkafka`` is best over best, ``ratio(med)`` the median of the per-rep ratios.
The garbage collector is paused during timed sections, as in broker_bench (``--gc`` keeps it on).

Diagnostics: per test and client (its best run), the broker's CPU (whole process, and the main
thread that runs its single-threaded reactor), this process's CPU split into the main thread
(``time.thread_time()``: the send()/produce() loop, confluent's delivery callbacks inside
flush(), the poll()/consume() loop) and the other threads (headrace's sender thread with our
callbacks; librdkafka's threads), each as a share of one core of the run's wall time, plus the
rest of the machine ("others": ZooKeeper and anything else) and the share of all CPUs busy.
All of headrace's client threads are Python threads and share one GIL, so for headrace "client"
near 100 % means Python-bound even when no single thread is.

Targets: produce >= 250,000 msgs/s and >= 0.3 of confluent-kafka; consume >= 400,000 msgs/s and
>= 0.3 of confluent-kafka.  A target is met if the best run meets it; if the median does not,
the verdict says so.  Missed targets are listed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from itertools import repeat
from pathlib import Path

from benchlib import (
    MB,
    SATURATED,
    VALUE_BYTES,
    BenchmarkError,
    CpuMeter,
    Timed,
    add_count_args,
    add_output_args,
    add_ratio_targets,
    bench_parser,
    best_run,
    check_count_args,
    check_delivery,
    check_log,
    close_rdkafka_producer,
    collect_broker_log_problems,
    consume_timed,
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
    ratio_target_cells,
    rdkafka_consume_timed,
    rdkafka_produce_timed,
    running_broker,
    step,
)
from confluent_kafka import KafkaException
from confluent_kafka import Producer as RdProducer
from confluent_kafka import libversion as librdkafka_version
from confluent_kafka import version as confluent_version

from consumers.consumer import Consumer as OurConsumer
from consumers.producer import Producer as OurProducer
from headrace.devcluster import BrokerProcess

OURS, RDKAFKA = "headrace", "confluent-kafka"

TARGET_PRODUCE = 250_000
TARGET_PRODUCE_RATIO = 0.3
TARGET_CONSUME = 400_000
TARGET_CONSUME_RATIO = 0.3

PRODUCE, CONSUME = "produce", "consume"
# Informational produce variants: headrace checking only the last future; confluent-kafka
# with delivery reports for failures only.
PRODUCE_LAST, PRODUCE_ERRONLY = "produce, last future only", "produce, report.only.error"


# --- settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    quick: bool
    messages: int
    reps: int
    variants: bool
    gc: bool


def settings_from(args: argparse.Namespace) -> Settings:
    messages = args.messages or (200_000 if args.quick else 1_000_000)
    return Settings(
        quick=args.quick,
        messages=messages,
        reps=args.reps,
        variants=not args.no_variants,
        gc=args.gc,
    )


# --- CPU accounting ------------------------------------------------------------------------


def bottleneck(used: dict, client: str) -> str:
    reactor, main = used["broker_reactor_cpu_share"], used["client_main_cpu_share"]
    other, total = used["client_other_cpu_share"], used["client_cpu_share"]
    if reactor >= SATURATED and reactor >= max(main, other):
        return "broker (reactor thread saturated)"
    if main >= SATURATED:
        return "client main thread (the Python loop)"
    if client == OURS and total >= SATURATED:
        return "client Python threads (one GIL)"
    if other >= SATURATED:
        return "client background threads"
    return machine_bottleneck(used)


# --- produce -------------------------------------------------------------------------------


class Deliveries:
    """A producer's delivery reports: how many came and the errors among them."""

    def __init__(self) -> None:
        self.count = 0
        self.errors: list = []

    def report(self, error) -> None:
        self.count += 1
        if error is not None:
            self.errors.append(error)

    def check(self, name: str, left: int, expected: int | None, reports: str) -> None:
        """All delivered without error, and ``expected`` ``reports`` (if not None) came."""
        check_delivery(name, left, self.errors)
        if expected is not None and self.count != expected:
            raise BenchmarkError(f"{name}: {self.count} {reports} for {expected} messages")


def produce_ours(
    broker: BrokerProcess,
    meter: CpuMeter,
    topic: str,
    count: int,
    settings: Settings,
    every: bool = True,
) -> dict:
    """``every``: a done callback on every future; otherwise only the last one is checked."""
    deliveries = Deliveries()

    def on_done(future):  # the producer's sender thread, once per message
        deliveries.report(future.exception())

    producer = OurProducer(broker.bootstrap, acks="all")
    value = payload()
    finished = False
    try:
        producer.cluster.partitions(topic)  # metadata ...
        producer.cluster.list_offset(topic, 0, -1)  # ... and the leader's connection, untimed
        send = producer.send
        future = None
        with gc_paused() if not settings.gc else nullcontext():
            before = meter.mark()
            start = time.perf_counter()
            if every:
                for _ in repeat(None, count):
                    future = send(topic, value)
                    future.add_done_callback(on_done)
            else:
                for _ in repeat(None, count):
                    future = send(topic, value)
            loop_end = time.perf_counter()
            left = producer.flush(120 + count / 2000)
            end = time.perf_counter()
            after = meter.mark()
        finished = left == 0
    finally:
        producer.close(None if finished else 0)
    name = f"{OURS} {PRODUCE if every else PRODUCE_LAST}"
    deliveries.check(name, left, count if every else None, "done callbacks")
    last = future.result(0)
    if last.offset != count - 1:
        raise BenchmarkError(
            f"{name}: the last message got offset {last.offset}, expected {count - 1}"
        )
    return produce_result(
        OURS,
        PRODUCE if every else PRODUCE_LAST,
        broker,
        topic,
        count,
        Timed(start, end, before, after, loop_end),
        meter.between(before, after, OURS),
    )


def produce_rdkafka(
    broker: BrokerProcess,
    meter: CpuMeter,
    topic: str,
    count: int,
    settings: Settings,
    every: bool = True,
) -> dict:
    """``every``: a delivery callback per message; otherwise delivery.report.only.error."""
    deliveries = Deliveries()

    def on_delivery(err, _msg):  # inside flush(), on this thread
        deliveries.report(err)

    config = {"bootstrap.servers": broker.bootstrap, "queue.buffering.max.messages": count + 1000}
    if not every:
        config["delivery.report.only.error"] = True
    producer = RdProducer(config)
    finished = False
    try:
        producer.list_topics(topic, timeout=10)  # connect and learn the leader, untimed
        timed = rdkafka_produce_timed(
            producer, topic, payload(), count, meter, not settings.gc, on_delivery=on_delivery
        )
        finished = timed.left == 0
    finally:
        close_rdkafka_producer(producer, finished)
    name = f"{RDKAFKA} {PRODUCE if every else PRODUCE_ERRONLY}"
    deliveries.check(name, timed.left, count if every else None, "delivery reports")
    return produce_result(
        RDKAFKA,
        PRODUCE if every else PRODUCE_ERRONLY,
        broker,
        topic,
        count,
        timed,
        meter.between(timed.before, timed.after, RDKAFKA),
    )


def produce_result(
    client: str,
    test: str,
    broker: BrokerProcess,
    topic: str,
    count: int,
    timed: Timed,
    cpu: dict,
) -> dict:
    stats = check_log(broker, f"{client} {test}", topic, count)
    elapsed = timed.end - timed.start
    return {
        "test": test,
        "client": client,
        "topic": topic,
        "messages": count,
        "seconds": elapsed,
        "loop_s": timed.loop_end - timed.start,
        "flush_s": timed.end - timed.loop_end,
        "buffer_full_retries": timed.buffer_full,
        "msgs_per_s": count / elapsed,
        "payload_mb_per_s": count * VALUE_BYTES / elapsed / MB,
        **stats,
        "cpu": cpu,
    }


# --- consume -------------------------------------------------------------------------------


def consume_ours(
    broker: BrokerProcess, meter: CpuMeter, topic: str, count: int, settings: Settings
) -> dict:
    consumer = OurConsumer(broker.bootstrap, auto_offset_reset="earliest")

    def take(messages: list) -> int:
        size = 0
        for message in messages:
            size += len(message.value)
        return size

    try:
        consumer.cluster.list_offset(topic, 0, -2)  # metadata and the connection, untimed
        timed = consume_timed(
            f"{OURS} consume",
            count,
            meter,
            not settings.gc,
            lambda: consumer.assign([(topic, 0, 0)]),
            partial(consumer.poll, 1.0),
            take,
        )
    finally:
        consumer.close()
    return consume_result(OURS, topic, count, timed.last.offset, timed, meter)


def consume_rdkafka(
    broker: BrokerProcess, meter: CpuMeter, topic: str, count: int, settings: Settings
) -> dict:
    def take(messages: list) -> int:
        size = 0
        for message in messages:
            if message.error() is not None:
                raise BenchmarkError(f"{RDKAFKA} consume: {message.error()}")
            size += len(message.value())
        return size

    timed = rdkafka_consume_timed(
        broker.bootstrap,
        "client-bench",
        topic,
        f"{RDKAFKA} consume",
        count,
        meter,
        not settings.gc,
        take,
    )
    return consume_result(RDKAFKA, topic, count, timed.last.offset(), timed, meter)


def consume_result(
    client: str,
    topic: str,
    count: int,
    last_offset: int,
    timed: Timed,
    meter: CpuMeter,
) -> dict:
    received, value_bytes = timed.received, timed.value_bytes
    if received != count or last_offset != count - 1 or value_bytes != count * VALUE_BYTES:
        raise BenchmarkError(
            f"{client} consume: {received:,} messages, {value_bytes:,} value "
            f"bytes, last offset {last_offset:,}; expected {count:,}, "
            f"{count * VALUE_BYTES:,} and {count - 1:,}"
        )
    elapsed = timed.end - timed.start
    return {
        "test": CONSUME,
        "client": client,
        "topic": topic,
        "messages": count,
        "seconds": elapsed,
        "calls": timed.calls,
        "msgs_per_s": count / elapsed,
        "payload_mb_per_s": count * VALUE_BYTES / elapsed / MB,
        "cpu": meter.between(timed.before, timed.after, client),
    }


# --- summary -------------------------------------------------------------------------------


def summarize(test: str, client: str, runs: list[dict]) -> dict:
    """The fastest run, with every run's time, rate and CPU use kept under "runs"."""
    return best_run(runs, "msgs_per_s", ("topic", "seconds", "msgs_per_s", "first", "cpu"))


def add_targets(ours: dict, theirs: dict, target: int, target_ratio: float) -> None:
    add_ratio_targets(ours, theirs, "msgs_per_s", target, target_ratio)


def print_results(rows_in: list[dict]) -> None:
    rows = []
    for r in rows_in:
        rows.append(
            [
                r["test"],
                r["client"],
                f"{r['messages']:,}",
                f"{r['seconds']:.2f}",
                f"{r['msgs_per_s']:,.0f}",
                f"{r['msgs_per_s_median']:,.0f}",
                f"{r['payload_mb_per_s']:,.1f}",
                *ratio_target_cells(r, "msgs_per_s"),
            ]
        )
    reps = rows_in[0]["reps"] if rows_in else 1
    print_table(
        f"Results (one broker, one partition, 200-byte values; best of {reps} runs, msgs/s(med) "
        "the median; ours/rdkafka = best over best, ratio(med) = median of per-rep ratios)",
        [
            "test",
            "client",
            "messages",
            "s",
            "msgs/s",
            "msgs/s(med)",
            "payload MB/s",
            "ours/rdkafka",
            "ratio(med)",
            "target msgs/s",
            "target ratio",
        ],
        rows,
    )


def print_runs(rows_in: list[dict]) -> None:
    rows = []
    for r in rows_in:
        cells = [f"{run['msgs_per_s']:,.0f}{'*' if run['first'] else ''}" for run in r["runs"]]
        rows.append([r["test"], r["client"], "  ".join(cells)])
    print_table(
        "Runs (msgs/s in run order; * = ran before the other client in that rep)",
        ["test", "client", "runs"],
        rows,
    )


def print_details(rows_in: list[dict]) -> None:
    rows = []
    for r in rows_in:
        if r["test"] == CONSUME:
            detail = (
                f"{r['calls']:,} {'poll' if r['client'] == OURS else 'consume'}() calls "
                f"({r['messages'] / r['calls']:,.0f} msgs each)"
            )
        else:
            call = "send" if r["client"] == OURS else "produce"
            detail = (
                f"{call}() loop {r['loop_s']:.2f} s, flush() {r['flush_s']:.2f} s; "
                f"{r['batches']:,} batches in the log ({r['messages'] / r['batches']:,.0f} "
                "msgs each)"
            )
            if r["buffer_full_retries"]:
                detail += f", {r['buffer_full_retries']:,} queue-full waits"
        rows.append([r["test"], r["client"], detail])
    print_table("Details (best runs)", ["test", "client", "detail"], rows)


def print_cpu(rows_in: list[dict]) -> None:
    print_table(
        "CPU over each best run (share of one core of its wall time; client main thr.: the "
        "calling loop; other thr.: headrace's sender thread / librdkafka's threads; 'others': "
        "ZooKeeper and any other process; 'machine': share of all CPUs busy)",
        ["test", "client", *cpu_headers(main_thread=True)],
        [[r["test"], r["client"], *cpu_cells(r["cpu"], main_thread=True)] for r in rows_in],
    )


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__, "200,000 messages")
    add_count_args(
        parser,
        "--messages",
        "messages per produce run and for the consume (default 1,000,000; quick 200,000)",
        "runs of each test and client, alternating which client goes "
        "first; best and median are reported (default 3)",
    )
    parser.add_argument(
        "--no-variants",
        action="store_true",
        help="skip the informational produce rows (headrace checking only the "
        "last future; confluent-kafka with delivery.report.only.error)",
    )
    parser.add_argument(
        "--gc", action="store_true", help="leave the garbage collector on during the timed sections"
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    check_count_args(parser, args, "messages")
    return args


def _version_string(version) -> str:
    """confluent_kafka.version() is a (string, int) tuple in most releases, a string in some."""
    return version[0] if isinstance(version, tuple) else str(version)


def alternate(reps: int, first, second) -> tuple[list[dict], list[dict]]:
    """Run ``first()`` and ``second()`` ``reps`` times, swapping their order every rep."""
    a_runs, b_runs = [], []
    for i in range(reps):
        order = [(first, a_runs), (second, b_runs)]
        if i % 2:
            order.reverse()
        for position, (fn, runs) in enumerate(order):
            result = fn(i)
            result["first"] = position == 0
            runs.append(result)
    return a_runs, b_runs


def run(settings: Settings, workdir: Path, meta: dict) -> dict:
    results: dict = {"meta": meta}
    reps, n = settings.reps, settings.messages
    with running_broker(workdir, meta) as broker:
        kinds = ["ours", "rdkafka"] + (
            ["ours-last", "rdkafka-erronly"] if settings.variants else []
        )
        topics = {kind: [f"client-{kind}-{i}" for i in range(reps)] for kind in kinds}
        create_topics(broker, topics)
        meter = CpuMeter(broker.process.pid, bottleneck, main_thread=True)
        started_log_bytes = broker.log_path.stat().st_size
        times = f" x {reps}, alternating" if reps > 1 else ""
        rows = []

        def pair(text, test_a, fn_a, test_b, fn_b, target=None, ratio=None):
            a_runs, b_runs = step(text + times, lambda: alternate(reps, fn_a, fn_b))
            ours = summarize(test_a, OURS, a_runs)
            theirs = summarize(test_b, RDKAFKA, b_runs)
            if target is not None:
                add_targets(ours, theirs, target, ratio)
            rows.extend([ours, theirs])

        pair(
            f"1. producing {n:,} messages, per-message delivery callbacks",
            PRODUCE,
            lambda i: produce_ours(broker, meter, topics["ours"][i], n, settings),
            PRODUCE,
            lambda i: produce_rdkafka(broker, meter, topics["rdkafka"][i], n, settings),
            TARGET_PRODUCE,
            TARGET_PRODUCE_RATIO,
        )
        if settings.variants:
            pair(
                f"   producing {n:,} messages, failures / the last future only",
                PRODUCE_LAST,
                lambda i: produce_ours(
                    broker, meter, topics["ours-last"][i], n, settings, every=False
                ),
                PRODUCE_ERRONLY,
                lambda i: produce_rdkafka(
                    broker, meter, topics["rdkafka-erronly"][i], n, settings, every=False
                ),
            )
        source = topics["rdkafka"][0]
        pair(
            f"2. consuming {n:,} messages of {source} from offset 0",
            CONSUME,
            lambda i: consume_ours(broker, meter, source, n, settings),
            CONSUME,
            lambda i: consume_rdkafka(broker, meter, source, n, settings),
            TARGET_CONSUME,
            TARGET_CONSUME_RATIO,
        )
        # Keep the main rows first, the informational ones last.
        main_tests = (PRODUCE, CONSUME)
        results["tests"] = [r for r in rows if r["test"] in main_tests] + [
            r for r in rows if r["test"] not in main_tests
        ]
        collect_broker_log_problems(broker, started_log_bytes, meta)
        return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)

    def start(workdir: Path) -> dict:
        meta = new_meta(
            settings.quick,
            workdir,
            confluent_kafka=_version_string(confluent_version()),
            librdkafka=librdkafka_version()[0],
            value_bytes=VALUE_BYTES,
            messages=settings.messages,
            gc_paused=not settings.gc,
        )
        print(
            f"{header('client', meta)}, confluent-kafka {meta['confluent_kafka']} "
            f"(librdkafka {meta['librdkafka']})"
        )
        print(
            f"One broker + ZooKeeper on 127.0.0.1, data in {workdir}.  MB = 10^6 bytes.  "
            f"GC {'on' if settings.gc else 'paused'} while timing."
        )
        return run(settings, workdir, meta)

    def report(results: dict) -> None:
        meta, rows = results["meta"], results["tests"]
        print_results(rows)
        print_runs(rows)
        print_details(rows)
        print_cpu(rows)
        missed = []
        for r in rows:
            if r.get("target_met") is False:
                missed.append(
                    f"{r['client']} {r['test']} {r['msgs_per_s']:,.0f} msgs/s "
                    f"(>= {r['target_msgs_per_s']:,})"
                )
            if r.get("target_ratio_met") is False:
                missed.append(
                    f"{r['client']} {r['test']} {r['ratio']:.3f} of confluent-kafka "
                    f"(>= {r['target_ratio']:.1f})"
                )
        contended = [
            f"{r['client']} {r['test']}" for r in rows if r["cpu"]["other_cpu_share"] >= 0.25
        ]
        print_broker_notes(meta, contended)
        finish(results, missed, "; ", args.json)

    return main_in_tmp_dir(
        args,
        "client-bench-",
        start,
        (BenchmarkError, KafkaException, RuntimeError, OSError),
        report,
    )


if __name__ == "__main__":
    sys.exit(main())
