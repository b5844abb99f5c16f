"""Messages to Arrow: metadata columns, the value (raw, string or typed JSON), event time.

    >>> converter = Converter(ValueFormat("json"), schemas, time_field="ts")
    >>> batch = converter.convert("clicks", 3, messages, max_event_ms=plan_time + DAY)
    >>> batch.table        # _topic _partition _offset _timestamp _key [_event_time] + fields
    >>> batch.keys         # per message: event hour, QUARANTINE or DEAD_LETTER

JSON values are parsed by pyarrow's JSON reader against the topic's schema (fast path).  A
batch the reader refuses (a bad line, a type conflict, nested values) is parsed record by
record (slow path), so one bad record never costs the others: values that are not JSON
objects become dead letters with the error; a field whose value does not fit the column's
type is left null and kept, as JSON text, in ``_rejected``.  Column types and the schema
rule are in ``loaders.schema``, event times in ``loaders.eventtime``.  Avro values are
decoded by ``loaders.avro`` with the reader schema of the partition's plan (``avro``, a
callable of topic and partition), one column per field of the schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from consumers.consumer import Block

from .avro import event_ms as avro_event_ms
from .blocks import ValueBlock
from .eventtime import MIN_EVENT_MS, TS, epoch_ms_of, value_ms
from .layout import DEAD_LETTER, HOUR_MS, QUARANTINE
from .schema import (
    TYPES,
    MemorySchemas,
    arrow_to_type,
    coerce,
    column_name,
    infer_type,
    json_dumps,
    json_loads,
)

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


class ValueFormat(NamedTuple):
    kind: str  # "json", "string", "raw" or "avro"


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


_RAW_TIMES = "\0raw event times"


class Converter:
    """Turns one partition's messages into Arrow tables; see the module docstring."""

    def __init__(
        self,
        value_format: ValueFormat,
        schemas=None,
        time_field: str | None = None,
        threads: bool = False,
        avro=None,
    ):
        if value_format.kind not in ("json", "string", "raw", "avro"):
            raise ValueError("value format must be json, string, raw or avro")
        if time_field and value_format.kind not in ("json", "avro"):
            raise ValueError("a time field needs --value-format json or avro")
        if (avro is None) != (value_format.kind != "avro"):
            raise ValueError("Avro values need their schemas (and only they)")
        self.avro = avro  # (topic, partition) -> loaders.avro.AvroValues
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
        elif self.kind == "avro":
            body, good, dead = self.avro(topic, partition).decode(block.values)
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
        if self.time_field and self.kind == "avro":
            event_ms = avro_event_ms(body.get(self.time_field), count)
            meta["_event_time"] = event_ms.cast(TS)
        elif self.time_field:
            if raw_times is not None:  # parsed record by record: times from the JSON values
                event_ms = pa.array([value_ms(v) for v in raw_times], pa.int64())
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
                    obj = json_loads(v)
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
                    ok, value = coerce(x, kind)
                    if ok:
                        row[name] = value
                    else:
                        rej[k] = x
                conflicts += len(rej)
                rows.append(row)
                rejected.append(json_dumps(rej) if rej else None)
                extra.append(json_dumps(ext) if ext else None)
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
