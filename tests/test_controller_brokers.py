"""The controller in real broker processes (3 brokers, a real ZooKeeper): one controller,
a new one with a higher epoch when its broker dies, new leaders from the ISR recorded in
ZooKeeper, a bounced broker treated as failed, a replication factor 1 partition led again by
its restarted broker, CreateTopics' replication factor and ControlledShutdown."""

from __future__ import annotations

import subprocess
import sys

from conftest import create_topic, metadata, wait_for, zk_session

from broker.protocol import zookeeper as layout
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection


def create(port: int, name: str, partitions: int, factor: int) -> dict:
    return create_topic(port, name, partitions, replication_factor=factor, check=False)


def controller_of(zk) -> tuple[int, int]:
    """(broker id in /controller, /controller_epoch)."""
    data, _ = zk.get(layout.CONTROLLER)
    epoch, _ = zk.get(layout.CONTROLLER_EPOCH)
    return layout.decode_controller(data).broker_id, layout.decode_controller_epoch(epoch)


def state(zk, topic: str, partition: int):
    data, _ = zk.get(layout.partition_state_path(topic, partition))
    return layout.decode_partition_state(data)


def placement(zk, topic: str) -> dict[int, list[int]]:
    return layout.decode_topic(zk.get(layout.topic_path(topic))[0]).partitions


def produce_ok(port: int, topic: str, partition: int) -> bool:
    body = {
        "transactional_id": None,
        "acks": 1,
        "timeout_ms": 5000,
        "topic_data": [
            {
                "name": topic,
                "partition_data": [{"index": partition, "records": build_batch([(b"k", b"v")])}],
            }
        ],
    }
    with BrokerConnection("127.0.0.1", port, timeout=10) as conn:
        answer = conn.request(ApiKey.PRODUCE, body)["responses"][0]["partition_responses"][0]
    return answer["error_code"] == 0


def test_one_controller_then_another_with_a_higher_epoch_then_leaders_from_the_isr(make_cluster):
    cluster = make_cluster(3)
    with zk_session(cluster.zookeeper_connect) as zk:
        wait_for(lambda: zk.exists(layout.CONTROLLER), 10)
        first, epoch = controller_of(zk)
        assert epoch == 1  # elected once among three

        assert create(cluster.brokers[0].port, "r3", 3, 3)["error_code"] == 0
        replicas = placement(zk, "r3")
        assert sorted(len(set(r)) for r in replicas.values()) == [3, 3, 3]
        assert sorted(r[0] for r in replicas.values()) == [1, 2, 3]  # leaders spread
        for p, r in replicas.items():
            assert state(zk, "r3", p) == layout.PartitionState(r[0], 0, tuple(r), 1)

        cluster.broker(first).kill()  # SIGKILL: its session expires after 6 s
        wait_for(lambda: controller_of(zk)[0] not in (first, -1), 30)
        second, epoch = controller_of(zk)
        assert second != first and epoch == 2
        for p, r in replicas.items():
            expected_leader = r[0] if r[0] != first else r[1]
            s = wait_for(
                lambda p=p: (s := state(zk, "r3", p)).leader != first and first not in s.isr and s,
                10,
            )
            assert s.leader == expected_leader
            assert s.leader_epoch == 1  # a new leader, or the failed follower left the ISR
            assert s.controller_epoch == 2

        # A following leader failure is handled by the new controller.
        led = [p for p in replicas if state(zk, "r3", p).leader == second]
        third = next(b for b in (1, 2, 3) if b not in (first, second))
        before = {p: state(zk, "r3", p) for p in led}
        cluster.broker(second).stop()
        for p in led:
            s = wait_for(lambda p=p: state(zk, "r3", p).leader == third and state(zk, "r3", p), 30)
            assert s.leader_epoch == before[p].leader_epoch + 1
            assert s.isr == (third,)
        assert controller_of(zk) == (third, 3)


def test_a_bounced_broker_is_treated_as_failed_and_an_rf1_partition_is_led_again(make_cluster):
    cluster = make_cluster(3)
    port = cluster.brokers[0].port
    with zk_session(cluster.zookeeper_connect) as zk:
        assert create(port, "solo", 3, 1)["error_code"] == 0
        assert create(port, "trio", 3, 3)["error_code"] == 0
        controller, _ = controller_of(zk)
        bounced = next(b for b in (1, 2, 3) if b != controller)
        solo = next(p for p, r in placement(zk, "solo").items() if r == [bounced])
        trio = next(p for p, r in placement(zk, "trio").items() if r[0] == bounced)
        czxid = zk.exists(layout.broker_path(bounced)).czxid
        before_solo, before_trio = state(zk, "solo", solo), state(zk, "trio", trio)

        broker = cluster.broker(bounced)
        broker.kill()
        broker.start()  # before its session expires: its registration is replaced
        assert zk.exists(layout.broker_path(bounced)).czxid != czxid

        # The replicated partition it led: led by another in-sync replica, one epoch on (it
        # left the ISR then; it may be back already, once its fetches caught up).
        s = wait_for(
            lambda: state(zk, "trio", trio).leader != bounced and state(zk, "trio", trio), 15
        )
        assert s.leader_epoch == before_trio.leader_epoch + 1
        # Its only replica: offline then led again by the new incarnation, two epochs on.
        s = wait_for(
            lambda: (
                state(zk, "solo", solo).leader_epoch == before_solo.leader_epoch + 2
                and state(zk, "solo", solo)
            ),
            15,
        )
        assert s.leader == bounced and s.isr == (bounced,)
        wait_for(lambda: produce_ok(broker.port, "solo", solo), 15)

        # A clean restart: offline while it is down, led by it again when it returns.
        broker.stop()
        wait_for(lambda: state(zk, "solo", solo).leader == -1, 15)
        assert metadata(port, ["solo"])["topics"][0]["partitions"][solo]["leader_id"] == -1
        broker.start()
        wait_for(lambda: state(zk, "solo", solo).leader == bounced, 15)
        wait_for(lambda: produce_ok(broker.port, "solo", solo), 15)


def test_create_topics_checks_the_replication_factor_against_live_brokers(make_cluster):
    cluster = make_cluster(3, default_replication_factor=2)
    port = cluster.brokers[0].port
    result = create(port, "too-many", 1, 4)
    assert (result["error_code"], result["error_message"]) == (
        38,
        "Replication factor: 4 larger than available brokers: 3.",
    )
    result = create(port, "none", 1, 0)
    assert (result["error_code"], result["error_message"]) == (
        38,
        "Replication factor must be larger than 0.",
    )
    assert create(port, "defaulted", 4, -1)["error_code"] == 0
    parts = metadata(port, ["defaulted"])["topics"][0]["partitions"]
    assert [len(p["replica_nodes"]) for p in parts] == [2, 2, 2, 2]

    cli = [sys.executable, "-m", "headrace.cli", "topics"]
    made = subprocess.run(
        [
            *cli,
            "create",
            "--bootstrap-server",
            cluster.bootstrap,
            "--topic",
            "cli3",
            "--partitions",
            "2",
            "--replication-factor",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    described = subprocess.run(
        [*cli, "describe", "--bootstrap-server", cluster.bootstrap, "--topic", "cli3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "ReplicationFactor: 3" in described.stdout
    refused = subprocess.run(
        [
            *cli,
            "create",
            "--bootstrap-server",
            cluster.bootstrap,
            "--topic",
            "cli4",
            "--replication-factor",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "headrace topics: INVALID_REPLICATION_FACTOR: "
        "Replication factor: 4 larger than available brokers: 3."
    )


def _controlled_shutdown(port: int, broker: int, epoch: int, version: int = 2) -> dict:
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        return conn.request(
            ApiKey.CONTROLLED_SHUTDOWN,
            {"broker_id": broker, "broker_epoch": epoch},
            version=version,
        )


def test_controlled_shutdown_over_the_wire(make_cluster):
    cluster = make_cluster(3)
    port = cluster.brokers[0].port
    with zk_session(cluster.zookeeper_connect) as zk:
        assert create(port, "moved", 3, 2)["error_code"] == 0
        controller, _ = controller_of(zk)
        other = next(b for b in (1, 2, 3) if b != controller)
        leaving = next(b for b in (1, 2, 3) if b not in (controller, other))
        epoch = zk.exists(layout.broker_path(leaving)).czxid
        at = cluster.broker(controller).port

        assert _controlled_shutdown(cluster.broker(other).port, leaving, epoch)["error_code"] == 41
        stale = _controlled_shutdown(at, leaving, epoch - 1)
        assert stale["error_code"] == 77
        led = [p for p in range(3) if state(zk, "moved", p).leader == leaving]
        assert led

        done = _controlled_shutdown(at, leaving, epoch, version=3)  # flexible
        assert done == {"error_code": 0, "remaining_partitions": []}
        for p in range(3):
            s = state(zk, "moved", p)
            assert s.leader != leaving and leaving not in s.isr
        assert _controlled_shutdown(at, leaving, -1, version=1)["error_code"] == 0
