"""ListOffsets on a replicated partition whose leader holds records its followers do not yet
have: a consumer is answered only up to the high watermark (latest is the high watermark, a
timestamp whose first record is above it finds nothing), a replica's request reads to the log
end; once the followers catch up the same lookup finds the record (3 brokers, replication
factor 3, a real ZooKeeper)."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import create_topic, wait_for, zk_session
from request_bodies import produce_to
from test_replica_cluster import read_back, state

from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection

pytestmark = pytest.mark.integration

NONE = 0
CONSUMER = -1


def offset_at(conn: BrokerConnection, topic: str, timestamp: int, replica_id: int) -> tuple:
    """ListOffsets v5 of partition 0: (error code, offset, timestamp)."""
    asked = {"partition_index": 0, "current_leader_epoch": -1, "timestamp": timestamp}
    body = {
        "replica_id": replica_id,
        "isolation_level": 0,
        "topics": [{"name": topic, "partitions": [asked]}],
    }
    answer = conn.request(ApiKey.LIST_OFFSETS, body, version=5)["topics"][0]["partitions"][0]
    return answer["error_code"], answer["offset"], answer["timestamp"]


def test_a_consumer_lists_no_offset_above_the_high_watermark(make_cluster):
    cluster = make_cluster(
        3, min_insync_replicas=2, replica_lag_time_max_ms=30000, zookeeper_session_timeout_ms=30000
    )
    create_topic(cluster.brokers[0].port, "stamps", 1, replication_factor=3)
    early = int(time.time() * 1000)
    late = early + 60_000
    with zk_session(cluster.zookeeper_connect) as zk:
        wait_for(lambda: len(state(zk, "stamps", 0).isr) == 3, 15)
        leader = state(zk, "stamps", 0).leader
        followers = [cluster.broker(b).process for b in (1, 2, 3) if b != leader]
    with BrokerConnection("127.0.0.1", cluster.broker(leader).port, timeout=30) as conn:
        first = build_batch([(None, b"early")], timestamp=early)
        assert produce_to(conn, "stamps", 0, first, acks=-1, timeout_ms=10000)["error_code"] == 0
        for process in followers:
            process.send_signal(signal.SIGSTOP)
        try:
            # Appended by the leader alone: offset 1, above the high watermark (1).
            second = build_batch([(None, b"late")], timestamp=late)
            assert produce_to(conn, "stamps", 0, second, acks=1)["error_code"] == NONE
            assert offset_at(conn, "stamps", -1, CONSUMER) == (NONE, 1, -1)
            assert offset_at(conn, "stamps", early, CONSUMER) == (NONE, 0, early)
            assert offset_at(conn, "stamps", late, CONSUMER) == (NONE, -1, -1)
            assert offset_at(conn, "stamps", -2, CONSUMER) == (NONE, 0, -1)
            # A replica's request (or a debugging tool's) reads to the log end.
            assert offset_at(conn, "stamps", late, leader) == (NONE, 1, late)
            assert offset_at(conn, "stamps", -1, leader) == (NONE, 2, -1)
        finally:
            for process in followers:
                process.send_signal(signal.SIGCONT)
        wait_for(lambda: offset_at(conn, "stamps", -1, CONSUMER) == (NONE, 2, -1), 20)
        assert offset_at(conn, "stamps", late, CONSUMER) == (NONE, 1, late)
    got = read_back(cluster.bootstrap, "stamps", 2, partitions=1)
    assert got[0] == [b"early", b"late"]
