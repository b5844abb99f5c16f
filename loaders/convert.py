"""Messages to Arrow: metadata columns, the value (raw, string or typed JSON), event time.

    >>> converter = Converter(ValueFormat("json"), schemas, time_field="ts")
    >>> batch = converter.convert("clicks", 3, messages, max_event_ms=plan_time + DAY)
    >>> batch.table        # _topic _partition _offset _timestamp _key [_event_time] + fields
    >>> batch.keys         # per message: event hour, QUARANTINE or DEAD_LETTER

JSON values are parsed by pyarrow's JSON reader against the topic's schema (fast path).  A
batch the reader refuses (a bad line, a type conflict, nested values) is parsed record by
record (slow path), so one bad record never costs the others: values that are not JSON
objects become dead letters with the error; a field whose value does not fit the column's
type is left null and kept, as JSON text, in ``_rejected``.

Schema rules (inferred mode), stable across files and workers: a field's type is fixed by its
first non-null sighting (bool, int64, double, string; objects and arrays are kept as JSON
text, type ``json``); the one promotion allowed is int64 to double; nothing else ever
changes.  With a declared schema, fields it does not name are kept in ``_extra`` as JSON.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from consumers.consumer import Block

from .blocks import ValueBlock
from .layout import DEAD_LETTER, HOUR_MS, QUARANTINE

try:
    import orjson

    _loads, _dumps = orjson.loads, lambda v: orjson.dumps(v).decode()
except ImportError:  # pragma: no cover - orjson is a dependency
    _loads, _dumps = json.loads, lambda v: json.dumps(v, separators=(",", ":"))

MIN_EVENT_MS = calendar.timegm((2000, 1, 1, 0, 0, 0)) * 1000  # earlier is absurd for log events
DAY_MS = 86_400_000

TYPES = {
    "bool": pa.bool_(),
    "int64": pa.int64(),
    "double": pa.float64(),
    "string": pa.string(),
    "json": pa.string(),
}
ALIASES = {
    "boolean": "bool",
    "int": "int64",
    "long": "int64",
    "bigint": "int64",
    "integer": "int64",
    "float": "double",
    "float64": "double",
    "number": "double",
    "str": "string",
    "utf8": "string",
    "object": "json",
    "array": "json",
}
RESERVED = (
    "_topic",
    "_partition",
    "_offset",
    "_timestamp",
    "_key",
    "_event_time",
    "_rejected",
    "_extra",
    "_value",
    "_error",
)
TS = pa.timestamp("ms", tz="UTC")
DEAD_SCHEMA = pa.schema(
    [
        ("_topic", pa.string()),
        ("_partition", pa.int32()),
        ("_offset", pa.int64()),
        ("_timestamp", TS),
        ("_key", pa.binary()),
        ("_value", pa.binary()),
        ("_error", pa.string()),
    ]
)


class SchemaError(ValueError):
    """A declared schema file is malformed."""


def normalise_type(name: str) -> str:
    t = ALIASES.get(name.lower(), name.lower())
    if t not in TYPES:
        raise SchemaError(f"unknown type {name!r}; use one of {sorted(TYPES)}")
    return t


def load_declared_schema(path: str) -> dict[str, dict[str, str]]:
    """A schema file: ``{"fields": {"name": "type", ...}}`` for every topic, or
    ``{"topics": {"<topic>": {"name": "type"}}}``; types: bool, int64, double, string, json."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        raise SchemaError(f"cannot read schema file {path}: {exc}") from exc
    if not isinstance(doc, dict) or not ({"fields", "topics"} & doc.keys()):
        raise SchemaError(f'{path}: expected {{"fields": {{name: type}}}} or {{"topics": ...}}')
    tables = {"*": doc["fields"]} if "fields" in doc else doc["topics"]
    if not isinstance(tables, dict) or not tables:
        raise SchemaError(f'{path}: "topics" must be a non-empty object {{topic: {{name: type}}}}')
    out = {}
    for topic, fields in tables.items():
        if not isinstance(fields, dict) or not fields:
            raise SchemaError(f"{path}: the fields of {topic} must be a non-empty object")
        out[topic] = {}
        for k, v in fields.items():
            try:
                out[topic][column_name(k)] = normalise_type(str(v))
            except SchemaError as exc:
                raise SchemaError(f"{path}: field {k!r} of {topic}: {exc}") from None
    return out


def column_name(field: str) -> str:
    """A JSON field's column; names that collide with the metadata columns get a prefix."""
    return f"value.{field}" if field in RESERVED else field


def infer_type(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64" if -(1 << 63) <= value < (1 << 63) else "double"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return "json"


def arrow_to_type(t: pa.DataType) -> str | None:
    """Our type for a column pyarrow's reader inferred; None for all-null columns."""
    if pa.types.is_null(t):
        return None
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int64"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_timestamp(t):
        return "string"  # timestamps the reader guessed are kept as the text they were
    return "json"


def _coerce(value, kind: str):
    """(fits, value) of a JSON value for a column of type ``kind``."""
    if value is None:
        return True, None
    if kind == "string":
        return isinstance(value, str), value
    if kind == "int64":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and -(1 << 63) <= value < (1 << 63)
        ), value
    if kind == "double":  # a float: pyarrow refuses ints past int64 (orjson gives up to 2**64-1)
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
        return fits, float(value) if fits else value
    if kind == "bool":
        return isinstance(value, bool), value
    return True, _dumps(value)  # json


def merge_schema(current: dict[str, str], found: dict[str, str]) -> dict[str, str]:
    """The stable rule: existing types stay, except int64 -> double; new fields are added."""
    merged = dict(current)
    for name, kind in found.items():
        old = merged.get(name)
        if old is None:
            merged[name] = kind
        elif old == "int64" and kind == "double":
            merged[name] = "double"
    return merged


class ValueFormat(NamedTuple):
    kind: str  # "json", "string" or "raw"


class Converted(NamedTuple):
    table: pa.Table  # the good rows, in offset order
    row_of: list[int]  # per message: its row in ``table``, or its row in ``dead`` if dead
    keys: list[int]  # per message: event hour, QUARANTINE or DEAD_LETTER
    dead: pa.Table  # dead letters: raw value, offset, error
    conflicts: int  # fields kept in ``_rejected``
    new_fields: dict  # fields added to the schema by this batch
    hours: pa.Array | None = None  # the bucket key of each row of ``table``


def dead_batch(
    topic: str, partition: int, first: int, last: int, reason: str, raw: bytes
) -> Converted:
    """A record batch that cannot be decoded, as one dead letter: the batch's bytes as the
    value, its first offset, and its offset range and the reason in ``_error``."""
    dead = pa.table(
        {
            "_topic": [topic],
            "_partition": [partition],
            "_offset": [first],
            "_timestamp": [None],
            "_key": [None],
            "_value": [raw],
            "_error": [f"record batch at offsets {first}..{last} cannot be decoded: {reason}"],
        },
        schema=DEAD_SCHEMA,
    )
    return Converted(pa.table({}), [0], [DEAD_LETTER], dead, 0, {})


def rest_of(converted: Converted, taken: int) -> Converted:
    """What ``converted`` holds for its messages after the first ``taken``."""
    keys = converted.keys
    good = sum(1 for k in keys[:taken] if k != DEAD_LETTER)
    dead = taken - good
    rest = keys[taken:]
    if isinstance(converted.row_of, range) and not dead:
        row_of = range(len(rest))
    else:
        row_of = [
            r - (dead if k == DEAD_LETTER else good) for r, k in zip(converted.row_of[taken:], rest)
        ]
    hours = converted.hours.slice(good) if converted.hours is not None else None
    return Converted(
        converted.table.slice(good), row_of, rest, converted.dead.slice(dead), 0, {}, hours
    )


class FixedSchemas:
    """Declared schemas; ``"*"`` applies to every topic."""

    declared = True

    def __init__(self, schemas: dict[str, dict[str, str]]):
        self.schemas = schemas

    def get(self, topic: str) -> dict[str, str]:
        return self.schemas.get(topic) or self.schemas.get("*") or {}

    def update(self, topic: str, found: dict[str, str]) -> dict[str, str]:
        return self.get(topic)


class MemorySchemas:
    """Inferred schemas kept in memory (one process); the loader uses the ZooKeeper store."""

    declared = False

    def __init__(self):
        self.schemas: dict[str, dict[str, str]] = {}

    def get(self, topic: str) -> dict[str, str]:
        return self.schemas.get(topic, {})

    def update(self, topic: str, found: dict[str, str]) -> dict[str, str]:
        self.schemas[topic] = merge_schema(self.get(topic), found)
        return self.schemas[topic]


def epoch_ms_of(column: pa.ChunkedArray | pa.Array | None, n: int) -> pa.Array:
    """Event times (int64 ms since the epoch, null when unknown) from a column of numbers
    (s, ms, us or ns, told apart by magnitude), ISO-8601 strings (a missing zone means UTC)
    or timestamps."""
    if column is None:
        return pa.nulls(n, pa.int64())
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_timestamp(t):
        return pc.cast(column, TS).cast(pa.int64())
    if pa.types.is_integer(t):
        return _integer_ms(column.cast(pa.int64()))
    if pa.types.is_floating(t):
        return _float_ms(column.cast(pa.float64()))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return pc.cast(column, TS).cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.array([_text_ms(v) for v in column.to_pylist()], pa.int64())
    return pa.nulls(n, pa.int64())


def _integer_ms(v: pa.Array) -> pa.Array:
    """``_number_ms`` for a whole int64 column (exact integer arithmetic)."""
    a = pc.abs(v)
    pa.scalar(None, pa.int64())
    sec = pc.less(a, int(1e11))
    return pc.if_else(
        sec,
        pc.multiply_checked(pc.if_else(sec, v, 0), 1000),
        pc.if_else(
            pc.less(a, int(1e14)),
            v,
            pc.if_else(pc.less(a, int(1e17)), pc.divide(v, 1000), pc.divide(v, 1_000_000)),
        ),
    )


def _float_ms(v: pa.Array) -> pa.Array:
    """``_number_ms`` for a whole float64 column."""
    a = pc.abs(v)
    ms = pc.if_else(
        pc.less(a, 1e11),
        pc.multiply(v, 1000.0),
        pc.if_else(
            pc.less(a, 1e14),
            v,
            pc.if_else(
                pc.less(a, 1e17),
                pc.divide(v, 1000.0),
                pc.if_else(pc.less(a, 9e24), pc.divide(v, 1e6), pa.scalar(None, pa.float64())),
            ),
        ),
    )
    ms = pc.if_else(pc.is_nan(ms), pa.scalar(None, pa.float64()), ms)
    truncated = pc.trunc(ms)  # as int() does
    ok = pc.and_(pc.less(pc.abs(truncated), 9.2e18), pc.is_finite(truncated))
    return pc.if_else(ok, truncated, pa.scalar(None, pa.float64())).cast(pa.int64())


def _number_ms(v) -> int | None:
    if v is None or v != v:  # None or NaN
        return None
    a = abs(v)
    if a < 1e11:
        return int(v * 1000)
    if a < 1e14:
        return int(v)
    if a < 1e17:
        return int(v // 1000)
    if a < 9e24:
        return int(v // 1_000_000)
    return None  # infinite, or past int64 in ms: quarantined, not a crash


_RAW_TIMES = "\0raw event times"


def _value_ms(v) -> int | None:
    """Event time of a JSON value: a number (s, ms, us or ns) or a string."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return _number_ms(v)
    if isinstance(v, str):
        return _text_ms(v)
    return None


def _text_ms(v) -> int | None:
    if v is None:
        return None
    try:
        return _number_ms(float(v))
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return int(stamp.timestamp() * 1000)


class Converter:
    """Turns one partition's messages into Arrow tables; see the module docstring."""

    def __init__(
        self,
        value_format: ValueFormat,
        schemas=None,
        time_field: str | None = None,
        threads: bool = False,
    ):
        if value_format.kind not in ("json", "string", "raw"):
            raise ValueError("value format must be json, string or raw")
        if time_field and value_format.kind != "json":
            raise ValueError("a time field needs --format json")
        self.kind = value_format.kind
        self.schemas = schemas if schemas is not None else MemorySchemas()
        self.time_field = time_field
        self.threads = threads  # let pyarrow's JSON reader use several cores

    def convert(self, topic: str, partition: int, block, max_event_ms: int) -> Converted:
        """Convert a Block (or a list of Messages) of one partition; see Converted."""
        if not isinstance(block, Block):
            block = Block.of(block)
        n = len(block)
        dead: list[tuple[int, str]] = []
        conflicts = 0
        new_fields: dict = {}
        if self.kind == "raw":
            body, good = {"value": pa.array(block.values, pa.binary())}, range(n)
        elif self.kind == "string":
            body, good, dead = self._strings(block.values)
        else:
            body, good, dead, conflicts, new_fields = self._json(topic, block)
        is_good = len(good) == n
        if is_good:

            def pick(seq):
                return seq
        else:
            picked = np.array(good, np.int64)

            def pick(seq):
                return seq[picked] if isinstance(seq, np.ndarray) else [seq[i] for i in good]

        count = len(good)
        stamps = pa.array(pick(block.timestamps), pa.int64())
        stamps = pc.if_else(pc.less(stamps, 0), pa.scalar(None, pa.int64()), stamps)
        keys_in = pick(block.keys)
        meta = {
            "_topic": pa.repeat(pa.scalar(topic, pa.string()), count),
            "_partition": pa.repeat(pa.scalar(partition, pa.int32()), count),
            "_offset": pa.array(pick(block.offsets), pa.int64()),
            "_timestamp": stamps.cast(TS),
            "_key": (
                pa.nulls(count, pa.binary())
                if keys_in.count(None) == count
                else pa.array(keys_in, pa.binary())
            ),
        }
        raw_times = body.pop(_RAW_TIMES, None)
        if self.time_field:
            if raw_times is not None:  # parsed record by record: times from the JSON values
                event_ms = pa.array([_value_ms(v) for v in raw_times], pa.int64())
            else:
                event_ms = epoch_ms_of(body.get(column_name(self.time_field)), count)
            meta["_event_time"] = event_ms.cast(TS)
        else:
            event_ms = stamps
        meta.update(body)
        table = pa.table(meta)

        in_range = pc.and_(
            pc.greater_equal(event_ms, MIN_EVENT_MS), pc.less_equal(event_ms, max_event_ms)
        )
        hour_keys = pc.if_else(in_range, pc.divide(event_ms, HOUR_MS), QUARANTINE).fill_null(
            QUARANTINE
        )
        hours = hour_keys.to_pylist()
        if is_good:
            keys, row_of = hours, range(n)
        else:
            keys = [DEAD_LETTER] * n
            row_of = [0] * n
            for row, i in enumerate(good):
                keys[i] = hours[row]
                row_of[i] = row
        dead_cols = {name: [] for name in DEAD_SCHEMA.names}
        values = block.values if dead else None
        for row, (i, error) in enumerate(dead):
            row_of[i] = row
            stamp = block.timestamps[i]
            dead_cols["_topic"].append(topic)
            dead_cols["_partition"].append(partition)
            dead_cols["_offset"].append(int(block.offsets[i]))
            dead_cols["_timestamp"].append(int(stamp) if stamp is not None and stamp >= 0 else None)
            dead_cols["_key"].append(block.keys[i])
            dead_cols["_value"].append(values[i])
            dead_cols["_error"].append(error)
        dead_table = pa.table(dead_cols, schema=DEAD_SCHEMA)
        return Converted(table, row_of, keys, dead_table, conflicts, new_fields, hour_keys)

    # --- value formats -------------------------------------------------------------------

    def _strings(self, values):
        out, good, dead = [], [], []
        for i, v in enumerate(values):
            if v is None:
                dead.append((i, "null value (a tombstone), not a string"))
                continue
            try:
                out.append(v.decode("utf-8"))
                good.append(i)
            except UnicodeDecodeError as exc:
                dead.append((i, f"value is not UTF-8: {exc}"))
        return {"value": pa.array(out, pa.string())}, good, dead

    def _json(self, topic: str, block):
        schema = self.schemas.get(topic)
        n = len(block)
        lines = block.lines() if isinstance(block, ValueBlock) else _lines(block.values)
        table = self._fast(lines, n, schema)
        if table is not None:
            found = {}
            for name, t in zip(table.column_names, table.schema.types):
                if name not in schema:
                    kind = arrow_to_type(t)
                    if kind is not None:
                        found[name] = kind
            if not found:
                return self._columns(table, schema), range(n), [], 0, {}
            if not self.schemas.declared and all(k != "json" for k in found.values()):
                merged = self.schemas.update(topic, found)
                again = self._fast(lines, n, merged)  # parse new fields with their settled types
                if again is not None and all(
                    n in merged
                    for n in again.column_names
                    if not pa.types.is_null(again.schema.field(n).type)
                ):
                    added = {k: merged[k] for k in found}
                    return self._columns(again, merged), range(n), [], 0, added
        return self._slow(topic, block.values)

    def _fast(self, lines, n: int, schema: dict[str, str]) -> pa.Table | None:
        """The values (``lines``: n lines of newline-delimited bytes) parsed by pyarrow's JSON
        reader against ``schema``; None if the reader refuses them or reads them otherwise
        than a JSON parser would."""
        if lines is None:
            return None
        explicit = pa.schema(
            [(name, TYPES[kind]) for name, kind in schema.items() if name == column_name(name)]
        )
        options = pj.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="infer")
        try:
            table = pj.read_json(
                pa.BufferReader(pa.py_buffer(lines)),
                read_options=pj.ReadOptions(
                    use_threads=self.threads, block_size=max(1 << 20, len(lines) + 1)
                ),
                parse_options=options,
            )
            table.validate(full=True)  # the reader does not check UTF-8; orjson does
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if table.num_rows != n or any(column_name(n) != n for n in table.column_names):
            return None
        if any(
            pa.types.is_floating(c.type) and pc.all(pc.is_finite(c)).as_py() is False
            for c in table.columns
        ):
            return None  # NaN, Infinity or an overflow: the reader takes them, orjson does not
        if any(
            schema.get(n) == "json" and table.column(n).null_count < table.num_rows
            for n in table.column_names
        ):
            return None  # the reader keeps a string as is; a json column holds JSON text
        return table

    def _columns(self, table: pa.Table, schema: dict[str, str]) -> dict:
        out = {}
        for name in table.column_names:
            col = table.column(name)
            if pa.types.is_null(col.type):
                continue
            out[name] = col
        return out

    def _slow(self, topic: str, values: list):
        """Record by record: dead letters, conflicts into ``_rejected``, new fields inferred;
        repeated if the shared schema settled a new field differently meanwhile."""
        for _ in range(5):
            schema = dict(self.schemas.get(topic))
            declared = self.schemas.declared
            rows, good, dead = [], [], []
            rejected, extra, times = [], [], []
            time_field = self.time_field
            found: dict[str, str] = {}
            conflicts = 0
            parsed = []
            for i, v in enumerate(values):
                if v is None:
                    dead.append((i, "null value (a tombstone), not JSON"))
                    continue
                try:
                    obj = _loads(v)
                except ValueError as exc:
                    dead.append((i, f"invalid JSON: {exc}"))
                    continue
                if not isinstance(obj, dict):
                    dead.append((i, f"JSON value is a {type(obj).__name__}, not an object"))
                    continue
                parsed.append((i, obj))
                if not declared:
                    for k, x in obj.items():
                        name = column_name(k)
                        kind = infer_type(x)
                        if kind is None:
                            continue
                        if name not in schema:
                            old = found.get(name)
                            found[name] = (
                                kind
                                if old is None
                                else ("double" if {old, kind} == {"int64", "double"} else old)
                            )
                        elif schema[name] == "int64" and kind == "double":
                            found[name] = "double"
            if found:
                schema = self.schemas.update(topic, found)
            for i, obj in parsed:
                row, rej, ext = {}, {}, {}
                for k, x in obj.items():
                    name = column_name(k)
                    kind = schema.get(name)
                    if kind is None:
                        if x is not None:
                            ext[k] = x
                        continue
                    ok, value = _coerce(x, kind)
                    if ok:
                        row[name] = value
                    else:
                        rej[k] = x
                conflicts += len(rej)
                rows.append(row)
                rejected.append(_dumps(rej) if rej else None)
                extra.append(_dumps(ext) if ext else None)
                good.append(i)
                if time_field:
                    times.append(obj.get(time_field))
            if any(
                schema.get(n) != k and not (schema.get(n) == "double" and k == "int64")
                for n, k in found.items()
            ):
                continue  # another worker settled a field differently: convert again
            fields = [(name, TYPES[kind]) for name, kind in schema.items()]
            table = pa.Table.from_pylist(rows, schema=pa.schema(fields))
            body = {name: table.column(name) for name in table.column_names}
            if any(r is not None for r in rejected):
                body["_rejected"] = pa.array(rejected, pa.string())
            if any(e is not None for e in extra):
                body["_extra"] = pa.array(extra, pa.string())
            if time_field:
                # the event time comes from the value as sent, even if it did not fit the
                # column (a number where the column holds strings, say)
                body[_RAW_TIMES] = times
            return body, good, dead, conflicts, found
        raise RuntimeError(f"the schema of {topic} keeps changing under this loader")


def _lines(values: list) -> bytes | None:
    """Values as newline-delimited lines for the JSON reader, or None if they cannot be read
    that way: a null value, a newline inside a value, or a byte order mark at the start (the
    reader skips it; a JSON parser refuses it).  Empty values show as a short table."""
    if not values:
        return None
    try:
        buf = b"\n".join(values)
    except TypeError:  # a null value
        return None
    if buf.count(b"\n") != len(values) - 1 or values[0].startswith(b"\xef\xbb\xbf"):
        return None
    return buf


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    """Tables of one file: columns unified by name, int64 widened to double where needed."""
    tables = list(tables)
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")
