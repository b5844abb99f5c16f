"""``headrace mirror`` throughput against the same producer writing into the target alone,
in the same run, as a ratio.

    .venv/bin/python bench/mirror_bench.py             # 200,000 messages per rep, 3 reps
    .venv/bin/python bench/mirror_bench.py --quick     # 40,000, 2 reps
    .venv/bin/python bench/mirror_bench.py --setups 1x1,1x2,2x1   # processes x workers
    .venv/bin/python bench/mirror_bench.py --before /tmp/old-tree   # also another revision's

One ZooKeeper and two one-broker clusters on it (chroots ``/source`` and ``/target``), on
free ports of 127.0.0.1.  Each rep preloads a fresh 4-partition source topic with N keyed
200-byte messages (untimed), then, alternating which goes first:

- baseline: our ``Producer`` (acks=all, idempotent, linger 5 ms, explicit partition, the same
  keys, values and timestamps) sends the N messages into a fresh target topic; from the first
  ``send`` until ``flush()`` returns;
- mirror: ``headrace mirror`` (a process of its own) copies the source topic into the target;
  the target's log end offsets are sampled every 20 ms, and the rate is the messages between
  10% and 100% of N over that time (the steady copy: start-up, the group's join and the
  topic creation are left out; they are reported apart as ``start s``).

With ``--before DIR`` (a checkout of another revision, e.g. ``git archive REV | tar -x -C
DIR``), every setup is run a second time with that tree's mirror, in the same rep, the two in
alternating order; the ratio of the two mirrors' rates is reported (what a change costs).
Every mirrored partition is checked to end at the source's end.  The ratio mirror/baseline of
messages per second (best over best, and the median of the per-rep ratios) is the result.
Target: >= 0.5.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import repo_root  # noqa: F401  (this tree's code first)

from consumers.cluster import ClusterClient
from consumers.producer import Producer
from headrace.devcluster import BrokerProcess, ZooKeeperProcess, free_port
from headrace.topics import create_topic_simple

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
TARGET_RATIO = 0.5
VALUE = bytes(range(200))


def records(count: int):
    for i in range(count):
        yield i % PARTITIONS, b"key-%d" % i, VALUE, 1_700_000_000_000 + i


def produce(bootstrap: str, topic: str, count: int) -> float:
    """Seconds to send ``count`` messages and flush."""
    with Producer(bootstrap, acks="all", enable_idempotence=True, linger_ms=5) as producer:
        producer.send(topic, b"warm-up", partition=0).result(30)
        start = time.perf_counter()
        for partition, key, value, ts in records(count):
            producer.send(topic, value, key=key, partition=partition, timestamp=ts)
        left = producer.flush(300)
        elapsed = time.perf_counter() - start
    if left:
        raise SystemExit(f"baseline: {left} messages not delivered")
    return elapsed


def preload(bootstrap: str, topic: str, count: int) -> None:
    with Producer(bootstrap, linger_ms=20) as producer:
        for partition, key, value, ts in records(count):
            producer.send(topic, value, key=key, partition=partition, timestamp=ts)
        if producer.flush(300):
            raise SystemExit("preload: not every message was delivered")


def ends(cluster: ClusterClient, topic: str) -> list[int]:
    body = cluster.refresh([topic], allow_auto_create=False)
    if body["topics"][0]["error_code"]:
        return [0] * PARTITIONS
    return [cluster.list_offset(topic, p, -1) for p in range(PARTITIONS)]


def mirror(
    zookeeper: str,
    target: str,
    topic: str,
    count: int,
    workers: int,
    log: Path,
    process_count: int,
    tree: Path = ROOT,
) -> dict:
    """Run ``process_count`` ``headrace mirror`` processes (one group) for one topic until the
    target holds ``count`` messages."""
    command = [
        sys.executable,
        "-m",
        "headrace.cli",
        "--log-level",
        "WARNING",
        "mirror",
        "--from-zookeeper",
        zookeeper,
        "--to-bootstrap-server",
        target,
        "--include",
        topic,
        "--group",
        f"bench-{topic}",
        "--workers",
        str(workers),
    ]
    cluster = ClusterClient(target)
    with open(log, "ab") as out:
        processes = [
            subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tree,
                env=dict(os.environ, PYTHONPATH=str(tree)),
            )
            for _ in range(process_count)
        ]
    started = time.perf_counter()
    t10 = None
    try:
        while True:
            for process in processes:
                if process.poll() is not None:
                    raise SystemExit(f"a mirror exited with {process.returncode}; see {log}")
            try:
                have = sum(ends(cluster, topic))
            except Exception:
                have = 0
            now = time.perf_counter()
            if t10 is None and have >= count // 10:
                t10, at10 = now, have
            if have >= count:
                break
            if now - started > 600:
                raise SystemExit(f"the mirror copied {have} of {count} in 600 s")
            time.sleep(0.02)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(60)
        cluster.close()
    assert t10 is not None
    return {"rate": (count - at10) / (now - t10), "start": t10 - started}


def run_baseline(target: BrokerProcess, name: str, count: int) -> float:
    create_topic_simple(target.bootstrap, name, PARTITIONS)
    return count / produce(target.bootstrap, name, count)


def run_mirrors(zookeeper, source, target, topic: str, count: int, setups, work: Path) -> dict:
    """Mirror ``topic`` with each setup, (processes, workers each) (another copy of the
    source topic for each after the first); checks the target's ends against the source's."""
    results = {}
    for i, (processes, n, tree) in enumerate(setups):
        name = topic if i == 0 else f"{topic}s{i}"
        if i:
            create_topic_simple(source.bootstrap, name, PARTITIONS)
            preload(source.bootstrap, name, count)
        got = mirror(
            f"{zookeeper.connect}/source",
            target.bootstrap,
            name,
            count,
            n,
            work / "mirror.log",
            processes,
            tree or ROOT,
        )
        source_cluster, target_cluster = (
            ClusterClient(source.bootstrap),
            ClusterClient(target.bootstrap),
        )
        try:
            if ends(source_cluster, name) != ends(target_cluster, name):
                raise SystemExit(f"{name}: the target's ends differ from the source's")
        finally:
            source_cluster.close()
            target_cluster.close()
        results[_label(processes, n, tree)] = got
    return results


def _label(processes: int, workers: int, tree: Path | None = None) -> str:
    return f"{processes}x{workers}" + ("" if tree is None else "-before")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000, help="messages per rep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="40,000 messages, 2 reps")
    parser.add_argument(
        "--setups",
        default="1x1",
        help="mirror processes x workers each to try, e.g. 1x1,1x2,2x1 (default 1x1)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of another revision: its mirror runs each setup too (same run)",
    )
    args = parser.parse_args()
    if args.quick:
        args.count, args.reps = 40_000, 2
    setups: list = []
    for setup in args.setups.split(","):
        processes, workers = (int(n) for n in setup.split("x"))
        setups.append((processes, workers, None))
        if args.before is not None:
            setups.append((processes, workers, args.before.resolve()))
    os.environ["PYTHONPATH"] = str(ROOT)
    work = Path(tempfile.mkdtemp(prefix="mirror-bench-", dir=ROOT / "bench"))
    zookeeper = ZooKeeperProcess(work / "zookeeper", free_port())
    brokers: list[BrokerProcess] = []
    rows = []
    try:
        zookeeper.start(timeout=60)
        for name in ("source", "target"):
            broker = BrokerProcess(
                work / name,
                1,
                f"{zookeeper.connect}/{name}",
                free_port(),
                overrides={"auto.create.topics.enable": "false"},
            )
            broker.start(timeout=60)
            brokers.append(broker)
        source, target = brokers
        for rep in range(args.reps):
            topic = f"bench{rep}"
            create_topic_simple(source.bootstrap, topic, PARTITIONS)
            preload(source.bootstrap, topic, args.count)
            results: dict = {}
            for part in ("baseline", "mirror") if rep % 2 == 0 else ("mirror", "baseline"):
                if part == "baseline":
                    results["baseline"] = run_baseline(target, f"baseline{rep}", args.count)
                else:
                    order = setups if rep % 2 == 0 else setups[::-1]
                    results.update(
                        run_mirrors(zookeeper, source, target, topic, args.count, order, work)
                    )
            rows.append(results)
            cells = [f"{results['baseline']:>10,.0f}"]
            for setup in setups:
                r = results[_label(*setup)]
                cells.append(
                    f"{_label(*setup)} {r['rate']:>9,.0f} msg/s ratio "
                    f"{r['rate'] / results['baseline']:.2f} (start {r['start']:.1f} s)"
                )
            print(f"rep {rep}: baseline {cells[0]} msg/s | " + " | ".join(cells[1:]), flush=True)
    finally:
        for broker in brokers:
            broker.stop()
        zookeeper.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    best_base = max(r["baseline"] for r in rows)
    print(f"\nmirror throughput against produce into the target alone, {args.count:,} x 200 B")
    met = True
    for setup in setups:
        label = _label(*setup)
        rates = [r[label]["rate"] for r in rows]
        best = max(rates) / best_base
        median = statistics.median(r[label]["rate"] / r["baseline"] for r in rows)
        ok = best >= TARGET_RATIO
        met &= ok
        print(
            f"  {label}: best {max(rates):,.0f} msg/s against {best_base:,.0f}: ratio "
            f"{best:.2f} (median of reps {median:.2f}); target >= {TARGET_RATIO}: "
            f"{'yes' if ok else 'NO, MISSED'}"
        )
    for processes, workers, tree in setups:
        if tree is None:
            continue
        now, before = _label(processes, workers), _label(processes, workers, tree)
        per_rep = [r[now]["rate"] / r[before]["rate"] for r in rows]
        print(
            f"  {now} against the same setup of {tree}: best over best "
            f"{max(r[now]['rate'] for r in rows) / max(r[before]['rate'] for r in rows):.3f}, "
            f"median of reps {statistics.median(per_rep):.3f} "
            f"({', '.join(f'{x:.3f}' for x in per_rep)})"
        )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
