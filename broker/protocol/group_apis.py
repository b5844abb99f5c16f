"""The consumer-group APIs' request and response schemas (served by ``group_handlers.py``);
``registry.py`` lists the versions served of each, so ApiVersions advertises them.

Same conventions as ``apis.py``: field names and the versions that carry them follow Apache
Kafka's message definitions (``clients/src/main/resources/common/message/*.json``), and only
non-flexible (pre-KIP-482) versions are described.  The first flexible version of each API is
noted beside its section and must not be reached by widening a range here.

    >>> HEARTBEAT_REQUEST.decode(HEARTBEAT_REQUEST.encode({"group_id": "g"}, 0), 0)
    {'group_id': 'g', 'generation_id': 0, 'member_id': '', 'group_instance_id': None}

Nullability that a fixed codec type cannot express per version is widened to "nullable" and
left to the handler to police (as ``apis.METADATA_REQUEST`` does for v0 topics):
OffsetFetch v1 ``topics`` decodes null although only v2+ allow it.
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

# --- FindCoordinator (10): non-flexible 0-2, flexible from 3 --------------------------------

FIND_COORDINATOR_REQUEST = Struct(
    Field("key", STRING),
    Field("key_type", INT8, "1+"),  # 0 group, 1 transaction; v0 means a group
)
FIND_COORDINATOR_RESPONSE = Struct(
    *_THROTTLE_ERROR,
    Field("error_message", NULLABLE_STRING, "1+"),
    Field("node_id", INT32),
    Field("host", STRING),
    Field("port", INT32),
)

# --- JoinGroup (11): non-flexible 0-5, flexible from 6 --------------------------------------

JOIN_GROUP_REQUEST = Struct(
    Field("group_id", STRING),
    Field("session_timeout_ms", INT32),
    # Absent in v0: the coordinator then uses session_timeout_ms as the rebalance timeout.
    Field("rebalance_timeout_ms", INT32, "1+", default=-1),
    Field("member_id", STRING),
    Field("group_instance_id", NULLABLE_STRING, "5+"),
    Field("protocol_type", STRING),
    struct_array("protocols", Field("name", STRING), Field("metadata", BYTES)),
)
JOIN_GROUP_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "2+"),
    Field("error_code", INT16),
    Field("generation_id", INT32, default=-1),
    Field("protocol_name", STRING),  # null only from v7 (flexible); "" on errors here
    Field("leader", STRING),
    Field("member_id", STRING),
    struct_array(
        "members",
        Field("member_id", STRING),
        Field("group_instance_id", NULLABLE_STRING, "5+"),
        Field("metadata", BYTES),
    ),
)

# --- Heartbeat (12): non-flexible 0-3, flexible from 4 --------------------------------------

HEARTBEAT_REQUEST = Struct(*_GENERATION_MEMBER)
HEARTBEAT_RESPONSE = Struct(*_THROTTLE_ERROR)

# --- LeaveGroup (13): v0-1 here; v2 (same as v1) and v3 (batched members) are also
# non-flexible, flexible from 4 --------------------------------------------------------------

LEAVE_GROUP_REQUEST = Struct(
    Field("group_id", STRING),
    Field("member_id", STRING),  # v0-2 only; v3 replaces it with a members array
)
LEAVE_GROUP_RESPONSE = Struct(*_THROTTLE_ERROR)

# --- SyncGroup (14): non-flexible 0-3, flexible from 4 --------------------------------------

SYNC_GROUP_REQUEST = Struct(
    *_GENERATION_MEMBER,
    struct_array("assignments", Field("member_id", STRING), Field("assignment", BYTES)),
)
SYNC_GROUP_RESPONSE = Struct(
    *_THROTTLE_ERROR,
    Field("assignment", BYTES),
)

# --- OffsetCommit (8): v2-7 here (v0-1 are non-flexible too, dropped by Kafka 4.0);
# flexible from 8 ---------------------------------------------------------------------------

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

# --- OffsetFetch (9): v1-5 here (v0 read ZooKeeper); flexible from 6 -----------------------

OFFSET_FETCH_REQUEST = Struct(
    Field("group_id", STRING),
    # null = every partition with a committed offset; allowed from v2 only (see above)
    struct_array(
        "topics", Field("name", STRING), Field("partition_indexes", Array(INT32)), nullable=True
    ),
)
OFFSET_FETCH_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "3+"),
    topic_partitions(
        "topics",
        Field("partition_index", INT32),
        Field("committed_offset", INT64),
        Field("committed_leader_epoch", INT32, "5+", default=-1),
        Field("metadata", NULLABLE_STRING),
        Field("error_code", INT16),
    ),
    Field("error_code", INT16, "2+"),  # group-level; after the topics, not before
)

# --- DescribeGroups (15): non-flexible 0-4, flexible from 5 ---------------------------------

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

# --- ListGroups (16): non-flexible 0-2 (an empty request), flexible from 3 ------------------

LIST_GROUPS_REQUEST = Struct()
LIST_GROUPS_RESPONSE = Struct(
    *_THROTTLE_ERROR,
    struct_array("groups", Field("group_id", STRING), Field("protocol_type", STRING)),
)
