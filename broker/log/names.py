"""Names on disk: topic names Kafka accepts and partition directories ``<topic>-<partition>``.

Pure string logic, shared by the log loader, the log manager and the topic handlers.
"""

from __future__ import annotations

import re

from ..protocol.errors import InvalidTopicError

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
