"""A broker killed with -9 serves again at once: it replaces the registration its dead
previous run left in ZooKeeper instead of waiting for that session to expire; another live
broker with the same id, or one on the same log dirs, is still refused."""

from __future__ import annotations

import time

import pytest
from conftest import create_topic
from kazoo.client import KazooClient
from request_bodies import fetch_body, produce_to

from broker.protocol import zookeeper as layout
from broker.protocol.records import build_batch, split_batches
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection
from headrace.devcluster import BrokerProcess, free_port

SESSION_MS = 18000


def registration(connect: str, broker_id: int):
    client = KazooClient(hosts=connect, timeout=10)
    client.start(timeout=15)
    try:
        data, stat = client.get(layout.broker_path(broker_id))
        return layout.decode_broker(data), stat.ephemeralOwner
    finally:
        client.stop()
        client.close()


def produce(conn, topic, partition, value):
    result = produce_to(conn, topic, partition, build_batch([(None, value)]))
    assert result["error_code"] == 0, result


def fetch_all(conn, topic, partition) -> list[int]:
    part = conn.request(ApiKey.FETCH, fetch_body([(topic, partition, 0)]))["responses"][0][
        "partitions"
    ][0]
    assert part["error_code"] == 0, part
    return [h.base_offset for _, h in split_batches(bytes(part["records"]))]


@pytest.mark.slow
def test_a_broker_restarted_after_kill_9_replaces_its_old_registration(make_cluster):
    cluster = make_cluster(1, zookeeper_session_timeout_ms=SESSION_MS)
    broker = cluster.brokers[0]
    create_topic(broker.port, "many", 100)
    with BrokerConnection("127.0.0.1", broker.port) as conn:
        for p in range(0, 100, 10):
            for i in range(3):
                produce(conn, "many", p, f"{p}-{i}".encode())
    _, old_session = registration(cluster.zookeeper_connect, 1)

    broker.kill()
    began = time.monotonic()
    broker.start()
    restart_s = time.monotonic() - began

    info, new_session = registration(cluster.zookeeper_connect, 1)
    assert new_session != old_session  # the old session's node was replaced, not expired
    assert info.endpoints == (f"PLAINTEXT://127.0.0.1:{broker.port}",)
    assert "replacing the registration left by our previous run" in broker.log_path.read_text()
    assert restart_s < SESSION_MS / 1000 / 2  # loose: waiting for the expiry takes 18 s
    with BrokerConnection("127.0.0.1", broker.port) as conn:
        for p in range(0, 100, 10):
            assert fetch_all(conn, "many", p) == [0, 1, 2]


def test_a_second_live_broker_with_the_same_id_is_refused_naming_the_holder(make_cluster, tmp_path):
    cluster = make_cluster(1)
    first = cluster.brokers[0]
    _, session = registration(cluster.zookeeper_connect, 1)
    twin = BrokerProcess(
        tmp_path / "twin",
        1,
        cluster.zookeeper_connect,
        overrides={"zookeeper.session.timeout.ms": "1500"},
    )
    with pytest.raises(RuntimeError) as refused:
        twin.start()
    message = str(refused.value)
    assert f"broker id 1 is registered by another live broker at 127.0.0.1:{first.port}" in message
    assert "Traceback" not in message
    assert registration(cluster.zookeeper_connect, 1)[1] == session  # still the first one's
    first.wait_ready(5)  # and it goes on serving


def test_a_second_broker_on_the_same_log_dirs_is_refused(make_cluster, tmp_path):
    cluster = make_cluster(1)
    first = cluster.brokers[0]
    log_dirs = first.workdir / "broker-1-logs"
    twin = BrokerProcess(
        tmp_path / "twin",
        2,
        cluster.zookeeper_connect,
        port=free_port(),
        overrides={"log.dirs": str(log_dirs)},
    )
    with pytest.raises(RuntimeError) as refused:
        twin.start()
    assert f"log directory {log_dirs} is locked by another process" in str(refused.value)
    first.wait_ready(5)
