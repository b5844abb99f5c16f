"""CreateTopics, DeleteTopics and InitProducerId for one broker, at every version served.

    >>> topics = TopicHandlers(request_handlers)
    >>> topics.table[ApiKey.CREATE_TOPICS](body, version)     # a Deferred of the answer

- **CreateTopics** writes the placement to ZooKeeper and answers once the controller has
  elected every partition's first leader. From v5 a created (or validated) topic's answer
  carries its partition count, replication factor and every topic config with its source as
  DescribeConfigs reports it; from v7 its topic id.
- **DeleteTopics** names topics by name, or from v6 by name or topic id (KIP-516): an id no
  topic has is UNKNOWN_TOPIC_ID, both or neither INVALID_REQUEST; v5+ carry error messages.
- **InitProducerId** hands out a new producer id at epoch 0 for an idempotent producer. From
  v3 (KIP-360) a producer may name its current id and epoch: without transactions Kafka
  still answers a new id, as here; an id without an epoch or the reverse is INVALID_REQUEST.
"""

from __future__ import annotations

import logging

from kazoo.exceptions import NodeExistsError, NoNodeError
from twisted.internet import defer

from .config_entries import topic_entries
from .create_partitions import MAX_PARTITIONS_PER_TOPIC, check_replicas
from .election import InvalidReplicationFactor, assign_replicas
from .log import ConfigError, LogConfig
from .log.names import validate_topic_name
from .protocol import errors
from .protocol.errors import NONE, KafkaError
from .protocol.registry import ApiKey
from .topic_ids import ZERO_UUID

log = logging.getLogger(__name__)

NO_PRODUCER_ID, NO_PRODUCER_EPOCH = -1, -1


class TopicHandlers:
    """The topic and producer id APIs over a broker's ``RequestHandlers``."""

    def __init__(self, broker):
        self.broker = broker
        self.config = broker.config
        self.cluster = broker.cluster
        self.metadata = broker.metadata
        self.table = {
            ApiKey.CREATE_TOPICS: self.create_topics,
            ApiKey.DELETE_TOPICS: self.delete_topics,
            ApiKey.INIT_PRODUCER_ID: self.init_producer_id,
        }

    # --- CreateTopics --------------------------------------------------------------------

    @defer.inlineCallbacks
    def create_topic(
        self, name, num_partitions, replication_factor, assignments, configs, validate_only=False
    ):
        """Create one topic; returns (error code, message, placement or None)."""
        try:
            validate_topic_name(name)
            if assignments:
                if num_partitions not in (-1, len(assignments)) or replication_factor not in (-1,):
                    raise errors.InvalidRequestError(
                        "Both numPartitions or replicationFactor and replicasAssignments were "
                        "set. Both cannot be used at the same time."
                    )
                placement = self._manual_placement(assignments)
            else:
                count = self.config["num.partitions"] if num_partitions == -1 else num_partitions
                if count <= 0:
                    raise errors.InvalidPartitionsError(f"{count} partitions; use at least 1")
                if count > MAX_PARTITIONS_PER_TOPIC:
                    raise errors.InvalidPartitionsError(
                        f"{count} partitions; at most {MAX_PARTITIONS_PER_TOPIC} per topic"
                    )
                if not self.metadata.brokers:
                    raise errors.BrokerNotAvailableError("no live brokers")
                factor = replication_factor
                if factor == -1:
                    factor = self.config["default.replication.factor"]
                try:
                    placement = assign_replicas(count, factor, self.metadata.brokers)
                except InvalidReplicationFactor as exc:
                    raise errors.InvalidReplicationFactorError(str(exc)) from None
            config = {c["name"]: c["value"] for c in configs if c["value"] is not None}
            try:
                LogConfig().with_overrides(config)
            except ConfigError as exc:
                raise errors.InvalidConfigError(str(exc)) from None
            if name in self.metadata.topics:
                raise errors.TopicAlreadyExistsError(f"topic {name} already exists")
            if validate_only:
                return NONE, None, placement
            try:
                yield self.cluster.create_topic(name, placement, config)
            except NodeExistsError:
                raise errors.TopicAlreadyExistsError(f"topic {name} already exists") from None
            except Exception as exc:  # ZooKeeper unreachable or slow: the client may retry
                raise errors.RequestTimedOutError(
                    f"ZooKeeper did not take the topic: {exc!r}"
                ) from None
            log.info(
                "created topic %s with %d partitions, replication factor %d",
                name,
                len(placement),
                len(placement[0]),
            )
            # Answered once the controller has elected every partition's first leader.
            yield self.broker._until(
                lambda: len(self.metadata.states.get(name, ())) >= len(placement), 5.0
            )
            return NONE, None, placement
        except KafkaError as exc:
            return exc.code, str(exc.args[0]), None

    def _manual_placement(self, assignments) -> dict[int, list[int]]:
        """CreateTopics' own assignments, checked as Kafka checks them."""
        placement = {}
        for a in assignments:
            partition = a["partition_index"]
            placement[partition] = check_replicas(partition, a["broker_ids"], self.metadata.brokers)
        if sorted(placement) != list(range(len(placement))):
            raise errors.InvalidReplicaAssignmentError("partitions must be 0..n-1")
        if len({len(ids) for ids in placement.values()}) > 1:
            raise errors.InvalidReplicaAssignmentError(
                "All partitions should have the same number of replicas"
            )
        return placement

    @defer.inlineCallbacks
    def create_topics(self, body, version):
        results = []
        for t in body["topics"]:
            code, message, placement = yield self.create_topic(
                t["name"],
                t["num_partitions"],
                t["replication_factor"],
                t["assignments"],
                t["configs"],
                body["validate_only"],
            )
            result = {"name": t["name"], "error_code": code, "error_message": message}
            result["configs"] = []  # v5+: Kafka's empty list where a topic was refused
            result["topic_id"] = (
                self.broker.topic_ids.id_of(t["name"]) if code == NONE else ZERO_UUID
            )
            if placement is not None:  # v5+: what the topic was created with
                result |= self._created(t["configs"], placement)
            results.append(result)
        return {"throttle_time_ms": 0, "topics": results}

    def _created(self, configs: list, placement: dict) -> dict:
        """A created topic's partitions, replication factor and configs (v5+), each config
        with the source DescribeConfigs gives it."""
        overrides = {c["name"]: c["value"] for c in configs if c["value"] is not None}
        entries = topic_entries(self.config, overrides, False, False, self.metadata.broker_configs)
        keys = ("name", "value", "read_only", "config_source", "is_sensitive")
        return {
            "num_partitions": len(placement),
            "replication_factor": len(placement[0]),
            "configs": [{k: e[k] for k in keys} for e in entries],
        }

    # --- DeleteTopics --------------------------------------------------------------------

    @defer.inlineCallbacks
    def delete_topics(self, body, version):
        if version >= 6:
            asked = [(t["name"], t["topic_id"]) for t in body["topics"]]
        else:
            asked = [(name, ZERO_UUID) for name in body["topic_names"]]
        results = []
        for name, topic_id in asked:
            try:
                name = self._named(name, topic_id)
                topic_id = self.broker.topic_ids.id_of(name)  # answered with both, as Kafka
                yield self._delete_topic(name)
                code, message = NONE, None
            except KafkaError as exc:
                code, message = exc.code, str(exc.args[0])
            results.append(
                {"name": name, "topic_id": topic_id, "error_code": code, "error_message": message}
            )
        return {"throttle_time_ms": 0, "responses": results}

    def _named(self, name: str | None, topic_id) -> str:
        """The topic a DeleteTopics entry names, by its name or (v6) its id."""
        if (name is None) == (topic_id == ZERO_UUID):
            raise errors.InvalidRequestError(
                "Neither topic name nor id were specified."
                if name is None
                else "You may not specify both topic name and topic id."
            )
        if name is None:
            name = self.broker.topic_ids.name_of(topic_id)
            if name is None:
                raise errors.UnknownTopicIdError(f"no topic has the id {topic_id}")
        return name

    @defer.inlineCallbacks
    def _delete_topic(self, name: str):
        if name not in self.metadata.topics:
            raise errors.UnknownTopicOrPartitionError(f"Topic {name} does not exist")
        try:
            yield self.cluster.delete_topic(name)
        except NoNodeError:
            raise errors.UnknownTopicOrPartitionError(f"Topic {name} does not exist") from None
        except Exception as exc:
            log.warning("cannot delete topic %s: %r", name, exc)
            raise errors.RequestTimedOutError(f"ZooKeeper did not delete {name}") from None
        log.info("deleted topic %s", name)
        yield self.broker._until(lambda: name not in self.metadata.topics, 5.0)

    # --- InitProducerId ------------------------------------------------------------------

    @defer.inlineCallbacks
    def init_producer_id(self, body, version):
        answer = {"throttle_time_ms": 0, "producer_id": -1, "producer_epoch": -1}
        pid, epoch = body.get("producer_id", -1), body.get("producer_epoch", -1)
        if body["transactional_id"] is not None:
            return answer | {"error_code": errors.InvalidRequestError.code}
        if (pid == NO_PRODUCER_ID) != (epoch == NO_PRODUCER_EPOCH):
            return answer | {"error_code": errors.InvalidRequestError.code}
        try:
            producer_id = yield self.cluster.next_producer_id()
        except Exception as exc:
            log.warning("cannot allocate a producer id: %r", exc)
            return answer | {"error_code": errors.CoordinatorNotAvailableError.code}
        return answer | {"error_code": NONE, "producer_id": producer_id, "producer_epoch": 0}


__all__ = ["TopicHandlers"]
