"""Brokers acting on the partition states (3 brokers, a real ZooKeeper): requests are served by
the leader the state names, not by the first replica of the placement; Metadata carries the
states' leader epochs, ISRs and offline replicas; a client's stale or future leader epoch is
refused by Fetch, ListOffsets and OffsetForLeaderEpoch (KIP-320); ``topics describe`` shows
ISRs and filters; acks=all needs min.insync.replicas in the ISR; SIGTERM hands leaderships
over before the broker stops, and clients follow."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from conftest import create_topic, metadata, wait_for, zk_session
from request_bodies import produce_to

from broker.protocol import zookeeper as layout
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection
from consumers.cluster import ClusterClient
from consumers.producer import Producer

NOT_LEADER, NOT_ENOUGH_REPLICAS, FENCED, UNKNOWN_EPOCH = 6, 19, 74, 75


def state(zk, topic: str, partition: int):
    return layout.decode_partition_state(zk.get(layout.partition_state_path(topic, partition))[0])


def fetch_code(port: int, topic: str, partition: int, epoch: int) -> int:
    body = {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 0,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {
                        "partition": partition,
                        "current_leader_epoch": epoch,
                        "fetch_offset": 0,
                        "log_start_offset": -1,
                        "partition_max_bytes": 1 << 20,
                    }
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }
    with BrokerConnection("127.0.0.1", port, timeout=10) as conn:
        answer = conn.request(ApiKey.FETCH, body, version=11)
    return answer["responses"][0]["partitions"][0]["error_code"]


def list_offsets_code(port: int, topic: str, partition: int, epoch: int) -> int:
    body = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [
            {
                "name": topic,
                "partitions": [
                    {"partition_index": partition, "current_leader_epoch": epoch, "timestamp": -1}
                ],
            }
        ],
    }
    with BrokerConnection("127.0.0.1", port, timeout=10) as conn:
        answer = conn.request(ApiKey.LIST_OFFSETS, body, version=5)
    return answer["topics"][0]["partitions"][0]["error_code"]


def offset_for_epoch_code(port: int, topic: str, partition: int, epoch: int) -> int:
    asked = {"partition": partition, "current_leader_epoch": epoch, "leader_epoch": 0}
    body = {"replica_id": -1, "topics": [{"topic": topic, "partitions": [asked]}]}
    with BrokerConnection("127.0.0.1", port, timeout=10) as conn:
        answer = conn.request(ApiKey.OFFSET_FOR_LEADER_EPOCH, body, version=3)
    return answer["topics"][0]["partitions"][0]["error_code"]


def describe(bootstrap: str, *flags: str) -> list[str]:
    command = [sys.executable, "-m", "headrace.cli", "topics", "describe", "--topic", "led"]
    done = subprocess.run(
        [*command, "--bootstrap-server", bootstrap, *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_state_names_the_leader_metadata_its_epoch_isr_and_offline_replicas(make_cluster):
    cluster = make_cluster(3)
    with zk_session(cluster.zookeeper_connect) as zk:
        create_topic(cluster.brokers[0].port, "led", 1, replication_factor=3)
        first = state(zk, "led", 0)
        leader = cluster.broker(first.leader)
        followers = [b for b in cluster.brokers if b.broker_id != first.leader]
        wait_for(lambda: fetch_code(leader.port, "led", 0, first.leader_epoch) == 0, 10)
        assert fetch_code(followers[0].port, "led", 0, -1) == NOT_LEADER

        # Leadership moves with the state node, away from the placement's first replica.
        leader.kill()
        moved = wait_for(lambda: state(zk, "led", 0).leader not in (first.leader, -1), 30)
        now = state(zk, "led", 0)
        assert moved and now.leader_epoch == first.leader_epoch + 1
        new_leader = cluster.broker(now.leader)
        wait_for(lambda: fetch_code(new_leader.port, "led", 0, -1) == 0, 10)

        part = metadata(new_leader.port, ["led"], version=8)["topics"][0]["partitions"][0]
        assert part["leader_id"] == now.leader
        assert part["leader_epoch"] == now.leader_epoch
        assert part["isr_nodes"] == list(now.isr) and first.leader not in part["isr_nodes"]
        assert part["offline_replicas"] == [first.leader]
        assert part["replica_nodes"][0] == first.leader  # the placement is unchanged

        # KIP-320: an older epoch is fenced, a newer one unknown, the current one served.
        for check in (fetch_code, list_offsets_code, offset_for_epoch_code):
            assert check(new_leader.port, "led", 0, first.leader_epoch) == FENCED
            assert check(new_leader.port, "led", 0, now.leader_epoch + 1) == UNKNOWN_EPOCH
            assert check(new_leader.port, "led", 0, now.leader_epoch) == 0

        lines = describe(new_leader.bootstrap)
        assert f"Leader: {now.leader}\t" in lines[1] and f"Offline: {first.leader}" in lines[1]
        assert describe(new_leader.bootstrap, "--under-replicated-partitions") == [lines[1]]
        assert describe(new_leader.bootstrap, "--unavailable-partitions") == []


def test_an_offline_partition_says_so_in_describe(make_cluster):
    cluster = make_cluster(2)
    with zk_session(cluster.zookeeper_connect) as zk:
        create_topic(cluster.brokers[0].port, "led", 2, replication_factor=1)
        alone = state(zk, "led", 0).leader
        survivor = next(b for b in cluster.brokers if b.broker_id != alone)
        cluster.broker(alone).kill()
        wait_for(lambda: state(zk, "led", 0).leader == -1, 30)
        offline = describe(survivor.bootstrap, "--unavailable-partitions")
        assert offline == [
            f"\tTopic: led\tPartition: 0\tLeader: none (offline)\tReplicas: {alone}\tIsr: {alone}"
            f"\tOffline: {alone}"
        ]


def test_sigterm_hands_leaderships_over_before_the_broker_stops(make_cluster):
    """Producing and consuming go on while a leader stops with SIGTERM: the producer (acks=all,
    idempotent, librdkafka's retries) sees no failed message, and a consumer reading meanwhile
    sees every partition's offsets without a gap and every value once, in order."""
    import threading
    import time

    confluent_kafka = __import__("confluent_kafka")
    cluster = make_cluster(3, controlled_shutdown_retry_backoff_ms=200)
    with zk_session(cluster.zookeeper_connect) as zk:
        create_topic(cluster.brokers[0].port, "led", 3, replication_factor=3)
        solo = create_topic(cluster.brokers[0].port, "solo", 3, replication_factor=1)
        assert solo["error_code"] == 0
        before = {p: state(zk, "led", p) for p in range(3)}
        leaving = before[0].leader
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": cluster.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
            }
        )
        failures: list = []
        sent = {p: [] for p in range(3)}
        seen: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(3)}
        stopping = threading.Event()

        def delivered(err, msg):
            if err is not None:
                failures.append(err)

        def produce() -> None:  # about 2,000 messages a second until told to stop
            i = 0
            while not stopping.is_set():
                for _ in range(20):
                    value = b"%d" % i
                    producer.produce("led", value=value, partition=i % 3, on_delivery=delivered)
                    sent[i % 3].append(value)
                    i += 1
                producer.poll(0.01)

        def consume() -> None:
            consumer = confluent_kafka.Consumer(
                {
                    "bootstrap.servers": cluster.bootstrap,
                    "group.id": "watch",
                    "enable.auto.commit": False,
                    "topic.metadata.refresh.interval.ms": 1000,
                }
            )
            consumer.assign([confluent_kafka.TopicPartition("led", p, 0) for p in range(3)])
            try:
                while not (stopping.is_set() and drained()):
                    for msg in consumer.consume(500, 0.2):
                        if msg.error() is None:
                            seen[msg.partition()].append((msg.offset(), msg.value()))
            finally:
                consumer.close()

        def drained() -> bool:
            return all(len(seen[p]) >= len(sent[p]) for p in range(3))

        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            broker = cluster.broker(leaving)
            broker.stop()  # SIGTERM, and waits for the exit
            time.sleep(1.0)
        finally:
            stopping.set()
            threads[0].join(30)
            assert producer.flush(30) == 0
            threads[1].join(30)
        out = broker.log_path.read_text()
        assert f"controlled shutdown of broker {leaving} succeeded" in out
        for p in range(3):
            s = state(zk, "led", p)
            assert s.leader != leaving and leaving not in s.isr
            if before[p].leader == leaving:  # moved by the handover (a later ISR change of
                # the controller's, when the leaving broker's session ends, may add one more)
                assert s.leader_epoch > before[p].leader_epoch
        assert failures == []
        assert not threads[1].is_alive()
        for p in range(3):
            offsets = [offset for offset, _ in seen[p]]
            assert offsets == list(range(len(offsets))), f"partition {p}: a gap or a repeat"
            assert [value for _, value in seen[p]] == sent[p]
        assert sum(map(len, sent.values())) > 1000


def produce_code(port: int, topic: str, acks: int) -> int:
    with BrokerConnection("127.0.0.1", port, timeout=10) as conn:
        answer = produce_to(conn, topic, 0, build_batch([(b"k", b"v")]), acks=acks)
    return answer["error_code"]


def test_acks_all_needs_min_insync_replicas_in_the_isr(make_cluster):
    cluster = make_cluster(3, min_insync_replicas=2, controlled_shutdown_retry_backoff_ms=200)
    port = cluster.brokers[0].port
    with zk_session(cluster.zookeeper_connect) as zk:
        create_topic(port, "led", 1, replication_factor=3)
        create_topic(port, "lenient", 1, {"min.insync.replicas": "1"}, replication_factor=3)
        leader = state(zk, "led", 0).leader
        at = cluster.broker(leader).port
        wait_for(lambda: produce_code(at, "led", -1) == 0, 10)
        followers = [b for b in cluster.brokers if b.broker_id != leader]
        followers[0].stop()  # a controlled shutdown takes it out of the ISR at once
        assert len(state(zk, "led", 0).isr) == 2
        assert produce_code(at, "led", -1) == 0
        followers[1].stop()
        assert state(zk, "led", 0).isr == (leader,)
        wait_for(lambda: produce_code(at, "led", -1) == NOT_ENOUGH_REPLICAS, 10)
        assert produce_code(at, "led", 1) == 0  # acks=1 does not ask
        # The other topic's leadership came to the last broker too; its own minimum is 1.
        assert (state(zk, "lenient", 0).leader, state(zk, "lenient", 0).isr) == (leader, (leader,))
        wait_for(lambda: produce_code(at, "lenient", -1) == 0, 10)


def test_our_clients_kafka_python_and_aiokafka_follow_a_leader_change(make_cluster):
    kafka, aiokafka = __import__("kafka"), __import__("aiokafka")
    cluster = make_cluster(3, controlled_shutdown_retry_backoff_ms=200)
    with zk_session(cluster.zookeeper_connect) as zk:
        create_topic(cluster.brokers[0].port, "led", 1, replication_factor=3)
        leaving = state(zk, "led", 0).leader
        staying = next(b for b in cluster.brokers if b.broker_id != leaving)
        offsets = ClusterClient(staying.bootstrap, request_timeout=15)
        ours = Producer(staying.bootstrap, acks=1, enable_idempotence=False, retry_backoff_ms=50)
        theirs = kafka.KafkaProducer(bootstrap_servers=staying.bootstrap, acks=1, retries=10)
        loop = asyncio.new_event_loop()

        async def started():
            producer = aiokafka.AIOKafkaProducer(
                bootstrap_servers=staying.bootstrap, retry_backoff_ms=50
            )
            await producer.start()
            return producer

        aio = loop.run_until_complete(started())
        try:
            aio_sent = [loop.run_until_complete(aio.send_and_wait("led", b"before", partition=0))]
            ours_sent = [ours.send("led", b"before", partition=0)]
            theirs_sent = [theirs.send("led", b"before", partition=0)]
            ours.flush()
            theirs.flush()
            # Consumers' latest offset is the high watermark: once both followers have all.
            wait_for(lambda: offsets.list_offset("led", 0, -1) == 3, 10)
            cluster.broker(leaving).stop()  # SIGTERM: leadership is handed over first
            assert state(zk, "led", 0).leader != leaving
            # Both producers' metadata still names the old leader; no message fails.
            ours_sent += [ours.send("led", b"after", partition=0) for _ in range(5)]
            theirs_sent += [theirs.send("led", b"after", partition=0) for _ in range(5)]
            ours.flush()
            theirs.flush()
            assert all(f.result(10).offset >= 0 for f in ours_sent)
            assert all(f.get(timeout=10).offset >= 0 for f in theirs_sent)
            send = aio.send_and_wait("led", b"after", partition=0)
            aio_sent.append(loop.run_until_complete(asyncio.wait_for(send, 30)))
            assert all(m.offset >= 0 for m in aio_sent)
            # ListOffsets finds the new leader although the client's metadata named the old;
            # the new leader had the first three (replicated) and took the eleven.
            wait_for(lambda: offsets.list_offset("led", 0, -1) == 3 + 11, 10)
        finally:
            loop.run_until_complete(aio.stop())
            loop.close()
            ours.close()
            theirs.close()
            offsets.close()
