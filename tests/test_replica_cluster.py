"""Replication end to end (3 brokers, replication factor 3, min.insync.replicas 2, a real
ZooKeeper): acks=all with an idempotent confluent-kafka producer, every message read back
once, and the followers' segment files byte for byte the leader's up to the high
watermark; a follower stopped past replica.lag.time.max.ms leaves the ISR and rejoins; the
leader killed mid-produce loses no acknowledged message; each partition's leader killed in turn
and restarted: nothing lost or repeated, and all replicas byte-equal after catch-up."""

from __future__ import annotations

import time

from conftest import create_topic, wait_for, zk_session

from broker.protocol import zookeeper as layout
from consumers.cluster import ClusterClient

PARTITIONS = 3
MESSAGES = 3000


def state(zk, topic: str, partition: int):
    return layout.decode_partition_state(zk.get(layout.partition_state_path(topic, partition))[0])


def read_back(
    bootstrap: str, topic: str, count: int, partitions: int = PARTITIONS
) -> dict[int, list[bytes]]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "check", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
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


class Sender:
    """An idempotent acks=all confluent-kafka producer counting failed deliveries; ``config``
    adds to or overrides its librdkafka properties."""

    def __init__(self, bootstrap: str, topic: str, config: dict | None = None):
        from confluent_kafka import Producer

        self.topic = topic
        self.failures: list = []
        self.sent = 0
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "topic.metadata.refresh.interval.ms": 1000,
                # Not 3 refresh intervals (librdkafka's default): a cached leader outlives a
                # metadata request stuck on a stopped (SIGSTOP) broker, which is only given up
                # after socket.timeout.ms, so produce goes on to the leaders it knows.
                "metadata.max.age.ms": 60000,
                **(config or {}),
            }
        )

    def send(self, count: int, partitions: int = 1) -> None:
        for _ in range(count):
            self.producer.produce(
                self.topic,
                b"%d" % self.sent,
                partition=self.sent % partitions,
                on_delivery=lambda err, _msg: err and self.failures.append(err),
            )
            self.sent += 1
            self.producer.poll(0)

    def flush(self, timeout: float) -> int:
        return self.producer.flush(timeout)


def test_a_stopped_follower_leaves_the_isr_acks_all_goes_on_and_it_rejoins(make_cluster):
    import signal

    cluster = make_cluster(
        3,
        min_insync_replicas=2,
        replica_lag_time_max_ms=3000,
        zookeeper_session_timeout_ms=10000,
    )
    create_topic(cluster.brokers[0].port, "lagging", 1, replication_factor=3)
    sender = Sender(cluster.bootstrap, "lagging")
    with zk_session(cluster.zookeeper_connect) as zk:
        leader = state(zk, "lagging", 0).leader
        follower = next(b for b in (1, 2, 3) if b != leader)
        sender.send(100)
        assert sender.flush(10) == 0
        process = cluster.broker(follower).process
        process.send_signal(signal.SIGSTOP)
        try:
            sender.send(100)
            # Out after replica.lag.time.max.ms (checked every half of it), well within its
            # ZooKeeper session: the leader shrank the ISR, not the controller.
            wait_for(lambda: follower not in state(zk, "lagging", 0).isr, 8)
            assert sender.flush(10) == 0
        finally:
            process.send_signal(signal.SIGCONT)
        assert state(zk, "lagging", 0).leader == leader
        sender.send(100)
        assert sender.flush(10) == 0
        wait_for(lambda: follower in state(zk, "lagging", 0).isr, 15)
    assert sender.failures == []
    got = read_back(cluster.bootstrap, "lagging", 300, partitions=1)
    assert got[0] == [b"%d" % i for i in range(300)]


def test_the_leader_killed_mid_produce_loses_no_acknowledged_message(make_cluster):
    cluster = make_cluster(3, min_insync_replicas=2)
    create_topic(cluster.brokers[0].port, "killed", PARTITIONS, replication_factor=3)
    sender = Sender(cluster.bootstrap, "killed")
    with zk_session(cluster.zookeeper_connect) as zk:
        before = state(zk, "killed", 0)
        sender.send(600, PARTITIONS)
        broker = cluster.broker(before.leader)
        broker.kill()  # SIGKILL, with batches in flight
        sender.send(600, PARTITIONS)
        wait_for(lambda: state(zk, "killed", 0).leader not in (before.leader, -1), 20)
        assert sender.flush(30) == 0
        broker.start()  # it truncates where it must and follows
        sender.send(300, PARTITIONS)
        assert sender.flush(30) == 0
        wait_for(lambda: before.leader in state(zk, "killed", 0).isr, 20)
    assert sender.failures == []
    got = read_back(cluster.bootstrap, "killed", 1500)
    for p in range(PARTITIONS):
        assert got[p] == [b"%d" % i for i in range(p, 1500, PARTITIONS)]


def test_each_partitions_leader_killed_in_turn_and_restarted_loses_and_repeats_nothing(
    make_cluster,
):
    cluster = make_cluster(3, min_insync_replicas=2)
    create_topic(cluster.brokers[0].port, "turns", PARTITIONS, replication_factor=3)
    sender = Sender(cluster.bootstrap, "turns")
    killed = []
    with zk_session(cluster.zookeeper_connect) as zk:

        def all_in_sync() -> bool:
            return all(sorted(state(zk, "turns", q).isr) == [1, 2, 3] for q in range(PARTITIONS))

        for p in range(PARTITIONS):
            sender.send(300, PARTITIONS)
            wait_for(all_in_sync, 30)  # the broker restarted last caught up and rejoined
            before = state(zk, "turns", p)
            broker = cluster.broker(before.leader)
            broker.kill()  # SIGKILL, with batches in flight
            killed.append(before.leader)
            sender.send(300, PARTITIONS)
            wait_for(lambda p=p, b=before: state(zk, "turns", p).leader not in (b.leader, -1), 20)
            assert state(zk, "turns", p).leader_epoch > before.leader_epoch
            broker.start()  # it truncates where its history diverged, and follows
        sender.send(300, PARTITIONS)
        assert sender.flush(30) == 0
        wait_for(all_in_sync, 30)
        assert sender.failures == []
        total = sender.sent
        got = read_back(cluster.bootstrap, "turns", total)
        for p in range(PARTITIONS):
            assert got[p] == [b"%d" % i for i in range(p, total, PARTITIONS)]
        # after catch-up every replica holds the leader's batches, byte for byte
        for p in range(PARTITIONS):
            leader = state(zk, "turns", p).leader
            want = segment_bytes(cluster, leader, "turns", p)
            for follower in (b for b in (1, 2, 3) if b != leader):
                wait_for(
                    lambda f=follower, p=p, want=want: (
                        segment_bytes(cluster, f, "turns", p) == want
                    ),
                    15,
                )
    assert len(killed) == PARTITIONS
