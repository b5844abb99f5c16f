"""The framing of a schema-registry value on the wire: a magic byte 0, the schema id as a
4-byte big-endian integer, then the encoded body (Confluent's wire format, which every
Avro-aware Kafka client reads and writes)."""

from __future__ import annotations

import struct

MAGIC = 0
_HEADER = struct.Struct(">bI")
HEADER_SIZE = _HEADER.size


class SchemaFrameError(ValueError):
    """A value that is not a framed schema-registry value: too short, or another magic byte."""


def frame(schema_id: int, body: bytes) -> bytes:
    """``body`` framed with the magic byte and ``schema_id``."""
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise ValueError(f"schema id {schema_id} does not fit in 4 bytes")
    return _HEADER.pack(MAGIC, schema_id) + body


def unframe(value: bytes) -> tuple[int, memoryview]:
    """The schema id and the body of a framed value (the body a view, not a copy)."""
    if value is None or len(value) < HEADER_SIZE:
        size = 0 if value is None else len(value)
        raise SchemaFrameError(
            f"a {size}-byte value is too short for a schema id (magic byte and 4-byte id)"
        )
    view = memoryview(value)
    magic, schema_id = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise SchemaFrameError(f"magic byte {view[0]} is not {MAGIC}: not a schema-registry value")
    return schema_id, view[HEADER_SIZE:]
