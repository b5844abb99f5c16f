"""The per-API authorization rules, pure: request bodies in, what the handler gets and what
is merged into its answer out, as Kafka's KafkaApis answers refusals."""

from __future__ import annotations

from broker.protocol.acls import (
    ALLOW,
    CLUSTER,
    CREATE,
    DENY,
    DESCRIBE,
    GROUP,
    IDEMPOTENT_WRITE,
    LITERAL,
    PREFIXED,
    READ,
    TOPIC,
    WRITE,
    AclBinding,
)
from broker.protocol.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)
from broker.security import rules
from broker.security.authorizer import AclSet, Authorizer
from broker.security.rules import Check

ME = "User:me"
TOPIC_DENIED = TopicAuthorizationFailedError.code
GROUP_DENIED = GroupAuthorizationFailedError.code


def check(*acls: AclBinding, api: str = "Test") -> Check:
    return Check(Authorizer(AclSet(acls)), ME, "10.1.1.1", api)


def allow(rtype, name, op, pattern=LITERAL, permission=ALLOW):
    return AclBinding(rtype, name, pattern, ME, "*", op, permission)


def commit_body(group: str, *topics: str) -> dict:
    return {
        "group_id": group,
        "topics": [
            {"name": t, "partitions": [{"partition_index": 0, "committed_offset": 5}]}
            for t in topics
        ],
    }


def test_offset_commit_needs_read_on_the_group_then_on_each_topic():
    refused = rules.offset_commit(check(), commit_body("g", "a"), 8)
    assert refused.response["topics"][0]["partitions"][0]["error_code"] == GROUP_DENIED
    c = check(allow(GROUP, "g", READ), allow(TOPIC, "a", READ))
    verdict = rules.offset_commit(c, commit_body("g", "a", "b"), 8)
    assert [t["name"] for t in verdict.body["topics"]] == ["a"]
    answer = verdict.merge({"topics": [{"name": "a", "partitions": [{"partition_index": 0}]}]})
    assert [(t["name"], t["partitions"][0].get("error_code")) for t in answer["topics"]] == [
        ("a", None),
        ("b", TOPIC_DENIED),
    ]


def test_offset_fetch_of_all_topics_refuses_those_not_described():
    c = check(allow(GROUP, "g", READ), allow(TOPIC, "a", DESCRIBE))
    verdict = rules.offset_fetch(c, {"group_id": "g", "topics": None}, 5)
    answer = verdict.merge(
        {
            "topics": [
                {"name": n, "partitions": [{"committed_offset": 7, "error_code": 0}]}
                for n in ("a", "secret")
            ]
        }
    )
    codes = {t["name"]: t["partitions"][0] for t in answer["topics"]}
    assert codes["a"]["committed_offset"] == 7
    assert (codes["secret"]["committed_offset"], codes["secret"]["error_code"]) == (
        -1,
        TOPIC_DENIED,
    )


def test_group_membership_needs_read_on_the_group():
    verdict = rules.group_rule(READ)(check(allow(GROUP, "g", DESCRIBE)), {"group_id": "g"}, 3)
    assert verdict.response["error_code"] == GROUP_DENIED
    assert (
        rules.group_rule(READ)(
            check(allow(GROUP, "g-", READ, PREFIXED)), {"group_id": "g-1"}, 3
        ).response
        is None
    )


def test_list_groups_shows_only_described_groups_without_cluster_describe():
    c = check(allow(GROUP, "mine", DESCRIBE))
    answer = rules.list_groups(c, {}, 4).merge(
        {"groups": [{"group_id": "mine"}, {"group_id": "other"}]}
    )
    assert [g["group_id"] for g in answer["groups"]] == ["mine"]
    assert rules.list_groups(check(allow(CLUSTER, "kafka-cluster", DESCRIBE)), {}, 4).merge is None


def test_create_topics_needs_create_on_the_cluster_or_the_topic():
    body = {"topics": [{"name": "logs-a"}, {"name": "x"}]}
    verdict = rules.create_topics(check(allow(TOPIC, "logs-", CREATE, PREFIXED)), body, 7)
    assert [t["name"] for t in verdict.body["topics"]] == ["logs-a"]
    merged = verdict.merge({"topics": []})["topics"]
    assert [(t["name"], t["error_code"]) for t in merged] == [("x", TOPIC_DENIED)]
    assert rules.create_topics(check(allow(CLUSTER, "kafka-cluster", CREATE)), body, 7).body is None


def test_init_producer_id_kip_679():
    body = {"transactional_id": None}
    assert rules.init_producer_id(check(allow(TOPIC, "t", WRITE)), body, 4).response is None
    assert (
        rules.init_producer_id(
            check(allow(CLUSTER, "kafka-cluster", IDEMPOTENT_WRITE)), body, 4
        ).response
        is None
    )
    refused = rules.init_producer_id(check(allow(TOPIC, "t", READ)), body, 4).response
    assert refused["error_code"] == ClusterAuthorizationFailedError.code
    denied_everywhere = check(allow(TOPIC, "t", WRITE), allow(TOPIC, "*", WRITE, permission=DENY))
    assert rules.init_producer_id(denied_everywhere, body, 4).response is not None


def test_cluster_apis_answer_cluster_authorization_failed():
    verdict = rules.cluster_rule(DESCRIBE, {"results": []})(check(), {}, 4)
    assert verdict.response == {"error_code": ClusterAuthorizationFailedError.code, "results": []}
    elect = rules.elect_leaders(
        check(), {"topic_partitions": [{"topic": "t", "partitions": [0, 1]}]}, 0
    )
    codes = [
        p["error_code"] for p in elect.response["replica_election_results"][0]["partition_result"]
    ]
    assert codes == [ClusterAuthorizationFailedError.code] * 2


def test_describe_groups_operations_are_the_authorizers():
    c = check(allow(GROUP, "g", READ))
    verdict = rules.describe_groups(
        c, {"groups": ["g", "h"], "include_authorized_operations": True}, 5
    )
    answer = verdict.merge({"groups": [{"group_id": "g"}]})
    assert answer["groups"][0]["authorized_operations"] == (1 << READ) | (1 << DESCRIBE)
    assert [(g["group_id"], g["error_code"]) for g in answer["groups"][1:]] == [("h", GROUP_DENIED)]
