"""Avro on the command line: ``headrace produce --value-schema FILE --schema-registry URL``
encodes each JSON line with the schema (registered under ``<topic>-value``, or
``--value-subject``), and ``headrace consume --schema-registry URL`` prints each value decoded
to one JSON line.

Lines are plain JSON objects: a union's value as it is (no ``{"string": ...}`` wrapper), a
timestamp, date or time as its Avro number.  Printing is the JSON a person reads, not Avro's
JSON encoding: unions as their value; timestamps, dates and times as ISO-8601 strings (UTC,
to the millisecond, or the microsecond when there are any); decimals and UUIDs as strings;
bytes and fixed as Avro's JSON encoding of bytes (one character per byte, U+0000-U+00FF)."""

from __future__ import annotations

import datetime
import decimal
import json
import sys
import time
import uuid
from pathlib import Path

from consumers.schemas import (
    AvroDecodeError,
    AvroDecoder,
    AvroEncodeError,
    AvroEncoder,
    RegistryClient,
    RegistryError,
    SchemaNotFoundError,
)


class AvroInputError(ValueError):
    """A line that is not JSON or does not fit the schema; names the line."""


def add_produce_arguments(p) -> None:
    p.add_argument(
        "--value-schema",
        metavar="FILE",
        help="encode each JSON line as Avro with this schema (needs --schema-registry)",
    )
    p.add_argument("--schema-registry", metavar="URL", help="the schema registry, http://host:port")
    p.add_argument(
        "--value-subject",
        help="register the value schema under this subject (default <topic>-value)",
    )


def add_consume_arguments(p) -> None:
    p.add_argument(
        "--schema-registry",
        metavar="URL",
        help="decode Avro values by their schema id in this registry and print them as JSON",
    )


class LineEncoder:
    """JSON lines to framed Avro values with one schema; its id taken once, at creation."""

    def __init__(
        self, registry: str, schema_file: str, subject: str, properties: dict | None = None
    ):
        try:
            text = Path(schema_file).read_text()
        except OSError as exc:
            raise ValueError(f"--value-schema {schema_file}: {exc.strerror}") from None
        try:
            client = RegistryClient.from_properties(registry, properties or {})
            self.encoder = AvroEncoder(client, subject, text)
        except ValueError as exc:
            raise ValueError(f"--value-schema {schema_file}: {exc}") from None
        self.schema_id = self.encoder.schema_id  # RegistryError if refused or unreachable

    def encode(self, line: bytes, number: int) -> bytes:
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise AvroInputError(f"line {number} is not JSON: {exc}") from None
        try:
            return self.encoder.encode(record)
        except AvroEncodeError as exc:
            raise AvroInputError(f"line {number} does not fit the value schema: {exc}") from None


def encoder_from(args) -> LineEncoder | None:
    """The encoder ``produce`` options ask for, or None for plain lines.  ValueError for
    options that do not go together, RegistryError when the registry refuses the schema or
    cannot be reached."""
    if args.value_schema is None:
        if args.value_subject:
            raise ValueError("--value-subject needs --value-schema")
        return None
    if not args.schema_registry:
        raise ValueError("--value-schema needs --schema-registry URL")
    return LineEncoder(
        args.schema_registry,
        args.value_schema,
        args.value_subject or f"{args.topic}-value",
        getattr(args, "client_properties", None),
    )


def _plain(value):
    if isinstance(value, datetime.datetime | datetime.time):
        return value.isoformat(
            timespec="microseconds" if value.microsecond % 1000 else "milliseconds"
        )
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    raise TypeError(f"{type(value).__name__} cannot be printed as JSON")


class RegistryDownError(Exception):
    """The registry did not answer (or answered with an error of its own) for a value: the
    consumer stops before it, since skipping would commit past values that can be read."""


class ValuePrinter:
    """Framed Avro values to JSON lines.  A value that cannot be decoded, or whose schema id
    the registry does not know (404), is reported on stderr and skipped; a registry that
    cannot be reached or fails (asked ``attempts`` times) raises ``RegistryDownError``."""

    def __init__(
        self,
        registry: str,
        attempts: int = 3,
        pause: float = 0.2,
        properties: dict | None = None,
    ):
        self.decoder = AvroDecoder(RegistryClient.from_properties(registry, properties or {}))
        self.skipped = 0
        self.attempts = attempts
        self.pause = pause

    def _decode(self, value: bytes, where: str):
        for attempt in range(self.attempts):
            try:
                return self.decoder.decode(value)
            except SchemaNotFoundError:
                raise
            except RegistryError as exc:
                if attempt == self.attempts - 1:
                    raise RegistryDownError(f"{where}: {exc}") from None
                time.sleep(self.pause * 2**attempt)
        raise AssertionError("unreachable")

    def render(self, value: bytes | None, where: str) -> bytes | None:
        try:
            record = self._decode(value or b"", where)
        except (AvroDecodeError, SchemaNotFoundError) as exc:
            self.skipped += 1
            print(f"headrace consume: {where}: {exc}; skipped", file=sys.stderr, flush=True)
            return None
        return json.dumps(record, default=_plain, ensure_ascii=False).encode()
