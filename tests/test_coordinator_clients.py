"""Consumer groups of real Kafka clients, coordinated by the brokers, offsets in ZooKeeper.

Three real brokers, a six-partition topic, and unmodified clients (kcat -G, confluent-kafka,
kafka-python, aiokafka) in groups of two: every message once across the members, a killed
member's partitions taken over, a restarted group resuming from its commits, a mixed group,
the coordinator killed, and malformed or out-of-order requests answered with the right codes.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest
from conftest import Cluster, wait_for
from kazoo.client import KazooClient
from request_bodies import join_group_body

from broker.protocol import zookeeper as layout
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection

OVERRIDES = {"group.initial.rebalance.delay.ms": "300", "group.min.session.timeout.ms": "1000"}


@pytest.fixture(scope="module")
def groups3(zookeeper, tmp_path_factory):
    cluster = Cluster(
        tmp_path_factory.mktemp("groups3"),
        f"{zookeeper.connect}/g3-{time.monotonic_ns()}",
        3,
        OVERRIDES,
    ).start()
    yield cluster
    cluster.stop()


def make_topic(
    cluster, name: str, partitions: int = 6, on_brokers: list[int] | None = None
) -> None:
    assignments = []
    if on_brokers:
        assignments = [
            {"partition_index": p, "broker_ids": [on_brokers[p % len(on_brokers)]]}
            for p in range(partitions)
        ]
    with BrokerConnection("127.0.0.1", cluster.brokers[0].port, timeout=30) as conn:
        body = conn.request(
            ApiKey.CREATE_TOPICS,
            {
                "topics": [
                    {
                        "name": name,
                        "num_partitions": -1 if assignments else partitions,
                        "replication_factor": -1 if assignments else 1,
                        "assignments": assignments,
                        "configs": [],
                    }
                ],
                "timeout_ms": 10000,
                "validate_only": False,
            },
        )
    assert body["topics"][0]["error_code"] == 0, body
    wait_for(
        lambda: all(
            _has_leaders(b.port, name, partitions) for b in cluster.brokers if b.process is not None
        ),
        20,
    )


def _has_leaders(port: int, topic: str, partitions: int) -> bool:
    with BrokerConnection("127.0.0.1", port, timeout=10) as conn:
        body = conn.request(
            ApiKey.METADATA,
            {
                "topics": [{"name": topic}],
                "allow_auto_topic_creation": False,
                "include_cluster_authorized_operations": False,
                "include_topic_authorized_operations": False,
            },
        )
    parts = body["topics"][0]["partitions"]
    return len(parts) == partitions and all(p["leader_id"] >= 0 for p in parts)


def produce(cluster, topic: str, start: int, count: int) -> None:
    lines = b"".join(b"%d:%d\n" % (i, i) for i in range(start, start + count))
    subprocess.run(
        ["kcat", "-b", cluster.bootstrap, "-P", "-t", topic, "-K:"],
        input=lines,
        check=True,
        timeout=60,
    )


def committed(cluster, group: str, topic: str) -> dict[int, int]:
    zk = KazooClient(hosts=cluster.zookeeper_connect, timeout=10)
    zk.start(timeout=15)
    try:
        base = layout.topic_offsets_path(group, topic)
        if not zk.exists(base):
            return {}
        return {
            int(p): layout.decode_offset(zk.get(layout.offset_path(group, topic, p))[0])
            for p in zk.get_children(base)
        }
    finally:
        zk.stop()
        zk.close()


# --- members of each client library, as threads that record (partition, offset, value) ------


def confluent_member(cluster, group, topic, seen, stop, **conf):
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 3000,
            "heartbeat.interval.ms": 500,
            **conf,
        }
    )
    c.subscribe([topic])
    try:
        while not stop.is_set():
            m = c.poll(0.1)
            if m is None or m.error():
                continue
            seen.append((m.partition(), m.offset(), m.value()))
            c.commit(m, asynchronous=False)
    finally:
        c.close()


def kafka_python_member(cluster, group, topic, seen, stop):
    from kafka import KafkaConsumer

    c = KafkaConsumer(
        topic,
        bootstrap_servers=cluster.bootstrap.split(","),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    try:
        while not stop.is_set():
            for _, msgs in c.poll(100).items():
                for m in msgs:
                    seen.append((m.partition, m.offset, m.value))
                c.commit()
    finally:
        c.close()


def aiokafka_member(cluster, group, topic, seen, stop):
    from aiokafka import AIOKafkaConsumer

    async def run():
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=cluster.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=3000,
            heartbeat_interval_ms=500,
        )
        await c.start()
        try:
            while not stop.is_set():
                got = await c.getmany(timeout_ms=100)
                for _, msgs in got.items():
                    for m in msgs:
                        seen.append((m.partition, m.offset, m.value))
                if got:
                    await c.commit()
        finally:
            await c.stop()

    asyncio.run(run())


MEMBERS = {
    "confluent-kafka": confluent_member,
    "kafka-python": kafka_python_member,
    "aiokafka": aiokafka_member,
}


class Members:
    """Member threads of one group; ``seen`` collects what they all consumed."""

    def __init__(self, cluster, group, topic, kinds):
        self.seen: list = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(
                target=MEMBERS[k], args=(cluster, group, topic, self.seen, self.stop), daemon=True
            )
            for k in kinds
        ]
        for t in self.threads:
            t.start()

    def wait_for(self, count: int, timeout: float = 60) -> None:
        wait_for(lambda: len(self.seen) >= count, timeout, 0.1)
        time.sleep(0.5)  # anything extra would show as a duplicate

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def __enter__(self) -> Members:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def values(seen) -> Counter:
    return Counter(int(v) for _, _, v in seen)


@pytest.mark.parametrize("kind", sorted(MEMBERS))
def test_a_group_of_two_consumes_every_message_once_and_resumes(groups3, kind):
    topic, group = f"grp-{kind}", f"group-{kind}"
    make_topic(groups3, topic)
    produce(groups3, topic, 0, 2000)
    with Members(groups3, group, topic, [kind, kind]) as members:
        members.wait_for(2000)
    got = values(members.seen)
    assert set(got) == set(range(2000)) and max(got.values()) == 1
    assert len({p for p, _, _ in members.seen}) == 6
    assert sum(committed(groups3, group, topic).values()) == 2000  # in ZooKeeper, like the paper's
    produce(groups3, topic, 2000, 300)
    # a restarted group resumes from its commits
    with Members(groups3, group, topic, [kind]) as again:
        again.wait_for(300)
    assert sorted(values(again.seen)) == list(range(2000, 2300))


def test_kcat_group_members_share_partitions_and_commit(groups3):
    topic, group = "grp-kcat", "group-kcat"
    make_topic(groups3, topic)
    produce(groups3, topic, 0, 3000)
    cmd = [
        "kcat",
        "-b",
        groups3.bootstrap,
        "-G",
        group,
        topic,
        "-e",
        "-f",
        "%p %s\\n",
        "-X",
        "auto.offset.reset=earliest",
        "-X",
        "session.timeout.ms=3000",
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) for _ in range(2)
    ]
    outs = [p.communicate(timeout=90)[0].decode().split() for p in procs]
    counted = Counter(int(v) for out in outs for v in out[1::2])
    assert set(counted) == set(range(3000)) and max(counted.values()) == 1
    assert all(outs), "both members got partitions"
    assert sum(committed(groups3, group, topic).values()) == 3000
    produce(groups3, topic, 3000, 200)  # the group, started again, resumes from its commits
    again = subprocess.run(cmd, capture_output=True, timeout=90).stdout.decode().split()
    assert sorted(int(v) for v in again[1::2]) == list(range(3000, 3200))


MEMBER_SCRIPT = """
import sys, threading
sys.path.insert(0, {tests!r})
from test_coordinator_clients import MEMBERS
class C: bootstrap = {bootstrap!r}
class Out(list):
    def append(self, item):
        print(item[0], int(item[2]), flush=True)
MEMBERS[{kind!r}](C, {group!r}, {topic!r}, Out(), threading.Event())
"""


def member_command(cluster, kind: str, group: str, topic: str) -> list[str]:
    """A group member in a process of its own, printing "partition value" lines."""
    if kind == "kcat":
        return [
            "kcat",
            "-b",
            cluster.bootstrap,
            "-G",
            group,
            topic,
            "-f",
            "%p %s\\n",
            "-u",
            "-X",
            "auto.offset.reset=earliest",
            "-X",
            "session.timeout.ms=2000",
            "-X",
            "heartbeat.interval.ms=300",
        ]
    import sys
    from pathlib import Path

    script = MEMBER_SCRIPT.format(
        tests=str(Path(__file__).parent),
        bootstrap=cluster.bootstrap,
        kind=kind,
        group=group,
        topic=topic,
    )
    return [sys.executable, "-c", script]


@pytest.mark.parametrize("kind", ["kcat", *sorted(MEMBERS)])
def test_a_killed_member_partitions_go_to_the_survivor(groups3, kind):
    topic, group = f"grp-kill-{kind}", f"group-kill-{kind}"
    make_topic(groups3, topic)
    produce(groups3, topic, 0, 600)
    cmd = member_command(groups3, kind, group, topic)
    victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    survivor = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(5)  # both in the group, partitions split
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        produce(groups3, topic, 600, 600)
        lines = []

        def read():
            for line in survivor.stdout:
                lines.append(line.split())

        threading.Thread(target=read, daemon=True).start()
        wait_for(lambda: {int(v) for _, v in lines} >= set(range(600, 1200)), 60, 0.2)
        assert len({p for p, _ in lines}) == 6  # it took the dead member's partitions too
    finally:
        survivor.send_signal(signal.SIGKILL)
        survivor.wait(10)


def test_a_mixed_group_agrees_on_one_assignment(groups3):
    topic, group = "grp-mixed", "group-mixed"
    make_topic(groups3, topic)
    produce(groups3, topic, 0, 2000)
    with Members(groups3, group, topic, ["confluent-kafka", "kafka-python"]) as members:
        members.wait_for(2000)
    got = values(members.seen)
    assert set(got) == set(range(2000)) and max(got.values()) == 1


def coordinator_of(cluster, group: str) -> int:
    for broker in cluster.brokers:
        if broker.process is None:
            continue
        with BrokerConnection("127.0.0.1", broker.port, timeout=10) as conn:
            body = conn.request(ApiKey.FIND_COORDINATOR, {"key": group, "key_type": 0})
        if body["error_code"] == 0:
            return body["node_id"]
    raise AssertionError("no coordinator")


def test_the_group_moves_when_its_coordinator_dies(make_cluster):
    cluster = make_cluster(3, **{k.replace(".", "_"): v for k, v in OVERRIDES.items()})
    group, topic = "group-move", "grp-move"
    node = coordinator_of(cluster, group)
    others = [b.broker_id for b in cluster.brokers if b.broker_id != node]
    make_topic(cluster, topic, on_brokers=others)  # the data outlives the coordinator
    produce(cluster, topic, 0, 1000)
    with Members(cluster, group, topic, ["confluent-kafka"]) as members:
        members.wait_for(1000)
        cluster.broker(node).kill()
        wait_for(lambda: coordinator_of(cluster, group) != node, 30)
        produce(cluster, topic, 1000, 500)
        members.wait_for(1500, timeout=90)
    got = values(members.seen)
    assert set(got) == set(range(1500))
    assert sum(committed(cluster, group, topic).values()) == 1500
    with Members(cluster, group, topic, ["kafka-python"]) as fresh:  # resumes from the commits
        produce(cluster, topic, 1500, 10)
        fresh.wait_for(10)
    assert sorted(values(fresh.seen)) == list(range(1500, 1510))


def test_out_of_order_requests_get_the_right_errors(groups3):
    group, other = "raw-group", "raw-other"
    node = coordinator_of(groups3, group)
    port = groups3.broker(node).port
    wrong = next(b.port for b in groups3.brokers if b.broker_id != coordinator_of(groups3, group))
    join = join_group_body(group, b"\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff")
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        assert (
            conn.request(
                ApiKey.SYNC_GROUP,
                {
                    "group_id": group,
                    "generation_id": 1,
                    "member_id": "nobody",
                    "group_instance_id": None,
                    "assignments": [],
                },
            )["error_code"]
            == 25
        )
        assert (
            conn.request(
                ApiKey.HEARTBEAT,
                {
                    "group_id": group,
                    "generation_id": 1,
                    "member_id": "nobody",
                    "group_instance_id": None,
                },
            )["error_code"]
            == 25
        )
        first = conn.request(ApiKey.JOIN_GROUP, join)
        assert first["error_code"] == 79 and first["member_id"]  # MEMBER_ID_REQUIRED
        joined = conn.request(ApiKey.JOIN_GROUP, join | {"member_id": first["member_id"]})
        assert joined["error_code"] == 0 and joined["leader"] == first["member_id"]
        gen, me = joined["generation_id"], first["member_id"]
        assert (
            conn.request(
                ApiKey.HEARTBEAT,
                {
                    "group_id": group,
                    "generation_id": gen - 1,
                    "member_id": me,
                    "group_instance_id": None,
                },
            )["error_code"]
            == 22
        )
        synced = conn.request(
            ApiKey.SYNC_GROUP,
            {
                "group_id": group,
                "generation_id": gen,
                "member_id": me,
                "group_instance_id": None,
                "assignments": [{"member_id": me, "assignment": b"plan"}],
            },
        )
        assert synced == synced | {"error_code": 0, "assignment": b"plan"}
        assert (
            conn.request(
                ApiKey.OFFSET_COMMIT,
                {
                    "group_id": group,
                    "generation_id_or_member_epoch": gen - 1,
                    "member_id": me,
                    "group_instance_id": None,
                    "topics": [
                        {
                            "name": "t",
                            "partitions": [
                                {
                                    "partition_index": 0,
                                    "committed_offset": 5,
                                    "committed_leader_epoch": -1,
                                    "committed_metadata": None,
                                }
                            ],
                        }
                    ],
                },
            )["topics"][0]["partitions"][0]["error_code"]
            == 22
        )  # stale commit
        described = conn.request(
            ApiKey.DESCRIBE_GROUPS, {"groups": [group], "include_authorized_operations": False}
        )
        assert described["groups"][0]["group_state"] == "Stable"
        assert [m["member_id"] for m in described["groups"][0]["members"]] == [me]
    with BrokerConnection("127.0.0.1", wrong, timeout=30) as conn:
        assert conn.request(ApiKey.JOIN_GROUP, join)["error_code"] == 16  # NOT_COORDINATOR
    other_port = groups3.broker(coordinator_of(groups3, other)).port
    with BrokerConnection("127.0.0.1", other_port, timeout=30) as conn:  # undisturbed neighbour
        first = conn.request(ApiKey.JOIN_GROUP, join | {"group_id": other})
        assert (
            conn.request(
                ApiKey.JOIN_GROUP, join | {"group_id": other, "member_id": first["member_id"]}
            )["error_code"]
            == 0
        )
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        assert (
            conn.request(
                ApiKey.HEARTBEAT,
                {
                    "group_id": group,
                    "generation_id": gen,
                    "member_id": me,
                    "group_instance_id": None,
                },
            )["error_code"]
            == 0
        )


def test_groups_command_shows_kafka_and_zookeeper_groups_side_by_side(groups3):
    import sys

    from consumers.group import GroupConsumer

    headrace = [sys.executable, "-m", "headrace.cli"]  # this tree's code
    topic, group = "grp-cli", "group-cli"
    make_topic(groups3, topic)
    produce(groups3, topic, 0, 600)
    paper = GroupConsumer(
        "paper-group", [topic], groups3.zookeeper_connect, auto_offset_reset="smallest"
    )
    paper.start()
    members = Members(groups3, group, topic, ["confluent-kafka", "confluent-kafka"])
    try:
        members.wait_for(600)
        paper.poll(1.0)
        paper.commit()
        listed = subprocess.run(
            [*headrace, "groups", "--zookeeper", groups3.zookeeper_connect, "list"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert f"{group}" in listed and "kafka (consumer)" in listed
        assert "paper-group" in listed and "zookeeper" in listed
        shown = subprocess.run(
            [*headrace, "groups", "--zookeeper", groups3.zookeeper_connect, "describe", group],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert "kind kafka, Stable" in shown and "2 members" in shown
        rows = [line.split() for line in shown.splitlines() if line.startswith(topic)]
        assert len(rows) == 6 and sum(int(r[2]) for r in rows) == 600
        assert all(r[4] == "0" and r[5] == "rdkafka" for r in rows)  # lag, owner's client id
    finally:
        members.close()
        paper.close()


def test_malformed_group_requests_close_only_their_connection(groups3):
    import socket
    import struct

    group = "raw-malformed"
    port = groups3.broker(coordinator_of(groups3, group)).port
    join = join_group_body(group)
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        first = conn.request(ApiKey.JOIN_GROUP, join, version=4)
        member = first["member_id"]
        joined = conn.request(ApiKey.JOIN_GROUP, join | {"member_id": member}, version=4)
        assert joined["error_code"] == 0
        for garbage in (
            b"\x00\x0b\x00\x05\x00\x00\x00\x07\xff\xff\x00\x05ab",  # JoinGroup cut short
            b"\x00\x0e\x00\x03\x00\x00\x00\x08\xff\xff" + b"\xff" * 40,
        ):  # SyncGroup nonsense
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.sendall(struct.pack(">i", len(garbage)) + garbage)
                assert raw.recv(100) == b""  # closed, no answer
        assert (
            conn.request(
                ApiKey.HEARTBEAT,
                {
                    "group_id": group,
                    "generation_id": joined["generation_id"],
                    "member_id": member,
                    "group_instance_id": None,
                },
            )["error_code"]
            == 0
        )


def test_pipelined_commits_all_succeed_in_order(groups3):
    """Asynchronous commits (several in flight for one partition, the first creating its
    offset node) all succeed, and the last one is what stays."""
    topic, group = "grp-async", "group-async"
    make_topic(groups3, topic, partitions=1)
    port = groups3.broker(coordinator_of(groups3, group)).port
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        ids = [
            conn.send(
                ApiKey.OFFSET_COMMIT,
                {
                    "group_id": group,
                    "generation_id_or_member_epoch": -1,
                    "member_id": "",
                    "retention_time_ms": -1,
                    "topics": [
                        {
                            "name": topic,
                            "partitions": [
                                {
                                    "partition_index": 0,
                                    "committed_offset": offset,
                                    "committed_metadata": None,
                                }
                            ],
                        }
                    ],
                },
                version=2,
            )
            for offset in range(1, 41)
        ]
        codes = [
            conn.receive(ApiKey.OFFSET_COMMIT, i, version=2)["topics"][0]["partitions"][0][
                "error_code"
            ]
            for i in ids
        ]
    assert codes == [0] * 40
    assert committed(groups3, group, topic) == {0: 40}
