"""Names on disk: topic names, partition directories ``<topic>-<partition>`` and the files in
them, each named by an offset in 20 digits and a suffix (``00000000000000000042.log``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..protocol.errors import InvalidTopicError

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
SNAPSHOT_SUFFIX = ".snapshot"
DELETED_SUFFIX = ".deleted"  # a segment's files, renamed until file.delete.delay.ms passed
TEMPORARY_SUFFIX = ".tmp"  # a file being written, renamed over its target once complete

_TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def validate_topic_name(topic: str) -> None:
    """Kafka's rule: 1-249 characters of ``[a-zA-Z0-9._-]``, and not ``.`` or ``..``."""
    if not _TOPIC_RE.match(topic) or topic in (".", ".."):
        raise InvalidTopicError(
            f"topic name {topic!r} is invalid: use 1-249 of the characters a-z A-Z 0-9 . _ -"
        )


def partition_dir_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def parse_partition_dir_name(name: str) -> tuple[str, int] | None:
    """``clicks-3`` -> ("clicks", 3); None for names that are not partition directories."""
    topic, sep, number = name.rpartition("-")
    if not sep or not topic or not number.isdigit():
        return None
    return topic, int(number)


def offset_file_name(offset: int, suffix: str) -> str:
    """The name of the file for ``offset``: 20 zero-padded digits and ``suffix``."""
    return f"{offset:020d}{suffix}"


def offsets_named(directory: Path, suffix: str) -> list[int]:
    """The offsets that name files ending in ``suffix`` in ``directory``, ascending."""
    stems = (name[: -len(suffix)] for name in os.listdir(directory) if name.endswith(suffix))
    return sorted(int(stem) for stem in stems if stem.isdigit())
