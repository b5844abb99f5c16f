"""A real network partition: brokers run as hosts in network namespaces of their own, joined to
ZooKeeper and to the test by a bridge; a broker is cut off by taking its link down. Its
ZooKeeper session expires and its registration goes; healed, it registers again and serves.
Skipped, saying why, where network namespaces cannot be made."""

from __future__ import annotations

import socket
import subprocess

import pytest
from conftest import metadata, wait_for, zk_session
from netns import NetworkLab

from broker.protocol import zookeeper as layout
from headrace.topics import create_topic_simple

pytestmark = pytest.mark.integration

SESSION_MS = 4000


@pytest.fixture
def lab(tmp_path):
    NetworkLab.skip_unless_possible()
    with NetworkLab(tmp_path, 3, {"zookeeper.session.timeout.ms": str(SESSION_MS)}) as lab:
        yield lab.start()


def leaders(lab: NetworkLab, topic: str) -> dict[int, int]:
    """Partition -> leader id of ``topic``, as broker 1 reports it."""
    first = lab.broker(1)
    body = metadata(first.port, [topic], host=first.host)
    return {p["partition_index"]: p["leader_id"] for p in body["topics"][0]["partitions"]}


def produce(bootstrap: str, topic: str, partitions, count: int, tag: str) -> set[str]:
    """``count`` messages to each of ``partitions`` with confluent-kafka (acks=all); the values
    the brokers acknowledged."""
    from confluent_kafka import Producer

    acknowledged: set[str] = set()

    def delivered(err, msg):
        if err is None:
            acknowledged.add(msg.value().decode())

    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "message.timeout.ms": 15000}
    )
    for partition in partitions:
        for i in range(count):
            producer.produce(
                topic, f"{tag}-{partition}-{i}", partition=partition, on_delivery=delivered
            )
    assert producer.flush(30) == 0
    return acknowledged


def consume_all(bootstrap: str, topic: str, partitions, expected: int) -> list[str]:
    """Every message of ``partitions`` from the beginning, read with confluent-kafka until
    ``expected`` arrived (or 30 s passed)."""
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "netns-check", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    values: list[str] = []
    deadline = time.monotonic() + 30
    try:
        while len(values) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                values.append(msg.value().decode())
    finally:
        consumer.close()
    return values


def registration_owner(lab: NetworkLab, broker_id: int):
    """The session owning ``/brokers/ids/<id>``, or None while it is absent."""
    with zk_session(lab.zookeeper_connect) as client:
        stat = client.exists(layout.broker_path(broker_id))
        return None if stat is None else stat.ephemeralOwner


def test_a_cut_off_broker_loses_its_registration_and_serves_again_once_healed(lab):
    create_topic_simple(lab.broker(1).bootstrap, "events", 6, replication_factor=1)
    wait_for(lambda: all(b >= 1 for b in leaders(lab, "events").values()), 20)
    placement = leaders(lab, "events")
    everywhere = sorted(placement)
    acknowledged = produce(lab.bootstrap, "events", everywhere, 20, "before")
    assert len(acknowledged) == 20 * len(everywhere)

    cut_off = placement[0]
    elsewhere = [p for p, leader in placement.items() if leader != cut_off]
    old_session = registration_owner(lab, cut_off)
    assert old_session is not None

    isolated = lab.broker(cut_off)
    lab.cut(cut_off)
    with pytest.raises(OSError):  # no packet reaches it
        socket.create_connection((isolated.host, isolated.port), 1).close()
    wait_for(lambda: registration_owner(lab, cut_off) is None, 4 * SESSION_MS / 1000)
    # The rest of the cluster keeps serving while the broker is away.
    survivors = ",".join(b.bootstrap for b in lab.brokers if b.broker_id != cut_off)
    acknowledged |= produce(survivors, "events", elsewhere, 10, "during")

    lab.heal(cut_off)
    assert isolated.process.poll() is None  # the same process, not a restart
    wait_for(lambda: registration_owner(lab, cut_off) not in (None, old_session), 30)
    wait_for(lambda: len(metadata(isolated.port, host=isolated.host)["brokers"]) == 3, 20)
    acknowledged |= produce(lab.bootstrap, "events", everywhere, 10, "after")

    read = consume_all(lab.bootstrap, "events", everywhere, len(acknowledged))
    assert sorted(read) == sorted(acknowledged)


def test_the_lab_leaves_nothing_behind_when_a_test_fails(tmp_path):
    NetworkLab.skip_unless_possible()
    with pytest.raises(RuntimeError, match="the test failed"), NetworkLab(tmp_path, 2) as lab:
        lab.start()
        lab.cut(2)
        processes = [lab.zookeeper.process] + [b.process for b in lab.brokers]
        raise RuntimeError("the test failed")
    assert all(p.poll() is not None for p in processes)
    left = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left += subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"hr{lab.token}" not in left
