"""The admin APIs that change partitions and groups: CreatePartitions, DeleteRecords,
ElectLeaders, and (``group_admin.py``) DeleteGroups and OffsetDelete.

    >>> admin = AdminHandlers(request_handlers)
    >>> admin.table[ApiKey.DELETE_RECORDS](body, version)     # a Deferred of the answer

- **CreatePartitions** is served by any broker (as our CreateTopics is: both write the
  placement to ZooKeeper with a compare-and-set, which the controller watches); the answer
  comes once the controller has given every new partition its first state, or the request's
  timeout passed.
- **DeleteRecords** at each partition's leader raises its log start offset (``-1``: the high
  watermark; beyond it OFFSET_OUT_OF_RANGE) and answers once Kafka's low watermark, the
  smallest log start among the replicas on live brokers, has reached it: followers take the
  leader's log start from its fetch responses and report their own in their next fetch.  A
  timeout answers REQUEST_TIMED_OUT with the low watermark then (the leader's log start has
  moved all the same).
- **ElectLeaders** is decided by the controller on its thread (``elect_leaders.py``); the
  other brokers answer NOT_CONTROLLER per partition, as Kafka's do.  The answer comes once
  this broker's metadata shows the new leaders, or the request's timeout passed.
"""

from __future__ import annotations

import logging

from twisted.internet import defer

from . import create_partitions as partitions
from .elect_leaders import PREFERRED, UNCLEAN, run_elections
from .group_admin import GroupAdmin
from .protocol import errors
from .protocol.errors import NONE, KafkaError
from .protocol.registry import ApiKey

log = logging.getLogger(__name__)

ZK_TIMEOUT = 10.0


def _seconds(timeout_ms: int) -> float:
    """A request's timeout in seconds, at least a tenth of one and at most a minute."""
    return min(max(timeout_ms, 100), 60_000) / 1000.0


class AdminHandlers:
    """CreatePartitions, DeleteRecords, ElectLeaders, DeleteGroups and OffsetDelete for one
    broker, over its ``RequestHandlers`` (metadata, logs, replicas, controller, groups)."""

    def __init__(self, broker):
        self.broker = broker
        self.metadata = broker.metadata
        groups = GroupAdmin(broker.groups)
        self.table = {
            ApiKey.CREATE_PARTITIONS: self.create_partitions,
            ApiKey.DELETE_RECORDS: self.delete_records,
            ApiKey.ELECT_LEADERS: self.elect_leaders,
            ApiKey.DELETE_GROUPS: groups.delete_groups,
            ApiKey.OFFSET_DELETE: groups.offset_delete,
        }

    # --- CreatePartitions ----------------------------------------------------------------

    @defer.inlineCallbacks
    def create_partitions(self, body, version):
        names = [t["name"] for t in body["topics"]]
        results = []
        for t in body["topics"]:
            try:
                if names.count(t["name"]) > 1:
                    raise errors.InvalidRequestError("Duplicate topic in request.")
                yield self._create_partitions(t, body["validate_only"], body["timeout_ms"])
                code, message = NONE, None
            except KafkaError as exc:
                code, message = exc.code, str(exc.args[0])
            results.append({"name": t["name"], "error_code": code, "error_message": message})
        return {"throttle_time_ms": 0, "results": results}

    @defer.inlineCallbacks
    def _create_partitions(self, topic: dict, validate_only: bool, timeout_ms: int):
        name = topic["name"]
        placement = self.metadata.topics.get(name)
        if placement is None:
            raise errors.UnknownTopicOrPartitionError(f"The topic '{name}' does not exist.")
        assignments = topic["assignments"]
        if assignments is not None:
            assignments = [a["broker_ids"] for a in assignments]
        current = len(placement)
        added = partitions.new_partitions(
            current, topic["count"], assignments, placement, self.metadata.brokers
        )
        if validate_only:
            return
        client = self.broker.cluster.client
        try:
            yield self.broker.cluster._in_pool(
                lambda: partitions.add_partitions(client, name, current, added, ZK_TIMEOUT)
            )
        except KafkaError:
            raise
        except Exception as exc:
            raise errors.RequestTimedOutError(f"ZooKeeper did not take it: {exc!r}") from None
        log.info("topic %s grown from %d to %d partitions", name, current, topic["count"])
        yield self.broker._until(
            lambda: len(self.metadata.states.get(name, ())) >= topic["count"],
            _seconds(timeout_ms),
        )

    # --- DeleteRecords -------------------------------------------------------------------

    @defer.inlineCallbacks
    def delete_records(self, body, version):
        answers = []  # (topic, entry, log, offset) of each partition whose start was raised
        topics = []
        moved = False
        for t in body["topics"]:
            entries = []
            for p in t["partitions"]:
                entry = {"partition_index": p["partition_index"], "low_watermark": -1}
                entry["error_code"] = NONE
                try:
                    plog, offset = self._delete_before(t["name"], p["partition_index"], p["offset"])
                    moved = plog.delete_records_before(offset) or moved
                    answers.append((t["name"], entry, plog, offset))
                except KafkaError as exc:
                    entry["error_code"] = exc.code
                entries.append(entry)
            topics.append({"name": t["name"], "partitions": entries})
        if moved:  # the new log starts survive a crash from now on
            self.broker.manager.checkpoint_log_start_offsets(wait=True)
        replicas = self.broker.replicas

        def low(topic, entry, plog):
            return replicas.low_watermark(topic, entry["partition_index"], plog)

        yield self.broker._until(
            lambda: all(low(t, e, plog) >= offset for t, e, plog, offset in answers),
            _seconds(body["timeout_ms"]),
        )
        for topic, entry, plog, offset in answers:
            entry["low_watermark"] = low(topic, entry, plog)
            if entry["low_watermark"] < offset:
                entry["error_code"] = errors.RequestTimedOutError.code
        return {"throttle_time_ms": 0, "topics": topics}

    def _delete_before(self, topic: str, partition: int, offset: int):
        """(the led log, the offset its records before are deleted) or the KafkaError."""
        plog = self.broker._local_log(topic, partition)
        hw = self.broker.replicas.high_watermark(topic, partition, plog)
        if offset == -1:
            offset = hw
        if offset < 0 or offset > hw:
            raise errors.OffsetOutOfRangeError(
                f"{topic}-{partition}: cannot delete records before {offset}: the high "
                f"watermark is {hw}"
            )
        return plog, offset

    # --- ElectLeaders --------------------------------------------------------------------

    @defer.inlineCallbacks
    def elect_leaders(self, body, version):
        election_type = body["election_type"] if version >= 1 else PREFERRED
        asked = body["topic_partitions"]
        wanted = None
        if asked is not None:
            wanted = list(dict.fromkeys((t["topic"], p) for t in asked for p in t["partitions"]))
        top, elected = NONE, {}
        controller = self.broker.controller
        if election_type not in (PREFERRED, UNCLEAN):
            top, codes = errors.InvalidRequestError.code, {}
        elif controller is None or not controller.active:
            codes = {key: errors.NotControllerError.code for key in wanted or ()}
        else:
            try:
                codes, elected = yield controller.submit(
                    lambda c: run_elections(c, wanted, election_type)
                )
            except KafkaError as exc:
                codes = {key: exc.code for key in wanted or ()}
            except Exception as exc:
                log.warning("leader election failed: %r", exc)
                codes = {key: errors.NotControllerError.code for key in wanted or ()}
        if wanted is None:  # every partition: only those elected or failing, as Kafka
            codes = {k: c for k, c in codes.items() if c != errors.ElectionNotNeededError.code}
        if elected:
            log.info("elected leaders of %s (election type %d)", sorted(elected), election_type)
        yield self.broker._until(  # answered once this broker's metadata shows them
            lambda: all(self.metadata.leader(*key) == b for key, b in elected.items()),
            _seconds(body["timeout_ms"]),
        )
        by_topic: dict[str, list] = {}
        for (topic, partition), code in codes.items():
            message = None if code == NONE else errors.error_for_code(code).description
            by_topic.setdefault(topic, []).append(
                {"partition_id": partition, "error_code": code, "error_message": message}
            )
        return {
            "throttle_time_ms": 0,
            "error_code": top,
            "replica_election_results": [
                {"topic": t, "partition_result": ps} for t, ps in by_topic.items()
            ],
        }
