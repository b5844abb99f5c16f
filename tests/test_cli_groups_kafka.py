"""``headrace groups list|describe --bootstrap-server`` without ``--zookeeper``: the Kafka
APIs alone (ListGroups, DescribeGroups, OffsetFetch at the coordinator, ListOffsets) show a
``KafkaGroupConsumer`` group and a mirror's group reading its source by bootstrap server;
partitions of subscribed topics without a committed offset have a row in both modes."""

from __future__ import annotations

import subprocess

import pytest
from command_lines import HEADRACE, ROOT
from conftest import Cluster, create_topic, wait_for
from mirror_helpers import MirrorProcess, SteadyProducer
from test_mirror_exactly_once import _target_count

from consumers.kafka_group import KafkaGroupConsumer
from consumers.producer import Producer


@pytest.fixture(scope="module")
def clusters(zookeeper, tmp_path_factory):
    fast_groups = {
        "group.initial.rebalance.delay.ms": "100",
        "group.min.session.timeout.ms": "1000",
    }
    made = [
        Cluster(
            tmp_path_factory.mktemp(name), f"{zookeeper.connect}/{name}", 1, fast_groups
        ).start()
        for name in ("groups-kafka-source", "groups-kafka-target")
    ]
    yield made
    for cluster in made:
        cluster.kill()


def groups(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HEADRACE, "groups", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def rows(out: str, topic: str) -> dict[int, list[str]]:
    """describe's rows of ``topic``: partition -> [committed, end, lag, owner...]."""
    found = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0] == topic and fields[1].isdigit():
            found[int(fields[1])] = fields[2:]
    return found


def test_a_kafka_group_is_described_by_bootstrap_server_alone(clusters):
    source, _ = clusters
    create_topic(source.brokers[0].port, "kg", 2)
    with Producer(source.bootstrap) as producer:
        for i in range(5):
            producer.send("kg", f"m{i}".encode(), partition=0 if i < 3 else 1).result(10)
    member = KafkaGroupConsumer(
        "kg-group",
        ["kg"],
        source.bootstrap,
        auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    ).start()
    try:
        got: list = []
        wait_for(lambda: got.extend(member.poll(0.5)) or len(got) >= 5, 30)
        member.commit_offsets({("kg", 0): 3})  # partition 1: read, nothing committed
        done = groups("list", "--bootstrap-server", source.bootstrap)
        assert done.returncode == 0, done.stderr
        assert any(
            line.split() == ["kg-group", "kafka", "(consumer)"] for line in done.stdout.splitlines()
        )
        done = groups("describe", "kg-group", "--bootstrap-server", source.bootstrap)
        assert done.returncode == 0, done.stderr
        assert "GROUP kg-group: kind kafka, Stable" in done.stdout
        kg = rows(done.stdout, "kg")
        assert kg[0][:3] == ["3", "3", "0"] and "headrace-consumer" in kg[0][3]
        assert kg[1][:3] == ["-", "2", "2"]
        assert "COMMITTED -: no offset committed yet" in done.stdout
        # the same rows from ZooKeeper's side
        done = groups("describe", "kg-group", "--zookeeper", source.zookeeper_connect)
        assert done.returncode == 0, done.stderr
        assert rows(done.stdout, "kg")[1][:3] == ["-", "2", "2"]
    finally:
        member.close()
    done = groups("describe", "nosuch-group", "--bootstrap-server", source.bootstrap)
    assert done.returncode == 1 and "no group nosuch-group" in done.stderr
    done = groups("delete", "kg-group", "--bootstrap-server", source.bootstrap)
    assert done.returncode == 2 and "needs --zookeeper" in done.stderr


def test_a_mirrors_group_shows_its_lag_by_bootstrap_server(clusters, tmp_path):
    source, target = clusters
    create_topic(source.brokers[0].port, "mirrored", 2)
    SteadyProducer(source.bootstrap, "mirrored", 100, per_second=100_000).run()
    mirror = MirrorProcess(tmp_path / "mirror.log", source, target, "mirror-by-bs", "mirrored")
    at = mirror.args.index("--from-zookeeper")
    mirror.args[at : at + 2] = ["--from-bootstrap-server", source.bootstrap]
    mirror.start("--offset-commit-interval-ms", "200")
    try:
        wait_for(lambda: _target_count(target, "mirrored", 2) >= 100, 60)

        def described():
            done = groups("describe", "mirror-by-bs", "--bootstrap-server", source.bootstrap)
            found = rows(done.stdout, "mirrored")
            return found if [r[2] for r in found.values()] == ["0", "0"] else None

        found = wait_for(described, 30)
        assert sum(int(r[0]) for r in found.values()) == 100
        assert all(r[3] != "-" for r in found.values())  # owned by the mirror's member
    finally:
        assert mirror.terminate() == 0, mirror.log()
