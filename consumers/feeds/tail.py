"""A live tail of one topic: every partition read from a chosen start, messages kept when
their key or value holds a substring, each message as JSON-ready fields.

    >>> start = parse_start("2026-12-07T14:00:00Z")        # or latest, earliest, 42,
    >>> tail = TailReader(cluster, "access", start, b"500")  # positions:0=17,1=40
    >>> for message in tail.read(1.0): show(message_fields(message))

``parse_start`` and ``message_fields`` are pure; ``TailReader`` does blocking I/O (run it in
a thread).  An offset applies to every partition, clamped into each one's range; a time uses
offsets for times (a partition with nothing that recent starts at its end).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..consumer import EARLIEST, LATEST, Consumer, Message
from ..eventtime import text_ms


class BadStart(ValueError):
    """A ``from`` that is not latest, earliest, an offset, an ISO time or positions."""


@dataclass(frozen=True)
class Start:
    """Where a tail starts: ``kind`` latest, earliest, offset, time or positions."""

    kind: str
    offset: int | None = None  # offset, or the time in ms
    positions: dict[int, int] = field(default_factory=dict)


def parse_start(text: str | None) -> Start:
    """The start a ``from`` parameter names; BadStart saying why not."""
    text = (text or "latest").strip()
    if not text.isascii():
        raise BadStart(f"from={text}: not ASCII")
    if text in ("latest", "earliest"):
        return Start(text)
    if text.isdigit():
        return Start("offset", int(text))
    if text.startswith("positions:"):
        positions = {}
        for pair in filter(None, text[len("positions:") :].split(",")):
            p, _, o = pair.partition("=")
            if not (p.strip().isdigit() and o.strip().isdigit()):
                raise BadStart(f"from={text}: positions are <partition>=<offset>,...")
            positions[int(p)] = int(o)
        return Start("positions", positions=positions)
    if "T" in text and text[:1].isdigit():  # ISO-8601, not a number text_ms also reads
        when = text_ms(text)
        if when is not None:
            return Start("time", when)
    raise BadStart(
        f"from={text}: give latest, earliest, an offset, an ISO time "
        "(2026-12-07T14:00:00Z) or positions:<p>=<o>,..."
    )


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "backslashreplace")


def message_fields(message: Message) -> dict:
    """A message as the tail sends it: key and value as text (bytes that are not UTF-8
    escaped), ``json`` the parsed value when it is a JSON object or array, else None."""
    parsed = None
    if message.value is not None and message.value[:1] in (b"{", b"["):
        try:
            parsed = json.loads(message.value)
        except ValueError:
            parsed = None
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": message.timestamp,
        "key": _text(message.key),
        "value": _text(message.value),
        "json": parsed if isinstance(parsed, dict | list) else None,
        "headers": [[k, _text(v)] for k, v in message.headers],
    }


def matches(message: Message, needle: bytes | None) -> bool:
    """Whether the key or the value holds ``needle`` (None: every message)."""
    if not needle:
        return True
    return (message.key is not None and needle in message.key) or (
        message.value is not None and needle in message.value
    )


class TailReader:
    """Reads every partition of ``topic`` from ``start`` on, keeping the messages that
    ``matches`` the filter; ``skipped`` counts the others, ``positions()`` is where each
    partition goes on."""

    def __init__(self, cluster, topic: str, start: Start, needle: bytes | None = None):
        self.topic = topic
        self.needle = needle
        self.skipped = 0
        self.consumer = Consumer(cluster=cluster, fetch_max_wait_ms=250)
        partitions = cluster.partitions(topic)
        self.consumer.assign((topic, p, self._first_offset(cluster, p, start)) for p in partitions)

    def _first_offset(self, cluster, partition: int, start: Start) -> int:
        if start.kind == "earliest":
            return cluster.list_offset(self.topic, partition, EARLIEST)
        if start.kind == "latest":
            return cluster.list_offset(self.topic, partition, LATEST)
        if start.kind == "time":
            found = cluster.list_offset(self.topic, partition, start.offset)
            return found if found >= 0 else cluster.list_offset(self.topic, partition, LATEST)
        wanted = start.offset if start.kind == "offset" else start.positions.get(partition)
        if wanted is None:
            return cluster.list_offset(self.topic, partition, LATEST)
        low = cluster.list_offset(self.topic, partition, EARLIEST)
        high = cluster.list_offset(self.topic, partition, LATEST)
        return min(max(wanted, low), high)

    @property
    def partitions(self) -> int:
        return len(self.consumer.positions)

    def positions(self) -> dict[int, int]:
        return {p: o for (_, p), o in sorted(self.consumer.positions.items())}

    def skip_to_end(self) -> int:
        """Move every partition to its end offset now, unread; the offsets skipped (what a
        reader over its rate drops without decoding it)."""
        skipped = 0
        for (topic, partition), position in list(self.consumer.positions.items()):
            end = self.consumer.cluster.list_offset(topic, partition, LATEST)
            if end > position:
                skipped += end - position
                self.consumer.seek(topic, partition, end)
        return skipped

    def read(self, timeout: float) -> list[Message]:
        kept = []
        for message in self.consumer.poll(timeout):
            if matches(message, self.needle):
                kept.append(message)
            else:
                self.skipped += 1
        return kept

    def close(self) -> None:
        self.consumer.close()
