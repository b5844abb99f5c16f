"""Messages to Arrow (loaders.convert) and what ``headrace load`` makes of them.

Part 1 builds Message tuples by hand and checks the Converter without brokers: declared and
inferred schemas, type conflicts, dead letters, event times, the raw and string formats.
Part 2 produces with kcat to a real one-broker cluster, runs the real loader
(``loaders.run.load``, worker processes) into ``tmp_path`` and reads the Parquet back with
DuckDB.
"""

from __future__ import annotations

import calendar
import io
import json
import random
import subprocess
import time

import duckdb
import pyarrow as pa
import pytest
from conftest import create_topic

from consumers.consumer import Message
from loaders.config import LoaderConfig
from loaders.convert import Converter, ValueFormat, concat
from loaders.eventtime import DAY_MS, MIN_EVENT_MS
from loaders.layout import DEAD_LETTER, HOUR_MS, QUARANTINE
from loaders.schema import FixedSchemas, MemorySchemas, SchemaError, load_declared_schema

PLAN_MS = calendar.timegm((2024, 3, 10, 12, 0, 0)) * 1000  # the fixed "plan time" of part 1
MAX_MS = PLAN_MS + DAY_MS
PLAN_HOUR = PLAN_MS // HOUR_MS
TS_TYPE = pa.timestamp("ms", tz="UTC")
META = ["_topic", "_partition", "_offset", "_timestamp", "_key"]


# --- helpers -----------------------------------------------------------------------------


def encode(v) -> bytes | None:
    if v is None or isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode()
    return json.dumps(v).encode()


def messages(
    values, start: int = 0, ts=PLAN_MS, topic: str = "t", partition: int = 0, keys=None
) -> list[Message]:
    return [
        Message(topic, partition, start + i, ts, None if keys is None else keys[i], encode(v))
        for i, v in enumerate(values)
    ]


def json_converter(schemas=None, time_field=None) -> Converter:
    return Converter(
        ValueFormat("json"), MemorySchemas() if schemas is None else schemas, time_field
    )


def convert(converter: Converter, values, start: int = 0, **kw):
    msgs = messages(values, start=start, **kw)
    result = converter.convert("t", 0, msgs, MAX_MS)
    check_accounting(msgs, result)
    return result


def check_accounting(msgs: list[Message], result) -> None:
    """Every message is either one good row or one dead letter, exactly once, in order."""
    n = len(msgs)
    assert len(result.keys) == n and len(result.row_of) == n
    dead = [i for i in range(n) if result.keys[i] == DEAD_LETTER]
    good = [i for i in range(n) if result.keys[i] != DEAD_LETTER]
    assert result.table.num_rows == len(good)
    assert result.dead.num_rows == len(dead)
    assert result.table.num_rows + result.dead.num_rows == n
    offsets = result.table.column("_offset").to_pylist()
    dead_offsets = result.dead.column("_offset").to_pylist()
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    for i in good:
        assert offsets[result.row_of[i]] == msgs[i].offset
        assert result.keys[i] == QUARANTINE or result.keys[i] >= 0
    for i in dead:
        assert dead_offsets[result.row_of[i]] == msgs[i].offset
    assert result.dead.column("_value").to_pylist() == [msgs[i].value for i in dead]
    assert all(result.dead.column("_error").to_pylist())
    assert result.table.column("_topic").to_pylist() == [msgs[i].topic for i in good]


def rows(result) -> list[dict]:
    """The good rows without metadata columns and without null values."""
    names = [n for n in result.table.column_names if n not in META and n != "_event_time"]
    return [
        {k: v for k, v in r.items() if v is not None}
        for r in result.table.select(names).to_pylist()
    ]


def write_schema(tmp_path, doc, name="schema.json") -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


# --- part 1: declared schemas ------------------------------------------------------------


def test_declared_schema_types_extra_and_rejected(tmp_path):
    path = write_schema(
        tmp_path,
        {
            "fields": {
                "id": "long",
                "price": "number",
                "name": "str",
                "ok": "boolean",
                "tags": "array",
                "_offset": "int",
            }
        },
    )
    schema = load_declared_schema(path)
    assert schema == {
        "*": {
            "id": "int64",
            "price": "double",
            "name": "string",
            "ok": "bool",
            "tags": "json",
            "value._offset": "int64",
        }
    }
    conv = json_converter(FixedSchemas(schema))
    good = convert(
        conv,
        [
            {"id": 1, "price": 2, "name": "a", "ok": True, "tags": ["x"]},
            {"id": 2, "price": 2.5, "name": "b", "ok": False, "tags": {"k": 1}},
        ],
    )
    types = dict(zip(good.table.column_names, good.table.schema.types))
    assert types["id"] == pa.int64() and types["price"] == pa.float64()
    assert (
        types["name"] == pa.string() and types["ok"] == pa.bool_() and types["tags"] == pa.string()
    )
    assert rows(good) == [
        {"id": 1, "price": 2.0, "name": "a", "ok": True, "tags": '["x"]'},
        {"id": 2, "price": 2.5, "name": "b", "ok": False, "tags": '{"k":1}'},
    ]
    assert good.conflicts == 0 and good.new_fields == {}

    mixed = convert(
        conv,
        [
            {"id": 3, "extra": {"deep": [1]}, "more": "m", "gone": None},
            {"id": "four", "price": "cheap", "ok": 1, "name": 5, "_offset": 99},
            {"id": 1.5, "_offset": "x"},
        ],
        start=2,
    )
    assert rows(mixed) == [
        {"id": 3, "_extra": '{"extra":{"deep":[1]},"more":"m"}'},
        {"value._offset": 99, "_rejected": '{"id":"four","price":"cheap","ok":1,"name":5}'},
        {"_rejected": '{"id":1.5,"_offset":"x"}'},
    ]
    assert mixed.conflicts == 6
    assert mixed.table.column("_offset").to_pylist() == [2, 3, 4]  # metadata, not the field
    assert mixed.table.schema.field("id").type == pa.int64()  # declared types never change
    assert conv.schemas.get("t") == schema["*"]


def test_declared_schema_per_topic(tmp_path):
    path = write_schema(tmp_path, {"topics": {"t": {"a": "int64"}, "other": {"a": "string"}}})
    conv = json_converter(FixedSchemas(load_declared_schema(path)))
    result = convert(conv, [{"a": 1}, {"a": "x"}])
    assert rows(result) == [{"a": 1}, {"_rejected": '{"a":"x"}'}]
    other = conv.convert("other", 0, messages([{"a": "x"}], topic="other"), MAX_MS)
    assert other.table.column("a").to_pylist() == ["x"]
    nobody = conv.convert("nobody", 0, messages([{"a": "x"}], topic="nobody"), MAX_MS)
    assert rows(nobody) == [{"_extra": '{"a":"x"}'}]  # no schema for the topic: all extra


@pytest.mark.parametrize(
    "doc, message",
    [
        ("{not json", "cannot read schema file"),
        ("[1, 2]", "expected"),
        ({"columns": {"a": "int64"}}, "expected"),
        ({"fields": {}}, "non-empty object"),
        ({"fields": ["a", "int64"]}, "non-empty object"),
        ({"topics": {"t": "int64"}}, "the fields of t must be a non-empty object"),
        ({"fields": {"a": "varchar"}}, "field 'a' of \\*: unknown type 'varchar'; use one of"),
        ({"fields": {"a": None}}, "field 'a' of \\*: unknown type"),
        (
            {"topics": {"t": {"a": "int64", "b": "decimal"}}},
            "field 'b' of t: unknown type 'decimal'",
        ),
        ({"topics": []}, '"topics" must be a non-empty object'),
        ({"topics": "t"}, '"topics" must be a non-empty object'),
        ({"topics": {}}, '"topics" must be a non-empty object'),
    ],
)
def test_malformed_schema_files(tmp_path, doc, message):
    path = write_schema(tmp_path, doc)
    with pytest.raises(SchemaError, match=message) as caught:
        load_declared_schema(path)
    assert path in str(caught.value)  # the message names the file


def test_missing_schema_file_and_the_load_command_refuses_a_bad_one(tmp_path):
    with pytest.raises(SchemaError, match="cannot read schema file"):
        load_declared_schema(str(tmp_path / "absent.json"))
    from loaders.run import load

    bad = write_schema(tmp_path, {"fields": {"a": "decimal"}})
    out, err = io.StringIO(), io.StringIO()
    status = load(
        LoaderConfig(
            zookeeper="127.0.0.1:1",
            topics=["t"],
            group="g",
            url=str(tmp_path / "wh"),
            schema_file=bad,
        ),
        out=out,
        err=err,
    )
    assert status == 2
    assert "unknown type 'decimal'" in err.getvalue()


# --- part 1: inferred schemas ------------------------------------------------------------


def test_metadata_columns():
    msgs = [
        Message("t", 7, 40, PLAN_MS, b"k1", b'{"a": 1}'),
        Message("t", 7, 41, -1, None, b'{"a": 2}'),
    ]
    result = Converter(ValueFormat("json")).convert("t", 7, msgs, MAX_MS)
    check_accounting(msgs, result)
    t = result.table
    assert t.column_names[:5] == META
    assert t.schema.field("_partition").type == pa.int32()
    assert t.schema.field("_offset").type == pa.int64()
    assert t.schema.field("_timestamp").type == TS_TYPE
    assert t.schema.field("_key").type == pa.binary()
    assert t.column("_partition").to_pylist() == [7, 7]
    assert t.column("_key").to_pylist() == [b"k1", None]
    assert t.column("_timestamp").cast(pa.int64()).to_pylist() == [PLAN_MS, None]


def test_inferred_types_from_first_sighting_and_new_fields_mid_stream():
    schemas = MemorySchemas()
    conv = json_converter(schemas)
    first = convert(
        conv,
        [
            {"i": 1, "d": 1.5, "s": "x", "b": True, "n": None},
            {"i": 2, "d": 2, "s": "y", "b": False},
        ],
    )
    assert first.new_fields == {"i": "int64", "d": "double", "s": "string", "b": "bool"}
    assert schemas.get("t") == first.new_fields  # "n" was only ever null: no type yet
    assert first.table.schema.field("i").type == pa.int64()
    assert first.table.schema.field("d").type == pa.float64()
    first_schema = first.table.schema

    second = convert(
        conv, [{"i": 3, "s": "z", "new": "hello"}, {"i": 4, "new": "again", "n": 7}], start=2
    )
    assert second.new_fields == {"new": "string", "n": "int64"}
    assert rows(second) == [{"i": 3, "s": "z", "new": "hello"}, {"i": 4, "new": "again", "n": 7}]
    assert schemas.get("t") == {
        "i": "int64",
        "d": "double",
        "s": "string",
        "b": "bool",
        "new": "string",
        "n": "int64",
    }
    # the earlier batch is untouched, and the two concatenate by name
    assert first.table.schema == first_schema and "new" not in first.table.column_names
    both = concat([first.table, second.table])
    assert both.num_rows == 4
    assert both.column("new").to_pylist() == [None, None, "hello", "again"]
    assert both.column("i").to_pylist() == [1, 2, 3, 4]

    third = convert(conv, [{"i": 5, "n": 8}], start=4)  # nothing new: nothing added
    assert third.new_fields == {} and rows(third) == [{"i": 5, "n": 8}]


def test_int64_promoted_to_double_and_nothing_else_changes():
    schemas = MemorySchemas()
    conv = json_converter(schemas)
    first = convert(conv, [{"x": 1, "y": "a"}])
    assert schemas.get("t") == {"x": "int64", "y": "string"}
    second = convert(conv, [{"x": 2.5, "y": "b"}, {"x": 3, "y": "c"}], start=1)
    assert schemas.get("t") == {"x": "double", "y": "string"}
    assert second.table.schema.field("x").type == pa.float64()
    assert second.table.column("x").to_pylist() == [2.5, 3.0]
    assert first.table.schema.field("x").type == pa.int64()  # the earlier batch as it was
    both = concat([first.table, second.table])
    assert both.schema.field("x").type == pa.float64()
    assert both.column("x").to_pylist() == [1.0, 2.5, 3.0]
    later = convert(conv, [{"x": 4}], start=3)  # never back to int64
    assert later.table.schema.field("x").type == pa.float64() and schemas.get("t")["x"] == "double"
    # a promotion inside one batch, in either order
    conv2 = json_converter()
    assert convert(conv2, [{"x": 1}, {"x": 0.5}]).table.column("x").to_pylist() == [1.0, 0.5]
    conv3 = json_converter()
    assert convert(conv3, [{"x": 0.5}, {"x": 1}]).table.column("x").to_pylist() == [0.5, 1.0]


def test_type_conflicts_keep_the_row_null_the_field_and_record_the_original():
    schemas = MemorySchemas()
    conv = json_converter(schemas)
    convert(conv, [{"status": 200, "name": "a", "flag": True, "score": 1.5}])
    result = convert(
        conv,
        [
            {"status": "oops", "name": "b"},
            {"name": 42, "status": 201},
            {"flag": {"nested": True}, "score": "high"},
            {"status": 202, "name": "c", "flag": False, "score": 2},
            {"status": True},
        ],
        start=1,
    )
    assert rows(result) == [
        {"name": "b", "_rejected": '{"status":"oops"}'},
        {"status": 201, "_rejected": '{"name":42}'},
        {"_rejected": '{"flag":{"nested":true},"score":"high"}'},
        {"status": 202, "name": "c", "flag": False, "score": 2.0},
        {"_rejected": '{"status":true}'},
    ]
    assert result.conflicts == 5
    assert result.keys == [PLAN_HOUR] * 5
    assert schemas.get("t") == {
        "status": "int64",
        "name": "string",
        "flag": "bool",
        "score": "double",
    }
    assert result.table.schema.field("status").type == pa.int64()


def test_conflict_within_one_batch_first_sighting_wins():
    conv = json_converter()
    result = convert(conv, [{"v": "text"}, {"v": 5}, {"v": "more"}])
    assert rows(result) == [{"v": "text"}, {"_rejected": '{"v":5}'}, {"v": "more"}]
    assert conv.schemas.get("t") == {"v": "string"}


def test_nested_values_are_json_text():
    schemas = MemorySchemas()
    conv = json_converter(schemas)
    result = convert(conv, [{"obj": {"a": [1, 2], "b": None}, "arr": [1, "x", {"y": 1}], "k": 1}])
    assert schemas.get("t") == {"obj": "json", "arr": "json", "k": "int64"}
    assert result.table.schema.field("obj").type == pa.string()
    assert json.loads(result.table.column("obj")[0].as_py()) == {"a": [1, 2], "b": None}
    assert json.loads(result.table.column("arr")[0].as_py()) == [1, "x", {"y": 1}]
    # later scalars in a json column are JSON text too, whichever path parses them
    later = convert(conv, [{"obj": "plain"}, {"obj": 5}, {"obj": True}, {"arr": []}], start=1)
    values = later.table.column("obj").to_pylist()
    assert [json.loads(v) for v in values[:3]] == ["plain", 5, True]
    assert later.table.column("arr").to_pylist()[3] == "[]"


@pytest.mark.parametrize(
    "value",
    [
        {"obj": "plain"},
        {"obj": 5},
        {"obj": {"z": 1}},
        {"s": "x"},
        {"s": 5},
        {"i": 7},
        {"i": 7.5},
        {"i": "7"},
        {"b": True},
        {"b": "true"},
        {"d": 3},
        {"s": "\u00e9\u4e2d", "i": -(1 << 63)},
        {"i": 1 << 63},
        {"s": "2024-03-10T12:00:00Z"},
        {"unknown": 1},
        {"_key": "shadow"},
    ],
)
def test_fast_and_slow_paths_agree(value):
    """A record gives the same row whether its batch is parsed whole by pyarrow (fast) or
    record by record because a neighbour is bad (slow)."""
    base = {"obj": "json", "s": "string", "i": "int64", "b": "bool", "d": "double"}
    got = []
    for neighbours in ([], [b"not json"]):
        schemas = MemorySchemas()
        schemas.schemas["t"] = dict(base)
        result = convert(json_converter(schemas), [value, *neighbours])
        got.append((rows(result)[0], dict(schemas.get("t"))))
    assert got[0] == got[1]


@pytest.mark.parametrize(
    "raw",
    [
        b'\xef\xbb\xbf{"a": 3}',
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1.8e309}',
        b'{"a": 1,}',
        b"{'a': 1}",
        b'{"a": 01}',
        b'{"a": "\\ud800"}',
        b'{"a": "x\x01"}',
        b'{"a": 1}{"b": 2}',
        b'{"a": 1}\r',
        b'{"a": 1}\r{"a": 2}',
        b'{"a": 18446744073709551615}',
        b'{"a": 9223372036854775808}',
        b'{"a": -9223372036854775809}',
        b'{"a": 2, "a": "x"}',
        b'{"a": "\\u0000"}',
        b'{"": 1}',
        b'{"a": 1}\x00',
        b'{"s": "\xc3\x28"}',
    ],
)
def test_fast_and_slow_paths_agree_on_what_is_json(raw):
    """The same bytes are a row or a dead letter whatever else is in the fetch batch, so a
    rerun that fetches differently rebuilds the same files."""
    got = []
    for batch in ([raw], [raw, b"bad"], [b'{"z": 1}', raw], [raw, raw]):
        result = convert(json_converter(), batch)
        i = batch.index(raw)
        if result.keys[i] == DEAD_LETTER:
            got.append(("dead", result.dead.column("_error")[result.row_of[i]].as_py()))
        else:
            result.table.validate(full=True)
            row = rows(result)[result.row_of[i]]
            row.pop("z", None)
            got.append(("row", row))
    assert all(g == got[0] for g in got), got


def test_fields_named_like_metadata_are_renamed_not_lost():
    conv = json_converter()
    result = convert(
        conv, [{"_offset": 99, "_topic": "mine", "_key": "k", "_rejected": 1, "x": 1}], start=5
    )
    t = result.table
    assert t.column("_offset").to_pylist() == [5] and t.column("_topic").to_pylist() == ["t"]
    assert t.column("value._offset").to_pylist() == [99]
    assert t.column("value._topic").to_pylist() == ["mine"]
    assert t.column("value._key").to_pylist() == ["k"]
    assert t.column("value._rejected").to_pylist() == [1]
    assert "_rejected" not in t.column_names  # no conflict: the real _rejected is not made
    assert len(set(t.column_names)) == len(t.column_names)


# --- part 1: dead letters ----------------------------------------------------------------


def test_unparseable_values_are_dead_letters_with_errors():
    conv = json_converter()
    values = [
        {"a": 1},
        b"not json",
        b"[1, 2]",
        b"42",
        b'"a string"',
        b"null",
        None,  # a tombstone
        b"",
        b"   ",
        b'{"a": 2',
        b'{"a": 1}\n{"a": 2}',  # a newline: two documents in one value are not one record
        b'{"s": "\xff\xfe"}',  # invalid UTF-8 inside a JSON string
        b'\xef\xbb\xbf{"a": 3}',  # a UTF-8 byte order mark
        {"a": 4},
    ]
    result = convert(conv, values)
    dead_at = [i for i, k in enumerate(result.keys) if k == DEAD_LETTER]
    assert dead_at == list(range(1, 13))
    errors = dict(
        zip(result.dead.column("_offset").to_pylist(), result.dead.column("_error").to_pylist())
    )
    assert errors[1].startswith("invalid JSON")
    assert "list" in errors[2] and "not an object" in errors[2]
    assert "int" in errors[3] and "not an object" in errors[3]
    assert "str" in errors[4]
    assert "not an object" in errors[5]
    assert "tombstone" in errors[6]
    assert errors[7].startswith("invalid JSON") and errors[8].startswith("invalid JSON")
    assert errors[10].startswith("invalid JSON") and errors[11].startswith("invalid JSON")
    assert "BOM" in errors[12]
    assert result.table.column("a").to_pylist()[0] == 1
    assert result.table.column("a").to_pylist()[-1] == 4
    assert result.dead.column("_value").to_pylist()[5] is None
    assert result.dead.schema.field("_timestamp").type == TS_TYPE


def test_a_pretty_printed_object_with_newlines_is_one_good_record():
    result = convert(json_converter(), [b'{\n  "a": 1,\n  "b": "x"\n}', {"a": 2}])
    assert rows(result) == [{"a": 1, "b": "x"}, {"a": 2}]


def test_invalid_utf8_alone_is_a_dead_letter_not_a_broken_column():
    """pyarrow's JSON reader does not check UTF-8: a batch of one such record must not make
    a string column whose bytes are not UTF-8 (Parquet readers refuse those files)."""
    conv = json_converter()
    result = convert(conv, [b'{"s": "\xff"}'])
    assert result.keys == [DEAD_LETTER]
    assert "UTF-8" in result.dead.column("_error")[0].as_py()
    result.table.validate(full=True)
    convert(conv, [{"s": "ok"}], start=1)
    again = convert(conv, [b'{"s": "a\xc3"}', {"s": "fine"}], start=2)
    assert again.keys == [DEAD_LETTER, PLAN_HOUR]
    again.table.validate(full=True)


def test_every_message_accounted_for_in_random_mixes():
    rng = random.Random(1234)
    pool = [
        {"a": 1},
        {"a": 2.5},
        {"a": "x"},
        {"b": True},
        {"c": {"n": 1}},
        {"_offset": 3},
        {"ts": PLAN_MS},
        {"ts": "2024-03-10T12:30:00Z"},
        {"ts": 0},
        {},
        b"bad",
        b"[]",
        None,
        b"",
        b'{"a":1}\n{"a":1}',
        b'{"s":"\xff"}',
        b"\x00",
        b"{}",
    ]
    for fmt_time in (None, "ts"):
        conv = json_converter(time_field=fmt_time)
        start = 0
        for _ in range(60):
            values = [rng.choice(pool) for _ in range(rng.randrange(1, 12))]
            result = convert(conv, values, start=start)
            for v, key in zip(values, result.keys):
                if v is None or (isinstance(v, bytes) and v not in (b"{}",)):
                    assert key == DEAD_LETTER, v
                else:
                    assert key != DEAD_LETTER, v
            start += len(values)


# --- part 1: event time ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected_ms",
    [
        (1710072000, PLAN_MS),  # seconds
        (1710072000.25, PLAN_MS + 250),  # seconds with a fraction
        (1710072000123, PLAN_MS + 123),  # milliseconds
        (1710072000123456, PLAN_MS + 123),  # microseconds
        (1710072000123456789, PLAN_MS + 123),  # nanoseconds
        ("2024-03-10T12:00:00Z", PLAN_MS),
        ("2024-03-10T12:00:00.5Z", PLAN_MS + 500),
        ("2024-03-10T14:30:00+02:30", PLAN_MS),
        ("2024-03-10T07:00:00-05:00", PLAN_MS),
        ("2024-03-10T12:00:00", PLAN_MS),  # no zone: UTC
        ("2024-03-10 12:59:59.999", PLAN_MS + HOUR_MS - 1),
        ("1710072000", PLAN_MS),  # numeric strings
        ("1710072000123", PLAN_MS + 123),
        (" 1710072000.5 ", PLAN_MS + 500),
    ],
)
def test_event_times(value, expected_ms):
    result = convert(json_converter(time_field="ts"), [{"ts": value, "x": 1}])
    assert result.keys == [expected_ms // HOUR_MS]
    assert result.table.schema.field("_event_time").type == TS_TYPE
    assert result.table.column("_event_time").cast(pa.int64()).to_pylist() == [expected_ms]


def test_event_time_mixed_formats_in_one_batch():
    values = [
        "2024-03-10T12:00:00Z",
        "2024-03-10T13:00:00+01:00",
        "2024-03-10T12:00:00",
        "1710072000",
        "2024-03-10T11:00:00.123456789Z",
    ]
    result = convert(json_converter(time_field="ts"), [{"ts": v} for v in values])
    assert result.table.column("_event_time").cast(pa.int64()).to_pylist() == [
        PLAN_MS,
        PLAN_MS,
        PLAN_MS,
        PLAN_MS,
        PLAN_MS - HOUR_MS + 123,
    ]
    assert result.keys == [PLAN_HOUR] * 4 + [PLAN_HOUR - 1]


@pytest.mark.parametrize(
    "record",
    [
        {"x": 1},  # missing
        {"ts": None},
        {"ts": "not a time"},
        {"ts": ""},
        {"ts": True},
        {"ts": {"s": 1710072000}},
        {"ts": [1710072000]},
        {"ts": 0},  # 1970: absurd, never an hour
        {"ts": -5},
        {"ts": 946684799},  # 1999-12-31T23:59:59Z
        {"ts": "1999-12-31T23:59:59Z"},
        {"ts": (MAX_MS + 1)},  # later than plan time + 1 day
        {"ts": "2024-03-11T12:00:01Z"},
        {"ts": 1e30},  # absurd magnitudes do not crash the load
        {"ts": -1e30},
        {"ts": "1e30"},
        {"ts": "inf"},
        {"ts": "-Infinity"},
        {"ts": "NaN"},
        {"ts": "9999-12-31T23:59:59Z"},
    ],
)
def test_event_time_quarantine(record):
    result = convert(json_converter(time_field="ts"), [record, {"other": 1}])
    assert result.keys == [QUARANTINE, QUARANTINE]
    assert result.table.num_rows == 2  # quarantined rows are kept


def test_event_time_bounds_are_inclusive():
    result = convert(
        json_converter(time_field="ts"),
        [{"ts": MIN_EVENT_MS}, {"ts": MIN_EVENT_MS - 1}, {"ts": MAX_MS}, {"ts": MAX_MS + 1}],
    )
    assert result.keys == [MIN_EVENT_MS // HOUR_MS, QUARANTINE, MAX_MS // HOUR_MS, QUARANTINE]


def test_event_time_hour_keys():
    stamps = [
        PLAN_MS - 1,
        PLAN_MS,
        PLAN_MS + HOUR_MS - 1,
        PLAN_MS + HOUR_MS,
        PLAN_MS + 5 * HOUR_MS + 7,
    ]
    result = convert(json_converter(time_field="ts"), [{"ts": s} for s in stamps])
    assert result.keys == [s // HOUR_MS for s in stamps]
    assert result.keys == [PLAN_HOUR - 1, PLAN_HOUR, PLAN_HOUR, PLAN_HOUR + 1, PLAN_HOUR + 5]


def test_time_field_named_like_a_metadata_column():
    result = convert(
        json_converter(time_field="_timestamp"), [{"_timestamp": PLAN_MS + HOUR_MS}], ts=PLAN_MS
    )
    assert result.keys == [PLAN_HOUR + 1]
    assert result.table.column("_timestamp").cast(pa.int64()).to_pylist() == [PLAN_MS]


def test_time_field_type_changes_never_lose_the_row():
    """The time field's column type is fixed by its first sighting like any other field; a
    later value of another JSON type is kept in _rejected (and cannot give an hour)."""
    conv = json_converter(time_field="ts")
    convert(conv, [{"ts": 1710072000}])
    later = convert(conv, [{"ts": "2024-03-10T12:00:00Z"}], start=1)
    assert later.table.num_rows == 1
    assert later.keys[0] in (QUARANTINE, PLAN_HOUR)
    assert json.loads(later.table.column("_rejected")[0].as_py()) == {"ts": "2024-03-10T12:00:00Z"}


def test_record_timestamp_mode():
    msgs = [
        Message("t", 0, 0, PLAN_MS, None, b'{"a":1}'),
        Message("t", 0, 1, -1, None, b'{"a":2}'),
        Message("t", 0, 2, None, None, b'{"a":3}'),
        Message("t", 0, 3, 0, None, b'{"a":4}'),
        Message("t", 0, 4, MAX_MS + 1, None, b'{"a":5}'),
        Message("t", 0, 5, PLAN_MS + 2 * HOUR_MS + 1, None, b'{"a":6}'),
        Message("t", 0, 6, -1, None, b"dead"),
    ]
    result = json_converter().convert("t", 0, msgs, MAX_MS)
    check_accounting(msgs, result)
    assert result.keys == [
        PLAN_HOUR,
        QUARANTINE,
        QUARANTINE,
        QUARANTINE,
        QUARANTINE,
        PLAN_HOUR + 2,
        DEAD_LETTER,
    ]
    assert "_event_time" not in result.table.column_names
    assert result.table.column("_timestamp").cast(pa.int64()).to_pylist() == [
        PLAN_MS,
        None,
        None,
        0,
        MAX_MS + 1,
        PLAN_MS + 2 * HOUR_MS + 1,
    ]
    assert result.dead.column("_timestamp").to_pylist() == [None]


# --- part 1: raw and string --------------------------------------------------------------


def test_raw_format_keeps_every_value_as_bytes():
    values = [b'{"a": 1}', b"\xff\x00binary", b"line\nbreak", b"", None]
    msgs = messages(values, ts=PLAN_MS, keys=[b"k", None, b"", None, b"t"])
    msgs[1] = msgs[1]._replace(timestamp=-1)
    result = Converter(ValueFormat("raw")).convert("t", 0, msgs, MAX_MS)
    check_accounting(msgs, result)
    assert result.table.column_names == [*META, "value"]
    assert result.table.schema.field("value").type == pa.binary()
    assert result.table.column("value").to_pylist() == values
    assert result.table.column("_key").to_pylist() == [b"k", None, b"", None, b"t"]
    assert result.keys == [PLAN_HOUR, QUARANTINE, PLAN_HOUR, PLAN_HOUR, PLAN_HOUR]
    assert result.dead.num_rows == 0


def test_string_format():
    values = [
        b"plain",
        "caf\u00e9 \u4e2d".encode(),
        b"two\nlines",
        b"",
        b"\xff\xfe",
        None,
        b'{"a": 1}',
    ]
    msgs = messages(values)
    result = Converter(ValueFormat("string")).convert("t", 0, msgs, MAX_MS)
    check_accounting(msgs, result)
    assert result.table.schema.field("value").type == pa.string()
    assert result.table.column("value").to_pylist() == [
        "plain",
        "caf\u00e9 \u4e2d",
        "two\nlines",
        "",
        '{"a": 1}',
    ]
    assert result.keys == [PLAN_HOUR] * 4 + [DEAD_LETTER, DEAD_LETTER, PLAN_HOUR]
    errors = result.dead.column("_error").to_pylist()
    assert "UTF-8" in errors[0] and "tombstone" in errors[1]
    assert result.dead.column("_value").to_pylist() == [b"\xff\xfe", None]


def test_converter_arguments():
    with pytest.raises(ValueError):
        Converter(ValueFormat("avro"))
    with pytest.raises(ValueError, match="time field"):
        Converter(ValueFormat("string"), time_field="ts")
    with pytest.raises(ValueError, match="time field"):
        Converter(ValueFormat("raw"), time_field="ts")


# --- part 2: the real loader against a real broker -----------------------------------------


CODECS = ("gzip", "snappy", "lz4", "zstd")


def kcat(cluster, topic: str, lines: list[bytes], codec: str = "lz4") -> None:
    subprocess.run(
        ["kcat", "-b", cluster.bootstrap, "-P", "-t", topic, "-z", codec, "-X", "linger.ms=5"],
        input=b"".join(line + b"\n" for line in lines),
        check=True,
        timeout=60,
        capture_output=True,
    )


def run_load(cluster, url, topic: str, group: str, **options) -> tuple[int, str, str, dict]:
    """``headrace load`` as loaders/cli.py calls it; returns (status, stdout, stderr, totals)."""
    from loaders.run import load

    config = {
        "zookeeper": cluster.zookeeper_connect,
        "topics": [topic],
        "group": group,
        "url": str(url),
        "workers": 1,
        "follow": False,
        "interval": 60.0,
        "format": "json",
        "time_field": None,
        "schema_file": None,
        "max_rows": 1_000_000,
        "max_bytes": 256 << 20,
        "max_open_writers": 32,
        "allow_gaps": False,
        "storage_options": {},
        "parquet_compression": "snappy",
        "session_timeout_ms": 6000,
        "log_level": "WARNING",
    }
    config.update(options)
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    status = load(LoaderConfig(**config), out=out, err=err)
    assert time.monotonic() - started < 60
    return status, out.getvalue(), err.getvalue(), summary_totals(out.getvalue())


def summary_totals(text: str) -> dict:
    """The ``total`` line of the printed summary."""
    names = ("rows", "dead", "quarantined", "late", "conflicts", "input_bytes", "files")
    for line in text.splitlines():
        if line.startswith("total"):
            cells = line.split()
            values = [int(c.replace(",", "")) for c in cells[1:8]]
            return dict(zip(names, values)) | {"lag": int(cells[8].replace(",", ""))}
    raise AssertionError(f"no summary in {text!r}")


def files_under(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def hours_glob(root, topic: str) -> str:
    return f"read_parquet('{root}/{topic}/dt=*/hour=*/*.parquet', union_by_name=true)"


def hour_dir(ms: int) -> str:
    return time.strftime("dt=%Y-%m-%d/hour=%H", time.gmtime(ms // 1000))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_all_codecs_every_line_exactly_once_and_a_rerun_writes_nothing(cluster1, tmp_path):
    topic, group = "conv-codecs", "wh-codecs"
    create_topic(cluster1.brokers[0].port, topic, 3)
    expected = []
    for n, codec in enumerate(CODECS):
        lines = [
            json.dumps(
                {"id": n * 1000 + i, "codec": codec, "v": i * 0.5, "ok": i % 2 == 0}
            ).encode()
            for i in range(250)
        ]
        kcat(cluster1, topic, lines, codec)
        expected += [n * 1000 + i for i in range(250)]
    wh = tmp_path / "wh"
    status, out, err, totals = run_load(cluster1, wh, topic, group)
    assert status == 0, err
    assert totals["rows"] == 1000 and totals["dead"] == 0 and totals["lag"] == 0
    rows_, distinct, ids = duckdb.sql(
        f"SELECT count(*), count(DISTINCT (_partition, _offset)), count(DISTINCT id) "
        f"FROM {hours_glob(wh, topic)}"
    ).fetchall()[0]
    assert (rows_, distinct, ids) == (1000, 1000, 1000)
    got = sorted(r[0] for r in duckdb.sql(f"SELECT id FROM {hours_glob(wh, topic)}").fetchall())
    assert got == sorted(expected)
    per_codec = dict(
        duckdb.sql(f"SELECT codec, count(*) FROM {hours_glob(wh, topic)} GROUP BY 1").fetchall()
    )
    assert per_codec == {c: 250 for c in CODECS}
    assert duckdb.sql(
        f"SELECT typeof(id), typeof(v), typeof(ok) FROM {hours_glob(wh, topic)} LIMIT 1"
    ).fetchall()[0] == ("BIGINT", "DOUBLE", "BOOLEAN")
    for p, n, lo, hi in duckdb.sql(
        f"SELECT _partition, count(*), min(_offset), max(_offset) "
        f"FROM {hours_glob(wh, topic)} GROUP BY 1"
    ).fetchall():
        assert (lo, hi) == (0, n - 1), p  # no gap, no duplicate within a partition

    before = files_under(wh)
    status, out, err, totals = run_load(cluster1, wh, topic, group)
    assert status == 0, err
    assert totals["rows"] == 0 and totals["files"] == 0 and totals["lag"] == 0
    after = files_under(wh)
    # nothing new, except a _SUCCESS marker if the events' hour ended between the two runs
    assert before <= after and all(f.endswith("/_SUCCESS") for f in after - before), after - before
    assert "loaded 0 events" in out


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_late_events_land_in_a_closed_hour_as_new_files(cluster1, tmp_path):
    topic, group = "conv-late", "wh-late"
    create_topic(cluster1.brokers[0].port, topic, 2)
    old_ms = (int(time.time() * 1000) // HOUR_MS - 3) * HOUR_MS + 17 * 60_000  # 3 hours ago
    now_ms = int(time.time() * 1000)
    hour_at_start = now_ms // HOUR_MS
    kcat(
        cluster1,
        topic,
        [json.dumps({"id": i, "ts": old_ms + i}).encode() for i in range(40)]
        + [json.dumps({"id": 100 + i, "ts": now_ms}).encode() for i in range(10)],
    )
    wh = tmp_path / "wh"
    status, out, err, totals = run_load(cluster1, wh, topic, group, time_field="ts")
    assert status == 0, err
    assert totals["rows"] == 50 and totals["late"] == 0
    old_dir = wh / topic / hour_dir(old_ms)
    assert (old_dir / "_SUCCESS").exists()
    if int(time.time() * 1000) // HOUR_MS == hour_at_start:  # this hour is not over
        assert not (wh / topic / hour_dir(now_ms) / "_SUCCESS").exists()
    first_files = set(p.name for p in old_dir.glob("*.parquet"))
    assert first_files

    kcat(
        cluster1,
        topic,
        [json.dumps({"id": 200 + i, "ts": old_ms + 1000 + i}).encode() for i in range(15)]
        + [json.dumps({"id": 300, "ts": int(time.time() * 1000)}).encode()],
    )  # this hour: not late
    status, out, err, totals = run_load(cluster1, wh, topic, group, time_field="ts")
    assert status == 0, err
    assert totals["rows"] == 16
    assert totals["late"] == 15, out
    new_files = set(p.name for p in old_dir.glob("*.parquet")) - first_files
    assert new_files and not (first_files - set(p.name for p in old_dir.glob("*.parquet")))
    late_ids = sorted(
        r[0]
        for r in duckdb.sql(
            f"SELECT id FROM read_parquet({sorted(str(old_dir / n) for n in new_files)!r}, "
            "union_by_name=true)"
        ).fetchall()
    )
    assert late_ids == list(range(200, 215))
    total, distinct = duckdb.sql(
        f"SELECT count(*), count(DISTINCT id) FROM {hours_glob(wh, topic)}"
    ).fetchall()[0]
    assert (total, distinct) == (66, 66)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quarantine_and_dead_letters(cluster1, tmp_path):
    topic, group = "conv-bad", "wh-bad"
    create_topic(cluster1.brokers[0].port, topic, 1)
    good_ms = int(time.time() * 1000) - 2 * HOUR_MS
    good = [json.dumps({"id": i, "ts": good_ms}).encode() for i in range(20)]
    quarantined = [
        json.dumps(r).encode()
        for r in (
            {"id": 100},
            {"id": 101, "ts": "whenever"},
            {"id": 102, "ts": 0},
            {"id": 103, "ts": 12},
            {"id": 104, "ts": "1999-06-01T00:00:00Z"},
            {"id": 105, "ts": int(time.time() * 1000) + 10 * DAY_MS},
            {"id": 106, "ts": 1e30},
            {"id": 107, "ts": None},
        )
    ]
    dead = [b"not json", b"[1,2,3]", b"42", b'{"id": 200', b'{"s": "\xff"}', b'"just a string"']
    kcat(
        cluster1,
        topic,
        good[:10] + quarantined[:4] + dead[:3] + good[10:] + quarantined[4:] + dead[3:],
    )
    wh = tmp_path / "wh"
    status, _out, err, totals = run_load(cluster1, wh, topic, group, time_field="ts")
    assert status == 0, err
    assert totals["rows"] == 28 and totals["quarantined"] == 8 and totals["dead"] == 6

    dirs = sorted(p.name for p in (wh / topic).iterdir())
    assert dirs == sorted({"_quarantine", "_dead_letters", hour_dir(good_ms).split("/")[0]})
    assert not list((wh / topic).glob("dt=1970*")) and not list((wh / topic).glob("dt=1999*"))
    q = duckdb.sql(
        f"SELECT id FROM read_parquet('{wh}/{topic}/_quarantine/*.parquet', union_by_name=true)"
    )
    assert sorted(r[0] for r in q.fetchall()) == list(range(100, 108))
    d = duckdb.sql(
        f"SELECT _offset, _value, _error, _partition, _topic "
        f"FROM read_parquet('{wh}/{topic}/_dead_letters/*.parquet') ORDER BY _offset"
    ).fetchall()
    assert [bytes(r[1]) for r in d] == dead
    assert all(r[2] for r in d) and {r[3] for r in d} == {0} and {r[4] for r in d} == {topic}
    offsets = [r[0] for r in d]
    assert offsets == [14, 15, 16, 31, 32, 33]
    g = duckdb.sql(
        f"SELECT count(*), min(_offset), max(_offset) FROM {hours_glob(wh, topic)}"
    ).fetchall()[0]
    assert g[0] == 20
    # the three kinds together are every offset exactly once
    all_offsets = sorted(
        [r[0] for r in duckdb.sql(f"SELECT _offset FROM {hours_glob(wh, topic)}").fetchall()]
        + [
            r[0]
            for r in duckdb.sql(
                f"SELECT _offset FROM read_parquet('{wh}/{topic}/_quarantine/*.parquet')"
            ).fetchall()
        ]
        + offsets
    )
    assert all_offsets == list(range(34))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_declared_schema_file_and_a_type_conflict_across_loads(cluster1, tmp_path):
    wh = tmp_path / "wh"
    # declared: --schema
    topic = "conv-declared"
    create_topic(cluster1.brokers[0].port, topic, 1)
    schema = write_schema(
        tmp_path,
        {"topics": {topic: {"id": "int64", "status": "int64", "price": "double", "ts": "string"}}},
    )
    now_s = int(time.time()) - 7200
    kcat(
        cluster1,
        topic,
        [
            json.dumps({"id": 1, "status": 200, "price": 3, "ts": now_s, "agent": "curl"}).encode(),
            json.dumps({"id": 2, "status": "oops", "price": 1.5, "ts": "x"}).encode(),
            json.dumps({"id": 3, "status": 404, "price": None}).encode(),
        ],
    )
    status, _out, err, totals = run_load(cluster1, wh, topic, "wh-declared", schema_file=schema)
    assert status == 0, err
    assert totals["rows"] == 3 and totals["conflicts"] == 2  # status "oops", ts 123 as a string
    got = duckdb.sql(
        f"SELECT id, status, price, ts, _extra, _rejected, typeof(status), typeof(price), "
        f"typeof(ts) FROM {hours_glob(wh, topic)} ORDER BY id"
    ).fetchall()
    assert [r[:4] for r in got] == [(1, 200, 3.0, None), (2, None, 1.5, "x"), (3, 404, None, None)]
    assert json.loads(got[0][4]) == {"agent": "curl"} and got[1][4] is None
    assert json.loads(got[0][5]) == {"ts": now_s}
    assert json.loads(got[1][5]) == {"status": "oops"} and got[2][5] is None
    assert got[0][6:] == ("BIGINT", "DOUBLE", "VARCHAR")

    # inferred: the first load fixes status as int64; a later "oops" is kept in _rejected
    topic, group = "conv-inferred", "wh-inferred"
    create_topic(cluster1.brokers[0].port, topic, 1)
    kcat(cluster1, topic, [json.dumps({"id": i, "status": 200 + i}).encode() for i in range(5)])
    status, _out, err, totals = run_load(cluster1, wh, topic, group)
    assert status == 0, err
    assert totals["rows"] == 5 and totals["conflicts"] == 0
    kcat(
        cluster1,
        topic,
        [
            json.dumps({"id": 5, "status": "oops"}).encode(),
            json.dumps({"id": 6, "status": 206, "new": True}).encode(),
        ],
    )
    status, _out, err, totals = run_load(cluster1, wh, topic, group)
    assert status == 0, err
    assert totals["rows"] == 2 and totals["conflicts"] == 1
    got = duckdb.sql(
        f"SELECT id, status, _rejected, new, typeof(status) FROM {hours_glob(wh, topic)} "
        f"ORDER BY id"
    ).fetchall()
    assert [r[0] for r in got] == list(range(7))
    assert got[5][1] is None and json.loads(got[5][2]) == {"status": "oops"}
    assert got[6][1:4] == (206, None, True)
    assert {r[4] for r in got} == {"BIGINT"}


def test_event_time_in_another_format_than_the_column_is_still_the_event_time():
    """The time field's column is typed by its first sighting (a number here); a later ISO
    string does not fit the column (kept in _rejected) but still gives the event hour."""
    converter = json_converter(time_field="ts")
    first = convert(converter, [{"ts": PLAN_MS / 1000, "a": 1}])
    assert first.keys == [PLAN_HOUR]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(PLAN_MS / 1000 - 3600))
    later = convert(converter, [{"ts": iso, "a": 2}, {"ts": PLAN_MS, "a": 3}], start=1)
    assert later.keys == [PLAN_HOUR - 1, PLAN_HOUR]
    assert later.table.column("_rejected").to_pylist()[0] == json.dumps(
        {"ts": iso}, separators=(",", ":")
    )
    assert later.table.column("_event_time").cast(pa.int64()).to_pylist() == [
        PLAN_MS - HOUR_MS,
        PLAN_MS,
    ]
