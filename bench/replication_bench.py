"""What does replication cost?  Three brokers, one ZooKeeper: batched produce at replication
factor 3 and acks=all against replication factor 1 and acks=1, failover after a leader's
SIGKILL, and a follower's catch-up rate against the leader's append rate.

    .venv/bin/python bench/replication_bench.py [--quick] [--reps 3] [--json out.json]

One ZooKeeper and brokers 1, 2 and 3 on free ports of 127.0.0.1, with
``zookeeper.session.timeout.ms`` set to 6000 (``--session-timeout-ms``) and
``min.insync.replicas`` 2; every topic has one partition, its leader read from the
partition's state node in ZooKeeper.

1. produce: confluent-kafka, librdkafka's batching (``linger.ms`` 5), 200-byte values, to a
   topic of replication factor 1 with acks=1 and to one of replication factor 3 with
   acks=all, alternating runs; the ratio RF 3 / RF 1 (target >= 0.5).
2. failover: a topic of replication factor 3 gets a few acknowledged messages, its leader is
   killed with SIGKILL, and the time runs until a new leader (from the state node) answers
   an acks=all Produce without error.  A broker's death is noticed when its ZooKeeper session
   expires, so the time beyond the session timeout is what the target bounds (< 2 s).  With
   no new leader by the deadline the run says "no leader".
3. catch-up: one follower is stopped (SIGSTOP), N MB are produced to the leader with acks=1
   (the append rate), the follower resumes (SIGCONT) and the time runs until its segment
   files hold as many bytes as the leader's (the catch-up rate), also until it is back in
   the ISR.
"""

from __future__ import annotations

import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import (
    MB,
    VALUE_BYTES,
    BenchmarkError,
    CpuMeter,
    add_output_args,
    check_delivery,
    close_rdkafka_producer,
    finish,
    header,
    machine_bottleneck,
    main_in_tmp_dir,
    new_meta,
    partition_dir,
    payload,
    print_table,
    rdkafka_produce_timed,
    running_cluster,
    sized_parser,
    step,
    with_meta,
)

from broker.protocol import zookeeper as layout
from broker.protocol.errors import KafkaError
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection
from headrace.devcluster import BrokerProcess
from headrace.topics import create_topic_simple

BROKERS = 3
SESSION_TIMEOUT_MS = 6000
TARGET_RATIO = 0.5
TARGET_BEYOND_S = 2.0
QUICK = {"messages": 20_000, "catchup_mb": 4, "reps": 1}
DEFAULT = {"messages": 200_000, "catchup_mb": 50, "reps": 3}


class Cluster:
    """The brokers by id and a kazoo session on their ZooKeeper chroot."""

    def __init__(self, brokers: dict[int, BrokerProcess]):
        from kazoo.client import KazooClient

        self.brokers = brokers
        first = next(iter(brokers.values()))
        self.bootstrap = ",".join(b.bootstrap for b in brokers.values())
        self.zk = KazooClient(hosts=first.zookeeper_connect, timeout=10)
        self.zk.start(timeout=15)

    def close(self) -> None:
        self.zk.stop()
        self.zk.close()

    def state(self, topic: str) -> layout.PartitionState | None:
        path = layout.partition_state_path(topic, 0)
        if not self.zk.exists(path):
            return None
        return layout.decode_partition_state(self.zk.get(path)[0], path)

    def create(self, topic: str, replication_factor: int) -> int:
        """A one-partition topic; its leader's id once every replica is in the ISR and the
        leader answers Produce."""
        full_isr = replication_factor > 1
        live = next(b for b in self.brokers.values() if b.process is not None)
        # a broker restarted by the run before registers again a moment after it starts
        registered = wait_until(
            lambda: len(self.zk.get_children(layout.BROKER_IDS)) >= len(self.brokers), 60
        )
        if registered is None:
            raise BenchmarkError(f"CreateTopics {topic}: not every broker registered in 60 s")
        try:
            create_topic_simple(live.bootstrap, topic, 1, replication_factor=replication_factor)
        except KafkaError as exc:
            raise BenchmarkError(f"CreateTopics {topic}: {exc!r}") from exc
        deadline = time.monotonic() + 30
        answer = "no state node"
        while time.monotonic() < deadline:
            s = self.state(topic)
            if s is not None and s.leader in self.brokers and len(s.isr) >= replication_factor:
                # acks=all needs min.insync.replicas (2) in the ISR
                answer = produce_error(self.brokers[s.leader].port, topic, -1 if full_isr else 1)
                if answer == "":
                    return s.leader
            time.sleep(0.05)
        raise BenchmarkError(
            f"topic {topic}: no serving leader after 30 s ({self.state(topic)}; "
            f"the last Produce: {answer})"
        )


def produce_error(port: int, topic: str, acks: int = -1, records: int = 10) -> str:
    """What went wrong with one Produce of ``records`` small records ("" if nothing)."""
    body = {
        "transactional_id": None,
        "acks": acks,
        "timeout_ms": 5000,
        "topic_data": [
            {
                "name": topic,
                "partition_data": [{"index": 0, "records": build_batch([(None, b"x")] * records)}],
            }
        ],
    }
    try:
        with BrokerConnection("127.0.0.1", port, timeout=6) as conn:
            part = conn.request(ApiKey.PRODUCE, body)["responses"][0]["partition_responses"][0]
    except (OSError, KafkaError) as exc:
        return repr(exc)
    if part["error_code"]:
        return f"error {part['error_code']} {part['error_message'] or ''}".rstrip()
    return ""


def log_bytes(broker: BrokerProcess, topic: str) -> int:
    """Bytes in the partition's segment files on ``broker`` (0 if it has none yet)."""
    return sum(f.stat().st_size for f in partition_dir(broker, topic).glob("*.log"))


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.01) -> float | None:
    """Seconds until ``check()`` held, or None after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(every)
    return time.monotonic() - start


def repeated(reps: int, text: str, run: Callable[[int], dict]) -> list[dict]:
    """``run(rep)`` for each repetition, as a ``step`` titled ``text`` with the run's number."""
    return [step(text.format(rep + 1), lambda rep=rep: run(rep)) for rep in range(reps)]


# --- 1. produce ----------------------------------------------------------------------------


def produce_run(cluster: Cluster, topic: str, acks: str, count: int) -> dict:
    from confluent_kafka import Producer

    errors: list = []
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "acks": acks,
            "linger.ms": 5,
            "on_delivery": lambda err, _msg: err and errors.append(err),
        }
    )
    leader = cluster.state(topic).leader
    meter = CpuMeter(cluster.brokers[leader].process.pid, lambda used: machine_bottleneck(used))
    finished = False
    try:
        producer.list_topics(topic, timeout=10)  # connect before timing
        timed = rdkafka_produce_timed(producer, topic, payload(), count, meter, pause_gc=True)
        finished = True
    finally:
        close_rdkafka_producer(producer, finished)
    check_delivery(f"produce to {topic}", timed.left, errors)
    seconds = timed.end - timed.start
    return {"seconds": seconds, "msgs_per_s": count / seconds}


def produce_part(cluster: Cluster, count: int, reps: int) -> dict:
    sides = {"rf1": ("1", 1), "rf3": ("all", 3)}
    for topic, (_acks, rf) in sides.items():
        step(
            f"creating {topic} (replication factor {rf})",
            lambda t=topic, r=rf: cluster.create(t, r),
        )
    runs: dict[str, list[dict]] = {topic: [] for topic in sides}
    for rep in range(reps):
        order = list(sides) if rep % 2 == 0 else list(reversed(sides))
        for topic in order:
            acks = sides[topic][0]
            runs[topic].append(
                step(
                    f"#{rep + 1}: {count:,} messages to {topic}, acks={acks}",
                    lambda t=topic, a=acks: produce_run(cluster, t, a, count),
                )
            )
    ratios = [a["msgs_per_s"] / b["msgs_per_s"] for a, b in zip(runs["rf3"], runs["rf1"])]
    return {
        "messages": count,
        "rf1_acks1": runs["rf1"],
        "rf3_acks_all": runs["rf3"],
        "ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "ratio_best": max(r["msgs_per_s"] for r in runs["rf3"])
        / max(r["msgs_per_s"] for r in runs["rf1"]),
    }


# --- 2. failover ---------------------------------------------------------------------------


def failover_run(cluster: Cluster, topic: str, session_s: float) -> dict:
    old = cluster.create(topic, BROKERS)
    victim = cluster.brokers[old]
    victim.kill()
    new_leader = None

    def new_leader_answers() -> bool:
        nonlocal new_leader
        s = cluster.state(topic)
        if s is None or s.leader in (old, -1) or s.leader not in cluster.brokers:
            return False
        new_leader = s.leader
        return produce_error(cluster.brokers[s.leader].port, topic) == ""

    seconds = wait_until(new_leader_answers, session_s + 20, every=0.02)
    victim.start(timeout=60, detach=True)
    if seconds is None:
        return {"old_leader": old, "new_leader": None, "seconds": None, "beyond_s": None}
    return {
        "old_leader": old,
        "new_leader": new_leader,
        "seconds": seconds,
        "beyond_s": seconds - session_s,
    }


def failover_part(cluster: Cluster, reps: int, session_s: float) -> dict:
    runs = repeated(
        reps,
        "failover #{}: SIGKILL the leader, until a new one answers Produce",
        lambda rep: failover_run(cluster, f"failover-{rep}", session_s),
    )
    beyond = [r["beyond_s"] for r in runs if r["beyond_s"] is not None]
    return {
        "session_timeout_s": session_s,
        "runs": runs,
        "no_leader": sum(r["seconds"] is None for r in runs),
        "beyond_median_s": statistics.median(beyond) if beyond else None,
        "beyond_worst_s": max(beyond) if beyond else None,
    }


# --- 3. catch-up ---------------------------------------------------------------------------


def catchup_run(cluster: Cluster, topic: str, megabytes: int) -> dict:
    leader_id = cluster.create(topic, BROKERS)
    leader = cluster.brokers[leader_id]
    follower_id = next(b for b in cluster.state(topic).isr if b != leader_id)
    follower = cluster.brokers[follower_id]
    count = megabytes * MB // VALUE_BYTES
    produce_run(cluster, topic, "all", 1000)  # followers hold it once acks=all returns
    copied = wait_until(lambda: log_bytes(follower, topic) == log_bytes(leader, topic), 10)
    if copied is None:
        return {"skipped": "the follower does not copy the leader's log (no replication)"}
    follower.process.send_signal(signal.SIGSTOP)
    try:
        append = produce_run(cluster, topic, "1", count)
        target = log_bytes(leader, topic)
        behind = target - log_bytes(follower, topic)
        left_isr = follower_id not in cluster.state(topic).isr
    finally:
        follower.process.send_signal(signal.SIGCONT)
    seconds = wait_until(lambda: log_bytes(follower, topic) >= target, 120)
    if seconds is None:
        raise BenchmarkError(f"{topic}: follower {follower_id} did not catch up in 120 s")
    in_isr = wait_until(lambda: follower_id in cluster.state(topic).isr, 60, every=0.05)
    if in_isr is not None:
        in_isr += seconds  # from SIGCONT, like the catch-up
    append_mb_s = count * VALUE_BYTES / MB / append["seconds"]
    catchup_mb_s = behind / MB / seconds
    return {
        "leader": leader_id,
        "follower": follower_id,
        "behind_bytes": behind,
        "append_mb_s": append_mb_s,
        "catchup_s": seconds,
        "catchup_mb_s": catchup_mb_s,
        "ratio": catchup_mb_s / append_mb_s,
        "left_isr": left_isr,
        "back_in_isr_s": in_isr,
    }


def catchup_part(cluster: Cluster, megabytes: int, reps: int) -> dict:
    runs = repeated(
        reps,
        f"catch-up #{{}}: SIGSTOP a follower, {megabytes} MB to the leader, SIGCONT",
        lambda rep: catchup_run(cluster, f"catchup-{rep}", megabytes),
    )
    done = [r for r in runs if "skipped" not in r]
    if not done:
        return {"megabytes": megabytes, "skipped": runs[0]["skipped"], "runs": runs}
    return {
        "megabytes": megabytes,
        "runs": runs,
        "ratio_median": statistics.median(r["ratio"] for r in done),
    }


# --- the script ----------------------------------------------------------------------------


def report(results: dict) -> None:
    missed = []
    produce = results["produce"]
    rows = []
    for label, key in (("RF 1, acks=1", "rf1_acks1"), ("RF 3, acks=all", "rf3_acks_all")):
        rates = [r["msgs_per_s"] for r in produce[key]]
        rows.append([label, f"{max(rates):,.0f}", f"{statistics.median(rates):,.0f}"])
    print_table(
        f"Batched produce, {produce['messages']:,} messages of {VALUE_BYTES} bytes a run",
        ["setting", "msgs/s", "msgs/s(med)"],
        rows,
    )
    print(
        f"ratio RF 3 / RF 1: {produce['ratio_best']:.3f} (best), {produce['ratio_median']:.3f} "
        f"(median), target >= {TARGET_RATIO}"
    )
    if produce["ratio_median"] < TARGET_RATIO:
        missed.append(f"produce ratio {produce['ratio_median']:.3f} < {TARGET_RATIO}")

    failover = results["failover"]
    session_s = failover["session_timeout_s"]
    print_table(
        f"Failover after SIGKILL of the leader (zookeeper.session.timeout.ms "
        f"{session_s * 1000:.0f})",
        ["run", "old leader", "new leader", "seconds", "beyond session"],
        [
            [
                f"#{i + 1}",
                str(r["old_leader"]),
                "no leader" if r["new_leader"] is None else str(r["new_leader"]),
                "-" if r["seconds"] is None else f"{r['seconds']:.2f}",
                "-" if r["beyond_s"] is None else f"{r['beyond_s']:+.2f}",
            ]
            for i, r in enumerate(failover["runs"])
        ],
    )
    if failover["beyond_median_s"] is not None:
        print(
            f"beyond the session timeout: median {failover['beyond_median_s']:.2f} s, worst "
            f"{failover['beyond_worst_s']:.2f} s, target < {TARGET_BEYOND_S} s"
        )
        if failover["beyond_worst_s"] >= TARGET_BEYOND_S:
            missed.append(f"failover worst {failover['beyond_worst_s']:.2f} s beyond the session")
    if failover["no_leader"]:
        missed.append(f"failover: no new leader in {failover['no_leader']} run(s)")

    catchup = results["catchup"]
    if "skipped" in catchup:
        print(f"\nCatch-up not measured: {catchup['skipped']}")
        missed.append("catch-up not measured")
    else:
        print_table(
            f"Follower catch-up after SIGSTOP, {catchup['megabytes']} MB appended meanwhile",
            [
                "run",
                "behind MB",
                "append MB/s",
                "catch-up s",
                "catch-up MB/s",
                "ratio",
                "left ISR",
                "in ISR s",
            ],
            [
                [
                    f"#{i + 1}",
                    f"{r['behind_bytes'] / MB:.1f}",
                    f"{r['append_mb_s']:.1f}",
                    f"{r['catchup_s']:.2f}",
                    f"{r['catchup_mb_s']:.1f}",
                    f"{r['ratio']:.2f}",
                    "yes" if r["left_isr"] else "no",
                    "-" if r["back_in_isr_s"] is None else f"{r['back_in_isr_s']:.2f}",
                ]
                for i, r in enumerate(catchup["runs"])
            ],
        )
        print(f"catch-up / append rate, median: {catchup['ratio_median']:.2f}")
    print(f"\nload average at the end: {results['meta']['load_average_at_end'][0]:.2f}")
    finish(results, missed, "; ", results["meta"].pop("json_path"))


def run(args, workdir: Path) -> dict:
    sizes = QUICK if args.quick else DEFAULT
    count = args.messages or sizes["messages"]
    megabytes = args.catchup_mb or sizes["catchup_mb"]
    reps = args.reps or sizes["reps"]
    session_s = args.session_timeout_ms / 1000
    meta = new_meta(
        args.quick,
        workdir,
        brokers=BROKERS,
        messages=count,
        catchup_mb=megabytes,
        reps=reps,
        zookeeper_session_timeout_ms=args.session_timeout_ms,
        min_insync_replicas=2,
    )
    print(header("replication", meta))
    overrides = {
        "zookeeper.session.timeout.ms": str(args.session_timeout_ms),
        "min.insync.replicas": "2",
    }
    with running_cluster(workdir, meta, BROKERS, overrides) as brokers:
        cluster = Cluster(brokers)
        try:
            results = {
                "produce": produce_part(cluster, count, reps),
                "failover": failover_part(cluster, reps, session_s),
                "catchup": catchup_part(cluster, megabytes, reps),
            }
        finally:
            cluster.close()
    return with_meta(meta, results, args.json)


def main(argv: list[str] | None = None) -> int:
    parser = sized_parser(
        __doc__,
        "small sizes and one repetition, well under a minute",
        catchup_mb="MB a follower misses",
    )
    parser.add_argument("--session-timeout-ms", type=int, default=SESSION_TIMEOUT_MS)
    add_output_args(parser)
    args = parser.parse_args(argv)
    return main_in_tmp_dir(
        args, "replication-bench-", lambda workdir: run(args, workdir), report=report
    )


if __name__ == "__main__":
    sys.exit(main())
