"""Batches already stored that no consumer can decode (written before brokers checked records,
or copied from another cluster): consumers raise a typed error and can skip them, ``headrace
consume`` says where they are, and ``headrace load`` keeps them as dead letters and loads
everything else exactly once.

The poison is planted with the storage layer while the broker is stopped, with the record
check switched off, between events produced by kcat.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import duckdb
import pytest
from command_lines import HEADRACE, kcat_produce, load_cmd
from conftest import create_topic
from kazoo.client import KazooClient
from poison_batches import poison
from test_loader_exactly_once import events

from broker.log import LogConfig
from broker.log import partition as partition_module
from broker.log.partition import PartitionLog
from broker.protocol import compression
from broker.protocol import zookeeper as layout
from broker.protocol.records import build_batch
from consumers.consumer import Consumer, CorruptBatchError
from consumers.group import GroupConsumer

TOPIC = "poisoned"
FIRST, PLANTED, LAST = 300, 50, 200  # good events: by kcat, planted between the poison, by kcat
POISON = [(300, 304), (355, 394)]  # offsets of the two poison batches
END = FIRST + 5 + PLANTED + 40 + LAST  # 595
GOOD = FIRST + PLANTED + LAST  # 550


@pytest.fixture(scope="module")
def poisoned(zookeeper, tmp_path_factory):
    """One broker with TOPIC (one partition): 300 events, a gzip batch that does not
    decompress, 50 events, a batch whose last record is cut short, 200 events."""
    import time

    from conftest import Cluster

    workdir = tmp_path_factory.mktemp("poisoned")
    cluster = Cluster(workdir, f"{zookeeper.connect}/poison-{time.monotonic_ns()}", 1).start()
    try:
        broker = cluster.brokers[0]
        create_topic(broker.port, TOPIC, 1)
        kcat_produce(cluster.bootstrap, TOPIC, events(FIRST))
        broker.stop()
        bad_gzip = poison("bad-compression", compression.GZIP, 5)
        truncated = poison("truncated-record", compression.NONE, 40)
        middle = build_batch(
            [(None, e) for e in events(PLANTED, FIRST)], timestamp=int(time.time() * 1000)
        )
        partition_module.CHECK_RECORDS = False  # as a broker before the check stored them
        try:
            plog = PartitionLog.open(
                Path(broker.workdir, "broker-1-logs", f"{TOPIC}-0"), LogConfig()
            )
            for batch in (bad_gzip, middle, truncated):
                plog.append(batch)
            plog.close()
        finally:
            partition_module.CHECK_RECORDS = True
        broker.start()
        kcat_produce(cluster.bootstrap, TOPIC, events(LAST, FIRST + PLANTED))
        cluster.planted = {300: bad_gzip, 355: truncated}
        yield cluster
    finally:
        cluster.stop()


def ids_of(values) -> list[int]:
    return [json.loads(v)["id"] for v in values]


@pytest.mark.parametrize("columnar", [False, True])
def test_consumer_raises_a_typed_error_and_skips_on_seek(poisoned, columnar):
    consumer = Consumer(bootstrap_servers=poisoned.bootstrap, columnar=columnar)
    consumer.assign([(TOPIC, 0, 0)])
    values, met = [], []
    try:
        while consumer.position(TOPIC, 0) < END:
            try:
                got = consumer.poll(2.0)
            except CorruptBatchError as err:
                with pytest.raises(CorruptBatchError):  # raised again until sought past
                    consumer.poll(0.5)
                met.append((err.topic, err.partition, err.first_offset, err.last_offset))
                stored = poisoned.planted[err.first_offset]
                assert err.raw[16:] == stored[16:]  # as stored: only the base offset differs
                consumer.seek(err.topic, err.partition, err.next_offset)
                continue
            if columnar:
                values += [v for block in got for v in block.values]
            else:
                values += [m.value for m in got]
    finally:
        consumer.close()
    assert met == [(TOPIC, 0, first, last) for first, last in POISON]
    assert ids_of(values) == list(range(GOOD))


def test_group_consumer_skips_with_seek_and_commits_past(poisoned):
    group = GroupConsumer(
        "poison-readers",
        [TOPIC],
        poisoned.zookeeper_connect,
        bootstrap_servers=poisoned.bootstrap,
        auto_offset_reset="smallest",
    )
    values, met = [], []
    try:
        for _ in range(200):
            try:
                values += [m.value for m in group.poll(0.5)]
            except CorruptBatchError as err:
                met.append(err.first_offset)
                group.seek(err.topic, err.partition, err.next_offset)
            if len(values) == GOOD:
                break
        group.commit()
    finally:
        group.close()
    assert met == [first for first, _ in POISON]
    assert ids_of(values) == list(range(GOOD))
    zk = KazooClient(hosts=poisoned.zookeeper_connect, timeout=10)
    zk.start(timeout=15)
    try:
        node = layout.offset_path("poison-readers", TOPIC, 0)
        assert layout.decode_offset(zk.get(node)[0]) == END
    finally:
        zk.stop()
        zk.close()


def test_headrace_consume_names_the_batch_and_how_to_skip_it(poisoned):
    def consume(*extra):
        return subprocess.run(
            [
                *HEADRACE,
                "consume",
                "--bootstrap-server",
                poisoned.bootstrap,
                "--topic",
                TOPIC,
                "--timeout",
                "3",
                *extra,
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )

    done = consume("--from-beginning")
    assert done.returncode == 1
    assert len(done.stdout.splitlines()) == FIRST
    message = done.stderr.decode()
    assert "offsets 300..304 cannot be decoded" in message and "--offset 305" in message
    done = consume("--partition", "0", "--offset", "305")
    assert done.returncode == 1 and len(done.stdout.splitlines()) == PLANTED
    assert "--offset 395" in done.stderr.decode()


def load_poisoned(poisoned, group: str, out) -> subprocess.CompletedProcess:
    """``headrace load`` of the poisoned topic into ``out`` in chunks of at most 64 rows."""
    return subprocess.run(
        load_cmd(poisoned, TOPIC, group, str(out), "--max-rows", "64"),
        capture_output=True,
        timeout=180,
        check=False,
    )


def test_load_keeps_poison_as_dead_letters_and_the_rest_exactly_once(poisoned, tmp_path):
    out = tmp_path / "wh"
    first = load_poisoned(poisoned, "wh-poison", out)
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    files = sorted(p.relative_to(out) for p in out.rglob("*.parquet"))
    stamps = {f: (out / f).stat().st_mtime_ns for f in files}
    rows = duckdb.sql(
        f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM read_parquet("
        f"'{out}/{TOPIC}/dt=*/hour=*/*.parquet', union_by_name=true)"
    ).fetchall()[0]
    assert rows == (GOOD, GOOD, 0, GOOD - 1)
    dead = duckdb.sql(
        f"SELECT _offset, _value, _error FROM read_parquet("
        f"'{out}/{TOPIC}/_dead_letters/*.parquet') ORDER BY _offset"
    ).fetchall()
    assert [d[0] for d in dead] == [first for first, _ in POISON]
    for (_offset, raw, error), (first_offset, last_offset) in zip(dead, POISON):
        assert raw[16:] == poisoned.planted[first_offset][16:]
        assert f"offsets {first_offset}..{last_offset}" in error
    summary = first.stdout.decode()
    total = next(line for line in summary.splitlines() if line.startswith("total"))
    assert f"{GOOD:,}" in total and " 2 " in f" {total} "

    again = load_poisoned(poisoned, "wh-poison", out)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert sorted(p.relative_to(out) for p in out.rglob("*.parquet")) == files
    assert all((out / f).stat().st_mtime_ns == stamp for f, stamp in stamps.items())

    # Another group loading the same offsets cuts the same chunks: the same file names.
    other = tmp_path / "wh2"
    third = load_poisoned(poisoned, "wh-poison-2", other)
    assert third.returncode == 0, third.stderr.decode()[-2000:]
    assert sorted(p.relative_to(other) for p in other.rglob("*.parquet")) == files
