"""Replication figures on the brokers' Prometheus pages (3 brokers, a real ZooKeeper): a
follower stopped past ``replica.lag.time.max.ms`` shows as lag, an ISR shrink and an
under-replicated partition on its leader, and the reverse once it runs again; the controller
counts its elections and the partitions a stopped broker leaves offline."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import Cluster, create_topic, metadata, wait_for, zk_session
from metrics_scrape import scrape
from request_bodies import produce_to
from test_replica_cluster import state

from broker.protocol.records import build_batch
from consumers.client import BrokerConnection
from headrace.devcluster import free_port

REQUEST_TIMED_OUT = 7


@pytest.fixture
def cluster(zookeeper, tmp_path):
    """Three brokers serving metrics; a follower out of touch for 3 s leaves the ISR."""
    cluster = Cluster(
        tmp_path,
        f"{zookeeper.connect}/metrics-repl-{time.monotonic_ns()}",
        3,
        {
            "replica.lag.time.max.ms": "3000",
            "zookeeper.session.timeout.ms": "20000",
            "controlled.shutdown.enable": "false",
        },
    )
    for broker in cluster.brokers:
        broker.metrics_port = free_port()
    cluster.start()
    yield cluster
    for broker in cluster.brokers:
        if broker.process is not None:
            broker.process.send_signal(signal.SIGCONT)
        broker.kill()


def test_a_stopped_follower_moves_lag_isr_and_under_replicated_gauges(cluster):
    create_topic(cluster.brokers[0].port, "lagging", 1, replication_factor=3)
    with zk_session(cluster.zookeeper_connect) as zk:
        wait_for(lambda: len(state(zk, "lagging", 0).isr) == 3, 15)
        leader_id = state(zk, "lagging", 0).leader
    leader = cluster.broker(leader_id)
    stopped = cluster.broker(next(b for b in (1, 2, 3) if b != leader_id))
    lag = {"topic": "lagging", "partition": "0", "follower": str(stopped.broker_id)}
    timed_out = {"api": "Produce", "error": "REQUEST_TIMED_OUT"}
    with BrokerConnection("127.0.0.1", leader.port) as conn:
        assert produce_to(conn, "lagging", 0, build_batch([(None, b"first")]))["error_code"] == 0
        wait_for(lambda: scrape(leader.metrics_url)["headrace_follower_lag_messages", lag] == 0, 10)
        page = scrape(leader.metrics_url)
        assert page["headrace_under_replicated_partitions"] == 0
        assert page["headrace_isr_shrinks_total"] == 0
        assert page["headrace_partitions_led"] == 1

        stopped.process.send_signal(signal.SIGSTOP)
        try:
            batch = build_batch([(None, b"behind %d" % i) for i in range(5)])
            assert produce_to(conn, "lagging", 0, batch)["error_code"] == 0
            assert scrape(leader.metrics_url)["headrace_follower_lag_messages", lag] == 5
            # Still in the ISR, the stopped follower holds an acks=all answer past its timeout.
            waited = produce_to(conn, "lagging", 0, batch, acks=-1, timeout_ms=300)
            assert waited["error_code"] == REQUEST_TIMED_OUT
            errors = scrape(leader.metrics_url)["headrace_request_errors_total", timed_out]
            assert errors == 1
            page = wait_for(
                lambda: (
                    (p := scrape(leader.metrics_url))["headrace_under_replicated_partitions"] == 1
                    and p
                ),
                15,
            )
            assert page["headrace_isr_shrinks_total"] == 1
            assert page["headrace_follower_lag_messages", lag] == 10
        finally:
            stopped.process.send_signal(signal.SIGCONT)
    page = wait_for(
        lambda: (
            (p := scrape(leader.metrics_url))["headrace_under_replicated_partitions"] == 0 and p
        ),
        15,
    )
    assert page["headrace_isr_expands_total"] == 1
    assert page["headrace_follower_lag_messages", lag] == 0


def test_the_controller_counts_elections_and_offline_partitions(cluster):
    pages = [scrape(b.metrics_url) for b in cluster.brokers]
    assert sorted(p["headrace_controller_active"] for p in pages) == [0, 0, 1]
    controller = cluster.brokers[[p["headrace_controller_active"] for p in pages].index(1)]
    create_topic(controller.port, "alone", 3, replication_factor=1)
    wait_for(lambda: scrape(controller.metrics_url)["headrace_leader_elections_total"] == 3, 10)
    assert scrape(controller.metrics_url)["headrace_offline_partitions"] == 0

    victim = next(b for b in cluster.brokers if b is not controller)
    placement = metadata(controller.port, ["alone"])["topics"][0]["partitions"]
    lost = sum(1 for p in placement if p["replica_nodes"] == [victim.broker_id])
    assert lost >= 1
    victim.stop()
    wait_for(lambda: scrape(controller.metrics_url)["headrace_offline_partitions"] == lost, 15)
    for broker in cluster.brokers:
        if broker is not controller and broker.process is not None:
            assert scrape(broker.metrics_url)["headrace_offline_partitions"] == 0
