"""The admin APIs' tables (CreatePartitions, DeleteRecords, DeleteGroups, OffsetDelete,
ElectLeaders): every version served round-trips and gives the bytes kafka-python's classes
(generated from Kafka's JSON message definitions) give for the same values, which its decoder
reads back; the pure decisions (where new partitions go, what an election answers)."""

from __future__ import annotations

import pytest
from kafka.protocol.admin import groups as kp_groups
from kafka.protocol.admin import topics as kp_topics
from kafka.protocol.consumer import group as kp_consumer
from schema_samples import (
    assert_round_trips_as_kafka_python,
    assert_served_flexible_from_kafkas_first,
    sample,
    served_cases,
)

from broker.create_partitions import new_partitions
from broker.elect_leaders import PREFERRED, UNCLEAN, elect
from broker.protocol.errors import (
    ElectionNotNeededError,
    EligibleLeadersNotAvailableError,
    InvalidPartitionsError,
    InvalidReplicaAssignmentError,
    InvalidReplicationFactorError,
    PreferredLeaderNotAvailableError,
)
from broker.protocol.registry import API_BY_KEY, ApiKey
from broker.protocol.zookeeper import PartitionState

ADMIN = {
    ApiKey.CREATE_PARTITIONS: (kp_topics, (0, 3)),
    ApiKey.DELETE_RECORDS: (kp_topics, (0, 2)),
    ApiKey.DELETE_GROUPS: (kp_groups, (0, 2)),
    ApiKey.ELECT_LEADERS: (kp_topics, (0, 2)),
    ApiKey.OFFSET_DELETE: (kp_consumer, (0, 0)),
}
CASES = served_cases(ADMIN)


def test_every_version_up_to_kafkas_newest_is_served_flexible_from_kafkas_first():
    assert_served_flexible_from_kafkas_first(ADMIN)


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize(
    "api, version, side", CASES, ids=[f"{a.name}{s}-v{v}" for a, v, s in CASES]
)
def test_bytes_equal_kafka_python_and_round_trip(api, version, side, nulls):
    body = sample(api.request if side == "Request" else api.response, version, nulls)
    assert_round_trips_as_kafka_python(ADMIN[api.key][0], api, version, side, body)


def test_delete_records_request_golden_bytes():
    body = {
        "topics": [{"name": "t", "partitions": [{"partition_index": 2, "offset": -1}]}],
        "timeout_ms": 500,
    }
    golden = bytes.fromhex(
        "00000001"  # one topic
        "0001" "74"  # its name, "t"
        "00000001"  # one partition
        "00000002"  # partition 2
        "ffffffffffffffff"  # offset -1: the high watermark
        "000001f4"  # timeout 500 ms
    )  # fmt: skip
    assert API_BY_KEY[ApiKey.DELETE_RECORDS].request.encode(body, 1) == golden


PLACED = {0: [1, 2], 1: [2, 3], 2: [3, 1]}


def test_new_partitions_continue_kafkas_placement_and_check_assignments():
    assert new_partitions(3, 5, None, PLACED, [1, 2, 3]) == {3: [1, 3], 4: [2, 1]}
    assert new_partitions(3, 4, [[3, 2]], PLACED, [1, 2, 3]) == {3: [3, 2]}
    refusals = [
        ((3, 2, None), InvalidPartitionsError, "currently has 3 partitions"),
        ((3, 3, None), InvalidPartitionsError, "already has 3 partitions"),
        ((3, 5, [[1, 2]]), InvalidReplicaAssignmentError, "by 2 but 1 assignments"),
        ((3, 4, [[1, 1]]), InvalidReplicaAssignmentError, "Duplicate brokers"),
        ((3, 4, [[1, 7]]), InvalidReplicaAssignmentError, "Unknown broker(s) in replica"),
        ((3, 4, [[1]]), InvalidReplicaAssignmentError, "Inconsistent replication factor"),
        ((3, 4, [[]]), InvalidReplicaAssignmentError, "no replicas"),
        ((3, 20_000, None), InvalidPartitionsError, "at most"),
    ]
    for (current, count, assignments), error, words in refusals:
        with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
            new_partitions(current, count, assignments, PLACED, [1, 2, 3])
    with pytest.raises(InvalidReplicationFactorError):
        new_partitions(3, 4, None, PLACED, [1])


def test_elections_answer_as_kafka():
    led_by_second = PartitionState(2, 4, (1, 2), 1)
    assert elect(led_by_second, [1, 2], {1, 2}, 3, PREFERRED) == (
        PartitionState(1, 5, (1, 2), 3),
        0,
    )
    assert elect(PartitionState(1, 4, (1, 2), 1), [1, 2], {1, 2}, 3, PREFERRED) == (
        None,
        ElectionNotNeededError.code,
    )
    for live, isr in (({2}, (1, 2)), ({1, 2}, (2,))):  # preferred dead, or out of sync
        assert elect(PartitionState(2, 4, isr, 1), [1, 2], live, 3, PREFERRED) == (
            None,
            PreferredLeaderNotAvailableError.code,
        )
    offline = PartitionState(-1, 6, (1,), 1)
    assert elect(offline, [1, 2], {2}, 3, UNCLEAN) == (PartitionState(2, 7, (2,), 3), 0)
    assert elect(offline, [1, 2], set(), 3, UNCLEAN) == (
        None,
        EligibleLeadersNotAvailableError.code,
    )
    assert elect(led_by_second, [1, 2], {1, 2}, 3, UNCLEAN) == (None, ElectionNotNeededError.code)
