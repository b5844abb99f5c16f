"""Which source topics a mirror copies, and their target topics: the source's topics matching
``--include`` and not ``--exclude``, each created on the target (when missing) with the
source's partition count and its topic-level (dynamic) configs, through the admin APIs both
clusters serve (Metadata, DescribeConfigs, CreateTopics).  A target topic with fewer
partitions than its source stops that topic (``stopped`` says why); the others go on."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from broker.protocol.config_apis import ConfigSource, ResourceType
from broker.protocol.errors import KafkaError, TopicAlreadyExistsError, error_for_code
from broker.protocol.registry import ApiKey

from ..cluster import ClusterClient

log = logging.getLogger(__name__)


class TopicFilter:
    """``--include`` / ``--exclude`` regular expressions, matched against the whole name.
    Names starting with ``__`` (Kafka's internal topics) are never mirrored."""

    def __init__(self, include: str, exclude: str | None = None):
        self.include = re.compile(include)
        self.exclude = re.compile(exclude) if exclude else None

    def __call__(self, topic: str) -> bool:
        if topic.startswith("__") or not self.include.fullmatch(topic):
            return False
        return not (self.exclude and self.exclude.fullmatch(topic))


def topic_partitions(body: dict) -> dict[str, int]:
    """Topic -> partition count from a Metadata response (topics in error left out)."""
    return {
        t["name"]: len(t["partitions"])
        for t in body["topics"]
        if t["error_code"] == 0 and t["partitions"] and t["name"]
    }


# Configs a target topic never takes from its source, with the value it gets instead: the
# mirror keeps each record's source timestamp, which LogAppendTime on the target would
# overwrite (whatever the target brokers' default).
TARGET_CONFIGS = {"message.timestamp.type": "CreateTime"}


def copied_configs(configs: list[dict]) -> dict[str, str]:
    """The configs a target topic takes from its source: those set on the topic itself
    (DYNAMIC_TOPIC_CONFIG), neither read-only nor sensitive, then ``TARGET_CONFIGS``."""
    copied = {
        c["name"]: c["value"]
        for c in configs
        if c["config_source"] == ConfigSource.DYNAMIC_TOPIC_CONFIG
        and not c["read_only"]
        and not c["is_sensitive"]
        and c["value"] is not None
    }
    return {**copied, **TARGET_CONFIGS}


def _any_broker(cluster: ClusterClient) -> int:
    if not cluster.brokers:
        cluster.refresh([], allow_auto_create=False)
    return next(iter(sorted(cluster.brokers)))


def _topic_configs(cluster: ClusterClient, topic: str, keys: list[str] | None) -> dict:
    """DescribeConfigs of one topic: its result (``configs``, ``error_code``...)."""
    body = cluster.request(
        _any_broker(cluster),
        ApiKey.DESCRIBE_CONFIGS,
        {
            "resources": [
                {
                    "resource_type": ResourceType.TOPIC,
                    "resource_name": topic,
                    "configuration_keys": keys,
                }
            ],
            "include_synonyms": False,
            "include_documentation": False,
        },
    )
    return body["results"][0]


def describe_topic_configs(cluster: ClusterClient, topic: str) -> dict[str, str]:
    """The source topic's configs a target topic copies (see ``copied_configs``)."""
    result = _topic_configs(cluster, topic, None)
    if result["error_code"]:
        raise error_for_code(result["error_code"])(result["error_message"] or topic)
    return copied_configs(result["configs"])


def max_message_bytes(cluster: ClusterClient, topic: str) -> int | None:
    """The topic's effective ``max.message.bytes`` (its own or its brokers' default), or
    None when the cluster does not say."""
    result = _topic_configs(cluster, topic, ["max.message.bytes"])
    for config in result["configs"] if not result["error_code"] else ():
        if config["name"] == "max.message.bytes" and config["value"]:
            try:
                return int(config["value"])
            except ValueError:
                return None
    return None


def create_topic(
    cluster: ClusterClient,
    topic: str,
    partitions: int,
    configs: dict[str, str],
    replication_factor: int,
) -> None:
    """CreateTopics on the target; a topic created meanwhile by someone else is fine."""
    body = cluster.request(
        _any_broker(cluster),
        ApiKey.CREATE_TOPICS,
        {
            "topics": [
                {
                    "name": topic,
                    "num_partitions": partitions,
                    "replication_factor": replication_factor,
                    "assignments": [],
                    "configs": [{"name": k, "value": v} for k, v in configs.items()],
                }
            ],
            "timeout_ms": 30000,
            "validate_only": False,
        },
    )
    result = body["topics"][0]
    if result["error_code"]:
        error = error_for_code(result["error_code"])
        if error is not TopicAlreadyExistsError:
            raise error(result["error_message"] or f"cannot create {topic}")


@dataclass
class TopicSync:
    """Keeps the target's topics in step with the source's; ``refresh()`` (every
    ``--refresh-interval``) returns the topics to mirror now."""

    source: ClusterClient
    target: ClusterClient
    accept: TopicFilter
    replication_factor: int = -1
    stopped: dict[str, str] = field(default_factory=dict)  # topic -> why it is not mirrored
    created: list[str] = field(default_factory=list)
    cluster_id: str = ""

    def refresh(self) -> list[str]:
        """List the source's topics, create the missing target topics, and return the
        matching topics whose target is ready (in name order)."""
        body = self.source.refresh(None, allow_auto_create=False)
        self.cluster_id = body.get("cluster_id") or self.cluster_id
        sources = {t: n for t, n in topic_partitions(body).items() if self.accept(t)}
        if not sources:
            return []
        targets = topic_partitions(self.target.refresh(sorted(sources), allow_auto_create=False))
        ready = []
        for topic, count in sorted(sources.items()):
            have = targets.get(topic)
            try:
                if have is None:
                    configs = describe_topic_configs(self.source, topic)
                    create_topic(self.target, topic, count, configs, self.replication_factor)
                    self.created.append(topic)
                    log.info(
                        "created target topic %s: %d partitions, configs %s", topic, count, configs
                    )
                    self.target.partitions(topic, wait=30.0)
                elif have < count:
                    self._stop(
                        topic,
                        f"the target topic has {have} partitions, the source {count}: grow it "
                        f"(headrace topics alter --topic {topic} --partitions {count})",
                    )
                    continue
            except (KafkaError, OSError) as exc:
                self._stop(topic, f"cannot create the target topic: {exc}")
                continue
            if self.stopped.pop(topic, None) is not None:
                log.info("%s: mirrored again", topic)
            ready.append(topic)
        return ready

    def _stop(self, topic: str, why: str) -> None:
        if self.stopped.get(topic) != why:
            log.error("%s: not mirrored: %s", topic, why)
        self.stopped[topic] = why
