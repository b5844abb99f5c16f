"""The storage engine: partition logs of segment files, their indexes, recovery, retention.

Public API: ``LogManager`` (every partition under ``log.dirs``), ``PartitionLog`` (one
partition: append, read, roll, flush, retention), ``LogLoader`` (opening a partition's
directory: clean-up, recovery, producer state), ``LogConfig`` (Kafka's log settings, and
``ConfigError`` for a bad one), ``FileSlice`` (a byte range of a segment, what a fetch sends)
and ``LogCleaner`` (compaction of ``cleanup.policy=compact`` logs, with ``CleanerConfig``).
"""

from .cleaner import CleanerConfig, LogCleaner
from .clock import SystemClock
from .config import ConfigError, LogConfig
from .loader import LoadedLog, LogLoader
from .manager import LogDirInUseError, LogManager
from .names import validate_topic_name
from .partition import AppendResult, PartitionLog
from .segment import FileSlice, Segment

__all__ = [
    "AppendResult",
    "CleanerConfig",
    "ConfigError",
    "FileSlice",
    "LoadedLog",
    "LogCleaner",
    "LogConfig",
    "LogDirInUseError",
    "LogLoader",
    "LogManager",
    "PartitionLog",
    "Segment",
    "SystemClock",
    "validate_topic_name",
]
