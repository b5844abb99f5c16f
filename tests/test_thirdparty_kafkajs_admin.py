"""kafkajs's admin calls: describe and alter configs, create partitions, delete records, delete
groups, against three real brokers, each checked against what the brokers and ZooKeeper hold,
with the errors Kafka gives."""

from __future__ import annotations

import json

import pytest
from conftest import create_topic, metadata, wait_for, zk_session
from kafkajs_client import (
    GroupMember,
    KafkaJSError,
    admin,
    base_offsets,
    groups_describe,
    groups_list,
    produce,
    read_back,
)

pytestmark = pytest.mark.integration  # node processes against brokers

TOPIC, BROKER = 2, 4  # kafkajs's ConfigResourceTypes
DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 1, 4, 5  # Kafka's config sources


def describe_topic_configs(bootstrap: str, topic: str, names=None) -> dict[str, dict]:
    """name -> kafkajs's config entry, for ``topic``'s configs (``names`` only, if given)."""
    resource = {"type": TOPIC, "name": topic}
    if names is not None:
        resource["configNames"] = names
    described = admin(bootstrap, "describeConfigs", {"resources": [resource]})
    (result,) = described["resources"]
    assert result["errorCode"] == 0 and result["resourceName"] == topic, result
    return {entry["configName"]: entry for entry in result["configEntries"]}


def topic_overrides(cluster, topic: str) -> dict:
    """The topic's overrides as ZooKeeper holds them (``/config/topics/<topic>``)."""
    with zk_session(cluster.zookeeper_connect) as zk:
        return json.loads(zk.get(f"/config/topics/{topic}")[0])["config"]


def alter_topic_configs(bootstrap: str, topic: str, configs: dict[str, str]):
    entries = [{"name": name, "value": value} for name, value in configs.items()]
    resource = {"type": TOPIC, "name": topic, "configEntries": entries}
    return admin(bootstrap, "alterConfigs", {"validateOnly": False, "resources": [resource]})


def test_kafkajs_describes_topic_and_broker_configs_with_their_source(cluster3):
    bootstrap = cluster3.bootstrap
    spec = {
        "topic": "kjs-configs",
        "numPartitions": 1,
        "replicationFactor": 3,
        "configEntries": [{"name": "retention.ms", "value": "3600000"}],
    }
    assert admin(bootstrap, "createTopics", {"topics": [spec]}) is True
    configs = describe_topic_configs(bootstrap, "kjs-configs")
    assert configs["retention.ms"]["configValue"] == "3600000"
    assert configs["retention.ms"]["configSource"] == DYNAMIC_TOPIC_CONFIG
    assert not configs["retention.ms"]["isDefault"] and not configs["retention.ms"]["readOnly"]
    assert configs["max.message.bytes"]["configValue"] == "1048588"
    assert configs["max.message.bytes"]["configSource"] == DEFAULT_CONFIG
    assert configs["max.message.bytes"]["isDefault"]
    assert topic_overrides(cluster3, "kjs-configs") == {"retention.ms": "3600000"}
    named = describe_topic_configs(bootstrap, "kjs-configs", ["retention.ms"])
    assert list(named) == ["retention.ms"]

    broker = {"type": BROKER, "name": "2", "configNames": ["broker.id", "num.partitions"]}
    (described,) = admin(bootstrap, "describeConfigs", {"resources": [broker]})["resources"]
    entries = {e["configName"]: e for e in described["configEntries"]}
    assert entries["broker.id"]["configValue"] == "2"
    assert entries["num.partitions"]["configValue"] == "3"  # the test brokers' properties
    assert entries["num.partitions"]["configSource"] == STATIC_BROKER_CONFIG

    with pytest.raises(KafkaJSError) as unknown:
        describe_topic_configs(bootstrap, "kjs-no-such-topic")
    assert unknown.value.type == "UNKNOWN_TOPIC_OR_PARTITION"


def test_kafkajs_alters_topic_configs_live_replacing_the_whole_set(cluster3):
    bootstrap = cluster3.bootstrap
    create_topic(cluster3.brokers[0].port, "kjs-alter", 1, {"retention.ms": "3600000"}, 3)
    assert alter_topic_configs(bootstrap, "kjs-alter", {"max.message.bytes": "2000000"}) == {
        "resources": [
            {
                "errorCode": 0,
                "errorMessage": None,
                "resourceType": TOPIC,
                "resourceName": "kjs-alter",
            }
        ]
    }
    # AlterConfigs (not incremental) replaces the set: retention.ms is back to its default.
    configs = describe_topic_configs(bootstrap, "kjs-alter", ["retention.ms", "max.message.bytes"])
    assert configs["max.message.bytes"]["configValue"] == "2000000"
    assert configs["max.message.bytes"]["configSource"] == DYNAMIC_TOPIC_CONFIG
    assert configs["retention.ms"]["configSource"] == DEFAULT_CONFIG
    assert topic_overrides(cluster3, "kjs-alter") == {"max.message.bytes": "2000000"}
    # Applied live: a 1.5 MB message, over the default but under the new limit, is stored.
    big = "x" * 1_500_000
    wait_for(lambda: produce(bootstrap, "kjs-alter", [[{"value": big}]]), 30)
    assert [len(m.value) for m in read_back(bootstrap, "kjs-alter", 1, 1)] == [1_500_000]

    with pytest.raises(KafkaJSError) as invalid:
        alter_topic_configs(bootstrap, "kjs-alter", {"retention.ms": "soon"})
    assert invalid.value.type == "INVALID_CONFIG"
    assert topic_overrides(cluster3, "kjs-alter") == {"max.message.bytes": "2000000"}
    with pytest.raises(KafkaJSError) as unknown:
        alter_topic_configs(bootstrap, "kjs-no-such-topic", {"retention.ms": "1000"})
    assert unknown.value.type == "UNKNOWN_TOPIC_OR_PARTITION"


def test_kafkajs_creates_partitions_and_refuses_fewer(cluster3):
    bootstrap = cluster3.bootstrap
    create_topic(cluster3.brokers[0].port, "kjs-grow", 2, replication_factor=2)
    grow = {"topicPartitions": [{"topic": "kjs-grow", "count": 5}]}
    assert admin(bootstrap, "createPartitions", grow) is None
    ours = metadata(cluster3.brokers[1].port, ["kjs-grow"])["topics"][0]["partitions"]
    assert sorted(p["partition_index"] for p in ours) == [0, 1, 2, 3, 4]
    assert all(len(p["replica_nodes"]) == 2 for p in ours)
    theirs = admin(bootstrap, "fetchTopicMetadata", {"topics": ["kjs-grow"]})["topics"][0]
    assert len(theirs["partitions"]) == 5
    # The new partitions take messages, read back from where kafkajs was told they went.
    batches = [[{"value": f"p{p}", "partition": p} for p in range(5)]]
    assert base_offsets(produce(bootstrap, "kjs-grow", batches)) == {p: [0] for p in range(5)}
    got = read_back(bootstrap, "kjs-grow", 5, 5)
    assert [(m.partition, m.value) for m in got] == [(p, f"p{p}".encode()) for p in range(5)]

    for count, error in ((3, "INVALID_PARTITIONS"), (5, "INVALID_PARTITIONS")):
        with pytest.raises(KafkaJSError) as refused:
            admin(
                bootstrap,
                "createPartitions",
                {"topicPartitions": [{"topic": "kjs-grow", "count": count}]},
            )
        assert refused.value.type == error
    with pytest.raises(KafkaJSError) as unknown:
        admin(
            bootstrap, "createPartitions", {"topicPartitions": [{"topic": "kjs-nope", "count": 3}]}
        )
    assert unknown.value.type == "UNKNOWN_TOPIC_OR_PARTITION"
    assert len(metadata(cluster3.brokers[2].port, ["kjs-grow"])["topics"][0]["partitions"]) == 5


def test_kafkajs_deletes_records_up_to_an_offset(cluster3):
    bootstrap = cluster3.bootstrap
    create_topic(cluster3.brokers[0].port, "kjs-trim", 2, replication_factor=3)
    batches = [[{"value": f"{p}-{i}", "partition": p} for i in range(10)] for p in range(2)]
    produce(bootstrap, "kjs-trim", batches)
    # Up to offset 4 in partition 0, everything (-1: the high watermark) in partition 1.
    cut = {
        "topic": "kjs-trim",
        "partitions": [{"partition": 0, "offset": "4"}, {"partition": 1, "offset": "-1"}],
    }
    assert admin(bootstrap, "deleteTopicRecords", cut) is None
    offsets = admin(bootstrap, "fetchTopicOffsets", "kjs-trim")
    assert sorted((o["partition"], o["low"], o["high"]) for o in offsets) == [
        (0, "4", "10"),
        (1, "10", "10"),
    ]
    # Our consumer from the earliest offset starts where the records now start.
    got = read_back(bootstrap, "kjs-trim", 2, 6)
    assert [(m.partition, m.offset, m.value) for m in got] == [
        (0, i, f"0-{i}".encode()) for i in range(4, 10)
    ]
    beyond = {"topic": "kjs-trim", "partitions": [{"partition": 0, "offset": "11"}]}
    with pytest.raises(KafkaJSError) as refused:
        admin(bootstrap, "deleteTopicRecords", beyond)
    assert refused.value.type == "OFFSET_OUT_OF_RANGE"


def test_kafkajs_deletes_groups_but_not_while_they_have_members(cluster3):
    bootstrap = cluster3.bootstrap
    topic, group = "kjs-groups-gone", "kjs-doomed-group"
    create_topic(cluster3.brokers[0].port, topic, 2, replication_factor=2)
    produce(bootstrap, topic, [[{"value": str(i), "partition": i % 2} for i in range(6)]])
    member = GroupMember(bootstrap, group, topic, "kjs-doomed")
    try:
        member.wait_event(lambda e: e["event"] == "assigned" and len(e["partitions"]) == 2)
        wait_for(lambda: groups_describe(cluster3, group) == {0: (3, 3), 1: (3, 3)}, 30)
        with pytest.raises(KafkaJSError) as busy:
            admin(bootstrap, "deleteGroups", [group])
        assert busy.value.type == "NON_EMPTY_GROUP"
        assert group in groups_list(cluster3)
        member.leave()
    finally:
        member.kill()
    assert admin(bootstrap, "deleteGroups", [group]) == [{"groupId": group, "errorCode": 0}]
    assert group not in groups_list(cluster3)
    assert group not in {g["groupId"] for g in admin(bootstrap, "listGroups")["groups"]}
    fetched = admin(bootstrap, "fetchOffsets", {"groupId": group, "topics": [topic]})
    assert [p["offset"] for p in fetched[0]["partitions"]] == ["-1", "-1"]
    with pytest.raises(KafkaJSError) as unknown:
        admin(bootstrap, "deleteGroups", ["kjs-never-was"])
    assert unknown.value.type == "GROUP_ID_NOT_FOUND"
