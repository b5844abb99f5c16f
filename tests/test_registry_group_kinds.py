"""One owner per group name: the paper's ZooKeeper consumers ("zookeeper"), Kafka clients
coordinated by the brokers ("kafka") and loaders ("loader") each keep their groups to
themselves, recorded in ``/consumers/<group>/kind``, until ``headrace groups delete``.

Real ZooKeeper, a real broker, and unmodified Kafka clients (kcat -G, confluent-kafka)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from command_lines import group_args
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from conftest import create_topic, wait_for, zk_session
from request_bodies import join_group_body

from broker.protocol import zookeeper as layout
from broker.protocol.offsets import GroupKindError, claim_kind, read_kind
from broker.protocol.registry import ApiKey
from consumers.group import GroupConsumer
from consumers.producer import Producer
from loaders import run as loader_run
from loaders.config import LoaderConfig

PARTITIONS = 2
MESSAGES = 40


@pytest.fixture
def zk(cluster1):
    with zk_session(cluster1.zookeeper_connect) as client:
        yield client


def topic_with_messages(cluster, name: str) -> str:
    create_topic(cluster.brokers[0].port, name, PARTITIONS)
    with Producer(cluster.bootstrap) as producer:
        for i in range(MESSAGES):
            producer.send(name, json.dumps({"n": i}).encode(), partition=i % PARTITIONS)
    return name


def offsets(zk, group: str, topic: str) -> dict[int, bytes]:
    base = layout.topic_offsets_path(group, topic)
    return (
        {int(p): zk.get(layout.offset_path(group, topic, p))[0] for p in zk.get_children(base)}
        if zk.exists(base)
        else {}
    )


def cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "headrace.cli", "--log-level", "WARNING", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def paper_group(cluster, group: str, topic: str) -> None:
    """A ZooKeeper group that consumed half of the topic and committed."""
    with GroupConsumer(
        group, [topic], cluster.zookeeper_connect, auto_offset_reset="smallest"
    ) as member:
        got = []
        while len(got) < MESSAGES // 2:
            got += member.poll(0.5, MESSAGES // 2 - len(got))


def loader_group(cluster, group: str, topic: str, tmp_path) -> None:
    """A loader's group that loaded the whole topic."""
    config = LoaderConfig(
        zookeeper=cluster.zookeeper_connect,
        topics=[topic],
        group=group,
        url=str(tmp_path / "warehouse"),
        workers=1,
        session_timeout_ms=2000,
    )
    assert loader_run.load(config) == 0


def kafka_group(cluster, group: str, topic: str) -> None:
    """A Kafka clients' group set up by a tool: a standalone commit (generation -1)."""
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    try:
        c.commit(
            offsets=[TopicPartition(topic, p, 7) for p in range(PARTITIONS)], asynchronous=False
        )
    finally:
        c.close()


OWNERS = {
    "zookeeper": lambda cluster, group, topic, tmp: paper_group(cluster, group, topic),
    "loader": loader_group,
    "kafka": lambda cluster, group, topic, tmp: kafka_group(cluster, group, topic),
}


@pytest.mark.parametrize("owner", ["zookeeper", "loader"])
def test_kafka_clients_are_refused_on_another_kinds_group_and_its_offsets_stay(
    cluster1, zk, tmp_path, owner
):
    topic, group = topic_with_messages(cluster1, f"kind-k-{owner}"), f"kind-k-{owner}-g"
    OWNERS[owner](cluster1, group, topic, tmp_path)
    before = offsets(zk, group, topic)
    assert before and read_kind(zk, group) == owner

    # a tool's standalone commit
    c = Consumer({"bootstrap.servers": cluster1.bootstrap, "group.id": group})
    with pytest.raises(KafkaException) as refused:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    assert refused.value.args[0].code() == KafkaError.UNKNOWN_MEMBER_ID
    c.close()

    # a member joining the group
    c = Consumer(
        {
            "bootstrap.servers": cluster1.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    c.subscribe([topic])
    errors, messages = [], 0
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error():
            errors.append(m.error().code())
        elif m is not None:
            messages += 1
    c.close()
    assert KafkaError.INCONSISTENT_GROUP_PROTOCOL in errors and messages == 0

    # kcat -G
    kcat = subprocess.Popen(
        ["kcat", "-b", cluster1.bootstrap, "-G", group, topic, "-o", "beginning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = kcat.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        kcat.kill()
        out, err = kcat.communicate()
    assert out == "" and "Inconsistent group protocol" in err, err

    assert offsets(zk, group, topic) == before and read_kind(zk, group) == owner


def test_a_standalone_commit_to_an_empty_kafka_group_works_and_claims_the_name(cluster1, zk):
    topic, group = topic_with_messages(cluster1, "kind-standalone"), "kind-standalone-g"
    kafka_group(cluster1, group, topic)
    assert offsets(zk, group, topic) == {p: b"7" for p in range(PARTITIONS)}
    assert read_kind(zk, group) == "kafka"
    kafka_group(cluster1, group, topic)  # again: it is a kafka group now
    described = cli("groups", "--zookeeper", cluster1.zookeeper_connect, "describe", group)
    assert described.returncode == 0 and "kind kafka" in described.stdout.splitlines()[0]


@pytest.mark.parametrize("owner", ["kafka", "loader"])
def test_a_paper_member_is_refused_on_another_kinds_group(cluster1, zk, tmp_path, owner):
    topic, group = topic_with_messages(cluster1, f"kind-z-{owner}"), f"kind-z-{owner}-g"
    OWNERS[owner](cluster1, group, topic, tmp_path)
    before = offsets(zk, group, topic)
    member = GroupConsumer(group, [topic], cluster1.zookeeper_connect, auto_offset_reset="smallest")
    with pytest.raises(GroupKindError, match=f"belongs to .* \\(kind {owner}\\)"):
        member.start()
    assert member.state == "closed"
    consumed = cli(
        *group_args("consume", cluster1.zookeeper_connect, topic, group),
        "--from-beginning",
        "--timeout",
        "2",
    )
    assert consumed.returncode == 2 and consumed.stdout == ""
    assert (
        consumed.stderr.startswith("headrace consume: group") and f"kind {owner}" in consumed.stderr
    )
    assert len(consumed.stderr.splitlines()) == 1
    assert offsets(zk, group, topic) == before and not zk.exists(
        layout.member_path(group, member.consumer_id)
    )


@pytest.mark.parametrize("owner", ["zookeeper", "kafka"])
def test_a_loader_is_refused_on_another_kinds_group(cluster1, zk, tmp_path, owner):
    topic, group = topic_with_messages(cluster1, f"kind-l-{owner}"), f"kind-l-{owner}-g"
    OWNERS[owner](cluster1, group, topic, tmp_path)
    before = offsets(zk, group, topic)
    loaded = cli(
        *group_args("load", cluster1.zookeeper_connect, topic, group),
        "--to",
        str(tmp_path / "wh"),
    )
    assert loaded.returncode != 0
    assert f"(kind {owner})" in loaded.stderr and "headrace groups delete" in loaded.stderr
    assert [line for line in loaded.stderr.splitlines() if line.strip()][-1].startswith(
        "headrace load: group"
    )
    assert offsets(zk, group, topic) == before and not zk.exists(layout.loader_path(group))


def test_groups_delete_is_refused_while_members_live_then_frees_the_name(cluster1, zk):
    topic, group = topic_with_messages(cluster1, "kind-delete"), "kind-delete-g"
    member = GroupConsumer(
        group, [topic], cluster1.zookeeper_connect, auto_offset_reset="smallest"
    ).start()
    try:
        refused = cli("groups", "--zookeeper", cluster1.zookeeper_connect, "delete", group)
        assert refused.returncode == 1 and "1 live member" in refused.stderr
        assert read_kind(zk, group) == "zookeeper"
    finally:
        member.close()
    deleted = cli("groups", "--zookeeper", cluster1.zookeeper_connect, "delete", group)
    assert deleted.returncode == 0, deleted.stderr
    assert not zk.exists(layout.group_path(group))

    # the name is free: Kafka clients take it; then a live Kafka member blocks deletion too
    c = Consumer(
        {
            "bootstrap.servers": cluster1.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    c.subscribe([topic])
    try:
        got = 0
        deadline = time.monotonic() + 30
        while got < MESSAGES and time.monotonic() < deadline:
            m = c.poll(0.2)
            got += m is not None and not m.error()
        assert got == MESSAGES and read_kind(zk, group) == "kafka"
        c.commit(asynchronous=False)
        refused = cli("groups", "--zookeeper", cluster1.zookeeper_connect, "delete", group)
        assert refused.returncode == 1 and "live member" in refused.stderr
    finally:
        c.close()
    wait_for(
        lambda: (
            cli("groups", "--zookeeper", cluster1.zookeeper_connect, "delete", group).returncode
            == 0
        ),
        30,
    )
    assert not zk.exists(layout.group_path(group))
    missing = cli("groups", "--zookeeper", cluster1.zookeeper_connect, "delete", group)
    assert missing.returncode == 1 and "no group" in missing.stderr


def test_groups_from_before_kinds_are_recognised_by_their_nodes(zk_chroot):
    with zk_session(zk_chroot) as zk:
        plan = layout.encode_plan({"created_ms": 0, "partitions": {}})
        zk.create(layout.plan_path("old-loader"), plan, makepath=True)
        zk.ensure_path(layout.members_path("old-loader"))
        zk.ensure_path(layout.members_path("old-paper"))
        zk.create(layout.offset_path("old-offsets", "t", 0), layout.encode_offset(5), makepath=True)
        assert read_kind(zk, "old-loader") == "loader" and read_kind(zk, "old-paper") == "zookeeper"
        assert read_kind(zk, "old-offsets") is None
        with pytest.raises(GroupKindError, match="kind loader"):
            claim_kind(zk, "old-loader", "zookeeper")
        with pytest.raises(GroupKindError, match="kind zookeeper"):
            claim_kind(zk, "old-paper", "kafka")
        claim_kind(zk, "old-offsets", "kafka")  # offsets only: the first user claims it
        assert [
            zk.get(f"/consumers/{g}/kind")[0] for g in ("old-loader", "old-paper", "old-offsets")
        ] == [b"loader", b"zookeeper", b"kafka"]


@pytest.mark.parametrize("bad", ["", "a/b", "..", "tab\there", "del\x7f"])
def test_group_ids_that_cannot_name_a_zookeeper_node_get_invalid_group_id(cluster1, bad):
    from consumers.client import BrokerConnection

    join = join_group_body(bad)
    commit = {
        "group_id": bad,
        "generation_id_or_member_epoch": -1,
        "member_id": "",
        "group_instance_id": None,
        "topics": [
            {
                "name": "t",
                "partitions": [
                    {
                        "partition_index": 0,
                        "committed_offset": 1,
                        "committed_leader_epoch": -1,
                        "committed_metadata": None,
                    }
                ],
            }
        ],
    }
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port, timeout=30) as conn:
        assert conn.request(ApiKey.JOIN_GROUP, join)["error_code"] == 24  # INVALID_GROUP_ID
        assert (
            conn.request(ApiKey.OFFSET_COMMIT, commit)["topics"][0]["partitions"][0]["error_code"]
            == 24
        )
        assert (
            conn.request(ApiKey.JOIN_GROUP, join | {"group_id": "kind-fine"})["error_code"] == 79
        )  # still serving
