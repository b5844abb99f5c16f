"""The request and response schemas of DescribeCluster (60) and DescribeProducers (61), two
APIs born flexible (KIP-700, KIP-664); ``registry.py`` lists the versions served.

Field names and versions follow Apache Kafka's message definitions.

    >>> body = DESCRIBE_CLUSTER_REQUEST.decode(b"\\x01\\x02\\x00", 1)
    >>> body["include_cluster_authorized_operations"], body["endpoint_type"]
    (True, 2)
"""

from __future__ import annotations

from .group_apis import AUTHORIZED_OPERATIONS_OMITTED
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
)

ENDPOINT_BROKERS, ENDPOINT_CONTROLLERS = 1, 2  # DescribeCluster v1's endpoint types

# Kafka's answers without an authorizer: every AclOperation a resource type has, as a bit
# field (CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
# IDEMPOTENT_WRITE 12 for the cluster; READ 3, WRITE 4, CREATE, DELETE 6, ALTER, DESCRIBE,
# DESCRIBE_CONFIGS, ALTER_CONFIGS for a topic)
CLUSTER_OPERATIONS = sum(1 << op for op in (5, 7, 8, 9, 10, 11, 12))
TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))

# --- DescribeCluster (60) --------------------------------------------------------------------

DESCRIBE_CLUSTER_REQUEST = Struct(
    Field("include_cluster_authorized_operations", BOOL),
    Field("endpoint_type", INT8, "1+", default=ENDPOINT_BROKERS),
)
DESCRIBE_CLUSTER_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    Field("error_code", INT16),
    Field("error_message", NULLABLE_STRING),
    Field("endpoint_type", INT8, "1+", default=ENDPOINT_BROKERS),
    Field("cluster_id", STRING),
    Field("controller_id", INT32, default=-1),
    struct_array(
        "brokers",
        Field("broker_id", INT32),
        Field("host", STRING),
        Field("port", INT32),
        Field("rack", NULLABLE_STRING),
    ),
    Field("cluster_authorized_operations", INT32, default=AUTHORIZED_OPERATIONS_OMITTED),
)

# --- DescribeProducers (61) ------------------------------------------------------------------

DESCRIBE_PRODUCERS_REQUEST = Struct(
    struct_array("topics", Field("name", STRING), Field("partition_indexes", Array(INT32))),
)
DESCRIBE_PRODUCERS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    struct_array(
        "topics",
        Field("name", STRING),
        struct_array(
            "partitions",
            Field("partition_index", INT32),
            Field("error_code", INT16),
            Field("error_message", NULLABLE_STRING),
            struct_array(
                "active_producers",
                Field("producer_id", INT64),
                Field("producer_epoch", INT32),
                Field("last_sequence", INT32, default=-1),
                Field("last_timestamp", INT64, default=-1),
                Field("coordinator_epoch", INT32),
                Field("current_txn_start_offset", INT64, default=-1),
            ),
        ),
    ),
)
