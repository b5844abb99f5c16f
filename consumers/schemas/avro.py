"""Avro values framed with their schema id: ``AvroEncoder`` for one subject and schema,
``AvroDecoder`` for any value whose schema the registry knows.  Built on fastavro.

    >>> encoder = AvroEncoder(client, "clicks-value", schema_text)
    >>> value = encoder.encode({"user": "ann", "ms": 1})
    >>> AvroDecoder(client).decode(value)
    {'user': 'ann', 'ms': 1}
"""

from __future__ import annotations

import io
import json
import threading

import avro.errors
import avro.schema
import fastavro
from fastavro.validation import ValidationError

from .client import RegistryClient, SchemaNotFoundError
from .wire import SchemaFrameError, frame, unframe


class AvroDecodeError(ValueError):
    """A value that cannot be decoded: unframed, an unknown schema id, or a body that does
    not match its schema.  ``schema_id`` is None when the value carries none."""

    def __init__(self, message: str, schema_id: int | None = None):
        super().__init__(message)
        self.schema_id = schema_id


class AvroEncodeError(ValueError):
    """A record that does not fit the encoder's schema."""


def parse(schema_text: str):
    """A fastavro parsed schema from its JSON text; ValueError for one that is not Avro,
    with the reason the ``avro`` package's parser (the registry's) gives, which names what
    is wrong ("Undefined type: nosuch") where fastavro's errors often do not."""
    try:
        avro.schema.parse(schema_text)
    except (avro.errors.AvroException, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not an Avro schema: {_one_line(exc)}") from None
    try:
        return fastavro.parse_schema(json.loads(schema_text))
    except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
        raise ValueError(f"not an Avro schema: {_one_line(exc)}") from None


class AvroEncoder:
    """Encodes records with ``schema_text`` under ``subject``: the schema is registered (or
    found registered) once, at the first ``encode``."""

    def __init__(self, client: RegistryClient, subject: str, schema_text: str):
        self.client = client
        self.subject = subject
        self.schema_text = schema_text
        self.parsed = parse(schema_text)
        self._schema_id: int | None = None
        self._lock = threading.Lock()

    @property
    def schema_id(self) -> int:
        """The schema's id in the registry (registering it on first use)."""
        with self._lock:
            if self._schema_id is None:
                self._schema_id = self.client.register(self.subject, self.schema_text)
            return self._schema_id

    def encode(self, record) -> bytes:
        """``record`` as a framed Avro value; AvroEncodeError if it does not fit."""
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, self.parsed, record, strict_allow_default=True)
        except (ValidationError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise AvroEncodeError(_one_line(exc)) from None
        return frame(self.schema_id, out.getvalue())


class AvroDecoder:
    """Decodes framed values, fetching each schema once by id and keeping it parsed.
    Records come back as fastavro reads them: logical types as Python values (``datetime``
    in UTC for timestamps, ``date``, ``time``, ``Decimal``, ``UUID``), unions unwrapped."""

    def __init__(self, client: RegistryClient):
        self.client = client
        self._parsed: dict[int, object] = {}
        self._lock = threading.Lock()

    def schema(self, schema_id: int):
        """The parsed schema of ``schema_id`` (AvroDecodeError if the registry has none)."""
        with self._lock:
            parsed = self._parsed.get(schema_id)
        if parsed is not None:
            return parsed
        try:
            parsed = parse(self.client.schema_by_id(schema_id))
        except SchemaNotFoundError:
            raise AvroDecodeError(f"schema id {schema_id} is unknown", schema_id) from None
        except ValueError as exc:
            raise AvroDecodeError(f"schema id {schema_id}: {exc}", schema_id) from None
        with self._lock:
            self._parsed[schema_id] = parsed
        return parsed

    def decode(self, value: bytes):
        """The record in a framed Avro value."""
        try:
            schema_id, body = unframe(value)
        except SchemaFrameError as exc:
            raise AvroDecodeError(str(exc)) from None
        parsed = self.schema(schema_id)
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(stream, parsed, parsed)
        except Exception as exc:  # fastavro raises many kinds on a body of another schema
            raise AvroDecodeError(
                f"the body does not decode with schema id {schema_id}: {_one_line(exc)}",
                schema_id,
            ) from None
        if stream.tell() != len(body):
            raise AvroDecodeError(
                f"{len(body) - stream.tell()} bytes left over after decoding with schema id "
                f"{schema_id}",
                schema_id,
            )
        return record


def _one_line(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
