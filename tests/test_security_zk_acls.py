"""The pure half of ZooKeeper security: which ACL each node gets, and reading identities from
JAAS files, ``user:password`` lines and broker properties."""

from __future__ import annotations

import pytest

from broker.config import BrokerConfig, zookeeper_identity
from broker.log import ConfigError
from broker.protocol import zookeeper as layout
from broker.protocol.zk_security import (
    CONFIG_USERS,
    OPEN,
    PRIVATE,
    PUBLIC,
    ZkCredentials,
    ZkSecurityError,
    from_properties,
    node_acl,
    parse_credentials,
    parse_digest,
    parse_jaas,
)

JAAS = """
// the brokers' login to ZooKeeper
KafkaServer { org.apache.kafka.common.security.plain.PlainLoginModule required
    username="admin" password="not-this"; };
Client {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="kafka"
    password="p\\"w;x";
};
"""


@pytest.mark.parametrize(
    ("path", "acl"),
    [
        ("/", PUBLIC),
        (layout.broker_path(1), PUBLIC),
        (layout.topic_config_path("t"), PUBLIC),
        (layout.partition_state_path("t", 0), PUBLIC),
        (layout.CONTROLLER, PUBLIC),
        (layout.SCHEMA_IDS, PUBLIC),
        (CONFIG_USERS, PRIVATE),
        (f"{CONFIG_USERS}/alice", PRIVATE),
        (layout.broker_config_path("1"), PRIVATE),  # dynamic configs may hold passwords
        (layout.CONSUMERS, OPEN),
        (layout.offset_path("g", "t", 0), OPEN),
    ],
)
def test_secure_nodes_are_owned_and_readable_but_credentials_and_consumers_are_not(path, acl):
    assert node_acl(path, secure=True) == acl
    assert node_acl(path, secure=False) == OPEN


def test_a_prefix_is_not_a_root():
    assert node_acl("/config/usersX", secure=True) == PUBLIC
    assert node_acl("/consumersX", secure=True) == PUBLIC


def test_the_jaas_client_section_gives_the_digest_identity():
    credentials = parse_jaas(JAAS)
    assert credentials == ZkCredentials("kafka", 'p"w;x')
    assert credentials.auth_data == [("digest", 'kafka:p"w;x')]
    assert 'p"w' not in repr(credentials)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('KafkaServer { a.B required username="u" password="p"; };', "no Client section"),
        (
            "Client { com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true; };",
            "only org.apache.zookeeper.server.auth.DigestLoginModule",
        ),
        (
            'Client { org.apache.zookeeper.server.auth.DigestLoginModule required username="u"; };',
            "needs username and password",
        ),
    ],
)
def test_a_jaas_file_without_a_digest_identity_is_refused_saying_why(text, message):
    with pytest.raises(ZkSecurityError, match=message):
        parse_jaas(text)


def test_an_auth_file_is_a_jaas_file_or_one_line():
    assert parse_credentials("# ours\nkafka:a:b\n") == ZkCredentials("kafka", "a:b")
    assert parse_credentials(JAAS) == ZkCredentials("kafka", 'p"w;x')
    for bad in ("", "kafka", ":pw", "kafka:", "a:b\nc:d"):
        with pytest.raises(ZkSecurityError):
            parse_credentials(bad)
    assert parse_digest(" u:p ") == ZkCredentials("u", "p")


def test_properties_name_the_identity_and_set_acl_needs_one():
    files = {"/etc/jaas": JAAS}
    assert from_properties({}, files.get) == (None, False)
    assert from_properties({"zookeeper.jaas.config.file": "/etc/jaas"}, files.get) == (
        ZkCredentials("kafka", 'p"w;x'),
        True,  # tools: an identity given means secure, as Kafka's tools decide
    )
    assert from_properties(
        {"zookeeper.digest.credentials": "u:p", "zookeeper.set.acl": "false"}, files.get
    ) == (ZkCredentials("u", "p"), False)
    with pytest.raises(ZkSecurityError, match=r"zookeeper\.set\.acl is true"):
        from_properties({"zookeeper.set.acl": "true"}, files.get)


def test_the_broker_config_refuses_set_acl_without_an_identity(tmp_path):
    with pytest.raises(ConfigError, match=r"zookeeper\.set\.acl is true"):
        zookeeper_identity(BrokerConfig({"zookeeper.set.acl": "true"}))
    with pytest.raises(ConfigError, match=r"cannot read zookeeper\.jaas\.config\.file"):
        zookeeper_identity(BrokerConfig({"zookeeper.jaas.config.file": str(tmp_path / "missing")}))
    jaas = tmp_path / "jaas"
    jaas.write_text(JAAS)
    config = BrokerConfig({"zookeeper.set.acl": "true", "zookeeper.jaas.config.file": str(jaas)})
    assert zookeeper_identity(config) == (ZkCredentials("kafka", 'p"w;x'), True)
    # the broker keeps its default (no ACLs) when given an identity without set.acl
    assert zookeeper_identity(BrokerConfig({"zookeeper.digest.credentials": "u:p"}))[1] is False
