"""ControlledShutdown (key 7) versions 1-2: the schema round-trips and its bytes are Kafka's
(v3, flexible, in ``test_wire_rest_apis.py``)."""

from __future__ import annotations

import struct

import pytest

from broker.protocol.registry import API_BY_KEY, ApiKey

API = API_BY_KEY[ApiKey.CONTROLLED_SHUTDOWN]


def test_versions_served_are_1_to_3():
    assert (API.min_version, API.max_version, API.name) == (1, 3, "ControlledShutdown")


@pytest.mark.parametrize("version", [1, 2])
def test_request_and_response_round_trip(version):
    request = {"broker_id": 3, "broker_epoch": 4294967312 if version >= 2 else -1}
    assert API.request.decode(API.request.encode(request, version), version) == request
    response = {
        "error_code": 0,
        "remaining_partitions": [{"topic_name": "clicks", "partition_index": 2}],
    }
    assert API.response.decode(API.response.encode(response, version), version) == response


def test_request_bytes():
    # v1: broker_id int32; v2 adds broker_epoch int64
    assert API.request.encode({"broker_id": 3, "broker_epoch": 9}, 1) == struct.pack(">i", 3)
    assert API.request.encode({"broker_id": 3, "broker_epoch": 9}, 2) == struct.pack(">iq", 3, 9)


def test_response_bytes():
    body = {"error_code": 77, "remaining_partitions": [{"topic_name": "t", "partition_index": 1}]}
    assert API.response.encode(body, 2) == (
        struct.pack(">h", 77)  # error_code: STALE_BROKER_EPOCH
        + struct.pack(">i", 1)  # one remaining partition
        + struct.pack(">h", 1)
        + b"t"  # topic_name
        + struct.pack(">i", 1)  # partition_index
    )
