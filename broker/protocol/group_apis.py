"""The consumer-group APIs' request and response schemas (served by ``group_handlers.py``);
``registry.py`` lists the versions served of each, so ApiVersions advertises them.

Same conventions as ``apis.py``: field names and the versions that carry them follow Apache
Kafka's message definitions (``clients/src/main/resources/common/message/*.json``), up to the
newest version the classic group protocol serves; the first flexible version of each API
(KIP-482) is its registry row's ``flexible_from``.

    >>> HEARTBEAT_REQUEST.decode(HEARTBEAT_REQUEST.encode({"group_id": "g"}, 0), 0)
    {'group_id': 'g', 'generation_id': 0, 'member_id': '', 'group_instance_id': None}

Nullability that a fixed codec type cannot express per version is widened to "nullable" and
left to the handler to police (as ``apis.METADATA_REQUEST`` does for v0 topics):
OffsetFetch v1 ``topics`` decodes null although only v2+ allow it, and JoinGroup's
``protocol_name`` below v7 (the coordinator answers "" there).
"""

from __future__ import annotations

from .schema import (
    BOOL,
    BYTES,
    INT8,
    INT16,
    INT32,
    INT64,
    NULLABLE_STRING,
    STRING,
    Array,
    Field,
    Struct,
    struct_array,
    topic_partitions,
)

# Kafka's "no authorized operations requested" sentinel (int32 minimum).
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)

# Shared openings.  Fields hold no state, so tables may share them.
# A response's throttle time (from v1) and its top-level error code:
_THROTTLE_ERROR = (Field("throttle_time_ms", INT32, "1+"), Field("error_code", INT16))
# A member of a generation, as Heartbeat and SyncGroup name it (static membership from v3):
_GENERATION_MEMBER = (
    Field("group_id", STRING),
    Field("generation_id", INT32),
    Field("member_id", STRING),
    Field("group_instance_id", NULLABLE_STRING, "3+"),
)

# --- FindCoordinator (10): flexible from 3; v4 asks for several keys at once -------------

FIND_COORDINATOR_REQUEST = Struct(
    Field("key", STRING, "0-3"),
    Field("key_type", INT8, "1+"),  # 0 group, 1 transaction; v0 means a group
    Field("coordinator_keys", Array(STRING), "4+"),
)
FIND_COORDINATOR_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "1+"),
    Field("error_code", INT16, "0-3"),
    Field("error_message", NULLABLE_STRING, "1-3"),
    Field("node_id", INT32, "0-3"),
    Field("host", STRING, "0-3"),
    Field("port", INT32, "0-3"),
    struct_array(
        "coordinators",
        Field("key", STRING),
        Field("node_id", INT32),
        Field("host", STRING),
        Field("port", INT32),
        Field("error_code", INT16),
        Field("error_message", NULLABLE_STRING),
        versions="4+",
    ),
)

# --- JoinGroup (11): flexible from 6; v7 names the protocol type in the response, v8 takes
# a reason, v9 tells a leader to skip the assignment (KIP-814) ------------------------------

JOIN_GROUP_REQUEST = Struct(
    Field("group_id", STRING),
    Field("session_timeout_ms", INT32),
    # Absent in v0: the coordinator then uses session_timeout_ms as the rebalance timeout.
    Field("rebalance_timeout_ms", INT32, "1+", default=-1),
    Field("member_id", STRING),
    Field("group_instance_id", NULLABLE_STRING, "5+"),
    Field("protocol_type", STRING),
    struct_array("protocols", Field("name", STRING), Field("metadata", BYTES)),
    Field("reason", NULLABLE_STRING, "8+"),
)
JOIN_GROUP_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "2+"),
    Field("error_code", INT16),
    Field("generation_id", INT32, default=-1),
    Field("protocol_type", NULLABLE_STRING, "7+"),
    Field("protocol_name", NULLABLE_STRING),  # null on errors from v7; "" below (see above)
    Field("leader", STRING),
    Field("skip_assignment", BOOL, "9+"),
    Field("member_id", STRING),
    struct_array(
        "members",
        Field("member_id", STRING),
        Field("group_instance_id", NULLABLE_STRING, "5+"),
        Field("metadata", BYTES),
    ),
)

# --- Heartbeat (12): flexible from 4 -------------------------------------------------------

HEARTBEAT_REQUEST = Struct(*_GENERATION_MEMBER)
HEARTBEAT_RESPONSE = Struct(*_THROTTLE_ERROR)

# --- LeaveGroup (13): v2 as v1, v3 a batch of members (KIP-345), flexible from 4, v5 a
# reason per member ------------------------------------------------------------------------

LEAVE_GROUP_REQUEST = Struct(
    Field("group_id", STRING),
    Field("member_id", STRING, "0-2"),
    struct_array(
        "members",
        Field("member_id", STRING),
        Field("group_instance_id", NULLABLE_STRING),
        Field("reason", NULLABLE_STRING, "5+"),
        versions="3+",
    ),
)
LEAVE_GROUP_RESPONSE = Struct(
    *_THROTTLE_ERROR,
    struct_array(
        "members",
        Field("member_id", STRING),
        Field("group_instance_id", NULLABLE_STRING),
        Field("error_code", INT16),
        versions="3+",
    ),
)

# --- SyncGroup (14): flexible from 4; v5 names the protocol type and name both ways ----------

# The group's protocol type and name, as SyncGroup v5+ carries them (null: not said).
_PROTOCOL = (
    Field("protocol_type", NULLABLE_STRING, "5+"),
    Field("protocol_name", NULLABLE_STRING, "5+"),
)
SYNC_GROUP_REQUEST = Struct(
    *_GENERATION_MEMBER,
    *_PROTOCOL,
    struct_array("assignments", Field("member_id", STRING), Field("assignment", BYTES)),
)
SYNC_GROUP_RESPONSE = Struct(*_THROTTLE_ERROR, *_PROTOCOL, Field("assignment", BYTES))

# --- OffsetCommit (8): v2-9 (v0-1 were dropped by Kafka 4.0); flexible from 8; v9 is v8 for
# the classic group protocol (its member epoch is KIP-848's) --------------------------------

OFFSET_COMMIT_REQUEST = Struct(
    Field("group_id", STRING),
    Field("generation_id_or_member_epoch", INT32, "1+", default=-1),
    Field("member_id", STRING, "1+"),
    Field("group_instance_id", NULLABLE_STRING, "7+"),
    Field("retention_time_ms", INT64, "2-4", default=-1),  # -1: the broker's retention
    topic_partitions(
        "topics",
        Field("partition_index", INT32),
        Field("committed_offset", INT64),
        Field("committed_leader_epoch", INT32, "6+", default=-1),
        Field("committed_metadata", NULLABLE_STRING),
    ),
)
OFFSET_COMMIT_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "3+"),
    topic_partitions("topics", Field("partition_index", INT32), Field("error_code", INT16)),
)

# --- OffsetFetch (9): v1-8 (v0 read ZooKeeper); flexible from 6; v7 asks for stable offsets
# only, v8 for several groups at once -------------------------------------------------------


def _fetch_topics(versions: str, nullable: bool) -> Field:
    """The topics and partitions an OffsetFetch asks for; null = every committed one."""
    partitions = Field("partition_indexes", Array(INT32))
    return Field("topics", Array(Struct(Field("name", STRING), partitions), nullable), versions)


def _fetched_topics(versions: str, epoch_from: str) -> Field:
    """The committed offsets of an OffsetFetch response, per topic and partition."""
    return Field(
        "topics",
        topic_partitions(
            "topics",
            Field("partition_index", INT32),
            Field("committed_offset", INT64),
            Field("committed_leader_epoch", INT32, epoch_from, default=-1),
            Field("metadata", NULLABLE_STRING),
            Field("error_code", INT16),
        ).type,
        versions,
    )


OFFSET_FETCH_REQUEST = Struct(
    Field("group_id", STRING, "0-7"),
    _fetch_topics("0-7", nullable=True),  # null allowed from v2 only (see above)
    struct_array("groups", Field("group_id", STRING), _fetch_topics("8+", True), versions="8+"),
    Field("require_stable", BOOL, "7+"),
)
OFFSET_FETCH_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "3+"),
    _fetched_topics("0-7", "5+"),
    Field("error_code", INT16, "2-7"),  # group-level; after the topics, not before
    struct_array(
        "groups",
        Field("group_id", STRING),
        _fetched_topics("8+", "8+"),
        Field("error_code", INT16),
        versions="8+",
    ),
)

# --- DescribeGroups (15): flexible from 5 -------------------------------------------------

DESCRIBE_GROUPS_REQUEST = Struct(
    Field("groups", Array(STRING)),
    Field("include_authorized_operations", BOOL, "3+"),
)
DESCRIBE_GROUPS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "1+"),
    struct_array(
        "groups",
        Field("error_code", INT16),
        Field("group_id", STRING),
        Field("group_state", STRING),
        Field("protocol_type", STRING),
        Field("protocol_data", STRING),
        struct_array(
            "members",
            Field("member_id", STRING),
            Field("group_instance_id", NULLABLE_STRING, "4+"),
            Field("client_id", STRING),
            Field("client_host", STRING),
            Field("member_metadata", BYTES),
            Field("member_assignment", BYTES),
        ),
        Field("authorized_operations", INT32, "3+", default=AUTHORIZED_OPERATIONS_OMITTED),
    ),
)

# --- ListGroups (16): an empty request to v3 (flexible from 3); v4 filters by state --------

LIST_GROUPS_REQUEST = Struct(Field("states_filter", Array(STRING), "4+"))
LIST_GROUPS_RESPONSE = Struct(
    *_THROTTLE_ERROR,
    struct_array(
        "groups",
        Field("group_id", STRING),
        Field("protocol_type", STRING),
        Field("group_state", STRING, "4+"),
    ),
)
