"""The request and response schemas of the broker's own APIs (the group APIs' are in
``group_apis.py``); ``registry.py`` lists the versions served of each.

Field names and the versions that carry them follow Apache Kafka's message definitions
(``clients/src/main/resources/common/message/*.json``), flexible versions included (tagged
fields are declared with their ``tag``; the registry row says where flexible versions begin).
Adding a version is widening its range in the registry and adding the fields it brought.

    >>> body = METADATA_REQUEST.decode(METADATA_REQUEST.encode({"topics": None}, 1), 1)
    >>> body["topics"], body["allow_auto_topic_creation"]
    (None, True)
"""

from __future__ import annotations

from .schema import (
    BOOL,
    INT8,
    INT16,
    INT32,
    INT64,
    NULLABLE_STRING,
    RECORDS,
    STRING,
    UUID,
    Array,
    Field,
    Struct,
    struct_array,
    topic_partitions,
)

# --- Produce (0) -----------------------------------------------------------------------------

PRODUCE_REQUEST = Struct(
    Field("transactional_id", NULLABLE_STRING, "3+"),
    Field("acks", INT16),
    Field("timeout_ms", INT32),
    topic_partitions(
        "topic_data", Field("index", INT32), Field("records", RECORDS), partitions="partition_data"
    ),
)
PRODUCE_RESPONSE = Struct(
    topic_partitions(
        "responses",
        Field("index", INT32),
        Field("error_code", INT16),
        Field("base_offset", INT64),
        Field("log_append_time_ms", INT64, "2+", default=-1),
        Field("log_start_offset", INT64, "5+", default=-1),
        struct_array(
            "record_errors",
            Field("batch_index", INT32),
            Field("batch_index_error_message", NULLABLE_STRING),
            versions="8+",
        ),
        Field("error_message", NULLABLE_STRING, "8+"),
        partitions="partition_responses",
    ),
    Field("throttle_time_ms", INT32, "1+"),
)

# --- Fetch (1) -------------------------------------------------------------------------------

FETCH_REQUEST = Struct(
    Field("cluster_id", NULLABLE_STRING, "12+", tag=0),
    Field("replica_id", INT32),
    Field("max_wait_ms", INT32),
    Field("min_bytes", INT32),
    Field("max_bytes", INT32, "3+", default=0x7FFFFFFF),
    Field("isolation_level", INT8, "4+"),
    Field("session_id", INT32, "7+"),
    Field("session_epoch", INT32, "7+", default=-1),
    struct_array(
        "topics",
        Field("topic", STRING, "0-12"),
        Field("topic_id", UUID, "13+"),  # KIP-516: ids instead of names
        struct_array(
            "partitions",
            Field("partition", INT32),
            Field("current_leader_epoch", INT32, "9+", default=-1),
            Field("fetch_offset", INT64),
            Field("last_fetched_epoch", INT32, "12+", default=-1),
            Field("log_start_offset", INT64, "5+", default=-1),
            Field("partition_max_bytes", INT32),
        ),
    ),
    struct_array(
        "forgotten_topics_data",
        Field("topic", STRING, "7-12"),
        Field("topic_id", UUID, "13+"),
        Field("partitions", Array(INT32)),
        versions="7+",
    ),
    Field("rack_id", STRING, "11+"),
)
_EPOCH_END_OFFSET = Struct(
    Field("epoch", INT32, default=-1), Field("end_offset", INT64, default=-1)
)
_LEADER_ID_AND_EPOCH = Struct(
    Field("leader_id", INT32, default=-1), Field("leader_epoch", INT32, default=-1)
)
_SNAPSHOT_ID = Struct(Field("end_offset", INT64, default=-1), Field("epoch", INT32, default=-1))
FETCH_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "1+"),
    Field("error_code", INT16, "7+"),
    Field("session_id", INT32, "7+"),
    struct_array(
        "responses",
        Field("topic", STRING, "0-12"),
        Field("topic_id", UUID, "13+"),
        struct_array(
            "partitions",
            Field("partition_index", INT32),
            Field("error_code", INT16),
            Field("high_watermark", INT64),
            Field("last_stable_offset", INT64, "4+", default=-1),
            Field("log_start_offset", INT64, "5+", default=-1),
            Field("diverging_epoch", _EPOCH_END_OFFSET, "12+", tag=0),
            Field("current_leader", _LEADER_ID_AND_EPOCH, "12+", tag=1),
            Field("snapshot_id", _SNAPSHOT_ID, "12+", tag=2),
            struct_array(
                "aborted_transactions",
                Field("producer_id", INT64),
                Field("first_offset", INT64),
                versions="4+",
                nullable=True,
            ),
            Field("preferred_read_replica", INT32, "11+", default=-1),
            Field("records", RECORDS),
        ),
    ),
)

# --- ListOffsets (2) -------------------------------------------------------------------------

LIST_OFFSETS_REQUEST = Struct(
    Field("replica_id", INT32),
    Field("isolation_level", INT8, "2+"),
    topic_partitions(
        "topics",
        Field("partition_index", INT32),
        Field("current_leader_epoch", INT32, "4+", default=-1),
        Field("timestamp", INT64),
    ),
)
LIST_OFFSETS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "2+"),
    topic_partitions(
        "topics",
        Field("partition_index", INT32),
        Field("error_code", INT16),
        Field("timestamp", INT64, default=-1),
        Field("offset", INT64, default=-1),
        Field("leader_epoch", INT32, "4+", default=-1),
    ),
)

# --- Metadata (3) ----------------------------------------------------------------------------

# A topic's name is nullable in requests from v10 and in responses from v12 (asked for by id);
# the codec types it nullable at every version and the handler polices the older ones.
METADATA_REQUEST = Struct(
    struct_array(
        "topics",
        Field("topic_id", UUID, "10+"),
        Field("name", NULLABLE_STRING),
        nullable=True,
    ),
    Field("allow_auto_topic_creation", BOOL, "4+", default=True),
    Field("include_cluster_authorized_operations", BOOL, "8-10"),
    Field("include_topic_authorized_operations", BOOL, "8+"),
)
METADATA_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "3+"),
    struct_array(
        "brokers",
        Field("node_id", INT32),
        Field("host", STRING),
        Field("port", INT32),
        Field("rack", NULLABLE_STRING, "1+"),
    ),
    Field("cluster_id", NULLABLE_STRING, "2+"),
    Field("controller_id", INT32, "1+", default=-1),
    struct_array(
        "topics",
        Field("error_code", INT16),
        Field("name", NULLABLE_STRING),
        Field("topic_id", UUID, "10+"),
        Field("is_internal", BOOL, "1+"),
        struct_array(
            "partitions",
            Field("error_code", INT16),
            Field("partition_index", INT32),
            Field("leader_id", INT32),
            Field("leader_epoch", INT32, "7+", default=-1),
            Field("replica_nodes", Array(INT32)),
            Field("isr_nodes", Array(INT32)),
            Field("offline_replicas", Array(INT32), "5+"),
        ),
        Field("topic_authorized_operations", INT32, "8+", default=-2147483648),
    ),
    Field("cluster_authorized_operations", INT32, "8-10", default=-2147483648),
)

# --- ApiVersions (18) ------------------------------------------------------------------------

# KIP-511: who the client is, for the broker's logs; ours say headrace and its version
# (setup.cfg's; a test keeps them equal) unless a request body says otherwise.
CLIENT_SOFTWARE = ("headrace", "0.1.0")
API_VERSIONS_REQUEST = Struct(
    Field("client_software_name", STRING, "3+", default=CLIENT_SOFTWARE[0]),
    Field("client_software_version", STRING, "3+", default=CLIENT_SOFTWARE[1]),
)
API_VERSIONS_RESPONSE = Struct(
    Field("error_code", INT16),
    struct_array(
        "api_keys",
        Field("api_key", INT16),
        Field("min_version", INT16),
        Field("max_version", INT16),
    ),
    Field("throttle_time_ms", INT32, "1+"),
    # KIP-584's feature flags: headrace has none to announce, so they stay at their defaults
    struct_array(
        "supported_features",
        Field("name", STRING),
        Field("min_version", INT16),
        Field("max_version", INT16),
        versions="3+",
        tag=0,
    ),
    Field("finalized_features_epoch", INT64, "3+", default=-1, tag=1),
    struct_array(
        "finalized_features",
        Field("name", STRING),
        Field("max_version_level", INT16),
        Field("min_version_level", INT16),
        versions="3+",
        tag=2,
    ),
    Field("zk_migration_ready", BOOL, "3+", tag=3),
)

# --- CreateTopics (19) -----------------------------------------------------------------------

CREATE_TOPICS_REQUEST = Struct(
    struct_array(
        "topics",
        Field("name", STRING),
        Field("num_partitions", INT32),
        Field("replication_factor", INT16),
        struct_array(
            "assignments", Field("partition_index", INT32), Field("broker_ids", Array(INT32))
        ),
        struct_array("configs", Field("name", STRING), Field("value", NULLABLE_STRING)),
    ),
    Field("timeout_ms", INT32),
    Field("validate_only", BOOL, "1+"),
)
CREATE_TOPICS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "2+"),
    struct_array(
        "topics",
        Field("name", STRING),
        Field("topic_id", UUID, "7+"),
        Field("error_code", INT16),
        Field("error_message", NULLABLE_STRING, "1+"),
        Field("topic_config_error_code", INT16, "5+", tag=0),
        Field("num_partitions", INT32, "5+", default=-1),
        Field("replication_factor", INT16, "5+", default=-1),
        struct_array(
            "configs",
            Field("name", STRING),
            Field("value", NULLABLE_STRING),
            Field("read_only", BOOL),
            Field("config_source", INT8, default=-1),
            Field("is_sensitive", BOOL),
            versions="5+",
            nullable=True,
        ),
    ),
)

# --- DeleteTopics (20) -----------------------------------------------------------------------

# v6 names each topic by name or by id (KIP-516); before it, by name in ``topic_names``.
DELETE_TOPICS_REQUEST = Struct(
    struct_array("topics", Field("name", NULLABLE_STRING), Field("topic_id", UUID), versions="6+"),
    Field("topic_names", Array(STRING), "0-5"),
    Field("timeout_ms", INT32),
)
DELETE_TOPICS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "1+"),
    struct_array(
        "responses",
        # nullable from v6 (an id no topic has); typed so at every version, as Metadata's
        Field("name", NULLABLE_STRING),
        Field("topic_id", UUID, "6+"),
        Field("error_code", INT16),
        Field("error_message", NULLABLE_STRING, "5+"),
    ),
)

# --- ControlledShutdown (7) -----------------------------------------------------------------
# Version 0 has a request header without client_id; versions 1 to 3 are served (3 flexible).

CONTROLLED_SHUTDOWN_REQUEST = Struct(
    Field("broker_id", INT32),
    Field("broker_epoch", INT64, "2+", default=-1),
)
CONTROLLED_SHUTDOWN_RESPONSE = Struct(
    Field("error_code", INT16),
    struct_array(
        "remaining_partitions", Field("topic_name", STRING), Field("partition_index", INT32)
    ),
)

# --- InitProducerId (22) ---------------------------------------------------------------------

INIT_PRODUCER_ID_REQUEST = Struct(
    Field("transactional_id", NULLABLE_STRING),
    Field("transaction_timeout_ms", INT32),
    # v3+ (KIP-360): an existing producer asking for a new epoch after an error
    Field("producer_id", INT64, "3+", default=-1),
    Field("producer_epoch", INT16, "3+", default=-1),
)
INIT_PRODUCER_ID_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    Field("error_code", INT16),
    Field("producer_id", INT64, default=-1),
    Field("producer_epoch", INT16, default=-1),
)

# --- OffsetForLeaderEpoch (23) ---------------------------------------------------------------

OFFSET_FOR_LEADER_EPOCH_REQUEST = Struct(
    Field("replica_id", INT32, "3+", default=-2),
    topic_partitions(
        "topics",
        Field("partition", INT32),
        Field("current_leader_epoch", INT32, "2+", default=-1),
        Field("leader_epoch", INT32),
        topic="topic",
    ),
)
OFFSET_FOR_LEADER_EPOCH_RESPONSE = Struct(
    Field("throttle_time_ms", INT32, "2+"),
    topic_partitions(
        "topics",
        Field("error_code", INT16),
        Field("partition", INT32),
        Field("leader_epoch", INT32, "1+", default=-1),
        Field("end_offset", INT64, default=-1),
        topic="topic",
    ),
)

# --- DescribeLogDirs (35) --------------------------------------------------------------------
# Versions 0 and 1 are alike (1 only allows a throttle before the answer); topics None: all.
# v3 adds a top-level error code, v4 each log dir's volume size and usable bytes.

DESCRIBE_LOG_DIRS_REQUEST = Struct(
    struct_array(
        "topics", Field("topic", STRING), Field("partitions", Array(INT32)), nullable=True
    ),
)
DESCRIBE_LOG_DIRS_RESPONSE = Struct(
    Field("throttle_time_ms", INT32),
    Field("error_code", INT16, "3+"),
    struct_array(
        "results",
        Field("error_code", INT16),
        Field("log_dir", STRING),
        topic_partitions(
            "topics",
            Field("partition_index", INT32),
            Field("partition_size", INT64),
            Field("offset_lag", INT64),
            Field("is_future_key", BOOL),
        ),
        Field("total_bytes", INT64, "4+", default=-1),
        Field("usable_bytes", INT64, "4+", default=-1),
    ),
)
