"""Replicated topics over their life (3 brokers, a real ZooKeeper): a topic deleted while a
replica is down leaves no log on it once it returns, a topic created again under that name
is not confused with the old one (topic ids), logs of unknown origin are set aside; the
preferred replica takes leadership back while producers go on; ListOffsets answers the
leader epoch of the offset it found; a Fetch from a broker that is not a replica is refused;
a consumer's long poll on a replicated partition waits for the high watermark (also
pure, on a Clock)."""

from __future__ import annotations

import shutil
import uuid

from conftest import create_topic, wait_for, zk_session
from request_bodies import fetch_body, produce_body
from test_replica_cluster import Sender, read_back, state

from broker.protocol import zookeeper as layout
from broker.protocol.records import build_batch, decode_batches
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection

NOT_LEADER_OR_FOLLOWER, UNKNOWN_LEADER_EPOCH = 6, 75


def log_dir(cluster, broker_id: int):
    return cluster.broker(broker_id).workdir / f"broker-{broker_id}-logs"


def entries(cluster, broker_id: int, prefix: str) -> list[str]:
    return sorted(
        p.name for p in log_dir(cluster, broker_id).iterdir() if p.name.startswith(prefix)
    )


def delete_topic(port: int, name: str) -> None:
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        body = {"topic_names": [name], "timeout_ms": 10000}
        answer = conn.request(ApiKey.DELETE_TOPICS, body)
    assert [r["error_code"] for r in answer["responses"]] == [0]


def topic_id(cluster, broker_id: int, partition_dir: str) -> str:
    text = (log_dir(cluster, broker_id) / partition_dir / "partition.metadata").read_text()
    return text.split("topic_id:")[1].strip()


def test_topics_deleted_while_a_replica_was_down_leave_no_log_on_it_and_a_new_one_is_not_confused(
    make_cluster,
):
    cluster = make_cluster(3, min_insync_replicas=2, zookeeper_session_timeout_ms=6000)
    port = cluster.brokers[0].port
    for name in ("gone", "again"):
        create_topic(port, name, 2, replication_factor=3)
        sender = Sender(cluster.bootstrap, name)
        sender.send(100, 2)
        assert sender.flush(20) == 0 and sender.failures == []
    returning = cluster.broker(3)
    wait_for(lambda: len(entries(cluster, 3, "gone-")) == 2, 10)
    wait_for(lambda: len(entries(cluster, 3, "again-")) == 2, 10)
    old_id = topic_id(cluster, 3, "again-0")
    # A log no tombstone speaks for: a copy of one partition under a name and an id nobody
    # uses.
    unknown = log_dir(cluster, 3) / "unknown-0"
    shutil.copytree(log_dir(cluster, 3) / "gone-0", unknown)
    (unknown / "partition.metadata").write_text(f"version: 0\ntopic_id: {uuid.uuid4().hex}\n")

    returning.kill()
    delete_topic(port, "gone")
    delete_topic(port, "again")
    create_topic(port, "again", 2, replication_factor=3)
    new = Sender(cluster.bootstrap, "again")
    new.send(10, 2)
    assert new.flush(20) == 0 and new.failures == []
    with zk_session(cluster.zookeeper_connect) as zk:
        tombstones = zk.get_children(layout.DELETED_TOPICS)
        assert old_id in tombstones and len(tombstones) == 2
        for tombstone in tombstones:  # the live replicas are off them already
            path = layout.deleted_topic_path(tombstone)
            wait_for(lambda p=path: layout.decode_deleted_topic(zk.get(p)[0]).replicas == (3,), 10)

        returning.start()
        wait_for(lambda: not entries(cluster, 3, "gone-"), 20)
        wait_for(lambda: zk.get_children(layout.DELETED_TOPICS) == [], 20)
        for p in range(2):  # the new topic's logs on the returning replica, its data only
            wait_for(lambda p=p: 3 in state(zk, "again", p).isr, 20)
    assert entries(cluster, 3, "again-") == ["again-0", "again-1"]
    new_id = topic_id(cluster, 3, "again-0")
    assert new_id != old_id and topic_id(cluster, 1, "again-0") == new_id
    assert [n for n in entries(cluster, 3, "unknown-0") if n.endswith("-stray")]
    assert not [n for n in entries(cluster, 3, "unknown-0") if not n.endswith("-stray")]
    for other in (1, 2):  # the broker that was up deleted its logs when the topic went
        assert entries(cluster, other, "gone-") == []
    got = read_back(cluster.bootstrap, "again", 10, partitions=2)
    assert got == {0: [b"0", b"2", b"4", b"6", b"8"], 1: [b"1", b"3", b"5", b"7", b"9"]}


def list_offsets(port: int, topic: str, timestamp: int) -> dict:
    asked = {"partition_index": 0, "current_leader_epoch": -1, "timestamp": timestamp}
    body = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [{"name": topic, "partitions": [asked]}],
    }
    with BrokerConnection("127.0.0.1", port, timeout=10) as conn:
        return conn.request(ApiKey.LIST_OFFSETS, body, version=5)["topics"][0]["partitions"][0]


def test_the_preferred_replica_returns_catches_up_and_leads_again_while_producers_go_on(
    make_cluster,
):
    cluster = make_cluster(
        3,
        min_insync_replicas=2,
        zookeeper_session_timeout_ms=6000,
        replica_lag_time_max_ms=3000,
        auto_leader_rebalance_enable="true",
        leader_imbalance_check_interval_seconds=1,
    )
    create_topic(cluster.brokers[0].port, "preferred", 1, replication_factor=3)
    sender = Sender(cluster.bootstrap, "preferred")
    with zk_session(cluster.zookeeper_connect) as zk:
        preferred = layout.decode_topic(zk.get(layout.topic_path("preferred"))[0]).partitions[0][0]
        wait_for(lambda: state(zk, "preferred", 0).leader == preferred, 10)
        sender.send(200)
        assert sender.flush(20) == 0
        cluster.broker(preferred).kill()
        wait_for(lambda: state(zk, "preferred", 0).leader not in (preferred, -1), 20)
        sender.send(200)  # to the new leader while the preferred one is away
        assert sender.flush(30) == 0
        cluster.broker(preferred).start()
        sender.send(200)  # while it catches up and takes over
        wait_for(lambda: state(zk, "preferred", 0).leader == preferred, 30)
        sender.send(200)
        assert sender.flush(30) == 0
        final = state(zk, "preferred", 0)
    assert sender.failures == []
    assert final.leader_epoch >= 2 and preferred in final.isr
    got = read_back(cluster.bootstrap, "preferred", 800, partitions=1)
    assert got[0] == [b"%d" % i for i in range(800)]

    # ListOffsets answers the leader epoch of the offset found: the log's first batch was
    # written at epoch 0, its end is at the current one.
    port = cluster.broker(preferred).port
    earliest = list_offsets(port, "preferred", -2)
    latest = list_offsets(port, "preferred", -1)
    assert (earliest["error_code"], earliest["offset"], earliest["leader_epoch"]) == (0, 0, 0)
    assert (latest["error_code"], latest["offset"]) == (0, 800)
    assert latest["leader_epoch"] == final.leader_epoch


def fetch_from(port: int, body: dict, version: int = 11) -> dict:
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        return conn.request(ApiKey.FETCH, body, version=version)["responses"][0]["partitions"][0]


def test_a_fetch_from_a_broker_that_is_not_a_replica_is_refused_also_with_one_replica(
    make_cluster,
):
    """As Kafka's ``Partition.followerReplicaOrThrow``: UNKNOWN_LEADER_EPOCH when the fetch
    names a current leader epoch, NOT_LEADER_OR_FOLLOWER when it does not."""
    cluster = make_cluster(3)
    create_topic(cluster.brokers[0].port, "single", 1, replication_factor=1)
    create_topic(cluster.brokers[0].port, "triple", 1, replication_factor=3)
    with zk_session(cluster.zookeeper_connect) as zk:
        for topic in ("single", "triple"):
            wait_for(lambda t=topic: state(zk, t, 0).leader > 0, 10)
            known = state(zk, topic, 0)
            port = cluster.broker(known.leader).port
            placement = layout.decode_topic(zk.get(layout.topic_path(topic))[0]).partitions[0]
            body = fetch_body([(topic, 0, 0)])
            body["replica_id"] = 99
            assert fetch_from(port, body)["error_code"] == NOT_LEADER_OR_FOLLOWER, topic
            body["topics"][0]["partitions"][0]["current_leader_epoch"] = known.leader_epoch
            assert fetch_from(port, body)["error_code"] == UNKNOWN_LEADER_EPOCH, topic
            if len(placement) > 1:  # a replica's fetch is served
                body["replica_id"] = next(b for b in placement if b != known.leader)
                assert fetch_from(port, body)["error_code"] == 0


def test_a_consumers_long_poll_on_a_replicated_partition_is_answered_with_data_not_empty_early(
    make_cluster,
):
    cluster = make_cluster(3, min_insync_replicas=2)
    create_topic(cluster.brokers[0].port, "polled", 1, replication_factor=3)
    with zk_session(cluster.zookeeper_connect) as zk:
        wait_for(lambda: len(state(zk, "polled", 0).isr) == 3, 10)
        leader = state(zk, "polled", 0).leader
    batch = build_batch([(b"k", b"awaited")])
    with BrokerConnection("127.0.0.1", cluster.broker(leader).port, timeout=30) as conn:
        for round_ in range(5):
            # The long poll is on the connection first; the produce behind it appends at
            # once, while the high watermark moves only after the followers' next fetch.
            poll = conn.send(ApiKey.FETCH, fetch_body([("polled", 0, round_)], 20000, 1), 11)
            produced = conn.send(ApiKey.PRODUCE, produce_body("polled", 0, batch, acks=1))
            answer = conn.receive(ApiKey.FETCH, poll, 11)["responses"][0]["partitions"][0]
            ack = conn.receive(ApiKey.PRODUCE, produced)
            assert ack["responses"][0]["partition_responses"][0]["error_code"] == 0
            assert answer["error_code"] == 0 and answer["high_watermark"] == round_ + 1
            (got,) = decode_batches(answer["records"])
            assert [(r.offset, r.value) for r in got.records] == [(round_, b"awaited")]


def test_appends_wake_followers_and_a_moved_high_watermark_wakes_consumers():
    from twisted.internet.task import Clock

    from broker.fetch import FetchWaiters

    clock = Clock()
    waiters = FetchWaiters(clock)
    woken = []
    waiters.wait([("t", 0)], 1, 5000).addCallback(lambda _: woken.append("consumer"))
    follower = waiters.wait([("t", 0)], 1, 5000, follower=True)
    follower.addCallback(lambda _: woken.append("follower"))
    waiters.appended("t", 0, 100, consumers=False)  # replicated: not visible yet
    assert woken == ["follower"]
    waiters.hw_moved("t", 0)
    assert woken == ["follower", "consumer"]

    late = waiters.wait([("t", 0)], 1, 5000, follower=True)
    late.addCallback(lambda _: woken.append("late follower"))
    waiters.hw_moved("t", 0)  # followers wait for data, not for the high watermark
    clock.advance(5)
    assert woken[-1] == "late follower" and len(waiters) == 0
