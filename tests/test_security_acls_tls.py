"""ACLs for principals named by TLS client certificates (``User:CN=...`` as Kafka names them,
``ssl.principal.mapping.rules`` applied): on an SSL listener requiring certificates, alice's
certificate may write the topic an ACL names for her; bob's may not, and nothing he sent is
stored; a mapping rule makes ACLs name short principals."""

from __future__ import annotations

from conftest import create_topic, wait_for, zk_session
from request_bodies import produce_to

from broker.protocol.acls import ALLOW, LITERAL, TOPIC, WRITE, AclBinding
from broker.protocol.errors import TopicAuthorizationFailedError
from broker.protocol.records import build_batch
from broker.security.acl_store import ZkAclStore
from consumers.client import BrokerConnection
from consumers.cluster import ClusterClient
from consumers.security import ClientSecurity

AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"


def _produce(cluster, certs, name: str, topic: str) -> int:
    host, _, port = cluster.bootstrap_for("SSL").split(",")[0].rpartition(":")
    security = ClientSecurity.from_properties(certs.client_properties(name))
    with BrokerConnection(host, int(port), timeout=10, security=security) as conn:
        return produce_to(conn, topic, 0, build_batch([(None, name.encode())]))["error_code"]


def _secured(make_cluster, certs, **props):
    base = certs.broker_properties(client_auth="required")
    base.update(
        {"authorizer.class.name": AUTHORIZER, "super.users": "User:ANONYMOUS", **props}
    )  # the PLAINTEXT listener is this test's administrator
    cluster = make_cluster(1, listeners={"SSL": "SSL"}, props=base)
    create_topic(cluster.brokers[0].port, "certified", 1)
    return cluster


def test_a_certificates_subject_is_the_principal_acls_name(make_cluster, certs):
    cluster = _secured(make_cluster, certs)
    alice = "User:CN=alice,OU=test,O=headrace"
    with zk_session(cluster.zookeeper_connect) as zk:
        ZkAclStore(zk).add([AclBinding(TOPIC, "certified", LITERAL, alice, "*", WRITE, ALLOW)])
    wait_for(lambda: _produce(cluster, certs, "alice", "certified") == 0, 30)
    assert _produce(cluster, certs, "bob", "certified") == TopicAuthorizationFailedError.code
    assert ClusterClient(cluster.bootstrap).list_offset("certified", 0, -1) == 1


def test_mapping_rules_make_short_principals(make_cluster, certs):
    rules = "RULE:^CN=([a-z]+),OU=test,O=headrace$/$1/,DEFAULT"
    cluster = _secured(make_cluster, certs, **{"ssl.principal.mapping.rules": rules})
    with zk_session(cluster.zookeeper_connect) as zk:
        ZkAclStore(zk).add([AclBinding(TOPIC, "certified", LITERAL, "User:bob", "*", WRITE, ALLOW)])
    wait_for(lambda: _produce(cluster, certs, "bob", "certified") == 0, 30)
    assert _produce(cluster, certs, "alice", "certified") == TopicAuthorizationFailedError.code
