"""The broker's security caches across its life, on real brokers and a real ZooKeeper: a
client that connects the moment a broker's port opens is judged by the stored ACLs and logs
in with a stored SCRAM credential (both caches are loaded before any request is read); an
unauthorized Produce to a missing topic is answered TOPIC_AUTHORIZATION_FAILED, as Kafka;
after the broker's ZooKeeper session expired, ACLs and SCRAM users changed while it was away
apply (every ACL read again, even with the change notifications gone; a deleted user can no
longer log in, a new one can)."""

from __future__ import annotations

import os
import signal
import time

from conftest import create_topic, wait_for, zk_session
from request_bodies import produce_to
from sasl_helpers import SaslBroker, sasl_properties, security

from broker.protocol import acl_nodes
from broker.protocol.acls import ALL, ALLOW, CLUSTER, CREATE, LITERAL, PREFIXED, TOPIC, AclBinding
from broker.protocol.errors import TopicAuthorizationFailedError
from broker.protocol.records import build_batch
from broker.protocol.security_nodes import scram_credential
from broker.protocol.zookeeper import BROKER_IDS
from broker.security.acl_store import ZkAclStore
from broker.security.credentials import delete_credential, write_credential
from consumers.client import BrokerConnection
from consumers.sasl import SaslAuthenticationError
from headrace.devcluster import free_port

AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"
ANONYMOUS = "User:ANONYMOUS"
DENIED = TopicAuthorizationFailedError.code


def _all_on(topic: str) -> AclBinding:
    return AclBinding(TOPIC, topic, LITERAL, ANONYMOUS, "*", ALL, ALLOW)


def _produce(port: int, topic: str, value: bytes = b"v") -> int:
    with BrokerConnection("127.0.0.1", port, timeout=30) as conn:
        return produce_to(conn, topic, 0, build_batch([(None, value)]))["error_code"]


def _first_connection(port: int, timeout: float = 30.0) -> BrokerConnection:
    """A connection made the moment ``port`` accepts one."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return BrokerConnection("127.0.0.1", port, timeout=30)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _expire_session(broker, zk) -> None:
    """Pause ``broker`` until ZooKeeper has expired its session (its registration gone)."""
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: zk.exists(f"{BROKER_IDS}/{broker.broker_id}") is None, 30)
    except BaseException:
        os.kill(broker.process.pid, signal.SIGCONT)
        raise


def test_a_client_connecting_as_the_port_opens_is_judged_by_the_stored_acls(make_cluster):
    cluster = make_cluster(1, authorizer_class_name=AUTHORIZER)
    broker = cluster.brokers[0]
    with zk_session(cluster.zookeeper_connect) as zk:
        ZkAclStore(zk).add([_all_on("open")])
        wait_for(lambda: create_topic(broker.port, "open", 1, check=False)["error_code"] == 0, 30)
        wait_for(lambda: _produce(broker.port, "open", b"before") == 0, 30)

    broker.stop()
    broker.wait_ready = lambda timeout=30.0: None  # start, and do not wait for it
    broker.start()
    with _first_connection(broker.port) as conn:
        first = produce_to(conn, "open", 0, build_batch([(None, b"first")]))["error_code"]
    # The first answer may say the partition's leader is not known yet; never "denied".
    assert first != DENIED
    wait_for(lambda: _produce(broker.port, "open", b"after") == 0, 30)
    assert _produce(broker.port, "secret") == DENIED


def test_acls_changed_while_the_session_was_lost_apply_after(make_cluster):
    cluster = make_cluster(1, authorizer_class_name=AUTHORIZER)
    broker = cluster.brokers[0]
    with zk_session(cluster.zookeeper_connect) as zk:
        store = ZkAclStore(zk)
        create = AclBinding(CLUSTER, "kafka-cluster", LITERAL, ANONYMOUS, "*", CREATE, ALLOW)
        store.add([create, _all_on("kept"), _all_on("revoked")])
        for topic in ("kept", "revoked", "granted"):
            wait_for(
                lambda t=topic: not create_topic(broker.port, t, 1, check=False)["error_code"], 30
            )
        wait_for(lambda: _produce(broker.port, "revoked") == 0, 30)
        assert _produce(broker.port, "granted") == DENIED

        _expire_session(broker, zk)
        try:
            store.remove([_all_on("revoked")])
            store.add([_all_on("granted")])
            for pattern_type in (LITERAL, PREFIXED):  # purged: only a full reload sees them
                root = acl_nodes.change_root(pattern_type)
                for name in zk.get_children(root):
                    zk.delete(f"{root}/{name}")
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        wait_for(lambda: zk.exists(f"{BROKER_IDS}/{broker.broker_id}") is not None, 30)
        wait_for(lambda: _produce(broker.port, "granted") == 0, 30)
        assert _produce(broker.port, "revoked") == DENIED
        assert _produce(broker.port, "kept") == 0


def _can_log_in(broker, user: str, password: str) -> bool:
    try:
        broker.connect(security(user, password, "SCRAM-SHA-512")).close()
    except SaslAuthenticationError:
        return False
    return True


def test_scram_users_changed_while_the_session_was_lost_apply_after(zookeeper, tmp_path):
    connect = f"{zookeeper.connect}/scram-{time.monotonic_ns()}"
    with zk_session(zookeeper.connect) as zk:
        zk.ensure_path(connect[len(zookeeper.connect) :])
    plain = tmp_path / "plain-users"
    plain.write_text("")
    port = free_port()
    broker = SaslBroker(tmp_path, 1, connect, port=port, overrides=sasl_properties(port, plain))
    with zk_session(connect) as zk:
        write_credential(zk, "eve", scram_credential("SCRAM-SHA-512", "eve-pw"))
        broker.wait_ready = lambda timeout=30.0: None  # start, and do not wait for it
        broker.start()
        try:
            deadline = time.monotonic() + 30
            while True:  # the first connection the port accepts logs in
                try:
                    broker.connect(security("eve", "eve-pw", "SCRAM-SHA-512")).close()
                    break
                except SaslAuthenticationError:
                    raise
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)
            _expire_session(broker, zk)
            try:
                delete_credential(zk, "eve", "SCRAM-SHA-512")
                write_credential(zk, "frank", scram_credential("SCRAM-SHA-512", "frank-pw"))
            finally:
                os.kill(broker.process.pid, signal.SIGCONT)
            wait_for(lambda: _can_log_in(broker, "frank", "frank-pw"), 30)
            wait_for(lambda: not _can_log_in(broker, "eve", "eve-pw"), 30)
        finally:
            broker.kill()
