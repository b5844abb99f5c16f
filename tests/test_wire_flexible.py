"""Flexible versions (KIP-482) in the codec: unsigned varints, compact strings, bytes and
arrays, tagged fields; request header v2 and response header v1 (never for ApiVersions); and
every flexible version served read and written as kafka-python 3.0.12 (built from Kafka's own
message definitions) reads and writes it."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka_python_wire import agree, read_back_by_kafka_python
from schema_samples import sample
from test_wire_codegen import check_codecs_agree

from broker.protocol import frames
from broker.protocol.registry import API_BY_KEY, APIS, ApiKey
from broker.protocol.schema import (
    INT32,
    INT64,
    NULLABLE_BYTES,
    NULLABLE_STRING,
    STRING,
    UUID,
    Array,
    Field,
    ProtocolError,
    Struct,
    decode_uvarint,
    struct_array,
)
from broker.protocol.varint import encode_uvarint

# --- unsigned varints -----------------------------------------------------------------------


@given(st.integers(0, 2**32 - 1))
def test_unsigned_varints_round_trip(value):
    data = encode_uvarint(value)
    assert decode_uvarint(data + b"\xff", 0) == (value, len(data))


def test_unsigned_varint_bytes_are_kafkas():
    assert encode_uvarint(0) == b"\x00"
    assert encode_uvarint(127) == b"\x7f"
    assert encode_uvarint(128) == b"\x80\x01"
    assert encode_uvarint(300) == b"\xac\x02"
    assert encode_uvarint(2**32 - 1) == b"\xff\xff\xff\xff\x0f"


def test_a_varint_longer_than_five_bytes_or_cut_short_is_refused():
    with pytest.raises(ProtocolError, match="longer than 5 bytes"):
        decode_uvarint(b"\x80\x80\x80\x80\x80\x01", 0)
    with pytest.raises(ProtocolError, match="ends inside"):
        decode_uvarint(b"\x80\x80", 0)


# --- compact encodings and tagged fields -----------------------------------------------------

POINT = Struct(Field("x", INT32), Field("label", NULLABLE_STRING, "0+", tag=0))
SAMPLE = Struct(
    Field("name", STRING),
    Field("rack", NULLABLE_STRING),
    Field("data", NULLABLE_BYTES),
    Field("ids", Array(INT32)),
    Field("topic_id", UUID, "1+"),
    struct_array("points", *POINT.fields),
    Field("note", STRING, "1+", default="", tag=5),
    Field("epoch", INT64, "1+", default=-1, tag=1),
    Field("origin", POINT, "1+", tag=2),
    flexible_from=1,
)


def test_compact_bytes_are_length_plus_one_and_zero_for_null():
    body = {"name": "ab", "rack": None, "data": b"\x07", "ids": [5], "points": []}
    assert SAMPLE.encode(body, 1) == (
        b"\x03ab"  # name: compact string, length 2 + 1
        + b"\x00"  # rack: null
        + b"\x02\x07"  # data: one byte
        + b"\x02"
        + struct.pack(">i", 5)  # ids: one int32
        + bytes(16)  # topic_id: the zero UUID
        + b"\x01"  # points: empty compact array
        + b"\x00"  # no tagged field is off its default
    )
    assert (
        SAMPLE.encode(body, 0)
        == (
            b"\x00\x02ab"
            + b"\xff\xff"
            + b"\x00\x00\x00\x01\x07"
            + b"\x00\x00\x00\x01\x00\x00\x00\x05"
        )
        + b"\x00\x00\x00\x00"
    )  # version 0 is not flexible: the classic encodings, no tags


def test_tagged_fields_are_written_in_tag_order_only_when_not_at_their_default():
    body = {"name": "", "ids": [], "points": [], "note": "hi", "epoch": 9, "origin": {"x": 1}}
    tail = SAMPLE.encode(body, 1)[-23:]
    assert tail == (
        b"\x03"  # three tagged fields, by tag: 1, 2, 5
        + b"\x01\x08"
        + struct.pack(">q", 9)  # tag 1 (epoch), 8 bytes
        + b"\x02\x05"
        + struct.pack(">i", 1)
        + b"\x00"  # tag 2 (origin): x, no tags of its own
        + b"\x05\x03\x03hi"  # tag 5 (note), 3 bytes: a compact string
    )
    decoded = SAMPLE.decode(SAMPLE.encode(body, 1), 1)
    assert (decoded["note"], decoded["epoch"], decoded["origin"]) == (
        "hi",
        9,
        {"x": 1, "label": None},
    )
    assert SAMPLE.decode(SAMPLE.encode({**body, "epoch": -1, "note": ""}, 1), 1)["epoch"] == -1


def test_unknown_tags_are_skipped_and_known_ones_read():
    head = b"\x01" + b"\x00" + b"\x00" + b"\x01" + bytes(16) + b"\x01"
    tags = b"\x02" + b"\x01\x08" + struct.pack(">q", 4) + b"\x63\x03abc"  # tag 99 is unknown
    for decode in (SAMPLE.decode, SAMPLE.decode_generic):
        body = decode(head + tags, 1)
        assert body["epoch"] == 4 and body["note"] == ""


@pytest.mark.parametrize(
    "bad",
    [
        b"\x01\x00\x00\x01" + bytes(16) + b"\x01" + b"\x01\x01\x09" + bytes(8),  # size 9 > 8
        b"\x01\x00\x00\x01" + bytes(16) + b"\x01" + b"\x01\x63\x05ab",  # runs past the end
        b"\x05ab",  # a compact string longer than the message
    ],
)
def test_malformed_flexible_bytes_are_refused_by_both_codecs(bad):
    for decode in (SAMPLE.decode, SAMPLE.decode_generic):
        with pytest.raises(ProtocolError):
            decode(bad, 1)


@pytest.mark.parametrize("version", [0, 1])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_and_generic_codecs_agree_on_tagged_fields(version, data):
    check_codecs_agree(SAMPLE, version, data)


def test_a_registry_row_tells_its_schemas_where_flexible_versions_begin():
    api = API_BY_KEY[ApiKey.METADATA]
    assert api.flexible_from == api.request.flexible_from == api.response.flexible_from == 9
    assert not api.is_flexible(8) and api.is_flexible(9)


# --- headers ---------------------------------------------------------------------------------


def test_request_header_v2_carries_a_tagged_section_after_the_client_id():
    frame = frames.encode_request(ApiKey.METADATA, 9, 5, "cli", {"topics": None})
    assert frame[4:18] == struct.pack(">hhih", 3, 9, 5, 3) + b"cli" + b"\x00"
    with_tags = frame[4:17] + b"\x01\x07\x02hi" + frame[18:]  # a tag the broker does not know
    request = frames.decode_request(with_tags)
    assert (request.header.client_id, request.body["topics"]) == ("cli", None)


def test_request_header_v1_below_the_first_flexible_version():
    frame = frames.encode_request(ApiKey.METADATA, 8, 5, "cli", {"topics": None})
    assert frame[4:21] == struct.pack(">hhih", 3, 8, 5, 3) + b"cli" + b"\xff\xff\xff\xff"


@pytest.mark.parametrize(
    "key,version,head",
    [
        (ApiKey.METADATA, 8, struct.pack(">i", 5)),  # v0: the correlation id
        (ApiKey.METADATA, 9, struct.pack(">i", 5) + b"\x00"),  # v1: and no tagged fields
        (ApiKey.API_VERSIONS, 3, struct.pack(">i", 5)),  # ApiVersions: always v0
    ],
)
def test_response_header_by_version(key, version, head):
    api = API_BY_KEY[key]
    body = {"error_code": 0, "api_keys": [], "brokers": [], "topics": []}
    frame = frames.encode_response(5, api, version, body)
    assert frame[4 : 4 + len(head)] == head
    payload = api.response.encode(body, version)
    assert frame == struct.pack(">i", len(head) + len(payload)) + head + payload
    assert frames.decode_response(key, version, frame[4:])[0] == 5


# --- every flexible version served, against kafka-python --------------------------------------

FLEXIBLE_CASES = [
    (api, side, version)
    for api in APIS
    for side in ("request", "response")
    for version in range(api.min_version, api.max_version + 1)
    if api.is_flexible(version)
    if api.key != ApiKey.CONTROLLED_SHUTDOWN  # not in kafka-python: test_wire_rest_apis.py
]


@pytest.mark.parametrize(
    "api,side,version",
    FLEXIBLE_CASES,
    ids=[f"{a.name}-{s}-v{v}" for a, s, v in FLEXIBLE_CASES],
)
def test_kafka_python_reads_and_writes_our_flexible_frames_byte_for_byte(api, side, version):
    body = sample(getattr(api, side), version)
    if api.key == ApiKey.API_VERSIONS and side == "response":
        body["error_code"] = 0  # else kafka-python reads the answer as v0 (the fallback)
    theirs = read_back_by_kafka_python(api, side, version, body)
    # names and values, not only bytes (ListGroups v3's request is empty; a bytes field, as
    # SaslAuthenticate's only one, is checked by the byte-for-byte re-encoding)
    plain = [value for value in body.values() if not isinstance(value, bytes)]
    assert agree(body, theirs.to_dict()) >= min(2, len(plain))


def test_every_api_with_a_flexible_version_served_is_checked():
    assert {a.name for a, _, _ in FLEXIBLE_CASES} >= {
        "Produce",
        "Fetch",
        "Metadata",
        "ApiVersions",
        "ListOffsets",
    }


FLEXIBLE_REQUESTS = sorted({(a.key, v) for a, side, v in FLEXIBLE_CASES if side == "request"})


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(FLEXIBLE_REQUESTS), st.binary(max_size=120))
def test_random_bytes_after_a_flexible_request_header_raise_only_protocol_errors(request, tail):
    key, version = request
    try:
        frames.decode_request(struct.pack(">hhih", key, version, 1, -1) + tail)
    except ProtocolError:
        pass
