"""Our clients through a leader change (3 brokers, replication factor 3, min.insync.replicas
2, the leader killed with SIGKILL): the paper's ZooKeeper group consumer, the shipping agent
(``headrace ship``) and a ``headrace load`` run each lose and duplicate nothing they promise,
and our idempotent producer's acknowledged messages are stored once, in order."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter

import pytest
from command_lines import HEADRACE, ROOT, load_cmd
from conftest import create_topic, wait_for, zk_session
from test_loader_exactly_once import check_exactly_once, events
from test_replica_cluster import read_back, state

from consumers.group import GroupConsumer
from consumers.producer import Producer

PARTITIONS = 3
OVERRIDES = {
    "min_insync_replicas": 2,
    "zookeeper_session_timeout_ms": 6000,
    "replica_lag_time_max_ms": 3000,
}


def replicated(make_cluster, topic: str):
    cluster = make_cluster(3, **OVERRIDES)
    create_topic(cluster.brokers[0].port, topic, PARTITIONS, replication_factor=3)
    with zk_session(cluster.zookeeper_connect) as zk:
        for p in range(PARTITIONS):
            wait_for(lambda p=p: len(state(zk, topic, p).isr) == 3, 20)
    return cluster


def produce(cluster, topic: str, values: list[bytes], start: int = 0) -> None:
    """Our producer (idempotent, acks=all): every message acknowledged, none failed."""
    with Producer(cluster.bootstrap, delivery_timeout_ms=60000) as producer:
        futures = [
            producer.send(topic, v, partition=(start + i) % PARTITIONS)
            for i, v in enumerate(values)
        ]
        assert producer.flush(60) == 0
    assert [f.exception() for f in futures if f.exception() is not None] == []


def kill_leader(cluster, topic: str, partition: int = 0, meanwhile=None):
    """SIGKILL the partition's leader, run ``meanwhile()`` (while it is dead and no other
    leads yet) and wait for another leader; the killed broker."""
    with zk_session(cluster.zookeeper_connect) as zk:
        old = state(zk, topic, partition).leader
        cluster.broker(old).kill()
        if meanwhile is not None:
            meanwhile()
        wait_for(lambda: state(zk, topic, partition).leader not in (old, -1), 30)
    return cluster.broker(old)


def test_the_group_consumer_reads_every_message_once_in_order_through_a_leader_kill(make_cluster):
    cluster = replicated(make_cluster, "followed")
    values = [b"%d" % i for i in range(1500)]
    produce(cluster, "followed", values[:600])
    consumer = GroupConsumer(
        "through-kill",
        ["followed"],
        cluster.zookeeper_connect,
        auto_offset_reset="smallest",
        auto_commit_interval_ms=200,
    ).start()
    got: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}

    def take(until: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while sum(map(len, got.values())) < until and time.monotonic() < deadline:
            for message in consumer.poll(0.5):
                got[message.partition].append(message.value)

    try:
        take(300, 30)

        def meanwhile():  # the consumer polls the dead leader, the producer retries
            take(600, 3)
            produce(cluster, "followed", values[600:1200], start=600)

        killed = kill_leader(cluster, "followed", meanwhile=meanwhile)
        take(1200, 60)
        killed.start()
        produce(cluster, "followed", values[1200:], start=1200)
        take(1500, 60)
        consumer.commit()
    finally:
        consumer.close()
    for p in range(PARTITIONS):
        assert got[p] == values[p::PARTITIONS], p


def shipped_lines(bootstrap: str, topic: str, count: int) -> Counter:
    got = read_back(bootstrap, topic, count, partitions=PARTITIONS)
    return Counter(v for values in got.values() for v in values)


@pytest.mark.timeout(240)
def test_the_shipper_ships_every_line_once_through_a_leader_kill(make_cluster, tmp_path):
    cluster = replicated(make_cluster, "shipped")
    path, state_file = tmp_path / "app.log", tmp_path / "state.json"
    path.touch()
    out = open(tmp_path / "shipper.out", "wb")  # noqa: SIM115 (closed below)
    shipper = subprocess.Popen(
        [
            *HEADRACE,
            "ship",
            "--topic",
            "shipped",
            "--bootstrap-server",
            cluster.bootstrap,
            "--state-file",
            str(state_file),
            "--from-beginning",
            "--poll-interval",
            "0.05",
            str(path),
        ],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    lines = [b"line %05d" % i for i in range(1500)]

    def append(chunk):
        with open(path, "ab") as f:
            f.write(b"".join(line + b"\n" for line in chunk))

    def shipped_to_end() -> bool:
        entries = json.loads(state_file.read_text())["files"]
        return entries[0]["offset"] == path.stat().st_size

    try:
        append(lines[:500])
        wait_for(shipped_to_end, 60)
        append(lines[500:1000])
        kill_leader(cluster, "shipped", meanwhile=lambda: append(lines[1000:1250]))
        append(lines[1250:])
        wait_for(shipped_to_end, 90)
        shipper.send_signal(signal.SIGTERM)
        assert shipper.wait(60) == 0
    finally:
        if shipper.poll() is None:
            shipper.kill()
            shipper.wait()
        out.close()
    output = (tmp_path / "shipper.out").read_text()
    assert "Traceback" not in output, output[-3000:]
    counts = shipped_lines(cluster.bootstrap, "shipped", len(lines))
    assert set(counts) == set(lines)
    assert {line: n for line, n in counts.items() if n > 1} == {}


@pytest.mark.timeout(300)
def test_a_load_run_writes_every_event_once_through_a_leader_kill(make_cluster, tmp_path):
    cluster = replicated(make_cluster, "loaded")
    warehouse = tmp_path / "wh"
    produce(cluster, "loaded", events(900))
    killed = kill_leader(cluster, "loaded")
    produce(cluster, "loaded", events(300, start=900), start=900)

    def load(meanwhile=lambda: None) -> None:
        run = subprocess.Popen(
            load_cmd(cluster, "loaded", "wh", str(warehouse), "--workers", "2"),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            meanwhile()
            _, stderr = run.communicate(timeout=180)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        assert run.returncode == 0, stderr[-3000:]

    load()  # one broker down, its partitions led by others
    check_exactly_once(str(warehouse), 1200)
    killed.start()
    produce(cluster, "loaded", events(300, start=1200), start=1200)
    # From the committed offsets, the leader of partition 1 killed as the run starts.
    load(lambda: kill_leader(cluster, "loaded", 1))
    check_exactly_once(str(warehouse), 1500)
