"""The producer at one message per request: a long queue of one-message batches (the default
64 MiB buffer holds hundreds of thousands) is sent through a window of requests in flight,
and with idempotence every message is stored once, in order per partition."""

from __future__ import annotations

import pytest
from conftest import create_topic
from test_thirdparty_idempotence import (
    PARTITIONS,
    assert_exactly_once_in_order,
    numbered,
    read_back,
)

from consumers.producer import Producer

MESSAGES = 20_000


@pytest.mark.timeout(180)
def test_one_message_batches_with_the_default_buffer_arrive_once_each_in_order(cluster1):
    port = cluster1.brokers[0].port
    create_topic(port, "one-per-batch", PARTITIONS)
    bootstrap = f"127.0.0.1:{port}"
    with Producer(bootstrap_servers=bootstrap, linger_ms=0, batch_size=1) as producer:
        assert producer.idempotent  # acks=all by default
        futures = [
            producer.send("one-per-batch", numbered(i), partition=i % PARTITIONS)
            for i in range(MESSAGES)
        ]
        assert producer.flush(150) == 0
    assert [f.exception() for f in futures if f.exception() is not None] == []
    for p in range(PARTITIONS):  # one message per stored batch
        offsets = [f.result().offset for f in futures[p::PARTITIONS]]
        assert offsets == list(range(len(offsets))), f"partition {p}"
    assert_exactly_once_in_order(read_back(bootstrap, "one-per-batch", MESSAGES), MESSAGES)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("idempotence", [False, True])
def test_a_first_send_to_a_named_partition_fetches_the_topics_metadata(cluster1, idempotence):
    """A message for an explicit partition of a topic the producer has not seen yet must not
    wait forever: the sender finds no leader, so it asks for the topic's metadata."""
    port = cluster1.brokers[0].port
    topic = f"named-partition-{int(idempotence)}"
    create_topic(port, topic, PARTITIONS)
    bootstrap = f"127.0.0.1:{port}"
    with Producer(
        bootstrap_servers=bootstrap, enable_idempotence=idempotence, acks="all"
    ) as producer:
        future = producer.send(topic, b"first", partition=PARTITIONS - 1)
        metadata = future.result(timeout=20)
    assert (metadata.partition, metadata.offset) == (PARTITIONS - 1, 0)
