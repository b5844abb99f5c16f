"""The consumer protocol: what Kafka consumers put in a group's JoinGroup metadata (their
subscription) and SyncGroup assignments, as one table per message, pure bytes in and out.

    >>> data = encode_subscription(["clicks"], owned={"clicks": [0, 1]}, generation_id=4)
    >>> decode_subscription(data).topics
    ['clicks']
    >>> decode_assignment(encode_assignment({"clicks": [2, 0]})).partitions
    {'clicks': [0, 2]}

Field names and versions follow Apache Kafka's ``ConsumerProtocolSubscription`` and
``ConsumerProtocolAssignment`` (versions 0-3; never flexible): each message is an int16
version, then the struct of that version.  Every version only appends fields to the one
before, so a message of a newer version than ours is read as our newest; bytes after the
fields of its version are ignored, as Kafka's own clients do.  A message cut short raises
ProtocolError.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .schema import (
    INT32,
    NULLABLE_BYTES,
    NULLABLE_STRING,
    STRING,
    Array,
    Field,
    ProtocolError,
    Struct,
    struct_array,
)

PROTOCOL_TYPE = "consumer"  # JoinGroup's protocol_type for consumer groups
SUBSCRIPTION_VERSION = 3  # the versions we write
ASSIGNMENT_VERSION = 0  # every version has the same fields; 0 is read by every client
HIGHEST_VERSION = 3

_TOPIC_PARTITIONS = (Field("topic", STRING), Field("partitions", Array(INT32)))

SUBSCRIPTION = Struct(
    Field("topics", Array(STRING)),
    Field("user_data", NULLABLE_BYTES),
    struct_array("owned_partitions", *_TOPIC_PARTITIONS, versions="1+"),
    Field("generation_id", INT32, "2+", default=-1),
    Field("rack_id", NULLABLE_STRING, "3+"),
)
ASSIGNMENT = Struct(
    struct_array("assigned_partitions", *_TOPIC_PARTITIONS),
    Field("user_data", NULLABLE_BYTES),
)

_VERSION = struct.Struct(">h")


class Subscription(NamedTuple):
    """A member's subscription: its topics, the partitions it owned (v1+, by topic), the
    generation it owned them in (v2+, -1 unknown), its rack (v3+), and opaque user data."""

    version: int
    topics: list[str]
    owned: dict[str, list[int]]
    generation_id: int = -1
    rack_id: str | None = None
    user_data: bytes | None = None


class Assignment(NamedTuple):
    """A member's partitions by topic (each list sorted), and opaque user data."""

    version: int
    partitions: dict[str, list[int]]
    user_data: bytes | None = None


def _by_topic(entries: list[dict]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for entry in entries:
        out.setdefault(entry["topic"], []).extend(entry["partitions"])
    return {topic: sorted(set(ps)) for topic, ps in out.items()}


def _entries(partitions: dict[str, list[int]]) -> list[dict]:
    return [{"topic": t, "partitions": sorted(ps)} for t, ps in sorted(partitions.items()) if ps]


def _split(data: bytes, what: str) -> tuple[int, int]:
    """The version of a message and the version its struct is read at."""
    if len(data) < 2:
        raise ProtocolError(f"{what} of {len(data)} bytes has no version")
    (version,) = _VERSION.unpack_from(data)
    if version < 0:
        raise ProtocolError(f"{what} version {version} is negative")
    return version, min(version, HIGHEST_VERSION)


def encode_subscription(
    topics: list[str],
    owned: dict[str, list[int]] | None = None,
    generation_id: int = -1,
    rack_id: str | None = None,
    user_data: bytes | None = None,
    version: int = SUBSCRIPTION_VERSION,
) -> bytes:
    """A JoinGroup metadata: the subscription to ``topics`` (sorted)."""
    body = {
        "topics": sorted(set(topics)),
        "user_data": user_data,
        "owned_partitions": _entries(owned or {}),
        "generation_id": generation_id,
        "rack_id": rack_id,
    }
    return _VERSION.pack(version) + SUBSCRIPTION.encode(body, version)


def decode_subscription(data: bytes) -> Subscription:
    """A member's JoinGroup metadata, of any version."""
    version, read_at = _split(data, "subscription")
    body = SUBSCRIPTION.decode(data, read_at, pos=2, trailing_ok=True)
    return Subscription(
        version,
        list(body["topics"]),
        _by_topic(body["owned_partitions"] or []),
        body["generation_id"],
        body["rack_id"],
        body["user_data"],
    )


def encode_assignment(
    partitions: dict[str, list[int]],
    user_data: bytes | None = None,
    version: int = ASSIGNMENT_VERSION,
) -> bytes:
    """A SyncGroup assignment of ``partitions`` (by topic)."""
    body = {"assigned_partitions": _entries(partitions), "user_data": user_data}
    return _VERSION.pack(version) + ASSIGNMENT.encode(body, version)


def decode_assignment(data: bytes) -> Assignment:
    """A member's SyncGroup assignment, of any version; empty bytes (a member the leader
    gave nothing, as some clients send it) is an empty assignment."""
    if not data:
        return Assignment(0, {}, None)
    version, read_at = _split(data, "assignment")
    body = ASSIGNMENT.decode(data, read_at, pos=2, trailing_ok=True)
    return Assignment(version, _by_topic(body["assigned_partitions"]), body["user_data"])


__all__ = [
    "ASSIGNMENT",
    "PROTOCOL_TYPE",
    "SUBSCRIPTION",
    "Assignment",
    "Subscription",
    "decode_assignment",
    "decode_subscription",
    "encode_assignment",
    "encode_subscription",
]
