"""The consumer protocol's subscription and assignment bytes (versions 0-3), as Kafka's
clients write and read them inside JoinGroup and SyncGroup."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.protocol.consumer_protocol import (
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from broker.protocol.schema import ProtocolError


def test_a_version_0_subscription_has_golden_bytes():
    data = encode_subscription(["b", "a"], version=0)
    assert data.hex() == (
        "0000"  # version 0
        "00000002"  # two topics, sorted
        "000161"  # "a"
        "000162"  # "b"
        "ffffffff"  # user data: null
    )


def test_a_version_3_subscription_has_golden_bytes():
    data = encode_subscription(["t"], owned={"t": [1, 0]}, generation_id=7)
    assert data.hex() == (
        "0003"  # version 3
        "00000001"
        "000174"  # topics: ["t"]
        "ffffffff"  # user data: null
        "00000001"
        "000174"
        "00000002"
        "00000000"
        "00000001"  # owned: t [0, 1]
        "00000007"  # generation 7
        "ffff"  # rack: null
    )


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_subscriptions_round_trip_at_every_version(version):
    data = encode_subscription(
        ["x", "y"],
        owned={"x": [2]},
        generation_id=3,
        rack_id="r1",
        user_data=b"u",
        version=version,
    )
    sub = decode_subscription(data)
    assert (sub.version, sub.topics, sub.user_data) == (version, ["x", "y"], b"u")
    assert sub.owned == ({"x": [2]} if version >= 1 else {})
    assert sub.generation_id == (3 if version >= 2 else -1)
    assert sub.rack_id == ("r1" if version >= 3 else None)


def test_a_newer_subscription_is_read_as_the_newest_we_know():
    newer = b"\x00\x04" + encode_subscription(["t"], version=3)[2:] + b"\x00\x00\x00\x09"
    assert decode_subscription(newer).topics == ["t"]


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_assignments_round_trip_at_every_version(version):
    data = encode_assignment({"a": [3, 1], "b": [0], "empty": []}, b"ud", version=version)
    got = decode_assignment(data)
    assert (got.version, got.partitions, got.user_data) == (
        version,
        {"a": [1, 3], "b": [0]},
        b"ud",
    )


def test_a_version_0_assignment_has_golden_bytes():
    assert encode_assignment({"t": [4]}).hex() == (
        "0000"  # version 0
        "00000001"
        "000174"
        "00000001"
        "00000004"  # t: [4]
        "ffffffff"  # user data: null
    )


def test_an_empty_assignment_means_no_partitions():
    assert decode_assignment(b"").partitions == {}


@pytest.mark.parametrize(
    "data", [b"\x00", b"\xff\xff\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\x05\x00\x01a"]
)
def test_malformed_messages_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        decode_subscription(data)
    with pytest.raises(ProtocolError):
        decode_assignment(data)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_protocol_error(data):
    for decode in (decode_subscription, decode_assignment):
        try:
            decode(data)
        except ProtocolError:
            pass
