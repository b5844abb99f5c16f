"""Settings of one partition log, from broker defaults and per-topic overrides.

Topic-level names are Kafka's (``segment.bytes``, ``retention.ms``, ...); each falls back to
the broker property of the same meaning (``log.segment.bytes``, ``log.retention.ms``, ...).
The value parsers and ``ConfigError`` live here, below the broker's configuration, which uses
them too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range."""


def integer(low: int | None = None, high: int = LONG_MAX) -> Callable[[str, str], int]:
    """A parser of whole numbers in ``low..high`` for the property it is given."""

    def parse(name: str, text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ConfigError(f"{name}: {text!r} is not a whole number") from None
        if (low is not None and value < low) or value > high:
            bounds = f"at least {low}" if high == LONG_MAX else f"between {low} and {high}"
            raise ConfigError(f"{name}: {value} is out of range; it must be {bounds}")
        return value

    return parse


def choice(*options: str) -> Callable[[str, str], str]:
    """A parser of one of ``options``, matched without regard to case."""

    def parse(name: str, text: str) -> str:
        for option in options:
            if text.strip().lower() == option.lower():
                return option
        raise ConfigError(f"{name}: {text!r} is not one of {', '.join(options)}")

    return parse


def ratio(name: str, text: str) -> float:
    """A parser of a fraction between 0 and 1 (``min.cleanable.dirty.ratio``)."""
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}: {value} is out of range; it must be between 0 and 1")
    return value


def cleanup_policy(name: str, text: str) -> str:
    """A parser of Kafka's ``cleanup.policy`` list: ``delete``, ``compact`` or both
    (``compact,delete``, in that order whatever order they were given in)."""
    items = {item.strip().lower() for item in text.split(",") if item.strip()}
    if not items or not items <= {"compact", "delete"}:
        raise ConfigError(f"{name}: {text!r} is not delete, compact or compact,delete")
    return ",".join(sorted(items))


def boolean(name: str, text: str) -> bool:
    """A parser of ``true`` or ``false``, matched without regard to case."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ConfigError(f"{name}: {text!r} is not true or false")


# field, topic-level property, broker-level property, parser
_TOPIC_PROPERTIES = (
    ("segment_bytes", "segment.bytes", "log.segment.bytes", integer(14, INT_MAX)),
    ("roll_ms", "segment.ms", "log.roll.ms", integer(1)),
    ("retention_ms", "retention.ms", "log.retention.ms", integer(-1)),
    ("retention_bytes", "retention.bytes", "log.retention.bytes", integer(-1)),
    ("flush_interval_messages", "flush.messages", "log.flush.interval.messages", integer(1)),
    ("flush_interval_ms", "flush.ms", "log.flush.interval.ms", integer(0)),
    ("index_interval_bytes", "index.interval.bytes", "log.index.interval.bytes", integer(0)),
    ("max_message_bytes", "max.message.bytes", "message.max.bytes", integer(0)),
    ("file_delete_delay_ms", "file.delete.delay.ms", "file.delete.delay.ms", integer(0)),
    (
        "timestamp_type",
        "message.timestamp.type",
        "log.message.timestamp.type",
        choice("CreateTime", "LogAppendTime"),
    ),
    # Compaction (the log cleaner, cleaner.py)
    ("cleanup_policy", "cleanup.policy", "log.cleanup.policy", cleanup_policy),
    (
        "delete_retention_ms",
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        integer(0),
    ),
    (
        "min_cleanable_dirty_ratio",
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        ratio,
    ),
    (
        "min_compaction_lag_ms",
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        integer(0),
    ),
    (
        "max_compaction_lag_ms",
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        integer(1),
    ),
    # Replication's topic-level settings: kept with the others so a topic's config is checked
    # in one place; the partition log itself does not use them.
    ("min_insync_replicas", "min.insync.replicas", "min.insync.replicas", integer(1, INT_MAX)),
    (
        "unclean_leader_election_enable",
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        boolean,
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
    cleanup_policy: str = "delete"
    delete_retention_ms: int = 86_400_000
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX
    min_insync_replicas: int = 1
    unclean_leader_election_enable: bool = False
    producer_id_expiration_ms: int = 86_400_000  # broker-wide only (producer.id.expiration.ms)

    @classmethod
    def from_broker(cls, broker: Mapping[str, Any]) -> LogConfig:
        """The broker-wide defaults from ``log.*`` properties (a ``BrokerConfig``)."""
        return cls(
            **{f: broker[broker_name] for f, _, broker_name, _ in _TOPIC_PROPERTIES},
            producer_id_expiration_ms=broker["producer.id.expiration.ms"],
        )

    @property
    def compact(self) -> bool:
        """The log cleaner keeps the latest record per key (``cleanup.policy`` has compact)."""
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        """Retention deletes old segments (``cleanup.policy`` has delete)."""
        return "delete" in self.cleanup_policy

    def with_overrides(self, overrides: Mapping[str, Any]) -> LogConfig:
        """A copy with topic-level overrides (``retention.ms`` etc.) applied.

        Unknown names raise ConfigError, so a typo in a topic's config is not silently ignored.
        """
        changes: dict[str, Any] = {}
        by_topic_name = {topic_name: (f, parse) for f, topic_name, _, parse in _TOPIC_PROPERTIES}
        for name, value in overrides.items():
            if name not in by_topic_name:
                raise ConfigError(f"{name} is not a topic configuration headrace knows")
            field_name, parse = by_topic_name[name]
            changes[field_name] = parse(name, str(value))
        return dataclasses.replace(self, **changes)
