"""What one Produce request costs the broker, against the least a Twisted server can do.

    python bench/request_bench.py [--messages 60000] [--reps 3] [--metrics] [--json PATH]

In one run: confluent-kafka produces ``--messages`` 200-byte values one message per request
(``batch.num.messages=1``, ``linger.ms=0``, ``acks=1``; requests pipelined as librdkafka
does) to partition 0, first against ``bench/ceiling_server.py`` (answers every Produce with
a fixed success without decoding or storing; a child process), then against a real headrace
broker (ZooKeeper and one broker from ``headrace.devcluster``), alternating, ``--reps`` times.
Reported: each server's rate (best and median), the ratio headrace/ceiling of the best rates,
and each server's CPU per request (utime + stime from ``/proc/<pid>/stat`` over the run, all
threads, and its main thread alone, which runs the reactor).  The machine is shared, so read
the ratio, and the load average printed with it, not the absolute rates.

``--metrics`` compares the broker with its Prometheus page off (no ``metrics.port``) against
on (scraped after each run, as Prometheus would), instead of the ceiling: two brokers, each
on its own ZooKeeper, alternating; the target is at most 5% more CPU per request with it on
(the median of each rep's on/off ratio).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from itertools import repeat
from pathlib import Path

from benchlib import (
    BenchmarkError,
    add_output_args,
    check_delivery,
    close_rdkafka_producer,
    create_topics,
    finish,
    gc_paused,
    header,
    main_in_tmp_dir,
    payload,
    platform_meta,
    print_table,
    running_broker,
    stat_cpu,
)
from confluent_kafka import Producer

from headrace.devcluster import free_port

TARGET_RATIO = 0.6
TARGET_METRICS_CPU_RATIO = 1.05
CEILING = Path(__file__).resolve().parent / "ceiling_server.py"


def produce_run(bootstrap: str, pid: int, topic: str, count: int) -> dict:
    """Produce ``count`` one-message requests; rate and the server's CPU per request."""
    errors: list = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "batch.num.messages": 1,
            "linger.ms": 0,
            "acks": 1,
            "queue.buffering.max.messages": count + 1000,
            "queue.buffering.max.kbytes": 2_097_151,
            "delivery.report.only.error": True,
            "on_delivery": lambda err, _msg: errors.append(err),
        }
    )
    value = payload()
    finished = False
    try:
        producer.list_topics(topic, timeout=10)
        produce, poll = producer.produce, producer.poll
        with gc_paused():
            cpu0 = stat_cpu(f"/proc/{pid}/stat")
            main0 = stat_cpu(f"/proc/{pid}/task/{pid}/stat")
            start = time.perf_counter()
            for _ in repeat(None, count):
                try:
                    produce(topic, value, partition=0)
                except BufferError:
                    poll(0.005)
                    produce(topic, value, partition=0)
            left = producer.flush(60 + count / 2000)
            elapsed = time.perf_counter() - start
            cpu = stat_cpu(f"/proc/{pid}/stat") - cpu0
            main = stat_cpu(f"/proc/{pid}/task/{pid}/stat") - main0
        finished = left == 0
    finally:
        close_rdkafka_producer(producer, finished)
    check_delivery(topic, left, errors)
    return {
        "msgs_per_s": count / elapsed,
        "seconds": elapsed,
        "cpu_us_per_request": cpu / count * 1e6,
        "reactor_cpu_us_per_request": main / count * 1e6,
        "server_cpu_share": cpu / elapsed,
    }


def start_ceiling() -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(CEILING), "--port", str(port)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    line = process.stdout.readline()
    if line.strip() != b"ready":
        process.kill()
        raise BenchmarkError(f"ceiling server did not start: {line!r}")
    return process, port


def summary(runs: list[dict]) -> dict:
    best = max(runs, key=lambda r: r["msgs_per_s"])
    return {
        "runs": runs,
        "best_msgs_per_s": best["msgs_per_s"],
        "median_msgs_per_s": statistics.median(r["msgs_per_s"] for r in runs),
        "cpu_us_per_request": min(r["cpu_us_per_request"] for r in runs),
        "reactor_cpu_us_per_request": min(r["reactor_cpu_us_per_request"] for r in runs),
        "server_cpu_share": best["server_cpu_share"],
    }


def run(args, workdir: Path, meta: dict) -> dict:
    ceiling_runs, headrace_runs = [], []
    ceiling, ceiling_port = start_ceiling()
    try:
        with running_broker(workdir, meta) as broker:
            topics = [f"request-bench-{i}" for i in range(args.reps)]
            create_topics(broker, {"bench": topics})
            for rep in range(args.reps):
                ceiling_runs.append(
                    produce_run(
                        f"127.0.0.1:{ceiling_port}", ceiling.pid, f"ceiling-{rep}", args.messages
                    )
                )
                headrace_runs.append(
                    produce_run(broker.bootstrap, broker.process.pid, topics[rep], args.messages)
                )
    finally:
        ceiling.kill()
        ceiling.wait()
    results = {"ceiling": summary(ceiling_runs), "headrace": summary(headrace_runs)}
    results["ratio"] = (
        results["headrace"]["best_msgs_per_s"] / results["ceiling"]["best_msgs_per_s"]
    )
    results["ratio_median"] = (
        results["headrace"]["median_msgs_per_s"] / results["ceiling"]["median_msgs_per_s"]
    )
    results["cpu_ratio"] = (
        results["headrace"]["cpu_us_per_request"] / results["ceiling"]["cpu_us_per_request"]
    )
    return results


def run_metrics(args, workdir: Path, meta: dict) -> dict:
    """The same Produce runs against a broker without metrics and one serving them."""
    runs: dict[str, list[dict]] = {"metrics off": [], "metrics on": []}
    topics = [f"request-bench-{i}" for i in range(args.reps)]
    metrics_port = free_port()
    with (
        running_broker(workdir / "off", meta) as off,
        running_broker(workdir / "on", meta, {"metrics.port": str(metrics_port)}) as on,
    ):
        for broker in (off, on):
            create_topics(broker, {"bench": topics})
        for rep in range(args.reps):
            pair = [("metrics off", off), ("metrics on", on)]
            for name, broker in pair if rep % 2 == 0 else pair[::-1]:  # neither always first
                runs[name].append(
                    produce_run(broker.bootstrap, broker.process.pid, topics[rep], args.messages)
                )
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/", timeout=10) as page:
                page.read()
    results = {name: summary(r) for name, r in runs.items()}
    # Each rep's two runs are neighbours in time, so their ratio shares the machine's load.
    results["cpu_ratio"] = statistics.median(
        on["cpu_us_per_request"] / off["cpu_us_per_request"]
        for off, on in zip(runs["metrics off"], runs["metrics on"])
    )
    results["cpu_ratio_best"] = (
        results["metrics on"]["cpu_us_per_request"] / results["metrics off"]["cpu_us_per_request"]
    )
    results["reactor_cpu_ratio"] = (
        results["metrics on"]["reactor_cpu_us_per_request"]
        / results["metrics off"]["reactor_cpu_us_per_request"]
    )
    return results


def report_metrics(args, results: dict, load) -> list[str]:
    """Print the metrics on/off table and ratios; the targets missed."""
    print_table(
        f"One message per Produce request, {args.messages:,} x {args.reps}",
        ["broker", "msgs/s", "msgs/s(med)", "cpu us/req", "reactor us/req", "server cpu"],
        [_row(name, results[name]) for name in ("metrics off", "metrics on")],
    )
    met = results["cpu_ratio"] <= TARGET_METRICS_CPU_RATIO
    print(
        f"\nCPU per request with metrics on/off: {results['cpu_ratio']:.3f} (median of the "
        f"reps' ratios; {results['cpu_ratio_best']:.3f} best against best, "
        f"{results['reactor_cpu_ratio']:.3f} reactor thread best against best) (target <= "
        f"{TARGET_METRICS_CPU_RATIO}: {'met' if met else 'missed'}); load average before "
        f"{load[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    return [] if met else [f"metrics CPU ratio <= {TARGET_METRICS_CPU_RATIO}"]


def _row(name: str, r: dict) -> list[str]:
    return [
        name,
        f"{r['best_msgs_per_s']:,.0f}",
        f"{r['median_msgs_per_s']:,.0f}",
        f"{r['cpu_us_per_request']:.1f}",
        f"{r['reactor_cpu_us_per_request']:.1f}",
        f"{r['server_cpu_share']:.0%}",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=60_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--metrics", action="store_true", help="metrics off against on, not the ceiling"
    )
    add_output_args(parser)
    args = parser.parse_args(argv)
    meta = platform_meta()
    meta["mode"] = f"{args.messages:,} messages x {args.reps}"
    print(header("request", meta))

    def go(workdir: Path) -> dict:
        load = os.getloadavg()
        if args.metrics:
            results = run_metrics(args, workdir, meta)
            missed = report_metrics(args, results, load)
            meta["load_before"], meta["load_after"] = load, os.getloadavg()
            results["meta"] = meta
            finish(results, missed, ", ", args.json)
            return results
        results = run(args, workdir, meta)
        rows = [_row(name, results[name]) for name in ("ceiling", "headrace")]
        print_table(
            f"One message per Produce request, {args.messages:,} x {args.reps}",
            ["server", "msgs/s", "msgs/s(med)", "cpu us/req", "reactor us/req", "server cpu"],
            rows,
        )
        met = results["ratio"] >= TARGET_RATIO
        print(
            f"\nratio headrace/ceiling: {results['ratio']:.2f} best, "
            f"{results['ratio_median']:.2f} median (target >= {TARGET_RATIO}: "
            f"{'met' if met else 'missed'}); CPU per request headrace/ceiling "
            f"{results['cpu_ratio']:.1f}; load average before "
            f"{load[0]:.2f}, after {os.getloadavg()[0]:.2f}"
        )
        meta["load_before"], meta["load_after"] = load, os.getloadavg()
        results["meta"] = meta
        finish(results, [] if met else [f"ratio >= {TARGET_RATIO}"], ", ", args.json)
        return results

    return main_in_tmp_dir(args, "request-bench-", go)


if __name__ == "__main__":
    sys.exit(main())
