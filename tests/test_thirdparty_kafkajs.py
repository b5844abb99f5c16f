"""kafkajs (Node.js, its own protocol code) against three real brokers: its producer (plain and
idempotent, batches, keys, headers, gzip), a consumer group of two with kafkajs's own group
protocol, and the admin calls served today; what it reports is checked against what the
brokers hold, read back with our own consumer, kcat, ``headrace groups`` and Metadata."""

from __future__ import annotations

import threading
import time

import pytest
from command_lines import kcat_read
from conftest import create_topic, metadata, wait_for, zk_session
from kafkajs_client import (
    GroupMember,
    KafkaJSError,
    admin,
    base_offsets,
    groups_describe,
    produce,
    read_back,
    stored_batches,
)
from test_coordinator_clients import OVERRIDES, coordinator_of

from broker.protocol.zookeeper import decode_topic_config, topic_config_path

pytestmark = pytest.mark.integration  # node processes against brokers


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_kafkajs_producer_keys_and_headers_read_back(cluster3, idempotent):
    topic = f"kjs-produce-{'idem' if idempotent else 'plain'}"
    create_topic(cluster3.brokers[0].port, topic, 3, replication_factor=3)
    batches = [
        [
            {"key": f"k{b}-{i}", "value": f"v{b}-{i}", "partition": i % 3, "headers": {"n": str(i)}}
            for i in range(10)
        ]
        for b in range(5)
    ]
    results = produce(cluster3.bootstrap, topic, batches, idempotent=idempotent)
    offsets = base_offsets(results)
    # Each send put one batch in each partition, at the offsets the broker assigned in order.
    for partition in range(3):
        counts = [sum(1 for m in batch if m["partition"] == partition) for batch in batches]
        expected = [sum(counts[:b]) for b in range(len(batches))]
        assert offsets[partition] == expected
    got = read_back(cluster3.bootstrap, topic, 3, 50)
    assert len(got) == 50
    sent = {(m["partition"], m["key"]): m for batch in batches for m in batch}
    for message in got:
        want = sent[(message.partition, message.key.decode())]
        assert message.value.decode() == want["value"]
        assert [(k, v.decode()) for k, v in message.headers] == [("n", want["headers"]["n"])]
    # kcat agrees, in each partition's order.
    lines = kcat_read(cluster3.bootstrap, topic, "%p %o %k %s\n").splitlines()
    assert sorted(lines) == sorted(
        f"{m.partition} {m.offset} {m.key.decode()} {m.value.decode()}" for m in got
    )


def test_kafkajs_producer_acks_0_tombstones_and_repeated_headers(cluster3):
    topic = "kjs-produce-edges"
    create_topic(cluster3.brokers[0].port, topic, 1, replication_factor=2)
    # acks=0: kafkajs expects no answer and reports no metadata.
    assert produce(cluster3.bootstrap, topic, [[{"key": "a", "value": "one"}]], acks=0) == [[]]
    wait_for(lambda: len(read_back(cluster3.bootstrap, topic, 1, 1)) == 1, 30)
    two = [{"key": "a", "value": None, "headers": {"h": ["x", "y"], "e": ""}}]
    assert base_offsets(produce(cluster3.bootstrap, topic, [two], acks=1)) == {0: [1]}
    got = read_back(cluster3.bootstrap, topic, 1, 2)
    assert [(m.offset, m.key, m.value) for m in got] == [(0, b"a", b"one"), (1, b"a", None)]
    assert sorted(got[1].headers) == [("e", b""), ("h", b"x"), ("h", b"y")]


def test_kafkajs_producer_errors_are_typed(cluster3):
    topic = "kjs-produce-errors"
    create_topic(cluster3.brokers[0].port, topic, 1, replication_factor=1)
    with pytest.raises(KafkaJSError) as unknown:
        produce(cluster3.bootstrap, "kjs-no-such-topic", [[{"value": "x"}]])
    assert unknown.value.type == "UNKNOWN_TOPIC_OR_PARTITION"
    too_large = [[{"value": "x" * 1_100_000}]]  # over message.max.bytes (1048588)
    with pytest.raises(KafkaJSError) as large:
        produce(cluster3.bootstrap, topic, too_large)
    assert large.value.type == "MESSAGE_TOO_LARGE"
    # The broker carries on: the next send is stored and read back alone.
    assert base_offsets(produce(cluster3.bootstrap, topic, [[{"value": "fine"}]])) == {0: [0]}
    assert [m.value for m in read_back(cluster3.bootstrap, topic, 1, 1)] == [b"fine"]


def test_kafkajs_idempotent_producer_batches_carry_its_producer_id(cluster3):
    topic = "kjs-idem-id"
    create_topic(cluster3.brokers[0].port, topic, 1, replication_factor=1)
    batches = [[{"key": "k", "value": f"{b}-{i}"} for i in range(3)] for b in range(4)]
    results = produce(cluster3.bootstrap, topic, batches, idempotent=True)
    assert base_offsets(results) == {0: [0, 3, 6, 9]}
    leader = metadata(cluster3.brokers[0].port, [topic])["topics"][0]["partitions"][0]["leader_id"]
    headers = stored_batches(cluster3.broker(leader), topic, 0)
    assert [h["baseOffset"] for h in headers] == [0, 3, 6, 9]
    assert len({h["producerId"] for h in headers}) == 1 and headers[0]["producerId"] >= 0


def test_kafkajs_send_batch_gzip_to_two_topics_reads_back(cluster3):
    topic = "kjs-sendbatch"
    create_topic(cluster3.brokers[0].port, topic, 4, replication_factor=2)
    batches = [[{"key": f"key-{b}-{i}", "value": f"{b}:{i}"} for i in range(25)] for b in range(4)]
    results = produce(cluster3.bootstrap, topic, batches, send_batch=True, compression="GZIP")
    assert sum(len(offsets) for offsets in base_offsets(results).values()) >= 1
    got = read_back(cluster3.bootstrap, topic, 4, 100)
    assert sorted(m.value.decode() for m in got) == sorted(
        m["value"] for batch in batches for m in batch
    )
    # The same key always went to the same partition (kafkajs's murmur2 partitioner).
    partition_of: dict[bytes, int] = {}
    for m in got:
        assert partition_of.setdefault(m.key, m.partition) == m.partition


def test_kafkajs_admin_creates_topics_and_reads_their_metadata(cluster3):
    bootstrap = cluster3.bootstrap
    spec = {"topic": "kjs-admin-made", "numPartitions": 5, "replicationFactor": 2}
    assert admin(bootstrap, "createTopics", {"topics": [spec], "waitForLeaders": True}) is True
    # kafkajs answers false for a topic that exists already (TOPIC_ALREADY_EXISTS).
    assert admin(bootstrap, "createTopics", {"topics": [spec]}) is False
    ours = metadata(cluster3.brokers[1].port, ["kjs-admin-made"])["topics"][0]
    theirs = admin(bootstrap, "fetchTopicMetadata", {"topics": ["kjs-admin-made"]})["topics"][0]
    assert theirs["name"] == "kjs-admin-made"
    assert [
        (p["partitionId"], p["leader"], p["replicas"], p["isr"]) for p in theirs["partitions"]
    ] == [
        (p["partition_index"], p["leader_id"], p["replica_nodes"], p["isr_nodes"])
        for p in sorted(ours["partitions"], key=lambda p: p["partition_index"])
    ]
    assert all(len(p["replicas"]) == 2 for p in theirs["partitions"])
    names = {t["name"] for t in admin(bootstrap, "fetchTopicMetadata")["topics"]}
    assert "kjs-admin-made" in names
    assert admin(bootstrap, "listTopics").count("kjs-admin-made") == 1
    # Without a partition count or replication factor: the broker's (num.partitions is 3 on
    # the test brokers); configs land in ZooKeeper as the topic's overrides.
    plain = {"topic": "kjs-defaults", "configEntries": [{"name": "retention.ms", "value": "60000"}]}
    assert admin(bootstrap, "createTopics", {"topics": [plain]}) is True
    made = metadata(cluster3.brokers[0].port, ["kjs-defaults"])["topics"][0]["partitions"]
    assert len(made) == 3 and all(len(p["replica_nodes"]) == 1 for p in made)
    with zk_session(cluster3.zookeeper_connect) as zk:
        path = topic_config_path("kjs-defaults")
        assert decode_topic_config(zk.get(path)[0]) == {"retention.ms": "60000"}
    for topic, configs, error in (
        ("kjs-bad-config", [{"name": "retention.ms", "value": "soon"}], "INVALID_CONFIG"),
        ("kjs/bad/name", [], "INVALID_TOPIC_EXCEPTION"),
    ):
        with pytest.raises(KafkaJSError) as refused:
            admin(
                bootstrap, "createTopics", {"topics": [{"topic": topic, "configEntries": configs}]}
            )
        assert refused.value.type == error
    # kafkajs deletes topics too (DeleteTopics).
    assert admin(bootstrap, "createTopics", {"topics": [{**spec, "topic": "kjs-doomed"}]}) is True
    admin(bootstrap, "deleteTopics", {"topics": ["kjs-doomed"]})
    wait_for(lambda: "kjs-doomed" not in admin(bootstrap, "listTopics"), 30)
    assert metadata(cluster3.brokers[2].port, ["kjs-doomed"])["topics"][0]["error_code"] == 3
    with pytest.raises(KafkaJSError) as refused:
        admin(
            bootstrap,
            "createTopics",
            {"topics": [{**spec, "topic": "kjs-rf4", "replicationFactor": 4}]},
        )
    assert refused.value.type == "INVALID_REPLICATION_FACTOR"


def test_kafkajs_admin_describes_the_cluster(cluster3):
    cluster = admin(cluster3.bootstrap, "describeCluster")
    ours = metadata(cluster3.brokers[0].port, [])
    assert sorted((b["nodeId"], b["port"]) for b in cluster["brokers"]) == sorted(
        (b["node_id"], b["port"]) for b in ours["brokers"]
    )
    assert cluster["controller"] == ours["controller_id"]
    assert cluster["clusterId"] == ours["cluster_id"]


def test_kafkajs_admin_topic_offsets_and_by_timestamp(cluster3):
    topic = "kjs-offsets"
    create_topic(cluster3.brokers[0].port, topic, 2, replication_factor=3)
    base = 1_700_000_000_000
    batches = [
        [{"value": f"{p}-{i}", "partition": p, "timestamp": str(base + i * 1000)} for i in range(6)]
        for p in range(2)
    ]
    produce(cluster3.bootstrap, topic, batches)
    offsets = admin(cluster3.bootstrap, "fetchTopicOffsets", topic)
    assert sorted((o["partition"], o["low"], o["high"], o["offset"]) for o in offsets) == [
        (0, "0", "6", "6"),
        (1, "0", "6", "6"),
    ]
    # The first offset whose timestamp is at or after the one asked for.
    by_time = admin(cluster3.bootstrap, "fetchTopicOffsetsByTimestamp", topic, base + 2500)
    assert sorted((o["partition"], o["offset"]) for o in by_time) == [(0, "3"), (1, "3")]
    # After the last record: kafkajs falls back on the high watermark.
    later = admin(cluster3.bootstrap, "fetchTopicOffsetsByTimestamp", topic, base + 99_000)
    assert sorted((o["partition"], o["offset"]) for o in later) == [(0, "6"), (1, "6")]
    got = read_back(cluster3.bootstrap, topic, 2, 12)
    assert [m.timestamp for m in got if m.partition == 0] == [base + i * 1000 for i in range(6)]
    with pytest.raises(KafkaJSError) as unknown:
        admin(cluster3.bootstrap, "fetchTopicOffsets", "kjs-no-such-topic")
    assert unknown.value.type == "UNKNOWN_TOPIC_OR_PARTITION"


def test_kafkajs_group_of_two_shares_and_hands_over_partitions(cluster3):
    topic, group, partitions = "kjs-group", "kjs-group-of-two", 4
    create_topic(cluster3.brokers[0].port, topic, partitions, replication_factor=2)
    first = [[{"key": f"a{i}", "value": f"first-{i}", "partition": i % 4} for i in range(40)]]
    produce(cluster3.bootstrap, topic, first)
    one = GroupMember(cluster3.bootstrap, group, topic, "kjs-one")
    two = None
    try:
        one.wait_event(lambda e: e["event"] == "assigned" and len(e["partitions"]) == partitions)
        two = GroupMember(cluster3.bootstrap, group, topic, "kjs-two")
        two.wait_event(lambda e: e["event"] == "assigned" and e["partitions"])
        wait_for(lambda: len(one.assignment()) == 2 and len(two.assignment()) == 2, 30)
        assert sorted(one.assignment() + two.assignment()) == list(range(partitions))

        described = admin(cluster3.bootstrap, "describeGroups", [group])["groups"][0]
        assert described["state"] == "Stable" and described["protocolType"] == "consumer"
        members = {m["clientId"]: m for m in described["members"]}
        assert sorted(members) == ["kjs-one", "kjs-two"]
        # The members' metadata and assignments come back as kafkajs wrote them.
        for member in (one, two):
            described_member = members[member.name]
            assert described_member["subscription"]["topics"] == [topic]
            assert described_member["assignment"]["assignment"] == {topic: member.assignment()}
            assert described_member["clientHost"] == "/127.0.0.1"
        listed = admin(cluster3.bootstrap, "listGroups")["groups"]
        assert {"groupId": group, "protocolType": "consumer"} in listed

        second = [[{"value": f"second-{i}", "partition": i % 4} for i in range(40)]]
        produce(cluster3.bootstrap, topic, second)
        for member in (one, two):
            owned = member.assignment()
            wait_for(
                lambda m=member, o=owned: (
                    {e["value"] for e in m.messages()}
                    >= {f"second-{i}" for i in range(40) if i % 4 in o}
                ),
                30,
            )
            assert {
                e["partition"] for e in member.messages() if e["value"].startswith("second")
            } <= set(owned)
        seen = {e["value"] for e in one.messages() + two.messages()}
        assert seen == {m["value"] for m in first[0] + second[0]}

        # The second member leaves: its partitions go to the first.
        two.leave()
        assert two.events[-1]["event"] == "stopped"
        one.wait_event(lambda e: e["event"] == "assigned" and len(e["partitions"]) == partitions)
        third = [[{"value": f"third-{i}", "partition": i % 4} for i in range(20)]]
        produce(cluster3.bootstrap, topic, third)
        wait_for(
            lambda: {f"third-{i}" for i in range(20)} <= {e["value"] for e in one.messages()}, 30
        )
        # Committed offsets reach the end of every partition, as the brokers and ZooKeeper see
        # them (kafkajs commits every 200 ms here and on leaving).
        wait_for(
            lambda: all(c == e == 25 for c, e in groups_describe(cluster3, group).values()), 30
        )
        one.leave()
    finally:
        one.kill()
        if two is not None:
            two.kill()
    rows = groups_describe(cluster3, group)
    assert rows == {p: (25, 25) for p in range(partitions)}
    fetched = admin(cluster3.bootstrap, "fetchOffsets", {"groupId": group, "topics": [topic]})
    assert sorted((p["partition"], p["offset"]) for p in fetched[0]["partitions"]) == [
        (p, "25") for p in range(partitions)
    ]
    empty = admin(cluster3.bootstrap, "describeGroups", [group])["groups"][0]
    assert empty["state"] == "Empty" and empty["members"] == []
    # With no member left, kafkajs's setOffsets (a member of its own, seeking and committing)
    # moves the group back; the brokers and ZooKeeper agree.
    moved = [{"partition": 0, "offset": "10"}, {"partition": 3, "offset": "0"}]
    admin(cluster3.bootstrap, "setOffsets", {"groupId": group, "topic": topic, "partitions": moved})
    assert groups_describe(cluster3, group) == {0: (10, 25), 1: (25, 25), 2: (25, 25), 3: (0, 25)}


def test_kafkajs_group_follows_its_coordinator_and_leaders_when_a_broker_dies(make_cluster):
    cluster = make_cluster(3, **{k.replace(".", "_"): v for k, v in OVERRIDES.items()})
    topic, group = "kjs-failover", "kjs-failover-group"
    node = coordinator_of(cluster, group)
    create_topic(cluster.brokers[0].port, topic, 4, replication_factor=3)
    before = [[{"value": f"before-{i}", "partition": i % 4} for i in range(40)]]
    produce(cluster.bootstrap, topic, before)
    members = [GroupMember(cluster.bootstrap, group, topic, f"kjs-{n}") for n in ("a", "b")]
    try:
        wait_for(lambda: sorted(p for m in members for p in m.assignment()) == [0, 1, 2, 3], 45)
        wait_for(lambda: len({e["value"] for m in members for e in m.messages()}) == 40, 30)
        # The coordinator dies with its share of the partitions' leaderships.
        cluster.broker(node).kill()
        wait_for(lambda: coordinator_of(cluster, group) != node, 30)
        survivors = ",".join(b.bootstrap for b in cluster.brokers if b.process is not None)
        after = [[{"value": f"after-{i}", "partition": i % 4} for i in range(40)]]
        # Idempotent, with retries that outlast the leaders' failover: stored once each.
        produce(survivors, topic, after, idempotent=True, retries=40)
        expected = {m["value"] for m in before[0] + after[0]}
        wait_for(lambda: {e["value"] for m in members for e in m.messages()} >= expected, 90)
        wait_for(lambda: sorted(p for m in members for p in m.assignment()) == [0, 1, 2, 3], 45)
        for member in members:
            member.leave()
    finally:
        for member in members:
            member.kill()
    committed = groups_describe(cluster, group)
    assert {p: c for p, (c, _end) in committed.items()} == {p: 20 for p in range(4)}


def test_kafkajs_idempotent_producer_through_a_leader_kill_stores_each_message_once(make_cluster):
    cluster = make_cluster(3)
    topic = "kjs-idem-failover"
    create_topic(cluster.brokers[0].port, topic, 1, replication_factor=3)
    leader = metadata(cluster.brokers[0].port, [topic])["topics"][0]["partitions"][0]["leader_id"]
    batches = [[{"value": f"{b}-{i}"} for i in range(5)] for b in range(60)]
    sent: dict = {}

    def send():
        try:
            sent["results"] = produce(
                cluster.bootstrap, topic, batches, idempotent=True, retries=40, pause_ms=100
            )
        except Exception as exc:  # reported below
            sent["error"] = exc

    thread = threading.Thread(target=send)
    thread.start()
    time.sleep(2)  # some sends acknowledged by the first leader, the rest after the kill
    cluster.broker(leader).kill()
    thread.join(120)
    assert "error" not in sent, sent.get("error")
    offsets = base_offsets(sent["results"])
    assert offsets == {0: list(range(0, 300, 5))}
    survivor = next(b for b in cluster.brokers if b.process is not None)
    got = read_back(survivor.bootstrap, topic, 1, 300)
    assert [m.value.decode() for m in got] == [m["value"] for batch in batches for m in batch]
    # One producer id throughout, and the kill fell within the sends: the batches were
    # appended under two leader epochs.
    headers = stored_batches(survivor, topic, 0)
    assert len({h["producerId"] for h in headers}) == 1
    assert len({h["partitionLeaderEpoch"] for h in headers}) >= 2


def test_kafkajs_sees_an_idle_group_after_its_coordinator_restarts(make_cluster):
    cluster = make_cluster(1)
    topic, group = "kjs-idle", "kjs-idle-group"
    create_topic(cluster.brokers[0].port, topic, 2, replication_factor=1)
    produce(cluster.bootstrap, topic, [[{"value": str(i), "partition": i % 2} for i in range(6)]])
    member = GroupMember(cluster.bootstrap, group, topic, "kjs-idle")
    try:
        wait_for(lambda: groups_describe(cluster, group) == {0: (3, 3), 1: (3, 3)}, 45)
        member.leave()
    finally:
        member.kill()
    # The coordinator forgets what it held in memory; the group lives on in ZooKeeper, and a
    # Kafka broker would still list it (Empty) while it has offsets.
    broker = cluster.brokers[0]
    broker.stop()
    broker.start()
    wait_for(lambda: metadata(broker.port)["brokers"], 30)
    listed = admin(cluster.bootstrap, "listGroups")["groups"]
    assert {"groupId": group, "protocolType": ""} in listed
    described = admin(cluster.bootstrap, "describeGroups", [group])["groups"][0]
    assert (described["errorCode"], described["state"], described["members"]) == (0, "Empty", [])
    fetched = admin(cluster.bootstrap, "fetchOffsets", {"groupId": group, "topics": [topic]})
    assert sorted((p["partition"], p["offset"]) for p in fetched[0]["partitions"]) == [
        (0, "3"),
        (1, "3"),
    ]
    # A name nobody used is still unknown (Dead), as in Kafka.
    unknown = admin(cluster.bootstrap, "describeGroups", ["kjs-never-used"])["groups"][0]
    assert unknown["state"] == "Dead"
    assert "kjs-never-used" not in {g["groupId"] for g in listed}
