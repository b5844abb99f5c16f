"""SASL over TLS (SASL_SSL) on real brokers beside their PLAINTEXT listener: two brokers
replicate over a SASL_SSL inter-broker listener (SCRAM-SHA-512 logins from its JAAS line);
our client and kcat log in with SCRAM-SHA-512 over TLS; a wrong password is refused with
nothing stored; acks=all writes survive the leader's kill -9."""

from __future__ import annotations

import subprocess

import pytest
from conftest import create_topic, metadata, wait_for, zk_session
from request_bodies import fetch_body, produce_to

from broker.protocol.records import build_batch, decode_batch, split_batches
from broker.protocol.registry import ApiKey
from broker.protocol.security_nodes import scram_credential
from broker.security.credentials import write_credential
from consumers.client import BrokerConnection
from consumers.sasl import SaslAuthenticationError
from consumers.security import ClientSecurity

MECHANISM = "SCRAM-SHA-512"
TOPIC = "over-sasl-ssl"
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def _security(certs, user: str, password: str) -> ClientSecurity:
    return ClientSecurity.from_properties(
        {
            **certs.client_properties(protocol="SASL_SSL"),
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": password,
        }
    )


def _connect(bootstrap: str, security: ClientSecurity) -> BrokerConnection:
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    return BrokerConnection(host, int(port), timeout=15, security=security)


def _leader(port: int) -> int:
    leader = metadata(port, [TOPIC])["topics"][0]["partitions"][0]["leader_id"]
    assert leader >= 0
    return leader


def _values(bootstrap: str, security: ClientSecurity) -> list[bytes]:
    with _connect(bootstrap, security) as conn:
        fetched = conn.request(ApiKey.FETCH, fetch_body([(TOPIC, 0, 0)]))
    records = bytes(fetched["responses"][0]["partitions"][0]["records"])
    return [
        r.value for pos, _ in split_batches(records) for r in decode_batch(records, pos).records
    ]


def test_brokers_and_clients_over_sasl_ssl(make_cluster, certs):
    jaas = f'{SCRAM_MODULE} required username="broker" password="broker-pw";'
    cluster = make_cluster(
        2,
        listeners={"SASL_SSL": "SASL_SSL"},
        props={
            **certs.broker_properties(),
            "sasl.enabled.mechanisms": MECHANISM,
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "min.insync.replicas": "2",
        },
    )
    with zk_session(cluster.zookeeper_connect) as client:
        for user, password in (("broker", "broker-pw"), ("alice", "alice-pw")):
            write_credential(client, user, scram_credential(MECHANISM, password))
    alice = _security(certs, "alice", "alice-pw")
    wait_for(lambda: _connect(cluster.bootstrap_for("SASL_SSL"), alice).close() or True, 20)
    plain_port = cluster.brokers[0].port
    create_topic(plain_port, TOPIC, 1, replication_factor=2)
    leader_id = wait_for(lambda: _leader(plain_port), 20)
    leader, other = sorted(cluster.brokers, key=lambda b: b.broker_id != leader_id)
    values = [b"s%d" % i for i in range(3)]
    with _connect(leader.bootstrap_for("SASL_SSL"), alice) as conn:
        for value in values:  # acks=all: the follower fetched it, logged in over SASL_SSL
            batch = build_batch([(None, value)])
            answer = wait_for(lambda b=batch: produce_to(conn, TOPIC, 0, b, acks=-1), 30)
            assert answer["error_code"] == 0, answer

    with pytest.raises(SaslAuthenticationError, match="SASL_AUTHENTICATION_FAILED"):
        _connect(leader.bootstrap_for("SASL_SSL"), _security(certs, "alice", "wrong"))

    auth = ["-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={certs.ca}",
            "-X", f"sasl.mechanisms={MECHANISM}", "-X", "sasl.username=alice"]  # fmt: skip
    out = subprocess.run(
        ["kcat", "-b", leader.bootstrap_for("SASL_SSL"), "-C", "-t", TOPIC, "-p", "0", "-o",
         "beginning", "-e", "-q", *auth, "-X", "sasl.password=alice-pw"],
        capture_output=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.split() == values
    bad = subprocess.run(
        ["kcat", "-b", leader.bootstrap_for("SASL_SSL"), "-P", "-t", TOPIC, "-p", "0",
         *auth, "-X", "sasl.password=wrong"],
        input=b"intruder\n", capture_output=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode != 0

    leader.kill()
    wait_for(lambda: _leader(other.port) == other.broker_id, 30)
    assert _values(other.bootstrap_for("SASL_SSL"), alice) == values  # nothing else stored
