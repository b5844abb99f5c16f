"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs: topic configs and dynamic
broker configs read from and written to ZooKeeper as Kafka writes them, this broker's own
properties, its loggers.

A topic's overrides live in ``/config/topics/<topic>``, a broker's dynamic configs in
``/config/brokers/<id>`` and every broker's in ``/config/brokers/<default>``; an alter
rewrites the node with one transaction conditional on its version (and on the topic's
existence) that also leaves Kafka's change notice in ``/config/changes``.  Every broker
watches these nodes and applies them to its logs (``Broker._metadata_changed``), so a change
is live without a restart.  New topic overrides are checked by the code CreateTopics uses;
broker properties that cannot change while running are refused as Kafka refuses them.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter

from kazoo.exceptions import BadVersionError, NoNodeError, NotEmptyError
from twisted.internet import defer, threads

from .config_entries import (
    DEFAULT_ENTITY,
    apply_incremental,
    broker_entries,
    check_broker_change,
    check_topic_overrides,
    check_unique,
    default_broker_entries,
    select,
    topic_entries,
)
from .log.names import validate_topic_name
from .loggers import alter_loggers, logger_entries
from .protocol import errors
from .protocol import zookeeper as layout
from .protocol.config_apis import AlterConfigOp, ResourceType
from .protocol.errors import NONE, KafkaError
from .protocol.registry import ApiKey

log = logging.getLogger(__name__)

ZK_TIMEOUT = 10.0
WRITE_ATTEMPTS = 20  # conditional writes raced by other alters before the request fails
CHANGE_EXPIRATION_MS = 15 * 60 * 1000  # Kafka's: older change notices are purged


def _broker_id(name: str) -> int:
    try:
        return int(name)
    except ValueError:
        raise errors.InvalidRequestError(
            f"Broker id must be an integer, but it is: {name}"
        ) from None


class ConfigHandlers:
    """The config APIs of one broker; ``table`` maps their keys to handlers."""

    def __init__(self, config, cluster, reactor):
        self.config = config
        self.cluster = cluster
        self.metadata = cluster.metadata
        self.reactor = reactor
        self.broker_id = config["broker.id"]
        self.table = {
            ApiKey.DESCRIBE_CONFIGS: self.describe_configs,
            ApiKey.ALTER_CONFIGS: self.alter_configs,
            ApiKey.INCREMENTAL_ALTER_CONFIGS: self.incremental_alter_configs,
        }

    # --- DescribeConfigs -------------------------------------------------------------------

    def describe_configs(self, body, version):
        synonyms, docs = body["include_synonyms"], body["include_documentation"]
        results = []
        for resource in body["resources"]:
            result = {
                "error_code": NONE,
                "error_message": None,
                "resource_type": resource["resource_type"],
                "resource_name": resource["resource_name"],
                "configs": [],
            }
            try:
                entries = self._describe(
                    resource["resource_type"], resource["resource_name"], synonyms, docs
                )
                result["configs"] = select(entries, resource["configuration_keys"])
            except KafkaError as exc:
                result["error_code"], result["error_message"] = exc.code, str(exc.args[0])
            results.append(result)
        return {"throttle_time_ms": 0, "results": results}

    def _describe(self, kind: int, name: str, synonyms: bool, docs: bool) -> list[dict]:
        dynamic = self.metadata.broker_configs
        if kind == ResourceType.TOPIC:
            self._known_topic(name)
            overrides = self.metadata.topic_configs.get(name, {})
            return topic_entries(self.config, overrides, synonyms, docs, dynamic)
        if kind == ResourceType.BROKER:
            if name == "":  # the cluster-wide dynamic defaults
                return default_broker_entries(self.config, dynamic, synonyms, docs)
            self._this_broker(name, "or empty string, ")
            return broker_entries(self.config, synonyms, docs, dynamic)
        if kind == ResourceType.BROKER_LOGGER:
            self._this_broker(name, "")
            return logger_entries()
        raise errors.InvalidRequestError(f"Unsupported resource type: {kind}")

    def _known_topic(self, name: str) -> None:
        validate_topic_name(name)
        if name not in self.metadata.topics:
            raise errors.UnknownTopicOrPartitionError(f"Topic {name} does not exist")

    def _this_broker(self, name: str, or_empty: str) -> None:
        if name == "":
            raise errors.InvalidRequestError("Broker id must not be empty")
        if _broker_id(name) != self.broker_id:
            raise errors.InvalidRequestError(
                f"Unexpected broker id, expected {self.broker_id} {or_empty}but received {name}"
            )

    # --- AlterConfigs / IncrementalAlterConfigs --------------------------------------------

    def alter_configs(self, body, version):
        """Replace each resource's whole set of overrides (null values left out)."""
        return self._alter(body, incremental=False)

    def incremental_alter_configs(self, body, version):
        """SET, DELETE, APPEND or SUBTRACT single configs of each resource."""
        return self._alter(body, incremental=True)

    @defer.inlineCallbacks
    def _alter(self, body, incremental: bool):
        resources = body["resources"]
        counts = Counter((r["resource_type"], r["resource_name"]) for r in resources)
        responses = []
        for resource in resources:
            kind, name = resource["resource_type"], resource["resource_name"]
            code, message = NONE, None
            try:
                if counts[kind, name] > 1:
                    raise errors.InvalidRequestError("Error due to duplicate resources")
                yield self._alter_one(kind, name, resource["configs"], incremental, body)
            except KafkaError as exc:
                code, message = exc.code, str(exc.args[0])
                log.info("config change of %s %r refused: %s", kind, name, message)
            except Exception as exc:  # ZooKeeper unreachable or slow: the client may retry
                log.warning("config change of %s %r failed: %r", kind, name, exc)
                code = errors.RequestTimedOutError.code
                message = f"ZooKeeper did not take the change: {exc!r}"
            responses.append(
                {
                    "error_code": code,
                    "error_message": message,
                    "resource_type": kind,
                    "resource_name": name,
                }
            )
        return {"throttle_time_ms": 0, "responses": responses}

    def _alter_one(self, kind: int, name: str, configs: list, incremental: bool, body):
        validate_only = body["validate_only"]
        check_unique([c["name"] for c in configs])
        if incremental:
            steps = [(c["name"], c["config_operation"], c["value"]) for c in configs]
        else:
            steps = [(c["name"], AlterConfigOp.SET, c["value"]) for c in configs]
        if kind == ResourceType.TOPIC:
            self._known_topic(name)
            dynamic = self.metadata.broker_configs
            entries = topic_entries(self.config, {}, False, False, dynamic)
            defaults = {e["name"]: e["value"] for e in entries}
            return self._write_config(
                layout.topic_config_path(name),
                f"topics/{name}",
                _change(steps, incremental, defaults, None),
                check_topic_overrides,
                validate_only,
                topic=name,
            )
        if kind == ResourceType.BROKER:
            entity = DEFAULT_ENTITY if name == "" else str(_broker_id(name))
            return self._write_config(
                layout.broker_config_path(entity),
                f"brokers/{entity}",
                _change(steps, incremental, {}, frozenset()),
                functools.partial(check_broker_change, self.config, entity),
                validate_only,
            )
        if kind == ResourceType.BROKER_LOGGER:
            if not incremental:
                raise errors.InvalidRequestError(
                    "AlterConfigs does not support the resource type BROKER_LOGGER"
                )
            self._this_broker(name, "")
            alter_loggers(steps, validate_only)
            return None
        raise errors.InvalidRequestError(f"Unsupported resource type: {kind}")

    def _write_config(self, path, entity_path, change, check, validate_only, topic=None):
        """In the thread pool: read the overrides at ``path``, ``change`` them, ``check`` the
        result and (unless ``validate_only``) write it with Kafka's change notice for
        ``entity_path``, in one transaction conditional on the node's version (and on the
        ``topic``'s existence): a change raced by another is made again on what won."""
        client = self.cluster.client

        def attempt():
            topic_path = None if topic is None else layout.topic_path(topic)
            for _ in range(WRITE_ATTEMPTS):
                topic_stat = None
                if topic_path is not None:
                    topic_stat = client.exists_async(topic_path).get(timeout=ZK_TIMEOUT)
                    if topic_stat is None:
                        raise errors.UnknownTopicOrPartitionError(f"Topic {topic} does not exist")
                try:
                    data, stat = client.get_async(path).get(timeout=ZK_TIMEOUT)
                except NoNodeError:
                    data, stat = b"", None
                try:
                    current = layout.decode_topic_config(data, path) if data else {}
                except layout.MalformedNodeError:  # written by hand: the change replaces it
                    current = {}
                new = change(current)
                check(new)
                if validate_only:
                    return new
                client.ensure_path(layout.CONFIG_CHANGES)
                tx = client.transaction()
                if topic_stat is not None:
                    tx.check(topic_path, topic_stat.version)
                encoded = layout.encode_topic_config(new)
                if stat is None:
                    client.ensure_path(path.rsplit("/", 1)[0])
                    tx.create(path, encoded)
                else:
                    tx.set_data(path, encoded, version=stat.version)
                notice = layout.encode_config_change(entity_path)
                tx.create(layout.CONFIG_CHANGE_PREFIX, notice, sequence=True)
                results = tx.commit_async().get(timeout=ZK_TIMEOUT)
                if not any(isinstance(r, Exception) for r in results):
                    log.info("the config of %s is now %s", entity_path, new)
                    purge_config_changes(client)
                    return new
            raise errors.RequestTimedOutError(
                f"the config of {entity_path} kept changing under {WRITE_ATTEMPTS} attempts"
            )

        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), attempt)


def _change(steps, incremental: bool, defaults, list_names):
    """The change an alter makes to a resource's overrides: IncrementalAlterConfigs' steps,
    or AlterConfigs' whole new set (null values left out, as Kafka does)."""
    if incremental:
        return functools.partial(
            apply_incremental, operations=steps, defaults=defaults, list_names=list_names
        )
    whole = {n: v for n, _, v in steps if v is not None}
    return lambda current: whole


def purge_config_changes(client, now_ms: float | None = None) -> int:
    """Delete change notices older than Kafka's 15 minutes; how many went (blocking)."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    removed = 0
    for child in client.get_children(layout.CONFIG_CHANGES):
        path = layout.config_change_path(child)
        stat = client.exists(path)
        if stat is not None and stat.ctime < now_ms - CHANGE_EXPIRATION_MS:
            try:
                client.delete(path)
                removed += 1
            except (NoNodeError, NotEmptyError, BadVersionError):
                pass  # another broker purged it first
    return removed


__all__ = ["ConfigHandlers", "purge_config_changes"]
