"""The config admin APIs without sockets: their schemas (round trips of every version served,
byte-for-byte agreement with kafka-python's classes, golden bytes) and the pure logic of
``broker/config_entries.py`` and ``broker/loggers.py`` (sources, synonyms, sensitive values,
incremental operations, log levels)."""

from __future__ import annotations

import logging

import pytest
from kafka.protocol.admin import configs as kp
from kafka.protocol.old import admin as old_admin
from schema_samples import assert_agrees_with_json_class, project, sample
from test_wire_group_apis import _old_values

from broker import config_entries
from broker.config import BrokerConfig
from broker.config_entries import (
    DYNAMIC_BROKER_CONFIGS,
    apply_incremental,
    broker_entries,
    check_broker_change,
    check_topic_overrides,
    check_unique,
    default_broker_entries,
    select,
    topic_entries,
)
from broker.log.config import _TOPIC_PROPERTIES, integer
from broker.loggers import LEVELS, alter_loggers, level_name, logger_entries
from broker.protocol import errors
from broker.protocol.config_apis import AlterConfigOp, ConfigSource, ConfigType
from broker.protocol.registry import API_BY_KEY, ApiKey, api_versions_body

KEYS = (ApiKey.DESCRIBE_CONFIGS, ApiKey.ALTER_CONFIGS, ApiKey.INCREMENTAL_ALTER_CONFIGS)
APIS = [API_BY_KEY[k] for k in KEYS]
VERSIONS = [(a, v) for a in APIS for v in range(a.min_version, a.max_version + 1)]
IDS = [f"{a.name}-v{v}" for a, v in VERSIONS]
SET, DELETE, APPEND, SUBTRACT = (int(op) for op in AlterConfigOp)

# --- the table -------------------------------------------------------------------------------


def test_the_served_versions_reach_kafkas_newest_flexible_ones():
    advertised = {
        k["api_key"]: (k["min_version"], k["max_version"]) for k in api_versions_body()["api_keys"]
    }
    assert {k: advertised[k] for k in (32, 33, 44)} == {32: (0, 4), 33: (0, 2), 44: (0, 1)}
    # Kafka's first flexible versions: DescribeConfigs 4, AlterConfigs 2, Incremental 1.
    assert [API_BY_KEY[k].flexible_from for k in KEYS] == [4, 2, 1]


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize("api, version", VERSIONS, ids=IDS)
def test_every_version_round_trips(api, version, nulls):
    for schema in (api.request, api.response):
        body = sample(schema, version, nulls)
        encoded = schema.encode(body, version)
        assert project(schema.decode(encoded, version), body) == body


_KP = {32: "DescribeConfigs", 33: "AlterConfigs", 44: "IncrementalAlterConfigs"}
NEW_CASES = [
    (a, v, s) for a, v in VERSIONS for s in ("Request", "Response") if v >= 1 or a.key != 32
]


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize(
    "api, version, side", NEW_CASES, ids=[f"{a.name}{s}-v{v}" for a, v, s in NEW_CASES]
)
def test_bytes_equal_kafka_python_json_generated_classes(api, version, side, nulls):
    schema = api.request if side == "Request" else api.response
    body = sample(schema, version, nulls)
    cls = getattr(kp, _KP[api.key] + side)
    assert cls.flexible_version_q(version) == api.is_flexible(version)
    assert_agrees_with_json_class(cls, schema, version, body)


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize("side", ["Request", "Response"])
def test_describe_configs_v0_equals_kafka_python_hand_written_class(side, nulls):
    # Kafka 4 dropped v0 (its JSON starts at v1); kafka-python's old classes still have it.
    api = API_BY_KEY[ApiKey.DESCRIBE_CONFIGS]
    schema = api.request if side == "Request" else api.response
    body = sample(schema, 0, nulls)
    cls = getattr(old_admin, f"DescribeConfigs{side}")[0]
    theirs = cls(*_old_values(cls.SCHEMA, schema, body)).encode()
    assert schema.encode(body, 0) == bytes(theirs)


def test_golden_describe_configs_v1_request():
    body = {
        "resources": [{"resource_type": 2, "resource_name": "t", "configuration_keys": None}],
        "include_synonyms": True,
    }
    assert API_BY_KEY[ApiKey.DESCRIBE_CONFIGS].request.encode(body, 1) == bytes.fromhex(
        "00000001"  # one resource
        "02"  # resource_type TOPIC
        "0001"
        "74"  # resource_name "t"
        "ffffffff"  # configuration_keys null: every config
        "01"  # include_synonyms (v1+)
    )


def test_golden_incremental_alter_configs_v0_request():
    body = {
        "resources": [
            {
                "resource_type": 2,
                "resource_name": "t",
                "configs": [{"name": "a", "config_operation": DELETE, "value": None}],
            }
        ],
        "validate_only": False,
    }
    assert API_BY_KEY[ApiKey.INCREMENTAL_ALTER_CONFIGS].request.encode(body, 0) == bytes.fromhex(
        "00000001"
        "02"
        "0001"
        "74"  # one resource: TOPIC "t"
        "00000001"
        "0001"
        "61"  # one config, "a"
        "01"  # config_operation DELETE
        "ffff"  # value null
        "00"  # validate_only false
    )


# --- describe ----------------------------------------------------------------------------------


def _by_name(entries):
    return {e["name"]: e for e in entries}


def test_a_topic_config_comes_from_its_override_then_the_file_then_the_default():
    broker = BrokerConfig({"log.retention.hours": "24", "log.segment.bytes": "2000000"})
    entries = _by_name(topic_entries(broker, {"retention.ms": "1000"}, True, True))
    retention = entries["retention.ms"]
    assert (retention["value"], retention["config_source"]) == ("1000", 1)
    assert [(s["source"], s["name"], s["value"]) for s in retention["synonyms"]] == [
        (ConfigSource.DYNAMIC_TOPIC_CONFIG, "retention.ms", "1000"),
        (ConfigSource.STATIC_BROKER_CONFIG, "log.retention.hours", "24"),
        (ConfigSource.DEFAULT_CONFIG, "log.retention.hours", "168"),
    ]
    segment = entries["segment.bytes"]
    assert (segment["value"], segment["config_source"]) == ("2000000", 4)
    assert segment["config_type"] == ConfigType.INT and segment["documentation"]
    flush = entries["unclean.leader.election.enable"]
    assert (flush["value"], flush["config_source"], flush["is_default"]) == ("false", 5, True)
    assert not any(e["read_only"] or e["is_sensitive"] for e in entries.values())
    bare = _by_name(topic_entries(broker, {}, False, False))["retention.ms"]
    assert bare["synonyms"] == [] and bare["documentation"] is None
    assert (bare["value"], bare["config_source"]) == ("86400000", 4)  # 24 hours, from the file


def test_a_new_topic_property_row_is_described_without_other_changes(monkeypatch):
    row = ("cleaner_ratio", "min.cleanable.dirty.ratio", "log.cleaner.min.cleanable.ratio")
    monkeypatch.setattr(
        config_entries, "_TOPIC_PROPERTIES", (*_TOPIC_PROPERTIES, (*row, integer(0)))
    )
    monkeypatch.setitem(
        config_entries.BY_NAME,
        row[2],
        config_entries.Property(row[2], integer(0), 5, "the broker's ratio"),
    )
    broker = BrokerConfig({})
    broker._values[row[2]] = 5
    entry = _by_name(topic_entries(broker, {row[1]: "7"}, True, True))[row[1]]
    assert (entry["value"], entry["config_source"]) == ("7", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert entry["config_type"] == ConfigType.DOUBLE  # Kafka's type, from our own table


def test_static_broker_properties_are_read_only_and_unknown_ones_hidden():
    broker = BrokerConfig({"broker.id": "3", "ssl.keystore.password": "hunter2"})
    entries = _by_name(broker_entries(broker, True, True))
    writable = {n for n, e in entries.items() if not e["read_only"]}
    assert writable == DYNAMIC_BROKER_CONFIGS
    assert {"message.max.bytes", "log.retention.ms", "log.segment.bytes"} <= writable
    assert not {"log.dirs", "broker.id", "log.retention.hours"} & writable
    assert (entries["broker.id"]["value"], entries["broker.id"]["config_source"]) == ("3", 4)
    assert entries["broker.id"]["config_type"] == ConfigType.INT
    assert entries["log.retention.bytes"]["config_type"] == ConfigType.LONG
    assert entries["auto.create.topics.enable"]["config_type"] == ConfigType.BOOLEAN
    secret = entries["ssl.keystore.password"]
    assert (secret["value"], secret["is_sensitive"]) == (None, True)
    assert secret["synonyms"] == [{"name": "ssl.keystore.password", "value": None, "source": 4}]
    assert "hunter2" not in repr(entries)
    assert [e["name"] for e in select(list(entries.values()), ["broker.id", "nope"])] == [
        "broker.id"
    ]
    assert len(select(list(entries.values()), [])) == len(entries)  # empty: all, as Kafka


def test_dynamic_broker_configs_rank_over_the_file_per_broker_first():
    broker = BrokerConfig({"broker.id": "2", "message.max.bytes": "5000"})
    dynamic = {"<default>": {"message.max.bytes": "3000"}, "2": {"message.max.bytes": "4000"}}
    entry = _by_name(broker_entries(broker, True, False, dynamic))["message.max.bytes"]
    assert (entry["value"], entry["config_source"], entry["read_only"]) == ("4000", 2, False)
    assert [(s["source"], s["value"]) for s in entry["synonyms"]] == [
        (ConfigSource.DYNAMIC_BROKER_CONFIG, "4000"),
        (ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, "3000"),
        (ConfigSource.STATIC_BROKER_CONFIG, "5000"),
        (ConfigSource.DEFAULT_CONFIG, "1048588"),
    ]
    other = BrokerConfig({"broker.id": "1"})  # broker 2's own configs are not broker 1's
    topic = _by_name(topic_entries(other, {}, True, False, dynamic))["max.message.bytes"]
    assert (topic["value"], topic["config_source"]) == ("3000", 3)
    assert [e["name"] for e in default_broker_entries(other, dynamic, True, False)] == [
        "message.max.bytes"
    ]
    assert default_broker_entries(other, {}, True, False) == []
    by_hand = {"<default>": {"message.max.bytes": "big"}}  # not applied by the broker
    shown = _by_name(topic_entries(other, {}, False, False, by_hand))["max.message.bytes"]
    assert shown["value"] == "1048588"


def test_a_broker_change_is_refused_as_kafka_refuses_it():
    broker = BrokerConfig({"broker.id": "1"})
    check_broker_change(broker, "1", {"log.retention.ms": "1000", "message.max.bytes": "10"})
    with pytest.raises(errors.InvalidRequestError) as static:
        check_broker_change(broker, "<default>", {"log.dirs": "/x", "broker.id": "2"})
    assert str(static.value.args[0]) == (
        "Invalid config value for resource ConfigResource(type=BROKER, name=''): "
        "Cannot update these configs dynamically: Set(broker.id, log.dirs)"
    )
    with pytest.raises(errors.InvalidRequestError, match=r"name='1'\): message\.max\.bytes"):
        check_broker_change(broker, "1", {"message.max.bytes": "big"})
    with pytest.raises(errors.InvalidRequestError, match=r"name='2'\): message\.max\.bytes"):
        check_broker_change(broker, "2", {"message.max.bytes": "big"})  # another broker's


# --- changes ----------------------------------------------------------------------------------


def test_incremental_operations_follow_kafkas_rules():
    lists = frozenset({"cleanup.policy"})
    defaults = {"cleanup.policy": "delete"}
    current = {"retention.ms": "1000", "segment.bytes": "100000"}
    steps = [("retention.ms", SET, "2000"), ("segment.bytes", DELETE, None), ("x", DELETE, None)]
    assert apply_incremental(current, steps, defaults, lists) == {"retention.ms": "2000"}
    assert current == {"retention.ms": "1000", "segment.bytes": "100000"}  # not changed
    appended = apply_incremental({}, [("cleanup.policy", APPEND, "compact")], defaults, lists)
    assert appended == {"cleanup.policy": "delete,compact"}  # appended to the default
    again = apply_incremental(appended, [("cleanup.policy", APPEND, "delete")], defaults, lists)
    assert again == appended
    taken = apply_incremental(again, [("cleanup.policy", SUBTRACT, "delete")], defaults, lists)
    assert taken == {"cleanup.policy": "compact"}
    with pytest.raises(errors.InvalidConfigError, match=r"append is not allowed.*retention\.ms"):
        apply_incremental({}, [("retention.ms", APPEND, "1")], defaults, lists)
    with pytest.raises(errors.InvalidConfigError, match="subtract is not allowed"):
        apply_incremental({}, [("retention.ms", SUBTRACT, "1")], defaults, lists)
    with pytest.raises(errors.InvalidRequestError, match="operation 9"):
        apply_incremental({}, [("retention.ms", 9, "1")], defaults, lists)


def test_changes_are_checked_as_create_topics_checks_them():
    check_topic_overrides({"retention.ms": "1000", "message.timestamp.type": "LogAppendTime"})
    with pytest.raises(errors.InvalidConfigError, match=r"retention\.ms: 'abc'"):
        check_topic_overrides({"retention.ms": "abc"})
    with pytest.raises(errors.InvalidConfigError, match=r"no\.such\.config"):
        check_topic_overrides({"no.such.config": "1"})
    with pytest.raises(errors.InvalidRequestError, match="duplicate config keys: a"):
        check_unique(["a", "b", "a"])


def test_loggers_are_described_and_set_in_log4j_names():
    logger = logging.getLogger("headrace.test.loggers")
    logger.setLevel(logging.WARNING)
    try:
        entries = _by_name(logger_entries())
        assert next(iter(entries)) == "root"
        assert entries["headrace.test.loggers"]["value"] == "WARN"
        alter_loggers([("headrace.test.loggers", SET, "trace")], validate_only=True)
        assert logger.level == logging.WARNING
        alter_loggers([("headrace.test.loggers", SET, "trace")], validate_only=False)
        assert logger.level == LEVELS["TRACE"] and level_name(logger.level) == "TRACE"
        alter_loggers([("headrace.test.loggers", DELETE, None)], validate_only=False)
        assert logger.level == logging.NOTSET
        with pytest.raises(errors.InvalidConfigError, match="does not exist"):
            alter_loggers([("no.such.logger", SET, "INFO")], False)
        with pytest.raises(errors.InvalidConfigError, match="not a supported log level"):
            alter_loggers([("headrace.test.loggers", SET, "LOUD")], False)
        with pytest.raises(errors.InvalidRequestError, match="root logger"):
            alter_loggers([("root", DELETE, None)], False)
        with pytest.raises(errors.InvalidRequestError, match="APPEND operation"):
            alter_loggers([("root", APPEND, "INFO")], False)
    finally:
        logger.setLevel(logging.NOTSET)
    assert level_name(logging.CRITICAL) == "FATAL" and level_name(0) == "TRACE"
