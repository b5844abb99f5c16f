"""The paper's audit records: the JSON a producer publishes to the ``_audit`` topic, the
UTC-aligned windows it counts in, and the durations and times the audit's options take.

    >>> window_start(1_765_000_123_456, 60_000)
    1765000080000
    >>> record = AuditRecord("access", 1765000080000, 60_000, "ship-4711-1f2e", "web-1", 812,
    ...                      1765000130000, producer_id=7)
    >>> decode_record(encode_record(record)) == record
    True

An audit record says: producer ``producer`` (on ``host``) had ``count`` more messages of
``topic`` with a timestamp in ``[window_start, window_start + window_ms)`` acknowledged by the
brokers.  Counts are deltas: each record counts what was acknowledged since that producer's
previous record for the same window, so the audit sums them.  ``producer_id`` is the Kafka
producer id the messages were stored under (-1 without idempotence): it lets the audit tell
audited batches from unaudited ones.  ``final`` marks the records a producer publishes when it
closes: after them, that producer id sends nothing more.  Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import NamedTuple

AUDIT_TOPIC = "_audit"
DEFAULT_WINDOW_MS = 60_000
NO_PRODUCER_ID = -1

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


class AuditRecordError(ValueError):
    """A message of ``_audit`` that is not an audit record (names what is wrong)."""


class AuditRecord(NamedTuple):
    topic: str
    window_start: int  # epoch ms, a multiple of window_ms
    window_ms: int
    producer: str  # this producer instance's name, unique per run
    host: str
    count: int  # a delta: messages acknowledged since this producer's last record
    sent_at: int  # epoch ms
    producer_id: int = NO_PRODUCER_ID  # the Kafka producer id of the counted batches
    final: bool = False  # published by close(): nothing more comes from this producer id


def window_start(timestamp_ms: int, window_ms: int) -> int:
    """The start of the UTC-aligned window of ``window_ms`` holding ``timestamp_ms`` (windows
    start at multiples of their length since the epoch, also before it)."""
    return timestamp_ms - timestamp_ms % window_ms


def parse_duration(text: str | int, name: str = "duration") -> int:
    """Milliseconds of ``500ms``, ``30s``, ``1m``, ``5m``, ``1h``, ``1d`` (or ``0``);
    ValueError naming ``name`` otherwise."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    if isinstance(text, str) and text.strip() == "0":
        return 0
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{name} {text!r} is not a duration such as 30s, 1m, 5m, 1h or 500ms")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_time(text: str, now_ms: int) -> int:
    """Epoch ms of an ISO-8601 time (UTC unless it names a zone), of epoch milliseconds, or of
    a duration before ``now_ms`` (``2h``: two hours ago); ValueError otherwise."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        return now_ms - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"time {text!r} is not ISO-8601 (2026-12-07T14:00:00Z), epoch milliseconds "
            "or a duration ago (2h)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso(ms: int) -> str:
    """``2026-12-07T14:03:00Z`` for epoch ms (milliseconds shown only when not zero)."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"


def encode_record(record: AuditRecord) -> bytes:
    """The record as the JSON object published to ``_audit``."""
    return json.dumps(record._asdict(), separators=(",", ":")).encode()


def decode_record(value: bytes | None) -> AuditRecord:
    """The AuditRecord in a message value; AuditRecordError naming what is wrong."""
    try:
        data = json.loads(value) if value is not None else None
    except ValueError as exc:
        raise AuditRecordError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AuditRecordError("not a JSON object")
    fields = {}
    for name, kind in (
        ("topic", str),
        ("window_start", int),
        ("window_ms", int),
        ("producer", str),
        ("host", str),
        ("count", int),
        ("sent_at", int),
    ):
        value = data.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise AuditRecordError(f"field {name!r} is missing or not a {kind.__name__}")
        fields[name] = value
    producer_id = data.get("producer_id", NO_PRODUCER_ID)
    if not isinstance(producer_id, int) or isinstance(producer_id, bool):
        raise AuditRecordError("field 'producer_id' is not an int")
    if fields["window_ms"] <= 0 or fields["window_start"] % fields["window_ms"]:
        raise AuditRecordError("window_start is not aligned to a positive window_ms")
    if fields["count"] < 0:
        raise AuditRecordError("count is negative")
    return AuditRecord(**fields, producer_id=producer_id, final=data.get("final") is True)
