"""Where a mirror resumes a source partition: each record it writes carries a header naming
its source (cluster id, topic, partition, offset); the last such record in the target
partition of the same number tells what the target already holds.

    >>> source_header("Zq3", "clicks", 2, 4711)
    ('headrace.mirror.source', b'Zq3:clicks:2:4711')
    >>> last_mirrored(target, "clicks", 2, source=("Zq3", "clicks", 2))  # 4711, or None

The scan reads backwards from the target's end (its high watermark, so only records every
in-sync replica has) in windows that double, down to the log start.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from broker.protocol.records import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP

from ..cluster import ClusterClient
from ..consumer import Consumer, Message

log = logging.getLogger(__name__)

HEADER = "headrace.mirror.source"
FIRST_WINDOW = 256  # offsets read in the first (newest) window; each next one is twice as big


class Source(NamedTuple):
    """A source partition: which cluster, topic and partition a record was copied from."""

    cluster: str
    topic: str
    partition: int


def source_header(cluster: str, topic: str, partition: int, offset: int) -> tuple[str, bytes]:
    """The header a mirrored record carries: ``cluster:topic:partition:offset`` (a topic name
    has no colon; the cluster id may, so it is read from the right)."""
    return HEADER, f"{cluster}:{topic}:{partition}:{offset}".encode()


def parse_source(value: bytes | None) -> tuple[Source, int] | None:
    """The source and offset of a header's value; None if it is not one of ours."""
    if not value:
        return None
    try:
        cluster, topic, partition, offset = value.decode().rsplit(":", 3)
        return Source(cluster, topic, int(partition)), int(offset)
    except (UnicodeDecodeError, ValueError):
        return None


def mirrored_offset(message: Message, source: Source) -> int | None:
    """The source offset a target record was copied from, if it came from ``source``."""
    for key, value in message.headers:
        if key == HEADER:
            parsed = parse_source(value)
            if parsed is not None and parsed[0] == source:
                return parsed[1]
    return None


def last_in(messages: list[Message], source: Source) -> int | None:
    """The source offset of the last record of ``messages`` that came from ``source``."""
    for message in reversed(messages):
        offset = mirrored_offset(message, source)
        if offset is not None:
            return offset
    return None


def _read(consumer: Consumer, topic: str, partition: int, start: int, end: int) -> list[Message]:
    """The records of ``[start, end)``."""
    consumer.assign([(topic, partition, start)])
    out: list[Message] = []
    idle = 0
    while consumer.position(topic, partition) < end and idle < 20:
        got = consumer.poll(0.5)
        idle = 0 if got else idle + 1
        out += [m for m in got if m.offset < end]
    return out


def last_mirrored(target: ClusterClient, topic: str, partition: int, source: Source) -> int | None:
    """The source offset of the last record in target ``topic``-``partition`` copied from
    ``source``; None if the target holds none (then the group's committed offset decides)."""
    end = target.list_offset(topic, partition, LATEST_TIMESTAMP)
    start = target.list_offset(topic, partition, EARLIEST_TIMESTAMP)
    window = FIRST_WINDOW
    with Consumer(cluster=target, auto_offset_reset="earliest", fetch_max_wait_ms=10) as reader:
        while end > start:
            lo = max(start, end - window)
            found = last_in(_read(reader, topic, partition, lo, end), source)
            if found is not None:
                return found
            end, window = lo, window * 2
    return None
