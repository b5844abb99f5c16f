"""Replication end to end (3 brokers, replication factor 3, min.insync.replicas 2, a real
ZooKeeper): acks=all with an idempotent confluent-kafka producer, every message read back
once, and the followers' segment files byte for byte the leader's up to the high
watermark."""

from __future__ import annotations

import time

from conftest import create_topic, wait_for, zk_session

from broker.protocol import zookeeper as layout
from consumers.cluster import ClusterClient

PARTITIONS = 3
MESSAGES = 3000


def state(zk, topic: str, partition: int):
    return layout.decode_partition_state(zk.get(layout.partition_state_path(topic, partition))[0])


def read_back(bootstrap: str, topic: str, count: int) -> dict[int, list[bytes]]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "check", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    deadline = time.monotonic() + 30
    try:
        while sum(map(len, got.values())) < count and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None:
                    got[msg.partition()].append(msg.value())
    finally:
        consumer.close()
    return got


def segment_bytes(cluster, broker_id: int, topic: str, partition: int) -> bytes:
    directory = cluster.broker(broker_id).workdir / f"broker-{broker_id}-logs"
    files = sorted((directory / f"{topic}-{partition}").glob("*.log"))
    return b"".join(f.read_bytes() for f in files)


def test_acks_all_idempotent_messages_are_read_once_and_followers_hold_the_leaders_bytes(
    make_cluster,
):
    from confluent_kafka import Producer

    cluster = make_cluster(3, min_insync_replicas=2)
    create_topic(cluster.brokers[0].port, "copied", PARTITIONS, replication_factor=3)
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    failures = []
    for i in range(MESSAGES):
        producer.produce(
            "copied",
            b"%d" % i,
            partition=i % PARTITIONS,
            on_delivery=lambda err, _msg: err and failures.append(err),
        )
        producer.poll(0)
    assert producer.flush(30) == 0 and failures == []

    got = read_back(cluster.bootstrap, "copied", MESSAGES)
    for p in range(PARTITIONS):
        assert got[p] == [b"%d" % i for i in range(p, MESSAGES, PARTITIONS)]

    offsets = ClusterClient(cluster.bootstrap)
    try:
        for p in range(PARTITIONS):
            assert offsets.list_offset("copied", p, -1) == MESSAGES // PARTITIONS
    finally:
        offsets.close()
    with zk_session(cluster.zookeeper_connect) as zk:
        for p in range(PARTITIONS):
            s = state(zk, "copied", p)
            assert sorted(s.isr) == [1, 2, 3]
            leader_bytes = segment_bytes(cluster, s.leader, "copied", p)
            assert leader_bytes
            for follower in (b for b in (1, 2, 3) if b != s.leader):
                wait_for(
                    lambda f=follower, p=p, want=leader_bytes: (
                        segment_bytes(cluster, f, "copied", p) == want
                    ),
                    10,
                )
