"""The producer: batches per partition, sends them with requests in flight, idempotent by
default (ARCHITECTURE.md, Clients).  ``Producer`` is the entry point."""

from .accumulator import BufferFullError
from .batch import DeliveryFuture, RecordMetadata
from .config import ProducerConfig
from .producer import Producer, ProducerClosedError

__all__ = [
    "BufferFullError",
    "DeliveryFuture",
    "Producer",
    "ProducerClosedError",
    "ProducerConfig",
    "RecordMetadata",
]
