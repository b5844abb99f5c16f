"""Avro values with a schema id in each message, resolved by a schema registry: the wire
framing, the registry's REST client, and the Avro encoder and decoder over both."""

from .avro import AvroDecodeError, AvroDecoder, AvroEncodeError, AvroEncoder
from .client import (
    RegisteredSchema,
    RegistryClient,
    RegistryError,
    RegistryUnavailableError,
    SchemaNotFoundError,
)
from .wire import MAGIC, SchemaFrameError, frame, unframe

__all__ = [
    "MAGIC",
    "AvroDecodeError",
    "AvroDecoder",
    "AvroEncodeError",
    "AvroEncoder",
    "RegisteredSchema",
    "RegistryClient",
    "RegistryError",
    "RegistryUnavailableError",
    "SchemaFrameError",
    "SchemaNotFoundError",
    "frame",
    "unframe",
]
