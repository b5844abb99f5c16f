"""The request and response schemas of the admin APIs that change partitions and groups:
CreatePartitions (37), DeleteRecords (21), DeleteGroups (42), OffsetDelete (47) and
ElectLeaders (43).  ``registry.py`` lists the versions served of each.

Field names and the versions that carry them follow Apache Kafka's message definitions; the
tables hold the fields of every version up to Kafka's newest (the flexible ones add no field
here, only the compact encoding and tagged fields the codec adds).

    >>> body = {"groups_names": ["g"]}
    >>> DELETE_GROUPS_REQUEST.decode(DELETE_GROUPS_REQUEST.encode(body, 1), 1)
    {'groups_names': ['g']}
"""

from __future__ import annotations

from .schema import (
    BOOL,
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

# --- CreatePartitions (37) -------------------------------------------------------------------
# v1 is v0 (a throttle before the answer); v2+ flexible.  Assignments None: placed by the broker.

CREATE_PARTITIONS_REQUEST = Struct(
    struct_array(
        "topics",
        Field("name", STRING),
        Field("count", INT32),
        Field(
            "assignments",
            Array(Struct(Field("broker_ids", Array(INT32))), nullable=True),
        ),
    ),
    Field("timeout_ms", INT32),
    Field("validate_only", BOOL),
)
CREATE_PARTITIONS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    struct_array(
        "results",
        Field("name", STRING),
        Field("error_code", INT16),
        Field("error_message", NULLABLE_STRING),
    ),
)

# --- DeleteRecords (21) ----------------------------------------------------------------------
# v1 is v0; v2 flexible.  An offset of -1 means the high watermark.

DELETE_RECORDS_REQUEST = Struct(
    topic_partitions("topics", Field("partition_index", INT32), Field("offset", INT64)),
    Field("timeout_ms", INT32),
)
DELETE_RECORDS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    topic_partitions(
        "topics",
        Field("partition_index", INT32),
        Field("low_watermark", INT64),
        Field("error_code", INT16),
    ),
)

# --- DeleteGroups (42) -----------------------------------------------------------------------
# v1 is v0; v2 flexible.

DELETE_GROUPS_REQUEST = Struct(Field("groups_names", Array(STRING)))
DELETE_GROUPS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    struct_array("results", Field("group_id", STRING), Field("error_code", INT16)),
)

# --- OffsetDelete (47) -----------------------------------------------------------------------
# v0 only, never flexible.

OFFSET_DELETE_REQUEST = Struct(
    Field("group_id", STRING),
    topic_partitions("topics", Field("partition_index", INT32)),
)
OFFSET_DELETE_RESPONSE = Struct(
    Field("error_code", INT16),
    Field("throttle_time_ms", INT32),
    topic_partitions("topics", Field("partition_index", INT32), Field("error_code", INT16)),
)

# --- ElectLeaders (43) -----------------------------------------------------------------------
# v1 brought the election type (0 preferred, 1 unclean) and a top-level error; v2 flexible.
# Topic partitions None: every partition.

ELECT_LEADERS_REQUEST = Struct(
    Field("election_type", INT8, "1+"),
    struct_array(
        "topic_partitions",
        Field("topic", STRING),
        Field("partitions", Array(INT32)),
        nullable=True,
    ),
    Field("timeout_ms", INT32, default=60000),
)
ELECT_LEADERS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    Field("error_code", INT16, "1+"),
    struct_array(
        "replica_election_results",
        Field("topic", STRING),
        struct_array(
            "partition_result",
            Field("partition_id", INT32),
            Field("error_code", INT16),
            Field("error_message", NULLABLE_STRING),
        ),
    ),
)
