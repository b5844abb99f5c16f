"""Replication under the faults that remain (3 brokers, replication factor 3,
min.insync.replicas 2, a real ZooKeeper): acks=all answers when the ISR shrinks under a waiting
produce or the wait outlasts the request; a leader stopped past its session is deposed and its
zombie writes never acknowledged; a partition whose in-sync replicas all died stays offline
rather than serving an out-of-sync copy; a replica whose disk was lost re-replicates; kcat
produces and consumes through a leader change. Every acknowledged message is read back once."""

from __future__ import annotations

import shutil
import signal
import subprocess

import pytest
from command_lines import HEADRACE, ROOT
from conftest import create_topic, metadata, wait_for, zk_session
from request_bodies import fetch_body, produce_body, produce_to
from test_replica_cluster import Sender, read_back, segment_bytes, state

from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection, ConnectionClosed

pytestmark = pytest.mark.integration

NONE = 0
LEADER_NOT_AVAILABLE = 5
REQUEST_TIMED_OUT = 7
NOT_LEADER_OR_FOLLOWER = 6
NOT_ENOUGH_REPLICAS = 19
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20


def batch(tag: str) -> bytes:
    return build_batch([(None, tag.encode())])


def followers_of(leader: int) -> list[int]:
    return [b for b in (1, 2, 3) if b != leader]


def replicas_hold_the_same_bytes(cluster, topic: str, partition: int, brokers) -> bool:
    """Whether every one of ``brokers`` holds the same, non-empty segment bytes."""
    copies = {segment_bytes(cluster, b, topic, partition) for b in brokers}
    return len(copies) == 1 and copies != {b""}


def replicated(make_cluster, topic: str, **overrides):
    """Three brokers (min.insync.replicas 2, then ``overrides``) and ``topic``: one partition,
    replication factor 3."""
    cluster = make_cluster(3, min_insync_replicas=2, **overrides)
    create_topic(cluster.brokers[0].port, topic, 1, replication_factor=3)
    return cluster


def test_acks_all_times_out_past_its_request_and_fails_after_append_when_the_isr_shrinks(
    make_cluster,
):
    cluster = replicated(
        make_cluster, "waits", replica_lag_time_max_ms=2000, zookeeper_session_timeout_ms=20000
    )
    with zk_session(cluster.zookeeper_connect) as zk:
        leader = state(zk, "waits", 0).leader
        first, second = (cluster.broker(b).process for b in followers_of(leader))
        port = cluster.broker(leader).port
        with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
            wait_for(lambda: len(state(zk, "waits", 0).isr) == 3, 15)
            answer = produce_to(conn, "waits", 0, batch("acked"), acks=-1, timeout_ms=10000)
            assert answer["error_code"] == NONE

            first.send_signal(signal.SIGSTOP)
            second.send_signal(signal.SIGSTOP)
            try:
                # Both sent at once, so both are appended before the followers' lag runs out
                # however slowly this process is scheduled.  Both followers still in the ISR:
                # the first wait outlasts its short request.  The second outlasts
                # replica.lag.time.max.ms instead: the leader shrinks the ISR to itself, below
                # min.insync.replicas, under the waiting produce.
                waits = [
                    conn.send(ApiKey.PRODUCE, produce_body("waits", 0, batch(tag), -1, timeout))
                    for tag, timeout in (("timed-out", 300), ("shrunk", 20000))
                ]
                timed_out, shrunk = (
                    conn.receive(ApiKey.PRODUCE, c)["responses"][0]["partition_responses"][0]
                    for c in waits
                )
                assert timed_out["error_code"] == REQUEST_TIMED_OUT
                assert shrunk["error_code"] == NOT_ENOUGH_REPLICAS_AFTER_APPEND
                assert list(state(zk, "waits", 0).isr) == [leader]
                refused = produce_to(conn, "waits", 0, batch("refused"), acks=-1)
                assert refused["error_code"] == NOT_ENOUGH_REPLICAS
                # acks=1 still appends (Kafka's rule: min.insync.replicas binds acks=all only).
                assert produce_to(conn, "waits", 0, batch("one"), acks=1)["error_code"] == NONE
            finally:
                first.send_signal(signal.SIGCONT)
                second.send_signal(signal.SIGCONT)
            wait_for(lambda: len(state(zk, "waits", 0).isr) == 3, 20)
            answer = produce_to(conn, "waits", 0, batch("after"), acks=-1, timeout_ms=10000)
            assert answer["error_code"] == NONE
    # The outcome of the failed waits, as in Kafka: those batches were appended (not
    # acknowledged) and stay in the log; the refused one never was.
    got = read_back(cluster.bootstrap, "waits", 5, partitions=1)
    assert got[0] == [b"acked", b"timed-out", b"shrunk", b"one", b"after"]


def zombie_answer(conn: BrokerConnection, correlation: int):
    """The error code a deposed leader answered a produce with, or None if it never did
    (closed the connection, or let it time out): anything but NONE, not acknowledged."""
    try:
        answer = conn.receive(ApiKey.PRODUCE, correlation)
    except (TimeoutError, ConnectionClosed, OSError):
        return None
    return answer["responses"][0]["partition_responses"][0]["error_code"]


def test_a_leader_stopped_past_its_session_is_deposed_and_its_zombie_write_never_acknowledged(
    make_cluster,
):
    cluster = replicated(
        make_cluster, "zombie", zookeeper_session_timeout_ms=3000, replica_lag_time_max_ms=10000
    )
    sender = Sender(cluster.bootstrap, "zombie")
    with zk_session(cluster.zookeeper_connect) as zk:
        before = state(zk, "zombie", 0)
        sender.send(200)
        assert sender.flush(15) == 0
        old = cluster.broker(before.leader)
        # Connections to the old leader, opened while it was leading: one for each acks.
        zombies = {acks: BrokerConnection("127.0.0.1", old.port, timeout=20) for acks in (1, -1)}
        old.process.send_signal(signal.SIGSTOP)
        try:
            wait_for(lambda: state(zk, "zombie", 0).leader not in (before.leader, -1), 30)
            after = state(zk, "zombie", 0)
            assert after.leader_epoch > before.leader_epoch
            assert before.leader not in after.isr
            # Queued in the stopped process's sockets: it reads them first when it wakes.
            sent = {
                acks: conn.send(
                    ApiKey.PRODUCE, produce_body("zombie", 0, batch(f"zombie {acks}"), acks, 5000)
                )
                for acks, conn in zombies.items()
            }
            # A producer that never met the stopped broker (librdkafka would wait out its
            # socket timeout there): the new leader acknowledges.
            survivors = ",".join(cluster.broker(b).bootstrap for b in after.isr)
            during = Sender(survivors, "zombie")
            during.sent = sender.sent
            during.send(200)
            assert during.flush(20) == 0 and during.failures == []
            sender.sent = during.sent
        finally:
            old.process.send_signal(signal.SIGCONT)
        for acks, conn in zombies.items():
            with conn:
                assert zombie_answer(conn, sent[acks]) != NONE, f"acks={acks}"
        wait_for(lambda: before.leader in state(zk, "zombie", 0).isr, 30)
        sender.send(200)
        assert sender.flush(20) == 0
        wait_for(lambda: replicas_hold_the_same_bytes(cluster, "zombie", 0, (1, 2, 3)), 20)
    assert sender.failures == []
    got = read_back(cluster.bootstrap, "zombie", 600, partitions=1)
    assert got[0] == [b"%d" % i for i in range(600)]


UNAVAILABLE = ("describe", "--unavailable-partitions")


def describe_unavailable(bootstrap: str) -> str:
    return subprocess.run(
        [*HEADRACE, "topics", "--bootstrap-server", bootstrap, *UNAVAILABLE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def test_a_partition_whose_in_sync_replicas_all_died_is_offline_until_one_returns(make_cluster):
    cluster = replicated(
        make_cluster, "orphan", replica_lag_time_max_ms=1500, zookeeper_session_timeout_ms=6000
    )
    sender = Sender(cluster.bootstrap, "orphan")
    with zk_session(cluster.zookeeper_connect) as zk:
        leader = state(zk, "orphan", 0).leader
        lagging, other = followers_of(leader)
        sender.send(100)
        assert sender.flush(15) == 0
        out_of_sync = cluster.broker(lagging)
        out_of_sync.process.send_signal(signal.SIGSTOP)
        try:
            # Appended while the follower is stopped: the leader itself takes it out of the ISR
            # once it has lagged replica.lag.time.max.ms (well before its session expires), and
            # then the ISR {leader, other} acknowledges.
            sender.send(100)
            wait_for(lambda: lagging not in state(zk, "orphan", 0).isr, 15)
            assert sender.flush(15) == 0
            assert sender.failures == []
            cluster.broker(leader).kill()
            cluster.broker(other).kill()
        finally:
            out_of_sync.process.send_signal(signal.SIGCONT)
        wait_for(lambda: state(zk, "orphan", 0).leader == -1, 30)

        def reported() -> dict:
            return metadata(out_of_sync.port, ["orphan"])["topics"][0]["partitions"][0]

        partition = wait_for(lambda: reported()["leader_id"] == -1 and reported(), 20)
        assert partition["error_code"] == LEADER_NOT_AVAILABLE
        assert "Partition: 0\tLeader: none (offline)" in describe_unavailable(out_of_sync.bootstrap)
        with BrokerConnection("127.0.0.1", out_of_sync.port) as conn:
            body = conn.request(ApiKey.FETCH, fetch_body([("orphan", 0, 0)]))
        answer = body["responses"][0]["partitions"][0]
        assert answer["error_code"] == NOT_LEADER_OR_FOLLOWER and not answer["records"]

        # Offline, the state keeps its last in-sync member (as Kafka's controller does): that
        # one returning leads again.
        (keeper,) = state(zk, "orphan", 0).isr
        assert keeper in (leader, other)
        cluster.broker(keeper).start()
        wait_for(lambda: state(zk, "orphan", 0).leader == keeper, 30)
        wait_for(lambda: lagging in state(zk, "orphan", 0).isr, 30)
    assert describe_unavailable(out_of_sync.bootstrap) == ""
    live = f"{cluster.broker(keeper).bootstrap},{out_of_sync.bootstrap}"
    got = read_back(live, "orphan", 200, partitions=1)
    assert got[0] == [b"%d" % i for i in range(200)]


def test_a_replica_whose_disk_was_lost_comes_back_empty_and_re_replicates(make_cluster):
    cluster = replicated(make_cluster, "lost")
    sender = Sender(cluster.bootstrap, "lost")
    with zk_session(cluster.zookeeper_connect) as zk:
        leader = state(zk, "lost", 0).leader
        follower = followers_of(leader)[0]
        sender.send(500)
        assert sender.flush(15) == 0
        replica = cluster.broker(follower)
        replica.stop()
        wait_for(lambda: follower not in state(zk, "lost", 0).isr, 30)
        shutil.rmtree(replica.workdir / f"broker-{follower}-logs")
        sender.send(500)  # written while it is away
        assert sender.flush(15) == 0
        replica.start()
        wait_for(lambda: follower in state(zk, "lost", 0).isr, 30)
        wait_for(lambda: replicas_hold_the_same_bytes(cluster, "lost", 0, (leader, follower)), 20)
    assert sender.failures == []
    got = read_back(replica.bootstrap, "lost", 1000, partitions=1)
    assert got[0] == [b"%d" % i for i in range(1000)]


KCAT_ACKS_ALL = ("-X", "acks=all", "-X", "enable.idempotence=true", "-X", "linger.ms=5")


def test_kcat_produces_and_consumes_through_a_leader_change(make_cluster):
    cluster = replicated(make_cluster, "kcat", zookeeper_session_timeout_ms=4000)
    bootstrap = cluster.bootstrap
    consumer = subprocess.Popen(
        ["kcat", "-b", bootstrap, "-C", "-t", "kcat", "-o", "beginning", "-c", "600", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    producer = subprocess.Popen(
        ["kcat", "-b", bootstrap, "-P", "-t", "kcat", "-p", "0", *KCAT_ACKS_ALL],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert producer.stdin is not None
        producer.stdin.write(b"".join(b"line %d\n" % i for i in range(300)))
        producer.stdin.flush()
        with zk_session(cluster.zookeeper_connect) as zk:
            before = state(zk, "kcat", 0)
            wait_for(lambda: metadata(cluster.broker(before.leader).port) and True, 5)
            cluster.broker(before.leader).kill()
            producer.stdin.write(b"".join(b"line %d\n" % i for i in range(300, 600)))
            producer.stdin.close()
            wait_for(lambda: state(zk, "kcat", 0).leader not in (before.leader, -1), 20)
        errors = producer.stderr.read() if producer.stderr else b""
        producer.wait(60)
        assert producer.returncode == 0, errors
        assert b"delivery failed" not in errors.lower(), errors
        read, consumer_errors = consumer.communicate(timeout=60)
    finally:
        for process in (producer, consumer):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert read.splitlines() == [b"line %d" % i for i in range(600)], consumer_errors
