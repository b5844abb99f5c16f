"""The calls web consoles make on their first pages (kafka-ui's statistics cycle and topic
list, AKHQ's topic and group pages, Redpanda Console's overview), replayed against a real broker
with the admin clients Python has: confluent-kafka's AdminClient (librdkafka, like the Java
AdminClient the JVM consoles use) and kafka-python's KafkaAdminClient. No Java console runs
here; these are the requests they send, in the order they send them.  librdkafka's list of
every topic (Metadata v12 with a null topic array) carries three bytes past its last field,
which Kafka ignores and so does the broker."""

from __future__ import annotations

import time

import pytest
from admin_clients import confluent_admin
from conftest import create_topic
from test_admin_groups import _consumer

from broker.protocol.frames import decode_request

pytestmark = pytest.mark.integration  # real clients against a broker process

TOPICS = {"console-a": 2, "console-b": 3}
GROUP = "console-group"
RECORDS = 10  # per topic


def test_librdkafkas_padded_all_topics_metadata_request_is_read_as_kafka_reads_it():
    # Metadata v12, correlation id 3, client id "rdkafka", no header tags; the topic array's
    # four reserved bytes hold the null count (0) and three zeros; then allow auto creation
    # (true), include topic operations (false), no tags: three bytes past the message
    payload = bytes.fromhex("0003000c00000003000772646b61666b610000000000010000")
    request = decode_request(payload)
    assert request.body["topics"] is None
    assert request.body["include_topic_authorized_operations"] is False


@pytest.fixture(scope="module")
def cluster(cluster1):
    """``cluster1`` with two topics holding records and a group that committed on one."""
    from confluent_kafka import Producer

    for topic, partitions in TOPICS.items():
        create_topic(cluster1.brokers[0].port, topic, partitions)
    producer = Producer({"bootstrap.servers": cluster1.bootstrap})
    for i in range(RECORDS):
        producer.produce("console-b", key=f"k{i}".encode(), value=b"v")
    assert producer.flush(30) == 0
    _consumer(cluster1, GROUP, "console-a").close()  # writes RECORDS, reads and commits them
    return cluster1


def test_kafka_uis_statistics_cycle_and_topic_pages(cluster):
    """kafka-ui: describe the cluster (with and without authorized operations), the broker's
    configs, every topic by name with authorized operations, every topic's configs with
    synonyms (one request, as its refresh sends), earliest and latest offsets of every
    partition."""
    from confluent_kafka import TopicCollection, TopicPartition
    from confluent_kafka.admin import ConfigResource, OffsetSpec, ResourceType

    admin = confluent_admin(cluster)
    described = admin.describe_cluster(include_authorized_operations=True).result(timeout=30)
    assert [node.id for node in described.nodes] == [1] and described.controller.id == 1
    assert described.authorized_operations
    assert admin.describe_cluster().result(timeout=30).cluster_id == described.cluster_id
    [broker] = admin.describe_configs([ConfigResource(ResourceType.BROKER, "1")]).values()
    assert broker.result(timeout=30)["broker.id"].value == "1"

    listed = admin.list_topics(timeout=30)
    assert set(TOPICS) <= set(listed.topics)
    assert all(listed.topics[t].error is None for t in TOPICS)
    for operations in (True, False):
        futures = admin.describe_topics(
            TopicCollection(sorted(listed.topics)), include_authorized_operations=operations
        )
        topics = {name: f.result(timeout=30) for name, f in futures.items()}
        for name, partitions in TOPICS.items():
            assert len(topics[name].partitions) == partitions
            assert all(p.leader.id == 1 for p in topics[name].partitions)
            assert bool(topics[name].authorized_operations) is operations

    resources = [ConfigResource(ResourceType.TOPIC, name) for name in sorted(listed.topics)]
    configs = admin.describe_configs(resources, request_timeout=30)
    for resource, future in configs.items():
        entries = future.result(timeout=30)
        assert entries["cleanup.policy"].value == "delete", resource

    partitions = [TopicPartition(t, p) for t, n in TOPICS.items() for p in range(n)]
    for spec, total in ((OffsetSpec.earliest(), 0), (OffsetSpec.latest(), RECORDS)):
        offsets = admin.list_offsets({tp: spec for tp in partitions}, request_timeout=30)
        answered = {tp: f.result(timeout=30).offset for tp, f in offsets.items()}
        for topic in TOPICS:
            assert sum(o for tp, o in answered.items() if tp.topic == topic) == total


def test_the_consumer_groups_page(cluster):
    """kafka-ui's and AKHQ's consumer groups page: list the groups, describe them, their
    committed offsets, and the latest offsets to show the lag."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = confluent_admin(cluster)
    listed = admin.list_consumer_groups(request_timeout=30).result(timeout=30)
    assert GROUP in {group.group_id for group in listed.valid} and not listed.errors
    [future] = admin.describe_consumer_groups([GROUP], request_timeout=30).values()
    described = future.result(timeout=30)
    assert described.group_id == GROUP and not described.members
    request = [ConsumerGroupTopicPartitions(GROUP)]
    [future] = admin.list_consumer_group_offsets(request, request_timeout=30).values()
    committed = {
        (tp.topic, tp.partition): tp.offset for tp in future.result(timeout=30).topic_partitions
    }
    assert set(committed) == {("console-a", p) for p in range(TOPICS["console-a"])}
    latest = admin.list_offsets(
        {TopicPartition(t, p): OffsetSpec.latest() for t, p in committed}, request_timeout=30
    )
    ends = {(tp.topic, tp.partition): f.result(timeout=30).offset for tp, f in latest.items()}
    assert ends == committed  # the group read everything: no lag


def test_kafka_pythons_describe_pages(cluster):
    """kafka-python's KafkaAdminClient: list and describe the topics, describe the cluster, the
    log dirs of every broker (all topics, as the consoles ask) and of one topic."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=30000)
    try:
        assert set(TOPICS) <= set(admin.list_topics())
        every = {t["name"]: t for t in admin.describe_topics()}
        named = {t["name"]: t for t in admin.describe_topics(sorted(TOPICS))}
        assert set(named) == set(TOPICS)
        for name, partitions in TOPICS.items():
            assert every[name]["error_code"] == named[name]["error_code"] == 0
            assert len(named[name]["partitions"]) == partitions
        described = admin.describe_cluster()
        assert [b["broker_id"] for b in described["brokers"]] == [1]
        assert described["controller_id"] == 1 and described["cluster_id"]
        [broker] = admin.describe_log_dirs()
        [log_dir] = broker["log_dirs"]
        assert log_dir["error_code"] == 0
        held = {t["name"]: len(t["partitions"]) for t in log_dir["topics"]}
        assert {name: held.get(name) for name in TOPICS} == TOPICS
        [one] = admin.describe_log_dirs(["console-b"])
        [one_dir] = one["log_dirs"]
        assert [t["name"] for t in one_dir["topics"]] == ["console-b"]
    finally:
        admin.close()


def test_akhqs_offsets_by_time_read_committed(cluster):
    """AKHQ's topic list: the offset of the first record at or after time 0 and the end
    offset, read committed (its consumers' default); a partition with no record that recent
    answers -1, which AKHQ replaces with the end offset."""
    from confluent_kafka import IsolationLevel, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = confluent_admin(cluster)
    partitions = [TopicPartition("console-b", p) for p in range(TOPICS["console-b"])]
    options = {"isolation_level": IsolationLevel.READ_COMMITTED, "request_timeout": 30}

    def offsets(spec) -> list[int]:
        answered = admin.list_offsets({tp: spec for tp in partitions}, **options)
        return [answered[tp].result(timeout=30).offset for tp in partitions]

    ends = offsets(OffsetSpec.latest())
    assert sum(ends) == RECORDS
    assert offsets(OffsetSpec.for_timestamp(0)) == [0 if end else -1 for end in ends]
    future = int(time.time() * 1000) + 3600_000
    assert offsets(OffsetSpec.for_timestamp(future)) == [-1] * len(partitions)
