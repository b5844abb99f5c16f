"""The new versions' semantics at a real broker, asked over our own connection: CreateTopics
v5+ answering a topic's partitions, replication factor and configs with their sources (v7 its
id), refusals with an empty config list; DeleteTopics v6 by topic id, with UNKNOWN_TOPIC_ID
and INVALID_REQUEST for both or neither; InitProducerId v3+ with an existing producer's id
and epoch; DescribeCluster's endpoint types; DescribeProducers' refusals; Metadata v10
answering the cluster's and a topic's authorized operations when asked."""

from __future__ import annotations

import uuid

import pytest
from admin_clients import request
from conftest import metadata

from broker.protocol import errors
from broker.protocol.cluster_apis import CLUSTER_OPERATIONS, TOPIC_OPERATIONS
from broker.protocol.config_apis import ConfigSource
from broker.protocol.group_apis import AUTHORIZED_OPERATIONS_OMITTED
from broker.protocol.registry import ApiKey

ZERO = uuid.UUID(int=0)


def _create(port: int, name: str, version: int, validate_only=False, **topic) -> dict:
    spec = {"name": name, "num_partitions": 2, "replication_factor": 1}
    spec |= {"assignments": [], "configs": []} | topic
    body = {"topics": [spec], "timeout_ms": 10000, "validate_only": validate_only}
    return request(port, ApiKey.CREATE_TOPICS, body, version)["topics"][0]


@pytest.mark.parametrize("version", [5, 6, 7])
def test_create_topics_answers_partitions_factor_and_configs_with_their_sources(cluster1, version):
    port = cluster1.brokers[0].port
    configs = [{"name": "retention.ms", "value": "60000"}]
    checked = _create(port, f"v{version}-checked", version, validate_only=True, configs=configs)
    assert (checked["error_code"], checked["num_partitions"], checked["topic_id"]) == (0, 2, ZERO)
    created = _create(port, f"v{version}-created", version, configs=configs)
    assert created["error_code"] == 0
    assert (created["num_partitions"], created["replication_factor"]) == (2, 1)
    by_name = {c["name"]: c for c in created["configs"]}
    retention = by_name["retention.ms"]
    assert (retention["value"], retention["config_source"]) == (
        "60000",
        ConfigSource.DYNAMIC_TOPIC_CONFIG,
    )
    assert by_name["segment.bytes"]["config_source"] == ConfigSource.DEFAULT_CONFIG
    assert not any(c["read_only"] or c["is_sensitive"] for c in created["configs"])
    [listed] = metadata(port, [f"v{version}-created"], version=12)["topics"]
    assert created["topic_id"] == (listed["topic_id"] if version >= 7 else ZERO)
    refused = _create(port, f"v{version}-created", version)
    assert refused["error_code"] == errors.TopicAlreadyExistsError.code
    assert (refused["num_partitions"], refused["configs"]) == (-1, [])


def test_delete_topics_v6_by_id_and_by_name(cluster1):
    port = cluster1.brokers[0].port
    by_id = _create(port, "doomed-by-id", 7)["topic_id"]
    _create(port, "doomed-by-name", 7)
    unknown = uuid.uuid4()
    topics = [
        {"name": None, "topic_id": by_id},
        {"name": "doomed-by-name", "topic_id": ZERO},
        {"name": None, "topic_id": unknown},
        {"name": "doomed-by-name", "topic_id": by_id},
        {"name": None, "topic_id": ZERO},
    ]
    body = request(port, ApiKey.DELETE_TOPICS, {"topics": topics, "timeout_ms": 10000}, 6)
    answers = [(r["name"], r["topic_id"], r["error_code"]) for r in body["responses"]]
    invalid = errors.InvalidRequestError.code
    assert answers[:3] == [
        ("doomed-by-id", by_id, 0),
        ("doomed-by-name", answers[1][1], 0),
        (None, unknown, errors.UnknownTopicIdError.code),
    ]
    assert answers[1][1] != ZERO
    assert [a[2] for a in answers[3:]] == [invalid, invalid]
    assert all(r["error_message"] for r in body["responses"][2:])
    names = {t["name"] for t in metadata(port)["topics"]}
    assert not names & {"doomed-by-id", "doomed-by-name"}


@pytest.mark.parametrize("version", [3, 4])
def test_init_producer_id_with_an_existing_producer_answers_a_new_id(cluster1, version):
    port = cluster1.brokers[0].port
    fresh = {"transactional_id": None, "transaction_timeout_ms": 60000}
    first = request(port, ApiKey.INIT_PRODUCER_ID, fresh, version)
    assert (first["error_code"], first["producer_epoch"]) == (0, 0)
    again = fresh | {"producer_id": first["producer_id"], "producer_epoch": 0}
    second = request(port, ApiKey.INIT_PRODUCER_ID, again, version)
    assert second["error_code"] == 0 and second["producer_id"] > first["producer_id"]
    half = fresh | {"producer_id": first["producer_id"], "producer_epoch": -1}
    refused = request(port, ApiKey.INIT_PRODUCER_ID, half, version)
    assert (refused["error_code"], refused["producer_id"]) == (errors.InvalidRequestError.code, -1)


def test_describe_cluster_answers_brokers_and_refuses_other_endpoint_types(cluster1):
    port = cluster1.brokers[0].port
    asked = {"include_cluster_authorized_operations": False, "endpoint_type": 1}
    body = request(port, ApiKey.DESCRIBE_CLUSTER, asked, 1)
    assert (body["error_code"], body["endpoint_type"], body["controller_id"]) == (0, 1, 1)
    assert [(b["broker_id"], b["port"]) for b in body["brokers"]] == [(1, port)]
    assert body["cluster_authorized_operations"] == AUTHORIZED_OPERATIONS_OMITTED
    assert body["cluster_id"] == metadata(port)["cluster_id"]
    ops = request(
        port, ApiKey.DESCRIBE_CLUSTER, asked | {"include_cluster_authorized_operations": True}, 0
    )
    assert ops["cluster_authorized_operations"] == CLUSTER_OPERATIONS
    for endpoint, version, error in [
        (2, 1, errors.MismatchedEndpointTypeError),
        (9, 1, errors.UnsupportedEndpointTypeError),
    ]:
        body = request(port, ApiKey.DESCRIBE_CLUSTER, asked | {"endpoint_type": endpoint}, version)
        assert (body["error_code"], body["brokers"]) == (error.code, []), endpoint
        assert body["error_message"]


def test_describe_producers_refuses_unknown_partitions_and_answers_none_for_a_quiet_one(cluster1):
    port = cluster1.brokers[0].port
    _create(port, "quiet", 7)
    asked = {"topics": [{"name": "quiet", "partition_indexes": [0, 5]}]}
    asked["topics"].append({"name": "no-such-topic", "partition_indexes": [0]})
    body = request(port, ApiKey.DESCRIBE_PRODUCERS, asked, 0)
    answers = [
        (t["name"], p["partition_index"], p["error_code"], p["active_producers"])
        for t in body["topics"]
        for p in t["partitions"]
    ]
    unknown = errors.UnknownTopicOrPartitionError.code
    assert answers == [
        ("quiet", 0, 0, []),
        ("quiet", 5, unknown, []),
        ("no-such-topic", 0, unknown, []),
    ]


@pytest.mark.parametrize("asked", [False, True])
def test_metadata_answers_authorized_operations_only_when_asked(cluster1, asked):
    port = cluster1.brokers[0].port
    _create(port, f"operations-{asked}", 7)
    body = {"topics": [{"name": f"operations-{asked}"}], "allow_auto_topic_creation": False}
    body |= {"include_cluster_authorized_operations": asked}
    body |= {"include_topic_authorized_operations": asked}
    answer = request(port, ApiKey.METADATA, body, 10)  # the last version with the cluster's
    expected = (
        (CLUSTER_OPERATIONS, TOPIC_OPERATIONS) if asked else (AUTHORIZED_OPERATIONS_OMITTED,) * 2
    )
    topic_operations = answer["topics"][0]["topic_authorized_operations"]
    assert (answer["cluster_authorized_operations"], topic_operations) == expected
