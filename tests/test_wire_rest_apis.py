"""CreateTopics, DeleteTopics, InitProducerId, OffsetForLeaderEpoch and DescribeLogDirs up to
their newest versions, and DescribeCluster and DescribeProducers (flexible only): every
version served round-trips and gives the bytes kafka-python's classes (generated from Kafka's
JSON message definitions) give for the same values, which its decoder reads back;
ControlledShutdown v3, which kafka-python lacks, against bytes written out by hand."""

from __future__ import annotations

import struct

import pytest
from kafka.protocol import consumer as kp_consumer
from kafka.protocol import producer as kp_producer
from kafka.protocol.admin import cluster as kp_cluster
from kafka.protocol.admin import topics as kp_topics
from kafka.protocol.admin import transactions as kp_transactions
from schema_samples import (
    assert_round_trips_as_kafka_python,
    assert_served_flexible_from_kafkas_first,
    json_class_kwargs,
    project,
    sample,
    served_cases,
)

from broker.protocol.group_apis import AUTHORIZED_OPERATIONS_OMITTED
from broker.protocol.registry import API_BY_KEY, ApiKey

SERVED = {
    ApiKey.CREATE_TOPICS: (kp_topics, (2, 7)),
    ApiKey.DELETE_TOPICS: (kp_topics, (1, 6)),
    ApiKey.INIT_PRODUCER_ID: (kp_producer, (0, 4)),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (kp_consumer, (0, 4)),
    ApiKey.DESCRIBE_LOG_DIRS: (kp_cluster, (0, 4)),
    ApiKey.DESCRIBE_CLUSTER: (kp_cluster, (0, 1)),
    ApiKey.DESCRIBE_PRODUCERS: (kp_transactions, (0, 0)),
}
# DescribeCluster's response is checked below: kafka-python renames one of its fields
CASES = served_cases(SERVED, but=[(ApiKey.DESCRIBE_CLUSTER, "Response")])


def test_versions_served_are_flexible_from_kafkas_first():
    assert_served_flexible_from_kafkas_first(SERVED)


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize(
    "api, version, side", CASES, ids=[f"{a.name}{s}-v{v}" for a, v, s in CASES]
)
def test_bytes_equal_kafka_python_and_round_trip(api, version, side, nulls):
    body = sample(api.request if side == "Request" else api.response, version, nulls)
    if api.key == ApiKey.DELETE_TOPICS and side == "Response" and version < 6:
        for result in body["responses"]:  # a name is null only from v6
            result["name"] = result["name"] or ""
    assert_round_trips_as_kafka_python(SERVED[api.key][0], api, version, side, body)


def test_create_topics_v5_response_carries_the_configs_and_v7_the_topic_id():
    api = API_BY_KEY[ApiKey.CREATE_TOPICS]
    body = {"topics": [{"name": "t", "error_code": 0, "error_message": None}]}
    body["topics"][0] |= {"num_partitions": 3, "replication_factor": 1, "configs": None}
    # v4: name, error code and message only; v5 adds the partitions, factor and configs
    assert len(api.response.encode(body, 5)) > len(api.response.encode(body, 4))
    decoded = api.response.decode(api.response.encode(body, 7), 7)["topics"][0]
    assert (decoded["num_partitions"], decoded["topic_id"].int) == (3, 0)


def test_controlled_shutdown_v3_is_flexible():
    api = API_BY_KEY[ApiKey.CONTROLLED_SHUTDOWN]
    assert (api.max_version, api.is_flexible(3), api.is_flexible(2)) == (3, True, False)
    request = {"broker_id": 3, "broker_epoch": 9}
    assert api.request.encode(request, 3) == struct.pack(">iqB", 3, 9, 0)  # and no tags
    assert api.request.decode(api.request.encode(request, 3), 3) == request
    body = {"error_code": 77, "remaining_partitions": [{"topic_name": "t", "partition_index": 1}]}
    assert api.response.encode(body, 3) == (
        struct.pack(">h", 77)  # error_code: STALE_BROKER_EPOCH
        + b"\x02"  # compact array: one remaining partition (n + 1)
        + b"\x02t"  # compact string topic_name "t" (length + 1)
        + struct.pack(">i", 1)  # partition_index
        + b"\x00"  # the partition's tagged fields: none
        + b"\x00"  # the body's tagged fields: none
    )
    assert api.response.decode(api.response.encode(body, 3), 3) == body


@pytest.mark.parametrize("operations", [AUTHORIZED_OPERATIONS_OMITTED, 0b1010_0000])
@pytest.mark.parametrize("version", [0, 1])
def test_describe_cluster_response_bytes_equal_kafka_python(version, operations):
    """kafka-python names Kafka's ClusterAuthorizedOperations ``authorized_operations`` and
    decodes the bit field to a set (None: not asked for)."""
    schema = API_BY_KEY[ApiKey.DESCRIBE_CLUSTER].response
    body = sample(schema, version) | {"cluster_authorized_operations": operations}
    cls = kp_cluster.DescribeClusterResponse
    rest = {k: v for k, v in body.items() if k != "cluster_authorized_operations"}
    kwargs = json_class_kwargs(cls, schema, rest)
    kwargs["authorized_operations"] = (
        None
        if operations == AUTHORIZED_OPERATIONS_OMITTED
        else {b for b in range(32) if operations >> b & 1}
    )
    ours = schema.encode(body, version)
    assert ours == bytes(cls[version](**kwargs).encode())
    assert project(schema.decode(ours, version), body) == body
    back = cls.decode(ours, version=version).to_dict(json=False)
    assert back["cluster_id"] == body["cluster_id"]
    assert back["authorized_operations"] == kwargs["authorized_operations"]
