"""Request handlers: one method per API, over the log manager and the cluster metadata.

``RequestHandlers.handle(request, connection)`` dispatches on the API key through one table
keyed by ``ApiKey``, which must answer every API the registry advertises (checked when the
handlers are built, so a broker missing one refuses to start); each handler returns a response
body, a Deferred of one, or None (Produce with acks=0).
Errors in one partition become that partition's error code; the rest of the request goes on.
"""

from __future__ import annotations

import logging

from twisted.internet import defer

from .admin_handlers import AdminHandlers
from .api_versions import answer_api_versions
from .cluster_handlers import ClusterHandlers
from .config import BrokerConfig
from .config_handlers import ConfigHandlers
from .fetch import FetchWaiters
from .group_handlers import GroupHandlers
from .list_offsets import list_offsets as answer_list_offsets
from .log import LogManager
from .log.names import validate_topic_name
from .log_dirs import describe_log_dirs
from .metrics import NoMetrics
from .protocol import errors, produce
from .protocol.cluster_apis import CLUSTER_OPERATIONS, TOPIC_OPERATIONS
from .protocol.errors import NONE, KafkaError, error_code
from .protocol.registry import ApiKey, check_handlers
from .security.acl_handlers import AclHandlers
from .security.authorizer import Authorizer, parse_super_users
from .security.guard import RequestGuard
from .security.scram_admin import ScramAdminHandlers
from .server import CLOSE_CONNECTION
from .topic_handlers import TopicHandlers
from .topic_ids import FETCH_BY_ID, TopicIds

log = logging.getLogger(__name__)

_EMPTY = b""


def _detached(piece):
    """A fetched range that stays readable until it is sent, even if its segment is deleted
    meanwhile; read at once if no descriptor is left to hold it open."""
    try:
        return piece.detached()
    except OSError as exc:
        log.warning("reading a fetched range now, not streaming it: %s", exc)
        return piece.read()


def _listener(connection) -> str:
    """The listener a request came in on (PLAINTEXT for callers without a connection)."""
    return getattr(connection, "listener_name", "PLAINTEXT")


class RequestHandlers:
    """Answers requests for one broker."""

    def __init__(self, config: BrokerConfig, manager: LogManager, cluster, reactor):
        self.config = config
        self.manager = manager
        self.cluster = cluster
        self.metadata = cluster.metadata
        self.reactor = reactor
        self.broker_id = config["broker.id"]
        self.waiters = FetchWaiters(reactor)
        self.groups = GroupHandlers(
            self.broker_id,
            cluster,
            reactor,
            min_session_timeout_ms=config["group.min.session.timeout.ms"],
            max_session_timeout_ms=config["group.max.session.timeout.ms"],
            initial_rebalance_delay_ms=config["group.initial.rebalance.delay.ms"],
        )
        self.controller = None  # this broker's controller, set by the broker once started
        self.replicas = None  # this broker's ReplicaManager, set by the broker
        self.metrics = NoMetrics()  # the broker's BrokerMetrics while metrics.port is set
        self.topic_ids = TopicIds(self.metadata)
        self.admin = AdminHandlers(self)
        self.topics = TopicHandlers(self)
        # The ACL authorizer when authorizer.class.name names one (its ACLs kept current by
        # the broker's AclCache), and the per-API checks that ask it; None: no authorization.
        self.authorizer = build_authorizer(config)
        self.guard = None if self.authorizer is None else RequestGuard(self.authorizer, self)
        self.cluster_handlers = ClusterHandlers(self)
        self.table = self.handler_table()
        # Addresses are answered on the listener the request came in on, as Kafka does.
        self.contextual = {
            **self.groups.contextual,
            **ScramAdminHandlers(cluster, reactor).contextual,
            ApiKey.API_VERSIONS: answer_api_versions,
            ApiKey.METADATA: lambda request, connection: self.metadata_request(
                request.body, request.header.api_version, _listener(connection)
            ),
            ApiKey.FIND_COORDINATOR: lambda request, connection: self.groups.find_coordinator(
                request.body, request.header.api_version, _listener(connection)
            ),
            ApiKey.DESCRIBE_CLUSTER: lambda r, connection: self.cluster_handlers.describe_cluster(
                r.body, r.header.api_version, _listener(connection)
            ),
        }
        check_handlers({**self.table, **self.contextual})

    def handler_table(self) -> dict:
        """Each API's handler, ``handler(body, version)``, keyed by ``ApiKey``; those of
        ``contextual`` also get the request and the connection."""
        return {
            ApiKey.PRODUCE: self.produce,
            ApiKey.FETCH: self.fetch,
            ApiKey.LIST_OFFSETS: self.list_offsets,
            ApiKey.METADATA: self.metadata_request,
            ApiKey.CONTROLLED_SHUTDOWN: self.controlled_shutdown,
            ApiKey.OFFSET_FOR_LEADER_EPOCH: self.offset_for_leader_epoch,
            ApiKey.DESCRIBE_LOG_DIRS: lambda body, version: describe_log_dirs(body, self.manager),
            **self.groups.table,
            **self.admin.table,
            **self.topics.table,
            **self.cluster_handlers.table,
            **AclHandlers(self.authorizer, self.cluster, self.reactor).table,
            **ConfigHandlers(self.config, self.cluster, self.reactor).table,
        }

    def handle(self, request, connection):
        """The answer to ``request``, checked first by the authorizer's rules if one is on."""
        if self.guard is not None:
            return self.guard.handle(request, connection, self._dispatch)
        return self._dispatch(request, connection)

    def _dispatch(self, request, connection):
        contextual = self.contextual.get(request.api.key)
        if contextual is not None:
            return contextual(request, connection)
        return self.table[request.api.key](request.body, request.header.api_version)

    # --- partitions ----------------------------------------------------------------------

    def _local_log(self, topic: str, partition: int, current_leader_epoch: int = -1):
        """The log of a partition this broker leads, or a KafkaError saying why not.  A
        client's ``current_leader_epoch`` (KIP-320; -1: not given) must be the leader's:
        an older one is FENCED_LEADER_EPOCH, a newer one UNKNOWN_LEADER_EPOCH.  ``topic``
        None: a topic id no topic has."""
        if topic is None:
            raise errors.UnknownTopicIdError(f"no topic has the id asked for partition {partition}")
        placement = self.metadata.topics.get(topic)
        if placement is None or partition not in placement:
            raise errors.UnknownTopicOrPartitionError(f"{topic}-{partition} does not exist")
        known = self.metadata.states.get(topic, {}).get(partition)
        leader = known.state.leader if known is not None else -1
        if leader != self.broker_id:
            raise errors.NotLeaderOrFollowerError(
                f"{topic}-{partition} is led by broker {leader}, not by {self.broker_id}"
                if leader >= 0
                else f"{topic}-{partition} has no leader now"
            )
        if current_leader_epoch >= 0:
            epoch = known.state.leader_epoch
            if current_leader_epoch < epoch:
                raise errors.FencedLeaderEpochError(
                    f"{topic}-{partition}: leader epoch {current_leader_epoch} < {epoch}"
                )
            if current_leader_epoch > epoch:
                raise errors.UnknownLeaderEpochError(
                    f"{topic}-{partition}: leader epoch {current_leader_epoch} > {epoch}"
                )
        plog = self.manager.get_log(topic, partition)
        if plog is None:
            plog = self.manager.get_or_create_log(topic, partition)
        if plog.offline:
            raise errors.KafkaStorageError(f"{topic}-{partition} is offline after a disk error")
        return plog

    # --- Produce -------------------------------------------------------------------------

    def produce(self, request, version):
        """Produce, on its fast path: ``request`` is a ``produce.ProduceRequest`` (tuples, not
        dicts) and the answer the encoded response body, or None (acks=0).  acks=all answers
        once the high watermark covers every appended batch (a Deferred while it does not)."""
        acks = request.acks
        answer = self._produce_partition
        responses = []
        for topic, partitions in request.topics:
            answers = []
            for index, records in partitions:
                answers.append(answer(topic, index, records, acks, version))
            responses.append((topic, answers))
        if acks == -1:
            before = self.metrics.produce_codes(responses)
            waiting = self.replicas.acks_all_answer(responses, request.timeout_ms)
            if waiting is not None:
                return waiting.addCallback(self._produce_waited, version, responses, before)
        if acks == 0:
            # Kafka's rule: an acks=0 producer learns of an error only by the connection
            # closing, and then refreshes its metadata.
            failed = any(p[1] for _, partitions in responses for p in partitions)
            return CLOSE_CONNECTION if failed else None
        return produce.encode_response(version, responses)

    def _produce_waited(self, _, version, responses, before):
        """An acks=all answer once the high watermark wait is over."""
        self.metrics.produce_waited(responses, before)
        return produce.encode_response(version, responses)

    def _produce_partition(self, topic, partition, records, acks, version):
        """One partition's answer: (partition, error_code, base_offset, log_append_time_ms,
        log_start_offset, record_errors, error_message)."""
        try:
            if acks not in (0, 1, -1):
                raise errors.InvalidRequiredAcksError(f"acks={acks}; use 0, 1 or -1")
            if isinstance(records, KafkaError):  # refused by the authorizer's rules, before
                raise records  # saying whether the topic exists (as Kafka)
            plog = self._local_log(topic, partition)
            if records is None or len(records) == 0:
                raise errors.CorruptMessageError("the produce request carries no records")
            self.replicas.check_leading(topic, partition)
            if acks == -1:
                self.replicas.check_in_sync(topic, partition, plog.config.min_insync_replicas)
            appended = plog.append(
                records, self.metadata.states[topic][partition].state.leader_epoch
            )
        except KafkaError as exc:
            code, record_errors = exc.code, None
            if isinstance(exc, errors.InvalidRecordError):
                code, record_errors = _invalid_record(exc, version)
            if not exc.retriable or exc.code in (errors.CorruptMessageError.code,):
                log.info("produce to %s-%d refused: %s", topic, partition, exc)
            self.metrics.error(ApiKey.PRODUCE, code)
            return (partition, code, -1, -1, -1, record_errors, str(exc.args[0]))
        self.replicas.appended(topic, partition, plog, len(records))
        self.metrics.produced(topic, appended.record_count, len(records))
        return (
            partition,
            NONE,
            appended.base_offset,
            appended.log_append_time_ms,
            plog.log_start_offset,
            None,
            None,
        )

    # --- Fetch ---------------------------------------------------------------------------

    def fetch(self, body, version):
        """A long poll: read; while short of ``min_bytes`` and within ``max_wait_ms``, wait
        for data (a consumer: for the high watermark to move) and read again."""
        deadline = self.reactor.seconds() + body["max_wait_ms"] / 1000.0
        if version >= FETCH_BY_ID:
            self.topic_ids.name_fetched_topics(body["topics"])
        keys = [(t["topic"], p["partition"]) for t in body["topics"] for p in t["partitions"]]
        follower = body["replica_id"] >= 0

        def read(_=None):
            response = self._read_fetch(body)
            available, errors_seen = response.pop("_bytes"), response.pop("_errors")
            left_ms = int((deadline - self.reactor.seconds()) * 1000)
            if available >= body["min_bytes"] or left_ms <= 0 or errors_seen:
                return response
            missing = body["min_bytes"] - available
            return self.waiters.wait(keys, missing, left_ms, follower).addCallback(read)

        return read()

    def _read_fetch(self, body):
        """The response: per partition, a file range of whole batches (streamed by the
        server, never read here).  Kafka's soft limits: each partition's max bytes, and the
        smaller of the request's max_bytes and fetch.max.bytes for the whole response, except
        that the first non-empty partition's first batch comes back whole however large."""
        max_bytes = min(body["max_bytes"], self.config["fetch.max.bytes"])
        follower = body["replica_id"]
        total = 0
        saw_error = False
        responses = []
        for topic_data in body["topics"]:
            topic = topic_data["topic"]
            partitions = []
            for p in topic_data["partitions"]:
                partition = p["partition"]
                entry = {
                    "partition_index": partition,
                    "error_code": NONE,
                    "high_watermark": -1,
                    "last_stable_offset": -1,
                    "log_start_offset": -1,
                    "aborted_transactions": None,
                    "preferred_read_replica": -1,
                    "records": _EMPTY,
                }
                try:
                    epoch = p["current_leader_epoch"]
                    plog = self._local_log(topic, partition, epoch)
                    if follower >= 0:  # a follower reads to the log end and tells its own
                        at = p["fetch_offset"]
                        self.replicas.follower_fetched(
                            topic, partition, follower, at, plog, epoch, p["log_start_offset"]
                        )
                    hw = self.replicas.high_watermark(topic, partition, plog)
                    entry["high_watermark"] = entry["last_stable_offset"] = hw
                    entry["log_start_offset"] = plog.log_start_offset
                    limit = min(p["partition_max_bytes"], max_bytes - total)
                    if limit > 0 or total == 0:
                        piece = plog.read_slice(
                            p["fetch_offset"], max(limit, 1), None if follower >= 0 else hw
                        )
                        # Past the first non-empty partition, the limits hold strictly.
                        if piece.size and (total == 0 or piece.size <= limit):
                            entry["records"] = _detached(piece)
                            total += piece.size
                except KafkaError as exc:
                    entry["error_code"] = exc.code
                    saw_error = True
                partitions.append(entry)
            responses.append(
                {"topic": topic, "topic_id": topic_data["topic_id"], "partitions": partitions}
            )
        return {
            "throttle_time_ms": 0,
            "error_code": NONE,
            "session_id": 0,
            "responses": responses,
            "_bytes": total,
            "_errors": saw_error,
        }

    # --- ListOffsets ---------------------------------------------------------------------

    def list_offsets(self, body, version):
        return answer_list_offsets(body, self._local_log, self.replicas)

    # --- OffsetForLeaderEpoch -------------------------------------------------------------

    def offset_for_leader_epoch(self, body, version):
        """Where each asked leader epoch ended in this broker's log (KIP-101/279), once the
        asker's current leader epoch (v2+; -1 skips the check) matches the partition's:
        older gets FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH (KIP-320)."""
        topics = []
        for topic_data in body["topics"]:
            topic = topic_data["topic"]
            partitions = []
            for p in topic_data["partitions"]:
                index = p["partition"]
                entry = {"error_code": NONE, "partition": index, "leader_epoch": -1}
                entry["end_offset"] = -1
                try:
                    plog = self._local_log(topic, index, p.get("current_leader_epoch", -1))
                    epoch, end_offset = plog.end_offset_for_epoch(p["leader_epoch"])
                    entry["leader_epoch"], entry["end_offset"] = epoch, end_offset
                except KafkaError as exc:
                    entry["error_code"] = exc.code
                partitions.append(entry)
            topics.append({"topic": topic, "partitions": partitions})
        return {"throttle_time_ms": 0, "topics": topics}

    # --- Metadata ------------------------------------------------------------------------

    @defer.inlineCallbacks
    def metadata_request(self, body, version, listener: str = "PLAINTEXT"):
        requested, failed = body["topics"], []
        if requested is None or (version == 0 and not requested):
            names = sorted(self.metadata.topics)
        else:
            names, failed = self.topic_ids.requested_metadata(requested, version)
        auto_create = self.config["auto.create.topics.enable"] and (
            version < 4 or body["allow_auto_topic_creation"]
        )
        created = set()
        if auto_create:
            for name in names:
                if name not in self.metadata.topics:
                    code, _, _ = yield self.topics.create_topic(name, -1, -1, [], {})
                    if code == NONE:
                        created.add(name)
        brokers = [
            {"node_id": b.node_id, "host": host, "port": port, "rack": b.rack}
            for b, host, port in self.metadata.brokers_on(listener)
        ]
        topics = [self._topic_metadata(name, name in created) for name in names] + failed
        if body.get("include_topic_authorized_operations"):  # no authorizer: all of them
            for topic in topics:
                topic["topic_authorized_operations"] = TOPIC_OPERATIONS
        answer = {"throttle_time_ms": 0, "brokers": brokers, "topics": topics}
        answer |= {"cluster_id": self.metadata.cluster_id, "controller_id": self._controller_id()}
        if body.get("include_cluster_authorized_operations"):  # v8-10, as librdkafka asks
            answer["cluster_authorized_operations"] = CLUSTER_OPERATIONS
        return answer

    def _controller_id(self) -> int:
        """The controller as this broker last saw ``/controller``; -1 while there is none
        (Kafka's answer, which makes clients ask again)."""
        controller = self.controller
        return controller.controller_id if controller is not None else -1

    def _topic_metadata(self, name, just_created):
        placement = self.metadata.topics.get(name)
        entry = {"error_code": NONE, "name": name, "is_internal": False, "partitions": []}
        entry["topic_id"] = self.topic_ids.id_of(name)
        try:
            validate_topic_name(name)
        except KafkaError as exc:
            entry["error_code"] = exc.code
            return entry
        if placement is None:
            entry["error_code"] = (
                errors.LeaderNotAvailableError.code
                if just_created
                else errors.UnknownTopicOrPartitionError.code
            )
            return entry
        states = self.metadata.states.get(name, {})
        for partition, replicas in sorted(placement.items()):
            leader = self.metadata.leader(name, partition)
            known = states.get(partition)
            entry["partitions"].append(
                {
                    "error_code": NONE if leader >= 0 else errors.LeaderNotAvailableError.code,
                    "partition_index": partition,
                    "leader_id": leader,
                    "leader_epoch": known.state.leader_epoch if known is not None else -1,
                    "replica_nodes": list(replicas),
                    "isr_nodes": list(known.state.isr) if known is not None else [],
                    "offline_replicas": [r for r in replicas if r not in self.metadata.brokers],
                }
            )
        return entry

    # --- waiting on the metadata (CreateTopics and the other topic APIs: topic_handlers.py) -

    def _until(self, condition, timeout: float):
        """A Deferred that fires when ``condition()`` holds or ``timeout`` passes."""
        d = defer.Deferred()
        deadline = self.reactor.seconds() + timeout

        def check():
            if condition() or self.reactor.seconds() >= deadline:
                d.callback(None)
            else:
                self.reactor.callLater(0.01, check)

        check()
        return d

    # --- ControlledShutdown --------------------------------------------------------------

    @defer.inlineCallbacks
    def controlled_shutdown(self, body, version):
        """On the controller: move the broker's leaderships away and answer the partitions
        that could not move; elsewhere NOT_CONTROLLER."""
        controller = self.controller
        remaining = []
        code = NONE
        if controller is None or not controller.active:
            code = errors.NotControllerError.code
        else:
            try:
                stuck = yield controller.controlled_shutdown(
                    body["broker_id"], body["broker_epoch"]
                )
                remaining = [{"topic_name": t, "partition_index": p} for t, p in stuck]
            except KafkaError as exc:
                code = exc.code
            except Exception as exc:
                log.warning("controlled shutdown of broker %d failed: %r", body["broker_id"], exc)
                code = errors.NotControllerError.code  # the client retries, asking again
        log.info("controlled shutdown of broker %d: %s", body["broker_id"], code or "done")
        return {"error_code": code, "remaining_partitions": remaining}


def build_authorizer(config: BrokerConfig) -> Authorizer | None:
    """The authorizer ``authorizer.class.name`` asks for (None: no authorization), with
    ``super.users`` and ``allow.everyone.if.no.acl.found``; its ACLs start empty."""
    if not config["authorizer.class.name"]:
        return None
    return Authorizer(
        super_users=parse_super_users(config["super.users"]),
        allow_everyone_if_no_acl_found=config["allow.everyone.if.no.acl.found"],
    )


def _invalid_record(exc: KafkaError, version: int) -> tuple[int, list | None]:
    """(error_code, record_errors) of INVALID_RECORD as each Produce version answers it
    (KIP-467): from v8 with the record at fault in ``record_errors``; before v8, which
    predates the code, as CORRUPT_MESSAGE - what Kafka answered to those clients then."""
    if version < 8:
        return errors.CorruptMessageError.code, None
    index = getattr(exc, "record_index", None)
    if index is None:
        return exc.code, None
    return exc.code, [(index, str(exc.args[0]))]


__all__ = ["RequestHandlers", "error_code"]
