"""The dashboard keeps serving when a broker dies and returns, and when ZooKeeper restarts:
the answers say what is missing (``up`` false, offline replicas, ``zookeeper.state``) and are
whole again after recovery; its live feeds go on."""

from __future__ import annotations

import json

import pytest
from conftest import Cluster, ZooKeeperProcess, create_topic, wait_for
from dashboard_client import DashboardProcess, EventReader, get_json

from broker.protocol.errors import TopicAlreadyExistsError
from consumers.producer import Producer


def api(dashboard, name: str) -> dict:
    status, body = get_json(f"{dashboard.url}/api/{name}")
    assert status == 200, body
    return body


def broker_view(dashboard, broker_id: int) -> dict:
    return next(b for b in api(dashboard, "cluster")["brokers"] if b["id"] == broker_id)


def topic_view(dashboard, name: str) -> dict | None:
    return next((t for t in api(dashboard, "topics")["topics"] if t["name"] == name), None)


def _created(cluster, name: str, partitions: int) -> bool:
    """Create the topic; True once it exists (a retriable refusal raises, to be retried)."""
    try:
        create_topic(cluster.brokers[0].port, name, partitions)
    except TopicAlreadyExistsError:  # an earlier try got through after all
        pass
    return True


def test_a_broker_that_dies_is_shown_down_and_up_again(make_cluster, tmp_path):
    cluster = make_cluster(3, zookeeper_session_timeout_ms=4000)
    create_topic(cluster.brokers[0].port, "web", 3, replication_factor=3)
    dashboard = DashboardProcess(cluster.zookeeper_connect, tmp_path).start()
    try:
        wait_for(lambda: topic_view(dashboard, "web"), 15)
        url = f"{dashboard.url}/api/aggregate?topic=web&field=status&window=600&classes=1"
        with EventReader(f"{dashboard.url}/api/tail?topic=web") as tail, EventReader(url) as agg:
            tail.wait_for(lambda r: r.of("status"), 10)
            victim = cluster.broker(2)
            address = (victim_view := broker_view(dashboard, 2))["host"], victim_view["port"]
            victim.kill()
            down = wait_for(lambda: (b := broker_view(dashboard, 2)) and not b["up"] and b, 30)
            assert (down["host"], down["port"]) == address  # still listed, where it was
            assert down["leader_partitions"] == 0 and down["replica_partitions"] == 3
            shrunk = wait_for(
                lambda: (
                    (c := api(dashboard, "cluster"))["partitions"]["under_replicated"] == 3 and c
                ),
                30,
            )
            assert shrunk["partitions"]["offline"] == 0
            detail = topic_view(dashboard, "web")["partition_detail"]
            assert all(p["offline"] == [2] and 2 not in p["isr"] for p in detail)
            assert all(p["log_end_offset"] is not None for p in detail)  # new leaders answer
            api(dashboard, "groups")
            with Producer(bootstrap_servers=cluster.bootstrap) as producer:
                for i in range(30):
                    producer.send("web", json.dumps({"status": 502, "i": i}).encode())
            tail.wait_for(lambda r: len(r.of("message")) == 30, 15)
            victim.start()
            wait_for(lambda: broker_view(dashboard, 2)["up"], 30)
            whole = wait_for(
                lambda: (
                    (c := api(dashboard, "cluster"))["partitions"]["under_replicated"] == 0 and c
                ),
                60,
            )
            assert all(b["up"] for b in whole["brokers"]) and len(whole["brokers"]) == 3

            def healed():
                detail = topic_view(dashboard, "web")["partition_detail"]
                return (
                    all(
                        p["size_bytes"] is not None and len(p["isr"]) == 3 and not p["offline"]
                        for p in detail
                    )
                    and detail
                )

            detail = wait_for(healed, 30)
            assert sum(p["log_end_offset"] for p in detail) == 30
            agg.wait_for(lambda r: [w for w in r.of("window") if w["totals"] == {"5xx": 30}], 15)
    finally:
        dashboard.stop()


@pytest.mark.integration
def test_the_dashboard_serves_through_a_zookeeper_restart(tmp_path):
    zookeeper = ZooKeeperProcess(tmp_path / "zookeeper")
    zookeeper.start()
    cluster = Cluster(tmp_path / "brokers", zookeeper.connect + "/restart", 3).start()
    dashboard = DashboardProcess(zookeeper.connect + "/restart", tmp_path)
    try:
        create_topic(cluster.brokers[0].port, "before", 2)
        dashboard.start()
        wait_for(lambda: topic_view(dashboard, "before"), 15)
        with Producer(bootstrap_servers=cluster.bootstrap) as producer:
            for i in range(10):
                producer.send("before", b"%d" % i)
        zookeeper.stop()
        cut = wait_for(
            lambda: (c := api(dashboard, "cluster"))["zookeeper"]["state"] != "connected" and c,
            15,
        )
        assert cut["zookeeper"]["state"] in ("suspended", "lost")
        assert [b["id"] for b in cut["brokers"]] == [1, 2, 3]  # the last layout read
        topics = topic_view(dashboard, "before")  # end offsets still come from the brokers
        assert sum(p["log_end_offset"] for p in topics["partition_detail"]) == 10
        api(dashboard, "groups")
        # A topic the last sample does not know cannot be looked up: 503 (retriable), not 404.
        status, body = get_json(f"{dashboard.url}/api/tail?topic=unseen", timeout=30)
        assert status == 503 and "ZooKeeper is not connected" in body["error"], body
        zookeeper.start()
        wait_for(lambda: api(dashboard, "cluster")["zookeeper"]["state"] == "connected", 30)
        # the brokers' own sessions may have expired with the restart: once they are
        # registered again, a topic is created (a retriable refusal meanwhile is retried, as
        # a Kafka client would)
        wait_for(lambda: all(b["up"] for b in api(dashboard, "cluster")["brokers"]), 30)
        wait_for(lambda: _created(cluster, "after", 3), 30)
        after = wait_for(lambda: topic_view(dashboard, "after"), 30)  # reads work again
        assert after["partitions"] == 3
        # a broker whose old session ZooKeeper expires only now is gone for a moment again
        wait_for(lambda: all(b["up"] for b in api(dashboard, "cluster")["brokers"]), 30)
        with EventReader(f"{dashboard.url}/api/tail?topic=after&from=earliest") as tail:
            with Producer(bootstrap_servers=cluster.bootstrap) as producer:
                producer.send("after", b"back").result(10)
            tail.wait_for(lambda r: [m for m in r.of("message") if m["value"] == "back"], 30)
    finally:
        dashboard.stop()
        cluster.stop()
        zookeeper.stop()
