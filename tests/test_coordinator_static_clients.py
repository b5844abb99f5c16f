"""Static membership (KIP-345) with real clients against a real broker process: consumers
with ``group.instance.id`` (librdkafka through confluent-kafka, and kafka-python's
``group_instance_id``).  A member restarted within its session timeout gets its partitions
back and the other member sees no rebalance (its assignment callbacks are counted); a static
member that stays away past its session timeout is removed and its partitions move."""

from __future__ import annotations

import time

import pytest
import test_coordinator_flexible as flexible
from conftest import create_topic, wait_for

pytestmark = pytest.mark.integration  # real clients against a broker process

TOPIC = "static-members"
PARTITIONS = 4
SESSION_MS = 4000


# the same fixture as the flexible group APIs' (one broker, no initial rebalance delay,
# sessions down to 1 s), a broker of this module's own
broker = flexible.broker


@pytest.fixture(scope="module", autouse=True)
def topic(broker):
    create_topic(broker.port, TOPIC, PARTITIONS)


class Librdkafka:
    """A confluent-kafka consumer with an instance id, counting its rebalance callbacks."""

    def __init__(self, broker, group: str, instance: str):
        from confluent_kafka import Consumer

        self.assigned: list[set[int]] = []
        self.revoked = 0
        self.consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": group,
                "group.instance.id": instance,
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": 300,
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([TOPIC], on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _on_assign(self, consumer, partitions):
        self.assigned.append({p.partition for p in partitions})

    def _on_revoke(self, consumer, partitions):
        if partitions:
            self.revoked += 1

    @property
    def partitions(self) -> set[int]:
        return {p.partition for p in self.consumer.assignment()}

    def poll(self):
        self.consumer.poll(0.05)

    def close(self):
        self.consumer.close()  # a static member sends no LeaveGroup


def poll_until(members, condition, timeout=30.0):
    """Poll every member until ``condition()`` holds (or fail after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            m.poll()
        if condition():
            return
    seen = [(m.assigned, m.revoked, m.partitions) for m in members]
    raise AssertionError(f"the group did not get there in time: {seen}")


def shared(a, b) -> bool:
    return (
        bool(a.partitions)
        and bool(b.partitions)
        and a.partitions | b.partitions == set(range(PARTITIONS))
    )


def described(broker, group: str):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    return admin.describe_consumer_groups([group])[group].result(30)


def test_librdkafka_member_restarted_within_its_session_gets_its_partitions_back(broker):
    a = Librdkafka(broker, "static-restart", "instance-a")
    b = Librdkafka(broker, "static-restart", "instance-b")
    poll_until([a, b], lambda: shared(a, b))
    # the callbacks of a so far; none may come from now on
    a_assigned, a_revoked = len(a.assigned), a.revoked
    b_partitions = b.partitions
    group = described(broker, "static-restart")
    assert sorted(m.group_instance_id for m in group.members) == ["instance-a", "instance-b"]
    old_b = next(m.member_id for m in group.members if m.group_instance_id == "instance-b")

    b.close()
    b = Librdkafka(broker, "static-restart", "instance-b")
    poll_until([a, b], lambda: b.partitions == b_partitions)
    for _ in range(40):  # a keeps polling a while: any rebalance would reach it by now
        a.poll()
        b.poll()
    assert b.assigned == [b_partitions]
    assert (len(a.assigned), a.revoked) == (a_assigned, a_revoked)  # a saw no rebalance
    group = described(broker, "static-restart")
    members = {m.group_instance_id: m.member_id for m in group.members}
    assert set(members) == {"instance-a", "instance-b"} and members["instance-b"] != old_b
    a.close()
    b.close()


def test_librdkafka_static_member_away_past_its_session_is_removed(broker):
    a = Librdkafka(broker, "static-away", "instance-a")
    b = Librdkafka(broker, "static-away", "instance-b")
    poll_until([a, b], lambda: shared(a, b))
    rebalances = len(a.assigned)
    b.close()  # no LeaveGroup: only its session timeout removes it
    poll_until([a], lambda: a.partitions == set(range(PARTITIONS)), timeout=SESSION_MS / 1000 + 30)
    assert len(a.assigned) > rebalances  # a rebalance gave a every partition
    group = described(broker, "static-away")
    assert [m.group_instance_id for m in group.members] == ["instance-a"]
    a.close()


class KafkaPython:
    """A kafka-python consumer with ``group_instance_id``, counting its rebalance callbacks."""

    def __init__(self, broker, group: str, instance: str):
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        owner = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                if revoked:
                    owner.revoked += 1

            def on_partitions_assigned(self, assigned):
                owner.assigned.append({p.partition for p in assigned})

        self.assigned: list[set[int]] = []
        self.revoked = 0
        self.consumer = KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            group_instance_id=instance,
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=300,
            enable_auto_commit=False,
        )
        self.consumer.subscribe([TOPIC], listener=Listener())

    @property
    def partitions(self) -> set[int]:
        return {p.partition for p in self.consumer.assignment()}

    def poll(self):
        self.consumer.poll(timeout_ms=50)

    def close(self):
        self.consumer.close()


def test_kafka_python_member_restarted_within_its_session_gets_its_partitions_back(broker):
    a = KafkaPython(broker, "static-kafka-python", "instance-a")
    b = KafkaPython(broker, "static-kafka-python", "instance-b")
    poll_until([a, b], lambda: shared(a, b) and a.assigned[-1] == a.partitions)
    wait_for(lambda: described(broker, "static-kafka-python").state.name == "STABLE", 30)
    for _ in range(20):
        a.poll()
        b.poll()
    a_assigned, a_revoked = len(a.assigned), a.revoked
    b_partitions = b.partitions

    b.close()
    b = KafkaPython(broker, "static-kafka-python", "instance-b")
    poll_until([a, b], lambda: b.partitions == b_partitions)
    for _ in range(40):
        a.poll()
        b.poll()
    assert b.assigned == [b_partitions]
    assert (len(a.assigned), a.revoked) == (a_assigned, a_revoked)  # a saw no rebalance
    group = described(broker, "static-kafka-python")
    assert sorted(m.group_instance_id for m in group.members) == ["instance-a", "instance-b"]
    a.close()
    b.close()


def test_the_replaced_member_id_is_fenced_over_the_wire(broker):
    """Each API hands the instance id to the coordinator: the old member id of a restarted
    instance gets FENCED_INSTANCE_ID on Heartbeat v4, SyncGroup v5, OffsetCommit v8 and
    LeaveGroup v5, the new one is served, and LeaveGroup by instance id alone removes it."""
    from request_bodies import join_group_body

    from broker.protocol.registry import ApiKey
    from consumers.client import BrokerConnection

    group, fenced = "static-wire", 82
    body = join_group_body(group, b"m") | {"group_instance_id": "wire-1"}
    with BrokerConnection("127.0.0.1", broker.port, timeout=30) as conn:
        first = conn.request(ApiKey.JOIN_GROUP, body, version=9)
        assert first["error_code"] == 0 and first["member_id"].startswith("wire-1-")
        old, generation = first["member_id"], first["generation_id"]
        ids = {"group_id": group, "generation_id": generation, "group_instance_id": "wire-1"}
        sync = ids | {"protocol_type": None, "protocol_name": None}
        given = [{"member_id": old, "assignment": b"mine"}]
        assert (
            conn.request(ApiKey.SYNC_GROUP, sync | {"member_id": old, "assignments": given}, 5)[
                "assignment"
            ]
            == b"mine"
        )
        again = conn.request(ApiKey.JOIN_GROUP, body, version=9)  # the process restarted
        new = again["member_id"]
        assert (again["error_code"], again["generation_id"]) == (0, generation) and new != old
        assert again["skip_assignment"] is True and again["leader"] == new  # v9: leads, skips

        def commit(member):
            partitions = [{"partition_index": 0, "committed_offset": 1, "committed_metadata": None}]
            request = {
                "group_id": group,
                "generation_id_or_member_epoch": generation,
                "member_id": member,
                "group_instance_id": "wire-1",
                "topics": [{"name": TOPIC, "partitions": partitions}],
            }
            answer = conn.request(ApiKey.OFFSET_COMMIT, request, version=8)
            return answer["topics"][0]["partitions"][0]["error_code"]

        for member, code in ((old, fenced), (new, 0)):
            beat = conn.request(ApiKey.HEARTBEAT, ids | {"member_id": member}, version=4)
            synced = conn.request(
                ApiKey.SYNC_GROUP, sync | {"member_id": member, "assignments": []}, version=5
            )
            assert (beat["error_code"], synced["error_code"], commit(member)) == (code,) * 3
        assert synced["assignment"] == b"mine"  # the new id has the old one's assignment

        def leave(member):
            who = {"member_id": member, "group_instance_id": "wire-1", "reason": None}
            answer = conn.request(ApiKey.LEAVE_GROUP, {"group_id": group, "members": [who]}, 5)
            return answer["members"][0]["error_code"]

        assert leave(old) == fenced
        assert leave("") == 0  # by instance id alone
        assert leave("") == 25  # UNKNOWN_MEMBER_ID: it is gone
