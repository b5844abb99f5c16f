"""The Produce fast path (``broker/protocol/produce.py``) agrees with the generic codec of
the Produce table for every version served: the same requests read, the same malformed bytes
refused, the same response bytes written."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_wire_codegen import _plain, values

from broker.protocol import frames, produce
from broker.protocol.apis import PRODUCE_REQUEST, PRODUCE_RESPONSE
from broker.protocol.registry import API_BY_KEY, ApiKey
from broker.protocol.schema import ProtocolError

PRODUCE = API_BY_KEY[ApiKey.PRODUCE]
VERSIONS = range(PRODUCE.min_version, PRODUCE.max_version + 1)


def _as_tuples(body: dict, version: int) -> tuple:
    """The generic codec's dict in the fast path's shape."""
    return (
        body["acks"],
        body["timeout_ms"],
        body["transactional_id"] if version >= 3 else None,
        [
            (t["name"], [(p["index"], p["records"]) for p in t["partition_data"]])
            for t in body["topic_data"]
        ],
    )


def _fast(data: bytes, version: int):
    try:
        return _plain(list(produce.decode_request(data, 0, version)))
    except ProtocolError:
        return ProtocolError


def _generic(data: bytes, version: int):
    try:
        return _plain(list(_as_tuples(PRODUCE_REQUEST.decode_generic(data, version), version)))
    except ProtocolError:
        return ProtocolError


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_request_decoder_agrees_with_the_generic_one(version, data):
    body = data.draw(values(PRODUCE_REQUEST, version))
    encoded = PRODUCE_REQUEST.encode_generic(body, version)
    assert _fast(encoded, version) == _generic(encoded, version) != ProtocolError
    # Damaged bytes: cut short, one byte changed, one byte too many: refused (or read) alike.
    cut = data.draw(st.integers(0, len(encoded)))
    damaged = bytearray(encoded)
    at = data.draw(st.integers(0, len(damaged) - 1))
    damaged[at] = data.draw(st.integers(0, 255))
    for bad in (encoded[:cut], bytes(damaged), encoded + b"\x00"):
        assert _fast(bad, version) == _generic(bad, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_fast_request_decoder_reads_after_the_header(version):
    body = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 30000,
        "topic_data": [{"name": "t", "partition_data": [{"index": 3, "records": b"abc"}]}],
    }
    frame = frames.encode_request(ApiKey.PRODUCE, version, 7, "client", body)[4:]
    header_end = 10 + len("client") + PRODUCE.is_flexible(version)  # v2: a tagged section
    request = produce.decode_request(frame, header_end, version)
    assert (request.acks, request.timeout_ms) == (-1, 30000)
    assert [(t, [(i, bytes(r)) for i, r in ps]) for t, ps in request.topics] == [
        ("t", [(3, b"abc")])
    ]


def _partition_results():
    i16, i32, i64 = (st.integers(-(1 << b), (1 << b) - 1) for b in (15, 31, 63))
    record_errors = st.none() | st.lists(
        st.tuples(i32, st.none() | st.text(max_size=6)), max_size=2
    )
    return st.tuples(i32, i16, i64, i64, i64, record_errors, st.none() | st.text(max_size=6))


@pytest.mark.parametrize("version", VERSIONS)
@settings(max_examples=60, deadline=None)
@given(
    responses=st.lists(
        st.tuples(st.text(max_size=6), st.lists(_partition_results(), max_size=3)), max_size=3
    ),
    correlation_id=st.integers(-(1 << 31), (1 << 31) - 1),
)
def test_fast_response_encoder_agrees_with_the_generic_one(version, responses, correlation_id):
    body = {
        "throttle_time_ms": 0,
        "responses": [
            {
                "name": topic,
                "partition_responses": [
                    {
                        "index": p[0],
                        "error_code": p[1],
                        "base_offset": p[2],
                        "log_append_time_ms": p[3],
                        "log_start_offset": p[4],
                        "record_errors": [
                            {"batch_index": i, "batch_index_error_message": m}
                            for i, m in p[5] or ()
                        ],
                        "error_message": p[6],
                    }
                    for p in partitions
                ],
            }
            for topic, partitions in responses
        ],
    }
    expected = frames.encode_response(correlation_id, PRODUCE, version, body)
    body_start = 8 + PRODUCE.is_flexible(version)  # size, correlation id, v1: tagged section
    assert produce.encode_response(version, responses) == expected[body_start:]
    assert PRODUCE_RESPONSE.decode_generic(expected[body_start:], version)  # well-formed


def test_the_fast_path_is_flexible_where_the_registry_says():
    assert PRODUCE.flexible_from == produce.FIRST_FLEXIBLE
