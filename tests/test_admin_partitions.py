"""CreatePartitions and ElectLeaders against three real brokers, asked by confluent-kafka's
AdminClient and kafka-python's KafkaAdminClient: a topic grown with replication factor 3 is
produced to and consumed from on its new partitions; Kafka's errors for fewer or equal
partitions, bad assignments and unknown topics; preferred and unclean elections."""

from __future__ import annotations

import pytest
from admin_clients import confluent_admin, error_code, request
from conftest import create_topic, metadata, wait_for

from broker.protocol.errors import (
    ElectionNotNeededError,
    InvalidPartitionsError,
    InvalidReplicaAssignmentError,
    NotControllerError,
    PreferredLeaderNotAvailableError,
    UnknownTopicOrPartitionError,
)
from broker.protocol.registry import ApiKey


def _partitions(port: int, topic: str) -> dict[int, dict]:
    [t] = metadata(port, [topic])["topics"]
    return {p["partition_index"]: p for p in t["partitions"]}


def test_confluent_grows_a_replicated_topic_whose_new_partitions_take_produce_and_fetch(cluster3):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import NewPartitions

    port = cluster3.brokers[0].port
    create_topic(port, "grown", 2, replication_factor=3)
    admin = confluent_admin(cluster3)
    [checked] = admin.create_partitions([NewPartitions("grown", 4)], validate_only=True).values()
    assert checked.result(timeout=30) is None
    assert len(_partitions(port, "grown")) == 2  # validate_only changed nothing
    [future] = admin.create_partitions([NewPartitions("grown", 4)]).values()
    assert future.result(timeout=30) is None
    grown = wait_for(lambda: (p := _partitions(port, "grown")) and len(p) == 4 and p, 20)
    for index in (2, 3):
        assert len(grown[index]["replica_nodes"]) == 3
        wait_for(lambda i=index: len(_partitions(port, "grown")[i]["isr_nodes"]) == 3, 20)
    producer = Producer({"bootstrap.servers": cluster3.bootstrap, "acks": "all"})
    for index in range(4):
        for i in range(25):
            producer.produce("grown", b"%d-%d" % (index, i), partition=index)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": cluster3.bootstrap, "group.id": "grown-reader"})
    consumer.assign([TopicPartition("grown", p, 0) for p in (2, 3)])
    seen = []
    try:
        wait_for(lambda: seen.extend(consumer.consume(100, 1.0)) or len(seen) >= 50, 30)
    finally:
        consumer.close()
    assert sorted(m.value() for m in seen) == sorted(
        b"%d-%d" % (p, i) for p in (2, 3) for i in range(25)
    )


def test_confluent_create_partitions_errors(cluster3):
    from confluent_kafka.admin import NewPartitions

    port = cluster3.brokers[0].port
    create_topic(port, "fixed", 3, replication_factor=2)
    admin = confluent_admin(cluster3)
    cases = {
        "fewer": (NewPartitions("fixed", 2), InvalidPartitionsError.code),
        "equal": (NewPartitions("fixed", 3), InvalidPartitionsError.code),
        "unknown broker": (NewPartitions("fixed", 4, [[1, 9]]), InvalidReplicaAssignmentError.code),
        "duplicate": (NewPartitions("fixed", 4, [[2, 2]]), InvalidReplicaAssignmentError.code),
        "factor": (NewPartitions("fixed", 4, [[1, 2, 3]]), InvalidReplicaAssignmentError.code),
        "count": (NewPartitions("fixed", 5, [[1, 2]]), InvalidReplicaAssignmentError.code),
        "topic": (NewPartitions("no-such-topic", 5), UnknownTopicOrPartitionError.code),
    }
    for name, (asked, code) in cases.items():
        [future] = admin.create_partitions([asked]).values()
        assert error_code(future) == code, name
    assert len(_partitions(port, "fixed")) == 3
    [future] = admin.create_partitions([NewPartitions("fixed", 4, [[3, 1]])]).values()
    assert future.result(timeout=30) is None
    grown = wait_for(lambda: (p := _partitions(port, "fixed")) and len(p) == 4 and p, 20)
    assert grown[3]["replica_nodes"] == [3, 1]  # the explicit assignment, first replica leads


def test_kafka_python_create_partitions_and_its_errors(cluster3):
    from kafka.admin import KafkaAdminClient
    from kafka.errors import InvalidPartitionsError as Invalid
    from kafka.errors import UnknownTopicOrPartitionError

    port = cluster3.brokers[0].port
    create_topic(port, "kp-grown", 1, replication_factor=3)
    admin = KafkaAdminClient(bootstrap_servers=cluster3.bootstrap)
    try:
        admin.create_partitions({"kp-grown": 3})
        wait_for(lambda: len(_partitions(port, "kp-grown")) == 3, 20)
        with pytest.raises(Invalid):
            admin.create_partitions({"kp-grown": 2})
        with pytest.raises(Invalid):
            admin.create_partitions({"kp-grown": 3})
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.create_partitions({"kp-no-such-topic": 2})
    finally:
        admin.close()


def _with_leader_moved(cluster, topic: str) -> int:
    """Make a partition's leader its second replica (a controlled shutdown's effect, done by
    the state a preferred election undoes); its partition index."""
    from conftest import zk_session

    from broker.protocol import zookeeper as layout

    port = cluster.brokers[0].port
    with zk_session(cluster.zookeeper_connect) as zk:
        path = layout.partition_state_path(topic, 0)
        data, stat = zk.get(path)
        state = layout.decode_partition_state(data, path)
        replicas = _partitions(port, topic)[0]["replica_nodes"]
        moved = layout.PartitionState(
            replicas[1], state.leader_epoch + 1, state.isr, state.controller_epoch
        )
        zk.set(path, layout.encode_partition_state(moved), version=stat.version)
    wait_for(lambda: _partitions(port, topic)[0]["leader_id"] == replicas[1], 20)
    return replicas[0]


def test_preferred_election_by_both_admin_clients_and_its_answers(cluster3):
    from confluent_kafka import ElectionType, TopicPartition
    from kafka.admin import KafkaAdminClient

    port = cluster3.brokers[0].port
    create_topic(port, "elected", 1, replication_factor=3)
    wait_for(lambda: len(_partitions(port, "elected")[0]["isr_nodes"]) == 3, 20)
    admin = confluent_admin(cluster3)
    tp = TopicPartition("elected", 0)
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=30)
    assert result[tp].code() == ElectionNotNeededError.code
    preferred = _with_leader_moved(cluster3, "elected")
    result = admin.elect_leaders(ElectionType.PREFERRED, [tp]).result(timeout=30)
    assert result[tp] is None
    wait_for(lambda: _partitions(port, "elected")[0]["leader_id"] == preferred, 20)
    _with_leader_moved(cluster3, "elected")
    kp = KafkaAdminClient(bootstrap_servers=cluster3.bootstrap)
    try:
        kp.elect_leaders(0, {"elected": [0]})
    finally:
        kp.close()
    wait_for(lambda: _partitions(port, "elected")[0]["leader_id"] == preferred, 20)


def _elect(port: int, version: int, election_type: int, topic: str, partition: int) -> dict:
    body = request(
        port,
        ApiKey.ELECT_LEADERS,
        {
            "election_type": election_type,
            "topic_partitions": [{"topic": topic, "partitions": [partition]}],
            "timeout_ms": 10000,
        },
        version,
    )
    [topic_result] = body["replica_election_results"]
    return topic_result["partition_result"][0]


def test_election_answers_from_a_non_controller_and_for_unknown_partitions(cluster3):
    port = cluster3.brokers[0].port
    create_topic(port, "answers", 1, replication_factor=2)
    controller = metadata(port)["controller_id"]
    other = next(b for b in cluster3.brokers if b.broker_id != controller)
    ours = cluster3.broker(controller)
    assert _elect(other.port, 1, 0, "answers", 0)["error_code"] == NotControllerError.code
    assert _elect(ours.port, 0, 0, "answers", 7)["error_code"] == (
        UnknownTopicOrPartitionError.code
    )
    assert _elect(ours.port, 1, 1, "answers", 0)["error_code"] == ElectionNotNeededError.code
    assert PreferredLeaderNotAvailableError.code == 80


def test_unclean_election_of_an_offline_partition_and_kafkas_refusals(make_cluster):
    from confluent_kafka import ElectionType, TopicPartition
    from conftest import zk_session

    from broker.protocol import zookeeper as layout
    from broker.protocol.errors import EligibleLeadersNotAvailableError

    cluster = make_cluster(3)
    admin = confluent_admin(cluster)
    for name, replicas in (("lagging", [3, 2]), ("alone", [3])):
        assignment = {"partition_index": 0, "broker_ids": replicas}
        wanted = {"name": name, "num_partitions": -1, "replication_factor": -1}
        wanted |= {"assignments": [assignment], "configs": []}
        body = {"topics": [wanted], "timeout_ms": 30000, "validate_only": False}
        [created] = request(cluster.brokers[0].port, ApiKey.CREATE_TOPICS, body)["topics"]
        assert created["error_code"] == 0, created
    port = cluster.brokers[0].port
    wait_for(lambda: len(_partitions(port, "lagging")[0]["isr_nodes"]) == 2, 20)
    cluster.broker(3).kill()
    wait_for(lambda: _partitions(port, "lagging")[0]["leader_id"] == 2, 30)
    with zk_session(cluster.zookeeper_connect) as zk:  # broker 2 fell behind before 3 died
        path = layout.partition_state_path("lagging", 0)
        data, stat = zk.get(path)
        state = layout.decode_partition_state(data, path)
        offline = layout.PartitionState(-1, state.leader_epoch + 1, (3,), state.controller_epoch)
        zk.set(path, layout.encode_partition_state(offline), version=stat.version)
    wait_for(lambda: _partitions(port, "lagging")[0]["leader_id"] == -1, 20)
    lagging, alone = TopicPartition("lagging", 0), TopicPartition("alone", 0)
    answer = admin.elect_leaders(ElectionType.PREFERRED, [lagging]).result(timeout=30)
    assert answer[lagging].code() == PreferredLeaderNotAvailableError.code
    answer = admin.elect_leaders(ElectionType.UNCLEAN, [lagging, alone]).result(timeout=30)
    assert answer[lagging] is None
    assert answer[alone].code() == EligibleLeadersNotAvailableError.code
    wait_for(lambda: _partitions(port, "lagging")[0]["leader_id"] == 2, 20)
    assert _partitions(port, "lagging")[0]["isr_nodes"] == [2]
    answer = admin.elect_leaders(ElectionType.UNCLEAN, [lagging]).result(timeout=30)
    assert answer[lagging].code() == ElectionNotNeededError.code
