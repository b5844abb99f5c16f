"""Which versions real clients use against headrace now that it serves flexible ones, read off
the broker's own count of requests by API and version (``headrace_requests_total``, what each
request header said): librdkafka produces with Produce v9, fetches with Fetch v13 (topics named
by id) and asks Metadata v12, all flexible; kafka-python uses Produce v9, Fetch v12,
ListOffsets v7 and Metadata v12; the messages come back intact."""

from __future__ import annotations

import time

import pytest
from conftest import Cluster, create_topic
from metrics_scrape import scrape

from headrace.devcluster import free_port

pytestmark = pytest.mark.integration  # real clients against a broker process

TOPIC = "flexible-clients"
COUNT = 50


@pytest.fixture(scope="module")
def broker(zookeeper, tmp_path_factory):
    cluster = Cluster(
        tmp_path_factory.mktemp("flexible"),
        f"{zookeeper.connect}/flexible-{time.monotonic_ns()}",
        1,
        {"group.initial.rebalance.delay.ms": "0"},
    )
    cluster.brokers[0].metrics_port = free_port()
    cluster.start()
    create_topic(cluster.brokers[0].port, TOPIC, 2)
    yield cluster.brokers[0]
    cluster.stop()


def versions_used(before, after) -> dict[str, set[int]]:
    """{api: {versions}} of the requests counted between two scrapes."""
    used: dict[str, set[int]] = {}
    for sample in after.samples:
        if sample.name != "headrace_requests_total":
            continue
        labels = {"api": sample.labels["api"], "version": sample.labels["version"]}
        if sample.value > before["headrace_requests_total", labels]:
            used.setdefault(labels["api"], set()).add(int(labels["version"]))
    return used


def test_librdkafka_uses_the_flexible_versions_and_topic_ids(broker):
    from confluent_kafka import Consumer, Producer

    before = scrape(broker.metrics_url)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(COUNT):
        producer.produce(TOPIC, value=b"librdkafka-%d" % i, key=b"%d" % (i % 7))
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "flexible-librdkafka",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    values = set()
    deadline = time.monotonic() + 60
    while len(values) < COUNT and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.add(message.value())
    consumer.close()
    assert values >= {b"librdkafka-%d" % i for i in range(COUNT)}
    used = versions_used(before, scrape(broker.metrics_url))
    assert 9 in used["Produce"], used
    assert 13 in used["Fetch"], used  # by topic id (KIP-516)
    assert 12 in used["Metadata"], used
    assert 3 in used["ApiVersions"], used


def test_kafka_python_uses_the_flexible_versions(broker):
    from kafka import KafkaConsumer, KafkaProducer

    before = scrape(broker.metrics_url)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(COUNT):
        producer.send(TOPIC, value=b"kafka-python-%d" % i)
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20000,
        group_id=None,
    )
    values = set()
    for message in consumer:
        values.add(message.value)
        if values >= {b"kafka-python-%d" % i for i in range(COUNT)}:
            break
    consumer.close()
    assert values >= {b"kafka-python-%d" % i for i in range(COUNT)}
    used = versions_used(before, scrape(broker.metrics_url))
    assert (used["Produce"], used["Fetch"], used["Metadata"]) == ({9}, {12}, {12}), used
    assert (used["ListOffsets"], used["ApiVersions"]) == ({7}, {3}), used
