"""OffsetForLeaderEpoch (key 23), versions 0-3: the schemas against kafka-python's, byte for
byte (v4, flexible, in ``test_wire_rest_apis.py``), and a real broker answering raw requests
from its leader epoch cache, with KIP-320's fencing of the asker's current leader epoch."""

from __future__ import annotations

import pytest
from conftest import create_topic, metadata, wait_for
from kafka.protocol.old import offset_for_leader_epoch as kp

from broker.log import LogConfig, PartitionLog
from broker.protocol.apis import (
    OFFSET_FOR_LEADER_EPOCH_REQUEST as REQUEST,
)
from broker.protocol.apis import (
    OFFSET_FOR_LEADER_EPOCH_RESPONSE as RESPONSE,
)
from broker.protocol.errors import (
    UnknownLeaderEpochError,
    UnknownTopicOrPartitionError,
)
from broker.protocol.records import build_batch
from broker.protocol.registry import API_BY_KEY, ApiKey
from consumers.client import BrokerConnection

VERSIONS = [0, 1, 2, 3]


def request_body(version: int, partitions) -> dict:
    """``partitions``: (topic, partition, current leader epoch, leader epoch) tuples; the
    fields a version lacks hold their defaults, as decoding gives them."""
    topics: dict[str, list] = {}
    for topic, partition, current, epoch in partitions:
        entry = {
            "partition": partition,
            "current_leader_epoch": current if version >= 2 else -1,
            "leader_epoch": epoch,
        }
        topics.setdefault(topic, []).append(entry)
    topic_list = [{"topic": t, "partitions": ps} for t, ps in topics.items()]
    return {"replica_id": -1 if version >= 3 else -2, "topics": topic_list}


def test_the_registry_serves_versions_0_to_4_and_our_clients_ask_for_4():
    api = API_BY_KEY[ApiKey.OFFSET_FOR_LEADER_EPOCH]
    assert (api.name, api.min_version, api.max_version, api.client_version) == (
        "OffsetForLeaderEpoch",
        0,
        4,
        4,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_requests_round_trip_and_match_kafka_python_bytes(version):
    body = request_body(version, [("clicks", 0, 4, 3), ("clicks", 5, -1, 0), ("views", 2, 7, 7)])
    encoded = REQUEST.encode(body, version)
    assert REQUEST.decode(encoded, version) == body
    topics = [
        ("clicks", [(0, 4, 3), (5, -1, 0)] if version >= 2 else [(0, 3), (5, 0)]),
        ("views", [(2, 7, 7)] if version >= 2 else [(2, 7)]),
    ]
    fields = {"topics": topics}
    if version >= 3:
        fields["replica_id"] = -1
    theirs = getattr(kp, f"OffsetForLeaderEpochRequest_v{version}")(**fields)
    assert bytes(encoded) == theirs.encode()


@pytest.mark.parametrize("version", VERSIONS)
def test_responses_round_trip_and_match_kafka_python_bytes(version):
    partitions = [
        {"error_code": 0, "partition": 0, "leader_epoch": 3, "end_offset": 120},
        {"error_code": 74, "partition": 1, "leader_epoch": -1, "end_offset": -1},
    ]
    if version == 0:
        partitions[0]["leader_epoch"] = -1  # not on the wire: decoded as its default
    body: dict = {"throttle_time_ms": 0, "topics": [{"topic": "clicks", "partitions": partitions}]}
    encoded = RESPONSE.encode(body, version)
    assert RESPONSE.decode(encoded, version) == body
    rows = [tuple(v for k, v in p.items() if version or k != "leader_epoch") for p in partitions]
    fields = {"topics": [("clicks", rows)]}
    if version >= 2:
        fields["throttle_time_ms"] = 0
    theirs = getattr(kp, f"OffsetForLeaderEpochResponse_v{version}")(**fields)
    assert bytes(encoded) == theirs.encode()


def test_golden_bytes_of_a_version_3_request():
    encoded = REQUEST.encode(request_body(3, [("t", 1, 2, 0)]), 3)
    assert bytes(encoded).hex() == (
        "ffffffff"  # replica_id -1: a consumer
        "00000001"
        "0001"
        "74"  # one topic, "t"
        "00000001"  # one partition
        "00000001"  # partition 1
        "00000002"  # current_leader_epoch 2
        "00000000"  # leader_epoch 0
    )


# --- a real broker ------------------------------------------------------------------------------


def ask(port: int, version: int, partitions) -> list[dict]:
    with BrokerConnection("127.0.0.1", port) as conn:
        body = conn.request(
            ApiKey.OFFSET_FOR_LEADER_EPOCH, request_body(version, partitions), version=version
        )
    return [p for t in body["topics"] for p in t["partitions"]]


def produce(port: int, topic: str, count: int) -> None:
    with BrokerConnection("127.0.0.1", port) as conn:
        for i in range(count):
            data = build_batch([(None, b"event %d" % i)] * 3)
            body = {
                "transactional_id": None,
                "acks": 1,
                "timeout_ms": 5000,
                "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": data}]}],
            }
            answer = conn.request(ApiKey.PRODUCE, body)
            assert answer["responses"][0]["partition_responses"][0]["error_code"] == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_a_broker_answers_from_its_epoch_cache(cluster1, version):
    port = cluster1.brokers[0].port
    topic = f"epochs-v{version}"
    create_topic(port, topic, 1)
    produce(port, topic, 4)  # 12 records, all under epoch 0
    latest, unknown_epoch, missing = ask(
        port, version, [(topic, 0, 0, 0), (topic, 0, -1, 5), ("no-such-topic", 0, -1, 0)]
    )
    assert (latest["error_code"], latest["end_offset"]) == (0, 12)
    assert (unknown_epoch["error_code"], unknown_epoch["end_offset"]) == (0, -1)
    assert missing["error_code"] == UnknownTopicOrPartitionError.code
    if version >= 1:
        assert (latest["leader_epoch"], unknown_epoch["leader_epoch"]) == (0, -1)
    if version >= 2:  # the asker's current leader epoch is checked
        (newer,) = ask(port, version, [(topic, 0, 1, 0)])
        assert newer["error_code"] == UnknownLeaderEpochError.code


def test_a_restarted_broker_answers_for_epochs_in_its_log_and_fences_old_ones(make_cluster):
    cluster = make_cluster(1)
    broker = cluster.brokers[0]
    create_topic(broker.port, "fenced", 1)
    produce(broker.port, "fenced", 2)  # offsets 0-5 under epoch 0
    broker.stop()
    # A later leader's batches, as a replica would have copied them: epoch 4 from offset 6.
    plog = PartitionLog.open(
        broker.workdir / f"broker-{broker.broker_id}-logs" / "fenced-0", LogConfig()
    )
    plog.append(build_batch([(None, b"later")] * 2), leader_epoch=4)
    plog.close()
    broker.start()
    # The leader epoch checked is the partition state's, not the newest in the log.
    e = wait_for(lambda: leader_epoch(broker.port, "fenced"), 15)[0]
    first, current, between = ask(
        broker.port, 3, [("fenced", 0, e, 0), ("fenced", 0, e, 4), ("fenced", 0, e, 2)]
    )
    assert (first["error_code"], first["leader_epoch"], first["end_offset"]) == (0, 0, 6)
    assert (current["leader_epoch"], current["end_offset"]) == (4, 8)
    assert (between["leader_epoch"], between["end_offset"]) == (0, 6)
    # An older current epoch is fenced: tests/test_controller_leadership.py moves a leader.
    newer, unchecked = ask(broker.port, 3, [("fenced", 0, e + 1, 0), ("fenced", 0, -1, 4)])
    assert newer["error_code"] == UnknownLeaderEpochError.code == 75
    assert (unchecked["error_code"], unchecked["end_offset"]) == (0, 8)
    # The broker goes on serving everyone else.
    assert ask(broker.port, 0, [("fenced", 0, -1, 0)])[0]["end_offset"] == 6


def leader_epoch(port: int, topic: str) -> tuple[int] | None:
    """(the partition's leader epoch in Metadata,) once it has a leader."""
    part = metadata(port, [topic])["topics"][0]["partitions"][0]
    return (part["leader_epoch"],) if part["leader_id"] >= 0 else None
