"""DeleteGroups and OffsetDelete at the coordinator for the three kinds of group: Kafka
clients' groups (confluent-kafka members), the paper's ZooKeeper groups (GroupConsumer) and
loaders' groups; asked by confluent-kafka's AdminClient and kafka-python's KafkaAdminClient,
with Kafka's errors: NON_EMPTY_GROUP while members live, GROUP_SUBSCRIBED_TO_TOPIC for a
topic the live group consumes, GROUP_ID_NOT_FOUND for an unknown group."""

from __future__ import annotations

import pytest
from admin_clients import confluent_admin, error_code
from conftest import create_topic, wait_for, zk_session

from broker.protocol import zookeeper as layout
from broker.protocol.errors import (
    GroupAuthorizationFailedError,
    GroupIdNotFoundError,
    GroupSubscribedToTopicError,
    NonEmptyGroupError,
)
from broker.protocol.offsets import claim_kind, committed_partitions, write_offset


def _consumer(cluster, group: str, topic: str):
    """A confluent-kafka member of ``group`` that consumed ``topic`` and committed."""
    from confluent_kafka import Consumer, Producer

    producer = Producer({"bootstrap.servers": cluster.bootstrap})
    for i in range(10):
        producer.produce(topic, b"%d" % i)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = []
    wait_for(lambda: seen.extend(consumer.consume(10, 1.0)) or len(seen) >= 10, 30)
    consumer.commit(asynchronous=False)
    return consumer


def _deleted(admin, group: str) -> int:
    [future] = admin.delete_consumer_groups([group]).values()
    return error_code(future)


def test_kafka_group_deleted_once_empty_and_its_offsets_by_topic(cluster1):
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import GroupIdNotFoundError as NotFound

    topic, other, group = "grp-del", "grp-other", "kafka-deleted"
    create_topic(cluster1.brokers[0].port, topic, 1)
    create_topic(cluster1.brokers[0].port, other, 1)
    admin = confluent_admin(cluster1)
    kp = KafkaAdminClient(bootstrap_servers=cluster1.bootstrap)
    consumer = _consumer(cluster1, group, topic)
    try:
        with zk_session(cluster1.zookeeper_connect) as zk:
            write_offset(zk, group, other, 0, 0)  # a topic the group does not consume now
            assert set(committed_partitions(zk, group)) == {topic, other}
            assert _deleted(admin, group) == NonEmptyGroupError.code
            answer = kp.delete_group_offsets(
                group, [TopicPartition(topic, 0), TopicPartition(other, 0)]
            )
            codes = {tp.topic: err.errno for tp, err in answer.items()}
            assert codes == {topic: GroupSubscribedToTopicError.code, other: 0}
            assert set(committed_partitions(zk, group)) == {topic}
            consumer.close()
            consumer = None
            answer = kp.delete_group_offsets(group, [TopicPartition(topic, 0)])
            assert [err.errno for err in answer.values()] == [0]
            assert committed_partitions(zk, group) == {}
            assert _deleted(admin, group) == 0
            assert not zk.exists(layout.group_path(group))
        assert _deleted(admin, group) == GroupIdNotFoundError.code
        assert kp.delete_groups([group]) == {group: NotFound.__name__}
        with pytest.raises(NotFound):
            kp.delete_group_offsets("never-seen", [TopicPartition(topic, 0)])
    finally:
        if consumer is not None:
            consumer.close()
        kp.close()


def test_zookeeper_group_deleted_only_without_members(cluster1):
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import NonEmptyGroupError as NonEmpty

    from consumers.group import GroupConsumer

    topic, group = "grp-paper", "paper-deleted"
    create_topic(cluster1.brokers[0].port, topic, 2)
    paper = GroupConsumer(group, [topic], cluster1.zookeeper_connect)
    paper.start()
    kp = KafkaAdminClient(bootstrap_servers=cluster1.bootstrap)
    try:
        with zk_session(cluster1.zookeeper_connect) as zk:
            wait_for(lambda: zk.get_children(layout.members_path(group)), 20)
        assert kp.delete_groups([group]) == {group: NonEmpty.__name__}
        answer = kp.delete_group_offsets(group, [TopicPartition(topic, 1)])
        assert [e.errno for e in answer.values()] == [GroupSubscribedToTopicError.code]
        paper.close()
        assert kp.delete_groups([group]) == {group: "OK"}
        with zk_session(cluster1.zookeeper_connect) as zk:
            assert not zk.exists(layout.group_path(group))
    finally:
        paper.close()
        kp.close()


def test_a_loaders_group_is_not_deleted_over_the_protocol(cluster1):
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import GroupAuthorizationFailedError as Refused

    topic, group = "grp-loaded", "loader-kept"
    create_topic(cluster1.brokers[0].port, topic, 1)
    with zk_session(cluster1.zookeeper_connect) as zk:
        claim_kind(zk, group, layout.LOADER)
        write_offset(zk, group, topic, 0, 7)
        admin = confluent_admin(cluster1)
        assert _deleted(admin, group) == GroupAuthorizationFailedError.code
        kp = KafkaAdminClient(bootstrap_servers=cluster1.bootstrap)
        try:
            with pytest.raises(Refused):
                kp.delete_group_offsets(group, [TopicPartition(topic, 0)])
        finally:
            kp.close()
        assert committed_partitions(zk, group) == {topic: [0]}


def test_group_admin_at_another_broker_answers_not_coordinator(cluster3):
    from admin_clients import request

    from broker.protocol.errors import NotCoordinatorError
    from broker.protocol.registry import ApiKey

    group = "elsewhere"
    port = cluster3.brokers[0].port
    found = request(port, ApiKey.FIND_COORDINATOR, {"key": group, "key_type": 0})
    other = next(b for b in cluster3.brokers if b.broker_id != found["node_id"])
    deleted = request(other.port, ApiKey.DELETE_GROUPS, {"groups_names": [group]})
    assert deleted["results"] == [{"group_id": group, "error_code": NotCoordinatorError.code}]
    body = {"group_id": group, "topics": [{"name": "t", "partitions": [{"partition_index": 0}]}]}
    offsets = request(other.port, ApiKey.OFFSET_DELETE, body)
    assert (offsets["error_code"], offsets["topics"]) == (NotCoordinatorError.code, [])
