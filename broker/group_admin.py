"""DeleteGroups and OffsetDelete at a group's coordinator, for every kind of group: Kafka
clients' groups (the coordinator's), the paper's ZooKeeper groups and the loaders' (their
nodes under ``/consumers/<group>``).

    >>> admin = GroupAdmin(group_handlers)
    >>> admin.delete_groups({"groups_names": ["g"]}, 1)        # a Deferred of the answer

As Kafka's ``GroupCoordinator.handleDeleteGroups``/``handleDeleteOffsets``: a group with
live members (Kafka members at the coordinator, or registrations under ``ids``) answers
NON_EMPTY_GROUP; an unknown one GROUP_ID_NOT_FOUND; otherwise its offsets and nodes go (kind
included, so the name may be used by another kind).  OffsetDelete removes the offsets of the
listed partitions, except of a topic the group's live members subscribe to
(GROUP_SUBSCRIBED_TO_TOPIC).  A loader's group is refused both (GROUP_AUTHORIZATION_FAILED):
its offsets are the warehouse's exactly-once record, and the protocol cannot carry the
``--force`` that ``headrace groups`` asks for before moving them.  ZooKeeper is read and
written in the reactor's thread pool.
"""

from __future__ import annotations

import logging

from kazoo.exceptions import NoNodeError, NotEmptyError
from twisted.internet import defer

from .protocol import zookeeper as layout
from .protocol.errors import (
    NONE,
    CoordinatorNotAvailableError,
    GroupAuthorizationFailedError,
    GroupIdNotFoundError,
    GroupSubscribedToTopicError,
    NonEmptyGroupError,
    UnknownTopicOrPartitionError,
)
from .protocol.offsets import read_kind
from .protocol.schema import INT16, STRING, Array, Field, ProtocolError, Reader, Struct

log = logging.getLogger(__name__)

# The head of Kafka's consumer-protocol subscription (any version): what a member reads.
_SUBSCRIPTION = Struct(Field("version", INT16), Field("topics", Array(STRING)))


class LoaderGroupError(Exception):
    """A loader's group: its offsets are not moved over the protocol."""


def subscribed_topics(group) -> set[str] | None:
    """The topics a coordinator's group's members subscribe to; None when a member's
    subscription cannot be read (then every topic counts as subscribed, as in Kafka)."""
    topics: set[str] = set()
    for member in group.members.values():
        meta = next((m for name, m in member.protocols if name == group.protocol), None)
        if meta is None and member.protocols:
            meta = member.protocols[0][1]
        try:
            topics.update(_SUBSCRIPTION.read(Reader(meta or b""), 0)["topics"])
        except (ProtocolError, UnicodeDecodeError):
            return None
    return topics


def _members(client, group: str) -> list[str]:
    try:
        return client.get_children(layout.members_path(group))
    except NoNodeError:
        return []


def _refuse_loader(client, group: str) -> None:
    if read_kind(client, group) == layout.LOADER:
        raise LoaderGroupError(group)


def delete_group_nodes(client, group: str, known_to_coordinator: bool) -> int:
    """Delete ``/consumers/<group>`` (blocking); the group's error code."""
    if not client.exists(layout.group_path(group)):
        return NONE if known_to_coordinator else GroupIdNotFoundError.code
    if _members(client, group):
        return NonEmptyGroupError.code
    _refuse_loader(client, group)
    try:
        client.delete(layout.group_path(group), recursive=True)
    except NotEmptyError:  # a member registered meanwhile
        return NonEmptyGroupError.code
    except NoNodeError:
        pass
    return NONE


def delete_offset_nodes(
    client,
    group: str,
    wanted: list[tuple[str, int]],
    subscribed: set[str] | None,
    known_to_coordinator: bool,
) -> dict[tuple[str, int], int]:
    """Delete the committed offsets of ``wanted`` (blocking); each partition's error code.
    ``subscribed`` are the topics the coordinator's members consume (None: all of them)."""
    if not known_to_coordinator and not client.exists(layout.group_path(group)):
        raise GroupIdNotFoundError(f"no group {group}")
    _refuse_loader(client, group)
    consumed = set(subscribed or ())
    for member in _members(client, group):
        path = layout.member_path(group, member)
        try:
            consumed.update(layout.decode_consumer(client.get(path)[0], path).subscription)
        except (NoNodeError, layout.MalformedNodeError):
            continue
    codes = {}
    for topic, partition in wanted:
        if subscribed is None or topic in consumed:
            codes[(topic, partition)] = GroupSubscribedToTopicError.code
            continue
        try:
            client.delete(layout.offset_path(group, topic, partition))
        except NoNodeError:
            pass
        codes[(topic, partition)] = NONE
    for topic in {t for (t, _), code in codes.items() if code == NONE}:
        try:  # a topic left without offsets is not listed as committed any more
            client.delete(layout.topic_offsets_path(group, topic))
        except (NotEmptyError, NoNodeError):
            pass
    return codes


class GroupAdmin:
    """The two group admin APIs over a broker's ``GroupHandlers``."""

    def __init__(self, groups):
        self.groups = groups
        self.cluster = groups.cluster

    def delete_groups(self, body, version):
        return defer.gatherResults(
            [self._delete_group(g) for g in body["groups_names"]], consumeErrors=True
        ).addCallback(
            lambda codes: {
                "throttle_time_ms": 0,
                "results": [
                    {"group_id": g, "error_code": c}
                    for g, c in zip(body["groups_names"], codes, strict=True)
                ],
            }
        )

    def _delete_group(self, group_id: str):
        error = self.groups._not_mine(group_id)
        if error:
            return defer.succeed(error)
        group = self.groups.coordinator.groups.get(group_id)
        if group is not None and group.members:
            return defer.succeed(NonEmptyGroupError.code)
        client = self.cluster.client

        def deleted(code):
            if code == NONE:
                self.groups.coordinator.drop(group_id)
                log.info("deleted group %s", group_id)
            return code

        return self.cluster._in_pool(
            lambda: delete_group_nodes(client, group_id, group is not None)
        ).addCallbacks(deleted, self._failed, errbackArgs=(group_id, "DeleteGroups"))

    def _failed(self, failure, group_id: str, api: str) -> int:
        if failure.check(LoaderGroupError):
            log.info("%s of loader group %s refused: use headrace groups --force", api, group_id)
            return GroupAuthorizationFailedError.code
        if failure.check(GroupIdNotFoundError):
            return GroupIdNotFoundError.code
        log.warning("%s of %s failed: %s", api, group_id, failure.getErrorMessage())
        return CoordinatorNotAvailableError.code

    def offset_delete(self, body, version):
        group_id = body["group_id"]
        wanted = [
            (t["name"], p["partition_index"]) for t in body["topics"] for p in t["partitions"]
        ]
        codes = {}
        for topic, partition in wanted:
            if partition not in self.groups.metadata.topics.get(topic, {}):
                codes[(topic, partition)] = UnknownTopicOrPartitionError.code
        error = self.groups._not_mine(group_id)
        if error:
            return _offset_delete_answer(error, {}, [])
        group = self.groups.coordinator.groups.get(group_id)
        subscribed = set() if group is None or not group.members else subscribed_topics(group)
        client = self.cluster.client
        todo = [tp for tp in wanted if tp not in codes]

        def answer(found):
            codes.update(found)
            return _offset_delete_answer(NONE, codes, wanted)

        def failed(failure):
            return _offset_delete_answer(self._failed(failure, group_id, "OffsetDelete"), {}, [])

        return self.cluster._in_pool(
            lambda: delete_offset_nodes(client, group_id, todo, subscribed, group is not None)
        ).addCallbacks(answer, failed)


def _offset_delete_answer(error: int, codes: dict, wanted: list) -> dict:
    topics: dict[str, list] = {}
    for topic, partition in wanted:
        code = codes.get((topic, partition), error)
        topics.setdefault(topic, []).append({"partition_index": partition, "error_code": code})
    return {
        "error_code": error,
        "throttle_time_ms": 0,
        "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()],
    }
