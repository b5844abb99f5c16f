"""Flexible versions (KIP-482) and topic ids (KIP-516) against a real broker: ApiVersions v3
and its fallback, Produce v9 and Fetch v12 read back, Metadata answering topic ids, Fetch v13
naming topics by id (an unknown id is UNKNOWN_TOPIC_ID), Metadata v12 asking by id."""

from __future__ import annotations

import logging
import socket
import struct
import uuid
from types import SimpleNamespace

import pytest
from conftest import create_topic
from request_bodies import fetch_body, produce_to

from broker.api_versions import answer_api_versions
from broker.protocol import frames
from broker.protocol.apis import CLIENT_SOFTWARE
from broker.protocol.errors import InvalidRequestError, UnknownTopicIdError
from broker.protocol.records import build_batch, iter_records
from broker.protocol.registry import API_BY_KEY, APIS, ApiKey
from consumers.client import BrokerConnection

UNKNOWN_ID = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")


@pytest.fixture(scope="module")
def topic(cluster1):
    create_topic(cluster1.brokers[0].port, "flexible", 2)
    return "flexible"


@pytest.fixture
def conn(cluster1):
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as connection:
        yield connection


def test_api_versions_v3_lists_the_newest_versions_served(conn):
    body = conn.request(
        ApiKey.API_VERSIONS,
        {"client_software_name": "test-client", "client_software_version": "1.2.3"},
        version=3,
    )
    assert body["error_code"] == 0
    assert {(k["api_key"], k["max_version"]) for k in body["api_keys"]} == {
        (a.key, a.max_version) for a in APIS
    }
    assert body["finalized_features_epoch"] == -1 and body["supported_features"] == []


def test_a_client_software_name_breaking_kafkas_rule_is_an_invalid_request(conn):
    body = conn.request(
        ApiKey.API_VERSIONS,
        {"client_software_name": "-bad name", "client_software_version": "1"},
        version=3,
    )
    assert body["error_code"] == InvalidRequestError.code
    # the connection still serves
    assert conn.request(ApiKey.API_VERSIONS, {}, version=3)["error_code"] == 0


def test_an_api_versions_version_above_the_newest_is_answered_in_v0(cluster1):
    # v9 with a header v2 and a body no version has: the broker reads neither
    head = struct.pack(">hhih", 18, 9, 11, 3) + b"cli" + b"\x00" + b"\x07junk\x00"
    with socket.create_connection(("127.0.0.1", cluster1.brokers[0].port), timeout=10) as raw:
        raw.sendall(struct.pack(">i", len(head)) + head)
        size = struct.unpack(">i", _read(raw, 4))[0]
        payload = _read(raw, size)
    correlation_id, body = frames.decode_response(ApiKey.API_VERSIONS, 0, payload)
    assert correlation_id == 11 and body["error_code"] == 35  # UNSUPPORTED_VERSION
    assert {k["api_key"] for k in body["api_keys"]} == {a.key for a in APIS}


def _read(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data


def test_produce_v9_and_fetch_v12_round_trip_records(conn, topic):
    answer = produce_to(conn, topic, 1, build_batch([(b"k", b"flexible")]), version=9)
    assert answer["error_code"] == 0
    body = conn.request(ApiKey.FETCH, fetch_body([(topic, 1, answer["base_offset"])]), version=12)
    partition = body["responses"][0]["partitions"][0]
    assert partition["error_code"] == 0
    assert [r.value for r in iter_records(partition["records"])] == [b"flexible"]
    assert partition["diverging_epoch"] == {"epoch": -1, "end_offset": -1}  # not sent


def test_metadata_answers_topic_ids_from_v10_and_fetch_v13_names_topics_by_them(conn, topic):
    old = conn.request(ApiKey.METADATA, {"topics": [{"name": topic}]}, version=9)
    assert old["topics"][0]["topic_id"] == uuid.UUID(int=0)  # v9 has no topic ids
    new = conn.request(ApiKey.METADATA, {"topics": [{"name": topic}]}, version=12)
    topic_id = new["topics"][0]["topic_id"]
    assert topic_id != uuid.UUID(int=0)
    offset = produce_to(conn, topic, 0, build_batch([(None, b"by id")]), version=9)["base_offset"]
    request = fetch_body([(topic, 0, offset)])
    request["topics"][0]["topic_id"] = topic_id
    body = conn.request(ApiKey.FETCH, request, version=13)
    answer = body["responses"][0]
    assert answer["topic_id"] == topic_id and answer["partitions"][0]["error_code"] == 0
    assert [r.value for r in iter_records(answer["partitions"][0]["records"])] == [b"by id"]


def test_fetch_v13_of_an_unknown_topic_id_is_unknown_topic_id(conn, topic):
    request = fetch_body([(topic, 0, 0)])
    request["topics"][0]["topic_id"] = UNKNOWN_ID
    body = conn.request(ApiKey.FETCH, request, version=13)
    answer = body["responses"][0]
    assert answer["topic_id"] == UNKNOWN_ID
    assert answer["partitions"][0]["error_code"] == UnknownTopicIdError.code
    assert conn.request(ApiKey.API_VERSIONS, {})["error_code"] == 0  # still serving


def test_metadata_v12_asks_for_a_topic_by_id(conn, topic):
    topic_id = conn.request(ApiKey.METADATA, {"topics": [{"name": topic}]})["topics"][0]["topic_id"]
    body = conn.request(
        ApiKey.METADATA,
        {"topics": [{"topic_id": topic_id, "name": None}, {"topic_id": UNKNOWN_ID, "name": None}]},
        version=12,
    )
    known, unknown = body["topics"]
    assert (known["name"], known["topic_id"], len(known["partitions"])) == (topic, topic_id, 2)
    assert (unknown["error_code"], unknown["name"]) == (UnknownTopicIdError.code, None)
    below = conn.request(
        ApiKey.METADATA, {"topics": [{"topic_id": topic_id, "name": None}]}, version=11
    )
    assert below["topics"][0]["error_code"] == InvalidRequestError.code


def test_our_clients_ask_for_flexible_versions():
    for key in (ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.METADATA, ApiKey.API_VERSIONS):
        api = API_BY_KEY[key]
        assert api.is_flexible(api.client_version), api.name


def test_list_offsets_v7_max_timestamp_is_the_record_with_the_largest_timestamp(conn, cluster1):
    create_topic(cluster1.brokers[0].port, "stamps", 1)
    batches = [
        [(None, b"a", [], 1_000), (None, b"b", [], 9_000), (None, b"c", [], 3_000)],
        [(None, b"d", [], 9_000), (None, b"e", [], 2_000)],  # ties: the first record wins
    ]
    for batch in batches:
        assert produce_to(conn, "stamps", 0, build_batch(batch), version=9)["error_code"] == 0
    request = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [{"name": "stamps", "partitions": [{"partition_index": 0, "timestamp": -3}]}],
    }
    answer = conn.request(ApiKey.LIST_OFFSETS, request, version=7)["topics"][0]["partitions"][0]
    assert (answer["error_code"], answer["offset"], answer["timestamp"]) == (0, 1, 9_000)


def test_confluent_kafka_lists_the_max_timestamp_offset(cluster1):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    create_topic(cluster1.brokers[0].port, "stamps-admin", 1)
    with BrokerConnection("127.0.0.1", cluster1.brokers[0].port) as conn:
        batch = [(None, b"x", [], 5_000), (None, b"y", [], 7_000), (None, b"z", [], 6_000)]
        assert produce_to(conn, "stamps-admin", 0, build_batch(batch))["error_code"] == 0
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{cluster1.brokers[0].port}"})
    partition = TopicPartition("stamps-admin", 0)
    futures = admin.list_offsets({partition: OffsetSpec.max_timestamp()}, request_timeout=20)
    answer = futures[partition].result(timeout=30)
    assert (answer.offset, answer.timestamp) == (1, 7_000)


def test_the_client_software_is_logged_once_per_connection_at_debug_level(caplog):
    connection = SimpleNamespace(peer="10.0.0.7:5000", client_software=None)
    software = {"client_software_name": "librdkafka", "client_software_version": "2.16.0"}
    frame = frames.encode_request(ApiKey.API_VERSIONS, 3, 1, "rdkafka", software)
    request = frames.decode_request(frame[4:])
    with caplog.at_level(logging.DEBUG, logger="broker.api_versions"):
        for _ in range(2):
            assert answer_api_versions(request, connection)["error_code"] == 0
    assert [r.getMessage() for r in caplog.records] == [
        "10.0.0.7:5000: client librdkafka 2.16.0 (client_id 'rdkafka')"
    ]
    assert connection.client_software == ("librdkafka", "2.16.0")


def test_our_clients_call_themselves_headrace_in_its_version():
    import headrace

    assert ("headrace", headrace.__version__) == CLIENT_SOFTWARE
