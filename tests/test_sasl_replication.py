"""Brokers that talk to each other over SASL_PLAINTEXT: followers log in (PLAIN, from the
listener's JAAS line) before they fetch, so acks=all writes are replicated and survive the
leader's kill -9; a broker whose inter-broker password is wrong never joins the writes."""

from __future__ import annotations

import time

import pytest
from conftest import wait_for
from request_bodies import fetch_body, produce_to
from sasl_helpers import ADMIN_SECURITY, SaslBroker, sasl_properties

from broker.protocol.records import build_batch, decode_batch, split_batches
from broker.protocol.registry import ApiKey
from headrace.devcluster import free_port

TOPIC = "replicated"


def _cluster(zookeeper, tmp_path, broker_password: dict[int, str] | None = None):
    connect = f"{zookeeper.connect}/sasl-repl-{time.monotonic_ns()}"
    plain = tmp_path / "plain-users"
    plain.write_text("")
    brokers = []
    for broker_id in (1, 2):
        port = free_port()
        props = sasl_properties(port, plain, **{"min.insync.replicas": "2"})
        password = (broker_password or {}).get(broker_id)
        if password is not None:  # the broker's own login: another password than its peers'
            key = "listener.name.sasl_plaintext.plain.sasl.jaas.config"
            props[key] = props[key].replace('password="admin-secret"', f'password="{password}"')
        brokers.append(SaslBroker(tmp_path, broker_id, connect, port=port, overrides=props))
    for b in brokers:
        b.start()
    return brokers


def _create_topic(broker) -> None:
    """One partition on brokers 1 and 2, broker 1 its preferred leader."""
    body = {
        "topics": [
            {
                "name": TOPIC,
                "num_partitions": -1,
                "replication_factor": -1,
                "assignments": [{"partition_index": 0, "broker_ids": [1, 2]}],
                "configs": [],
            }
        ],
        "timeout_ms": 30000,
        "validate_only": False,
    }
    with broker.connect(ADMIN_SECURITY) as conn:
        assert conn.request(ApiKey.CREATE_TOPICS, body)["topics"][0]["error_code"] == 0


def _leader(brokers) -> int:
    with brokers[0].connect(ADMIN_SECURITY) as conn:
        body = conn.request(ApiKey.METADATA, {"topics": [{"name": TOPIC}]})
    leader = body["topics"][0]["partitions"][0]["leader_id"]
    assert leader >= 0
    return leader


def _produce(broker, value: bytes, timeout_ms: int = 10000) -> dict:
    with broker.connect(ADMIN_SECURITY, timeout=30) as conn:
        return produce_to(
            conn, TOPIC, 0, build_batch([(None, value)]), acks=-1, timeout_ms=timeout_ms
        )


@pytest.fixture
def stop_after():
    started = []
    yield started.extend
    for b in started:
        b.kill()


def test_acks_all_writes_replicate_over_sasl_and_survive_a_leader_kill(
    zookeeper, tmp_path, stop_after
):
    brokers = _cluster(zookeeper, tmp_path)
    stop_after(brokers)
    _create_topic(brokers[0])
    leader_id = wait_for(lambda: _leader(brokers), 20)
    leader = next(b for b in brokers if b.broker_id == leader_id)
    other = next(b for b in brokers if b.broker_id != leader_id)
    values = [b"r%d" % i for i in range(5)]
    for value in values:
        answer = wait_for(lambda v=value: _produce(leader, v), 30)
        assert answer["error_code"] == 0, answer
    leader.kill()
    wait_for(lambda: _leader([other]) == other.broker_id, 30)
    with other.connect(ADMIN_SECURITY) as conn:
        fetched = conn.request(ApiKey.FETCH, fetch_body([(TOPIC, 0, 0)]))
    records = bytes(fetched["responses"][0]["partitions"][0]["records"])
    got = [r.value for pos, _ in split_batches(records) for r in decode_batch(records, pos).records]
    assert got == values


def test_a_follower_with_a_wrong_inter_broker_password_never_joins_the_writes(
    zookeeper, tmp_path, stop_after
):
    brokers = _cluster(zookeeper, tmp_path, broker_password={2: "not-the-password"})
    stop_after(brokers)
    _create_topic(brokers[0])
    wait_for(lambda: _leader(brokers) == 1, 20)
    leader, follower = brokers
    answer = _produce(leader, b"x", timeout_ms=3000)
    # The follower cannot log in to fetch: acks=all never completes with it (timed out, or
    # refused once the ISR shrank below min.insync.replicas).
    assert answer["error_code"] in (7, 19, 20), answer
    assert "SASL_AUTHENTICATION_FAILED" in follower.log_path.read_text()
