"""Which versions of the admin APIs real clients use against headrace, read off the broker's
count of requests by API and version (``headrace_requests_total``): confluent-kafka's
AdminClient and kafka-python's KafkaAdminClient each create partitions, delete records,
delete a group and elect leaders, all at flexible versions: librdkafka at CreatePartitions
v2 and v2 of the others, kafka-python at CreatePartitions v3 and v2 of the others."""

from __future__ import annotations

import time

import pytest
from conftest import Cluster, create_topic, wait_for
from metrics_scrape import scrape
from test_thirdparty_flexible import versions_used

from broker.protocol.registry import API_BY_KEY, ApiKey
from headrace.devcluster import free_port

pytestmark = pytest.mark.integration  # real clients against a broker process

ADMIN_APIS = [ApiKey.CREATE_PARTITIONS, ApiKey.DELETE_RECORDS, ApiKey.DELETE_GROUPS]


@pytest.fixture(scope="module")
def broker(zookeeper, tmp_path_factory):
    cluster = Cluster(
        tmp_path_factory.mktemp("admin-versions"),
        f"{zookeeper.connect}/admin-versions-{time.monotonic_ns()}",
        1,
    )
    cluster.brokers[0].metrics_port = free_port()
    cluster.start()
    yield cluster.brokers[0]
    cluster.stop()


def _produce(bootstrap: str, topic: str) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        producer.produce(topic, b"%d" % i, partition=0)
    assert producer.flush(30) == 0


def test_confluent_kafka_admin_versions(broker):
    from confluent_kafka import ElectionType, TopicPartition
    from confluent_kafka.admin import AdminClient, NewPartitions

    create_topic(broker.port, "ck-versions", 1)
    _produce(broker.bootstrap, "ck-versions")
    before = scrape(broker.metrics_url)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    [grown] = admin.create_partitions([NewPartitions("ck-versions", 2)]).values()
    grown.result(timeout=30)
    tp = TopicPartition("ck-versions", 0, 5)
    [deleted] = admin.delete_records([tp]).values()
    assert deleted.result(timeout=30).low_watermark == 5
    [group] = admin.delete_consumer_groups(["ck-no-group"]).values()
    with pytest.raises(Exception, match="GROUP_ID_NOT_FOUND"):
        group.result(timeout=30)
    admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition("ck-versions", 0)]).result(30)
    used = wait_for(lambda: _all_counted(broker, before, [*ADMIN_APIS, ApiKey.ELECT_LEADERS]), 10)
    assert used == {"CreatePartitions": {2}, "DeleteRecords": {2}, "DeleteGroups": {2}} | {
        "ElectLeaders": {2}
    }


def test_kafka_python_admin_versions(broker):
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    create_topic(broker.port, "kp-versions", 1)
    _produce(broker.bootstrap, "kp-versions")
    before = scrape(broker.metrics_url)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_partitions({"kp-versions": 2})
        assert admin.delete_records({TopicPartition("kp-versions", 0): 5})
        admin.delete_groups(["kp-no-group"])
        admin.elect_leaders(0, {"kp-versions": [0]}, raise_errors=False)
    finally:
        admin.close()
    used = wait_for(lambda: _all_counted(broker, before, [*ADMIN_APIS, ApiKey.ELECT_LEADERS]), 10)
    assert used == {"CreatePartitions": {3}, "DeleteRecords": {2}, "DeleteGroups": {2}} | {
        "ElectLeaders": {2}
    }


def _all_counted(broker, before, keys) -> dict[str, set[int]] | None:
    used = versions_used(before, scrape(broker.metrics_url))
    names = [API_BY_KEY[k].name for k in keys]
    return {n: used[n] for n in names} if all(n in used for n in names) else None
