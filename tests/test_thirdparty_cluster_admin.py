"""The cluster and topic admin calls of real clients at their newest versions, counted by
the broker (``headrace_requests_total``): confluent-kafka's AdminClient describes the cluster
(racks and authorized operations, which librdkafka asks of Metadata v10), creates topics
(CreateTopics v4, librdkafka's newest), describes and deletes them (DeleteTopics v4);
kafka-python's KafkaAdminClient describes the cluster (DescribeCluster v1), reads a created
topic's configs with their sources (CreateTopics v7), deletes topics (DeleteTopics v6), reads
its log dir's volume (DescribeLogDirs v4); both clients' idempotent producers start with
InitProducerId v4; kafka-python describes the idempotent producers of a partition
(DescribeProducers v0) at its leader, refused by a follower, and kept by the new leader after
the old one's SIGKILL."""

from __future__ import annotations

import time

import pytest
from conftest import Cluster, create_topic, metadata, wait_for
from metrics_scrape import scrape
from test_thirdparty_flexible import versions_used

from broker.protocol.config_apis import ConfigSource
from headrace.devcluster import free_port

pytestmark = pytest.mark.integration  # real clients against broker processes

RACK = "rack-a"
CLUSTER_OPERATIONS = {"CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION"} | {
    "DESCRIBE_CONFIGS",
    "ALTER_CONFIGS",
    "IDEMPOTENT_WRITE",
}


@pytest.fixture(scope="module")
def broker(zookeeper, tmp_path_factory):
    cluster = Cluster(
        tmp_path_factory.mktemp("cluster-admin"),
        f"{zookeeper.connect}/cluster-admin-{time.monotonic_ns()}",
        1,
        {"broker.rack": RACK},
    )
    cluster.brokers[0].metrics_port = free_port()
    cluster.start()
    yield cluster.brokers[0]
    cluster.stop()


def _counted(broker, before, names) -> dict[str, set[int]] | None:
    used = versions_used(before, scrape(broker.metrics_url))
    return {n: used[n] for n in names} if all(n in used for n in names) else None


def test_confluent_kafka_describes_the_cluster_and_creates_and_deletes_topics(broker):
    from confluent_kafka import KafkaException, TopicCollection
    from confluent_kafka.admin import AdminClient, NewTopic

    before = scrape(broker.metrics_url)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    cluster = admin.describe_cluster(include_authorized_operations=True).result(timeout=30)
    [node] = cluster.nodes
    assert (node.id, node.port, node.rack) == (1, broker.port, RACK)
    assert cluster.controller.id == 1 and cluster.cluster_id
    assert {op.name for op in cluster.authorized_operations} == CLUSTER_OPERATIONS
    plain = admin.describe_cluster().result(timeout=30)
    assert plain.authorized_operations is None and plain.cluster_id == cluster.cluster_id

    topic = NewTopic("ck-admin", 3, 1, config={"retention.ms": "3600000"})
    admin.create_topics([topic])["ck-admin"].result(timeout=30)
    with pytest.raises(KafkaException, match="TOPIC_ALREADY_EXISTS"):
        admin.create_topics([topic])["ck-admin"].result(timeout=30)
    [described] = admin.describe_topics(TopicCollection(["ck-admin"])).values()
    description = described.result(timeout=30)
    assert len(description.partitions) == 3 and description.topic_id is not None
    assert description.partitions[0].leader.rack == RACK
    _send(_idempotent_producer(broker.bootstrap), "ck-admin", 1)
    admin.delete_topics(["ck-admin"])["ck-admin"].result(timeout=30)
    with pytest.raises(KafkaException, match="UNKNOWN_TOPIC"):
        admin.delete_topics(["ck-admin"])["ck-admin"].result(timeout=30)
    names = ["Metadata", "CreateTopics", "DeleteTopics", "InitProducerId"]
    used = wait_for(lambda: _counted(broker, before, names), 10)
    # librdkafka describes the cluster with Metadata v10, the last asking for its operations,
    # and uses its newest CreateTopics (v4, not flexible) and DeleteTopics (v4, flexible)
    assert 10 in used["Metadata"]
    assert (used["CreateTopics"], used["DeleteTopics"]) == ({4}, {4})
    assert used["InitProducerId"] == {4}  # the idempotent producer's, flexible


def test_kafka_python_admin_at_the_newest_versions(broker):
    from kafka import KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

    before = scrape(broker.metrics_url)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        cluster = admin.describe_cluster()
        assert [(b["broker_id"], b["rack"]) for b in cluster["brokers"]] == [(1, RACK)]
        assert cluster["controller_id"] == 1
        spec = {"num_partitions": 2, "configs": {"retention.ms": "3600000"}}
        created = admin.create_topics({"kp-admin": spec})
        [result] = created["topics"]
        assert (result["num_partitions"], result["replication_factor"]) == (2, 1)
        sources = {name: c["config_source"] for name, c in result["configs"].items()}
        assert sources["retention.ms"] == ConfigSource.DYNAMIC_TOPIC_CONFIG.name
        assert sources["segment.bytes"] == ConfigSource.DEFAULT_CONFIG.name
        assert result["configs"]["retention.ms"]["value"] == "3600000"
        assert str(result["topic_id"]) != "00000000-0000-0000-0000-000000000000"
        with pytest.raises(TopicAlreadyExistsError):
            admin.create_topics({"kp-admin": spec})
        [described] = admin.describe_topics(["kp-admin"])
        assert len(described["partitions"]) == 2
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True)
        producer.send("kp-admin", b"once", partition=0).get(timeout=30)
        producer.close()
        tp = TopicPartition("kp-admin", 0)
        [state] = admin.describe_producers([tp])[tp].active_producers
        assert (state.producer_epoch, state.last_sequence) == (0, 0)
        [log_dir] = admin.describe_log_dirs()[0]["log_dirs"]
        assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
        admin.delete_topics(["kp-admin"])
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.delete_topics(["kp-admin"])
    finally:
        admin.close()
    newest = {"DescribeCluster": 1, "CreateTopics": 7, "DeleteTopics": 6, "InitProducerId": 4}
    newest |= {"DescribeLogDirs": 4, "DescribeProducers": 0}
    used = wait_for(lambda: _counted(broker, before, list(newest)), 10)
    assert used == {name: {version} for name, version in newest.items()}


def _idempotent_producer(bootstrap: str):
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0})


def _send(producer, topic: str, count: int) -> None:
    for i in range(count):
        producer.produce(topic, b"value %d" % i, partition=0)
        producer.flush(30)  # one batch per message: the sequence moves by one each time
    assert producer.flush(30) == 0


def test_describe_producers_shows_an_idempotent_producer_before_and_after_a_leader_change(
    make_cluster,
):
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import NotLeaderForPartitionError, UnknownTopicOrPartitionError

    cluster = make_cluster(3)
    port = cluster.brokers[0].port
    create_topic(port, "producers", 1, replication_factor=3)
    tp = TopicPartition("producers", 0)
    producer = _idempotent_producer(cluster.bootstrap)
    _send(producer, "producers", 5)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        [state] = admin.describe_producers([tp])[tp].active_producers
        assert (state.producer_epoch, state.last_sequence) == (0, 4)
        assert (state.coordinator_epoch, state.current_transaction_start_offset) == (-1, -1)
        assert 0 < state.last_timestamp <= time.time() * 1000
        leader = metadata(port, ["producers"])["topics"][0]["partitions"][0]["leader_id"]
        follower = next(b.broker_id for b in cluster.brokers if b.broker_id != leader)
        with pytest.raises(NotLeaderForPartitionError):
            admin.describe_producers([tp], broker_id=follower)
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.describe_producers([TopicPartition("producers", 7)], broker_id=leader)

        cluster.broker(leader).kill()
        alive = next(b for b in cluster.brokers if b.broker_id != leader)

        def new_leader():
            partition = metadata(alive.port, ["producers"])["topics"][0]["partitions"][0]
            return partition["leader_id"] not in (leader, -1) and partition["leader_id"]

        wait_for(new_leader, 30)
        # the new leader knows the producer from the batches it replicated
        [kept] = wait_for(lambda: admin.describe_producers([tp])[tp].active_producers, 30)
        assert (kept.producer_id, kept.producer_epoch, kept.last_sequence) == (
            state.producer_id,
            0,
            4,
        )
        _send(producer, "producers", 3)  # the same producer carries on at the new leader

        def after():
            [moved] = admin.describe_producers([tp])[tp].active_producers
            return moved if moved.last_sequence == 7 else None

        moved = wait_for(after, 30)
        assert (moved.producer_id, moved.producer_epoch) == (state.producer_id, 0)
    finally:
        admin.close()
