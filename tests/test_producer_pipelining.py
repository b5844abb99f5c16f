"""The producer at one message per request: a long queue of one-message batches (the default
64 MiB buffer holds hundreds of thousands) is sent through a window of requests in flight,
and with idempotence every message is stored once, in order per partition."""

from __future__ import annotations

import time

import pytest
from conftest import create_topic

from consumers.consumer import EARLIEST, Consumer
from consumers.producer import Producer

MESSAGES = 20_000
PARTITIONS = 2


def read_numbers(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> dict[int, list[int]]:
    consumer = Consumer(bootstrap_servers=bootstrap)
    consumer.assign([(topic, p, EARLIEST) for p in range(PARTITIONS)])
    got: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
    total, deadline = 0, time.monotonic() + timeout
    while total < expected and time.monotonic() < deadline:
        for message in consumer.poll(0.5):
            got[message.partition].append(int(message.value))
            total += 1
    for message in consumer.poll(0.5):  # anything beyond is a duplicate
        got[message.partition].append(int(message.value))
    consumer.close()
    return got


@pytest.mark.timeout(180)
def test_one_message_batches_with_the_default_buffer_arrive_once_each_in_order(cluster1):
    port = cluster1.brokers[0].port
    create_topic(port, "one-per-batch", PARTITIONS)
    bootstrap = f"127.0.0.1:{port}"
    with Producer(bootstrap_servers=bootstrap, linger_ms=0, batch_size=1) as producer:
        assert producer.idempotent  # acks=all by default
        futures = [producer.send("one-per-batch", b"%08d" % i, partition=i % PARTITIONS)
                   for i in range(MESSAGES)]
        assert producer.flush(150) == 0
    assert [f.exception() for f in futures if f.exception() is not None] == []
    offsets = [[f.result().offset for f in futures[p::PARTITIONS]] for p in range(PARTITIONS)]
    assert offsets == [list(range(MESSAGES // PARTITIONS))] * PARTITIONS  # one batch each
    got = read_numbers(bootstrap, "one-per-batch", MESSAGES)
    for p in range(PARTITIONS):
        assert got[p] == list(range(p, MESSAGES, PARTITIONS)), f"partition {p}"
