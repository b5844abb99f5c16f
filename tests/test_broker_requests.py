"""Broker behaviour over real sockets: errors, Fetch semantics, ordering, topics, producer ids."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from conftest import create_topic, metadata, wait_for
from request_bodies import fetch_body, produce_body, produce_to

from broker.protocol import zookeeper as layout
from broker.protocol.records import build_batch, iter_records, split_batches
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection, ConnectionClosed


def produce(conn, topic, partition, records, acks=1, version=8):
    if acks == 0:
        conn.send(ApiKey.PRODUCE, produce_body(topic, partition, records, acks), version=version)
        return None
    return produce_to(conn, topic, partition, records, version, acks=acks)


@pytest.fixture(scope="module")
def topic1(cluster1):
    create_topic(cluster1.brokers[0].port, "basics", 2)
    return "basics"


def test_api_versions_lists_exactly_the_served_ranges(cluster1):
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:
        body = conn.request(ApiKey.API_VERSIONS, {})
    assert body["error_code"] == 0
    assert {(k["api_key"], k["min_version"], k["max_version"]) for k in body["api_keys"]} == {
        (18, 0, 3),
        (3, 0, 12),
        (0, 0, 9),
        (1, 4, 13),
        (7, 1, 3),
        (2, 1, 7),
        (19, 2, 7),
        (20, 1, 6),
        (22, 0, 4),
        (23, 0, 4),
        (29, 0, 3),
        (30, 0, 3),
        (31, 0, 3),
        (10, 0, 4),
        (11, 0, 9),
        (12, 0, 4),
        (13, 0, 5),
        (14, 0, 5),
        (8, 2, 9),
        (9, 1, 8),
        (15, 0, 5),
        (16, 0, 4),
        (35, 0, 4),
        (21, 0, 2),
        (37, 0, 3),
        (42, 0, 2),
        (43, 0, 2),
        (47, 0, 0),
        (32, 0, 4),
        (33, 0, 2),
        (44, 0, 1),
        (60, 0, 1),
        (61, 0, 0),
        (17, 0, 1),  # SaslHandshake: ILLEGAL_SASL_STATE on a PLAINTEXT listener
        (36, 0, 2),  # SaslAuthenticate: the same
        (50, 0, 0),
        (51, 0, 0),
    }


def test_old_message_formats_get_a_clear_error(cluster1, topic1):
    # A v1 message set (magic 1): offset, size, crc, magic 1, attributes, timestamp, key, value.
    message = struct.pack(">bbqi", 1, 0, 0, -1) + struct.pack(">i", 1) + b"v"
    legacy = struct.pack(">qiI", 0, len(message) + 4, 0) + message
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:
        result = produce(conn, topic1, 0, legacy, version=2)
    assert result["error_code"] == 43  # UNSUPPORTED_FOR_MESSAGE_FORMAT


def test_produce_errors_are_per_partition(cluster1, topic1):
    corrupt = bytearray(build_batch([(b"k", b"v")]))
    corrupt[-1] ^= 1
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:
        assert produce(conn, "no-such-topic", 0, build_batch([(b"k", b"v")]))["error_code"] == 3
        assert produce(conn, topic1, 7, build_batch([(b"k", b"v")]))["error_code"] == 3
        result = produce(conn, topic1, 0, bytes(corrupt))
        assert result["error_code"] == 2 and "CRC" in result["error_message"]
        assert produce(conn, topic1, 0, build_batch([(b"k", b"v")]), acks=2)["error_code"] == 21
        ok = produce(conn, topic1, 0, build_batch([(b"k", b"ok")]))
        assert ok["error_code"] == 0 and ok["base_offset"] >= 0


def test_fetch_at_the_end_returns_empty_records_and_every_partition(cluster1, topic1):
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:
        end = produce(conn, topic1, 1, build_batch([(b"k", b"x")]))["base_offset"] + 1
        body = conn.request(
            ApiKey.FETCH,
            fetch_body([(topic1, 0, 10**9), (topic1, 1, end), ("no-such-topic", 0, 0)]),
        )
    assert body["error_code"] == 0 and body["session_id"] == 0
    parts = {
        (t["topic"], p["partition_index"]): p for t in body["responses"] for p in t["partitions"]
    }
    assert set(parts) == {(topic1, 0), (topic1, 1), ("no-such-topic", 0)}
    assert parts[(topic1, 0)]["error_code"] == 1  # OFFSET_OUT_OF_RANGE
    at_end = parts[(topic1, 1)]
    assert at_end["error_code"] == 0 and bytes(at_end["records"]) == b""
    assert at_end["records"] is not None
    assert at_end["high_watermark"] == at_end["last_stable_offset"] == end
    assert at_end["preferred_read_replica"] == -1
    assert parts[("no-such-topic", 0)]["error_code"] == 3


def test_fetch_long_polls_until_data_arrives(cluster1, topic1):
    port = cluster1.brokers[0].port
    with BrokerConnection("127.0.0.1", port) as conn:
        end = produce(conn, topic1, 0, build_batch([(b"k", b"first")]))["base_offset"] + 1
    result = {}

    def fetcher():
        with BrokerConnection("127.0.0.1", port) as conn:
            started = time.monotonic()
            result["body"] = conn.request(
                ApiKey.FETCH, fetch_body([(topic1, 0, end)], max_wait_ms=20_000, min_bytes=1)
            )
            result["waited"] = time.monotonic() - started

    thread = threading.Thread(target=fetcher)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), "the fetch answered before any data arrived"
    with BrokerConnection("127.0.0.1", port) as conn:
        produce(conn, topic1, 0, build_batch([(b"k", b"wakes the fetch")]))
    thread.join(15)
    assert not thread.is_alive()
    records = result["body"]["responses"][0]["partitions"][0]["records"]
    assert [r.value for r in iter_records(bytes(records))] == [b"wakes the fetch"]
    assert result["waited"] < 15  # woken by the append, not by max_wait_ms


def test_a_waiting_fetch_delays_later_responses_on_its_connection(cluster1, topic1):
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:
        end = produce(conn, topic1, 1, build_batch([(b"k", b"v")]))["base_offset"] + 1
        first = conn.send(
            ApiKey.FETCH, fetch_body([(topic1, 1, end)], max_wait_ms=700, min_bytes=1)
        )
        second = conn.send(ApiKey.METADATA, {"topics": [], "allow_auto_topic_creation": False})
        started = time.monotonic()
        conn.receive(ApiKey.FETCH, first)  # raises if the Metadata response came first
        assert time.monotonic() - started >= 0.5
        conn.receive(ApiKey.METADATA, second)


def test_acks_0_gets_no_response(cluster1, topic1):
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:
        before = produce(conn, topic1, 0, build_batch([(b"k", b"a")]))["base_offset"]
        produce(conn, topic1, 0, build_batch([(b"k", b"b")]), acks=0)
        after = produce(conn, topic1, 0, build_batch([(b"k", b"c")]))["base_offset"]
    assert after == before + 2


def test_fetch_size_limits_keep_whole_batches(cluster1):
    create_topic(cluster1.brokers[0].port, "sizes", 2)
    big = build_batch([(b"k", b"x" * 5000)])
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:
        for p in (0, 1):
            for _ in range(3):
                produce(conn, "sizes", p, big)
        body = conn.request(
            ApiKey.FETCH,
            fetch_body([("sizes", 0, 0), ("sizes", 1, 0)], max_bytes=100, partition_max_bytes=100),
        )
        parts = body["responses"][0]["partitions"]
        first, second = bytes(parts[0]["records"]), bytes(parts[1]["records"])
        assert len(list(split_batches(first))) == 1 and len(first) == len(big)  # at least one
        assert second == b""  # past the first partition, limits hold strictly
        body = conn.request(
            ApiKey.FETCH,
            fetch_body(
                [("sizes", 0, 0), ("sizes", 1, 0)], max_bytes=12_000, partition_max_bytes=11_000
            ),
        )
        parts = body["responses"][0]["partitions"]
        assert [len(bytes(p["records"])) // len(big) for p in parts] == [2, 0]


def test_list_offsets_earliest_latest_and_by_time(cluster1):
    create_topic(cluster1.brokers[0].port, "times", 1)
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:
        for i in range(5):
            produce(conn, "times", 0, build_batch([(b"k", b"%d" % i)], timestamp=1000 * (i + 1)))

        def list_offset(ts, version=5):
            body = conn.request(
                ApiKey.LIST_OFFSETS,
                {
                    "replica_id": -1,
                    "isolation_level": 0,
                    "topics": [
                        {
                            "name": "times",
                            "partitions": [
                                {"partition_index": 0, "current_leader_epoch": -1, "timestamp": ts}
                            ],
                        }
                    ],
                },
                version=version,
            )
            p = body["topics"][0]["partitions"][0]
            return p["error_code"], p["offset"], p["timestamp"]

        assert list_offset(-2) == (0, 0, -1)
        assert list_offset(-1) == (0, 5, -1)
        assert list_offset(2500) == (0, 2, 3000)
        assert list_offset(99999) == (0, -1, -1)
        assert list_offset(-2, version=1) == (0, 0, -1)


def test_metadata_auto_creates_topics_when_allowed(cluster1):
    port = cluster1.brokers[0].port
    body = metadata(port, ["made-on-demand"], auto_create=True)
    assert body["topics"][0]["error_code"] in (0, 5)
    body = wait_for(lambda: metadata(port, ["made-on-demand"])["topics"][0]["partitions"], 10)
    assert len(body) == 3  # num.partitions of the test brokers
    assert metadata(port, ["not-asked-for"], auto_create=False)["topics"][0]["error_code"] == 3
    assert metadata(port, ["bad name!"], auto_create=True)["topics"][0]["error_code"] == 17


def test_create_topics_validates_and_reports(cluster1):
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:

        def create(name, partitions=1, rf=1, configs=(), validate_only=False):
            body = conn.request(
                ApiKey.CREATE_TOPICS,
                {
                    "topics": [
                        {
                            "name": name,
                            "num_partitions": partitions,
                            "replication_factor": rf,
                            "assignments": [],
                            "configs": [{"name": k, "value": v} for k, v in configs],
                        }
                    ],
                    "timeout_ms": 5000,
                    "validate_only": validate_only,
                },
            )
            return body["topics"][0]["error_code"]

        assert create("checked", validate_only=True) == 0
        assert metadata(cluster1.brokers[0].port, ["checked"])["topics"][0]["error_code"] == 3
        assert create("rf3", rf=3) == 38
        assert create("zero", partitions=0) == 37
        assert create("badcfg", configs=[("retention.ms", "soon")]) == 40
        assert create("unknowncfg", configs=[("retention.msec", "1")]) == 40
        assert create("bad/name") == 17
        assert create("twice", configs=[("retention.ms", "60000")]) == 0
        assert create("twice") == 36


def test_delete_topics_removes_the_data(cluster1):
    port = cluster1.brokers[0].port
    create_topic(port, "doomed", 2)
    with BrokerConnection("127.0.0.1", port) as conn:
        produce(conn, "doomed", 0, build_batch([(b"k", b"v")]))
        body = conn.request(
            ApiKey.DELETE_TOPICS, {"topic_names": ["doomed", "never-was"], "timeout_ms": 5000}
        )
    assert [(r["name"], r["error_code"]) for r in body["responses"]] == [
        ("doomed", 0),
        ("never-was", 3),
    ]
    logs = cluster1.brokers[0].workdir / "broker-1-logs"
    wait_for(lambda: not list(logs.glob("doomed-*")), 10)
    assert metadata(port, ["doomed"])["topics"][0]["error_code"] == 3


def test_producer_ids_are_unique_across_brokers(cluster3):
    ids = []
    for broker in cluster3.brokers:
        with BrokerConnection("127.0.0.1", broker.port) as conn:
            for _ in range(3):
                body = conn.request(
                    ApiKey.INIT_PRODUCER_ID,
                    {"transactional_id": None, "transaction_timeout_ms": 1000},
                )
                assert body["error_code"] == 0 and body["producer_epoch"] == 0
                ids.append(body["producer_id"])
    assert len(set(ids)) == len(ids)


def test_two_brokers_racing_to_create_a_topic_one_wins(cluster3):
    results = []
    barrier = threading.Barrier(3)

    def create(port):
        with BrokerConnection("127.0.0.1", port) as conn:
            barrier.wait()
            body = conn.request(
                ApiKey.CREATE_TOPICS,
                {
                    "topics": [
                        {
                            "name": "raced",
                            "num_partitions": 6,
                            "replication_factor": 1,
                            "assignments": [],
                            "configs": [],
                        }
                    ],
                    "timeout_ms": 5000,
                    "validate_only": False,
                },
            )
            results.append(body["topics"][0]["error_code"])

    threads = [threading.Thread(target=create, args=(b.port,)) for b in cluster3.brokers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [0, 36, 36]
    placement = metadata(cluster3.brokers[1].port, ["raced"])["topics"][0]["partitions"]
    assert len(placement) == 6 and {p["leader_id"] for p in placement} == {1, 2, 3}


def test_partitions_elsewhere_answer_not_leader(cluster3):
    create_topic(cluster3.brokers[0].port, "spread", 3)
    body = metadata(cluster3.brokers[0].port, ["spread"])
    for p in body["topics"][0]["partitions"]:
        for broker in cluster3.brokers:
            with BrokerConnection("127.0.0.1", broker.port) as conn:
                result = produce(conn, "spread", p["partition_index"], build_batch([(b"k", b"v")]))
            expected = 0 if broker.broker_id == p["leader_id"] else 6
            assert result["error_code"] == expected


def test_a_frame_over_the_request_limit_closes_only_that_connection(make_cluster):
    cluster = make_cluster(1, socket_request_max_bytes=100_000)
    port = cluster.brokers[0].port
    with BrokerConnection("127.0.0.1", port) as good:
        raw = socket.create_connection(("127.0.0.1", port))
        raw.sendall(struct.pack(">i", 200_000) + b"\x00" * 1000)
        raw.settimeout(10)
        assert raw.recv(100) == b""  # closed by the broker
        raw.close()
        assert good.request(ApiKey.API_VERSIONS, {})["error_code"] == 0
    text = cluster.brokers[0].log_path.read_text()
    assert "over socket.request.max.bytes" in text


def test_topics_command(cluster1):
    bootstrap = cluster1.brokers[0].bootstrap

    def run(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "headrace.cli",
                "topics",
                "--bootstrap-server",
                bootstrap,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = run(
        "create", "--topic", "cli-made", "--partitions", "4", "--config", "retention.ms=3600000"
    )
    assert made.returncode == 0, made.stderr
    assert "cli-made" in run("list").stdout.split()
    described = run("describe", "--topic", "cli-made").stdout
    assert "PartitionCount: 4" in described and described.count("Leader: 1") == 4
    again = run("create", "--topic", "cli-made")
    assert again.returncode == 1 and "TOPIC_ALREADY_EXISTS" in again.stderr
    assert run("delete", "--topic", "cli-made").returncode == 0


@pytest.mark.integration
def test_bad_configuration_exits_with_a_clear_message(tmp_path):
    config = tmp_path / "server.properties"
    config.write_text("broker.id=1\nlog.segment.bytes=huge\nzookeeper.connect=127.0.0.1:1\n")
    result = subprocess.run(
        [sys.executable, "-m", "headrace.cli", "broker", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "log.segment.bytes: 'huge' is not a whole number" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "headrace.cli",
            "broker",
            "--config",
            str(tmp_path / "missing.properties"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "cannot read configuration file" in result.stderr


def test_connection_closed_mid_request_does_not_hurt_the_broker(cluster1):
    port = cluster1.brokers[0].port
    for _ in range(20):
        raw = socket.create_connection(("127.0.0.1", port))
        raw.sendall(struct.pack(">i", 1000) + b"\x00\x03")
        raw.close()
    with BrokerConnection("127.0.0.1", port) as conn:
        assert conn.request(ApiKey.API_VERSIONS, {})["error_code"] == 0
    with pytest.raises(ConnectionClosed), BrokerConnection("127.0.0.1", port) as conn:
        conn.request(ApiKey.METADATA, {"topics": None}, version=13)  # not served: closed


def test_a_failed_acks_0_produce_closes_the_connection(cluster1, topic1):
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:
        produce(conn, "no-such-topic-acks0", 0, build_batch([(b"k", b"v")]), acks=0)
        with pytest.raises(ConnectionClosed):
            conn.request(ApiKey.API_VERSIONS, {})


def test_a_malformed_placement_in_zookeeper_keeps_the_data(cluster1, topic1):
    from kazoo.client import KazooClient

    port = cluster1.brokers[0].port
    create_topic(port, "fragile", 1)
    with BrokerConnection("127.0.0.1", port) as conn:
        produce(conn, "fragile", 0, build_batch([(b"k", b"keep me")]))
    zk = KazooClient(hosts=cluster1.zookeeper_connect)
    zk.start()
    try:
        good, _ = zk.get(layout.topic_path("fragile"))
        zk.set(layout.topic_path("fragile"), b'{"partitions": {"0": ["one"]}}')
        time.sleep(1)
        assert (cluster1.brokers[0].workdir / "broker-1-logs" / "fragile-0").exists()
        zk.set(layout.topic_path("fragile"), good)
    finally:
        zk.stop()
        zk.close()
    with BrokerConnection("127.0.0.1", port) as conn:
        body = conn.request(ApiKey.FETCH, fetch_body([("fragile", 0, 0)]))
    records = body["responses"][0]["partitions"][0]["records"]
    assert [r.value for r in iter_records(bytes(records))] == [b"keep me"]


def create_reborn_on_broker_2(port):
    """Create topic ``reborn`` with its one partition placed on broker 2, through ``port``."""
    with BrokerConnection("127.0.0.1", port) as conn:
        body = conn.request(
            ApiKey.CREATE_TOPICS,
            {
                "topics": [
                    {
                        "name": "reborn",
                        "num_partitions": 1,
                        "replication_factor": -1,
                        "configs": [],
                        "assignments": [{"partition_index": 0, "broker_ids": [2]}],
                    }
                ],
                "timeout_ms": 5000,
                "validate_only": False,
            },
        )
    assert body["topics"][0]["error_code"] == 0


def test_a_topic_deleted_while_its_broker_was_down_does_not_come_back(make_cluster):
    cluster = make_cluster(2)
    first, second = cluster.brokers
    create_reborn_on_broker_2(first.port)
    with BrokerConnection("127.0.0.1", second.port) as conn:
        wait_for(
            lambda: produce(conn, "reborn", 0, build_batch([(b"k", b"OLD")]))["error_code"] == 0, 10
        )
    second.stop()
    with BrokerConnection("127.0.0.1", first.port) as conn:
        assert (
            conn.request(ApiKey.DELETE_TOPICS, {"topic_names": ["reborn"], "timeout_ms": 5000})[
                "responses"
            ][0]["error_code"]
            == 0
        )
    second.start()
    # Known deleted (its tombstone): removed, not served, not set aside.
    wait_for(lambda: not list((second.workdir / "broker-2-logs").glob("reborn-0*")), 10)
    create_reborn_on_broker_2(first.port)
    with BrokerConnection("127.0.0.1", second.port) as conn:

        def fresh():
            body = conn.request(ApiKey.FETCH, fetch_body([("reborn", 0, 0)]))
            p = body["responses"][0]["partitions"][0]
            return p["error_code"] == 0 and p

        p = wait_for(fresh, 10)
    assert p["high_watermark"] == 0 and bytes(p["records"]) == b""
