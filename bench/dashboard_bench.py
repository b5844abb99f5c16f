"""The dashboard's cost on the brokers, and its aggregate consumer's own rate.

    .venv/bin/python bench/dashboard_bench.py            # 200,000 messages per run, 3 reps
    .venv/bin/python bench/dashboard_bench.py --quick    # 50,000

Three brokers; each rep produces the same count of a ~100-byte JSON access event (batched,
confluent-kafka, acks=all) to a fresh 6-partition topic twice: with ``headrace dashboard``
running and a page's worth of streams open on the topic (``/api/events``, a live tail and a
windowed count of status classes), and without any dashboard (alternating which goes first).
The ratio of messages per second (best over best, and the median of the per-rep ratios) is
what the dashboard costs the brokers.  Target: >= 0.9.  Then the aggregate consumer alone
(``consumers.feeds.AggregateFeed`` feeding a ``WindowedCounter``, in this process) reads a
topic already holding the events: its rate in events per second.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import repo_root
from benchlib import (
    BenchmarkError,
    CpuMeter,
    add_count_args,
    add_output_args,
    bench_parser,
    check_count_args,
    check_delivery,
    close_rdkafka_producer,
    finish,
    header,
    main_in_tmp_dir,
    platform_meta,
    print_table,
    rdkafka_produce_timed,
    running_cluster,
    stat_cpu,
)

from consumers.feeds import AggregateFeed, WindowedCounter
from headrace.devcluster import free_port
from headrace.topics import create_topic_simple

TARGET_RATIO = 0.9
PARTITIONS = 6


EVENT = json.dumps(
    {"ts": 1_796_652_000, "status": 503, "path": "/item/42", "bytes": 1234, "ip": "10.0.7.1"}
).encode()  # one JSON access event, sent as every message


def produce(bootstrap: str, topic: str, count: int, broker_pid: int) -> float:
    """Seconds to produce ``count`` events (after a warm-up message) and flush them."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    finished = False
    try:
        producer.produce(topic, EVENT)  # warm-up: metadata and connections
        producer.flush(30)
        meter = CpuMeter(broker_pid, lambda used: "")
        timed = rdkafka_produce_timed(producer, topic, EVENT, count, meter, pause_gc=False)
        finished = True
    finally:
        close_rdkafka_producer(producer, finished)
    check_delivery(f"produce to {topic}", timed.left, [])
    return timed.end - timed.start


class Dashboard:
    """``headrace dashboard`` (this tree's) with a page's streams open on one topic, each
    read to the end by a thread of its own."""

    def __init__(self, workdir: Path, zookeeper: str, topic: str):
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(repo_root.ROOT)}
        command = [sys.executable, "-m", "headrace.cli", "--log-level", "WARNING", "dashboard"]
        command += ["--zookeeper", zookeeper, "--port", str(self.port)]
        with open(workdir / "dashboard.out", "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.responses = []
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/topics", timeout=5).read()
                if topic.encode() in urllib.request.urlopen(f"{url}/api/topics").read():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchmarkError("the dashboard did not start (see dashboard.out)")
            time.sleep(0.2)
        flowing = []
        for path, first in (
            ("/api/events", b"event: topics"),
            (f"/api/tail?topic={topic}", b"event: status"),
            (f"/api/aggregate?topic={topic}&field=status&window=600&classes=1", b"event: window"),
        ):
            response = urllib.request.urlopen(url + path, timeout=60)
            self.responses.append(response)
            flowing.append(threading.Event())
            threading.Thread(
                target=self._drain, args=(response, first, flowing[-1]), daemon=True
            ).start()
        for event in flowing:  # every stream under way before anything is measured
            if not event.wait(30):
                raise BenchmarkError("a dashboard stream sent nothing in 30 s")

    @staticmethod
    def _drain(response, first: bytes, flowing: threading.Event) -> None:
        try:
            while line := response.readline():
                if line.startswith(first):
                    flowing.set()
        except (OSError, ValueError, AttributeError):
            pass

    def cpu(self) -> float:
        """CPU seconds the dashboard process has used."""
        return stat_cpu(f"/proc/{self.process.pid}/stat")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        for response in self.responses:
            response.close()


def aggregate_rate(zookeeper: str, topic: str, count: int) -> float:
    """Events per second the aggregate consumer reads, from the start of ``topic``."""
    counter = WindowedCounter("status", 7 * 86_400, classes=True)
    feed = AggregateFeed(counter, topic, zookeeper, group=f"bench-aggregate-{time.time_ns()}")
    start = time.perf_counter()
    thread = threading.Thread(target=feed.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while counter.read < count:
        if time.monotonic() > deadline:
            raise BenchmarkError(f"the aggregate read {counter.read} of {count} events")
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    feed.stop()
    thread.join(10)
    return count / elapsed


def run(args, workdir: Path) -> dict:
    count = args.messages or (50_000 if args.quick else 200_000)
    meta = {"mode": "quick" if args.quick else "full", **platform_meta(), "messages": count}
    meta["reps"] = args.reps
    meta["load_before"] = os.getloadavg()
    print(header("dashboard", meta))
    results: dict = {"meta": meta}
    rates: dict[bool, list[float]] = {True: [], False: []}
    dashboard_cpu: list[float] = []  # CPU seconds of the dashboard per second of producing
    with running_cluster(workdir, meta, 3) as brokers:
        first = brokers[1]
        zookeeper = f"{first.zookeeper_connect}"
        bootstrap = ",".join(b.bootstrap for b in brokers.values())
        for rep in range(args.reps):
            for with_dashboard in (True, False) if rep % 2 == 0 else (False, True):
                topic = f"{'with' if with_dashboard else 'without'}-{rep}"
                create_topic_simple(first.bootstrap, topic, PARTITIONS)
                dashboard = Dashboard(workdir, zookeeper, topic) if with_dashboard else None
                try:
                    cpu = dashboard.cpu() if dashboard is not None else 0.0
                    elapsed = produce(bootstrap, topic, count, first.process.pid)
                    if dashboard is not None:
                        cpu = dashboard.cpu() - cpu
                        dashboard_cpu.append(cpu / elapsed)
                finally:
                    if dashboard is not None:
                        dashboard.stop()
                rates[with_dashboard].append(count / elapsed)
                print(
                    f"  {'with   ' if with_dashboard else 'without'} dashboard: "
                    f"{count / elapsed:>10,.0f} msgs/s"
                    + (f"  (dashboard busy {cpu / elapsed:.0%} of a CPU)" if dashboard else "")
                )
        aggregate = aggregate_rate(zookeeper, "without-0", count + 1)
    ratios = [w / wo for w, wo in zip(rates[True], rates[False])]
    results.update(
        with_msgs_s=rates[True],
        without_msgs_s=rates[False],
        ratio=max(rates[True]) / max(rates[False]),
        ratio_median=statistics.median(ratios),
        aggregate_events_s=aggregate,
        dashboard_cpu_share=dashboard_cpu,
    )
    meta["load_after"] = os.getloadavg()
    met = results["ratio"] >= TARGET_RATIO
    print_table(
        f"Batched produce to 3 brokers, {count:,} JSON events, best of {args.reps}",
        ["with msgs/s", "without msgs/s", "with/without", "median", f">= {TARGET_RATIO}"],
        [
            [
                f"{max(rates[True]):,.0f}",
                f"{max(rates[False]):,.0f}",
                f"{results['ratio']:.2f}",
                f"{results['ratio_median']:.2f}",
                "yes" if met else "NO, MISSED",
            ]
        ],
    )
    print(f"aggregate consumer alone: {aggregate:,.0f} events/s ({count + 1:,} events)")
    print(f"the dashboard's CPU while producing: {statistics.median(dashboard_cpu):.0%} of a CPU")
    missed = [] if met else [f"with/without {results['ratio']:.2f} < {TARGET_RATIO}"]
    finish(results, missed, "; ", args.json)
    return results


def main() -> int:
    parser = bench_parser(__doc__, quick="50,000 events per run")
    add_count_args(parser, "--messages", "events per run (default 200,000)", "reps (default 3)")
    add_output_args(parser)
    args = parser.parse_args()
    check_count_args(parser, args, "messages")
    return main_in_tmp_dir(args, "dashboard-bench-", lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
