"""The paper's deployment end to end (section 4): a live cluster where producers write Avro
events with a schema id in each message, a separate cluster that mirrors it, and a warehouse
load from the mirror.  confluent-kafka's AvroSerializer writes two compatible versions of a
schema through the real ``headrace schema-registry``; ``headrace mirror`` copies the live
cluster into the offline one while events are still being produced; ``headrace load
--value-format avro`` writes Parquet from the offline cluster, which DuckDB reads back with
typed columns and every event once.  An incompatible version is refused with HTTP 409."""

from __future__ import annotations

import datetime
import json
import subprocess
import time

import duckdb
import pytest
from command_lines import HEADRACE
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from conftest import create_topic, wait_for
from mirror_helpers import MirrorProcess, end_offsets
from schema_registry_process import RegistryProcess

TOPIC = "pageviews"
EVENTS = 400  # 200 of each version


def schema(version: int, *, incompatible: bool = False) -> str:
    fields = [
        {"name": "id", "type": "long"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "url", "type": "string"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ]
    if version >= 2:
        fields.append({"name": "status", "type": "int", "default": 200})
    if incompatible:  # a new field with no default: old events cannot be read with it
        fields.append({"name": "country", "type": "string"})
    return json.dumps({"type": "record", "name": "PageView", "namespace": "web", "fields": fields})


def produce(bootstrap: str, registry: str, version: int, ids: range, base) -> None:
    serializer = AvroSerializer(SchemaRegistryClient({"url": registry}), schema(version))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    ctx = SerializationContext(TOPIC, MessageField.VALUE)
    for i in ids:
        event = {"id": i, "ts": base + datetime.timedelta(seconds=i), "url": f"/p/{i % 17}"}
        event["tags"] = [f"t{i % 3}"] * (i % 3)
        if version >= 2:
            event["status"] = 500 if i % 10 == 0 else 201
        producer.produce(TOPIC, serializer(event, ctx), key=str(i).encode())
        if i % 50 == 49:
            producer.flush(30)
            time.sleep(0.05)  # a steady stream, so the mirror copies while events arrive
    assert producer.flush(30) == 0


@pytest.fixture
def registry(zookeeper):
    process = RegistryProcess(f"{zookeeper.connect}/registry-{time.monotonic_ns()}")
    try:
        yield process.url
    finally:
        process.stop()


def test_avro_events_mirrored_then_loaded_into_typed_columns_once(make_cluster, registry, tmp_path):
    live, offline = make_cluster(1), make_cluster(1)
    create_topic(live.brokers[0].port, TOPIC, 3)
    base = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(hours=1)
    mirror = MirrorProcess(tmp_path / "mirror.log", live, offline, "to-offline", TOPIC)
    mirror.start("--offset-commit-interval-ms", "200")
    try:
        produce(live.bootstrap, registry, 1, range(0, EVENTS // 2), base)
        produce(live.bootstrap, registry, 2, range(EVENTS // 2, EVENTS), base)
        wait_for(lambda: sum(end_offsets(offline.bootstrap, TOPIC, 3)) >= EVENTS, 60)
    finally:
        assert mirror.terminate() == 0, mirror.log()
    assert end_offsets(offline.bootstrap, TOPIC, 3) == end_offsets(live.bootstrap, TOPIC, 3)

    # a version that old events cannot be read with is refused: HTTP 409, error code 409
    client = SchemaRegistryClient({"url": registry})
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(f"{TOPIC}-value", Schema(schema(2, incompatible=True), "AVRO"))
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    assert client.get_latest_version(f"{TOPIC}-value").version == 2

    out = tmp_path / "warehouse"
    load = [*HEADRACE, "load", "--zookeeper", offline.zookeeper_connect, "--topic", TOPIC]
    load += ["--group", "warehouse", "--to", str(out), "--value-format", "avro"]
    load += ["--schema-registry", registry, "--time-field", "ts"]
    done = subprocess.run(load, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    files = f"read_parquet('{out}/{TOPIC}/dt=*/hour=*/*.parquet', union_by_name=true)"
    types = {r[0]: r[1] for r in duckdb.sql(f"DESCRIBE SELECT * FROM {files}").fetchall()}
    assert types["ts"] == "TIMESTAMP WITH TIME ZONE"
    assert (types["id"], types["url"], types["tags"], types["status"]) == (
        "BIGINT",
        "VARCHAR",
        "VARCHAR[]",
        "INTEGER",
    )
    count, ids, low, high = duckdb.sql(
        f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM {files}"
    ).fetchall()[0]
    assert (count, ids, low, high) == (EVENTS, EVENTS, 0, EVENTS - 1)
    # version 1 events, read with version 2, carry its default; version 2 events their own
    by_status = dict(
        duckdb.sql(
            f"SELECT status, count(*) FROM {files} WHERE id < {EVENTS // 2} GROUP BY 1"
        ).fetchall()
    )
    assert by_status == {200: EVENTS // 2}
    assert duckdb.sql(f"SELECT count(*) FROM {files} WHERE status = 500").fetchall()[0] == (
        EVENTS // 20,
    )
    # each event's time is its own, and it was loaded into the hour of that time
    assert duckdb.sql(
        f"SELECT count(*) FROM {files} WHERE ts = TIMESTAMPTZ '{base.isoformat()}' "
        "+ to_seconds(id) AND _event_time = ts"
    ).fetchall()[0] == (EVENTS,)
