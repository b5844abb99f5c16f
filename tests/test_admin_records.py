"""DeleteRecords: the log start offset raised by a partition's leader (whole segments below it
deleted, reads below it OFFSET_OUT_OF_RANGE, ListOffsets earliest answering it), kept across a
restart by ``log-start-offset-checkpoint``, taken by followers from the leader's fetch
responses so a new leader after a SIGKILL keeps it; asked by confluent-kafka's AdminClient,
kafka-python's KafkaAdminClient and our own connection, with Kafka's errors."""

from __future__ import annotations

import pytest
from admin_clients import confluent_admin, request
from conftest import create_topic, metadata, wait_for

from broker.log import LogConfig, LogManager
from broker.protocol.errors import (
    NotLeaderOrFollowerError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey

SMALL_SEGMENTS = {"segment.bytes": "4096"}


def _fill(plog, batches: int) -> None:
    for _ in range(batches):
        plog.append(build_batch([(None, b"x" * 100, None, 0)] * 4))


def test_records_before_an_offset_go_with_whole_segments_and_the_start_survives_a_restart(
    tmp_path,
):
    config = LogConfig().with_overrides(SMALL_SEGMENTS)
    manager = LogManager([tmp_path], config)
    manager.startup()
    plog = manager.get_or_create_log("t", 0)
    _fill(plog, 40)  # 160 records, a few segments
    plog.high_watermark = plog.log_end_offset
    segments_before = len(plog.segments)
    assert segments_before > 3
    cut = plog.segments[2].base_offset + 1  # inside the third segment
    assert plog.delete_records_before(cut) is True
    assert plog.log_start_offset == cut and plog.segments[0].base_offset < cut
    assert len(plog.segments) == segments_before - 2
    assert plog.offset_for_timestamp(-2) == (cut, -1)
    with pytest.raises(OffsetOutOfRangeError):
        plog.read_slice(cut - 1, 1 << 20)
    assert plog.read_slice(cut, 1 << 20).size > 0
    assert plog.delete_records_before(cut - 5) is False  # never lowered
    assert plog.delete_records_before(10_000) is True  # capped at the log end
    assert plog.log_start_offset == plog.log_end_offset == 160
    manager.checkpoint_log_start_offsets(wait=True)
    manager.shutdown()
    again = LogManager([tmp_path], config)
    again.startup()
    try:
        assert again.get_log("t", 0).log_start_offset == 160
    finally:
        again.shutdown()


def _delete_records(port: int, topic: str, partition: int, offset: int, version: int = 1):
    wanted = [{"name": topic, "partitions": [{"partition_index": partition, "offset": offset}]}]
    body = request(port, ApiKey.DELETE_RECORDS, {"topics": wanted, "timeout_ms": 10000}, version)
    return body["topics"][0]["partitions"][0]


def _earliest(port: int, topic: str, partition: int) -> int:
    wanted = {"partition_index": partition, "current_leader_epoch": -1, "timestamp": -2}
    body = request(
        port,
        ApiKey.LIST_OFFSETS,
        {
            "replica_id": -1,
            "isolation_level": 0,
            "topics": [{"name": topic, "partitions": [wanted]}],
        },
    )
    answer = body["topics"][0]["partitions"][0]
    assert answer["error_code"] == 0, answer
    return answer["offset"]


def _produce(bootstrap: str, topic: str, count: int, partition: int = 0) -> None:
    """``count`` records of about 110 bytes, ten to a batch, each acknowledged."""
    from confluent_kafka import Producer

    failed = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    for i in range(count):
        producer.produce(
            topic,
            b"record %d " % i + b"x" * 100,
            partition=partition,
            on_delivery=lambda err, msg: err and failed.append(err),
        )
        if i % 10 == 9:
            producer.flush(30)
    assert producer.flush(30) == 0 and not failed, failed


def test_confluent_delete_records_and_its_errors(cluster1):
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    port = cluster1.brokers[0].port
    create_topic(port, "trimmed", 1, SMALL_SEGMENTS)
    _produce(cluster1.bootstrap, "trimmed", 100)
    admin = confluent_admin(cluster1)
    [future] = admin.delete_records([TopicPartition("trimmed", 0, 40)]).values()
    assert future.result(timeout=30).low_watermark == 40
    assert _earliest(port, "trimmed", 0) == 40
    consumer = Consumer(
        {
            "bootstrap.servers": cluster1.bootstrap,
            "group.id": "trimmed-reader",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition("trimmed", 0, 10)])  # below the start: reset to it
    seen = []
    try:
        wait_for(lambda: seen.extend(consumer.consume(100, 1.0)) or len(seen) >= 60, 30)
    finally:
        consumer.close()
    assert [m.offset() for m in seen] == list(range(40, 100))
    [future] = admin.delete_records([TopicPartition("trimmed", 0, 101)]).values()
    with pytest.raises(KafkaException) as beyond:
        future.result(timeout=30)
    assert beyond.value.args[0].code() == OffsetOutOfRangeError.code
    [future] = admin.delete_records([TopicPartition("trimmed", 0, -1)]).values()
    assert future.result(timeout=30).low_watermark == 100  # -1: the high watermark
    assert _delete_records(port, "no-such", 0, 5)["error_code"] == (
        UnknownTopicOrPartitionError.code
    )


def test_kafka_python_delete_records_and_its_errors(cluster1):
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import OffsetOutOfRangeError as OutOfRange

    port = cluster1.brokers[0].port
    create_topic(port, "kp-trimmed", 1)
    _produce(cluster1.bootstrap, "kp-trimmed", 30)
    admin = KafkaAdminClient(bootstrap_servers=cluster1.bootstrap)
    try:
        tp = TopicPartition("kp-trimmed", 0)
        answer = admin.delete_records({tp: 12})
        assert answer[tp]["low_watermark"] == 12
        with pytest.raises(OutOfRange):
            admin.delete_records({tp: 31})
    finally:
        admin.close()
    assert _earliest(port, "kp-trimmed", 0) == 12


def test_a_new_leader_after_sigkill_and_a_restarted_cluster_keep_the_log_start(make_cluster):
    cluster = make_cluster(3)
    port = cluster.brokers[0].port
    create_topic(port, "kept", 1, SMALL_SEGMENTS, replication_factor=3)
    _produce(cluster.bootstrap, "kept", 60)
    [t] = metadata(port, ["kept"])["topics"]
    [p] = t["partitions"]
    leader = p["leader_id"]
    wait_for(
        lambda: len(metadata(port, ["kept"])["topics"][0]["partitions"][0]["isr_nodes"]) == 3, 20
    )
    others = [b for b in cluster.brokers if b.broker_id != leader]
    assert _delete_records(others[0].port, "kept", 0, 30)["error_code"] == (
        NotLeaderOrFollowerError.code
    )
    answer = _delete_records(cluster.broker(leader).port, "kept", 0, 30)
    # answered once every live replica took the new start (Kafka's low watermark)
    assert answer == {"partition_index": 0, "low_watermark": 30, "error_code": 0}
    cluster.broker(leader).kill()

    def new_leader():
        [part] = metadata(others[0].port, ["kept"])["topics"][0]["partitions"]
        return part["leader_id"] not in (-1, leader) and part["leader_id"]

    successor = cluster.broker(wait_for(new_leader, 30))
    assert wait_for(lambda: _earliest(successor.port, "kept", 0) == 30, 20)
    for broker in cluster.brokers:
        broker.stop()
    for broker in cluster.brokers:
        broker.start()

    def earliest_anywhere():
        [part] = metadata(port, ["kept"])["topics"][0]["partitions"]
        if part["leader_id"] < 0:
            return None
        return _earliest(cluster.broker(part["leader_id"]).port, "kept", 0)

    assert wait_for(lambda: earliest_anywhere() == 30, 30)
