"""``/api/groups`` against a live 3-broker cluster: the paper's ZooKeeper groups, Kafka
clients' groups (kafka-python) and a loader, with their lag; a loader's lag goes to zero after
a run, which shows as its last run with its ``_SUCCESS`` hours."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import create_topic, wait_for
from dashboard_client import DashboardProcess, get_json

from consumers.group import GroupConsumer
from consumers.producer import Producer

TOPIC = "clicks"


@pytest.fixture(scope="module")
def setup(cluster3, tmp_path_factory):
    """The topic with 300 events three hours old, and a dashboard."""
    create_topic(cluster3.brokers[0].port, TOPIC, 3, replication_factor=2)
    three_hours_ago = int(time.time()) // 3600 * 3600 - 3 * 3600
    with Producer(bootstrap_servers=cluster3.bootstrap) as producer:
        for i in range(300):
            event = {"ts": three_hours_ago + i, "status": 200, "n": i}
            producer.send(TOPIC, json.dumps(event).encode(), key=b"%d" % (i % 7))
    workdir = tmp_path_factory.mktemp("groups")
    dashboard = DashboardProcess(cluster3.zookeeper_connect, workdir).start()
    yield dashboard, workdir
    dashboard.stop()


def group_view(dashboard, name: str) -> dict | None:
    groups = get_json(dashboard.url + "/api/groups")[1]["groups"]
    return next((g for g in groups if g["name"] == name), None)


def produce(cluster3, count: int) -> None:
    with Producer(bootstrap_servers=cluster3.bootstrap) as producer:
        for i in range(count):
            producer.send(TOPIC, json.dumps({"ts": time.time(), "status": 500, "n": i}).encode())


def test_a_zookeeper_group_shows_owners_members_and_lag(setup, cluster3):
    dashboard, _ = setup
    consumer = GroupConsumer(
        "paper", [TOPIC], cluster3.zookeeper_connect, auto_offset_reset="smallest"
    )
    try:
        read = 0
        deadline = time.monotonic() + 20
        while read < 300 and time.monotonic() < deadline:
            read += len(consumer.poll(0.5))
        consumer.commit()
        view = wait_for(
            lambda: (
                (g := group_view(dashboard, "paper")) and g["lag"] == 0 and g["partitions"] and g
            ),
            15,
        )
        assert view["kind"] == "zookeeper" and view["state"] == "Stable"
        assert view["topics"] == [TOPIC] and view["loader"] is None
        [member] = view["members"]
        assert member["id"] == consumer.consumer_id and member["host"]
        assert {p["owner"] for p in view["partitions"]} == {consumer.consumer_id}
        assert sum(p["committed"] for p in view["partitions"]) >= 300
        assert view["lag_history"][-1]["lag"] == 0
    finally:
        consumer.close()
    view = wait_for(lambda: (g := group_view(dashboard, "paper"))["state"] == "Empty" and g, 15)
    assert view["members"] == [] and all(p["owner"] is None for p in view["partitions"])


def test_a_kafka_clients_group_shows_its_state_and_lag(setup, cluster3):
    from kafka import KafkaConsumer

    dashboard, _ = setup
    consumer = KafkaConsumer(
        TOPIC,
        bootstrap_servers=cluster3.bootstrap,
        group_id="kclients",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    try:
        read = 0
        deadline = time.monotonic() + 30
        while read < 300 and time.monotonic() < deadline:
            read += sum(len(v) for v in consumer.poll(500).values())
        consumer.commit()
        produce(cluster3, 40)  # not read: the group lags by 40 (and by what other tests add)
        view = wait_for(
            lambda: (g := group_view(dashboard, "kclients")) and g["lag"] and g["lag"] >= 40 and g,
            15,
        )
        assert view["kind"] == "kafka" and view["state"] == "Stable"
        [member] = view["members"]
        assert member["id"] and member["host"]
        assert {p["owner"] for p in view["partitions"]} == {member["id"]}
        assert sum(p["lag"] for p in view["partitions"]) == view["lag"]
        assert all(p["lag"] == p["log_end_offset"] - p["committed"] for p in view["partitions"])
    finally:
        consumer.close()
    assert wait_for(lambda: group_view(dashboard, "kclients")["state"] == "Empty", 15)


def test_a_loaders_lag_goes_to_zero_after_a_run_and_its_last_run_shows(setup, cluster3):
    dashboard, workdir = setup
    warehouse = workdir / "warehouse"
    command = [sys.executable, "-m", "headrace.cli", "load", "--zookeeper"]
    command += [cluster3.zookeeper_connect, "--topic", TOPIC, "--group", "nightly"]
    command += ["--to", str(warehouse), "--time-field", "ts", "--until-caught-up"]
    before = int(time.time() * 1000)
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    produced = sum(
        p["log_end_offset"]
        for p in next(
            t for t in get_json(dashboard.url + "/api/topics")[1]["topics"] if t["name"] == TOPIC
        )["partition_detail"]
    )
    view = wait_for(
        lambda: (g := group_view(dashboard, "nightly")) and g["loader"]["last_run"] and g, 15
    )
    assert view["kind"] == "loader" and view["state"] == "Idle" and view["members"] == []
    run = view["loader"]["last_run"]
    assert run["finished_at"] >= before and run["seconds"] > 0
    assert run["rows"] == produced and run["files"] > 0 and run["dead_letters"] == 0
    assert view["lag"] == 0 and all(p["lag"] == 0 for p in view["partitions"])
    assert view["loader"]["warehouse"] == f"file://{warehouse}"
    hour = time.strftime("%Y-%m-%dT%H", time.gmtime(int(time.time()) // 3600 * 3600 - 3 * 3600))
    assert hour in view["loader"]["success_hours"]
    produce(cluster3, 25)
    lagging = wait_for(lambda: (g := group_view(dashboard, "nightly"))["lag"] == 25 and g, 15)
    assert lagging["loader"]["last_run"] == run
