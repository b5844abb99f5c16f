"""The audit through a leader's SIGKILL (3 brokers, replication factor 3): our idempotent
producer's counts, published to a replicated ``_audit``, match what the brokers hold in every
window, so the audit proves nothing acknowledged was lost or doubled by the failover; the
``_audit`` topic the producer created has one partition on all three brokers."""

from __future__ import annotations

import time

import pytest
from conftest import metadata
from test_audit_pipeline import audit
from test_replica_clients import PARTITIONS, kill_leader, replicated

from consumers.audit import AUDIT_TOPIC
from consumers.producer import Producer


@pytest.mark.timeout(240)
def test_the_audit_matches_through_a_leader_kill(make_cluster):
    cluster = replicated(make_cluster, "failover")
    futures = []
    with Producer(
        cluster.bootstrap, audit=True, audit_window_ms=1000, delivery_timeout_ms=60000
    ) as producer:

        def send(n: int) -> None:
            for _ in range(n // 50):
                futures.extend(
                    producer.send("failover", b"%d" % len(futures), partition=i % PARTITIONS)
                    for i in range(50)
                )
                time.sleep(0.1)

        send(500)
        producer.flush(60)  # the first audit records: _audit created on the three brokers
        killed = kill_leader(cluster, "failover", meanwhile=lambda: send(500))
        send(500)
        assert producer.flush(60) == 0
    assert [f.exception() for f in futures if f.exception() is not None] == []
    time.sleep(1.1)
    status, report = audit(cluster, "failover", "--grace", "0s")
    rows = report["rows"]
    assert status == 0 and report["ok"], report
    assert len(rows) >= 2
    assert sum(r["produced"] for r in rows) == sum(r["brokered"] for r in rows) == 1500
    assert sum(r["unaudited"] + r["missing"] + r["duplicated"] for r in rows) == 0
    assert report["notes"] == []
    alive = next(b for b in cluster.brokers if b is not killed)  # the killed one stays down
    [created] = metadata(alive.port, [AUDIT_TOPIC])["topics"]
    assert [len(p["replica_nodes"]) for p in created["partitions"]] == [3]  # made replicated
