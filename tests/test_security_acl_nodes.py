"""The ACL nodes' paths and data, pure: exactly Kafka's ZkAclStore layout, so Kafka's tools
and brokers read what we write and the reverse."""

from __future__ import annotations

import json

import pytest

from broker.protocol.acl_apis import (
    CREATE_ACLS_REQUEST,
    CREATE_ACLS_RESPONSE,
    DELETE_ACLS_REQUEST,
    DELETE_ACLS_RESPONSE,
    DESCRIBE_ACLS_REQUEST,
    DESCRIBE_ACLS_RESPONSE,
)
from broker.protocol.acl_nodes import (
    InvalidResourceNameError,
    MalformedNodeError,
    acl_path,
    change_node_prefix,
    decode_acls,
    decode_change,
    encode_acls,
    encode_change,
)
from broker.protocol.acls import (
    ALLOW,
    CLUSTER,
    DENY,
    DESCRIBE_CONFIGS,
    GROUP,
    IDEMPOTENT_WRITE,
    LITERAL,
    PREFIXED,
    READ,
    TOPIC,
    TRANSACTIONAL_ID,
    WRITE,
    AccessControlEntry,
    ResourcePattern,
)
from broker.protocol.registry import API_BY_KEY, ApiKey


def test_paths_are_kafkas():
    assert acl_path(ResourcePattern(TOPIC, "clicks", LITERAL)) == "/kafka-acl/Topic/clicks"
    assert acl_path(ResourcePattern(TOPIC, "*", LITERAL)) == "/kafka-acl/Topic/*"
    assert acl_path(ResourcePattern(CLUSTER, "kafka-cluster", LITERAL)) == (
        "/kafka-acl/Cluster/kafka-cluster"
    )
    assert acl_path(ResourcePattern(TRANSACTIONAL_ID, "tx", LITERAL)) == (
        "/kafka-acl/TransactionalId/tx"
    )
    assert acl_path(ResourcePattern(GROUP, "g-", PREFIXED)) == (
        "/kafka-acl-extended/prefixed/Group/g-"
    )
    assert change_node_prefix(LITERAL) == "/kafka-acl-changes/acl_changes_"
    assert change_node_prefix(PREFIXED) == "/kafka-acl-extended-changes/acl_changes_"
    with pytest.raises(InvalidResourceNameError):
        acl_path(ResourcePattern(GROUP, "a/b", LITERAL))


def test_a_node_written_by_kafka_is_read():
    # As Kafka 2.x-3.x's AclEntry writes it (key order is Kafka's map order).
    data = (
        b'{"version":1,"acls":[{"principal":"User:alice","permissionType":"Allow",'
        b'"operation":"IdempotentWrite","host":"*"},{"host":"10.0.0.1","permissionType":"Deny",'
        b'"operation":"DescribeConfigs","principal":"User:bob"}]}'
    )
    assert decode_acls(data) == {
        AccessControlEntry("User:alice", "*", IDEMPOTENT_WRITE, ALLOW),
        AccessControlEntry("User:bob", "10.0.0.1", DESCRIBE_CONFIGS, DENY),
    }


def test_the_node_we_write_is_kafkas_format():
    data = encode_acls([AccessControlEntry("User:alice", "*", WRITE, ALLOW)])
    assert data == (
        b'{"version":1,"acls":[{"principal":"User:alice","permissionType":"Allow",'
        b'"operation":"Write","host":"*"}]}'
    )
    entries = {
        AccessControlEntry("User:*", "*", READ, DENY),
        AccessControlEntry("User:a", "h", WRITE, ALLOW),
    }
    assert decode_acls(encode_acls(entries)) == entries


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"version":2,"acls":[]}',
        b'{"version":1,"acls":[{"principal":"User:a","permissionType":"Maybe","operation":"Read","host":"*"}]}',
        b'{"version":1,"acls":[{"principal":"User:a","permissionType":"Allow","operation":"Fly","host":"*"}]}',
        b'{"version":1,"acls":[{"principal":"alice","permissionType":"Allow","operation":"Read","host":"*"}]}',
        b'{"version":1}',
    ],
)
def test_malformed_nodes_raise_a_typed_error(data):
    with pytest.raises(MalformedNodeError):
        decode_acls(data, "/kafka-acl/Topic/t")


def test_change_notifications_are_kafkas():
    literal = ResourcePattern(TRANSACTIONAL_ID, "tx-1", LITERAL)
    assert encode_change(literal) == b"TRANSACTIONAL_ID:tx-1"
    assert decode_change(b"TRANSACTIONAL_ID:tx-1", extended=False) == literal
    assert decode_change(b"Topic:a:b", extended=False) == ResourcePattern(TOPIC, "a:b", LITERAL)
    prefixed = ResourcePattern(TOPIC, "logs-", PREFIXED)
    assert json.loads(encode_change(prefixed)) == {
        "version": 1,
        "resourceType": "TOPIC",
        "name": "logs-",
        "patternType": "PREFIXED",
    }
    assert decode_change(encode_change(prefixed), extended=True) == prefixed
    with pytest.raises(MalformedNodeError):
        decode_change(b"Planet:x", extended=False)


FILTER = {
    "resource_type_filter": 2,
    "resource_name_filter": None,
    "pattern_type_filter": 1,
    "principal_filter": "User:a",
    "host_filter": None,
    "operation": 1,
    "permission_type": 1,
}
BINDING = {
    "resource_type": 2,
    "resource_name": "t",
    "principal": "User:a",
    "host": "*",
    "operation": 4,
    "permission_type": 3,
}
MESSAGES = [
    (DESCRIBE_ACLS_REQUEST, FILTER),
    (
        DESCRIBE_ACLS_RESPONSE,
        {
            "throttle_time_ms": 0,
            "error_code": 0,
            "error_message": None,
            "resources": [
                {
                    "resource_type": 2,
                    "resource_name": "t",
                    "pattern_type": 4,
                    "acls": [
                        {"principal": "User:a", "host": "*", "operation": 4, "permission_type": 3}
                    ],
                }
            ],
        },
    ),
    (CREATE_ACLS_REQUEST, {"creations": [{**BINDING, "resource_pattern_type": 4}]}),
    (
        CREATE_ACLS_RESPONSE,
        {"throttle_time_ms": 0, "results": [{"error_code": 42, "error_message": "no"}]},
    ),
    (DELETE_ACLS_REQUEST, {"filters": [FILTER]}),
    (
        DELETE_ACLS_RESPONSE,
        {
            "throttle_time_ms": 0,
            "filter_results": [
                {
                    "error_code": 0,
                    "error_message": None,
                    "matching_acls": [
                        {"error_code": 0, "error_message": None, **BINDING, "pattern_type": 4}
                    ],
                }
            ],
        },
    ),
]


@pytest.mark.parametrize("version", [0, 1, 2, 3])
@pytest.mark.parametrize("schema,body", MESSAGES)
def test_acl_messages_round_trip(schema, body, version):
    expected = dict(body)
    if version == 0:  # v0 has no pattern type: literal
        expected = json.loads(json.dumps(body).replace('"pattern_type": 4', '"pattern_type": 3'))
        expected = json.loads(
            json.dumps(expected)
            .replace('"pattern_type_filter": 1', '"pattern_type_filter": 3')
            .replace('"resource_pattern_type": 4', '"resource_pattern_type": 3')
        )
    assert schema.decode(schema.encode(body, version), version) == expected


def test_acl_apis_are_registered_flexible_from_v2():
    for key in (ApiKey.DESCRIBE_ACLS, ApiKey.CREATE_ACLS, ApiKey.DELETE_ACLS):
        api = API_BY_KEY[key]
        assert (api.min_version, api.max_version, api.flexible_from) == (0, 3, 2)


def test_golden_create_acls_v1():
    body = {"creations": [{**BINDING, "resource_pattern_type": 3}]}
    assert CREATE_ACLS_REQUEST.encode(body, 1) == (
        b"\x00\x00\x00\x01"  # one creation
        b"\x02"  # resource type TOPIC
        b"\x00\x01t"  # resource name
        b"\x03"  # pattern type LITERAL (v1+)
        b"\x00\x06User:a"  # principal
        b"\x00\x01*"  # host
        b"\x04"  # operation WRITE
        b"\x03"  # permission ALLOW
    )
