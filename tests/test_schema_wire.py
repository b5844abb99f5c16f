"""The schema-registry wire framing and the Avro encoder and decoder, without a registry:
a registry stand-in holding schemas in a dict plays the client (the REST client itself is
tested against a real registry in ``test_schema_registry_api.py``)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.schemas import (
    MAGIC,
    AvroDecodeError,
    AvroDecoder,
    AvroEncodeError,
    AvroEncoder,
    RegistryClient,
    SchemaFrameError,
    SchemaNotFoundError,
    frame,
    unframe,
)

CLICK = json.dumps(
    {
        "type": "record",
        "name": "Click",
        "fields": [
            {"name": "user", "type": "string"},
            {"name": "ms", "type": "long"},
            {"name": "page", "type": ["null", "string"], "default": None},
        ],
    }
)


class DictRegistry:
    """The two calls the encoder and decoder make, answered from a dict."""

    def __init__(self):
        self.schemas: dict[int, str] = {}
        self.registrations = 0

    def register(self, subject: str, schema: str) -> int:
        self.registrations += 1
        for schema_id, known in self.schemas.items():
            if known == schema:
                return schema_id
        schema_id = len(self.schemas) + 1
        self.schemas[schema_id] = schema
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        if schema_id not in self.schemas:
            raise SchemaNotFoundError(404, 40403, "Schema not found")
        return self.schemas[schema_id]


def test_frame_is_magic_byte_then_big_endian_id_then_body():
    assert frame(258, b"xyz") == b"\x00\x00\x00\x01\x02xyz"
    assert MAGIC == 0


@given(st.integers(0, 2**32 - 1), st.binary(max_size=64))
def test_unframe_returns_what_frame_wrapped(schema_id, body):
    got_id, got_body = unframe(frame(schema_id, body))
    assert (got_id, bytes(got_body)) == (schema_id, body)


@pytest.mark.parametrize("value", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_a_value_too_short_for_an_id_is_a_frame_error(value):
    with pytest.raises(SchemaFrameError, match="too short"):
        unframe(value)


def test_another_magic_byte_is_a_frame_error():
    with pytest.raises(SchemaFrameError, match="magic byte 123"):
        unframe(b'{"a": 1}')
    assert issubclass(SchemaFrameError, ValueError)


def test_an_id_over_four_bytes_is_refused():
    with pytest.raises(ValueError):
        frame(2**32, b"")


def test_encoder_registers_once_and_decoder_reads_back():
    registry = DictRegistry()
    encoder = AvroEncoder(registry, "clicks-value", CLICK)  # type: ignore[arg-type]
    values = [encoder.encode({"user": "ann", "ms": i}) for i in range(3)]
    assert registry.registrations == 1
    assert unframe(values[0])[0] == encoder.schema_id == 1
    decoder = AvroDecoder(registry)  # type: ignore[arg-type]
    assert [decoder.decode(v) for v in values] == [
        {"user": "ann", "ms": i, "page": None} for i in range(3)
    ]


@pytest.mark.parametrize(
    "record",
    [{"user": "ann"}, {"user": "ann", "ms": "soon"}, {"user": "a", "ms": 1, "extra": 1}, 7],
)
def test_a_record_that_does_not_fit_is_an_encode_error(record):
    encoder = AvroEncoder(DictRegistry(), "clicks-value", CLICK)  # type: ignore[arg-type]
    with pytest.raises(AvroEncodeError):
        encoder.encode(record)


def test_an_invalid_schema_is_refused_by_the_encoder():
    with pytest.raises(ValueError, match="not an Avro schema"):
        AvroEncoder(DictRegistry(), "s", '{"type": "nosuch"}')  # type: ignore[arg-type]


def test_decode_errors_are_typed_and_name_the_schema_id():
    registry = DictRegistry()
    decoder = AvroDecoder(registry)  # type: ignore[arg-type]
    with pytest.raises(AvroDecodeError, match="magic byte") as unframed:
        decoder.decode(b"plain text")
    assert unframed.value.schema_id is None
    with pytest.raises(AvroDecodeError, match="schema id 9 is unknown") as unknown:
        decoder.decode(frame(9, b"\x02"))
    assert unknown.value.schema_id == 9
    schema_id = registry.register("s", CLICK)
    with pytest.raises(AvroDecodeError, match=f"schema id {schema_id}"):
        decoder.decode(frame(schema_id, b"\x08an"))  # a string cut short
    with pytest.raises(AvroDecodeError, match="left over"):
        decoder.decode(frame(registry.register("n", '"int"'), b"\x02\x02"))


@pytest.mark.parametrize("url", ["127.0.0.1:8081", "ftp://x", "http://"])
def test_a_registry_url_without_http_is_refused(url):
    with pytest.raises(ValueError, match="http://host:port"):
        RegistryClient(url)
