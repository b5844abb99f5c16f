"""Settings of one partition log, from broker defaults and per-topic overrides.

Topic-level names are Kafka's (``segment.bytes``, ``retention.ms``, ...); each falls back to
the broker property of the same meaning (``log.segment.bytes``, ``log.retention.ms``, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import LONG_MAX, BrokerConfig, ConfigError, _choice, _int
from ..protocol.records import CREATE_TIME, LOG_APPEND_TIME

# field, topic-level property, broker-level property, parser
_TOPIC_PROPERTIES = (
    ("segment_bytes", "segment.bytes", "log.segment.bytes", _int(14, 2**31 - 1)),
    ("roll_ms", "segment.ms", "log.roll.ms", _int(1)),
    ("retention_ms", "retention.ms", "log.retention.ms", _int(-1)),
    ("retention_bytes", "retention.bytes", "log.retention.bytes", _int(-1)),
    ("flush_interval_messages", "flush.messages", "log.flush.interval.messages", _int(1)),
    ("flush_interval_ms", "flush.ms", "log.flush.interval.ms", _int(0)),
    ("index_interval_bytes", "index.interval.bytes", "log.index.interval.bytes", _int(0)),
    ("max_message_bytes", "max.message.bytes", "message.max.bytes", _int(0)),
    ("file_delete_delay_ms", "file.delete.delay.ms", "file.delete.delay.ms", _int(0)),
    (
        "timestamp_type",
        "message.timestamp.type",
        "log.message.timestamp.type",
        _choice("CreateTime", "LogAppendTime"),
    ),
)

TOPIC_PROPERTY_NAMES = frozenset(topic_name for _, topic_name, _, _ in _TOPIC_PROPERTIES)


@dataclass(frozen=True)
class LogConfig:
    """What one partition log needs to know; defaults are Kafka's."""

    segment_bytes: int = 1024 * 1024 * 1024
    roll_ms: int = 168 * 3600_000
    retention_ms: int = 168 * 3600_000
    retention_bytes: int = -1
    flush_interval_messages: int = LONG_MAX
    flush_interval_ms: int = LONG_MAX
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1048588
    file_delete_delay_ms: int = 60_000
    timestamp_type: str = "CreateTime"
    producer_id_expiration_ms: int = 86_400_000  # broker-wide only (producer.id.expiration.ms)

    @property
    def timestamp_type_id(self) -> int:
        return LOG_APPEND_TIME if self.timestamp_type == "LogAppendTime" else CREATE_TIME

    @classmethod
    def from_broker(cls, broker: BrokerConfig) -> LogConfig:
        """The broker-wide defaults from ``log.*`` properties."""
        return cls(
            **{f: broker[broker_name] for f, _, broker_name, _ in _TOPIC_PROPERTIES},
            producer_id_expiration_ms=broker["producer.id.expiration.ms"],
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> LogConfig:
        """A copy with topic-level overrides (``retention.ms`` etc.) applied.

        Unknown names raise ConfigError, so a typo in a topic's config is not silently ignored.
        """
        changes = {}
        by_topic_name = {topic_name: (f, parse) for f, topic_name, _, parse in _TOPIC_PROPERTIES}
        for name, value in overrides.items():
            if name not in by_topic_name:
                raise ConfigError(f"{name} is not a topic configuration headrace knows")
            field_name, parse = by_topic_name[name]
            changes[field_name] = parse(name, str(value))
        return dataclasses.replace(self, **changes)
