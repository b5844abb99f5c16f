"""Avro values to Arrow columns: the reader schema's types, and decoded records as columns.

    >>> reader = ReaderSchema(schema_text)            # the subject's version fixed in the plan
    >>> body, good, dead = AvroValues(reader, writer_schema).decode(values)

Each value is framed as schema-registry values are (magic byte 0, the writer schema's id as
four big-endian bytes, the Avro binary body).  It is read with its writer schema, resolved
against the reader schema (fastavro), and the records become one Arrow array per top-level
field of the reader schema, built column by column with the type of ``arrow_type``:

    record -> struct              array -> list            map -> map<string, ...>
    enum -> dictionary<string>    fixed -> fixed_size_binary, bytes -> binary
    ["null", T] (either order) -> T, nullable             other unions -> JSON text
    timestamp-millis/-micros/-nanos -> timestamp[ms/us/ns, UTC], local-timestamp-* without zone
    date -> date32   time-millis -> time32[ms]   time-micros -> time64[us]
    decimal (bytes or fixed) -> decimal128(precision, scale) (decimal256 past 38 digits)
    uuid -> string

A union of several non-null branches has no one Arrow type that keeps each branch apart
without inventing names, so it is stored as the value's Avro JSON text (bytes as code
points 0-255, as Avro's JSON encoding writes them); a recursive record is stored the same
way where it refers to itself.  A reader schema that is not a record gives one ``value``
column.  A value that cannot be read - no magic byte, an unknown schema id, a writer schema
the reader cannot resolve, a truncated or overlong body - is a dead letter with the reason.
"""

from __future__ import annotations

import io
import json
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.compute as pc

from consumers.schemas.wire import HEADER_SIZE, MAGIC, SchemaFrameError, unframe

from .eventtime import TS, epoch_ms_of

VALUE_COLUMN = "value"  # the one column of a reader schema that is not a record

# Logical types fastavro need not build Python objects for: the plain number (or string) is
# what Arrow takes for the column's type, so they are taken off before fastavro sees them.
_PLAIN_LOGICAL = {
    ("long", "timestamp-millis"): pa.timestamp("ms", tz="UTC"),
    ("long", "timestamp-micros"): pa.timestamp("us", tz="UTC"),
    ("long", "timestamp-nanos"): pa.timestamp("ns", tz="UTC"),
    ("long", "local-timestamp-millis"): pa.timestamp("ms"),
    ("long", "local-timestamp-micros"): pa.timestamp("us"),
    ("long", "local-timestamp-nanos"): pa.timestamp("ns"),
    ("int", "date"): pa.date32(),
    ("int", "time-millis"): pa.time32("ms"),
    ("long", "time-micros"): pa.time64("us"),
    ("string", "uuid"): pa.string(),
}
_PRIMITIVES = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}

_ID = struct.Struct(">I")  # the schema id after the magic byte

Fixer = Callable[[Any], Any] | None  # what a decoded value needs before Arrow takes it


class AvroSchemaError(ValueError):
    """A schema text that is not a valid Avro schema."""


class UnknownSchemaId(LookupError):
    """The registry has no schema under this id (raised by a ``writer_schema`` callable)."""


def plain_schema(schema: Any) -> Any:
    """``schema`` (parsed JSON) without the logical types listed in ``_PLAIN_LOGICAL``, which
    fastavro then decodes as plain numbers or strings."""
    if isinstance(schema, list):
        return [plain_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "fields":
            out[k] = [{**f, "type": plain_schema(f["type"])} for f in v]
        elif k in ("items", "values", "type"):
            out[k] = plain_schema(v)
        else:
            out[k] = v
    if (schema.get("type"), schema.get("logicalType")) in _PLAIN_LOGICAL:
        del out["logicalType"]
    return out


def parse(text: str, plain: bool = True) -> Any:
    """The fastavro form of a schema text (with ``plain``, without the logical types fastavro
    need not decode); AvroSchemaError if the text is not a valid Avro schema."""
    try:
        doc = json.loads(text)
        return fastavro.parse_schema(plain_schema(doc) if plain else doc, named_schemas={})
    except Exception as exc:  # fastavro's parse errors have no common base with ValueError
        raise AvroSchemaError(f"not a valid Avro schema: {exc}") from exc


class _Types:
    """Arrow types (and fixers) of a parsed schema; named types are looked up by full name."""

    def __init__(self):
        self.named: dict[str, Any] = {}
        self.defining: set[str] = set()

    def of(self, s: Any, namespace: str = "") -> tuple[pa.DataType, Fixer]:
        if isinstance(s, str):
            if s in _PRIMITIVES:
                return _PRIMITIVES[s], None
            name = s if "." in s or not namespace else f"{namespace}.{s}"
            name = name if name in self.named else s
            if name in self.defining:
                return pa.string(), _json_text  # a record inside itself
            if name not in self.named:
                raise AvroSchemaError(f"unknown type name {s!r}")
            return self.of(self.named[name], namespace)
        if isinstance(s, list):
            return self._union(s, namespace)
        kind = s.get("type")
        logical = s.get("logicalType")
        if logical == "decimal" and kind in ("bytes", "fixed"):
            p, scale = s.get("precision"), s.get("scale", 0)
            if isinstance(p, int) and isinstance(scale, int) and 0 < p <= 76 and 0 <= scale <= p:
                if kind == "fixed":
                    self._define(s, namespace)
                return (pa.decimal128(p, scale) if p <= 38 else pa.decimal256(p, scale)), None
        if kind == "fixed" and logical == "uuid" and s.get("size") == 16:
            self._define(s, namespace)
            return pa.string(), _uuid_text
        plain = _PLAIN_LOGICAL.get((kind, logical))
        if plain is not None:
            return plain, None
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind], None
        if kind == "array":
            item, fix = self.of(s["items"], namespace)
            return pa.list_(item), (None if fix is None else _each(fix))
        if kind == "map":
            value, fix = self.of(s["values"], namespace)
            return pa.map_(pa.string(), value), (None if fix is None else _each_value(fix))
        if kind == "enum":
            self._define(s, namespace)
            return pa.dictionary(pa.int32(), pa.string()), None
        if kind == "fixed":
            self._define(s, namespace)
            return pa.binary(s["size"]), None
        if kind in ("record", "error"):
            return self._record(s, namespace)
        raise AvroSchemaError(f"unknown Avro type {kind!r}")

    def _define(self, s: dict, namespace: str) -> str:
        name = s["name"]
        if "." not in name and (s.get("namespace") or namespace):
            name = f"{s.get('namespace') or namespace}.{name}"
        self.named[name] = s
        return name

    def _record(self, s: dict, namespace: str) -> tuple[pa.DataType, Fixer]:
        fields, fixes = self.fields(s, namespace)
        named = {f.name: fix for f, fix in zip(fields, fixes) if fix is not None}
        return pa.struct(fields), (_fields(named) if named else None)

    def fields(self, s: dict, namespace: str = "") -> tuple[list[pa.Field], list[Fixer]]:
        """The fields of a record schema, as Arrow fields, and the fixer of each."""
        name = self._define(s, namespace)
        inner = name.rsplit(".", 1)[0] if "." in name else ""
        self.defining.add(name)
        try:
            fields, fixes = [], []
            for f in s["fields"]:
                t, fix = self.of(f["type"], inner)
                fields.append(pa.field(f["name"], t))
                fixes.append(fix)
        finally:
            self.defining.discard(name)
        return fields, fixes

    def _union(self, branches: list, namespace: str) -> tuple[pa.DataType, Fixer]:
        others = [b for b in branches if b != "null"]
        if len(others) == 1:
            return self.of(others[0], namespace)
        if not others:
            return pa.null(), None
        for b in others:  # named branches are defined where they first appear
            self.of(b, namespace)
        return pa.string(), _json_text


def _each(fix: Callable) -> Callable:
    return lambda v: None if v is None else [fix(x) for x in v]


def _each_value(fix: Callable) -> Callable:
    return lambda v: None if v is None else {k: fix(x) for k, x in v.items()}


def _fields(fixes: dict[str, Callable]) -> Callable:
    def fix(v):
        if v is None:
            return None
        out = dict(v)
        for name, f in fixes.items():
            out[name] = f(out.get(name))
        return out

    return fix


def _uuid_text(v):
    return None if v is None else str(uuid.UUID(bytes=bytes(v)))


def _json_default(v):
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).decode("latin-1")
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    return str(v)


def _json_text(v):
    return None if v is None else json.dumps(v, default=_json_default, sort_keys=True)


def arrow_type(schema_text: str) -> pa.DataType:
    """The Arrow type of every value of an Avro schema (see the module docstring)."""
    return _Types().of(parse(schema_text, plain=False))[0]


class ReaderSchema:
    """A reader schema: its fastavro form and its columns (name, Arrow type, fixer)."""

    def __init__(self, text: str):
        self.text = text
        self.parsed = parse(text)
        parsed = parse(text, plain=False)
        self.record = isinstance(parsed, dict) and parsed.get("type") in ("record", "error")
        if self.record:
            self.fields, self.fixes = _Types().fields(parsed)
        else:
            kind, fix = _Types().of(parsed)
            self.fields, self.fixes = [pa.field(VALUE_COLUMN, kind)], [fix]

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(self.fields)

    def columns(self, records: list) -> dict[str, pa.Array]:
        """The decoded records (dicts, or plain values for a non-record schema) as one Arrow
        array per column, each built in one call with its type."""
        out = {}
        for f, fix in zip(self.fields, self.fixes):
            if self.record:
                name = f.name
                values = [r[name] for r in records]
            else:
                values = records
            if fix is not None:
                values = [fix(v) for v in values]
            out[f.name] = pa.array(values, f.type)
        return out


class AvroValues:
    """Decodes framed values with the writer schema of each id against one reader schema.

    ``writer_schema(id)`` returns the registry's schema text of an id, or raises
    UnknownSchemaId; any other error it raises (a registry that does not answer) is not the
    value's fault and goes up to the caller."""

    def __init__(self, reader: ReaderSchema, writer_schema: Callable[[int], str]):
        self.reader = reader
        self.writer_schema = writer_schema
        self.writers: dict[int, Any] = {}  # id -> parsed writer schema, or an error text

    def _writer(self, schema_id: int) -> Any:
        found = self.writers.get(schema_id)
        if found is None:
            try:
                text = self.writer_schema(schema_id)
                found = parse(text)
                if text == self.reader.text:
                    found = self.reader.parsed
            except UnknownSchemaId:
                found = f"unknown schema id {schema_id}"
            except AvroSchemaError as exc:
                found = f"the writer schema of id {schema_id} is {exc}"
            self.writers[schema_id] = found
        return found

    def decode(self, values: list) -> tuple[dict[str, pa.Array], list[int], list[tuple[int, str]]]:
        """(columns of the good values, their indexes in ``values``, (index, error) of each
        dead letter)."""
        records, good, dead = [], [], []
        reader = self.reader.parsed
        read = fastavro.schemaless_reader
        writers = self.writers
        last_id, writer, resolve = -1, None, None
        for i, value in enumerate(values):
            # The common case inline (a framed value, the id of the value before); anything
            # else through wire.unframe, whose error says what is wrong.
            if value is not None and len(value) > HEADER_SIZE and value[0] == MAGIC:
                schema_id = _ID.unpack_from(value, 1)[0]
                body = memoryview(value)[HEADER_SIZE:]
            elif value is None:
                dead.append((i, "null value (a tombstone), not Avro"))
                continue
            else:
                try:
                    schema_id, body = unframe(value)
                except SchemaFrameError as exc:
                    dead.append((i, f"not schema-registry Avro: {exc}"))
                    continue
            if schema_id != last_id:
                writer = writers.get(schema_id) or self._writer(schema_id)
                resolve = None if writer is reader else reader
                last_id = schema_id
            if isinstance(writer, str):
                dead.append((i, writer))
                continue
            stream = io.BytesIO(body)
            try:
                record = read(stream, writer, resolve)
            except EOFError as exc:
                dead.append((i, f"truncated Avro body (schema id {schema_id}): {exc}".rstrip(": ")))
                continue
            except Exception as exc:  # fastavro's errors have no common base
                dead.append((i, f"cannot decode with schema id {schema_id}: {exc}"))
                continue
            extra = len(body) - stream.tell()
            if extra:
                dead.append((i, f"{extra} bytes after the Avro record (schema id {schema_id})"))
                continue
            records.append(record)
            good.append(i)
        try:
            return self.reader.columns(records), good, dead
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
        # A record Arrow refuses (a value out of its type's range): find it, one at a time.
        kept_records, kept = [], []
        for record, i in zip(records, good):
            try:
                self.reader.columns([record])
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                dead.append((i, f"decoded value does not fit its column: {exc}"))
                continue
            kept_records.append(record)
            kept.append(i)
        dead.sort()
        return self.reader.columns(kept_records), kept, dead


def event_ms(column: pa.Array | None, n: int) -> pa.Array:
    """Event times (int64 ms) from a time field's column: timestamps of any unit (kept to the
    millisecond), long milliseconds, ISO-8601 strings; null where unknown."""
    if column is not None and pa.types.is_timestamp(column.type):
        unit = {"s": 1 / 1000, "ms": 1, "us": 1000, "ns": 1_000_000}[column.type.unit]
        raw = column.cast(pa.int64())
        return (
            raw if unit == 1 else pc.floor(pc.divide(raw.cast(pa.float64()), unit)).cast(pa.int64())
        )
    if column is not None and pa.types.is_integer(column.type):
        return column.cast(pa.int64())  # milliseconds, as a long field of Avro events holds
    return epoch_ms_of(column, n)


__all__ = [
    "TS",
    "VALUE_COLUMN",
    "AvroSchemaError",
    "AvroValues",
    "ReaderSchema",
    "UnknownSchemaId",
    "arrow_type",
    "event_ms",
    "parse",
    "plain_schema",
]
