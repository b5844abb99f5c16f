"""``headrace load --value-format avro`` end to end: confluent-kafka's AvroSerializer writes
two compatible versions of a schema to real brokers through the real ``headrace
schema-registry``; the real loader writes Parquet that DuckDB reads back typed, every event
once, older events with the newer version's default, bad values as dead letters.  A loader
killed mid-run and rerun after a newer version was registered still writes the plan's
reader schema for the planned range; the newer version takes effect in the next run."""

from __future__ import annotations

import datetime
import decimal
import json
import os
import signal
import subprocess
import time
import uuid

import duckdb
import pyarrow.parquet as pq
import pytest
from command_lines import HEADRACE
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from conftest import create_topic, wait_for, zk_session
from schema_registry_process import RegistryProcess

from broker.protocol import zookeeper as layout
from consumers.schemas.wire import frame
from headrace import cli
from headrace.devcluster import free_port

UTC = datetime.UTC


def schema(version: int) -> str:
    """Version 1 of the clicks' schema; 2 adds ``status`` and 3 ``region``, with defaults."""
    fields = [
        {"name": "id", "type": "long"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "user",
            "type": {
                "type": "record",
                "name": "User",
                "fields": [
                    {"name": "name", "type": "string"},
                    {"name": "tags", "type": {"type": "array", "items": "string"}},
                ],
            },
        },
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
        },
        {"name": "attrs", "type": {"type": "map", "values": "long"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["VIEW", "BUY"]}},
        {"name": "session", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "ref", "type": ["null", "string"], "default": None},
    ]
    if version >= 2:
        fields.append({"name": "status", "type": "int", "default": 200})
    if version >= 3:
        fields.append({"name": "region", "type": "string", "default": "eu"})
    return json.dumps({"type": "record", "name": "Click", "namespace": "web", "fields": fields})


def click(i: int, version: int, base: datetime.datetime) -> dict:
    value = {
        "id": i,
        "ts": base + datetime.timedelta(seconds=i * 7),
        "user": {"name": f"u{i % 13}", "tags": [f"t{i % 3}"] * (i % 3)},
        "price": decimal.Decimal(i) / 100 + decimal.Decimal("1.50"),
        "attrs": {"n": i},
        "kind": "BUY" if i % 4 == 0 else "VIEW",
        "session": str(uuid.UUID(int=i)),
        "ref": None if i % 2 else f"/r/{i}",
    }
    if version >= 2:
        value["status"] = 404 if i % 5 == 0 else 201
    if version >= 3:
        value["region"] = "us"
    return value


@pytest.fixture(scope="module")
def registry(zookeeper):
    """A real ``headrace schema-registry`` process with a ZooKeeper chroot of its own; its URL."""
    process = RegistryProcess(f"{zookeeper.connect}/registry-{time.monotonic_ns()}")
    try:
        yield process.url
    finally:
        process.stop()


def produce(cluster, registry: str, topic: str, version: int, ids: range, base) -> None:
    """Events ``ids`` of schema ``version`` serialized by confluent-kafka's AvroSerializer
    (which registers the version under ``<topic>-value``), keyed so they spread."""
    serializer = AvroSerializer(SchemaRegistryClient({"url": registry}), schema(version))
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "linger.ms": 20})
    ctx = SerializationContext(topic, MessageField.VALUE)
    for i in ids:
        producer.produce(topic, serializer(click(i, version, base), ctx), key=str(i).encode())
    assert producer.flush(30) == 0


def produce_raw(cluster, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": cluster.bootstrap})
    for v in values:
        producer.produce(topic, v, partition=0)
    assert producer.flush(30) == 0


def load(cluster, registry: str, topic: str, group: str, out, *extra: str):
    args = [*HEADRACE, "load", "--zookeeper", cluster.zookeeper_connect, "--topic", topic]
    args += ["--group", group, "--to", str(out), "--value-format", "avro"]
    args += ["--schema-registry", registry, "--time-field", "ts", *extra]
    return args


def rows(out, topic: str) -> str:
    return f"read_parquet('{out}/{topic}/dt=*/hour=*/*.parquet', union_by_name=true)"


def test_avro_events_load_into_typed_columns_once_with_bad_values_as_dead_letters(
    cluster1, registry, tmp_path
):
    topic, group, out = "clicks", "wh-avro", tmp_path / "wh"
    create_topic(cluster1.brokers[0].port, topic, 2)
    base = datetime.datetime.now(UTC).replace(microsecond=0) - datetime.timedelta(hours=2)
    produce(cluster1, registry, topic, 1, range(0, 100), base)
    produce(cluster1, registry, topic, 2, range(100, 200), base)
    good = json.dumps({"x": 1}).encode()
    produce_raw(
        cluster1,
        topic,
        [
            good,  # not Avro: no magic byte
            frame(987_654, b"\x02"),  # an id the registry does not know
            frame(1, b"\x02\x04"),  # a body cut short
        ],
    )
    done = subprocess.run(
        load(cluster1, registry, topic, group, out), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr

    types = {
        r[0]: r[1] for r in duckdb.sql(f"DESCRIBE SELECT * FROM {rows(out, topic)}").fetchall()
    }
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE"
    assert types["user"] == 'STRUCT("name" VARCHAR, tags VARCHAR[])'
    assert types["price"] == "DECIMAL(10,2)"
    assert types["attrs"] == "MAP(VARCHAR, BIGINT)"
    assert (types["kind"], types["session"], types["ref"]) == ("VARCHAR", "VARCHAR", "VARCHAR")
    assert (types["status"], types["id"], types["_offset"]) == ("INTEGER", "BIGINT", "BIGINT")

    count, by_offset, ids, lo, hi = duckdb.sql(
        "SELECT count(*), count(DISTINCT (_partition, _offset)), count(DISTINCT id), min(id), "
        f"max(id) FROM {rows(out, topic)}"
    ).fetchall()[0]
    assert (count, by_offset, ids, lo, hi) == (200, 200, 200, 0, 199)
    # version 1 events read with version 2: the default
    assert duckdb.sql(
        f"SELECT count(*) FROM {rows(out, topic)} WHERE id < 100 AND status = 200"
    ).fetchall()[0] == (100,)
    row = duckdb.sql(
        f"SELECT ts, user.name, price, attrs['n'], kind, session, ref, _event_time "
        f"FROM {rows(out, topic)} WHERE id = 104"
    ).fetchall()[0]
    when = base + datetime.timedelta(seconds=104 * 7)
    assert row[0] == when and row[7] == when
    assert row[1:7] == (
        "u0",
        decimal.Decimal("2.54"),
        104,
        "BUY",
        str(uuid.UUID(int=104)),
        "/r/104",
    )

    dead = duckdb.sql(
        f"SELECT _value, _error FROM read_parquet('{out}/{topic}/_dead_letters/*.parquet') "
        "ORDER BY _offset"
    ).fetchall()
    assert [v for v, _ in dead] == [good, frame(987_654, b"\x02"), frame(1, b"\x02\x04")]
    assert "not schema-registry Avro" in dead[0][1]
    assert dead[1][1] == "unknown schema id 987654"
    assert "truncated" in dead[2][1]


def committed_sum(cluster, group: str, topic: str, partitions: int) -> int:
    with zk_session(cluster.zookeeper_connect) as zk:
        total = 0
        for p in range(partitions):
            node = zk.exists(layout.offset_path(group, topic, p))
            if node is not None:
                total += layout.decode_offset(zk.get(layout.offset_path(group, topic, p))[0])
        return total


def test_a_killed_load_reruns_with_the_reader_schema_of_its_plan(cluster1, registry, tmp_path):
    topic, group, out = "orders", "wh-avro-kill", tmp_path / "wh"
    create_topic(cluster1.brokers[0].port, topic, 2)
    base = datetime.datetime.now(UTC).replace(microsecond=0) - datetime.timedelta(hours=1)
    produce(cluster1, registry, topic, 1, range(0, 150), base)
    produce(cluster1, registry, topic, 2, range(150, 300), base)
    v2_id = SchemaRegistryClient({"url": registry}).get_latest_version(f"{topic}-value").schema_id
    cmd = load(cluster1, registry, topic, group, out, "--max-rows", "5")

    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    wait_for(lambda: proc.poll() is not None or committed_sum(cluster1, group, topic, 2) > 0, 60)
    os.killpg(proc.pid, signal.SIGSTOP)  # freeze the load where it is, then kill -9 it all
    loaded = committed_sum(cluster1, group, topic, 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert 0 < loaded < 300, loaded
    with zk_session(cluster1.zookeeper_connect) as zk:
        plan = layout.decode_plan(zk.get(layout.plan_path(group))[0])
    assert {e["value_schema_id"] for e in plan["partitions"].values()} == {v2_id}

    # a new version between the kill and the rerun: the planned range is still read with v2
    v3_id = SchemaRegistryClient({"url": registry}).register_schema(
        f"{topic}-value", Schema(schema(3), "AVRO")
    )
    assert v3_id != v2_id
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, by_offset, ids = duckdb.sql(
        f"SELECT count(*), count(DISTINCT (_partition, _offset)), count(DISTINCT id) "
        f"FROM {rows(out, topic)}"
    ).fetchall()[0]
    assert (count, by_offset, ids) == (300, 300, 300)
    files = sorted(out.glob(f"{topic}/dt=*/hour=*/*.parquet"))
    assert all("region" not in pq.read_schema(f).names for f in files)
    assert all("status" in pq.read_schema(f).names for f in files)

    # the next run plans with v3: its new events get the new column
    produce(cluster1, registry, topic, 3, range(300, 310), base)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert duckdb.sql(
        f"SELECT count(*), count(DISTINCT id), count(region) FROM {rows(out, topic)}"
    ).fetchall()[0] == (310, 310, 10)
    assert all("region" not in pq.read_schema(f).names for f in files)


def test_avro_options_are_checked_before_anything_runs(cluster1, registry, tmp_path, capsys):
    base = ["load", "--zookeeper", cluster1.zookeeper_connect, "--topic", "t", "--group", "g"]
    base += ["--to", str(tmp_path)]
    cases = [
        (["--value-format", "avro"], "--value-format avro needs --schema-registry URL"),
        (["--schema-registry", registry], "--schema-registry needs --value-format avro"),
        (["--format", "yaml"], "--value-format must be one of json, string, raw, avro"),
    ]
    for extra, message in cases:
        assert cli.main([*base, *extra]) == 2
        assert f"headrace load: {message}" in capsys.readouterr().err

    topic = "no-subject"
    create_topic(cluster1.brokers[0].port, topic, 1)
    done = subprocess.run(
        load(cluster1, registry, topic, "g-none", tmp_path / "wh"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "has no subject 'no-subject-value'" in done.stderr and "Traceback" not in done.stderr

    nobody = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        load(cluster1, nobody, topic, "g-down", tmp_path / "wh"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"the schema registry at {nobody} does not answer" in done.stderr
    assert "Traceback" not in done.stderr
