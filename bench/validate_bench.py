"""What the broker's record check costs: batched produce with the check on against the check off,
same run, same machine.

Run from the repository root::

    .venv/bin/python bench/validate_bench.py            # 500,000 messages per run, ~1-2 min
    .venv/bin/python bench/validate_bench.py --quick    # 100,000 messages per run
    .venv/bin/python bench/validate_bench.py --json results.json

What is started
---------------
Two ZooKeeper + one-broker pairs (``benchlib.running_broker``) on free ports of 127.0.0.1: the
first broker checks records as every broker does (``broker/protocol/validate.py``: the body
decompresses, the framing matches the header); the second is started with the bench-only
environment variable ``HEADRACE_BENCH_UNCHECKED_RECORDS=1`` and checks only each batch's
header and CRC, as brokers did before.  Nothing else differs.

What is measured
----------------
confluent-kafka (librdkafka) in this process produces ``--messages`` 200-byte values to a
fresh one-partition topic with librdkafka's default batching (``bench/broker_bench.py``'s
produce test 1), once per codec (none, lz4, zstd), timed from the first ``produce()`` until
``flush()`` returns.  The runs alternate between the two brokers (checked, unchecked, checked,
...) ``--reps`` times (default 3), so a busy moment of the machine hurts both alike.  Reported
per codec: the best msgs/s of each, the ratio checked/unchecked of the best runs and the
median of the per-rep ratios, and the checked broker's reactor CPU share.

Target: checked/unchecked >= 0.8 for every codec.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from benchlib import (
    BenchmarkError,
    CpuMeter,
    add_count_args,
    add_output_args,
    bench_parser,
    check_count_args,
    create_topics,
    finish,
    header,
    main_in_tmp_dir,
    new_meta,
    print_table,
    running_broker,
    step,
    verdict,
)
from broker_bench import bench_produce, bottleneck
from confluent_kafka import KafkaException
from confluent_kafka import libversion as librdkafka_version

UNCHECKED = "HEADRACE_BENCH_UNCHECKED_RECORDS"
CODECS = ("none", "lz4", "zstd")
TARGET_RATIO = 0.8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = bench_parser(__doc__, "100,000 messages per run")
    add_count_args(
        parser,
        "--messages",
        "messages per run (default 500,000; quick 100,000)",
        "runs per codec and broker, alternating (default 3)",
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    check_count_args(parser, args, "messages")
    args.messages = args.messages or (100_000 if args.quick else 500_000)
    return args


def run(args: argparse.Namespace, workdir: Path, meta: dict) -> dict:
    topics = {codec: [f"produce-{codec}-{i}" for i in range(args.reps)] for codec in CODECS}
    with running_broker(workdir / "checked", meta) as checked:
        os.environ[UNCHECKED] = "1"
        try:
            unchecked_cm = running_broker(workdir / "unchecked", {})
            unchecked = unchecked_cm.__enter__()
        finally:
            del os.environ[UNCHECKED]
        try:
            brokers = {"checked": checked, "unchecked": unchecked}
            for broker in brokers.values():
                create_topics(broker, topics)
            meters = {name: CpuMeter(b.process.pid, bottleneck) for name, b in brokers.items()}
            rows = []
            for codec in CODECS:
                runs: dict[str, list[dict]] = {"checked": [], "unchecked": []}

                def one_codec(codec=codec, runs=runs):
                    for i in range(args.reps):
                        for name, broker in brokers.items():
                            runs[name].append(
                                bench_produce(
                                    f"produce {codec}, {name}",
                                    broker,
                                    meters[name],
                                    topics[codec][i],
                                    args.messages,
                                    {"compression.type": codec},
                                    None,
                                    None,
                                )
                            )

                step(
                    f"producing {args.messages:,} messages, {codec}, checked/unchecked x "
                    f"{args.reps}",
                    one_codec,
                )
                best = {name: max(r["msgs_per_s"] for r in rs) for name, rs in runs.items()}
                ratios = [
                    a["msgs_per_s"] / b["msgs_per_s"]
                    for a, b in zip(runs["checked"], runs["unchecked"])
                ]
                top = max(runs["checked"], key=lambda r: r["msgs_per_s"])
                rows.append(
                    {
                        "codec": codec,
                        "messages": args.messages,
                        "checked_msgs_per_s": best["checked"],
                        "unchecked_msgs_per_s": best["unchecked"],
                        "ratio": best["checked"] / best["unchecked"],
                        "ratio_median": statistics.median(ratios),
                        "msgs_per_request": top["msgs_per_request"],
                        "checked_reactor_cpu_share": top["cpu"]["broker_reactor_cpu_share"],
                        "other_cpu_share": top["cpu"]["other_cpu_share"],
                        "runs": runs,
                    }
                )
            return {"meta": meta, "tests": rows}
        finally:
            unchecked_cm.__exit__(None, None, None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def start(workdir: Path) -> dict:
        meta = new_meta(args.quick, workdir, librdkafka=librdkafka_version()[0])
        print(f"{header('validate', meta)}, librdkafka {meta['librdkafka']}")
        print(
            "Batched produce (confluent-kafka, 200-byte values) to a broker that checks records "
            "and to one that does not, alternating."
        )
        return run(args, workdir, meta)

    return main_in_tmp_dir(
        args,
        "validate-bench-",
        start,
        (BenchmarkError, KafkaException, RuntimeError),
        lambda results: report(results, args.json),
    )


def report(results: dict, json_path: str | None) -> None:
    rows = results["tests"]
    print_table(
        "Record check: checked / unchecked broker, same run",
        [
            "codec",
            "checked msgs/s",
            "unchecked msgs/s",
            "ratio",
            "ratio(med)",
            "msgs/request",
            "reactor CPU",
            "target >= 0.8",
        ],
        [
            [
                r["codec"],
                f"{r['checked_msgs_per_s']:,.0f}",
                f"{r['unchecked_msgs_per_s']:,.0f}",
                f"{r['ratio']:.2f}",
                f"{r['ratio_median']:.2f}",
                f"{r['msgs_per_request']:,.0f}",
                f"{r['checked_reactor_cpu_share']:.0%}",
                verdict(r["ratio"] >= TARGET_RATIO, r["ratio_median"] >= TARGET_RATIO, "ratio"),
            ]
            for r in rows
        ],
    )
    missed = [
        f"record check, {r['codec']} (ratio {r['ratio']:.2f})"
        for r in rows
        if r["ratio"] < TARGET_RATIO
    ]
    for r in rows:
        for runs in r["runs"].values():
            for one in runs:
                one.pop("config", None)
    finish(results, missed, "; ", json_path)


if __name__ == "__main__":
    sys.exit(main())
