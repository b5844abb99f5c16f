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
  keys, values and timestamps) sends the N messages into a fresh target topic, from a thread
  of the bench process;
- mirror: ``headrace mirror`` (a process of its own) copies the source topic into the target.

Both are timed from when they start their per-message work to when the target's log end
offsets (sampled every 20 ms) show all N messages; start-up is left out of both and
reported apart as ``start s``.  The baseline starts at its first timed ``send`` (after a
warm-up message that connects the producer and sets up its producer id).  The mirror starts
at its first copied message (the last sample showing none of them in the target): what
comes before is start-up (the process, the group's join, the topic's creation, the resume
scan), save the reading and copying of its first batch, which favours it by one batch.  The
baseline's first message cannot mark its start the same way: the bench's thread queues
records faster than the producer's sender ships them, so most of its per-message work is
done before the first arrives, and "first message to last" overstated it up to twice.

With ``--before DIR`` (a checkout of another revision, e.g. ``git archive REV | tar -x -C
DIR``), every setup is run a second time with that tree's mirror, in the same rep, the two in
alternating order; the ratio of the two mirrors' rates is reported (what a change costs).
Every mirrored partition is checked to end at the source's end.  The ratio mirror/baseline of
messages per second (best over best, and the median of the per-rep ratios) is the result.
Target: >= 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
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


def produce(bootstrap: str, topic: str, count: int, began: list, failed: list) -> None:
    """Send ``count`` messages and flush (in a thread: ``watch`` times it); ``began`` gets
    the time of the first timed ``send``, after a warm-up message that connects."""
    try:
        with Producer(bootstrap, acks="all", enable_idempotence=True, linger_ms=5) as producer:
            producer.send(topic, b"warm-up", partition=0).result(30)
            began.append(time.perf_counter())
            for partition, key, value, ts in records(count):
                producer.send(topic, value, key=key, partition=partition, timestamp=ts)
            left = producer.flush(300)
        if left:
            failed.append(f"baseline: {left} messages not delivered")
    except Exception as exc:  # said by the caller
        failed.append(f"baseline: {exc!r}")


def watch(cluster: ClusterClient, topic: str, count: int, check, base: int = 0) -> dict:
    """Sample the target's ends every 20 ms until they hold ``base + count`` messages
    (``check()`` raises if the writer died): the time of the last sample that showed none
    of the ``count`` and of the first that shows them all."""
    started = last_empty = time.perf_counter()
    while True:
        check()
        try:
            have = sum(ends(cluster, topic)) - base
        except Exception:
            have = 0
        now = time.perf_counter()
        if have <= 0:
            last_empty = now
        if have >= count:
            break
        if now - started > 600:
            raise SystemExit(f"{topic}: the target holds {have} of {count} after 600 s")
        time.sleep(0.02)
    return {"started": started, "first": last_empty, "last": now}


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

    def check() -> None:
        for process in processes:
            if process.poll() is not None:
                raise SystemExit(f"a mirror exited with {process.returncode}; see {log}")

    try:
        seen = watch(cluster, topic, count, check)
        return {
            "rate": count / (seen["last"] - seen["first"]),
            "start": seen["first"] - seen["started"],
        }
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(60)
        cluster.close()


def run_baseline(target: BrokerProcess, name: str, count: int) -> dict:
    create_topic_simple(target.bootstrap, name, PARTITIONS)
    failed: list[str] = []
    began: list[float] = []
    sender = threading.Thread(target=produce, args=(target.bootstrap, name, count, began, failed))
    cluster = ClusterClient(target.bootstrap)

    def check() -> None:
        if failed:
            raise SystemExit(failed[0])

    sender.start()
    try:
        seen = watch(cluster, name, count, check, base=1)  # the warm-up message
        return {"rate": count / (seen["last"] - began[0]), "start": began[0] - seen["started"]}
    finally:
        sender.join(300)
        cluster.close()


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
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
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
            base = results["baseline"]
            cells = [f"{base['rate']:>10,.0f} msg/s (start {base['start']:.1f} s)"]
            for setup in setups:
                r = results[_label(*setup)]
                cells.append(
                    f"{_label(*setup)} {r['rate']:>9,.0f} msg/s ratio "
                    f"{r['rate'] / base['rate']:.2f} (start {r['start']:.1f} s)"
                )
            print(f"rep {rep}: baseline {cells[0]} | " + " | ".join(cells[1:]), flush=True)
    finally:
        for broker in brokers:
            broker.stop()
        zookeeper.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    best_base = max(r["baseline"]["rate"] for r in rows)
    summary: dict = {"count": args.count, "reps": args.reps, "baseline": best_base, "setups": {}}
    print(f"\nmirror throughput against produce into the target alone, {args.count:,} x 200 B")
    met = True
    for setup in setups:
        label = _label(*setup)
        rates = [r[label]["rate"] for r in rows]
        best = max(rates) / best_base
        median = statistics.median(r[label]["rate"] / r["baseline"]["rate"] for r in rows)
        summary["setups"][label] = {"best": max(rates), "ratio": best, "median_ratio": median}
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
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
