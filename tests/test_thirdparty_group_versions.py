"""Which versions of the group coordinator's APIs real clients use against headrace now that it
serves the newest ones, read off the broker's own count of requests by API and version
(``headrace_requests_total``).  librdkafka (2.16) commits and fetches offsets (OffsetCommit v9,
OffsetFetch v8) and its admin client describes and lists groups (DescribeGroups v5, ListGroups
v4) on flexible versions; it joins, syncs, heartbeats, leaves and finds its coordinator on the
newest versions it has of those (JoinGroup v5, SyncGroup v3, Heartbeat v3, LeaveGroup v1,
FindCoordinator v2), all below their flexible ones.  kafka-python's group is flexible
throughout (FindCoordinator v4, JoinGroup v7, SyncGroup v5, LeaveGroup v5, OffsetCommit and
OffsetFetch v8); aiokafka's and kafkajs's keep working on the older versions they know
(kafkajs leaves with LeaveGroup v3's batch of members).  Each group consumes every message."""

from __future__ import annotations

import asyncio
import time

import pytest
import test_thirdparty_flexible as flexible
from conftest import create_topic
from kafkajs_client import GroupMember
from metrics_scrape import scrape

pytestmark = pytest.mark.integration  # real clients against a broker process

broker = flexible.broker  # the same fixture (a module's own broker, with its metrics page)
versions_used = flexible.versions_used

TOPIC = "flexible-groups"
COUNT = 40


@pytest.fixture(scope="module", autouse=True)
def messages(broker):
    """COUNT messages in TOPIC, spread over its two partitions, for every group to read."""
    from confluent_kafka import Producer

    create_topic(broker.port, TOPIC, 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(COUNT):
        producer.produce(TOPIC, value=b"%d" % i, partition=i % 2)
    assert producer.flush(30) == 0


EVERY = {b"%d" % i for i in range(COUNT)}


def test_librdkafka_groups_use_the_flexible_versions(broker):
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    before = scrape(broker.metrics_url)
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "flex-librdkafka",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([TOPIC])
    values = set()
    deadline = time.monotonic() + 60
    while values < EVERY and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            values.add(message.value())
    consumer.commit(asynchronous=False)
    assert {p.offset for p in consumer.committed(consumer.assignment(), timeout=10)} == {COUNT // 2}
    consumer.close()
    assert values == EVERY
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    listed = admin.list_consumer_groups().result(30)
    assert "flex-librdkafka" in {g.group_id for g in listed.valid}
    described = admin.describe_consumer_groups(["flex-librdkafka"])["flex-librdkafka"].result(30)
    assert described.group_id == "flex-librdkafka"
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("flex-librdkafka")])[
        "flex-librdkafka"
    ].result(30)
    assert {p.offset for p in offsets.topic_partitions} == {COUNT // 2}
    used = versions_used(before, scrape(broker.metrics_url))
    flexible = ("OffsetCommit", "OffsetFetch", "DescribeGroups", "ListGroups")
    assert {api: used[api] for api in flexible} == dict(zip(flexible, ({9}, {8}, {5}, {4})))
    newest_it_has = ("JoinGroup", "SyncGroup", "LeaveGroup", "FindCoordinator")
    assert {api: used[api] for api in newest_it_has} == dict(
        zip(newest_it_has, ({5}, {3}, {1}, {2}))
    ), used
    assert used.get("Heartbeat", set()) <= {3}  # if its session lasted a heartbeat


GROUP_APIS = ("FindCoordinator", "JoinGroup", "SyncGroup", "LeaveGroup")
OFFSET_APIS = ("OffsetCommit", "OffsetFetch")


def group_versions(used) -> tuple:
    """The versions used of the group and offset APIs, in the order above."""
    return tuple(used.get(api) for api in GROUP_APIS + OFFSET_APIS)


def test_kafka_python_groups_use_the_flexible_versions(broker):
    from kafka import KafkaConsumer

    before = scrape(broker.metrics_url)
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=broker.bootstrap,
        group_id="flex-kafka-python",
        auto_offset_reset="earliest",
        consumer_timeout_ms=20000,
    )
    values = set()
    for message in consumer:
        values.add(message.value)
        if values >= EVERY:
            break
    consumer.commit()
    consumer.close()
    assert values == EVERY
    used = versions_used(before, scrape(broker.metrics_url))
    assert group_versions(used) == ({4}, {7}, {5}, {5}, {8}, {8}), used


def test_aiokafka_groups_keep_working(broker):
    from aiokafka import AIOKafkaConsumer

    before = scrape(broker.metrics_url)

    async def consume():
        got = set()
        aio = AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=broker.bootstrap,
            group_id="flex-aiokafka",
            auto_offset_reset="earliest",
        )
        await aio.start()
        try:
            while got < EVERY:
                batches = await asyncio.wait_for(aio.getmany(timeout_ms=500), 30)
                got |= {m.value for ms in batches.values() for m in ms}
            await aio.commit()
        finally:
            await aio.stop()
        return got

    assert asyncio.run(consume()) == EVERY
    used = versions_used(before, scrape(broker.metrics_url))
    assert group_versions(used) == ({1}, {5}, {3}, {1}, {3}, {3}), used


def test_kafkajs_group_keeps_working(broker):
    before = scrape(broker.metrics_url)
    member = GroupMember(broker.bootstrap, "flex-kafkajs", TOPIC, "kjs-flex")
    try:
        member.wait_event(lambda e: len(member.messages()) >= COUNT)
    finally:
        member.leave()
    assert {m["value"] for m in member.messages()} == {v.decode() for v in EVERY}
    used = versions_used(before, scrape(broker.metrics_url))
    assert group_versions(used) == ({2}, {5}, {3}, {3}, {5}, {4}), used
