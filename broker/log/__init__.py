"""The storage engine: partition logs of segment files, their indexes, recovery, retention.

Public API: ``LogManager`` (every partition under ``log.dirs``), ``PartitionLog`` (one
partition: append, read, roll, flush, retention), ``LogConfig`` (Kafka's log settings) and
``FileSlice`` (a byte range of a segment, what a fetch sends).
"""

from .config import LogConfig
from .manager import LogDirInUseError, LogManager
from .partition import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    AppendResult,
    PartitionLog,
    SystemClock,
    validate_topic_name,
)
from .segment import FileSlice, Segment

__all__ = [
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "AppendResult",
    "FileSlice",
    "LogConfig",
    "LogDirInUseError",
    "LogManager",
    "PartitionLog",
    "Segment",
    "SystemClock",
    "validate_topic_name",
]
