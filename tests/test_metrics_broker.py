"""A broker's Prometheus page (``metrics.port``), scraped over HTTP and parsed with
``prometheus_client``'s parser: the counters match exactly what the test sent."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import Cluster, create_topic, metadata, wait_for
from metrics_scrape import scrape
from request_bodies import fetch_body, join_group_body, produce_to

from broker.config import BrokerConfig
from broker.log import ConfigError
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection
from headrace.devcluster import BrokerProcess, free_port

TOPIC = "metered"


@pytest.fixture(scope="module")
def broker(zookeeper, tmp_path_factory):
    """One broker serving metrics, with a two-partition topic."""
    cluster = Cluster(
        tmp_path_factory.mktemp("metrics"),
        f"{zookeeper.connect}/metrics-{time.monotonic_ns()}",
        1,
        {"group.initial.rebalance.delay.ms": "0", "auto.create.topics.enable": "false"},
    )
    cluster.brokers[0].metrics_port = free_port()
    cluster.start()
    create_topic(cluster.brokers[0].port, TOPIC, 2)
    yield cluster.brokers[0]
    cluster.stop()


def batches(count: int) -> list[tuple[int, bytes]]:
    """``count`` (partition, batch) pairs of 1..count records of different sizes."""
    return [
        (i % 2, build_batch([(b"k%d" % j, b"v" * (10 * i + j)) for j in range(i + 1)]))
        for i in range(count)
    ]


def test_produce_counts_requests_messages_and_bytes_per_topic(broker):
    sent = batches(7)
    before = scrape(broker.metrics_url)
    with BrokerConnection("127.0.0.1", broker.port) as conn:
        for partition, batch in sent:
            assert produce_to(conn, TOPIC, partition, batch, version=8)["error_code"] == 0
    after = scrape(broker.metrics_url)

    def delta(name, **labels):
        return after[name, labels] - before[name, labels]

    assert delta("headrace_requests_total", api="Produce", version="8") == len(sent)
    assert delta("headrace_request_seconds_count", api="Produce") == len(sent)
    assert delta("headrace_messages_in_total", topic=TOPIC) == sum(range(1, len(sent) + 1))
    assert delta("headrace_bytes_in_total", topic=TOPIC) == sum(len(b) for _, b in sent)
    assert delta("headrace_request_errors_total", api="Produce") == 0


def test_partition_gauges_equal_the_log_end_offsets_and_sizes(broker):
    with BrokerConnection("127.0.0.1", broker.port) as conn:
        produce_to(conn, TOPIC, 1, build_batch([(None, b"x")] * 3))
        listed = conn.request(
            ApiKey.LIST_OFFSETS,
            {
                "replica_id": -1,
                "isolation_level": 0,
                "topics": [
                    {
                        "name": TOPIC,
                        "partitions": [
                            {"partition_index": p, "current_leader_epoch": -1, "timestamp": -1}
                            for p in (0, 1)
                        ],
                    }
                ],
            },
        )
        fetched = conn.request(ApiKey.FETCH, fetch_body([(TOPIC, p, 0) for p in (0, 1)]))
    page = scrape(broker.metrics_url)
    ends = {p["partition_index"]: p["offset"] for p in listed["topics"][0]["partitions"]}
    sizes = {p["partition_index"]: len(p["records"]) for p in fetched["responses"][0]["partitions"]}
    for partition in (0, 1):
        labels = {"topic": TOPIC, "partition": str(partition)}
        assert page["headrace_log_end_offset", labels] == ends[partition] > 0
        assert page["headrace_log_size_bytes", labels] == sizes[partition] > 0


def test_errors_are_counted_by_api_and_error_name(broker):
    before = scrape(broker.metrics_url)
    with BrokerConnection("127.0.0.1", broker.port) as conn:
        assert produce_to(conn, "no-such-topic", 0, build_batch([(None, b"v")]))["error_code"] == 3
        assert produce_to(conn, TOPIC, 9, build_batch([(None, b"v")]))["error_code"] == 3
    assert metadata(broker.port, ["nor-this-one"])["topics"][0]["error_code"] == 3
    after = scrape(broker.metrics_url)
    unknown = "UNKNOWN_TOPIC_OR_PARTITION"
    for api, count in (("Produce", 2), ("Metadata", 1)):
        labels = {"api": api, "error": unknown}
        assert (
            after["headrace_request_errors_total", labels]
            - before["headrace_request_errors_total", labels]
            == count
        )
    assert after["headrace_messages_in_total", {"topic": "no-such-topic"}] == 0


def test_fetch_counts_bytes_out_per_topic(broker):
    with BrokerConnection("127.0.0.1", broker.port) as conn:
        produce_to(conn, TOPIC, 0, build_batch([(None, b"out")] * 4))
        before = scrape(broker.metrics_url)
        body = conn.request(ApiKey.FETCH, fetch_body([(TOPIC, 0, 0)]))
        again = conn.request(ApiKey.FETCH, fetch_body([(TOPIC, 1, 0)]))
    after = scrape(broker.metrics_url)
    sent = len(body["responses"][0]["partitions"][0]["records"])
    sent += len(again["responses"][0]["partitions"][0]["records"])
    out = {"topic": TOPIC}
    assert sent > 0
    assert after["headrace_bytes_out_total", out] - before["headrace_bytes_out_total", out] == sent
    fetches = {"api": "Fetch"}
    assert (
        after["headrace_requests_total", fetches] - before["headrace_requests_total", fetches] == 2
    )


def test_connections_waiting_fetches_groups_and_zookeeper_gauges(broker):
    with BrokerConnection("127.0.0.1", broker.port) as conn:
        end = conn.request(ApiKey.FETCH, fetch_body([(TOPIC, 0, 0)]))["responses"][0]
        offset = end["partitions"][0]["high_watermark"]
        parked = threading.Thread(
            target=conn.request,
            args=(ApiKey.FETCH, fetch_body([(TOPIC, 0, offset)], max_wait_ms=4000, min_bytes=1)),
        )
        parked.start()
        with BrokerConnection("127.0.0.1", broker.port) as member:
            joined = member.request(ApiKey.JOIN_GROUP, join_group_body("watched"), version=3)
            assert joined["error_code"] == 0
            page = wait_for(
                lambda: (p := scrape(broker.metrics_url))["headrace_waiting_fetches"] == 1 and p,
                5,
            )
            assert page["headrace_connections"] >= 2
            assert page["headrace_groups", {"state": "CompletingRebalance"}] == 1
        parked.join(10)
    page = scrape(broker.metrics_url)
    assert page["headrace_waiting_fetches"] == 0
    assert page["headrace_zookeeper_session_state", {"state": "connected"}] == 1
    assert page["headrace_zookeeper_session_state"] == 1
    assert page["headrace_controller_active"] == 1
    assert page["headrace_partitions_led"] == 2
    assert page["headrace_under_replicated_partitions"] == 0
    assert page["headrace_offline_partitions"] == 0
    assert page["headrace_leader_elections_total"] == 2


def test_a_bad_metrics_port_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        BrokerConfig({"metrics.port": "http"})
    with pytest.raises(ConfigError, match=r"metrics\.port"):
        BrokerConfig({"metrics.port": "70000"})
    assert BrokerConfig({})["metrics.port"] is None


def test_a_metrics_port_in_use_stops_the_broker_before_it_joins(zk_chroot, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = BrokerProcess(tmp_path, 7, zk_chroot, metrics_port=port)
        with pytest.raises(RuntimeError, match="exited with 1"):
            broker.start(timeout=30)
    out = broker.log_path.read_text()
    assert f"broker failed to start: Couldn't listen on 127.0.0.1:{port}" in out
    assert "registered broker" not in out
