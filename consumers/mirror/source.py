"""The source side of a mirror: the shape every consumer group the mirror can be a member of
has (``SourceGroup``), and the factories for the paper's ZooKeeper group and for a group
coordinated by the source brokers (Kafka's protocol)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from broker.protocol.zk_security import ZkCredentials

from ..consumer import Message
from ..security import PLAINTEXT, ClientSecurity


class MirrorError(Exception):
    """A mirror cannot run as asked (bad settings, an option not available); the message says
    why, for the command line."""


class SourceGroup(Protocol):
    """What the copy loop needs of its consumer group member: ``GroupConsumer`` (the paper's
    ZooKeeper group) and ``KafkaGroupConsumer`` (a Kafka-protocol group) both have it.
    ``on_assign(owned)`` and ``on_revoke(owned)`` are passed to the constructor; revoke runs on
    the polling thread before partitions are given up."""

    owned: dict[str, list[int]]

    def start(self) -> object: ...

    def poll(self, timeout: float = 1.0, max_messages: int = 100_000) -> list[Message]: ...

    def seek(self, topic: str, partition: int, offset: int) -> None: ...

    def commit_offsets(self, offsets: dict[tuple[str, int], int]) -> None: ...

    def subscribe(self, topics: list[str]) -> None: ...

    def close(self) -> None: ...


Callback = Callable[[dict[str, list[int]]], None]
SourceFactory = Callable[[list[str], Callback, Callback], SourceGroup]


def zookeeper_source(
    group: str,
    zookeeper: str,
    session_timeout_ms: int,
    fetch_max_wait_ms: int = 200,
    security: ClientSecurity = PLAINTEXT,
    credentials: ZkCredentials | None = None,
) -> SourceFactory:
    """Members of the paper's group ``group`` on the source cluster at ``zookeeper``."""
    from ..group import GroupConsumer

    def make(topics: list[str], on_assign: Callback, on_revoke: Callback) -> SourceGroup:
        return GroupConsumer(
            group,
            topics,
            zookeeper,
            auto_offset_reset="earliest",
            auto_commit=False,
            session_timeout_ms=session_timeout_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,
            on_assign=on_assign,
            on_revoke=on_revoke,
            security=security,
            zookeeper_credentials=credentials,
        )

    return make


def bootstrap_source(
    group: str,
    bootstrap_servers: str,
    session_timeout_ms: int,
    security: ClientSecurity = PLAINTEXT,
) -> SourceFactory:
    """Members of a Kafka-protocol group ``group`` coordinated by the source brokers (ours or
    any Kafka cluster's): ``KafkaGroupConsumer``, heartbeating three times a session."""
    from ..kafka_group import KafkaGroupConsumer

    def make(topics: list[str], on_assign: Callback, on_revoke: Callback) -> SourceGroup:
        member: SourceGroup = KafkaGroupConsumer(
            group,
            topics,
            bootstrap_servers,
            auto_offset_reset="earliest",
            auto_commit=False,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(100, session_timeout_ms // 3),
            on_assign=on_assign,
            on_revoke=on_revoke,
            security=security,
        )
        return member

    return make
