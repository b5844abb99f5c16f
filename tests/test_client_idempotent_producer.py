"""Our idempotent Producer when one batch of a partition fails for good while later batches of
that partition are in flight behind it: the later ones are not lost with it; and its sequence
state alone, without a broker."""

from __future__ import annotations

import time

from conftest import create_topic
from test_thirdparty_idempotence import ProxiedBroker

from broker.protocol.errors import KafkaError
from consumers.consumer import EARLIEST, Consumer
from consumers.producer import Producer
from consumers.producer.batch import Batch
from consumers.producer.sequences import SEQUENCE_MODULUS, SequenceState


def read_values(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer(bootstrap_servers=bootstrap)
    consumer.assign([(topic, 0, EARLIEST)])
    values: list[bytes] = []
    try:
        for _ in range(50):
            values += [m.value for m in consumer.poll(timeout=0.2)]
            if len(values) >= expected:
                break
    finally:
        consumer.close()
    return values


def test_batches_behind_a_refused_batch_are_delivered(cluster1):
    """A batch the broker refuses for good (MESSAGE_TOO_LARGE) makes the batches pipelined
    behind it meet a sequence gap; they are sent again under a new producer id, not failed."""
    port = cluster1.brokers[0].port
    create_topic(port, "refused-middle", 1, {"max.message.bytes": "1500"})
    bootstrap = f"127.0.0.1:{port}"
    small = [b"s%03d" % i + b"." * 96 for i in range(30)]
    with Producer(
        bootstrap_servers=bootstrap,
        linger_ms=10_000,
        batch_size=1200,
        compression="none",
        delivery_timeout_ms=20_000,
    ) as producer:
        before = [producer.send("refused-middle", v, partition=0) for v in small[:10]]
        big = producer.send("refused-middle", b"B" * 2000, partition=0)
        after = [producer.send("refused-middle", v, partition=0) for v in small[10:]]
        assert producer.flush(30) == 0
        assert isinstance(big.exception(), KafkaError)
        assert big.exception().name == "MESSAGE_TOO_LARGE"
        failed = [f.exception() for f in before + after if f.exception() is not None]
        assert failed == []
    assert read_values(bootstrap, "refused-middle", len(small)) == small


def test_a_batch_whose_answer_was_lost_keeps_its_producer_id_when_another_fails(
    zookeeper, tmp_path
):
    """In one pipeline, partition 0's batch is refused for good (a new producer id follows)
    while partition 1's batch is appended but its answer is lost: partition 1's batch is
    resent under the producer id it was stored with, so the broker knows it, not stored twice."""
    proxied = ProxiedBroker(tmp_path, f"{zookeeper.connect}/lost-{time.monotonic_ns()}")
    proxied.start(drop_every=1_000_000, max_drops=0)
    try:
        create_topic(proxied.broker.port, "lost-answer", 2, {"max.message.bytes": "1500"})
        proxy = proxied.reset_proxy(drop_every=2, max_drops=1)  # the second Produce answer
        with Producer(
            bootstrap_servers=proxied.bootstrap,
            linger_ms=10_000,
            max_request_size=2100,
            delivery_timeout_ms=20_000,
        ) as producer:
            big = producer.send("lost-answer", b"B" * 2000, partition=0)
            kept = producer.send("lost-answer", b"kept", partition=1)
            assert producer.flush(30) == 0
            assert big.exception().name == "MESSAGE_TOO_LARGE"
            assert kept.exception() is None
        assert proxy.drops == 1
        consumer = Consumer(bootstrap_servers=f"127.0.0.1:{proxied.broker.port}")
        consumer.assign([("lost-answer", 1, EARLIEST)])
        values: list[bytes] = []
        try:
            for _ in range(10):
                values += [m.value for m in consumer.poll(timeout=0.2)]
        finally:
            consumer.close()
        assert values == [b"kept"]
    finally:
        proxied.stop()


def test_sequences_wrap_and_a_reset_renumbers_only_the_batches_behind_the_failed_one():
    """The sequence state alone (no broker): each partition counts its records from 0 and
    wraps at 2**31; after a numbered batch fails for good, the id is dropped, sequences start
    again, and of the batches queued again only those from the failed sequence on lose
    their numbers (one sent before it keeps id and sequence, and one never sent is untouched)."""
    sequences = SequenceState()
    sequences.set_id(7, 0)
    batches = []
    for n in range(4):
        batch = Batch("t", 0, 0.0, n)
        batch.records = [None] * 3
        sequences.number(batch)
        batch.data = b"sent"
        batches.append(batch)
    assert [b.sequence for b in batches] == [0, 3, 6, 9]
    assert all(b.producer_id == 7 for b in batches)
    other = Batch("t", 1, 0.0, 9)
    other.records = [None] * 5
    sequences.next_seq[("t", 1)] = SEQUENCE_MODULUS - 2
    assert sequences.number(other) == SEQUENCE_MODULUS - 2
    assert sequences.next_seq[("t", 1)] == 3  # wrapped

    sequences.failed(batches[1])
    sequences.failed(batches[2])  # the first failure of a partition counts
    assert sequences.reset_needed and sequences.failed_at == {("t", 0): 3}
    never_sent = Batch("t", 0, 0.0, 5)
    queued = [batches[0], batches[2], batches[3], never_sent]  # back in the queue, in order
    sequences.reset({("t", 0): queued, ("t", 1): []})
    assert not sequences.reset_needed and not sequences.has_id
    assert sequences.next_seq == {}
    assert (batches[0].sequence, batches[0].data) == (0, b"sent")  # before the failed one
    assert [(b.sequence, b.data) for b in batches[2:]] == [(-1, None), (-1, None)]
    assert never_sent.sequence == -1 and never_sent.data is None
