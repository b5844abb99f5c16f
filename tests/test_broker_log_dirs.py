"""DescribeLogDirs v0-v4: the schemas round-trip, the answer over a log manager (sizes,
filters, an offline directory, the volume's total and usable bytes), and real clients asking
a live broker (kafka-python's AdminClient.describe_log_dirs, and ours)."""

from __future__ import annotations

import pytest
from conftest import create_topic, wait_for
from schema_samples import project

from broker.log import LogConfig, LogManager
from broker.log_dirs import describe_log_dirs
from broker.protocol.errors import KafkaStorageError
from broker.protocol.records import build_batch
from broker.protocol.registry import API_BY_KEY, ApiKey

API = API_BY_KEY[ApiKey.DESCRIBE_LOG_DIRS]


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_request_and_response_round_trip(version):
    assert (API.min_version, API.max_version) == (0, 4)
    for body in ({"topics": None}, {"topics": [{"topic": "t", "partitions": [0, 3]}]}):
        assert API.request.decode(API.request.encode(body, version), version) == body
    response = {
        "throttle_time_ms": 0,
        "results": [
            {
                "error_code": 0,
                "log_dir": "/var/lib/headrace",
                "topics": [
                    {
                        "name": "t",
                        "partitions": [
                            {
                                "partition_index": 3,
                                "partition_size": 1 << 33,
                                "offset_lag": 0,
                                "is_future_key": False,
                            }
                        ],
                    }
                ],
            }
        ],
    }
    if version >= 3:
        response["error_code"] = 0
    if version >= 4:
        response["results"][0] |= {"total_bytes": 1 << 40, "usable_bytes": 1 << 39}
    decoded = API.response.decode(API.response.encode(response, version), version)
    assert project(decoded, response) == response


def _manager(tmp_path) -> LogManager:
    manager = LogManager([tmp_path / "a", tmp_path / "b"], LogConfig())
    manager.startup()
    for topic, partition, count in (("t", 0, 3), ("t", 1, 0), ("u", 0, 5)):
        plog = manager.get_or_create_log(topic, partition)
        if count:
            plog.append(build_batch([(None, b"x" * 100, None, 0)] * count))
    return manager


def _sizes(body) -> dict:
    return {
        (t["name"], p["partition_index"]): p["partition_size"]
        for r in body["results"]
        for t in r["topics"]
        for p in t["partitions"]
    }


def test_every_partition_is_listed_under_its_log_dir_with_its_size(tmp_path):
    manager = _manager(tmp_path)
    try:
        body = describe_log_dirs({"topics": None}, manager)
        assert {r["log_dir"] for r in body["results"]} == {
            str(tmp_path / "a"),
            str(tmp_path / "b"),
        }
        assert all(r["error_code"] == 0 for r in body["results"]) and body["error_code"] == 0
        for r in body["results"]:  # v4: the volume under each log dir
            assert 0 <= r["usable_bytes"] <= r["total_bytes"] and r["total_bytes"] > 0
        expected = {key: plog.size for key, plog in manager.logs.items()}
        assert _sizes(body) == expected and expected[("u", 0)] > expected[("t", 0)] > 0
        for r in body["results"]:
            for t in r["topics"]:
                for p in t["partitions"]:
                    where = manager.get_log(t["name"], p["partition_index"]).directory.parent
                    assert str(where) == r["log_dir"] and p["offset_lag"] == 0
        wanted = describe_log_dirs({"topics": [{"topic": "t", "partitions": [1, 7]}]}, manager)
        assert _sizes(wanted) == {("t", 1): 0}  # partitions not held here are left out
    finally:
        manager.shutdown()


def test_a_log_dir_holding_an_offline_partition_answers_kafka_storage_error(tmp_path):
    manager = _manager(tmp_path)
    try:
        bad = manager.get_log("u", 0)
        bad.offline = True
        body = describe_log_dirs({"topics": None}, manager)
        by_dir = {r["log_dir"]: r for r in body["results"]}
        failed = by_dir[str(bad.directory.parent)]
        assert failed["error_code"] == KafkaStorageError.code and failed["topics"] == []
        bad.offline = False
    finally:
        manager.shutdown()


def test_kafka_python_admin_and_our_client_read_sizes_from_a_live_broker(cluster1):
    from kafka.admin import KafkaAdminClient

    from consumers.producer import Producer

    broker = cluster1.brokers[0]
    create_topic(broker.port, "sized", 2)
    with Producer(bootstrap_servers=cluster1.bootstrap) as producer:
        for i in range(200):
            producer.send("sized", b"value %d" % i, partition=i % 2)
    admin = KafkaAdminClient(bootstrap_servers=cluster1.bootstrap)
    try:
        [answer] = wait_for(lambda: admin.describe_log_dirs(), 10)
    finally:
        admin.close()
    [log_dir] = answer["log_dirs"]
    assert log_dir["error_code"] == 0
    [topic] = [t for t in log_dir["topics"] if t["name"] == "sized"]
    sizes = {p["partition_index"]: p["partition_size"] for p in topic["partitions"]}
    assert set(sizes) == {0, 1} and all(size > 0 for size in sizes.values())

    from consumers.client import BrokerConnection

    with BrokerConnection("127.0.0.1", broker.port) as conn:
        for version in (0, 1, 2, 3, 4):
            body = conn.request(ApiKey.DESCRIBE_LOG_DIRS, {"topics": None}, version=version)
            assert {k[1]: v for k, v in _sizes(body).items() if k[0] == "sized"} == sizes
