"""Avro values to Arrow (loaders.avro) without a registry or brokers: the type of every Avro
type and logical type, nulls, nested and named types, schema resolution, dead letters, event
times, and random records of random schemas encoded by fastavro and read back equal."""

from __future__ import annotations

import calendar
import datetime
import decimal
import io
import json
import string
import struct
import uuid

import fastavro
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.protocol import zookeeper as layout
from consumers.consumer import Message
from consumers.schemas.wire import frame
from loaders.avro import (
    AvroSchemaError,
    AvroValues,
    ReaderSchema,
    UnknownSchemaId,
    arrow_type,
    event_ms,
)
from loaders.convert import Converter, ValueFormat
from loaders.eventtime import DAY_MS
from loaders.layout import DEAD_LETTER, HOUR_MS, QUARANTINE

UTC = datetime.UTC
PLAN_MS = calendar.timegm((2024, 3, 10, 12, 0, 0)) * 1000


def record(*fields, name="Event") -> dict:
    return {"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]}


def encode(schema: dict, value, schema_id: int = 1) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema, named_schemas={}), value)
    return frame(schema_id, out.getvalue())


def registry(*schemas: dict):
    """A ``writer_schema`` callable over schemas numbered from 1."""
    texts = {i: json.dumps(s) for i, s in enumerate(schemas, 1)}

    def writer_schema(schema_id: int) -> str:
        if schema_id not in texts:
            raise UnknownSchemaId(schema_id)
        return texts[schema_id]

    return writer_schema


def decode(reader: dict, values: list, *writers: dict):
    """(table of the good values, good indexes, dead letters) with ``reader`` as schema 1 and
    ``writers`` as 2, 3, ..."""
    values_ = AvroValues(ReaderSchema(json.dumps(reader)), registry(reader, *writers))
    body, good, dead = values_.decode(values)
    return pa.table(body) if body else pa.table({}), good, dead


# --- the type of each Avro type -----------------------------------------------------------

ENUM = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}
DICT = pa.dictionary(pa.int32(), pa.string())


@pytest.mark.parametrize(
    ("avro", "arrow"),
    [
        ("null", pa.null()),
        ("boolean", pa.bool_()),
        ("int", pa.int32()),
        ("long", pa.int64()),
        ("float", pa.float32()),
        ("double", pa.float64()),
        ("bytes", pa.binary()),
        ("string", pa.string()),
        ({"type": "string"}, pa.string()),
        ({"type": "fixed", "name": "F", "size": 4}, pa.binary(4)),
        (ENUM, DICT),
        ({"type": "array", "items": "long"}, pa.list_(pa.int64())),
        ({"type": "map", "values": "string"}, pa.map_(pa.string(), pa.string())),
        (["null", "long"], pa.int64()),
        (["long", "null"], pa.int64()),
        (["string"], pa.string()),
        (["null", "int", "string"], pa.string()),  # JSON text
        (record(("a", "int"), name="R"), pa.struct([("a", pa.int32())])),
        ({"type": "long", "logicalType": "timestamp-millis"}, pa.timestamp("ms", tz="UTC")),
        ({"type": "long", "logicalType": "timestamp-micros"}, pa.timestamp("us", tz="UTC")),
        ({"type": "long", "logicalType": "timestamp-nanos"}, pa.timestamp("ns", tz="UTC")),
        ({"type": "long", "logicalType": "local-timestamp-millis"}, pa.timestamp("ms")),
        ({"type": "long", "logicalType": "local-timestamp-micros"}, pa.timestamp("us")),
        ({"type": "int", "logicalType": "date"}, pa.date32()),
        ({"type": "int", "logicalType": "time-millis"}, pa.time32("ms")),
        ({"type": "long", "logicalType": "time-micros"}, pa.time64("us")),
        (
            {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
            pa.decimal128(10, 2),
        ),
        (
            {"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 18},
            pa.decimal128(18, 0),
        ),
        (
            {"type": "bytes", "logicalType": "decimal", "precision": 50, "scale": 5},
            pa.decimal256(50, 5),
        ),
        ({"type": "string", "logicalType": "uuid"}, pa.string()),
        ({"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}, pa.string()),
        # logical types that do not fit their type are ignored, as the spec says
        ({"type": "string", "logicalType": "timestamp-millis"}, pa.string()),
        ({"type": "long", "logicalType": "no-such-type"}, pa.int64()),
    ],
)
def test_each_avro_type_has_its_arrow_type(avro, arrow):
    assert arrow_type(json.dumps(avro)) == arrow
    # and a value of it decodes into that column
    schema = record(("x", avro))
    reader = ReaderSchema(json.dumps(schema))
    assert reader.schema == pa.schema([("x", arrow)])


def test_a_schema_that_is_not_avro_is_a_typed_error():
    for text in (
        "{",
        '{"type": "wat"}',
        '{"type": "bytes", "logicalType": "decimal", "precision": 2, "scale": 3}',
        '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "Nope"}]}',
    ):
        with pytest.raises(AvroSchemaError):
            ReaderSchema(text)


def test_every_logical_type_decodes_to_its_value():
    schema = record(
        ("ts", {"type": "long", "logicalType": "timestamp-millis"}),
        ("us", {"type": "long", "logicalType": "timestamp-micros"}),
        ("local", {"type": "long", "logicalType": "local-timestamp-millis"}),
        ("day", {"type": "int", "logicalType": "date"}),
        ("tm", {"type": "int", "logicalType": "time-millis"}),
        ("tu", {"type": "long", "logicalType": "time-micros"}),
        ("price", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}),
        (
            "fprice",
            {"type": "fixed", "name": "P", "size": 6, "logicalType": "decimal", "precision": 12},
        ),
        ("id", {"type": "string", "logicalType": "uuid"}),
        ("raw", {"type": "fixed", "name": "Mac", "size": 6}),
        ("data", "bytes"),
        ("color", ENUM),
    )
    when = datetime.datetime(2024, 3, 10, 12, 30, 1, 123456, tzinfo=UTC)
    an_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    value = {
        "ts": when,
        "us": when,
        "local": when.replace(tzinfo=None),
        "day": datetime.date(2024, 3, 10),
        "tm": datetime.time(12, 30, 1, 123000),
        "tu": datetime.time(12, 30, 1, 123456),
        "price": decimal.Decimal("-1234567.89"),
        "fprice": decimal.Decimal("987654321012"),
        "id": str(an_id),
        "raw": b"\x00\x01\x02\x03\x04\xff",
        "data": b"\xff\x00",
        "color": "GREEN",
    }
    table, good, dead = decode(schema, [encode(schema, value)])
    assert (good, dead) == ([0], [])
    row = table.to_pylist()[0]
    assert row["ts"] == when.replace(microsecond=123000)
    assert row["us"] == when
    assert row["local"] == when.replace(microsecond=123000, tzinfo=None)
    assert row["day"] == datetime.date(2024, 3, 10)
    assert row["tm"] == datetime.time(12, 30, 1, 123000)
    assert row["tu"] == datetime.time(12, 30, 1, 123456)
    assert row["price"] == decimal.Decimal("-1234567.89")
    assert row["fprice"] == decimal.Decimal("987654321012")
    assert row["id"] == str(an_id)
    assert (row["raw"], row["data"], row["color"]) == (value["raw"], b"\xff\x00", "GREEN")
    assert table.schema.field("color").type == DICT


def test_uuid_on_fixed_is_its_text():
    schema = record(("u", {"type": "fixed", "name": "U", "size": 16, "logicalType": "uuid"}))
    an_id = uuid.uuid4()
    plain = record(("u", {"type": "fixed", "name": "U", "size": 16}))
    table, _good, _ = decode(schema, [encode(plain, {"u": an_id.bytes})])
    assert table.column("u").to_pylist() == [str(an_id)]


def test_nulls_of_nullable_unions_in_either_order_and_nested():
    inner = record(("city", ["null", "string"]), ("zip", ["int", "null"]), name="Address")
    schema = record(
        ("a", ["null", "long"]),
        ("b", ["string", "null"]),
        ("addr", ["null", inner]),
        ("tags", {"type": "array", "items": ["null", "string"]}),
    )
    values = [
        {"a": None, "b": None, "addr": None, "tags": []},
        {"a": 5, "b": "x", "addr": {"city": None, "zip": 7}, "tags": [None, "t"]},
    ]
    table, good, dead = decode(schema, [encode(schema, v) for v in values])
    assert (good, dead) == ([0, 1], [])
    assert table.to_pylist() == values
    assert table.schema.field("addr").type == pa.struct(
        [("city", pa.string()), ("zip", pa.int32())]
    )


def test_named_types_are_reused_by_name_and_namespace():
    schema = {
        "type": "record",
        "name": "Order",
        "namespace": "shop",
        "fields": [
            {"name": "from", "type": record(("city", "string"), name="Address")},
            {"name": "to", "type": "Address"},
            {"name": "back", "type": ["null", "shop.Address"]},
            {"name": "c1", "type": ENUM},
            {"name": "c2", "type": "Color"},
        ],
    }
    value = {"from": {"city": "A"}, "to": {"city": "B"}, "back": None, "c1": "RED", "c2": "GREEN"}
    table, _good, _ = decode(schema, [encode(schema, value)])
    assert table.to_pylist() == [value]
    assert table.schema.field("to").type == pa.struct([("city", pa.string())])


def test_other_unions_and_recursive_records_are_json_text():
    node = {
        "type": "record",
        "name": "Node",
        "fields": [
            {"name": "label", "type": "string"},
            {"name": "next", "type": ["null", "Node"]},
        ],
    }
    schema = record(
        ("choice", ["null", "long", "string", "bytes"]),
        ("list", node),
    )
    values = [
        {"choice": 3, "list": {"label": "a", "next": {"label": "b", "next": None}}},
        {"choice": b"\x00\xff", "list": {"label": "c", "next": None}},
        {"choice": None, "list": {"label": "d", "next": None}},
    ]
    table, _good, _ = decode(schema, [encode(schema, v) for v in values])
    assert table.column("choice").to_pylist() == ["3", '"\\u0000\\u00ff"', None]
    assert table.column("list").to_pylist() == [
        {"label": "a", "next": '{"label": "b", "next": null}'},
        {"label": "c", "next": None},
        {"label": "d", "next": None},
    ]


def test_a_schema_that_is_not_a_record_is_one_value_column():
    table, _good, _ = decode({"type": "array", "items": "int"}, [frame(1, b"\x04\x02\x04\x00")])
    assert table.column_names == ["value"]
    assert table.column("value").to_pylist() == [[1, 2]]


# --- schema resolution and dead letters ---------------------------------------------------

V1 = record(("id", "long"), ("path", "string"))
V2 = record(("id", "long"), ("path", "string"))
V2["fields"].append({"name": "status", "type": "int", "default": 200})


def test_older_writer_schemas_are_read_with_the_reader_schemas_defaults():
    values = [encode(V2, {"id": 1, "path": "/a", "status": 404}, 1)]
    values.append(encode(V1, {"id": 2, "path": "/b"}, 2))
    table, good, dead = decode(V2, values, V1)
    assert (good, dead) == ([0, 1], [])
    assert table.to_pylist() == [
        {"id": 1, "path": "/a", "status": 404},
        {"id": 2, "path": "/b", "status": 200},
    ]


def test_values_that_cannot_be_read_are_dead_letters_with_the_reason():
    incompatible = record(("id", "string"), ("path", "string"))
    good_value = encode(V2, {"id": 1, "path": "/a", "status": 1}, 1)
    values = [
        good_value,
        b'{"id": 1}',  # JSON: no magic byte
        b"\x00\x00",  # too short for an id
        None,  # a tombstone
        encode(V2, {"id": 2, "path": "/b", "status": 1}, 99),  # unknown id
        good_value[:-4],  # truncated body
        good_value + b"\x00\x00",  # bytes after the record
        encode(incompatible, {"id": "x", "path": "/c"}, 2),  # cannot be resolved
        good_value,
    ]
    table, good, dead = decode(V2, values, incompatible)
    assert good == [0, 8]
    assert table.num_rows == 2
    reasons = dict(dead)
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7]
    assert "magic byte 123" in reasons[1]
    assert "too short" in reasons[2]
    assert "tombstone" in reasons[3]
    assert reasons[4] == "unknown schema id 99"
    assert "truncated" in reasons[5]
    assert "2 bytes after the Avro record" in reasons[6]
    assert "schema id 2" in reasons[7]


def test_a_registry_failure_is_not_a_dead_letter():
    def unavailable(schema_id):
        raise ConnectionError("registry down")

    values = AvroValues(ReaderSchema(json.dumps(V1)), unavailable)
    with pytest.raises(ConnectionError):
        values.decode([encode(V1, {"id": 1, "path": "/"}, 5)])


# --- event times and the Converter --------------------------------------------------------


def test_event_times_from_timestamps_longs_and_text():
    ms = PLAN_MS + 1234
    assert event_ms(pa.array([ms], pa.timestamp("ms", tz="UTC")), 1).to_pylist() == [ms]
    assert event_ms(pa.array([ms * 1000 + 999], pa.timestamp("us", tz="UTC")), 1).to_pylist() == [
        ms
    ]
    assert event_ms(pa.array([ms, None], pa.int64()), 2).to_pylist() == [ms, None]
    assert event_ms(pa.array(["2024-03-10T12:00:01.234Z"], pa.string()), 1).to_pylist() == [ms]
    assert event_ms(None, 2).to_pylist() == [None, None]


def test_converter_puts_avro_fields_beside_the_metadata_and_hours_by_the_time_field():
    schema = record(("ts", {"type": "long", "logicalType": "timestamp-millis"}), ("n", "int"))
    values_ = AvroValues(ReaderSchema(json.dumps(schema)), registry(schema))
    converter = Converter(ValueFormat("avro"), time_field="ts", avro=lambda t, p: values_)
    when = datetime.datetime(2024, 3, 10, 11, 5, tzinfo=UTC)
    messages = [
        Message("t", 0, 10, PLAN_MS, b"k", encode(schema, {"ts": when, "n": 1})),
        Message("t", 0, 11, PLAN_MS, None, b"not avro"),
        Message(
            "t",
            0,
            12,
            PLAN_MS,
            None,
            encode(schema, {"ts": datetime.datetime(1990, 1, 1, tzinfo=UTC), "n": 2}),
        ),
    ]
    out = converter.convert("t", 0, messages, PLAN_MS + DAY_MS)
    assert out.table.column_names == [
        "_topic",
        "_partition",
        "_offset",
        "_timestamp",
        "_key",
        "_event_time",
        "ts",
        "n",
    ]
    assert out.keys == [PLAN_MS // HOUR_MS - 1, DEAD_LETTER, QUARANTINE]
    assert out.table.column("_offset").to_pylist() == [10, 12]
    assert out.dead.column("_offset").to_pylist() == [11]
    assert "magic byte" in out.dead.column("_error")[0].as_py()


def test_converter_without_time_field_hours_by_the_message_timestamp():
    values_ = AvroValues(ReaderSchema(json.dumps(V1)), registry(V1))
    converter = Converter(ValueFormat("avro"), avro=lambda t, p: values_)
    out = converter.convert(
        "t", 0, [Message("t", 0, 0, PLAN_MS, None, encode(V1, {"id": 1, "path": "/"}))], PLAN_MS
    )
    assert out.keys == [PLAN_MS // HOUR_MS]
    assert out.table.column_names[-2:] == ["id", "path"]


def test_the_plan_node_carries_the_reader_schema_id():
    plan = {"created_ms": 1, "partitions": {"t/0": {"end": 5, "ms": 1, "value_schema_id": 3}}}
    assert layout.decode_plan(layout.encode_plan(plan)) == plan
    bad = {"created_ms": 1, "partitions": {"t/0": {"end": 5, "ms": 1, "value_schema_id": "3"}}}
    with pytest.raises(layout.MalformedNodeError):
        layout.decode_plan(layout.encode_plan(bad))


# --- random schemas, random records: fastavro writes, the loader reads the same ------------

NAMES = st.text(string.ascii_lowercase, min_size=1, max_size=6)
_counter = iter(range(10**9))


def _named(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


PRIMITIVE_TYPES = st.sampled_from(["boolean", "int", "long", "float", "double", "bytes", "string"])
LOGICAL_TYPES = st.sampled_from(
    [
        {"type": "long", "logicalType": "timestamp-millis"},
        {"type": "long", "logicalType": "timestamp-micros"},
        {"type": "int", "logicalType": "date"},
        {"type": "int", "logicalType": "time-millis"},
        {"type": "long", "logicalType": "time-micros"},
        {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3},
        {"type": "string", "logicalType": "uuid"},
    ]
)


def _schemas():
    leaves = st.one_of(
        PRIMITIVE_TYPES,
        LOGICAL_TYPES,
        st.builds(lambda: {"type": "enum", "name": _named("E"), "symbols": ["A", "B", "C"]}),
        st.builds(lambda: {"type": "fixed", "name": _named("F"), "size": 3}),
    )

    def grow(children):
        return st.one_of(
            st.builds(lambda t: {"type": "array", "items": t}, children),
            st.builds(lambda t: {"type": "map", "values": t}, children),
            st.builds(lambda t: ["null", t], children.filter(lambda t: not isinstance(t, list))),
            st.builds(
                lambda ts: {
                    "type": "record",
                    "name": _named("R"),
                    "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(ts)],
                },
                st.lists(children, min_size=1, max_size=4),
            ),
        )

    return st.recursive(leaves, grow, max_leaves=8)


def _value(s):
    """A strategy of values of schema ``s``: (what fastavro writes, what Arrow gives back)."""
    if isinstance(s, list):
        inner = _value(s[1])
        return st.one_of(st.just((None, None)), inner)
    kind = s if isinstance(s, str) else s["type"]
    logical = None if isinstance(s, str) else s.get("logicalType")
    if logical == "timestamp-millis":
        return st.integers(0, 2**41).map(
            lambda ms: (
                ms,
                datetime.datetime.fromtimestamp(ms / 1000, UTC).replace(
                    microsecond=ms % 1000 * 1000
                ),
            )
        )
    if logical == "timestamp-micros":
        return st.integers(0, 2**50).map(
            lambda us: (
                us,
                datetime.datetime(1970, 1, 1, tzinfo=UTC) + datetime.timedelta(microseconds=us),
            )
        )
    if logical == "date":
        return st.dates().map(lambda d: (d, d))
    if logical == "time-millis":
        return (
            st.times()
            .map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
            .map(lambda t: (t, t))
        )
    if logical == "time-micros":
        return st.times().map(lambda t: (t, t))
    if logical == "decimal":
        return st.decimals(
            min_value=-(10**8), max_value=10**8, places=3, allow_nan=False, allow_infinity=False
        ).map(lambda d: (d, d))
    if logical == "uuid":
        return st.uuids().map(lambda u: (str(u), str(u)))
    simple = {
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "float": st.sampled_from([0.0, 1.5, -2.25, 1e10]),
        "double": st.floats(allow_nan=False),
        "bytes": st.binary(max_size=8),
        "string": st.text(max_size=8),
    }
    if kind in simple:
        return simple[kind].map(lambda v: (v, v))
    if kind == "enum":
        return st.sampled_from(s["symbols"]).map(lambda v: (v, v))
    if kind == "fixed":
        return st.binary(min_size=3, max_size=3).map(lambda v: (v, v))
    if kind == "array":
        return st.lists(_value(s["items"]), max_size=3).map(
            lambda pairs: ([a for a, _ in pairs], [b for _, b in pairs])
        )
    if kind == "map":
        return st.dictionaries(NAMES, _value(s["values"]), max_size=3).map(
            lambda d: ({k: a for k, (a, _) in d.items()}, [(k, b) for k, (_, b) in d.items()])
        )
    fields = [(f["name"], _value(f["type"])) for f in s["fields"]]
    return st.tuples(*[v for _, v in fields]).map(
        lambda pairs: (
            {n: a for (n, _), (a, _) in zip(fields, pairs)},
            {n: b for (n, _), (_, b) in zip(fields, pairs)},
        )
    )


@st.composite
def schema_and_records(draw):
    fields = draw(st.lists(_schemas(), min_size=1, max_size=4))
    schema = record(*[(f"c{i}", t) for i, t in enumerate(fields)], name=_named("Top"))
    records = draw(st.lists(_value(schema), min_size=1, max_size=5))
    return schema, records


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema_and_records())
def test_random_records_of_random_schemas_come_back_equal(case):
    schema, records = case
    written = [encode(schema, w) for w, _ in records]
    table, _good, dead = decode(schema, written)
    assert dead == []
    assert table.to_pylist() == [expected for _, expected in records]
    assert table.schema == ReaderSchema(json.dumps(schema)).schema


def test_fastavro_and_the_loader_agree_on_the_frame():
    assert frame(7, b"x") == b"\x00" + struct.pack(">I", 7) + b"x"
