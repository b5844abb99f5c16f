"""The wire protocol without sockets: schema round trips for every served version, golden
bytes, and the server protocol over a StringTransport (framing, ordering, limits)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from schema_samples import project, sample
from twisted.internet import defer
from twisted.internet.testing import StringTransport

from broker.protocol import frames, produce
from broker.protocol.registry import API_BY_KEY, APIS, ApiKey, api_versions_body
from broker.protocol.schema import (
    ProtocolError,
)
from broker.server import KafkaServerFactory

VERSIONS = [(api, v) for api in APIS for v in range(api.min_version, api.max_version + 1)]


@pytest.mark.parametrize("api, version", VERSIONS, ids=[f"{a.name}-v{v}" for a, v in VERSIONS])
def test_every_served_version_round_trips(api, version):
    for schema in (api.request, api.response):
        body = sample(schema, version)
        decoded = schema.decode(schema.encode(body, version), version)
        assert project(decoded, body) == body


def test_golden_api_versions_v0_response():
    body = {"error_code": 0, "api_keys": [{"api_key": 18, "min_version": 0, "max_version": 2}]}
    encoded = API_BY_KEY[ApiKey.API_VERSIONS].response.encode(body, 0)
    assert encoded == bytes.fromhex(
        "0000"  # error_code 0
        "00000001"  # one api key
        "0012"
        "0000"
        "0002"  # ApiVersions 18: 0-2
    )  # no throttle_time_ms in v0


def test_golden_metadata_v1_request_and_header():
    frame = frames.encode_request(ApiKey.METADATA, 1, 7, "cli", {"topics": None})
    assert frame == bytes.fromhex(
        "00000011"  # size 17
        "0003"
        "0001"
        "00000007"  # Metadata v1, correlation id 7
        "0003"
        "636c69"  # client id "cli"
        "ffffffff"  # topics: null = all topics (v1+)
    )


def test_golden_produce_v3_request():
    frame = frames.encode_request(
        ApiKey.PRODUCE,
        3,
        1,
        None,
        {
            "transactional_id": None,
            "acks": -1,
            "timeout_ms": 1000,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": b"\x01\x02"}]}],
        },
    )
    assert frame[4:] == bytes.fromhex(
        "0000"
        "0003"
        "00000001"
        "ffff"  # Produce v3, correlation 1, null client id
        "ffff"  # transactional id: null
        "ffff"
        "000003e8"  # acks -1, timeout 1000
        "00000001"
        "0001"
        "74"  # one topic "t"
        "00000001"
        "00000000"
        "00000002"
        "0102"  # partition 0, two bytes of records
    )


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_request_bytes_raise_only_protocol_errors(data):
    try:
        frames.decode_request(data)
    except ProtocolError:
        pass


# --- the server protocol over a StringTransport ----------------------------------------------


class FakeHandlers:
    """Answers ApiVersions at once, Metadata after a Deferred we control, Produce per acks."""

    def __init__(self):
        self.waiting = []

    def handle(self, request, connection):
        key = request.api.key
        if key == ApiKey.API_VERSIONS:
            return api_versions_body()
        if key == ApiKey.METADATA:
            d = defer.Deferred()
            self.waiting.append(d)
            return d
        if key == ApiKey.PRODUCE:
            if request.body.acks == 0:
                return None
            return produce.encode_response(request.header.api_version, [])  # encoded here
        raise AssertionError(key)


def connect(max_length=1 << 20):
    handlers = FakeHandlers()
    factory = KafkaServerFactory(handlers, max_length)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, handlers


def responses(transport):
    data = transport.value()
    out, pos = [], 0
    while pos < len(data):
        size = struct.unpack_from(">i", data, pos)[0]
        out.append(struct.unpack_from(">i", data, pos + 4)[0])
        pos += 4 + size
    return out


def test_a_request_fed_one_byte_at_a_time_is_answered_once():
    proto, transport, _ = connect()
    for byte in frames.encode_request(ApiKey.API_VERSIONS, 2, 42, "c", {}):
        proto.dataReceived(bytes([byte]))
    assert responses(transport) == [42]


def test_responses_keep_request_order_when_an_earlier_one_waits():
    proto, transport, handlers = connect()
    proto.dataReceived(frames.encode_request(ApiKey.METADATA, 8, 1, "c", {"topics": []}))
    proto.dataReceived(frames.encode_request(ApiKey.API_VERSIONS, 2, 2, "c", {}))
    assert responses(transport) == []  # ApiVersions is ready but must wait for Metadata
    handlers.waiting[0].callback({"brokers": [], "topics": []})
    assert responses(transport) == [1, 2]


def test_an_encoded_answer_waits_for_an_earlier_one_and_gets_its_frame():
    proto, transport, handlers = connect()
    body = {"transactional_id": None, "acks": 1, "timeout_ms": 1, "topic_data": []}
    proto.dataReceived(frames.encode_request(ApiKey.METADATA, 8, 1, "c", {"topics": []}))
    proto.dataReceived(frames.encode_request(ApiKey.PRODUCE, 8, 2, "c", body))
    assert responses(transport) == []
    handlers.waiting[0].callback({"brokers": [], "topics": []})
    proto.dataReceived(
        frames.encode_request(ApiKey.PRODUCE, 8, 3, "c", body)
    )  # nothing waits: at once
    assert responses(transport) == [1, 2, 3]
    last = transport.value()[-16:]  # size, correlation id, no topics, throttle time
    assert frames.decode_response(ApiKey.PRODUCE, 8, last[4:]) == (
        3,
        {"responses": [], "throttle_time_ms": 0},
    )


def test_produce_with_acks_0_gets_no_response():
    proto, transport, _ = connect()
    body = {"transactional_id": None, "acks": 0, "timeout_ms": 1, "topic_data": []}
    proto.dataReceived(frames.encode_request(ApiKey.PRODUCE, 8, 1, "c", body))
    proto.dataReceived(frames.encode_request(ApiKey.API_VERSIONS, 2, 2, "c", {}))
    assert responses(transport) == [2]


def test_api_versions_above_served_gets_a_v0_fallback():
    proto, transport, _ = connect()
    # v4 (newer than served): a header v2 and a body of compact strings and tags
    head = struct.pack(">hhih", 18, 4, 9, -1) + b"\x00" + b"\x02a\x02b\x00"
    proto.dataReceived(struct.pack(">i", len(head)) + head)
    data = transport.value()
    assert struct.unpack_from(">i", data, 4)[0] == 9
    body = API_BY_KEY[ApiKey.API_VERSIONS].response.decode(data, 0, 8)
    assert body["error_code"] == 35
    assert {(k["api_key"], k["min_version"], k["max_version"]) for k in body["api_keys"]} == {
        (a.key, a.min_version, a.max_version) for a in APIS
    }
    assert not transport.disconnecting


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">i", 6) + b"\x00\x03\x00\x63\x00\x00",  # Metadata v99
        struct.pack(">i", 10) + struct.pack(">hhih", 77, 0, 1, -1),  # unknown api key
        struct.pack(">i", 12) + struct.pack(">hhih", 3, 1, 1, -1) + b"\x00\x00",  # truncated body
        struct.pack(">i", 3) + b"abc",  # shorter than a header
    ],
)
def test_unparseable_frames_close_only_that_connection(frame):
    proto, transport, _ = connect()
    other, other_transport, _ = connect()
    proto.dataReceived(frame)
    assert transport.disconnecting
    other.dataReceived(frames.encode_request(ApiKey.API_VERSIONS, 0, 5, None, {}))
    assert responses(other_transport) == [5] and not other_transport.disconnecting


def test_a_frame_over_the_size_limit_closes_the_connection():
    proto, transport, _ = connect(max_length=1000)
    proto.dataReceived(struct.pack(">i", 5000) + b"x" * 100)
    assert transport.disconnecting
    proto2, transport2, _ = connect(max_length=1000)
    proto2.dataReceived(b"\xff\xff\xff\xff")  # a negative size reads as over 2 GB
    assert transport2.disconnecting


def test_reading_pauses_while_too_many_requests_are_in_progress():
    from broker.server import MAX_PENDING

    proto, transport, handlers = connect()
    for i in range(MAX_PENDING):
        proto.dataReceived(frames.encode_request(ApiKey.METADATA, 8, i, "c", {"topics": []}))
    assert transport.producerState == "paused"  # no more requests are read for now
    for d in handlers.waiting:
        d.callback({"brokers": [], "topics": []})
    assert transport.producerState == "producing"
    assert responses(transport) == list(range(MAX_PENDING))


def test_a_slow_reader_pauses_request_reading():
    proto, transport, _ = connect()
    proto.pauseProducing()  # what the transport does when its write buffer is full
    assert transport.producerState == "paused"
    proto.resumeProducing()
    assert transport.producerState == "producing"


def test_waiting_requests_are_cancelled_when_the_connection_goes():
    proto, _transport, handlers = connect()
    proto.dataReceived(frames.encode_request(ApiKey.METADATA, 8, 1, "c", {"topics": []}))
    proto.connectionLost(None)
    assert handlers.waiting[0].called  # cancelled: a long-polled fetch stops waiting
    handlers.waiting[0].addErrback(lambda f: None)
