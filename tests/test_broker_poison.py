"""A real broker refuses poison batches over the wire - CRC valid, body undecodable - storing
nothing, answering each Produce version as Kafka does, while kcat and confluent-kafka keep
producing and consuming on the same partition."""

from __future__ import annotations

import subprocess

import pytest
from conftest import create_topic
from poison_batches import KINDS, poison
from request_bodies import produce_to

from broker.protocol import compression
from broker.protocol.errors import CorruptMessageError, InvalidRecordError
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def produce(conn: BrokerConnection, topic: str, batch: bytes, version: int) -> dict:
    return produce_to(conn, topic, 0, batch, version, acks=-1, timeout_ms=10000)


def log_end(conn: BrokerConnection, topic: str) -> int:
    body = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [
            {
                "name": topic,
                "partitions": [{"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1}],
            }
        ],
    }
    return conn.request(ApiKey.LIST_OFFSETS, body)["topics"][0]["partitions"][0]["offset"]


def rdkafka_produce(bootstrap: str, topic: str, codec: str, values: list[bytes]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5})
    failed = []
    for value in values:
        producer.produce(
            topic, value, partition=0, on_delivery=lambda err, _msg: err and failed.append(err)
        )
    assert producer.flush(30) == 0 and not failed, failed


def test_poison_is_refused_while_real_clients_carry_on(cluster1):
    topic = "poison-wire"
    port = cluster1.brokers[0].port
    create_topic(port, topic, 1)
    sent = []
    refused = 0
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        for round_, codec in enumerate(CODECS):
            values = [b"%s-%d" % (codec.encode(), i) for i in range(200)]
            rdkafka_produce(cluster1.bootstrap, topic, codec, values)
            sent += values
            end = log_end(conn, topic)
            for kind in KINDS:
                if kind == "bad-compression" and codec == "none":
                    continue
                for version in (3, 7, 8):
                    answer = produce(
                        conn,
                        topic,
                        poison(kind, compression.CODECS_BY_NAME[codec], 5 + 20 * (round_ % 2)),
                        version,
                    )
                    assert answer["error_code"] in (
                        CorruptMessageError.code,
                        InvalidRecordError.code,
                    )
                    refused += 1
            assert log_end(conn, topic) == end  # nothing stored
            good = build_batch([(None, b"ours-%d" % round_)], compression_type=round_)
            assert produce(conn, topic, good, 8)["error_code"] == 0  # the connection still serves
            sent.append(b"ours-%d" % round_)
    assert refused == (len(KINDS) * 5 - 1) * 3
    out = subprocess.run(
        ["kcat", "-b", cluster1.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.splitlines() == sent


@pytest.mark.parametrize(
    "version,code",
    [(3, CorruptMessageError.code), (7, CorruptMessageError.code), (8, InvalidRecordError.code)],
)
def test_framing_errors_answer_as_each_produce_version_expects(cluster1, version, code):
    """INVALID_RECORD (with the record at fault) from v8, which brought the code; before,
    CORRUPT_MESSAGE, as Kafka answered those clients."""
    topic = f"poison-v{version}"
    create_topic(cluster1.brokers[0].port, topic, 1)
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port, timeout=30) as conn:
        answer = produce(conn, topic, poison("bad-offset-deltas", compression.LZ4, 5), version)
    assert answer["error_code"] == code
    if version >= 8:
        assert answer["record_errors"][0]["batch_index"] == 0
        assert "offsetDelta" in answer["error_message"]


@pytest.mark.parametrize("version", [3, 8])
def test_a_body_that_does_not_decompress_is_corrupt_message(cluster1, version):
    topic = f"poison-gzip-v{version}"
    create_topic(cluster1.brokers[0].port, topic, 1)
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port, timeout=30) as conn:
        answer = produce(conn, topic, poison("bad-compression", compression.GZIP, 5), version)
    assert answer["error_code"] == CorruptMessageError.code
