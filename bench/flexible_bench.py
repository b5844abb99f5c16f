"""What flexible versions (KIP-482) cost: one message per Produce request with Produce v9
(flexible: compact encodings, tagged fields, request header v2 and response header v1) against
v8, and a consumer's Fetch v12 against v11, same broker, same run.

    python bench/flexible_bench.py [--quick] [--messages 30000] [--reps 3] [--json PATH]

What is started: ZooKeeper and one broker (``benchlib.running_broker``) on free ports of
127.0.0.1.  What is measured: our own producer (``consumers.producer.Producer``, in this
process: ``acks=1``, ``linger_ms=0``, ``batch_size=1``, so every message is a batch and a
request of its own, up to 5 in flight) sends ``--messages`` 200-byte values to a fresh
one-partition topic, asking for Produce v8 in one run and v9 in the next (our clients'
version of an API is the registry's ``client_version``: pinned here for the run); then our
``Consumer`` reads the topic back from offset 0 with Fetch v11 and v12.  The versions
alternate (v8 first in even reps, v9 first in odd ones) ``--reps`` times, so a busy moment of
the shared machine hurts both alike.  Reported: the median and best rate of each version, the
ratio flexible/non-flexible of the medians (target >= 0.95 for Produce), the median of the
per-rep ratios, and the broker's CPU per Produce request (utime + stime of its process).
The broker's own count of requests by API and version (its Prometheus page, read once at the
end) must show every run's requests at the version pinned, or the run fails.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchlib import (
    BenchmarkError,
    add_count_args,
    add_output_args,
    bench_parser,
    check_count_args,
    check_delivery,
    create_topic,
    finish,
    header,
    main_in_tmp_dir,
    new_meta,
    payload,
    print_table,
    running_broker,
    stat_cpu,
    wait_for_leader,
)
from prometheus_client.parser import text_string_to_metric_families

from broker.protocol import registry
from broker.protocol.registry import ApiKey
from headrace.devcluster import free_port

TARGET_RATIO = 0.95
PRODUCE_VERSIONS = (8, 9)  # the last non-flexible Produce version, the first flexible one
FETCH_VERSIONS = (11, 12)


@contextmanager
def our_clients_ask(key: ApiKey, version: int) -> Iterator[None]:
    """Our clients in this process ask for ``version`` of API ``key`` while inside."""
    api = registry.API_BY_KEY[key]
    registry.API_BY_KEY[key] = dataclasses.replace(api, client_version=version)
    try:
        yield
    finally:
        registry.API_BY_KEY[key] = api


def produce_run(bootstrap: str, pid: int, topic: str, count: int) -> dict:
    """One message per request: the rate and the broker's CPU per request."""
    from consumers.producer import Producer

    value = payload()
    options = {"acks": 1, "linger_ms": 0, "batch_size": 1}
    with Producer(bootstrap_servers=bootstrap, **options) as producer:
        producer.send(topic, value, partition=0).result(30)  # warm-up: metadata, connection
        cpu0 = stat_cpu(f"/proc/{pid}/stat")
        start = time.perf_counter()
        futures = [producer.send(topic, value, partition=0) for _ in range(count)]
        left = producer.flush(120)
        elapsed = time.perf_counter() - start
        cpu = stat_cpu(f"/proc/{pid}/stat") - cpu0
    errors = [f.exception() for f in (futures[0], futures[-1]) if f.exception() is not None]
    check_delivery(topic, left, errors)
    return {"msgs_per_s": count / elapsed, "broker_cpu_us_per_request": cpu / count * 1e6}


def consume_run(bootstrap: str, topic: str, count: int) -> dict:
    """Read ``count`` messages of partition 0 from the start: the rate."""
    from consumers.consumer import EARLIEST, Consumer

    consumer = Consumer(bootstrap_servers=bootstrap)
    try:
        received = 0
        deadline = time.monotonic() + 120
        start = time.perf_counter()
        consumer.assign([(topic, 0, EARLIEST)])
        while received < count:
            received += len(consumer.poll(1.0))
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{topic}: only {received:,} of {count:,} messages back")
        elapsed = time.perf_counter() - start
    finally:
        consumer.close()
    return {"msgs_per_s": count / elapsed}


def requests_by_version(url: str) -> dict[tuple[str, int], float]:
    """The broker's count of requests received, by (API, version)."""
    with urllib.request.urlopen(url, timeout=10) as page:
        text = page.read().decode()
    return {
        (s.labels["api"], int(s.labels["version"])): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "headrace_requests_total"
    }


def check_versions_used(url: str, count: int, reps: int) -> dict[str, float]:
    """BenchmarkError unless each pinned version reached the broker in every run."""
    counted = requests_by_version(url)
    for api, versions, least in (
        ("Produce", PRODUCE_VERSIONS, count),
        ("Fetch", FETCH_VERSIONS, 1),
    ):
        for version in versions:
            if counted.get((api, version), 0) < least * reps:
                raise BenchmarkError(f"{api} v{version}: {counted.get((api, version), 0)} requests")
    return {f"{api} v{v}": n for (api, v), n in counted.items() if api in ("Produce", "Fetch")}


def compare(runs: dict[int, list[dict]], plain: int, flexible: int) -> dict:
    rates = {v: [r["msgs_per_s"] for r in runs[v]] for v in (plain, flexible)}
    return {
        "runs": runs,
        "median_msgs_per_s": {v: statistics.median(r) for v, r in rates.items()},
        "best_msgs_per_s": {v: max(r) for v, r in rates.items()},
        "ratio": statistics.median(rates[flexible]) / statistics.median(rates[plain]),
        "ratio_of_reps": statistics.median(
            f / p for f, p in zip(rates[flexible], rates[plain], strict=True)
        ),
    }


def run(args, workdir: Path) -> dict:
    count = args.messages or (8_000 if args.quick else 30_000)
    meta = new_meta(args.quick, workdir, messages=count, reps=args.reps)
    print(header("flexible versions", meta))
    produced: dict[int, list[dict]] = {v: [] for v in PRODUCE_VERSIONS}
    fetched: dict[int, list[dict]] = {v: [] for v in FETCH_VERSIONS}
    metrics_port = free_port()
    with running_broker(workdir, meta, {"metrics.port": str(metrics_port)}) as broker:
        pid = broker.process.pid
        for rep in range(args.reps):
            order = (0, 1) if rep % 2 == 0 else (1, 0)
            for i in order:
                produce_version, fetch_version = PRODUCE_VERSIONS[i], FETCH_VERSIONS[i]
                topic = f"flexible-{rep}-v{produce_version}"
                create_topic(broker.port, topic)
                wait_for_leader(broker.port, topic)
                with our_clients_ask(ApiKey.PRODUCE, produce_version):
                    p = produce_run(broker.bootstrap, pid, topic, count)
                with our_clients_ask(ApiKey.FETCH, fetch_version):
                    c = consume_run(broker.bootstrap, topic, count + 1)
                produced[produce_version].append(p)
                fetched[fetch_version].append(c)
                print(
                    f"  rep {rep}: Produce v{produce_version} {p['msgs_per_s']:>9,.0f} msgs/s "
                    f"({p['broker_cpu_us_per_request']:.1f} us broker CPU per request), "
                    f"Fetch v{fetch_version} {c['msgs_per_s']:>10,.0f} msgs/s"
                )
        used = check_versions_used(f"http://127.0.0.1:{metrics_port}/metrics", count, args.reps)
    results = {
        "meta": meta,
        "requests_by_version": used,
        "produce": compare(produced, *PRODUCE_VERSIONS),
        "fetch": compare(fetched, *FETCH_VERSIONS),
    }
    cpu = {
        v: statistics.median(r["broker_cpu_us_per_request"] for r in produced[v])
        for v in PRODUCE_VERSIONS
    }
    results["produce"]["broker_cpu_us_per_request"] = cpu
    rows = []
    for name, (plain, flexible) in (("Produce", PRODUCE_VERSIONS), ("Fetch", FETCH_VERSIONS)):
        r = results[name.lower()]
        rows.append(
            [
                f"{name} v{flexible} / v{plain}",
                f"{r['median_msgs_per_s'][flexible]:,.0f}",
                f"{r['median_msgs_per_s'][plain]:,.0f}",
                f"{r['ratio']:.3f}",
                f"{r['ratio_of_reps']:.3f}",
            ]
        )
    print_table(
        f"{count:,} x 200-byte messages, one per Produce request, median of {args.reps} reps",
        ["versions", "flexible msgs/s", "plain msgs/s", "ratio of medians", "median ratio"],
        rows,
    )
    # CPU time is counted in clock ticks (10 ms): a small run may spend less than one on v8.
    cpu_ratio = f"{cpu[9] / cpu[8]:.3f}" if cpu[8] else "v8 took under one clock tick"
    print(
        f"Broker CPU per Produce request (median): v8 {cpu[8]:.1f} us, v9 {cpu[9]:.1f} us "
        f"({cpu_ratio})"
    )
    missed = []
    if results["produce"]["ratio"] < TARGET_RATIO:
        missed.append(f"Produce v9/v8 {results['produce']['ratio']:.3f} < {TARGET_RATIO}")
    finish(results, missed, "; ", args.json)
    return results


def main() -> int:
    parser = bench_parser(__doc__, "8,000 messages per run")
    add_count_args(parser, "--messages", "per run (default 30,000)", "alternations (default 3)")
    add_output_args(parser)
    args = parser.parse_args()
    check_count_args(parser, args, "messages")
    return main_in_tmp_dir(args, "flexible-bench-", lambda workdir: run(args, workdir))


if __name__ == "__main__":
    sys.exit(main())
