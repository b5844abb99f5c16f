"""The ZooKeeper layout (broker/protocol/zookeeper.py): paths, every node's encode/decode round
trip, and malformed node data refused with MalformedNodeError.  Pure: no ZooKeeper."""

from __future__ import annotations

import json

import pytest

from broker.protocol import zookeeper as layout
from broker.protocol.zookeeper import MalformedNodeError


def test_paths_are_kafkas_and_the_papers():
    assert layout.broker_path(3) == "/brokers/ids/3"
    assert layout.topic_path("clicks") == "/brokers/topics/clicks"
    assert layout.topic_config_path("clicks") == "/config/topics/clicks"
    assert layout.CLUSTER_ID == "/cluster/id"
    assert layout.PRODUCER_ID_BLOCK == "/latest_producer_id_block"
    assert layout.BROKER_BASE_PATHS == (
        "/brokers/ids",
        "/brokers/topics",
        "/config/topics",
        "/cluster",
        "/admin/deleted_topics",
    )
    assert layout.deleted_topic_path("f00d") == "/admin/deleted_topics/f00d"
    assert layout.group_path("g") == "/consumers/g"
    assert layout.kind_path("g") == "/consumers/g/kind"
    assert layout.members_path("g") == "/consumers/g/ids"
    assert layout.member_path("g", "g_host-1") == "/consumers/g/ids/g_host-1"
    assert layout.owners_path("g") == "/consumers/g/owners"
    assert layout.topic_owners_path("g", "t") == "/consumers/g/owners/t"
    assert layout.owner_path("g", "t", 2) == "/consumers/g/owners/t/2"
    assert layout.offsets_path("g") == "/consumers/g/offsets"
    assert layout.topic_offsets_path("g", "t") == "/consumers/g/offsets/t"
    assert layout.offset_path("g", "t", 2) == "/consumers/g/offsets/t/2"
    assert layout.loader_path("g") == "/consumers/g/loader"
    assert layout.plan_path("g") == "/consumers/g/loader/plan"
    assert layout.schema_path("g", "t") == "/consumers/g/loader/schemas/t"


@pytest.mark.parametrize("good", ["g", "warehouse-1", "a.b", "ü"])
def test_group_names_that_name_a_node_pass(good):
    layout.check_group_name(good)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "tab\there", "del\x7f", "\ud800x"])
def test_group_names_that_cannot_name_a_node_are_refused(bad):
    with pytest.raises(ValueError, match="group name"):
        layout.check_group_name(bad)


@pytest.mark.parametrize(
    "reg",
    [
        layout.BrokerRegistration("127.0.0.1", 9092),
        layout.BrokerRegistration(
            "h",
            9093,
            "rack-a",
            ("PLAINTEXT://h:9093",),
            ("host:/var/lib/a", "host:/var/lib/b"),
            1_700_000_000_000,
        ),
    ],
)
def test_broker_registration_round_trips(reg):
    back = layout.decode_broker(layout.encode_broker(reg))
    assert (back.host, back.port, back.rack, back.log_dirs, back.timestamp_ms) == (
        reg.host,
        reg.port,
        reg.rack,
        reg.log_dirs,
        reg.timestamp_ms,
    )
    assert back.endpoints == (reg.endpoints or (f"PLAINTEXT://{reg.host}:{reg.port}",))


def test_broker_registration_is_kafkas_json():
    doc = json.loads(layout.encode_broker(layout.BrokerRegistration("h", 1, timestamp_ms=5)))
    assert doc == {
        "version": 4,
        "host": "h",
        "port": 1,
        "endpoints": ["PLAINTEXT://h:1"],
        "listener_security_protocol_map": {"PLAINTEXT": "PLAINTEXT"},
        "rack": None,
        "jmx_port": -1,
        "timestamp": "5",
        "log_dirs": None,
    }
    # Kafka's own registrations (and the bare minimum) decode too
    assert layout.decode_broker(b'{"host": "k", "port": "9092"}').port == 9092


def test_a_broker_without_plaintext_registers_null_host_and_every_endpoint():
    reg = layout.BrokerRegistration(
        None,
        -1,
        endpoints=("SSL://h:9093", "INTERNAL://[::1]:9094"),
        security_protocols=(("SSL", "SSL"), ("INTERNAL", "SASL_SSL")),
    )
    doc = json.loads(layout.encode_broker(reg))
    assert (doc["host"], doc["port"]) == (None, -1)
    assert doc["endpoints"] == ["SSL://h:9093", "INTERNAL://[::1]:9094"]
    assert doc["listener_security_protocol_map"] == {"SSL": "SSL", "INTERNAL": "SASL_SSL"}
    back = layout.decode_broker(layout.encode_broker(reg))
    assert back == reg
    assert back.endpoint_map() == {"SSL": ("h", 9093), "INTERNAL": ("::1", 9094)}
    assert back.address_for("internal") == ("::1", 9094)
    assert back.address_for("PLAINTEXT") is None
    assert back.address_for() == ("h", 9093)  # no PLAINTEXT endpoint: the first one
    assert back.protocol_of("INTERNAL") == "SASL_SSL"


def test_a_registration_with_neither_host_nor_endpoints_is_malformed():
    with pytest.raises(MalformedNodeError, match="host or endpoints"):
        layout.decode_broker(b'{"host": null, "port": -1}')


def test_topic_placement_round_trips():
    placement = layout.TopicPlacement({1: [2], 0: [1], 10: [3]}, "0f" * 16)
    back = layout.decode_topic(layout.encode_topic(placement))
    assert back == placement
    doc = json.loads(layout.encode_topic(placement))
    assert doc["version"] == 1 and doc["partitions"] == {"0": [1], "1": [2], "10": [3]}
    assert (
        layout.decode_topic(layout.encode_topic(layout.TopicPlacement({0: [1]}))).topic_id is None
    )


def test_topic_config_round_trips():
    config = {"retention.ms": "86400000", "segment.bytes": "1024"}
    assert layout.decode_topic_config(layout.encode_topic_config(config)) == config
    assert layout.decode_topic_config(b'{"version": 1, "config": {"flush.ms": 5}}') == {
        "flush.ms": "5"
    }
    assert layout.decode_topic_config(b'{"version": 1}') == {}


def test_cluster_id_and_producer_id_block_round_trip():
    assert layout.decode_cluster_id(layout.encode_cluster_id("abcDEF123")) == "abcDEF123"
    block = layout.ProducerIdBlock(2, 1000, 1999)
    assert layout.decode_producer_id_block(layout.encode_producer_id_block(block)) == block


def test_consumer_registration_round_trips():
    reg = layout.ConsumerRegistration(("a", "b"), "static", 42)
    assert layout.decode_consumer(layout.encode_consumer(reg)) == reg
    assert json.loads(layout.encode_consumer(reg))["subscription"] == {"a": 1, "b": 1}


@pytest.mark.parametrize("offset", [0, 1, 2**63 - 1])
def test_offset_round_trips(offset):
    assert layout.encode_offset(offset) == str(offset).encode()
    assert layout.decode_offset(layout.encode_offset(offset)) == offset
    assert layout.decode_offset(b" 17\n") == 17


def test_owner_and_kind_round_trip():
    assert layout.decode_owner(layout.encode_owner("g_host-12-abc")) == "g_host-12-abc"
    for kind in layout.KINDS:
        assert layout.decode_kind(layout.encode_kind(kind)) == kind


def test_plan_and_schema_round_trip():
    plan = {
        "created_ms": 7,
        "partitions": {"t/0": {"end": 10, "ms": 7}, "a/b/1": {"end": 0, "ms": 1}},
    }
    raw = layout.encode_plan(plan)
    assert layout.decode_plan(raw) == plan
    assert raw == layout.encode_plan(dict(reversed(plan.items())))  # keys sorted: same bytes
    fields = {"status": "int64", "path": "string", "ok": "bool"}
    back = layout.decode_schema(layout.encode_schema(fields))
    assert back == fields and list(back) == list(fields)


MALFORMED = [
    (layout.decode_broker, b"not json"),
    (layout.decode_broker, b"\xff\xfe"),
    (layout.decode_broker, b"[1, 2]"),
    (layout.decode_broker, b'{"port": 9092}'),
    (layout.decode_broker, b'{"host": "h", "port": "x"}'),
    (layout.decode_broker, b'{"host": 5, "port": 1}'),
    (layout.decode_broker, b'{"host": "h", "port": 1, "log_dirs": "x"}'),
    (layout.decode_topic, b""),
    (layout.decode_topic, b'{"version": 1}'),
    (layout.decode_topic, b'{"partitions": {"0": ["one"]}}'),
    (layout.decode_topic, b'{"partitions": {"x": [1]}}'),
    (layout.decode_topic, b'{"partitions": [1]}'),
    (layout.decode_topic, b'{"partitions": {"0": [1]}, "topic_id": 5}'),
    (layout.decode_topic_config, b"{"),
    (layout.decode_topic_config, b"[1]"),
    (layout.decode_topic_config, b'{"config": [1]}'),
    (layout.decode_cluster_id, b'{"version": "1"}'),
    (layout.decode_cluster_id, b'{"id": 5}'),
    (layout.decode_producer_id_block, b'{"broker": 1, "block_start": 0}'),
    (layout.decode_producer_id_block, b'{"broker": 1, "block_start": "0", "block_end": 9}'),
    (layout.decode_consumer, b'"x"'),
    (layout.decode_consumer, b'{"subscription": ["t"]}'),
    (layout.decode_offset, b"ten"),
    (layout.decode_offset, b""),
    (layout.decode_offset, b"\xff"),
    (layout.decode_owner, b"\xff"),
    (layout.decode_kind, b"\xc3"),
    (layout.decode_plan, b"not json"),
    (layout.decode_plan, b"[1, 2]"),
    (layout.decode_plan, b"{}"),
    (layout.decode_plan, b'{"partitions": {"t/0": {"end": "x", "ms": 1}}}'),
    (layout.decode_plan, b'{"partitions": {"t0": {"end": 1, "ms": 1}}}'),
    (layout.decode_plan, b'{"partitions": {"t/0": {"end": 1}}}'),
    (layout.decode_schema, b'{"fields": 5}'),
    (layout.decode_schema, b'{"fields": [["a", 1]]}'),
    (layout.decode_schema, b"{}"),
]


@pytest.mark.parametrize(("decode", "data"), MALFORMED)
def test_malformed_node_data_raises_malformed_node_error(decode, data):
    with pytest.raises(MalformedNodeError) as err:
        decode(data, "/some/node")
    assert isinstance(err.value, ValueError)  # callers that catch ValueError keep working
    message = str(err.value)
    assert message.startswith("/some/node holds ") and "\n" not in message
    assert err.value.path == "/some/node" and err.value.data == data


def test_malformed_node_error_without_a_path_names_what_was_expected():
    with pytest.raises(MalformedNodeError, match=r"^b'x' is not an offset \(ValueError: "):
        layout.decode_offset(b"x")


def test_a_deleted_topics_tombstone_round_trips_and_a_bad_one_is_refused():
    deleted = layout.DeletedTopic("clicks", (1, 3))
    data = layout.encode_deleted_topic(deleted)
    assert json.loads(data) == {"version": 1, "topic": "clicks", "replicas": [1, 3]}
    assert layout.decode_deleted_topic(data) == deleted
    with pytest.raises(layout.MalformedNodeError):
        layout.decode_deleted_topic(b'{"version": 1, "topic": "clicks", "replicas": ["x"]}')
