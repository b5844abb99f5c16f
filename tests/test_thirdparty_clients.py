"""Real, unmodified Kafka clients against real brokers: kcat, confluent-kafka, kafka-python and
aiokafka produce keyed messages with every codec and read every one back, in order per
partition, from a one-broker and a three-broker cluster."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import defaultdict

import pytest
from command_lines import kcat_read, kcat_send
from conftest import create_topic

pytestmark = pytest.mark.integration  # real clients against brokers

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
KEYS = [f"key-{i}" for i in range(10)]
PER_KEY = 30
PARTITIONS = 4


def messages(tag: str) -> list[tuple[str, str]]:
    """(key, value) pairs; values carry a sequence number per key."""
    return [(key, f"{tag}|{key}|{seq}") for seq in range(PER_KEY) for key in KEYS]


def read_until_all(poll) -> list:
    """Call ``poll`` (it returns a list of records, maybe empty) until every message of
    ``messages()`` is back or 60 s have passed; all the records read."""
    records: list = []
    deadline = time.monotonic() + 60
    while len(records) < len(KEYS) * PER_KEY and time.monotonic() < deadline:
        records += poll()
    return records


def check_all_back_in_order(records, tag: str) -> None:
    """``records``: (partition, offset, key, value).  Every message is back exactly once, each
    key lives in one partition, and within a partition a key's sequence numbers rise."""
    by_partition = defaultdict(list)
    for partition, offset, key, value in records:
        by_partition[partition].append((offset, key, value))
    partition_of_key = {}
    seen = []
    for partition, items in by_partition.items():
        items.sort()
        last_seq = {}
        for _offset, key, value in items:
            assert partition_of_key.setdefault(key, partition) == partition, (
                f"{key} in two partitions"
            )
            t, k, seq = value.split("|")
            assert t == tag and k == key
            assert int(seq) > last_seq.get(key, -1), f"{key}: {seq} after {last_seq.get(key)}"
            last_seq[key] = int(seq)
            seen.append((key, value))
    assert sorted(seen) == sorted(messages(tag))


@pytest.fixture(params=["cluster1", "cluster3"])
def cluster(request):
    return request.getfixturevalue(request.param)


def new_topic(cluster, prefix: str) -> str:
    """A topic of PARTITIONS partitions named for ``prefix`` and the cluster's size."""
    name = f"{prefix}-{len(cluster.brokers)}"
    create_topic(cluster.brokers[0].port, name, PARTITIONS)
    return name


# --- kcat ----------------------------------------------------------------------------------


def test_kcat_lists_the_cluster(cluster):
    topic = new_topic(cluster, "kcat-list")
    out = subprocess.run(
        ["kcat", "-b", cluster.bootstrap, "-L", "-t", topic],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert f"{len(cluster.brokers)} brokers:" in out
    for broker in cluster.brokers:
        assert f"broker {broker.broker_id} at 127.0.0.1:{broker.port}" in out
    assert f'topic "{topic}" with {PARTITIONS} partitions' in out


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produces_and_consumes(cluster, codec):
    topic = new_topic(cluster, f"kcat-{codec}")
    lines = "".join(f"{k}|{v}\n" for k, v in messages(topic))
    kcat_send(cluster.bootstrap, topic, lines.encode(), codec, "|", "-X", "linger.ms=5")
    out = kcat_read(cluster.bootstrap, topic, "%p|%o|%k|%s\n")
    records = []
    for line in out.splitlines():
        partition, offset, key, t, k, seq = line.split("|")
        records.append((int(partition), int(offset), key, f"{t}|{k}|{seq}"))
    check_all_back_in_order(records, topic)


# --- confluent-kafka (librdkafka) ----------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_produces_and_consumes(cluster, codec):
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    topic = new_topic(cluster, f"ck-{codec}")
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "compression.type": codec,
            "linger.ms": 5,
            "acks": "all",
        }
    )
    failures = []
    for key, value in messages(topic):
        producer.produce(
            topic, key=key, value=value, on_delivery=lambda err, msg: err and failures.append(err)
        )
    assert producer.flush(60) == 0 and not failures
    consumer = Consumer(
        {"bootstrap.servers": cluster.bootstrap, "group.id": "unused", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])

    def poll():
        msg = consumer.poll(0.5)
        if msg is None:
            return []
        assert msg.error() is None, msg.error()
        return [(msg.partition(), msg.offset(), msg.key().decode(), msg.value().decode())]

    records = read_until_all(poll)
    consumer.close()
    check_all_back_in_order(records, topic)


# --- kafka-python --------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_produces_and_consumes(cluster, codec):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    topic = new_topic(cluster, f"kp-{codec}")
    producer = KafkaProducer(
        bootstrap_servers=cluster.bootstrap,  # idempotent by default
        compression_type=None if codec == "none" else codec,
        linger_ms=5,
    )
    futures = [producer.send(topic, key=k.encode(), value=v.encode()) for k, v in messages(topic)]
    producer.flush(60)
    for future in futures:
        future.get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap, enable_auto_commit=False, consumer_timeout_ms=3000
    )
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumer.seek_to_beginning()
    records = read_until_all(
        lambda: [(m.partition, m.offset, m.key.decode(), m.value.decode()) for m in consumer]
    )
    consumer.close()
    check_all_back_in_order(records, topic)


# --- aiokafka ------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_aiokafka_produces_and_consumes(cluster, codec):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic = new_topic(cluster, f"aio-{codec}")

    async def run():
        producer = AIOKafkaProducer(
            bootstrap_servers=cluster.bootstrap,
            compression_type=None if codec == "none" else codec,
            linger_ms=5,
        )
        await producer.start()
        try:
            sent = [
                await producer.send(topic, key=k.encode(), value=v.encode())
                for k, v in messages(topic)
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False)
        await consumer.start()
        records = []
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
            await consumer.seek_to_beginning()
            deadline = time.monotonic() + 60
            while len(records) < len(KEYS) * PER_KEY and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for msgs in batches.values():
                    records += [
                        (m.partition, m.offset, m.key.decode(), m.value.decode()) for m in msgs
                    ]
        finally:
            await consumer.stop()
        return records

    check_all_back_in_order(asyncio.run(run()), topic)
