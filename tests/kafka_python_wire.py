"""kafka-python's protocol classes (3.0.12, built from Kafka's own message definitions) as a
second codec to check ours against: the class of any request or response by its Kafka name,
and a check that a frame we encode is read by kafka-python and written back byte for byte."""

from __future__ import annotations

import importlib
import uuid

from broker.protocol import frames
from broker.protocol.registry import Api

_MODULES = ("admin", "consumer", "metadata", "producer", "sasl")


def kafka_python_class(name: str):
    """kafka-python's class of the message ``name`` ("FetchRequest", "MetadataResponse")."""
    for module in _MODULES:
        cls = getattr(importlib.import_module(f"kafka.protocol.{module}"), name, None)
        if cls is not None:
            return cls
    raise LookupError(f"kafka-python has no message {name}")


def encode_frame(api: Api, side: str, version: int, body: dict) -> bytes:
    """Our whole frame (without the size prefix), header included, of ``body``."""
    if side == "request":
        return frames.encode_request(api.key, version, 7, "golden", body)[4:]
    return frames.encode_response(7, api, version, body)[4:]


def read_back_by_kafka_python(api: Api, side: str, version: int, body: dict):
    """Our frame of ``body`` as kafka-python decodes it (header included), after checking that
    kafka-python encodes what it read to the very same bytes."""
    ours = encode_frame(api, side, version, body)
    cls = kafka_python_class(f"{api.name}{side.capitalize()}")
    theirs = cls.decode(ours, version=version, header=True)
    theirs._version = version
    assert theirs.encode(header=True) == ours
    return theirs


def agree(ours, theirs, path: str = "") -> int:
    """Assert that every plain value (int, str, bool, None, UUID) of our body equals the field
    of the same name in kafka-python's ``to_dict()``; returns how many were compared."""
    if isinstance(ours, dict):
        compared = 0
        for key, value in ours.items():
            if key in theirs:
                compared += agree(value, theirs[key], f"{path}.{key}")
        return compared
    if isinstance(ours, list):
        assert isinstance(theirs, list) and len(ours) == len(theirs), path
        return sum(agree(a, b, f"{path}[{i}]") for i, (a, b) in enumerate(zip(ours, theirs)))
    if isinstance(ours, uuid.UUID):
        assert str(theirs) in (str(ours), ours.hex) or uuid.UUID(bytes=theirs.bytes) == ours, path
        return 1
    if isinstance(ours, int) and isinstance(theirs, (list, set)):  # an int32 bit field
        assert set(theirs) == {b for b in range(32) if (ours & 0xFFFFFFFF) >> b & 1}, path
        return 1
    if ours is None or isinstance(ours, (bool, int, str)):
        assert ours == theirs, f"{path}: ours {ours!r}, kafka-python's {theirs!r}"
        return 1
    return 0  # bytes and records: checked by the byte-for-byte re-encoding
