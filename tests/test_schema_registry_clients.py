"""Avro through a headrace broker and the registry with real clients: confluent-kafka's own
``SchemaRegistryClient``, ``AvroSerializer`` and ``AvroDeserializer`` unmodified, our encoder
and decoder read by them and reading them, and ``headrace produce --value-schema`` /
``consume --schema-registry`` on the command line."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from command_lines import HEADRACE, ROOT
from conftest import create_topic
from schema_registry_process import RegistryProcess

from consumers.consumer import EARLIEST, Consumer
from consumers.producer import Producer
from consumers.schemas import AvroDecoder, AvroEncoder, RegistryClient, frame
from headrace.devcluster import free_port

CLICK = {
    "type": "record",
    "name": "Click",
    "namespace": "headrace.test",
    "fields": [
        {"name": "user", "type": "string"},
        {"name": "n", "type": "long"},
        {"name": "page", "type": ["null", "string"], "default": None},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
CLICK_TEXT = json.dumps(CLICK)


@pytest.fixture(scope="module")
def registry(cluster1):
    process = RegistryProcess(cluster1.zookeeper_connect)
    yield process
    process.stop()


def read_values(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list[bytes]:
    consumer = Consumer(bootstrap, auto_offset_reset="earliest")
    consumer.assign([(topic, 0, EARLIEST)])
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += consumer.poll(0.5)
    consumer.close()
    return [m.value for m in got]


def clicks(count: int) -> list[dict]:
    return [
        {"user": f"u{i}", "n": i, "page": None if i % 2 else f"/p{i}", "at": 1_700_000_000_000 + i}
        for i in range(count)
    ]


def plain(record: dict) -> dict:
    """A decoded click with its timestamp back as milliseconds."""
    at = record["at"]
    return record | {"at": at if isinstance(at, int) else round(at.timestamp() * 1000)}


def test_confluent_serializer_to_our_decoder_and_its_deserializer(cluster1, registry):
    from confluent_kafka import Consumer as CKConsumer
    from confluent_kafka import Producer as CKProducer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    create_topic(cluster1.brokers[0].port, "ck-avro", 1)
    sr = SchemaRegistryClient({"url": registry.url})
    serializer = AvroSerializer(sr, CLICK_TEXT)
    producer = CKProducer({"bootstrap.servers": cluster1.bootstrap})
    sent = clicks(20)
    for record in sent:
        value = serializer(record, SerializationContext("ck-avro", MessageField.VALUE))
        producer.produce("ck-avro", value)
    assert producer.flush(30) == 0
    assert sr.get_latest_version("ck-avro-value").version == 1

    values = read_values(cluster1.bootstrap, "ck-avro", 20)
    decoder = AvroDecoder(RegistryClient(registry.url))
    assert [plain(decoder.decode(v)) for v in values] == sent

    deserializer = AvroDeserializer(sr)
    consumer = CKConsumer(
        {
            "bootstrap.servers": cluster1.bootstrap,
            "group.id": "ck-avro-readers",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["ck-avro"])
    got: list = []
    deadline = time.monotonic() + 30
    while len(got) < 20 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            ctx = SerializationContext("ck-avro", MessageField.VALUE)
            got.append(plain(deserializer(message.value(), ctx)))
    consumer.close()
    assert got == sent


def test_our_encoder_read_by_confluents_deserializer(cluster1, registry):
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    create_topic(cluster1.brokers[0].port, "ours-avro", 1)
    encoder = AvroEncoder(RegistryClient(registry.url), "ours-avro-value", CLICK_TEXT)
    sent = clicks(10)
    with Producer(cluster1.bootstrap) as producer:
        for record in sent:
            producer.send("ours-avro", encoder.encode(record))
    values = read_values(cluster1.bootstrap, "ours-avro", 10)
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    ctx = SerializationContext("ours-avro", MessageField.VALUE)
    assert [plain(deserializer(v, ctx)) for v in values] == sent


def headrace(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HEADRACE, *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_produce_value_schema_then_consume_schema_registry(cluster1, registry, tmp_path):
    create_topic(cluster1.brokers[0].port, "cli-avro", 1)
    schema_file = tmp_path / "click.avsc"
    schema_file.write_text(CLICK_TEXT)
    lines = "\n".join(json.dumps(r) for r in clicks(5)) + "\n"
    common = ["--bootstrap-server", cluster1.bootstrap, "--topic", "cli-avro"]
    done = headrace(
        "produce",
        *common,
        "--value-schema",
        str(schema_file),
        "--schema-registry",
        registry.url,
        stdin=lines,
    )
    assert done.returncode == 0, done.stderr
    assert RegistryClient(registry.url).versions("cli-avro-value") == [1]
    with Producer(cluster1.bootstrap) as producer:  # a value that is not Avro, then Avro again
        producer.send("cli-avro", b"plain text")
        producer.send("cli-avro", frame(999_999, b"\x02"))
    done = headrace(
        "produce",
        *common,
        "--value-schema",
        str(schema_file),
        "--schema-registry",
        registry.url,
        stdin=json.dumps(clicks(6)[5]) + "\n",
    )
    assert done.returncode == 0, done.stderr
    done = headrace(
        "consume",
        *common,
        "--from-beginning",
        "--max-messages",
        "8",
        "--timeout",
        "10",
        "--schema-registry",
        registry.url,
    )
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    expected = clicks(6)
    for record in expected:
        record["at"] = "2023-11-14T22:13:20." + f"{record['at'] % 1000:03d}+00:00"
    assert printed == expected
    assert "cli-avro-0@5: magic byte 112 is not 0" in done.stderr
    assert "cli-avro-0@6: schema id 999999" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_line_that_does_not_fit_stops_produce_naming_it(cluster1, registry, tmp_path):
    create_topic(cluster1.brokers[0].port, "cli-bad", 1)
    schema_file = tmp_path / "click.avsc"
    schema_file.write_text(CLICK_TEXT)
    good = [json.dumps(r) for r in clicks(2)]
    lines = "\n".join([*good, '{"user": "x", "n": "many", "at": 1}', good[0]]) + "\n"
    done = headrace(
        "produce",
        "--bootstrap-server",
        cluster1.bootstrap,
        "--topic",
        "cli-bad",
        "--value-schema",
        str(schema_file),
        "--schema-registry",
        registry.url,
        stdin=lines,
    )
    assert done.returncode == 1
    assert "line 3 does not fit the value schema" in done.stderr
    assert "the 2 messages before it were sent" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(read_values(cluster1.bootstrap, "cli-bad", 3, timeout=2)) == 2
    done = headrace(
        "produce",
        "--bootstrap-server",
        cluster1.bootstrap,
        "--topic",
        "cli-bad",
        "--value-schema",
        str(schema_file),
        "--schema-registry",
        registry.url,
        stdin="not json\n",
    )
    assert done.returncode == 1 and "line 1 is not JSON" in done.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--schema-registry", "http://127.0.0.1:{port}"],
            1,
            "cannot reach the schema registry at http://127.0.0.1:",
        ),
        (["--schema-registry", "127.0.0.1:8081"], 2, "http://host:port"),
        ([], 2, "--value-schema needs --schema-registry"),
    ],
)
def test_bad_registry_options_are_clear(cluster1, tmp_path, args, code, message):
    schema_file = tmp_path / "click.avsc"
    schema_file.write_text(CLICK_TEXT)
    args = [a.format(port=free_port()) for a in args]
    done = headrace(
        "produce",
        "--bootstrap-server",
        cluster1.bootstrap,
        "--topic",
        "cli-url",
        "--value-schema",
        str(schema_file),
        *args,
        stdin="{}\n",
    )
    assert done.returncode == code, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert "HTTP 0" not in done.stderr


def test_a_schema_file_that_is_not_avro_is_clear(cluster1, registry, tmp_path):
    schema_file = tmp_path / "bad.avsc"
    schema_file.write_text('{"type": "nosuch"}')
    done = headrace(
        "produce",
        "--bootstrap-server",
        cluster1.bootstrap,
        "--topic",
        "cli-url",
        "--value-schema",
        str(schema_file),
        "--schema-registry",
        registry.url,
        stdin="{}\n",
    )
    assert done.returncode == 2
    assert "bad.avsc: not an Avro schema: Undefined type: nosuch" in done.stderr
    done = headrace(
        "consume",
        "--bootstrap-server",
        cluster1.bootstrap,
        "--topic",
        "cli-url",
        "--schema-registry",
        "nohttp",
    )
    assert done.returncode == 2 and "http://host:port" in done.stderr


def test_confluents_registry_client_calls(registry):
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    sr = SchemaRegistryClient({"url": registry.url})
    first = Schema(
        json.dumps({"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}]}),
        "AVRO",
    )
    second = Schema(
        json.dumps(
            {
                "type": "record",
                "name": "A",
                "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "int"}],
            }
        ),
        "AVRO",
    )
    schema_id = sr.register_schema("ck-admin", first)
    assert sr.get_schema(schema_id).schema_str is not None
    assert "AVRO" in sr.get_schema_types()
    assert sr.get_subjects_by_schema_id(schema_id) == ["ck-admin"]
    assert [(v.subject, v.version) for v in sr.get_schema_versions(schema_id)] == [("ck-admin", 1)]
    assert sr.lookup_schema("ck-admin", first).version == 1
    assert "ck-admin" in sr.get_subjects()
    assert sr.get_versions("ck-admin") == [1]
    assert sr.get_compatibility() == "BACKWARD"
    assert sr.test_compatibility("ck-admin", second) is False  # "b" has no default
    with pytest.raises(SchemaRegistryError) as refused:
        sr.register_schema("ck-admin", second)
    assert (refused.value.http_status_code, refused.value.error_code) == (409, 409)
    sr.set_compatibility("ck-admin", "NONE")
    assert sr.get_compatibility("ck-admin") == "NONE"
    assert sr.test_compatibility("ck-admin", second) is True
    assert sr.register_schema("ck-admin", second) != schema_id
    assert sr.get_latest_version("ck-admin").version == 2
    assert sr.delete_version("ck-admin", 2) == 2
    assert sr.delete_subject("ck-admin") == [1]
    assert sr.delete_subject("ck-admin", permanent=True) == [1, 2]
    with pytest.raises(SchemaRegistryError) as gone:
        sr.get_versions("ck-admin")
    assert gone.value.error_code == 40401


def test_consume_stops_when_the_registry_is_down_and_commits_nothing_past(
    cluster1, registry, tmp_path
):
    """A registry that cannot be reached is not a value to skip: the group's offset stays
    before the first value not printed, and a run with the registry back prints them all."""
    create_topic(cluster1.brokers[0].port, "cli-down", 1)
    schema_file = tmp_path / "click.avsc"
    schema_file.write_text(CLICK_TEXT)
    common = ["--bootstrap-server", cluster1.bootstrap, "--topic", "cli-down"]
    lines = "\n".join(json.dumps(r) for r in clicks(3)) + "\n"
    done = headrace(
        "produce",
        *common,
        "--value-schema",
        str(schema_file),
        "--schema-registry",
        registry.url,
        stdin=lines,
    )
    assert done.returncode == 0, done.stderr
    consume = [*common, "--group", "cli-down-g", "--from-beginning", "--timeout", "3"]
    down = f"http://127.0.0.1:{free_port()}"
    done = headrace("consume", *consume, "--schema-registry", down)
    assert done.returncode == 1, done.stderr
    assert f"cli-down-0@0: cannot reach the schema registry at {down}" in done.stderr
    assert "skipped" not in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    done = headrace("consume", *consume, "--max-messages", "3", "--schema-registry", registry.url)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["n"] for line in done.stdout.splitlines()] == [0, 1, 2]
