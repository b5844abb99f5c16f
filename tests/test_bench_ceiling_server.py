"""The benchmark's ceiling server speaks enough Kafka for confluent-kafka to produce to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from headrace.devcluster import free_port

pytestmark = pytest.mark.integration  # the ceiling server as a process

CEILING = Path(__file__).resolve().parent.parent / "bench" / "ceiling_server.py"


@pytest.fixture
def ceiling():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(CEILING), "--port", str(port), "--partitions", "3"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert process.stdout.readline().strip() == b"ready"
        yield f"127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("acks", [1, 0])
def test_confluent_kafka_produces_one_message_per_request_to_the_ceiling_server(ceiling, acks):
    delivered, failed = [], []

    def on_delivery(err, msg):
        (failed if err else delivered).append(err or msg.partition())

    producer = Producer(
        {
            "bootstrap.servers": ceiling,
            "batch.num.messages": 1,
            "linger.ms": 0,
            "acks": acks,
            "on_delivery": on_delivery,
        }
    )
    metadata = producer.list_topics("any-topic", timeout=10).topics["any-topic"]
    assert sorted(metadata.partitions) == [0, 1, 2]
    assert all(p.leader == 0 for p in metadata.partitions.values())
    for i in range(300):
        producer.produce("any-topic", b"x" * 200, partition=i % 3)
        producer.poll(0)
    assert producer.flush(20) == 0
    assert failed == [] and sorted(delivered) == [0] * 100 + [1] * 100 + [2] * 100
