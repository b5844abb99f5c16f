"""Avro load benchmark: the loader's Avro path against fastavro alone, and against the JSON
path on the same events, in one process.

Run from the repository root::

    .venv/bin/python bench/avro_load_bench.py                # 200,000 events, ~1 min on 2 CPUs
    .venv/bin/python bench/avro_load_bench.py --quick        # 20,000 events, a few seconds
    .venv/bin/python bench/avro_load_bench.py --events 500000 --reps 5 --json out.json

The events are ``loader_bench.py``'s access-log events (ts, client_ip, method, path, status,
bytes, referrer, user_agent, latency_ms), pseudo-random from a fixed seed, encoded twice: as
the JSON lines the JSON path loads, and as schema-registry Avro (magic byte, schema id, body
written by fastavro; ``ts`` a timestamp-millis, ``status`` an int, ``latency_ms`` a double).
A second Avro set, ``nested``, adds a record, an array, a map, an enum, a decimal and a
nullable field to each event, to show what Arrow's nested types cost.

What is measured, per block of ``--block`` messages (10,000: about what one fetch brings):

- ``fastavro``: ``fastavro.schemaless_reader`` of every body with the parsed schema (the
  plain way to decode: one dict per event, logical types as Python objects) - the baseline;
- ``loader avro``: ``loaders.convert.Converter`` with the Avro format, as a worker runs it -
  framing, decoding by schema id (writer schema = reader schema), the Arrow columns, the
  metadata columns, event times from ``ts`` and the hour of each event;
- ``arrow only``: decoded records (decoded once, before) to an Arrow table, the loader's way
  (``loaders.avro.ReaderSchema.columns``: one ``pa.array`` per column with its type) against
  ``pa.Table.from_pylist(records, schema)`` - the choice between the two;
- ``loader json``: the Converter with the JSON format and ``--time-field ts`` on the same
  events as JSON lines (pyarrow's JSON reader against the settled schema).

Each runs ``--reps`` times (3), order rotated each rep, the garbage collector paused; the
table shows each one's best run and median in events/s and the ratios of the best runs:
``loader avro / fastavro`` (the cost of landing in Arrow over decoding alone) and
``loader avro / loader json``.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import io
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fastavro
import pyarrow as pa
import repo_root  # noqa: F401  (puts the repository on sys.path)
from benchlib import gc_paused, print_table
from loader_bench import make_events

from consumers.consumer import Block
from consumers.schemas.wire import frame
from loaders.avro import AvroValues, ReaderSchema
from loaders.convert import Converter, ValueFormat
from loaders.schema import FixedSchemas

TS_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}
FLAT = {
    "type": "record",
    "name": "Access",
    "fields": [
        {"name": "ts", "type": TS_MILLIS},
        {"name": "client_ip", "type": "string"},
        {"name": "method", "type": "string"},
        {"name": "path", "type": "string"},
        {"name": "status", "type": "int"},
        {"name": "bytes", "type": "long"},
        {"name": "referrer", "type": "string"},
        {"name": "user_agent", "type": "string"},
        {"name": "latency_ms", "type": "double"},
    ],
}
NESTED = {
    **FLAT,
    "name": "AccessNested",
    "fields": [
        *FLAT["fields"],
        {
            "name": "geo",
            "type": {
                "type": "record",
                "name": "Geo",
                "fields": [{"name": "country", "type": "string"}, {"name": "asn", "type": "int"}],
            },
        },
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "headers", "type": {"type": "map", "values": "string"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["PAGE", "API"]}},
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
        },
        {"name": "session", "type": ["null", "string"], "default": None},
    ],
}
JSON_SCHEMA = {
    "ts": "string",
    "client_ip": "string",
    "method": "string",
    "path": "string",
    "status": "int64",
    "bytes": "int64",
    "referrer": "string",
    "user_agent": "string",
    "latency_ms": "double",
}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--quick", action="store_true", help="20,000 events")
    p.add_argument("--block", type=int, default=10_000, help="messages per Converter call")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.events = 20_000
    return args


def avro_values(events: list[dict], schema: dict, schema_id: int) -> list[bytes]:
    parsed = fastavro.parse_schema(schema, named_schemas={})
    out = []
    for e in events:
        body = io.BytesIO()
        fastavro.schemaless_writer(body, parsed, e)
        out.append(frame(schema_id, body.getvalue()))
    return out


def nested(e: dict, i: int) -> dict:
    return e | {
        "geo": {"country": ("NO", "DE", "US")[i % 3], "asn": i % 700},
        "tags": ["a", "b"][: i % 3],
        "headers": {"accept": "text/html"} if i % 2 else {},
        "kind": "API" if i % 5 == 0 else "PAGE",
        "price": decimal.Decimal(i % 10_000) / 100,
        "session": None if i % 4 else f"s{i}",
    }


def blocks(values: list[bytes], size: int) -> list[Block]:
    out = []
    for start in range(0, len(values), size):
        part = values[start : start + size]
        n = len(part)
        offsets = list(range(start, start + n))
        out.append(Block("access", 0, offsets, [1_700_000_000_000] * n, [None] * n, part))
    return out


def converter_for(schema: dict) -> Converter:
    text = json.dumps(schema)
    values = AvroValues(ReaderSchema(text), lambda schema_id: text)
    return Converter(ValueFormat("avro"), time_field="ts", avro=lambda t, p: values)


def run_fastavro(bs: list[Block], schema: dict) -> int:
    parsed = fastavro.parse_schema(schema, named_schemas={})
    read, n = fastavro.schemaless_reader, 0
    for b in bs:
        records = [read(io.BytesIO(memoryview(v)[5:]), parsed, None) for v in b.values]
        n += len(records)
    return n


def run_converter(converter: Converter, bs: list[Block], max_ms: int) -> int:
    n = 0
    for b in bs:
        converted = converter.convert("access", 0, b, max_ms)
        assert converted.dead.num_rows == 0, converted.dead.column("_error")[0]
        n += converted.table.num_rows
    return n


def decoded(schema: dict, bs: list[Block]) -> tuple[ReaderSchema, list[list]]:
    """The records of each block as the loader decodes them (plain logical types)."""
    reader = ReaderSchema(json.dumps(schema))
    read = fastavro.schemaless_reader
    return reader, [
        [read(io.BytesIO(memoryview(v)[5:]), reader.parsed, None) for v in b.values] for b in bs
    ]


def run_columns(reader: ReaderSchema, records: list[list]) -> int:
    return sum(pa.table(reader.columns(r)).num_rows for r in records)


def run_from_pylist(reader: ReaderSchema, records: list[list]) -> int:
    schema = reader.schema
    return sum(pa.Table.from_pylist(r, schema=schema).num_rows for r in records)


def timed(fn) -> float:
    with gc_paused():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    end_ms = int(time.time() * 1000)
    lines = make_events(args.events, args.seed, end_ms)
    events = []
    for line in lines:
        e = json.loads(line)
        e["ts"] = datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
        events.append(e)
    flat = blocks(avro_values(events, FLAT, 1), args.block)
    deep = blocks(avro_values([nested(e, i) for i, e in enumerate(events)], NESTED, 2), args.block)
    json_blocks = blocks(lines, args.block)
    max_ms = end_ms + 86_400_000
    json_converter = Converter(ValueFormat("json"), FixedSchemas({"access": JSON_SCHEMA}), "ts")
    flat_converter, deep_converter = converter_for(FLAT), converter_for(NESTED)
    flat_reader, flat_records = decoded(FLAT, flat)
    deep_reader, deep_records = decoded(NESTED, deep)
    cases = {
        "fastavro": lambda: run_fastavro(flat, FLAT),
        "loader avro": lambda: run_converter(flat_converter, flat, max_ms),
        "loader json": lambda: run_converter(json_converter, json_blocks, max_ms),
        "arrow only: pa.array per column": lambda: run_columns(flat_reader, flat_records),
        "arrow only: from_pylist": lambda: run_from_pylist(flat_reader, flat_records),
        "nested: fastavro": lambda: run_fastavro(deep, NESTED),
        "nested: loader avro": lambda: run_converter(deep_converter, deep, max_ms),
        "nested: arrow only: pa.array per column": lambda: run_columns(deep_reader, deep_records),
        "nested: arrow only: from_pylist": lambda: run_from_pylist(deep_reader, deep_records),
    }
    for fn in cases.values():  # warm up, and check each one sees every event
        assert fn() == args.events
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for rep in range(args.reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            times[name].append(timed(cases[name]))
    rates = {
        name: {
            "best": args.events / min(ts),
            "median": args.events / statistics.median(ts),
            "seconds": ts,
        }
        for name, ts in times.items()
    }
    ratios = {
        "loader avro / fastavro": rates["loader avro"]["best"] / rates["fastavro"]["best"],
        "loader avro / loader json": rates["loader avro"]["best"] / rates["loader json"]["best"],
        "pa.array per column / from_pylist": rates["arrow only: pa.array per column"]["best"]
        / rates["arrow only: from_pylist"]["best"],
        "nested: loader avro / fastavro": rates["nested: loader avro"]["best"]
        / rates["nested: fastavro"]["best"],
        "nested: pa.array per column / from_pylist": rates[
            "nested: arrow only: pa.array per column"
        ]["best"]
        / rates["nested: arrow only: from_pylist"]["best"],
    }
    print_table(
        f"{args.events:,} events, blocks of {args.block:,}, best of {args.reps}",
        ["path", "events/s", "events/s(med)"],
        [[n, f"{r['best']:,.0f}", f"{r['median']:,.0f}"] for n, r in rates.items()],
    )
    print_table(
        "ratios (best runs)", ["ratio", "value"], [[k, f"{v:.2f}"] for k, v in ratios.items()]
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"events": args.events, "rates": rates, "ratios": ratios}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
