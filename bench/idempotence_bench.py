"""Batched produce with idempotence on against off, same broker, same run, as ratios.

    .venv/bin/python bench/idempotence_bench.py            # 300,000 messages per run
    .venv/bin/python bench/idempotence_bench.py --quick    # 60,000

For confluent-kafka (``enable.idempotence``) and our Producer (``enable_idempotence``), each
rep produces the same count of 200-byte messages to a fresh one-partition topic with the
setting on and with it off (alternating which goes first), acks=all, default batching, timed
after one warm-up message (metadata, connection, producer id); the log is checked to hold
exactly the messages sent.  The ratio on/off of messages per second
(best over best, and the median of the per-rep ratios) is what the broker's producer-state
check and the client's numbering cost.  Target: >= 0.8.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from benchlib import (
    add_output_args,
    check_delivery,
    check_log,
    close_rdkafka_producer,
    create_topic,
    finish,
    header,
    main_in_tmp_dir,
    ours_produce_timed,
    payload,
    platform_meta,
    print_table,
    running_broker,
    wait_for_leader,
)

TARGET_RATIO = 0.8


def produce_confluent(bootstrap: str, topic: str, count: int, idempotent: bool) -> float:
    from confluent_kafka import Producer

    value = payload()
    errors: list = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": idempotent,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    finished = False
    try:
        producer.produce(topic, value)  # warm-up: metadata, connection, producer id
        producer.flush(30)
        start = time.perf_counter()
        for _ in range(count):
            while True:
                try:
                    producer.produce(
                        topic, value, on_delivery=lambda err, _m: err and errors.append(err)
                    )
                    break
                except BufferError:
                    producer.poll(0.005)
        left = producer.flush(120)
        elapsed = time.perf_counter() - start
        finished = True
    finally:
        close_rdkafka_producer(producer, finished)
    check_delivery(f"confluent idempotence={idempotent}", left, errors)
    return elapsed


def produce_ours(bootstrap: str, topic: str, count: int, idempotent: bool) -> float:
    return ours_produce_timed(
        bootstrap, topic, count, f"headrace idempotence={idempotent}", enable_idempotence=idempotent
    )


CLIENTS = {"confluent-kafka": produce_confluent, "headrace": produce_ours}


def run(args, workdir: Path) -> dict:
    count = 60_000 if args.quick else args.messages
    meta = {
        "mode": "quick" if args.quick else "full",
        **platform_meta(),
        "messages": count,
        "reps": args.reps,
    }
    print(header("idempotence", meta))
    results: dict = {"meta": meta, "clients": {}}
    with running_broker(workdir, meta) as broker:
        for client, produce in CLIENTS.items():
            rates: dict[bool, list[float]] = {True: [], False: []}
            for rep in range(args.reps):
                order = (True, False) if rep % 2 == 0 else (False, True)
                for idempotent in order:
                    topic = f"{client}-{'on' if idempotent else 'off'}-{rep}"
                    create_topic(broker.port, topic)
                    wait_for_leader(broker.port, topic)
                    elapsed = produce(broker.bootstrap, topic, count, idempotent)
                    check_log(broker, f"{client} idempotence={idempotent}", topic, count + 1)
                    rates[idempotent].append(count / elapsed)
                    print(
                        f"  {client} idempotence {'on ' if idempotent else 'off'}: "
                        f"{count / elapsed:>10,.0f} msgs/s"
                    )
            ratios = [on / off for on, off in zip(rates[True], rates[False])]
            results["clients"][client] = {
                "on_msgs_s": rates[True],
                "off_msgs_s": rates[False],
                "ratio": max(rates[True]) / max(rates[False]),
                "ratio_median": statistics.median(ratios),
            }
    rows, missed = [], []
    for client, r in results["clients"].items():
        met = r["ratio"] >= TARGET_RATIO
        rows.append(
            [
                client,
                f"{max(r['on_msgs_s']):,.0f}",
                f"{max(r['off_msgs_s']):,.0f}",
                f"{r['ratio']:.2f}",
                f"{r['ratio_median']:.2f}",
                "yes" if met else "NO, MISSED",
            ]
        )
        if not met:
            missed.append(f"{client} on/off {r['ratio']:.2f} < {TARGET_RATIO}")
    print_table(
        f"Batched produce, {count:,} x 200-byte messages, best of {args.reps}",
        ["client", "on msgs/s", "off msgs/s", "on/off", "on/off(med)", f">= {TARGET_RATIO}"],
        rows,
    )
    finish(results, missed, "; ", args.json)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60,000 messages per run")
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--reps", type=int, default=3)
    add_output_args(parser)
    args = parser.parse_args()
    return main_in_tmp_dir(args, "idempotence-bench-", lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
