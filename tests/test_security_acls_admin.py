"""Config and group admin APIs on a real broker with the authorizer on, over PLAINTEXT where
every client is ``User:ANONYMOUS``: DescribeConfigs and AlterConfigs answer
TOPIC_AUTHORIZATION_FAILED for a topic and CLUSTER_AUTHORIZATION_FAILED for a broker the
principal may not describe or alter, the refused change not applied; ListGroups lists only the
groups it may describe (all with Describe on the cluster), and DescribeGroups answers
GROUP_AUTHORIZATION_FAILED for the others, as Kafka does."""

from __future__ import annotations

from admin_clients import request
from conftest import create_topic, wait_for, zk_session
from request_bodies import offset_commit_body

from broker.protocol.acls import (
    ALLOW,
    ALTER_CONFIGS,
    CLUSTER,
    CREATE,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    GROUP,
    LITERAL,
    READ,
    TOPIC,
    AclBinding,
)
from broker.protocol.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)
from broker.protocol.registry import ApiKey
from broker.security.acl_store import ZkAclStore

AUTHORIZER = "kafka.security.authorizer.AclAuthorizer"
ANONYMOUS = "User:ANONYMOUS"
TOPIC_DENIED = TopicAuthorizationFailedError.code
CLUSTER_DENIED = ClusterAuthorizationFailedError.code
GROUP_DENIED = GroupAuthorizationFailedError.code
TOPIC_CONFIG, BROKER_CONFIG = 2, 4


def _grant(rtype: int, name: str, op: int) -> AclBinding:
    return AclBinding(rtype, name, LITERAL, ANONYMOUS, "*", op, ALLOW)


def _describe(port: int, *resources: tuple[int, str]) -> dict[str, tuple[int, dict]]:
    body = {
        "resources": [
            {"resource_type": t, "resource_name": n, "configuration_keys": None}
            for t, n in resources
        ],
        "include_synonyms": False,
        "include_documentation": False,
    }
    results = request(port, ApiKey.DESCRIBE_CONFIGS, body)["results"]
    return {
        r["resource_name"]: (r["error_code"], {c["name"]: c["value"] for c in r["configs"] or []})
        for r in results
    }


def _alter(port: int, *resources: tuple[int, str]) -> dict[str, int]:
    body = {
        "resources": [
            {
                "resource_type": t,
                "resource_name": n,
                "configs": [{"name": "retention.ms", "value": "3600000"}],
            }
            for t, n in resources
        ],
        "validate_only": False,
    }
    answer = request(port, ApiKey.ALTER_CONFIGS, body)["responses"]
    return {r["resource_name"]: r["error_code"] for r in answer}


def test_configs_are_described_and_altered_only_where_allowed(make_cluster):
    cluster = make_cluster(1, authorizer_class_name=AUTHORIZER)
    port = cluster.brokers[0].port
    with zk_session(cluster.zookeeper_connect) as zk:
        store = ZkAclStore(zk)
        store.add([_grant(CLUSTER, "kafka-cluster", CREATE)])
        wait_for(lambda: create_topic(port, "mine", 1, check=False)["error_code"] == 0, 30)
        create_topic(port, "theirs", 1)
        store.add([_grant(TOPIC, "mine", ALTER_CONFIGS)])  # implies DescribeConfigs
        wait_for(lambda: _alter(port, (TOPIC_CONFIG, "mine"))["mine"] == 0, 30)

        described = _describe(port, (TOPIC_CONFIG, "mine"), (TOPIC_CONFIG, "theirs"),
                              (BROKER_CONFIG, "1"))  # fmt: skip
        assert described["mine"][0] == 0 and described["mine"][1]["retention.ms"] == "3600000"
        assert described["theirs"][0] == TOPIC_DENIED and not described["theirs"][1]
        assert described["1"][0] == CLUSTER_DENIED

        altered = _alter(port, (TOPIC_CONFIG, "theirs"), (BROKER_CONFIG, "1"))
        assert altered == {"theirs": TOPIC_DENIED, "1": CLUSTER_DENIED}
        store.add([_grant(TOPIC, "theirs", DESCRIBE_CONFIGS)])
        wait_for(lambda: _describe(port, (TOPIC_CONFIG, "theirs"))["theirs"][0] == 0, 30)
        theirs = _describe(port, (TOPIC_CONFIG, "theirs"))["theirs"][1]
        assert theirs["retention.ms"] != "3600000"  # the refused change was not applied
        assert _alter(port, (TOPIC_CONFIG, "theirs")) == {"theirs": TOPIC_DENIED}


def _commit(port: int, group: str, topic: str) -> int:
    body = offset_commit_body(group, topic, 0)
    answer = request(port, ApiKey.OFFSET_COMMIT, body)
    return answer["topics"][0]["partitions"][0]["error_code"]


def _listed(port: int) -> list[str]:
    return sorted(g["group_id"] for g in request(port, ApiKey.LIST_GROUPS, {})["groups"])


def test_groups_are_listed_and_described_only_where_allowed(make_cluster):
    cluster = make_cluster(1, authorizer_class_name=AUTHORIZER)
    port = cluster.brokers[0].port
    with zk_session(cluster.zookeeper_connect) as zk:
        store = ZkAclStore(zk)
        setup = [_grant(CLUSTER, "kafka-cluster", CREATE), _grant(TOPIC, "t", READ)]
        setup += [_grant(GROUP, "g-mine", READ), _grant(GROUP, "g-theirs", READ)]
        store.add(setup)
        wait_for(lambda: create_topic(port, "t", 1, check=False)["error_code"] == 0, 30)
        for group in ("g-mine", "g-theirs"):
            wait_for(lambda g=group: _commit(port, g, "t") == 0, 30)
        assert _listed(port) == ["g-mine", "g-theirs"]

        store.remove([_grant(GROUP, "g-theirs", READ)])
        wait_for(lambda: _listed(port) == ["g-mine"], 30)
        body = {"groups": ["g-mine", "g-theirs"], "include_authorized_operations": True}
        described = {
            g["group_id"]: g for g in request(port, ApiKey.DESCRIBE_GROUPS, body)["groups"]
        }
        assert described["g-mine"]["error_code"] == 0
        assert described["g-theirs"]["error_code"] == GROUP_DENIED
        assert described["g-theirs"]["members"] == []

        store.add([_grant(CLUSTER, "kafka-cluster", DESCRIBE)])  # Describe on the cluster: all
        wait_for(lambda: _listed(port) == ["g-mine", "g-theirs"], 30)
