"""ACLs with authenticated principals: a broker on a SASL_PLAINTEXT listener with the
authorizer on, a super user (the PLAIN admin, also the brokers' own login) and a SCRAM user
allowed only to write one topic.  The writer can neither read that topic, nor write another,
nor commit a group, nor delete topics, nor see the other topics; a prefixed ACL covers a
topic created after it; removing an ACL takes effect without a restart; what was refused was
not stored."""

from __future__ import annotations

import time

import pytest
from conftest import wait_for, zk_session
from request_bodies import fetch_body, offset_commit_body, produce_to
from sasl_helpers import ADMIN, ADMIN_SECURITY, SaslBroker, sasl_properties, security

from broker.protocol.acls import ALLOW, LITERAL, PREFIXED, TOPIC, WRITE, AclBinding
from broker.protocol.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)
from broker.protocol.records import build_batch
from broker.protocol.registry import ApiKey
from broker.protocol.security_nodes import scram_credential
from broker.security.credentials import write_credential
from headrace.devcluster import free_port

WRITER, WRITER_PASSWORD = "writer", "writer-secret"
WRITER_SECURITY = security(WRITER, WRITER_PASSWORD, "SCRAM-SHA-512")
TOPIC_DENIED = TopicAuthorizationFailedError.code


@pytest.fixture
def broker(zookeeper, tmp_path):
    connect = f"{zookeeper.connect}/acl-sasl-{time.monotonic_ns()}"
    with zk_session(zookeeper.connect) as client:
        client.ensure_path(connect[len(zookeeper.connect) :])
    with zk_session(connect) as client:
        write_credential(client, WRITER, scram_credential("SCRAM-SHA-512", WRITER_PASSWORD))
    plain = tmp_path / "plain-users"
    plain.write_text("")
    port = free_port()
    overrides = sasl_properties(
        port,
        plain,
        **{
            "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
            "super.users": f"User:{ADMIN}",
        },
    )
    b = SaslBroker(tmp_path, 1, connect, port=port, overrides=overrides)
    b.start()
    yield b
    b.kill()


def _as(broker, sec, key, body):
    with broker.connect(sec) as conn:
        return conn.request(key, body)


def _create_topic(broker, name: str) -> int:
    body = {
        "topics": [
            {
                "name": name,
                "num_partitions": 1,
                "replication_factor": 1,
                "assignments": [],
                "configs": [],
            }
        ],
        "timeout_ms": 30000,
        "validate_only": False,
    }
    return _as(broker, ADMIN_SECURITY, ApiKey.CREATE_TOPICS, body)["topics"][0]["error_code"]


def _acl_body(acl: AclBinding) -> dict:
    return {
        "resource_type": acl.resource_type,
        "resource_name": acl.name,
        "resource_pattern_type": acl.pattern_type,
        "principal": acl.principal,
        "host": acl.host,
        "operation": acl.operation,
        "permission_type": acl.permission,
    }


def _produce(broker, sec, topic: str) -> int:
    with broker.connect(sec) as conn:
        return produce_to(conn, topic, 0, build_batch([(None, b"v")]))["error_code"]


def _end_offset(broker, topic: str) -> int:
    body = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [{"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}],
    }
    answer = _as(broker, ADMIN_SECURITY, ApiKey.LIST_OFFSETS, body)
    return answer["topics"][0]["partitions"][0]["offset"]


def test_a_user_allowed_only_to_write_one_topic(broker):
    assert _create_topic(broker, "writable") == 0
    assert _create_topic(broker, "secret") == 0
    write = AclBinding(TOPIC, "writable", LITERAL, f"User:{WRITER}", "*", WRITE, ALLOW)
    created = _as(broker, ADMIN_SECURITY, ApiKey.CREATE_ACLS, {"creations": [_acl_body(write)]})
    assert created["results"][0]["error_code"] == 0

    assert _produce(broker, WRITER_SECURITY, "writable") == 0
    assert _produce(broker, WRITER_SECURITY, "secret") == TOPIC_DENIED
    fetched = _as(broker, WRITER_SECURITY, ApiKey.FETCH, fetch_body([("writable", 0, 0)]))
    assert fetched["responses"][0]["partitions"][0]["error_code"] == TOPIC_DENIED
    commit = offset_commit_body("g", "writable", 1)
    committed = _as(broker, WRITER_SECURITY, ApiKey.OFFSET_COMMIT, commit)
    assert (
        committed["topics"][0]["partitions"][0]["error_code"] == GroupAuthorizationFailedError.code
    )
    deleted = _as(
        broker,
        WRITER_SECURITY,
        ApiKey.DELETE_TOPICS,
        {"topic_names": ["writable", "secret"], "timeout_ms": 5000},
    )
    assert [r["error_code"] for r in deleted["responses"]] == [TOPIC_DENIED, TOPIC_DENIED]
    seen = _as(broker, WRITER_SECURITY, ApiKey.METADATA, {"topics": None})
    assert [t["name"] for t in seen["topics"]] == ["writable"]
    refused = _as(broker, WRITER_SECURITY, ApiKey.CREATE_ACLS, {"creations": [_acl_body(write)]})
    assert refused["results"][0]["error_code"] == ClusterAuthorizationFailedError.code

    # A prefixed ACL covers a topic created after it.
    logs = AclBinding(TOPIC, "logs-", PREFIXED, f"User:{WRITER}", "*", WRITE, ALLOW)
    _as(broker, ADMIN_SECURITY, ApiKey.CREATE_ACLS, {"creations": [_acl_body(logs)]})
    assert _create_topic(broker, "logs-new") == 0
    assert _produce(broker, WRITER_SECURITY, "logs-new") == 0

    # Removing the write ACL applies without a restart.
    remove = {
        "filters": [
            {
                "resource_type_filter": TOPIC,
                "resource_name_filter": "writable",
                "pattern_type_filter": LITERAL,
                "principal_filter": f"User:{WRITER}",
                "host_filter": None,
                "operation": WRITE,
                "permission_type": ALLOW,
            }
        ]
    }
    removed = _as(broker, ADMIN_SECURITY, ApiKey.DELETE_ACLS, remove)
    assert len(removed["filter_results"][0]["matching_acls"]) == 1
    wait_for(lambda: _produce(broker, WRITER_SECURITY, "writable") == TOPIC_DENIED, 30)

    # Stored: the one write allowed on each topic; nothing refused.
    assert (_end_offset(broker, "writable"), _end_offset(broker, "secret")) == (1, 0)
    assert _end_offset(broker, "logs-new") == 1
    names = {
        t["name"] for t in _as(broker, ADMIN_SECURITY, ApiKey.METADATA, {"topics": None})["topics"]
    }
    assert names == {"writable", "secret", "logs-new"}


def test_scram_credential_apis_need_the_cluster(broker):
    described = _as(
        broker, WRITER_SECURITY, ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, {"users": None}
    )
    assert described["error_code"] == ClusterAuthorizationFailedError.code
    altered = _as(
        broker,
        WRITER_SECURITY,
        ApiKey.ALTER_USER_SCRAM_CREDENTIALS,
        {"deletions": [{"name": WRITER, "mechanism": 2}], "upsertions": []},
    )
    assert [(r["user"], r["error_code"]) for r in altered["results"]] == [
        (WRITER, ClusterAuthorizationFailedError.code)
    ]
    mine = _as(broker, ADMIN_SECURITY, ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS, {"users": None})
    assert [r["user"] for r in mine["results"]] == [WRITER]  # the refused deletion changed nothing
