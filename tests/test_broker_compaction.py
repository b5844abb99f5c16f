"""Compacted topics on real brokers: keyed updates and deletes read back by confluent-kafka
and kcat as the latest value per key, tombstones gone after ``delete.retention.ms``, on three
brokers that each clean their own copy; keyless records refused with INVALID_RECORD; a
key-value store rebuilt from offset 0 by our consumer; a broker killed (SIGKILL) at every
step of a clean; the cleaner keeping up with a steady stream."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest
from command_lines import kcat_read
from conftest import wait_for

from broker.log.checkpoint import read_checkpoint
from broker.protocol.errors import InvalidRecordError
from consumers.consumer import EARLIEST, Consumer
from consumers.producer import Producer

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer as KafkaConsumer  # noqa: E402
from confluent_kafka import KafkaError, TopicPartition  # noqa: E402
from confluent_kafka import Producer as KafkaProducer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

FAST_CLEANER = {
    "log_cleaner_backoff_ms": 100,
    "log_flush_offset_checkpoint_interval_ms": 300,
    "log_retention_check_interval_ms": 200,
}
SMALL_BATCHES = {"linger.ms": 5, "batch.size": 4000}  # a batch must fit a segment
COMPACT = {
    "cleanup.policy": "compact",
    "segment.bytes": "8192",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "3000",
    "file.delete.delay.ms": "1000",
}


def create(bootstrap: str, topic: str, replicas: int = 1, **config) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(
        topic, num_partitions=1, replication_factor=replicas, config={**COMPACT, **config}
    )
    admin.create_topics([new])[topic].result(timeout=20)


def produce(bootstrap: str, topic: str, pairs) -> dict[int, tuple]:
    """Send (key, value) pairs in order with acks=all; offset -> (key, value)."""
    producer = KafkaProducer({"bootstrap.servers": bootstrap, "acks": "all", **SMALL_BATCHES})
    written: dict[int, tuple] = {}
    failures = []

    def delivered(err, msg):
        if err is not None:
            failures.append(err)
        else:
            written[msg.offset()] = (msg.key(), msg.value())

    for key, value in pairs:
        producer.produce(topic, value=value, key=key, on_delivery=delivered)
        producer.poll(0)
    producer.flush(30)
    assert not failures, failures
    return written


def read_back(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes | None]]:
    """(offset, key, value) of every record from offset 0, by confluent-kafka."""
    consumer = KafkaConsumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(msg.error())
            out.append((msg.offset(), msg.key(), msg.value()))
    finally:
        consumer.close()
    raise AssertionError("no end of partition within 30 s")


def updates(n: int, keys: int, seed: int, size: int = 100):
    rng = random.Random(seed)
    return [(b"user-%d" % rng.randrange(keys), b"%d:" % i + b"v" * size) for i in range(n)]


def latest(written: dict[int, tuple]) -> dict[bytes, bytes | None]:
    return {written[o][0]: written[o][1] for o in sorted(written)}


def assert_subsequence_with_every_latest(kept, written, sent=None) -> None:
    """Each record read is the one acknowledged at its offset (or, if its acknowledgement
    was lost to a kill, one of ``sent``), offsets increase, and each key's latest record is
    among them."""
    assert [o for o, _, _ in kept] == sorted({o for o, _, _ in kept})
    known = dict(written)
    for offset, key, value in kept:
        if offset not in written and sent is not None:
            assert (key, value) in sent, offset
            known[offset] = (key, value)
        assert known[offset] == (key, value), offset
    offsets = {o for o, _, _ in kept}
    last = {}
    for offset in sorted(known):
        last[known[offset][0]] = offset
    assert set(last.values()) <= offsets


def partition_dirs(cluster, topic: str) -> list[Path]:
    return [
        b.workdir / f"broker-{b.broker_id}-logs" / f"{topic}-0"
        for b in cluster.brokers
        if (b.workdir / f"broker-{b.broker_id}-logs" / f"{topic}-0").exists()
    ]


def wait_cleaned(broker, topic: str, timeout: float = 30) -> None:
    """Until every segment of ``topic``-0 on ``broker`` but the active one is clean (by its
    ``cleaner-offset-checkpoint``)."""
    logs = broker.workdir / f"broker-{broker.broker_id}-logs"

    def caught_up():
        bases = sorted(int(p.name[:20]) for p in (logs / f"{topic}-0").glob("*.log"))
        cleaned = read_checkpoint(logs / "cleaner-offset-checkpoint").get((topic, 0), 0)
        return cleaned >= bases[-1] > 0

    wait_for(caught_up, timeout, interval=0.3)


def test_updates_and_deletes_read_back_as_the_latest_per_key_on_every_replica(make_cluster):
    cluster = make_cluster(3, **FAST_CLEANER)
    create(cluster.bootstrap, "profiles", replicas=3)
    written = produce(cluster.bootstrap, "profiles", updates(1500, keys=50, seed=1))
    deleted = [b"user-%d" % i for i in range(10)]
    written.update(produce(cluster.bootstrap, "profiles", [(k, None) for k in deleted]))
    # more updates of the other keys roll the tombstones out of the active segment
    filler = [(b"user-%d" % (10 + i % 40), b"f" * 150) for i in range(300)]
    written.update(produce(cluster.bootstrap, "profiles", filler))
    expected = latest(written)
    end = max(written) + 1

    def compacted():
        kept = read_back(cluster.bootstrap, "profiles")
        return kept if len(kept) < end / 3 else None

    kept = wait_for(compacted, 30, interval=0.5)
    assert_subsequence_with_every_latest(kept, written)
    assert {k: v for _, k, v in kept} == expected  # deleted keys still read as tombstones
    assert all(expected[k] is None for k in deleted)
    # every broker cleaned its own copy: each holds far less than was produced
    produced_bytes = sum(len(k) + len(v or b"") for k, v in written.values())
    wait_for(
        lambda: (
            len(partition_dirs(cluster, "profiles")) == 3
            and all(
                sum(p.stat().st_size for p in d.glob("*.log")) < produced_bytes / 2
                for d in partition_dirs(cluster, "profiles")
            )
        ),
        30,
        interval=0.5,
    )

    def tombstones_gone():
        kept = read_back(cluster.bootstrap, "profiles")
        return kept if not {k for _, k, _ in kept} & set(deleted) else None

    kept = wait_for(tombstones_gone, 40, interval=1.0)  # delete.retention.ms after their clean
    assert {k: v for _, k, v in kept} == {k: v for k, v in expected.items() if v is not None}
    text = kcat_read(cluster.bootstrap, "profiles", "%o %k\n")
    assert len(text.splitlines()) == len(kept)


def test_a_keyless_record_is_refused_with_invalid_record(make_cluster):
    cluster = make_cluster(1, **FAST_CLEANER)
    create(cluster.bootstrap, "keyed")
    producer = KafkaProducer({"bootstrap.servers": cluster.bootstrap, "retries": 0})
    errors = []
    producer.produce("keyed", value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD
    with Producer(bootstrap_servers=cluster.bootstrap) as ours:
        refused = ours.send("keyed", b"no key either")
        ours.flush()
    with pytest.raises(InvalidRecordError, match="accepts only records with a key"):
        refused.result()
    written = produce(cluster.bootstrap, "keyed", [(b"k", b"v")])
    assert list(written) == [0]  # nothing of the refused batches was appended


def test_a_compacted_topic_rebuilds_a_key_value_store_from_offset_0(make_cluster):
    cluster = make_cluster(1, **FAST_CLEANER)
    create(cluster.bootstrap, "store")
    rng = random.Random(5)
    state: dict[bytes, bytes] = {}
    with Producer(bootstrap_servers=cluster.bootstrap, acks="all", batch_size=4096) as producer:
        for i in range(3000):
            key = b"item-%d" % rng.randrange(200)
            if rng.random() < 0.1:
                producer.send("store", None, key=key)
                state.pop(key, None)
            else:
                value = b"%d" % i + b"." * rng.randrange(100)
                producer.send("store", value, key=key)
                state[key] = value
        producer.flush()

    def rebuilt():
        consumer = Consumer(bootstrap_servers=cluster.bootstrap)
        consumer.assign([("store", 0, EARLIEST)])
        view: dict[bytes, bytes] = {}
        seen = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batch = consumer.poll(0.5)
            if not batch and consumer.positions[("store", 0)] >= 3000:
                break
            for message in batch:
                seen += 1
                if message.value is None:
                    view.pop(message.key, None)
                else:
                    view[message.key] = message.value
        consumer.close()
        return (view, seen) if seen < 1500 else None  # read after the cleaner's work

    view, _ = wait_for(rebuilt, 30, interval=0.5)
    assert view == state


def test_a_broker_killed_at_every_step_of_a_clean_keeps_a_correct_log(make_cluster, monkeypatch):
    cluster = make_cluster(1, **FAST_CLEANER)
    broker = cluster.brokers[0]
    create(cluster.bootstrap, "crashy")
    written = produce(cluster.bootstrap, "crashy", updates(800, keys=40, seed=3))
    sent = set(updates(3000, keys=40, seed=20))
    broker.stop()
    data = broker.workdir / f"broker-{broker.broker_id}-logs" / "crashy-0"
    for i, step in enumerate(["cleaned", "swap", "deleted", "installed", "random"]):
        if step != "random":
            monkeypatch.setenv("HEADRACE_TEST_CLEANER_KILL_AT", step)
        broker.start()
        monkeypatch.delenv("HEADRACE_TEST_CLEANER_KILL_AT", raising=False)
        if step == "random":  # a real SIGKILL whenever a clean has files in flight
            more = updates(3000, keys=40, seed=20)
            sender = threading.Thread(
                target=lambda pairs=more: written.update(
                    produce(cluster.bootstrap, "crashy", pairs)
                )
            )
            sender.start()
            wait_for(
                lambda: any(n.endswith((".cleaned", ".swap")) for n in os.listdir(data)),
                30,
                interval=0.002,
            )
            broker.kill()
            sender.join(60)
        else:
            written.update(produce(cluster.bootstrap, "crashy", updates(400, keys=40, seed=10 + i)))
            wait_for(lambda: broker.process.poll() is not None, 30)  # killed itself at ``step``
            broker.process = None
        broker.start()
        kept = read_back(cluster.bootstrap, "crashy")
        # acks=all answered before the kill: everything acknowledged is in ``written``
        assert_subsequence_with_every_latest(kept, written, sent)
        broker.stop()


def test_the_cleaner_keeps_up_with_a_steady_stream(make_cluster):
    cluster = make_cluster(1, **FAST_CLEANER)
    broker = cluster.brokers[0]
    create(cluster.bootstrap, "stream")
    stop = time.monotonic() + 6
    rng = random.Random(9)
    producer = KafkaProducer({"bootstrap.servers": cluster.bootstrap, **SMALL_BATCHES})
    sent = 0
    while time.monotonic() < stop:
        for _ in range(200):
            producer.produce("stream", key=b"s-%d" % rng.randrange(100), value=b"x" * 200)
            sent += 1
        producer.poll(0)
        time.sleep(0.02)
    producer.flush(30)
    wait_cleaned(broker, "stream")  # every segment but the active one is clean
    cleans = broker.log_path.read_text().count("stream-0: cleaned offsets up to")
    assert cleans >= 2
    kept = read_back(cluster.bootstrap, "stream")
    assert len(kept) < sent / 4
    assert len({k for _, k, _ in kept}) == 100


def test_the_loader_and_dump_log_read_a_compacted_topic(make_cluster, tmp_path):
    import json
    import subprocess

    import duckdb
    from command_lines import HEADRACE, ROOT, load_cmd

    cluster = make_cluster(1, **FAST_CLEANER)
    broker = cluster.brokers[0]
    create(cluster.bootstrap, "events")
    rng = random.Random(11)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    pairs = [
        (b"k%d" % rng.randrange(60), json.dumps({"ts": now, "id": i, "pad": "p" * 80}).encode())
        for i in range(2500)
    ]
    produce(cluster.bootstrap, "events", pairs)
    wait_cleaned(broker, "events")
    data = broker.workdir / f"broker-{broker.broker_id}-logs" / "events-0"
    kept = read_back(cluster.bootstrap, "events")
    assert len(kept) < 1000  # offsets with gaps: far fewer records than offsets
    warehouse = tmp_path / "wh"
    subprocess.run(
        load_cmd(cluster, "events", "wh", str(warehouse), "--until-caught-up"),
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    ids = duckdb.sql(
        f"SELECT id FROM read_parquet('{warehouse}/events/dt=*/hour=*/*.parquet')"
    ).fetchall()
    assert sorted(i for (i,) in ids) == sorted(json.loads(v)["id"] for _, _, v in kept)
    dumped = subprocess.run(
        [*HEADRACE, "dump-log", str(data)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert dumped.returncode == 0 and "INVALID" not in dumped.stdout


def test_a_follower_back_from_a_stop_copies_its_leaders_compacted_log(make_cluster, tmp_path):
    from broker.log import LogConfig, PartitionLog
    from broker.protocol.records import decode_batch, split_batches

    cluster = make_cluster(2, **FAST_CLEANER)
    create(cluster.bootstrap, "copied", replicas=2)
    leader_id = metadata_leader(cluster, "copied")
    follower = next(b for b in cluster.brokers if b.broker_id != leader_id)
    follower.stop()
    written = produce(cluster.bootstrap, "copied", updates(2000, keys=30, seed=4))
    wait_cleaned(cluster.broker(leader_id), "copied")
    kept = read_back(cluster.bootstrap, "copied")
    assert len(kept) < len(written) / 3
    follower.start()
    end = max(written) + 1
    directory = follower.workdir / f"broker-{follower.broker_id}-logs" / "copied-0"

    def caught_up():
        names = [p for p in directory.glob("*.log") if p.stat().st_size]
        data = b"".join(p.read_bytes() for p in sorted(names))
        last = None
        for _, header in split_batches(data):
            last = header.next_offset
        return last == end

    wait_for(caught_up, 30, interval=0.3)
    follower.stop()
    config = LogConfig(cleanup_policy="compact")
    copy = PartitionLog.open(directory, config)
    got, offset = [], 0
    while offset < copy.log_end_offset:
        data = copy.read(offset, 1 << 20)
        for pos, header in split_batches(data):
            got += [(r.offset, r.key, r.value) for r in decode_batch(data, pos).records]
            offset = header.next_offset
    copy.close()
    assert_subsequence_with_every_latest(got, written)
    assert len(got) < len(written) / 2  # the leader's gaps, copied (and the follower's clean)


def metadata_leader(cluster, topic: str) -> int:
    from conftest import metadata

    body = metadata(cluster.brokers[0].port, [topic])
    return body["topics"][0]["partitions"][0]["leader_id"]


def test_a_zookeeper_group_reads_a_compacted_topic_once_across_a_restart(make_cluster):
    from consumers.group import GroupConsumer

    cluster = make_cluster(1, **FAST_CLEANER)
    broker = cluster.brokers[0]
    create(cluster.bootstrap, "feed")
    written = produce(cluster.bootstrap, "feed", updates(2000, keys=25, seed=8))
    wait_cleaned(broker, "feed")
    kept = read_back(cluster.bootstrap, "feed")
    seen: list = []
    for share in (len(kept) // 2, len(kept)):  # the second resumes from the first's commit
        group = GroupConsumer(
            "feeders",
            ["feed"],
            cluster.zookeeper_connect,
            auto_offset_reset="smallest",
            auto_commit=False,  # only what was taken is committed
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(seen) < share:
            taken = group.poll(0.5)[: share - len(seen)]
            seen += [(m.offset, m.key, m.value) for m in taken]
            if taken:
                group.commit(taken[-1])
        group.close()
    assert seen == kept
    assert_subsequence_with_every_latest(seen, written)
