"""The audit's costs, same broker, same run, as ratios: batched produce with audit records on
against off, and the audit's read of a topic (batch and record headers) against a consumer
decoding the same messages.

    .venv/bin/python bench/audit_bench.py            # 300,000 messages per run
    .venv/bin/python bench/audit_bench.py --quick    # 60,000

Each rep, our Producer sends the same count of 200-byte messages (acks=all, idempotent,
default batching) to a fresh one-partition topic with ``audit=True`` and without it
(alternating which goes first), timed after one warm-up message; the ratio on/off of messages
per second (best over best, and the median of the per-rep ratios) is what counting each
acknowledged message and publishing the counts cost the producer.  Target: >= 0.9.  The
producer's CPU per message (this process, median of the reps) is the steadier figure on a
busy machine.  Then the
audit's ``broker_counts`` and a columnar Consumer read the audited topic back, alternating:
messages per second of each.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from benchlib import (
    add_count_args,
    add_output_args,
    bench_parser,
    check_count_args,
    check_log,
    create_topic,
    finish,
    header,
    main_in_tmp_dir,
    ours_produce_timed,
    platform_meta,
    print_table,
    running_broker,
    wait_for_leader,
)

TARGET_RATIO = 0.9


def produce(bootstrap: str, topic: str, count: int, audit: bool) -> float:
    return ours_produce_timed(bootstrap, topic, count, f"headrace audit={audit}", audit=audit)


def audit_read(bootstrap: str, topic: str) -> tuple[float, int]:
    from consumers.cluster import ClusterClient
    from headrace.audit.sources import broker_counts

    cluster = ClusterClient(bootstrap)
    try:
        start = time.perf_counter()
        counts, _ = broker_counts(cluster, topic, 60_000, 0)
        return time.perf_counter() - start, sum(counts.values())
    finally:
        cluster.close()


def consumer_read(bootstrap: str, topic: str, count: int) -> tuple[float, int]:
    from consumers.consumer import EARLIEST, Consumer

    with Consumer(bootstrap_servers=bootstrap, columnar=True) as consumer:
        start = time.perf_counter()
        consumer.assign([(topic, 0, EARLIEST)])
        got = 0
        while got < count:
            got += sum(len(block) for block in consumer.poll(1.0))
        return time.perf_counter() - start, got


def run(args, workdir: Path) -> dict:
    count = 60_000 if args.quick else args.messages or 300_000
    meta = {"mode": "quick" if args.quick else "full", **platform_meta(), "messages": count}
    meta["reps"] = args.reps
    print(header("audit", meta))
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpu_us: dict[bool, list[float]] = {True: [], False: []}  # this process's CPU per message
    reads: dict[str, list[float]] = {"audit": [], "consumer": []}
    with running_broker(workdir, meta) as broker:
        for rep in range(args.reps):
            for audit in (True, False) if rep % 2 == 0 else (False, True):
                topic = f"audit-{'on' if audit else 'off'}-{rep}"
                create_topic(broker.port, topic)
                wait_for_leader(broker.port, topic)
                cpu = time.process_time()
                elapsed = produce(broker.bootstrap, topic, count, audit)
                cpu_us[audit].append((time.process_time() - cpu) / count * 1e6)
                check_log(broker, f"audit={audit}", topic, count + 1)
                rates[audit].append(count / elapsed)
                state = "on " if audit else "off"
                print(
                    f"  produce, audit {state}: {count / elapsed:>10,.0f} msgs/s, "
                    f"{cpu_us[audit][-1]:.2f} us CPU/msg"
                )
            topic = f"audit-on-{rep}"
            for reader in ("audit", "consumer") if rep % 2 == 0 else ("consumer", "audit"):
                if reader == "audit":
                    elapsed, seen = audit_read(broker.bootstrap, topic)
                else:
                    elapsed, seen = consumer_read(broker.bootstrap, topic, count + 1)
                if seen != count + 1:
                    raise RuntimeError(f"{reader} read {seen} messages, not {count + 1}")
                reads[reader].append(seen / elapsed)
                print(f"  read, {reader:8}: {seen / elapsed:>10,.0f} msgs/s")
    ratio = max(rates[True]) / max(rates[False])
    median = statistics.median(on / off for on, off in zip(rates[True], rates[False]))
    read_ratio = max(reads["audit"]) / max(reads["consumer"])
    results = {
        "meta": meta,
        "produce": {"on_msgs_s": rates[True], "off_msgs_s": rates[False]},
        "producer_cpu_us_per_msg": {"on": cpu_us[True], "off": cpu_us[False]},
        "ratio": ratio,
        "ratio_median": median,
        "read_msgs_s": reads,
        "read_ratio": read_ratio,
    }
    print_table(
        f"Batched produce, {count:,} x 200-byte messages, best of {args.reps}",
        [
            "audit on msgs/s",
            "audit off msgs/s",
            "on/off",
            "on/off(med)",
            f">= {TARGET_RATIO}",
            "CPU us/msg on",
            "off",
        ],
        [
            [
                f"{max(rates[True]):,.0f}",
                f"{max(rates[False]):,.0f}",
                f"{ratio:.2f}",
                f"{median:.2f}",
                "yes" if ratio >= TARGET_RATIO else "NO, MISSED",
                f"{statistics.median(cpu_us[True]):.2f}",
                f"{statistics.median(cpu_us[False]):.2f}",
            ]
        ],
    )
    print_table(
        "Reading the topic back, best of the reps",
        ["audit's header walk msgs/s", "columnar consumer msgs/s", "walk/consumer"],
        [[f"{max(reads['audit']):,.0f}", f"{max(reads['consumer']):,.0f}", f"{read_ratio:.2f}"]],
    )
    missed = [] if ratio >= TARGET_RATIO else [f"audit on/off {ratio:.2f} < {TARGET_RATIO}"]
    finish(results, missed, "; ", args.json)
    return results


def main() -> int:
    parser = bench_parser(__doc__, "60,000 messages per run")
    add_count_args(parser, "--messages", "messages per run (default 300,000)", "reps (default 3)")
    add_output_args(parser)
    args = parser.parse_args()
    check_count_args(parser, args, "messages")
    return main_in_tmp_dir(args, "audit-bench-", lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
