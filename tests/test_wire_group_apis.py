"""The consumer-group API schemas (``broker.protocol.group_apis``).

Round trips for every version of every request and response, flexible ones included,
byte-for-byte agreement with kafka-python's encoders (its hand-written classes in
``kafka.protocol.old`` and its classes generated from Kafka's JSON definitions), golden
bytes, and a check that the broker advertises exactly these versions.
"""

from __future__ import annotations

import struct

import pytest
from kafka.protocol.admin import groups as kp_admin
from kafka.protocol.consumer import group as kp_group
from kafka.protocol.metadata import find_coordinator as kp_coord
from kafka.protocol.old import admin as old_admin
from kafka.protocol.old import commit as old_commit
from kafka.protocol.old import find_coordinator as old_coord
from kafka.protocol.old import group as old_group
from kafka.protocol.old.types import BitField
from schema_samples import assert_agrees_with_json_class, project, sample

from broker.protocol import frames
from broker.protocol.group_apis import AUTHORIZED_OPERATIONS_OMITTED
from broker.protocol.registry import API_BY_KEY, APIS, GROUP_APIS, ApiKey, api_versions_body
from broker.protocol.schema import (
    NULLABLE_STRING,
    Array,
    Struct,
)

GROUP_BY_KEY = {api.key: api for api in GROUP_APIS}
VERSIONS = [(api, v) for api in GROUP_APIS for v in range(api.min_version, api.max_version + 1)]
IDS = [f"{a.name}-v{v}" for a, v in VERSIONS]

# Values that fill each type's full width, so a field declared one size too small or too
# large fails loudly rather than by luck.
# --- the table -------------------------------------------------------------------------------


def test_the_table_is_what_was_asked_for_and_stays_out_of_the_served_one():
    assert [(a.key, a.name, a.min_version, a.max_version) for a in GROUP_APIS] == [
        (10, "FindCoordinator", 0, 4),
        (11, "JoinGroup", 0, 9),
        (12, "Heartbeat", 0, 4),
        (13, "LeaveGroup", 0, 5),
        (14, "SyncGroup", 0, 5),
        (8, "OffsetCommit", 2, 9),
        (9, "OffsetFetch", 1, 8),
        (15, "DescribeGroups", 0, 5),
        (16, "ListGroups", 0, 4),
    ]
    for api in GROUP_APIS:
        assert API_BY_KEY[api.key] is api and api in APIS
    advertised = {
        k["api_key"]: (k["min_version"], k["max_version"]) for k in api_versions_body()["api_keys"]
    }
    assert {k: advertised[k] for k in GROUP_BY_KEY} == {
        a.key: (a.min_version, a.max_version) for a in GROUP_APIS
    }


# First flexible version of each API, from Kafka's JSON definitions.
FIRST_FLEXIBLE = {10: 3, 11: 6, 12: 4, 13: 4, 14: 4, 8: 8, 9: 6, 15: 5, 16: 3}


def test_flexible_from_kafkas_first_flexible_version():
    for api in GROUP_APIS:
        assert api.flexible_from == FIRST_FLEXIBLE[api.key], api.name
        assert api.max_version >= FIRST_FLEXIBLE[api.key], api.name


def _nullable_paths(type_, prefix=""):
    if isinstance(type_, Array):
        return ({prefix} if type_.nullable else set()) | _nullable_paths(type_.item, prefix)
    if isinstance(type_, Struct):
        return set().union(
            *(
                _nullable_paths(f.type, f"{prefix}{'.' if prefix else ''}{f.name}")
                for f in type_.fields
            )
        )
    return {prefix} if type_ is NULLABLE_STRING else set()


def test_exactly_the_fields_kafka_lets_be_null_are_nullable():
    # From the nullableVersions of Kafka's JSON, within the versions declared here.
    expected = {
        (10, "request"): set(),
        (10, "response"): {"error_message", "coordinators.error_message"},
        (11, "request"): {"group_instance_id", "reason"},
        (11, "response"): {"protocol_type", "protocol_name", "members.group_instance_id"},
        (12, "request"): {"group_instance_id"},
        (12, "response"): set(),
        (13, "request"): {"members.group_instance_id", "members.reason"},
        (13, "response"): {"members.group_instance_id"},
        (14, "request"): {"group_instance_id", "protocol_type", "protocol_name"},
        (14, "response"): {"protocol_type", "protocol_name"},
        (8, "request"): {"group_instance_id", "topics.partitions.committed_metadata"},
        (8, "response"): set(),
        (9, "request"): {"topics", "groups.topics"},
        (9, "response"): {"topics.partitions.metadata", "groups.topics.partitions.metadata"},
        (15, "request"): set(),
        (15, "response"): {"groups.members.group_instance_id"},
        (16, "request"): set(),
        (16, "response"): set(),
    }
    for api in GROUP_APIS:
        for side in ("request", "response"):
            assert _nullable_paths(getattr(api, side)) == expected[api.key, side], (api.name, side)


def test_group_requests_decode_and_versions_past_the_table_are_refused():
    head = struct.pack(">hhih", 11, 5, 3, -1)
    body = GROUP_BY_KEY[ApiKey.JOIN_GROUP].request.encode({"group_id": "g", "protocols": []}, 5)
    assert frames.decode_request(head + body).body["group_id"] == "g"
    with pytest.raises(frames.UnsupportedApiError):
        frames.decode_request(struct.pack(">hhih", 11, 10, 3, -1) + body)  # past v9


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize("api, version", VERSIONS, ids=IDS)
def test_every_version_round_trips(api, version, nulls):
    for schema in (api.request, api.response):
        body = sample(schema, version, nulls)
        encoded = schema.encode(body, version)
        decoded = schema.decode(encoded, version)
        assert project(decoded, body) == body
        assert schema.encode(decoded, version) == encoded


@pytest.mark.parametrize(
    "key, version, side, field, value",
    [
        (10, 0, "request", "key_type", 0),  # v0 asks for a group coordinator
        (11, 0, "request", "rebalance_timeout_ms", -1),  # use the session timeout instead
        (11, 4, "request", "group_instance_id", None),
        (8, 5, "request", "retention_time_ms", -1),
        (9, 1, "response", "error_code", 0),
        (9, 2, "response", "throttle_time_ms", 0),
    ],
)
def test_fields_a_version_lacks_decode_to_their_defaults(key, version, side, field, value):
    schema = getattr(GROUP_BY_KEY[key], side)
    assert schema.decode(schema.encode({}, version), version)[field] == value


def test_authorized_operations_default_to_not_requested_below_v3():
    schema = GROUP_BY_KEY[ApiKey.DESCRIBE_GROUPS].response
    body = {"groups": [{"group_id": "g", "members": []}]}
    decoded = schema.decode(schema.encode(body, 2), 2)
    operations = decoded["groups"][0]["authorized_operations"]
    assert operations == AUTHORIZED_OPERATIONS_OMITTED == -(2**31)


def test_a_non_nullable_field_refuses_none_and_a_nullable_array_takes_it():
    join = GROUP_BY_KEY[ApiKey.JOIN_GROUP].request
    with pytest.raises(ValueError):
        join.encode({"group_id": None}, 5)
    fetch = GROUP_BY_KEY[ApiKey.OFFSET_FETCH].request
    assert fetch.decode(fetch.encode({"group_id": "g", "topics": None}, 2), 2)["topics"] is None


# --- kafka-python ----------------------------------------------------------------------------

_NAMES = {
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    8: "OffsetCommit",
    9: "OffsetFetch",
    15: "DescribeGroups",
    16: "ListGroups",
}
_OLD_MODULES = {
    10: old_coord,
    11: old_group,
    12: old_group,
    13: old_group,
    14: old_group,
    8: old_commit,
    9: old_commit,
    15: old_admin,
    16: old_admin,
}
_NEW_MODULES = {
    10: kp_coord,
    11: kp_group,
    12: kp_group,
    13: kp_group,
    14: kp_group,
    8: kp_group,
    9: kp_group,
    15: kp_admin,
    16: kp_admin,
}


def _bits(value):
    """An int32 bit field as kafka-python's set of bit numbers."""
    return {b for b in range(32) if (value & 0xFFFFFFFF) >> b & 1}


def _old_values(old_type, ours, value):
    """``value`` as positional tuples for kafka-python's hand-written Schema classes,
    checking on the way that their field names and order are ours."""
    if isinstance(ours, Struct):
        present = [f for f in ours.fields if f.name in value]
        assert list(old_type.names) == [f.name for f in present]
        pairs = zip(old_type.fields, present)
        return tuple(_old_values(t, f.type, value[f.name]) for t, f in pairs)
    if isinstance(ours, Array):
        if value is None:
            return None
        return [_old_values(old_type.array_of, ours.item, v) for v in value]
    if old_type is BitField:
        return _bits(value)
    return value


def _bits_in(value):
    """``value`` with authorized_operations as the bit set kafka-python decodes it to."""
    if isinstance(value, dict):
        out = {k: _bits_in(v) for k, v in value.items()}
        if "authorized_operations" in value:
            v = value["authorized_operations"]
            out["authorized_operations"] = None if v == AUTHORIZED_OPERATIONS_OMITTED else _bits(v)
        return out
    if isinstance(value, list):
        return [_bits_in(v) for v in value]
    return value


def _old_class(key, side, version):
    classes = getattr(_OLD_MODULES[key], _NAMES[key] + side, [])
    return classes[version] if version < len(classes) else None


OLD_CASES = [
    (api, v, side)
    for api, v in VERSIONS
    for side in ("Request", "Response")
    if _old_class(api.key, side, v) is not None
]
NEW_CASES = [(api, v, side) for api, v in VERSIONS for side in ("Request", "Response")]


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize(
    "api, version, side", OLD_CASES, ids=[f"{a.name}{s}-v{v}" for a, v, s in OLD_CASES]
)
def test_bytes_equal_kafka_python_hand_written_classes(api, version, side, nulls):
    schema = api.request if side == "Request" else api.response
    body = sample(schema, version, nulls)
    cls = _old_class(api.key, side, version)
    theirs = cls(*_old_values(cls.SCHEMA, schema, body)).encode()
    assert schema.encode(body, version) == bytes(theirs)
    if side == "Request" and api.key != 16:  # their ListGroupsRequest_v2 says it is v1
        assert version == cls.API_VERSION


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize(
    "api, version, side", NEW_CASES, ids=[f"{a.name}{s}-v{v}" for a, v, s in NEW_CASES]
)
def test_bytes_equal_kafka_python_json_generated_classes(api, version, side, nulls):
    schema = api.request if side == "Request" else api.response
    body = sample(schema, version, nulls)
    cls = getattr(_NEW_MODULES[api.key], _NAMES[api.key] + side)
    assert bool(cls.flexible_version_q(version)) == api.is_flexible(version)
    # and their decoder reads our bytes back to the same values
    assert_agrees_with_json_class(cls, schema, version, body, _bits_in(body))


def test_kafka_python_hand_written_classes_lack_describe_groups_v4():
    assert len(old_admin.DescribeGroupsRequest) == 4 and len(old_admin.DescribeGroupsResponse) == 4
    assert old_admin.ListGroupsRequest[2].API_VERSION == 1  # a mislabelled v2 (body is empty)


# --- golden bytes ----------------------------------------------------------------------------


def test_golden_join_group_v5_request():
    # The metadata is a "consumer" protocol subscription, version 0, to topic "t".
    subscription = bytes.fromhex("00000000000100017400000000")
    body = {
        "group_id": "grp",
        "session_timeout_ms": 10000,
        "rebalance_timeout_ms": 300000,
        "member_id": "",
        "group_instance_id": None,
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": subscription}],
    }
    encoded = GROUP_BY_KEY[ApiKey.JOIN_GROUP].request.encode(body, 5)
    assert encoded == bytes.fromhex(
        "0003"
        "677270"  # group_id "grp"
        "00002710"  # session_timeout_ms 10000
        "000493e0"  # rebalance_timeout_ms 300000 (v1+)
        "0000"  # member_id "": first join, v4+ answers MEMBER_ID_REQUIRED
        "ffff"  # group_instance_id null: a dynamic member (v5+)
        "0008"
        "636f6e73756d6572"  # protocol_type "consumer"
        "00000001"  # one protocol
        "0005"
        "72616e6765"  # name "range"
        "0000000d"  # metadata: the 13 bytes below
        "0000"  # . subscription version 0
        "00000001"
        "0001"
        "74"  # . topics ["t"]
        "00000000"  # . user_data: empty
    )
    assert GROUP_BY_KEY[ApiKey.JOIN_GROUP].request.decode(encoded, 5) == {**body, "reason": None}


def test_golden_offset_commit_v7_request():
    body = {
        "group_id": "grp",
        "generation_id_or_member_epoch": 3,
        "member_id": "m-1",
        "group_instance_id": "i-1",
        "topics": [
            {
                "name": "t",
                "partitions": [
                    {
                        "partition_index": 2,
                        "committed_offset": 42,
                        "committed_leader_epoch": 5,
                        "committed_metadata": None,
                    },
                ],
            }
        ],
    }
    encoded = GROUP_BY_KEY[ApiKey.OFFSET_COMMIT].request.encode(body, 7)
    assert encoded == bytes.fromhex(
        "0003"
        "677270"  # group_id "grp"
        "00000003"  # generation_id_or_member_epoch 3
        "0003"
        "6d2d31"  # member_id "m-1"
        "0003"
        "692d31"  # group_instance_id "i-1" (v7+)
        # no retention_time_ms: only v2-4 carry it
        "00000001"  # one topic
        "0001"
        "74"  # name "t"
        "00000001"  # one partition
        "00000002"  # partition_index 2
        "000000000000002a"  # committed_offset 42
        "00000005"  # committed_leader_epoch 5 (v6+)
        "ffff"  # committed_metadata null
    )
    # a field the version lacks decodes to its default
    assert GROUP_BY_KEY[ApiKey.OFFSET_COMMIT].request.decode(encoded, 7) == {
        **body,
        "retention_time_ms": -1,
    }


def test_golden_offset_commit_v2_request_carries_retention():
    body = {"group_id": "g", "generation_id_or_member_epoch": -1, "member_id": "", "topics": []}
    assert GROUP_BY_KEY[ApiKey.OFFSET_COMMIT].request.encode(body, 2) == bytes.fromhex(
        "0001"
        "67"  # group_id "g"
        "ffffffff"  # generation -1: a commit from outside any generation
        "0000"  # member_id ""
        "ffffffffffffffff"  # retention_time_ms -1 (the default): the broker's retention
        "00000000"  # no topics
    )


def test_golden_offset_fetch_v5_response_puts_the_group_error_last():
    body = {
        "throttle_time_ms": 0,
        "error_code": 16,
        "topics": [
            {
                "name": "t",
                "partitions": [
                    {
                        "partition_index": 0,
                        "committed_offset": -1,
                        "committed_leader_epoch": -1,
                        "metadata": "",
                        "error_code": 0,
                    }
                ],
            }
        ],
    }
    assert GROUP_BY_KEY[ApiKey.OFFSET_FETCH].response.encode(body, 5) == bytes.fromhex(
        "00000000"  # throttle_time_ms (v3+)
        "00000001"
        "0001"
        "74"  # one topic "t"
        "00000001"
        "00000000"  # one partition: 0
        "ffffffffffffffff"  # committed_offset -1: none committed
        "ffffffff"  # committed_leader_epoch -1 (v5+)
        "0000"  # metadata ""
        "0000"  # partition error_code 0
        "0010"  # error_code 16 NOT_COORDINATOR, for the whole group (v2+)
    )


def test_golden_find_coordinator_v4_request_is_compact_with_a_key_array():
    body = {"key_type": 0, "coordinator_keys": ["g1", "g2"]}
    encoded = GROUP_BY_KEY[ApiKey.FIND_COORDINATOR].request.encode(body, 4)
    assert encoded == bytes.fromhex(
        "00"  # key_type 0: groups (no "key" field from v4)
        "03"  # coordinator_keys: compact array, 2 elements + 1
        "03"
        "6731"  # "g1": compact string, 2 bytes + 1
        "03"
        "6732"  # "g2"
        "00"  # no tagged fields
    )
    assert GROUP_BY_KEY[ApiKey.FIND_COORDINATOR].request.decode(encoded, 4) == {
        **body,
        "key": "",
    }


def test_golden_leave_group_v5_request_names_each_member_with_a_reason():
    body = {
        "group_id": "g",
        "members": [{"member_id": "m", "group_instance_id": None, "reason": "bye"}],
    }
    encoded = GROUP_BY_KEY[ApiKey.LEAVE_GROUP].request.encode(body, 5)
    assert encoded == bytes.fromhex(
        "02"
        "67"  # group_id "g" (no member_id field from v3)
        "02"  # one member
        "02"
        "6d"  # . member_id "m"
        "00"  # . group_instance_id null
        "04"
        "627965"  # . reason "bye" (v5+)
        "00"  # . the member's tagged fields: none
        "00"  # the request's tagged fields: none
    )
