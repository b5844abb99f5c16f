"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs against real brokers, through
confluent-kafka's AdminClient, kafka-python's KafkaAdminClient and our own client: values,
sources, synonyms, sensitive values, errors as Kafka gives them, ZooKeeper's nodes as Kafka
writes them, and a change applied live by every broker."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import KafkaError as CKError
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
)
from conftest import Cluster, create_topic, free_port, metadata, wait_for, zk_session
from kafka.admin import ConfigResource as KPResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from metrics_scrape import scrape
from test_thirdparty_flexible import versions_used

from broker.config_handlers import purge_config_changes
from broker.protocol import zookeeper as layout
from broker.protocol.config_apis import ResourceType
from broker.protocol.registry import ApiKey
from consumers.client import BrokerConnection
from headrace.configs import alter_configs, describe_configs

pytestmark = pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")


def _result(futures: dict):
    """The one result of an AdminClient call on one resource."""
    (future,) = futures.values()
    return future.result(timeout=30)


def _error(futures: dict) -> CKError:
    with pytest.raises(KafkaException) as caught:
        _result(futures)
    return caught.value.args[0]


def _incremental(name: str, *steps) -> ConfigResource:
    entries = [ConfigEntry(k, v, incremental_operation=op) for k, op, v in steps]
    return ConfigResource("topic", name, incremental_configs=entries)


def _node(zk, topic: str) -> dict:
    return json.loads(zk.get(layout.topic_config_path(topic))[0])


def _changes(zk) -> list[dict]:
    if not zk.exists(layout.CONFIG_CHANGES):  # made by the first change
        return []
    names = sorted(zk.get_children(layout.CONFIG_CHANGES))
    return [json.loads(zk.get(layout.config_change_path(n))[0]) for n in names]


@pytest.fixture(scope="module")
def admin(cluster3):
    return AdminClient({"bootstrap.servers": cluster3.bootstrap})


def test_sources_synonyms_and_hidden_values_as_kafka_reports_them(make_cluster):
    cluster = make_cluster(1, log_retention_hours=24, ssl_keystore_password="hunter2")
    create_topic(cluster.brokers[0].port, "described", 1, {"segment.bytes": "100000"})
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    topic = _result(admin.describe_configs([ConfigResource("topic", "described")]))
    segment, retention = topic["segment.bytes"], topic["retention.ms"]
    assert (segment.value, segment.source) == ("100000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert [(s.name, s.value, s.source) for s in segment.synonyms.values()] == [
        ("segment.bytes", "100000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value),
        ("log.segment.bytes", "1073741824", ConfigSource.DEFAULT_CONFIG.value),
    ]
    assert (retention.value, retention.source) == ("86400000", 4)  # STATIC_BROKER_CONFIG
    # confluent-kafka keys synonyms by name: log.retention.hours's default (168) follows its
    # static value (24) and takes its place there
    assert [(s.name, s.value) for s in retention.synonyms.values()] == [
        ("log.retention.hours", "168")
    ]
    assert not segment.is_read_only and not segment.is_sensitive
    assert topic["min.insync.replicas"].is_default

    broker = _result(admin.describe_configs([ConfigResource("broker", "1")]))
    assert broker["broker.id"].value == "1" and broker["broker.id"].is_read_only
    hours = broker["log.retention.hours"]
    assert (hours.value, hours.source) == ("24", ConfigSource.STATIC_BROKER_CONFIG.value)
    secret = broker["ssl.keystore.password"]  # unknown to headrace: its value is hidden
    assert secret.value is None and secret.is_sensitive
    assert "hunter2" not in repr({k: (v.value, v.synonyms) for k, v in broker.items()})


def test_alter_replaces_the_whole_set_and_incremental_changes_single_configs(cluster3, admin):
    port = cluster3.brokers[0].port
    create_topic(port, "altered", 1, {"retention.ms": "100000", "segment.bytes": "100000"})
    with zk_session(cluster3.zookeeper_connect) as zk:
        before = len(_changes(zk))
        replace = ConfigResource("topic", "altered", set_config={"max.message.bytes": "5000"})
        assert _result(admin.alter_configs([replace])) is None
        assert _node(zk, "altered") == {"version": 1, "config": {"max.message.bytes": "5000"}}
        steps = (
            ("retention.ms", AlterConfigOpType.SET, "200000"),
            ("max.message.bytes", AlterConfigOpType.DELETE, None),
        )
        assert _result(admin.incremental_alter_configs([_incremental("altered", *steps)])) is None
        assert _node(zk, "altered")["config"] == {"retention.ms": "200000"}
        # Kafka's change notices, one per change
        assert _changes(zk)[before:] == [{"version": 2, "entity_path": "topics/altered"}] * 2

        # validate_only checks and changes nothing
        dry = ConfigResource("topic", "altered", set_config={"segment.bytes": "300000"})
        assert _result(admin.alter_configs([dry], validate_only=True)) is None
        assert _node(zk, "altered")["config"] == {"retention.ms": "200000"}
        assert len(_changes(zk)) == before + 2
    described = _result(admin.describe_configs([ConfigResource("topic", "altered")]))
    assert described["retention.ms"].value == "200000"
    assert described["max.message.bytes"].is_default


def test_alter_on_a_broker_replaces_its_whole_dynamic_set(cluster3, admin):
    """AlterConfigs (not incremental) on a BROKER resource is its new dynamic set, as in
    Kafka: the properties it leaves out go back to the broker's file and defaults."""
    broker = ConfigResource("broker", "3")
    with zk_session(cluster3.zookeeper_connect) as zk:
        path = layout.broker_config_path("3")
        try:
            steps = [
                ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
                for name, value in (("log.retention.ms", "7200000"), ("log.flush.interval.ms", "5"))
            ]
            resource = ConfigResource("broker", "3", incremental_configs=steps)
            assert _result(admin.incremental_alter_configs([resource])) is None
            assert json.loads(zk.get(path)[0])["config"] == {
                "log.retention.ms": "7200000",
                "log.flush.interval.ms": "5",
            }
            replace = ConfigResource("broker", "3", set_config={"message.max.bytes": "200000"})
            assert _result(admin.alter_configs([replace])) is None
            assert json.loads(zk.get(path)[0]) == {
                "version": 1,
                "config": {"message.max.bytes": "200000"},
            }
            described = wait_for(
                lambda: (
                    (d := _result(admin.describe_configs([broker])))["message.max.bytes"].value
                    == "200000"
                    and d
                ),
                20,
            )
            assert described["log.retention.ms"].source != ConfigSource.DYNAMIC_BROKER_CONFIG
            assert described["log.flush.interval.ms"].source != ConfigSource.DYNAMIC_BROKER_CONFIG
            empty = ConfigResource("broker", "3", set_config={})
            assert _result(admin.alter_configs([empty])) is None
            assert json.loads(zk.get(path)[0])["config"] == {}
        finally:
            if zk.exists(path):
                zk.set(path, layout.encode_topic_config({}))


def test_errors_are_kafkas(cluster3, admin):
    create_topic(cluster3.brokers[0].port, "refusing", 1)
    missing = ConfigResource("topic", "no-such-topic")
    assert _error(admin.describe_configs([missing])).code() == CKError.UNKNOWN_TOPIC_OR_PART
    gone = ConfigResource("topic", "no-such-topic", set_config={"retention.ms": "1"})
    assert _error(admin.alter_configs([gone])).code() == CKError.UNKNOWN_TOPIC_OR_PART
    incremental = _incremental("no-such-topic", ("retention.ms", AlterConfigOpType.SET, "1"))
    assert (
        _error(admin.incremental_alter_configs([incremental])).code()
        == CKError.UNKNOWN_TOPIC_OR_PART
    )

    cases = [
        (("retention.ms", AlterConfigOpType.SET, "soon"), "retention.ms: 'soon' is not"),
        (("no.such.config", AlterConfigOpType.SET, "1"), "no.such.config is not a topic"),
        (("retention.ms", AlterConfigOpType.APPEND, "1"), "append is not allowed"),
        (("retention.ms", AlterConfigOpType.SUBTRACT, "1"), "subtract is not allowed"),
    ]
    for step, message in cases:
        error = _error(admin.incremental_alter_configs([_incremental("refusing", step)]))
        assert error.code() == CKError.INVALID_CONFIG and message in error.str(), step
    bad = ConfigResource("topic", "refusing", set_config={"max.message.bytes": "-5"})
    error = _error(admin.alter_configs([bad], validate_only=True))
    assert error.code() == CKError.INVALID_CONFIG and "max.message.bytes: -5" in error.str()

    static = ConfigResource("broker", "2", set_config={"log.retention.hours": "1"})
    error = _error(admin.alter_configs([static]))
    assert error.code() == CKError.INVALID_REQUEST
    assert "Cannot update these configs dynamically: Set(log.retention.hours)" in error.str()
    assert _result(admin.describe_configs([ConfigResource("topic", "refusing")]))


def test_every_broker_describes_itself_and_refuses_another_id(cluster3, admin):
    for broker in cluster3.brokers:
        resource = ConfigResource("broker", str(broker.broker_id))
        described = _result(admin.describe_configs([resource]))
        assert described["broker.id"].value == str(broker.broker_id)
        assert described["listeners"].value == f"PLAINTEXT://127.0.0.1:{broker.port}"
    asked = {
        "resources": [
            {
                "resource_type": ResourceType.BROKER,
                "resource_name": "2",
                "configuration_keys": None,
            },
            {"resource_type": ResourceType.BROKER, "resource_name": "", "configuration_keys": None},
            {"resource_type": 32, "resource_name": "g", "configuration_keys": None},
            {
                "resource_type": ResourceType.BROKER,
                "resource_name": "x",
                "configuration_keys": None,
            },
            {
                "resource_type": ResourceType.TOPIC,
                "resource_name": "a/b",
                "configuration_keys": None,
            },
        ],
        "include_synonyms": False,
        "include_documentation": False,
    }
    with BrokerConnection("127.0.0.1", cluster3.broker(1).port) as conn:
        results = conn.request(ApiKey.DESCRIBE_CONFIGS, asked)["results"]
    assert [(r["error_code"], r["error_message"]) for r in results] == [
        (42, "Unexpected broker id, expected 1 or empty string, but received 2"),
        (0, None),  # the cluster-wide dynamic defaults
        (42, "Unsupported resource type: 32"),
        (42, "Broker id must be an integer, but it is: x"),
        (17, "topic name 'a/b' is invalid: use 1-249 of the characters a-z A-Z 0-9 . _ -"),
    ]


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_each_version_carries_its_fields(cluster3, version):
    name = f"versions-{version}"
    create_topic(cluster3.brokers[0].port, name, 1, {"retention.ms": "60000"})
    body = {
        "resources": [
            {
                "resource_type": ResourceType.TOPIC,
                "resource_name": name,
                "configuration_keys": ["retention.ms", "segment.bytes"],
            }
        ],
        "include_synonyms": True,
        "include_documentation": True,
    }
    with BrokerConnection("127.0.0.1", cluster3.broker(1).port) as conn:
        answer = conn.request(ApiKey.DESCRIBE_CONFIGS, body, version=version)
    configs = {c["name"]: c for c in answer["results"][0]["configs"]}
    assert sorted(configs) == ["retention.ms", "segment.bytes"]
    retention, segment = configs["retention.ms"], configs["segment.bytes"]
    assert retention["value"] == "60000"
    if version == 0:
        assert (retention["is_default"], segment["is_default"]) == (False, True)
    else:
        assert (retention["config_source"], segment["config_source"]) == (1, 5)
        assert [s["name"] for s in retention["synonyms"]] == ["retention.ms", "log.retention.hours"]
    if version >= 3:
        assert retention["config_type"] == 5 and "deleted" in retention["documentation"]
    else:
        assert retention["documentation"] is None


def test_kafka_python_describes_and_alters(cluster3):
    create_topic(cluster3.brokers[0].port, "kp-configs", 1, {"retention.ms": "70000"})
    admin = KafkaAdminClient(bootstrap_servers=cluster3.bootstrap)
    try:
        topic = KPResource(ConfigResourceType.TOPIC, "kp-configs")
        described = admin.describe_configs([topic], include_synonyms=True, config_filter="all")
        entry = described["topic"]["kp-configs"]["retention.ms"]
        assert (entry["value"], entry["config_source"]) == ("70000", "DYNAMIC_TOPIC_CONFIG")
        assert entry["synonyms"][0]["source"] == "DYNAMIC_TOPIC_CONFIG"
        assert described["topic"]["kp-configs"]["segment.bytes"]["config_source"] == (
            "DEFAULT_CONFIG"
        )
        for broker in cluster3.brokers:
            who = KPResource(ConfigResourceType.BROKER, str(broker.broker_id))
            shown = admin.describe_configs([who], config_filter="all")["broker"]
            assert shown[str(broker.broker_id)]["broker.id"]["value"] == str(broker.broker_id)

        for incremental in (False, True):
            change = KPResource(
                ConfigResourceType.TOPIC, "kp-configs", configs={"segment.bytes": "200000"}
            )
            assert admin.alter_configs([change], incremental=incremental) == {
                "topic": {"kp-configs": "OK"}
            }
        now = admin.describe_configs([topic])["topic"]["kp-configs"]  # the modified ones
        assert {k: v["value"] for k, v in now.items()} == {
            "retention.ms": "70000",  # kept: kafka-python sends the others again
            "segment.bytes": "200000",
        }
        wrong = KPResource(ConfigResourceType.TOPIC, "kp-configs", configs={"retention.ms": "x"})
        answer = admin.alter_configs([wrong], raise_on_unknown=False, incremental=False)
        assert answer["topic"]["kp-configs"].startswith(
            "[Error 40] InvalidConfigurationError: retention.ms"
        )
        missing = KPResource(ConfigResourceType.TOPIC, "nope", configs={"retention.ms": "1"})
        answer = admin.alter_configs([missing], raise_on_unknown=False, incremental=True)
        assert "UnknownTopicOrPartitionError" in answer["topic"]["nope"]

        logger = KPResource(ConfigResourceType.BROKER_LOGGER, "2")
        levels = admin.describe_configs([logger], config_filter="all")["broker_logger"]["2"]
        assert levels["root"]["value"] in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
        quiet = KPResource(
            ConfigResourceType.BROKER_LOGGER, "2", configs={"broker.handlers": "ERROR"}
        )
        assert admin.alter_configs([quiet], raise_on_unknown=False, incremental=True) == {
            "broker_logger": {"2": "OK"}
        }
        levels = admin.describe_configs([logger], config_filter="all")["broker_logger"]["2"]
        assert levels["broker.handlers"]["value"] == "ERROR"
    finally:
        admin.close()


def test_a_change_is_applied_live_by_every_broker(cluster3, admin):
    """max.message.bytes lowered through IncrementalAlterConfigs refuses a larger batch on
    the leader of every partition (each on another broker) without a restart, and raising it
    again takes it."""
    create_topic(cluster3.brokers[0].port, "live", 3, replication_factor=1)
    producer = Producer(
        {"bootstrap.servers": cluster3.bootstrap, "linger.ms": 0, "retries": 0, "acks": 1}
    )

    def outcomes() -> list:
        seen = []
        for partition in range(3):
            producer.produce(
                "live",
                b"x" * 3000,
                partition=partition,
                on_delivery=lambda err, msg: seen.append(err and err.code()),
            )
        producer.flush(30)
        return seen

    assert outcomes() == [None] * 3
    lower = _incremental("live", ("max.message.bytes", AlterConfigOpType.SET, "1000"))
    _result(admin.incremental_alter_configs([lower]))
    wait_for(lambda: outcomes() == [CKError.MSG_SIZE_TOO_LARGE] * 3, 20)
    again = _incremental("live", ("max.message.bytes", AlterConfigOpType.DELETE, None))
    _result(admin.incremental_alter_configs([again]))
    wait_for(lambda: outcomes() == [None] * 3, 20)


def test_change_notices_older_than_kafkas_15_minutes_are_purged(zk_chroot):
    with zk_session(zk_chroot) as zk:
        zk.ensure_path(layout.CONFIG_CHANGES)
        for topic in ("a", "b"):
            zk.create(
                layout.CONFIG_CHANGE_PREFIX, layout.encode_config_change(topic), sequence=True
            )
        created_ms = zk.exists(
            layout.config_change_path(zk.get_children(layout.CONFIG_CHANGES)[0])
        ).ctime
        assert purge_config_changes(zk, now_ms=created_ms + 14 * 60_000) == 0
        assert len(zk.get_children(layout.CONFIG_CHANGES)) == 2
        assert purge_config_changes(zk, now_ms=created_ms + 16 * 60_000) == 2
        assert zk.get_children(layout.CONFIG_CHANGES) == []


def test_concurrent_incremental_changes_are_all_kept(cluster3):
    """Eight clients set eight different configs of one topic at once, through all three
    brokers: each read-modify-write is conditional on the node's version, so none is lost."""
    from concurrent.futures import ThreadPoolExecutor

    create_topic(cluster3.brokers[0].port, "raced", 1)
    wanted = {
        "retention.ms": "100001",
        "retention.bytes": "100002",
        "segment.ms": "100003",
        "segment.bytes": "100004",
        "flush.messages": "100005",
        "flush.ms": "100006",
        "index.interval.bytes": "100007",
        "file.delete.delay.ms": "100008",
    }

    def set_one(item):
        (name, value), broker = item
        body = {
            "resources": [
                {
                    "resource_type": ResourceType.TOPIC,
                    "resource_name": "raced",
                    "configs": [{"name": name, "config_operation": 0, "value": value}],
                }
            ],
            "validate_only": False,
        }
        with BrokerConnection("127.0.0.1", broker.port) as conn:
            return conn.request(ApiKey.INCREMENTAL_ALTER_CONFIGS, body)["responses"][0]

    brokers = [cluster3.brokers[i % 3] for i in range(len(wanted))]
    with ThreadPoolExecutor(len(wanted)) as pool:
        answers = list(pool.map(set_one, zip(wanted.items(), brokers)))
    assert [a["error_code"] for a in answers] == [0] * len(wanted)
    with zk_session(cluster3.zookeeper_connect) as zk:
        assert _node(zk, "raced")["config"] == wanted


def test_a_config_node_written_badly_by_hand_is_replaced_by_the_next_change(cluster3, admin):
    create_topic(cluster3.brokers[0].port, "mangled", 1, {"retention.ms": "1000"})
    with zk_session(cluster3.zookeeper_connect) as zk:
        zk.set(layout.topic_config_path("mangled"), b"{not json")
        described = _result(admin.describe_configs([ConfigResource("topic", "mangled")]))
        assert described["segment.bytes"].is_default  # still answered
        step = ("segment.bytes", AlterConfigOpType.SET, "200000")
        assert _result(admin.incremental_alter_configs([_incremental("mangled", step)])) is None
        assert _node(zk, "mangled") == {"version": 1, "config": {"segment.bytes": "200000"}}


def test_dynamic_broker_configs_apply_live_per_broker_and_cluster_wide(cluster3, admin):
    """message.max.bytes set for every broker (``<default>``) refuses large batches on the
    leaders of all partitions; set again for broker 2 alone, broker 2 takes them while the
    others still refuse; described with Kafka's sources; both removed, all take them."""
    create_topic(cluster3.brokers[0].port, "dynamic", 3, replication_factor=1)
    leaders = {
        p["partition_index"]: p["leader_id"]
        for p in metadata(cluster3.brokers[0].port, ["dynamic"])["topics"][0]["partitions"]
    }
    assert sorted(leaders.values()) == [1, 2, 3]
    producer = Producer({"bootstrap.servers": cluster3.bootstrap, "linger.ms": 0, "retries": 0})

    def refused() -> dict:
        seen = {}
        for partition in range(3):
            producer.produce(
                "dynamic",
                b"x" * 3000,
                partition=partition,
                on_delivery=lambda err, msg: seen.update({msg.partition(): err is not None}),
            )
        producer.flush(30)
        return {leaders[p]: refused for p, refused in seen.items()}

    bootstrap = cluster3.bootstrap
    try:
        alter_configs(bootstrap, ResourceType.BROKER, "", {"message.max.bytes": "1000"})
        wait_for(lambda: refused() == {1: True, 2: True, 3: True}, 20)
        own = ConfigResource(
            "broker",
            "2",
            incremental_configs=[
                ConfigEntry(
                    "message.max.bytes", "100000", incremental_operation=AlterConfigOpType.SET
                )
            ],
        )
        assert _result(admin.incremental_alter_configs([own])) is None
        wait_for(lambda: refused() == {1: True, 2: False, 3: True}, 20)

        two = describe_configs(bootstrap, ResourceType.BROKER, "2")
        entry = next(e for e in two if e["name"] == "message.max.bytes")
        assert (entry["value"], entry["read_only"]) == ("100000", False)
        assert [(s["source"], s["value"]) for s in entry["synonyms"]] == [
            (2, "100000"),  # DYNAMIC_BROKER_CONFIG
            (3, "1000"),  # DYNAMIC_DEFAULT_BROKER_CONFIG
            (5, "1048588"),  # DEFAULT_CONFIG
        ]
        one = _result(admin.describe_configs([ConfigResource("broker", "1")]))
        assert one["message.max.bytes"].value == "1000"
        assert one["message.max.bytes"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
        assert one["log.dirs"].is_read_only and not one["message.max.bytes"].is_read_only
        topic = _result(admin.describe_configs([ConfigResource("topic", "dynamic")]))
        assert topic["max.message.bytes"].source == 3  # the broker's default, dynamic
        defaults = describe_configs(bootstrap, ResourceType.BROKER, "")
        assert [(e["name"], e["value"]) for e in defaults] == [("message.max.bytes", "1000")]
        with zk_session(cluster3.zookeeper_connect) as zk:
            node = json.loads(zk.get(layout.broker_config_path("<default>"))[0])
            assert node == {"version": 1, "config": {"message.max.bytes": "1000"}}
            assert {"version": 2, "entity_path": "brokers/2"} in _changes(zk)

        bad = ConfigResource("broker", "1", set_config={"message.max.bytes": "big"})
        error = _error(admin.alter_configs([bad]))
        assert error.code() == CKError.INVALID_REQUEST and "message.max.bytes: 'big'" in error.str()
    finally:
        alter_configs(bootstrap, ResourceType.BROKER, "2", delete=["message.max.bytes"])
        alter_configs(bootstrap, ResourceType.BROKER, "", delete=["message.max.bytes"])
    wait_for(lambda: refused() == {1: False, 2: False, 3: False}, 20)


def test_clients_use_the_flexible_versions(zookeeper, tmp_path):
    """librdkafka and kafka-python ask the flexible versions of the config APIs (the broker's
    count of requests by API and version) and get the same answers as before."""
    cluster = Cluster(tmp_path, f"{zookeeper.connect}/flexcfg-{time.monotonic_ns()}", 1)
    broker = cluster.brokers[0]
    broker.metrics_port = free_port()
    cluster.start()
    try:
        create_topic(broker.port, "flexcfg", 1, {"retention.ms": "90000"})
        before = scrape(broker.metrics_url)
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        step = ("segment.bytes", AlterConfigOpType.SET, "300000")
        assert _result(admin.incremental_alter_configs([_incremental("flexcfg", step)])) is None
        described = _result(admin.describe_configs([ConfigResource("topic", "flexcfg")]))
        assert described["segment.bytes"].value == "300000"
        kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        try:
            topic = KPResource(ConfigResourceType.TOPIC, "flexcfg")
            shown = kp.describe_configs([topic], include_synonyms=True)["topic"]["flexcfg"]
            assert {k: v["value"] for k, v in shown.items()} == {
                "retention.ms": "90000",
                "segment.bytes": "300000",
            }
            change = KPResource(ConfigResourceType.TOPIC, "flexcfg", configs={"flush.ms": "5"})
            for incremental in (False, True):
                assert kp.alter_configs([change], incremental=incremental) == {
                    "topic": {"flexcfg": "OK"}
                }
        finally:
            kp.close()
        used = versions_used(before, scrape(broker.metrics_url))
        assert used["IncrementalAlterConfigs"] == {1}
        assert 4 in used["DescribeConfigs"] and used["AlterConfigs"] == {2}
    finally:
        cluster.stop()
