"""The group APIs for Kafka clients: coordinator choice, the group protocol, offsets in ZooKeeper.

Each group has one coordinator: of the live brokers in the registry, the one with the highest
``crc32(group/broker id)`` (rendezvous hashing), so every broker agrees without talking to the
others and a broker that comes or goes moves only its own share of the groups.  A request for
a group at another broker gets NOT_COORDINATOR; when the registry changes, groups move and
their members find the new coordinator (FindCoordinator) and join again.  Committed offsets
live in ``/consumers/<group>/offsets/<topic>/<p>`` like those of the paper's consumers and
the loaders, so they survive coordinator moves and broker restarts, and one lag tool serves
every kind of group.  A group name belongs to one kind (``/consumers/<group>/kind``): a group
of Kafka clients claims it (kind "kafka") when its first member joins or its first offset is
committed; a name that belongs to the paper's consumers or a loader gets
INCONSISTENT_GROUP_PROTOCOL on JoinGroup and UNKNOWN_MEMBER_ID on OffsetCommit, and their
offsets stay as they are.  The kind is read from ZooKeeper in the reactor's thread pool.

As in Kafka, a group of Kafka clients exists while it has offsets (here: until its nodes are
deleted), with or without members: one the coordinator does not hold in memory (forgotten once
empty, or from before a restart or a move) is listed by ListGroups and described as Empty.
"""

from __future__ import annotations

import logging
import zlib

from twisted.internet import defer

from .groups import DEAD, EMPTY, GroupCoordinator
from .protocol.errors import (
    NONE,
    CoordinatorNotAvailableError,
    InconsistentGroupProtocolError,
    InvalidGroupIdError,
    NotCoordinatorError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from .protocol.group_apis import AUTHORIZED_OPERATIONS_OMITTED
from .protocol.offsets import (
    GroupKindError,
    claim_kind,
    committed_partitions,
    groups_of_kind,
    read_kind,
    read_offset,
    write_offset,
)
from .protocol.registry import ApiKey
from .protocol.zookeeper import KAFKA, check_group_name

log = logging.getLogger(__name__)

# What a client may do on a group with no authorizer: Kafka's READ (3), DELETE (6) and
# DESCRIBE (8), as an int32 of AclOperation bits.
GROUP_OPERATIONS = 1 << 3 | 1 << 6 | 1 << 8


class GroupHandlers:
    """FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
    OffsetFetch, DescribeGroups and ListGroups for one broker.  ``coordinator_options``
    (session timeout bounds, initial rebalance delay) go to the ``GroupCoordinator``."""

    def __init__(self, broker_id: int, cluster, reactor, **coordinator_options: int):
        self.broker_id = broker_id
        self.cluster = cluster
        self.metadata = cluster.metadata
        self.reactor = reactor
        self.coordinator = GroupCoordinator(reactor, **coordinator_options)
        self.table = {
            ApiKey.OFFSET_COMMIT: self.offset_commit,
            ApiKey.OFFSET_FETCH: self.offset_fetch,
            ApiKey.FIND_COORDINATOR: self.find_coordinator,
            ApiKey.HEARTBEAT: self.heartbeat,
            ApiKey.LEAVE_GROUP: self.leave_group,
            ApiKey.SYNC_GROUP: self.sync_group,
            ApiKey.DESCRIBE_GROUPS: self.describe_groups,
            ApiKey.LIST_GROUPS: self.list_groups,
        }
        # These also get the request and the connection.
        self.contextual = {ApiKey.JOIN_GROUP: self.join_group}
        self._commit_locks: dict[str, defer.DeferredLock] = {}

    # --- coordinator choice --------------------------------------------------------------

    def coordinator_of(self, group_id: str) -> int:
        """The live broker that coordinates ``group_id`` (-1 if none is alive): the highest
        ``crc32(group/broker)`` (rendezvous hashing), so a broker coming or going moves only
        the groups it gains or had."""
        live = self.metadata.brokers
        if not live:
            return -1
        key = group_id.encode()
        return max(live, key=lambda node: (zlib.crc32(b"%s/%d" % (key, node)), node))

    def _not_mine(self, group_id: str) -> int:
        """INVALID_GROUP_ID for a name that cannot be a ZooKeeper node, NOT_COORDINATOR
        (dropping what this broker still held of the group), or 0."""
        try:
            check_group_name(group_id)
        except ValueError:
            return InvalidGroupIdError.code
        if self.coordinator_of(group_id) == self.broker_id:
            return NONE
        if group_id in self.coordinator.groups:
            log.info("group %s moved to broker %d", group_id, self.coordinator_of(group_id))
            self.coordinator.drop(group_id)
        return NotCoordinatorError.code

    def find_coordinator(self, body, version, listener: str = "PLAINTEXT"):
        """One key's coordinator, or (v4+) each of ``coordinator_keys``', at its address on
        ``listener``."""
        key_type = body.get("key_type", 0)
        if version < 4:
            return {"throttle_time_ms": 0, **self._coordinator(body["key"], key_type, listener)}
        found = [
            {"key": k, **self._coordinator(k, key_type, listener)} for k in body["coordinator_keys"]
        ]
        return {"throttle_time_ms": 0, "coordinators": found}

    def _coordinator(self, key: str, key_type: int, listener: str = "PLAINTEXT") -> dict:
        node = self.coordinator_of(key) if key_type == 0 else -1
        info = self.metadata.brokers.get(node)
        address = None if info is None else info.address(listener)
        if address is None:
            return {
                "error_code": CoordinatorNotAvailableError.code,
                "error_message": "no coordinator for that key",
                "node_id": -1,
                "host": "",
                "port": -1,
            }
        return {
            "error_code": NONE,
            "error_message": None,
            "node_id": node,
            "host": address[0],
            "port": address[1],
        }

    # --- the group protocol --------------------------------------------------------------

    def join_group(self, request, connection):
        body, version = request.body, request.header.api_version
        error = self._not_mine(body["group_id"])
        if error:
            return _join_answer(self.coordinator._join_error(error, body["member_id"]), version)
        host = getattr(connection, "peer", "")

        def join(_=None):
            return self.coordinator.join(
                body["group_id"],
                body["member_id"],
                body.get("group_instance_id"),
                body["protocol_type"],
                [(p["name"], p["metadata"]) for p in body["protocols"]],
                body["session_timeout_ms"],
                body.get("rebalance_timeout_ms", -1),
                version=version,
                client_id=request.header.client_id or "",
                client_host="/" + host.rsplit(":", 1)[0],
                reason=body.get("reason"),
            )

        def refused(failure):
            if failure.check(GroupKindError):
                log.info(
                    "refused a Kafka client in group %s: %s",
                    body["group_id"],
                    failure.getErrorMessage(),
                )
                return self.coordinator._join_error(
                    InconsistentGroupProtocolError.code, body["member_id"]
                )
            log.warning(
                "cannot read the kind of group %s: %s", body["group_id"], failure.getErrorMessage()
            )
            return self.coordinator._join_error(
                CoordinatorNotAvailableError.code, body["member_id"]
            )

        if self._has_members(body["group_id"]):  # claimed when it formed (it cannot be deleted)
            d = join()
        else:
            client = self.cluster.client
            d = self.cluster._in_pool(
                lambda: claim_kind(client, body["group_id"], KAFKA)
            ).addCallbacks(join, refused)
        return d.addCallback(_join_answer, version)

    def _has_members(self, group_id: str) -> bool:
        group = self.coordinator.groups.get(group_id)
        return group is not None and bool(group.members)

    def sync_group(self, body, version):
        group_id = body["group_id"]
        error = self._not_mine(group_id)
        if error:
            return {"throttle_time_ms": 0, "error_code": error, "assignment": b""}

        def named(response):  # v5+: the group's protocol type and name with an assignment
            group = self.coordinator.groups.get(group_id)
            if response["error_code"] == NONE and group is not None:
                response.update(protocol_type=group.protocol_type, protocol_name=group.protocol)
            return response

        return self.coordinator.sync(
            group_id,
            body["generation_id"],
            body["member_id"],
            [(a["member_id"], a["assignment"]) for a in body["assignments"]],
            body.get("protocol_type"),
            body.get("protocol_name"),
            body.get("group_instance_id"),
        ).addCallback(named)

    def heartbeat(self, body, version):
        error = self._not_mine(body["group_id"])
        if error:
            return {"throttle_time_ms": 0, "error_code": error}
        return self.coordinator.heartbeat(
            body["group_id"],
            body["generation_id"],
            body["member_id"],
            body.get("group_instance_id"),
        )

    def leave_group(self, body, version):
        """One member leaving, or (v3+) a batch of them, each answered by itself and named
        by its member id, its instance id, or both."""
        group_id = body["group_id"]
        error = self._not_mine(group_id)
        if error:
            return {"throttle_time_ms": 0, "error_code": error, "members": []}
        if version < 3:
            return self.coordinator.leave(group_id, body["member_id"])
        left = []
        for member in body["members"]:
            instance = member["group_instance_id"]
            code = self.coordinator.leave(group_id, member["member_id"], instance)["error_code"]
            if member.get("reason") and code == NONE:
                log.info(
                    "member %s (instance %s) left group %s: %s",
                    member["member_id"],
                    instance,
                    group_id,
                    member["reason"],
                )
            left.append(
                {
                    "member_id": member["member_id"],
                    "group_instance_id": member["group_instance_id"],
                    "error_code": code,
                }
            )
        return {"throttle_time_ms": 0, "error_code": NONE, "members": left}

    def describe_groups(self, body, version):
        """Each group as its coordinator holds it; with ``include_authorized_operations``
        (v3+) the operations a client may do on a group, all of them (READ, DELETE,
        DESCRIBE) as Kafka says with no authorizer."""
        operations = AUTHORIZED_OPERATIONS_OMITTED
        if body.get("include_authorized_operations"):
            operations = GROUP_OPERATIONS
        return defer.maybeDeferred(self._describe_groups, body).addCallback(
            _with_operations, operations
        )

    def _describe_groups(self, body):
        groups = []
        for group_id in body["groups"]:
            error = self._not_mine(group_id)
            if error:
                groups.append(
                    {
                        "error_code": error,
                        "group_id": group_id,
                        "group_state": "",
                        "protocol_type": "",
                        "protocol_data": "",
                        "members": [],
                    }
                )
            else:
                groups.append(self.coordinator.describe(group_id))
        # Groups this coordinator does not hold: Empty if ZooKeeper knows them as Kafka's.
        absent = [g for g in groups if g["error_code"] == NONE and g["group_state"] == DEAD]
        if not absent:
            return {"throttle_time_ms": 0, "groups": groups}
        client = self.cluster.client

        def read():
            return {g["group_id"] for g in absent if read_kind(client, g["group_id"]) == KAFKA}

        def answer(known):
            for g in absent:
                if g["group_id"] in known:
                    g["group_state"] = EMPTY
            return {"throttle_time_ms": 0, "groups": groups}

        def failed(failure):
            log.warning("describing groups failed: %s", failure.getErrorMessage())
            for g in absent:
                g["error_code"] = CoordinatorNotAvailableError.code
            return {"throttle_time_ms": 0, "groups": groups}

        return self.cluster._in_pool(read).addCallbacks(answer, failed)

    def list_groups(self, body, version):
        """The groups held in memory, and the Kafka clients' groups in ZooKeeper that this
        broker coordinates (protocol type unknown: "", which admin clients list as consumer
        groups; state Empty); from v4 only those in ``states_filter`` if it names any (in
        any case, as Kafka's admin tools send them)."""
        listed = self.coordinator.list()
        client = self.cluster.client
        states = {state.lower() for state in body.get("states_filter", [])}

        def chosen(groups: list) -> list:
            return [g for g in groups if not states or g["group_state"].lower() in states]

        def answer(stored):
            held = {g["group_id"] for g in listed}
            more = [
                {"group_id": name, "protocol_type": "", "group_state": EMPTY}
                for name in stored
                if name not in held and self.coordinator_of(name) == self.broker_id
            ]
            return {"throttle_time_ms": 0, "error_code": NONE, "groups": chosen(listed + more)}

        def failed(failure):
            log.warning("listing groups failed: %s", failure.getErrorMessage())
            code = CoordinatorNotAvailableError.code
            return {"throttle_time_ms": 0, "error_code": code, "groups": chosen(listed)}

        return self.cluster._in_pool(lambda: groups_of_kind(client, KAFKA)).addCallbacks(
            answer, failed
        )

    # --- offsets in ZooKeeper ------------------------------------------------------------

    def offset_commit(self, body, version):
        group_id = body["group_id"]
        error = self._not_mine(group_id) or self.coordinator.check_commit(
            group_id,
            body.get("generation_id_or_member_epoch", -1),
            body.get("member_id", ""),
            body.get("group_instance_id"),
        )
        wanted = [
            (t["name"], p["partition_index"], p["committed_offset"])
            for t in body["topics"]
            for p in t["partitions"]
        ]
        if error:
            return self._commit_response({(t, p): error for t, p, _ in wanted})
        # A commit from outside group management claims the name for Kafka clients first (a
        # group with members claimed it when it formed).
        claim = not self._has_members(group_id)
        results = {}
        writes = []
        for topic, partition, offset in wanted:
            if partition not in self.metadata.topics.get(topic, {}):
                results[(topic, partition)] = UnknownTopicOrPartitionError.code
            else:
                writes.append((topic, partition, offset))
        client = self.cluster.client

        def write():
            if claim:
                claim_kind(client, group_id, KAFKA)
            for topic, partition, offset in writes:
                write_offset(client, group_id, topic, partition, offset)

        # One group's commits are written in the order they came, never overtaking each other.
        lock = self._commit_locks.setdefault(group_id, defer.DeferredLock())
        d = lock.run(self.cluster._in_pool, write)

        def done(_):
            results.update({(t, p): NONE for t, p, _ in writes})
            return self._commit_response(results)

        def failed(failure):
            if failure.check(GroupKindError):
                log.info(
                    "refused a Kafka client's commit to %s: %s", group_id, failure.getErrorMessage()
                )
                return self._commit_response(
                    {(t, p): UnknownMemberIdError.code for t, p, _ in wanted}
                )
            log.warning("commit of %s failed: %s", group_id, failure.getErrorMessage())
            results.update({(t, p): CoordinatorNotAvailableError.code for t, p, _ in writes})
            return self._commit_response(results)

        return d.addCallbacks(done, failed)

    def _commit_response(self, results: dict) -> dict:
        topics: dict[str, list] = {}
        for (topic, partition), code in results.items():
            topics.setdefault(topic, []).append({"partition_index": partition, "error_code": code})
        return {
            "throttle_time_ms": 0,
            "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()],
        }

    def offset_fetch(self, body, version):
        """One group's committed offsets, or (v8+) each group's of ``groups``.  Nothing is
        ever unstable here (no transactions), so ``require_stable`` (v7+) changes nothing."""
        if version < 8:
            return self._group_offsets(body["group_id"], body["topics"], version).addCallback(
                lambda answer: {"throttle_time_ms": 0, **answer}
            )
        return defer.gatherResults(
            [
                self._group_offsets(g["group_id"], g["topics"], version).addCallback(
                    lambda answer, group_id: {"group_id": group_id, **answer}, g["group_id"]
                )
                for g in body["groups"]
            ]
        ).addCallback(lambda groups: {"throttle_time_ms": 0, "groups": groups})

    def _group_offsets(self, group_id: str, topics, version: int) -> defer.Deferred:
        """The Deferred ``{"error_code", "topics"}`` of one group (``topics`` None: every
        partition with a committed offset); it never fails."""
        error = self._not_mine(group_id)
        if error:
            # below v2 no group-level error field: say it on every partition
            failed_topics = _failed_topics(topics, error) if version < 2 else []
            return defer.succeed({"error_code": error, "topics": failed_topics})
        client = self.cluster.client

        def read():
            wanted = topics
            if wanted is None:  # every partition with a committed offset
                wanted = [
                    {"name": name, "partition_indexes": parts}
                    for name, parts in committed_partitions(client, group_id).items()
                ]
            out = []
            for t in wanted:
                parts = []
                for p in t["partition_indexes"]:
                    try:
                        offset = read_offset(client, group_id, t["name"], p)[0]
                    except ValueError:
                        offset = None
                    parts.append(_fetched(p, -1 if offset is None else offset, NONE))
                out.append({"name": t["name"], "partitions": parts})
            return {"error_code": NONE, "topics": out}

        def failed(failure):
            log.warning("offset fetch of %s failed: %s", group_id, failure.getErrorMessage())
            code = CoordinatorNotAvailableError.code
            return {"error_code": code, "topics": _failed_topics(topics, code)}

        return self.cluster._in_pool(read).addErrback(failed)

    def close(self) -> None:
        self.coordinator.close()


def _fetched(partition: int, offset: int, code: int) -> dict:
    return {
        "partition_index": partition,
        "committed_offset": offset,
        "committed_leader_epoch": -1,
        "metadata": "",
        "error_code": code,
    }


def _failed_topics(topics, code: int) -> list:
    """Every partition asked for (none if ``topics`` is None) with error ``code``."""
    return [
        {"name": t["name"], "partitions": [_fetched(p, -1, code) for p in t["partition_indexes"]]}
        for t in topics or []
    ]


def _with_operations(response: dict, operations: int) -> dict:
    for group in response["groups"]:
        group["authorized_operations"] = operations
    return response


def _join_answer(response: dict, version: int) -> dict:
    """A JoinGroup response as ``version`` has it: from v7 an error names no protocol (null)."""
    if version >= 7 and response["error_code"] != NONE:
        response["protocol_name"] = None
    return response


__all__ = ["GroupHandlers"]
