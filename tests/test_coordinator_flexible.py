"""The group coordinator at its APIs' newest versions, what each version adds, as Kafka's
classic group protocol answers it: the pure state machine (SyncGroup v5's protocol checks,
a join's reason in the log) and one broker process over the wire (FindCoordinator v4's
batch, JoinGroup v7-v9's protocol type, null protocol name and skip_assignment, OffsetFetch
v7-v8 with several groups, DescribeGroups' authorized operations, ListGroups v4's state
filter, LeaveGroup v3-v5's batch of members)."""

from __future__ import annotations

import logging
import time

import pytest
from conftest import Cluster, create_topic
from request_bodies import join_group_body
from test_coordinator_state_machine import Env

from broker.group_handlers import GROUP_OPERATIONS
from broker.protocol.group_apis import AUTHORIZED_OPERATIONS_OMITTED
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection

NONE = 0
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
MEMBER_ID_REQUIRED = 79


# --- the state machine -----------------------------------------------------------------------


def test_sync_v5_naming_another_protocol_type_or_name_is_inconsistent():
    env = Env()
    (leader,) = env.form(1)
    member, generation = leader["member_id"], leader["generation_id"]

    def sync(protocol_type, protocol_name):
        d = env.coord.sync("g", generation, member, [], protocol_type, protocol_name)
        return env_value(d)["error_code"]

    assert sync("connect", None) == INCONSISTENT_GROUP_PROTOCOL
    assert sync(None, "roundrobin") == INCONSISTENT_GROUP_PROTOCOL
    assert sync("consumer", "range") == NONE
    assert sync(None, None) == NONE  # below v5 neither is said


def env_value(d):
    results = []
    d.addCallback(results.append)
    (value,) = results
    return value


def test_a_join_reason_is_logged(caplog):
    env = Env()
    with caplog.at_level(logging.INFO, logger="broker.groups"):
        env.coord.join(
            "g",
            "",
            None,
            "consumer",
            [("range", b"")],
            10_000,
            10_000,
            version=8,
            reason="rebalance failed due to a timeout",
        )
    assert "rebalance failed due to a timeout" in caplog.text


# --- one broker over the wire ----------------------------------------------------------------

TOPIC = "flexgroup-topic"


@pytest.fixture(scope="module")
def broker(zookeeper, tmp_path_factory):
    cluster = Cluster(
        tmp_path_factory.mktemp("flexgroup"),
        f"{zookeeper.connect}/flexgroup-{time.monotonic_ns()}",
        1,
        {"group.initial.rebalance.delay.ms": "0", "group.min.session.timeout.ms": "1000"},
    ).start()
    create_topic(cluster.brokers[0].port, TOPIC, 2)
    yield cluster.brokers[0]
    cluster.stop()


def connect(broker) -> BrokerConnection:
    return BrokerConnection("127.0.0.1", broker.port, timeout=30)


def test_find_coordinator_v4_answers_each_key(broker):
    with connect(broker) as conn:
        body = conn.request(
            ApiKey.FIND_COORDINATOR, {"coordinator_keys": ["a", "b"], "key_type": 0}, version=4
        )
        txn = conn.request(
            ApiKey.FIND_COORDINATOR, {"coordinator_keys": ["t"], "key_type": 1}, version=4
        )
    assert [(c["key"], c["node_id"], c["port"], c["error_code"]) for c in body["coordinators"]] == [
        ("a", broker.broker_id, broker.port, NONE),
        ("b", broker.broker_id, broker.port, NONE),
    ]
    assert txn["coordinators"][0]["error_code"] == COORDINATOR_NOT_AVAILABLE  # no transactions


def join(conn, group: str, version: int) -> dict:
    """A new member's two joins (MEMBER_ID_REQUIRED, then with its id); the second answer."""
    body = join_group_body(group) | {"session_timeout_ms": 6000, "reason": "starting"}
    first = conn.request(ApiKey.JOIN_GROUP, body, version=version)
    assert first["error_code"] == MEMBER_ID_REQUIRED
    if version >= 7:  # an error names no protocol
        assert (first["protocol_type"], first["protocol_name"]) == (None, None)
    return conn.request(
        ApiKey.JOIN_GROUP, body | {"member_id": first["member_id"]}, version=version
    )


@pytest.mark.parametrize("version", [6, 7, 9])
def test_join_group_newest_versions_name_the_protocol(broker, version):
    with connect(broker) as conn:
        joined = join(conn, f"join-v{version}", version)
        assert joined["error_code"] == NONE and joined["protocol_name"] == "range"
        assert joined["protocol_type"] == ("consumer" if version >= 7 else None)
        assert joined["skip_assignment"] is False
        refused = conn.request(
            ApiKey.JOIN_GROUP,
            join_group_body(f"join-v{version}") | {"protocol_type": "connect"},
            version=version,
        )
    assert refused["error_code"] == INCONSISTENT_GROUP_PROTOCOL
    assert refused["protocol_name"] == ("" if version < 7 else None)


def test_a_group_at_the_newest_versions_from_join_to_leave(broker):
    group = "flex-lifecycle"
    with connect(broker) as conn:
        joined = join(conn, group, 9)
        member, generation = joined["member_id"], joined["generation_id"]
        beat = {"group_id": group, "generation_id": generation, "member_id": member}
        mine = [{"member_id": member, "assignment": b"a"}]
        sync = beat | {"group_instance_id": None, "assignments": mine}
        wrong = conn.request(ApiKey.SYNC_GROUP, sync | {"protocol_type": "connect"}, version=5)
        assert wrong["error_code"] == INCONSISTENT_GROUP_PROTOCOL
        synced = conn.request(
            ApiKey.SYNC_GROUP, sync | {"protocol_type": "consumer", "protocol_name": "range"}, 5
        )
        assert (synced["error_code"], synced["assignment"]) == (NONE, b"a")
        assert (synced["protocol_type"], synced["protocol_name"]) == ("consumer", "range")
        assert conn.request(ApiKey.HEARTBEAT, beat, version=4)["error_code"] == NONE

        partitions = [
            {"partition_index": p, "committed_offset": offset, "committed_metadata": None}
            for p, offset in ((0, 7), (1, 9))
        ]
        commit = {"group_id": group, "generation_id_or_member_epoch": generation}
        commit |= {"member_id": member, "topics": [{"name": TOPIC, "partitions": partitions}]}
        for version in (8, 9):
            answered = conn.request(ApiKey.OFFSET_COMMIT, commit, version=version)
            assert [p["error_code"] for p in answered["topics"][0]["partitions"]] == [NONE] * 2

        stable = conn.request(
            ApiKey.OFFSET_FETCH,
            {"group_id": group, "topics": None, "require_stable": True},
            version=7,
        )
        assert stable["error_code"] == NONE
        assert offsets(stable["topics"]) == {(TOPIC, 0): 7, (TOPIC, 1): 9}
        several = conn.request(
            ApiKey.OFFSET_FETCH,
            {
                "groups": [
                    {"group_id": group, "topics": [{"name": TOPIC, "partition_indexes": [1]}]},
                    {"group_id": "flex-nothing-committed", "topics": None},
                    {"group_id": "bad/name", "topics": None},
                ]
            },
            version=8,
        )
        answers = {g["group_id"]: g for g in several["groups"]}
        assert offsets(answers[group]["topics"]) == {(TOPIC, 1): 9}
        assert answers["flex-nothing-committed"] == {
            "group_id": "flex-nothing-committed",
            "topics": [],
            "error_code": NONE,
        }
        assert answers["bad/name"]["error_code"] == INVALID_GROUP_ID

        for include, operations in ((True, GROUP_OPERATIONS), (False, None)):
            described = conn.request(
                ApiKey.DESCRIBE_GROUPS,
                {"groups": [group], "include_authorized_operations": include},
                version=5,
            )["groups"][0]
            assert described["group_state"] == "Stable"
            assert described["authorized_operations"] == (
                operations if include else AUTHORIZED_OPERATIONS_OMITTED
            )
        assert GROUP_OPERATIONS == 0b1_0100_1000  # DESCRIBE, DELETE, READ

        def listed(states):
            body = conn.request(ApiKey.LIST_GROUPS, {"states_filter": states}, version=4)
            return {g["group_id"]: g["group_state"] for g in body["groups"]}

        assert listed([])[group] == "Stable"
        assert group in listed(["stable"]) and group not in listed(["Empty"])

        left = conn.request(
            ApiKey.LEAVE_GROUP,
            {
                "group_id": group,
                "members": [
                    {"member_id": member, "group_instance_id": None, "reason": "closing"},
                    {"member_id": "", "group_instance_id": "host-1", "reason": None},
                ],
            },
            version=5,
        )
        assert left["error_code"] == NONE
        assert [
            (m["member_id"], m["group_instance_id"], m["error_code"]) for m in left["members"]
        ] == [
            (member, None, NONE),
            ("", "host-1", UNKNOWN_MEMBER_ID),  # no static member has that instance id
        ]
        assert listed(["Empty"])[group] == "Empty"
        assert conn.request(ApiKey.HEARTBEAT, beat, version=4)["error_code"] == UNKNOWN_MEMBER_ID


def offsets(topics) -> dict:
    return {
        (t["name"], p["partition_index"]): p["committed_offset"]
        for t in topics
        for p in t["partitions"]
        if p["error_code"] == NONE
    }
