"""Compaction settings on a real broker, read back by confluent-kafka: a
``min.cleanable.dirty.ratio`` between 0 and 1 (a log below it is left alone, one above it is
cleaned), ``segment.ms`` rolling a quiet active segment on the next append so that it becomes
cleanable, ``compact,delete`` both compacting and deleting by retention, and an idempotent
producer's last batch kept by the cleaner so that its retry is still a duplicate."""

from __future__ import annotations

import itertools
import time

import pytest
from conftest import metadata, wait_for
from request_bodies import produce_to
from test_broker_compaction import (
    FAST_CLEANER,
    SMALL_BATCHES,
    create,
    latest,
    produce,
    read_back,
    updates,
)

from broker.log.checkpoint import read_checkpoint
from broker.protocol.records import BatchHeader, split_batches
from consumers.client import BrokerConnection
from consumers.consumer import EARLIEST, Consumer

pytestmark = pytest.mark.integration  # a real broker, real clients

QUIET = 2.0  # seconds a log is watched to see that it is not cleaned (about 20 cleaner ticks)


def _broker_with_controller(make_cluster):
    """A one-broker cluster whose broker is already the controller (CreateTopics goes there)."""
    cluster = make_cluster(1, **FAST_CLEANER)
    wait_for(lambda: metadata(cluster.brokers[0].port)["controller_id"] == 1, 20)
    return cluster


def _segments(broker, topic: str) -> list[tuple[int, int]]:
    """(base offset, size) of each segment of ``topic``-0, oldest first."""
    directory = broker.workdir / f"broker-{broker.broker_id}-logs" / f"{topic}-0"
    return sorted((int(p.name[:20]), p.stat().st_size) for p in directory.glob("*.log"))


def _cleaned_to(broker, topic: str) -> int:
    logs = broker.workdir / f"broker-{broker.broker_id}-logs"
    return read_checkpoint(logs / "cleaner-offset-checkpoint").get((topic, 0), 0)


def _dirty_ratio(broker, topic: str) -> float:
    """The dirty share of the segments below the active one, as the cleaner reckons it (the
    bytes of segments holding offsets past the cleaned point, over all their bytes)."""
    segments = _segments(broker, topic)
    cleaned = _cleaned_to(broker, topic)
    closed = [(size, next_base) for (_, size), (next_base, _) in itertools.pairwise(segments)]
    total = sum(size for size, _ in closed)
    dirty = sum(size for size, next_base in closed if next_base > cleaned)
    return dirty / total if total else 0.0


def _quiet(condition) -> bool:
    """Whether ``condition()`` stays true for QUIET seconds."""
    deadline = time.monotonic() + QUIET
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.1)
    return True


def test_a_log_below_the_dirty_ratio_waits_and_one_above_it_is_cleaned(make_cluster):
    cluster = _broker_with_controller(make_cluster)
    broker, bootstrap = cluster.brokers[0], cluster.bootstrap
    create(bootstrap, "ratio", **{"min.cleanable.dirty.ratio": "0.5", "segment.bytes": "8192"})
    keys = 200  # about 45 KB once clean: each further closed segment is about 15 % dirty
    written = produce(bootstrap, "ratio", updates(3 * keys, keys, seed=1, size=200))
    pushes = iter(range(50, 100))

    def settled() -> bool:
        """Cleaned, with what is dirty clearly below the ratio.  A cleaning that ran while
        the updates were still arriving (a slow machine) leaves the segments closed after it
        dirty, perhaps just under 0.5, where they stay: more updates push them over, and the
        cleaner takes them."""
        if not _cleaned_to(broker, "ratio"):
            return False
        ratio = _dirty_ratio(broker, "ratio")
        if ratio < 0.45:
            return True
        if ratio < 0.55:
            more = updates(20, keys, seed=next(pushes), size=200)
            written.update(produce(bootstrap, "ratio", more))
        return False

    wait_for(settled, 60, interval=0.5)

    batch = 0
    while _dirty_ratio(broker, "ratio") < 0.25:  # about 30 % dirty
        written |= produce(bootstrap, "ratio", updates(20, keys, seed=100 + batch, size=200))
        batch += 1
    ratio = _dirty_ratio(broker, "ratio")
    assert 0.25 <= ratio < 0.45, ratio
    before = read_back(bootstrap, "ratio")
    assert _quiet(lambda: read_back(bootstrap, "ratio") == before)
    cleaned = _cleaned_to(broker, "ratio")

    while _dirty_ratio(broker, "ratio") < 0.6 and _cleaned_to(broker, "ratio") == cleaned:
        written |= produce(bootstrap, "ratio", updates(20, keys, seed=100 + batch, size=200))
        batch += 1
    wait_for(lambda: _cleaned_to(broker, "ratio") > cleaned, 30)
    after = read_back(bootstrap, "ratio")
    assert {offset for offset, _, _ in before} - {offset for offset, _, _ in after}  # cleaned
    latest = {key: offset for offset, (key, _) in sorted(written.items())}
    assert set(latest.values()) <= {offset for offset, _, _ in after}


def _duplicates(bootstrap: str, topic: str) -> int:
    kept = read_back(bootstrap, topic)
    return len(kept) - len({key for _, key, _ in kept})


def test_segment_ms_rolls_a_quiet_active_segment_on_the_next_append_so_it_is_cleaned(
    make_cluster,
):
    cluster = _broker_with_controller(make_cluster)
    bootstrap = cluster.bootstrap
    big = {"segment.bytes": str(1 << 20)}  # never rolled by size here
    create(bootstrap, "rolled", **big, **{"segment.ms": "1000"})
    create(bootstrap, "unrolled", **big)
    for topic in ("rolled", "unrolled"):
        produce(bootstrap, topic, updates(200, 10, seed=2))
    time.sleep(1.2)  # the active segment's first batch is now over segment.ms old
    for topic in ("rolled", "unrolled"):
        produce(bootstrap, topic, [(b"late", b"x")])
    assert len(_segments(cluster.brokers[0], "rolled")) >= 2
    assert len(_segments(cluster.brokers[0], "unrolled")) == 1
    wait_for(lambda: _duplicates(bootstrap, "rolled") == 0, 30)
    # the same records in an active segment are never cleaned
    assert _quiet(lambda: _duplicates(bootstrap, "unrolled") == 190)


def test_compact_delete_compacts_and_deletes_by_retention(make_cluster):
    cluster = _broker_with_controller(make_cluster)
    broker, bootstrap = cluster.brokers[0], cluster.bootstrap
    # segment.ms: the first record of the hour-old time rolls, so no segment holds both
    config = {"cleanup.policy": "compact,delete", "retention.ms": "600000", "segment.ms": "60000"}
    create(bootstrap, "both", **config)
    old = int(time.time() * 1000) - 3600_000  # an hour ago: past retention.ms
    _produce_at(bootstrap, "both", [(b"old-%d" % i, b"o" * 100) for i in range(100)], old)
    written = produce(bootstrap, "both", updates(400, 20, seed=3))
    first_new = min(written)

    def settled():
        kept = _read_from_log_start(bootstrap, "both", max(written) + 1)
        deleted = kept and kept[0][0] >= first_new  # the old records, whose keys are unique
        compacted = _cleaned_to(broker, "both") >= _segments(broker, "both")[-1][0]
        return deleted and compacted and kept

    wait_for(settled, 30)
    cleaned = _cleaned_to(broker, "both")
    kept = _read_from_log_start(bootstrap, "both", max(written) + 1)
    below = [key for offset, key, _ in kept if offset < cleaned]
    assert below and len(below) == len(set(below))  # one record per key below the clean
    latest = {key: offset for offset, (key, _) in sorted(written.items())}
    assert {key for _, key, _ in kept} == set(latest)
    assert set(latest.values()) <= {offset for offset, _, _ in kept}


def _read_from_log_start(bootstrap: str, topic: str, end: int) -> list[tuple]:
    """(offset, key, value) of every record from the log start to ``end``, by our consumer."""
    consumer = Consumer(bootstrap_servers=bootstrap)
    consumer.assign([(topic, 0, EARLIEST)])
    out = []
    deadline = time.monotonic() + 30
    try:
        while consumer.positions[(topic, 0)] < end:
            assert time.monotonic() < deadline, f"not at offset {end} within 30 s"
            out += [(m.offset, m.key, m.value) for m in consumer.poll(0.5)]
    finally:
        consumer.close()
    return out


def _produce_at(bootstrap: str, topic: str, pairs, timestamp_ms: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **SMALL_BATCHES})
    failures = []
    for key, value in pairs:
        producer.produce(
            topic, value, key, timestamp=timestamp_ms, on_delivery=lambda e, _: failures.append(e)
        )
    assert producer.flush(30) == 0 and failures == [None] * len(pairs), failures[:1]


def _batches(broker, topic: str) -> list[tuple[BatchHeader, bytes]]:
    """Every batch of ``topic``-0 on ``broker``'s disk, with its bytes, in offset order."""
    directory = broker.workdir / f"broker-{broker.broker_id}-logs" / f"{topic}-0"
    out = []
    for path in sorted(directory.glob("*.log")):
        data = path.read_bytes()
        out += [(header, data[pos : pos + header.size]) for pos, header in split_batches(data)]
    return out


def test_an_idempotent_producers_last_batch_outlives_a_clean_and_a_retry_stays_a_duplicate(
    make_cluster,
):
    """confluent-kafka's idempotent producer writes keys that a plain producer then overwrites
    all; after the clean its last batch is still on disk (emptied of what was overwritten),
    so a broker rebuilding its producer state from the log alone (killed, its snapshots
    removed, as a new replica has none) still answers that batch sent again as a duplicate
    at its offsets, and readers step past it."""
    from confluent_kafka import Producer as KafkaProducer

    cluster = _broker_with_controller(make_cluster)
    broker, bootstrap = cluster.brokers[0], cluster.bootstrap
    create(bootstrap, "idem")
    idempotent = KafkaProducer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, **SMALL_BATCHES}
    )
    for key, value in updates(200, 10, seed=4):
        idempotent.produce("idem", value, key)
    assert idempotent.flush(30) == 0
    ours = [(h, raw) for h, raw in _batches(broker, "idem") if h.producer_id >= 0]
    last, last_bytes = ours[-1]
    assert len(ours) > 1 and last.base_sequence > 0
    keys = sorted({b"user-%d" % i for i in range(10)})
    written = produce(bootstrap, "idem", updates(300, 10, seed=5) + [(k, b"last") for k in keys])
    wait_for(lambda: _cleaned_to(broker, "idem") >= _segments(broker, "idem")[-1][0] > 0, 30)

    kept = [(h, raw) for h, raw in _batches(broker, "idem") if h.producer_id >= 0]
    assert [(h.producer_id, h.base_sequence, h.base_offset) for h, _ in kept] == [
        (last.producer_id, last.base_sequence, last.base_offset)
    ]
    broker.kill()  # a crash: with no snapshot the whole log is replayed
    directory = broker.workdir / f"broker-{broker.broker_id}-logs" / "idem-0"
    for snapshot in directory.glob("*.snapshot"):
        snapshot.unlink()
    broker.start()
    with BrokerConnection("127.0.0.1", broker.port, timeout=30) as conn:
        answer = wait_for(lambda: produce_to(conn, "idem", 0, last_bytes, acks=-1), 30)
    assert (answer["error_code"], answer["base_offset"]) == (0, last.base_offset)
    assert {k: v for _, k, v in read_back(bootstrap, "idem")} == latest(written)
