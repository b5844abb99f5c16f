"""Column types and schemas of JSON values: declared schema files, inference, the stable rule.

Schema rules (inferred mode), stable across files and workers: a field's type is fixed by its
first non-null sighting (bool, int64, double, string; objects and arrays are kept as JSON
text, type ``json``); the one promotion allowed is int64 to double; nothing else ever
changes.  With a declared schema, fields it does not name are kept in ``_extra`` as JSON.
"""

from __future__ import annotations

import json

import pyarrow as pa

try:
    import orjson

    json_loads, _dump_bytes = orjson.loads, orjson.dumps

    def json_dumps(value) -> str:
        """Compact JSON text of ``value`` (what ``json`` columns and ``_rejected`` hold)."""
        return _dump_bytes(value).decode()

except ImportError:  # pragma: no cover - orjson is a dependency
    json_loads = json.loads

    def json_dumps(value) -> str:
        """Compact JSON text of ``value`` (what ``json`` columns and ``_rejected`` hold)."""
        return json.dumps(value, separators=(",", ":"))


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


def coerce(value, kind: str):
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
    return True, json_dumps(value)  # json


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
