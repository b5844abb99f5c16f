"""The Kafka wire protocol, as pure functions and classes over bytes (no sockets, no clock).

Public API: record batches (``records``), compression codecs (``compression``) and the
table of error codes as typed exceptions (``errors``).
"""

from . import compression, errors, records
from .errors import KafkaError, error_for_code
from .records import BatchHeader, Record, RecordBatch, build_batch, check_batch, decode_batch

__all__ = [
    "BatchHeader",
    "KafkaError",
    "Record",
    "RecordBatch",
    "build_batch",
    "check_batch",
    "compression",
    "decode_batch",
    "error_for_code",
    "errors",
    "records",
]
