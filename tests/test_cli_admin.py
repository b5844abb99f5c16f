"""``headrace topics alter --partitions`` (alone and with ``--config``) and ``headrace groups
--reset-offsets`` run as commands against a real broker and ZooKeeper: the plan printed by a
dry run, each way of choosing the new offsets, refusals while a group is active and for a
loader's group without ``--force``; and the reset's arithmetic alone."""

from __future__ import annotations

import contextlib
import subprocess

import pytest
from admin_clients import confluent_admin
from command_lines import HEADRACE
from conftest import create_topic, metadata, wait_for, zk_session

from broker.protocol import zookeeper as layout
from broker.protocol.offsets import claim_kind, read_offset, write_offset
from headrace.reset_offsets import ResetError, parse_datetime, target_offset


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HEADRACE, *args], capture_output=True, text=True, timeout=120)


def test_targets_are_kept_within_what_the_brokers_hold():
    assert target_offset("earliest", None, 7, 3, 20) == 3
    assert target_offset("latest", None, 7, 3, 20) == 20
    assert target_offset("offset", 1, 7, 3, 20) == 3
    assert target_offset("offset", 11, 7, 3, 20) == 11
    assert target_offset("shift", -2, 7, 3, 20) == 5
    assert target_offset("shift", 100, 7, 3, 20) == 20
    assert target_offset("datetime", -1, 7, 3, 20) == 20  # no record that recent: the end
    assert target_offset("datetime", 9, None, 3, 20) == 9
    with pytest.raises(ResetError):
        target_offset("shift", 1, None, 3, 20)
    assert parse_datetime("2026-12-07T14:00:00Z") == 1796652000000
    assert parse_datetime("2026-12-07T15:00:00+01:00") == 1796652000000
    with pytest.raises(ResetError):
        parse_datetime("yesterday")


def test_topics_alter_adds_partitions_and_refuses_fewer(cluster1):
    port = cluster1.brokers[0].port
    create_topic(port, "cli-grown", 2)
    bootstrap = ["--bootstrap-server", cluster1.bootstrap]
    done = _run("topics", "alter", "--topic", "cli-grown", "--partitions", "4", *bootstrap)
    assert done.returncode == 0, done.stderr
    assert "now has 4 partitions" in done.stdout
    assert len(metadata(port, ["cli-grown"])["topics"][0]["partitions"]) == 4
    fewer = _run("topics", "alter", "--topic", "cli-grown", "--partitions", "3", *bootstrap)
    assert fewer.returncode == 1 and "INVALID_PARTITIONS" in fewer.stderr
    assert "Topic currently has 4 partitions" in fewer.stderr
    unknown = _run("topics", "alter", "--topic", "cli-none", "--partitions", "3", *bootstrap)
    assert unknown.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in unknown.stderr
    nothing = _run("topics", "alter", "--topic", "cli-grown", *bootstrap)
    assert nothing.returncode == 2 and "--partitions N" in nothing.stderr


def _retention(cluster, topic: str) -> str:
    from confluent_kafka.admin import ConfigResource

    resource = ConfigResource("topic", topic)
    admin = confluent_admin(cluster)  # kept alive until its answer
    [future] = admin.describe_configs([resource]).values()
    return future.result(timeout=30)["retention.ms"].value


def test_topics_alter_adds_partitions_and_sets_configs_in_one_call(cluster1):
    port = cluster1.brokers[0].port
    create_topic(port, "cli-both", 1)
    bootstrap = ["--bootstrap-server", cluster1.bootstrap]
    both = ["--partitions", "3", "--config", "retention.ms=3600000"]
    done = _run("topics", "alter", "--topic", "cli-both", *both, *bootstrap)
    assert done.returncode == 0, done.stderr
    assert "now has 3 partitions" in done.stdout and "altered the configs" in done.stdout
    assert len(metadata(port, ["cli-both"])["topics"][0]["partitions"]) == 3
    assert _retention(cluster1, "cli-both") == "3600000"
    fewer = ["--partitions", "2", "--config", "retention.ms=60000"]
    refused = _run("topics", "alter", "--topic", "cli-both", *fewer, *bootstrap)
    assert refused.returncode == 1 and "INVALID_PARTITIONS" in refused.stderr
    assert _retention(cluster1, "cli-both") == "3600000"  # the failed step stopped the call


def _reset(cluster, group: str, *options: str) -> subprocess.CompletedProcess:
    return _run(
        "groups",
        "--zookeeper",
        cluster.zookeeper_connect,
        "--reset-offsets",
        "--group",
        group,
        *options,
    )


def _fill(cluster, topic: str, count: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": cluster.bootstrap})
    for i in range(count):
        producer.produce(topic, b"%d" % i, partition=0)
    assert producer.flush(30) == 0


@contextlib.contextmanager
def _group_at(cluster, topic: str, group: str, kind: str, produced: int, offset: int):
    """A one-partition topic of ``produced`` records and a ``kind`` group committed at
    ``offset`` in it; yields a ZooKeeper session."""
    create_topic(cluster.brokers[0].port, topic, 1)
    _fill(cluster, topic, produced)
    with zk_session(cluster.zookeeper_connect) as zk:
        claim_kind(zk, group, kind)
        write_offset(zk, group, topic, 0, offset)
        yield zk


def test_reset_offsets_plans_then_executes_each_way(cluster1):
    topic, group = "cli-reset", "cli-reset-group"
    with _group_at(cluster1, topic, group, layout.ZOOKEEPER, 20, 15) as zk:

        def committed():
            return read_offset(zk, group, topic, 0)[0]

        dry = _reset(cluster1, group, "--topic", topic, "--to-earliest")
        assert dry.returncode == 0, dry.stderr
        [row] = [line.split() for line in dry.stdout.splitlines() if line.startswith(group)]
        assert row == [group, topic, "0", "15", "0"]
        assert "dry run" in dry.stderr and committed() == 15
        explicit = _reset(cluster1, group, "--topic", topic, "--to-earliest", "--dry-run")
        assert explicit.returncode == 0 and explicit.stdout == dry.stdout, explicit.stderr
        both = _reset(cluster1, group, "--topic", topic, "--to-earliest", "--dry-run", "--execute")
        assert both.returncode == 2 and "not allowed with argument --dry-run" in both.stderr
        assert committed() == 15
        for options, expected in (
            (["--to-offset", "5"], 5),
            (["--shift-by", "3"], 8),
            (["--shift-by", "100"], 20),
            (["--to-earliest"], 0),
            (["--to-datetime", "2999-01-01T00:00:00Z"], 20),
            (["--to-datetime", "2000-01-01T00:00:00Z"], 0),
            (["--to-latest"], 20),
        ):
            done = _reset(cluster1, group, f"--topic={topic}:0", *options, "--execute")
            assert done.returncode == 0, (options, done.stderr)
            assert committed() == expected, options
        nowhere = _reset(cluster1, group, "--all-topics")
        assert nowhere.returncode == 1 and "--to-earliest" in nowhere.stderr
        missing = _reset(cluster1, group, "--topic", f"{topic}:3", "--to-earliest")
        assert missing.returncode == 1 and "no partition 3" in missing.stderr
        assert _reset(cluster1, "cli-no-group", "--topic", topic, "--to-latest").returncode == 1


def test_reset_offsets_is_refused_while_the_group_is_active(cluster1):
    from confluent_kafka import Consumer

    from consumers.group import GroupConsumer

    topic = "cli-active"
    create_topic(cluster1.brokers[0].port, topic, 1)
    paper = GroupConsumer("cli-paper-active", [topic], cluster1.zookeeper_connect)
    paper.start()
    try:
        refused = _reset(cluster1, "cli-paper-active", "--topic", topic, "--to-earliest")
        assert refused.returncode == 1 and "is active (1 live member" in refused.stderr
    finally:
        paper.close()
    kafka = Consumer({"bootstrap.servers": cluster1.bootstrap, "group.id": "cli-kafka-active"})
    kafka.subscribe([topic])
    try:
        wait_for(lambda: kafka.consume(1, 0.5) is not None and kafka.assignment(), 30)
        refused = _reset(cluster1, "cli-kafka-active", "--topic", topic, "--to-earliest")
        assert refused.returncode == 1 and "is active" in refused.stderr
    finally:
        kafka.close()


def test_a_loaders_group_is_reset_only_with_force_and_told_what_it_does(cluster1):
    topic, group = "cli-loaded", "cli-loader"
    with _group_at(cluster1, topic, group, layout.LOADER, 10, 10) as zk:
        refused = _reset(cluster1, group, "--topic", topic, "--to-earliest", "--execute")
        assert refused.returncode == 1 and "load those events again" in refused.stderr
        assert "--force" in refused.stderr and read_offset(zk, group, topic, 0)[0] == 10
        forced = _reset(cluster1, group, "--all-topics", "--to-earliest", "--execute", "--force")
        assert forced.returncode == 0, forced.stderr
        assert "files already written for them are not removed" in forced.stderr
        assert read_offset(zk, group, topic, 0)[0] == 0
        where = ("--zookeeper", cluster1.zookeeper_connect)
        kept = _run("groups", *where, "delete", group)
        assert kept.returncode == 1 and "--force" in kept.stderr
        assert zk.exists(layout.group_path(group))
        deleted = _run("groups", *where, "delete", group, "--force")
        assert deleted.returncode == 0, deleted.stderr
        assert not zk.exists(layout.group_path(group))
