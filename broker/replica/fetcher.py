"""A replica fetcher: one loop per leader broker copying that leader's partitions into local
logs (Kafka's ``ReplicaFetcherThread``, as a Twisted loop).

    >>> fetcher = ReplicaFetcher(reactor, BrokerClient(reactor, host, port), broker_id=2)
    >>> fetcher.add_partition("clicks", 0, log, leader_epoch=5)
    >>> fetcher.start()
    >>> ...
    >>> yield fetcher.stop()

Each partition goes through these states::

    add_partition --> truncating --OffsetForLeaderEpoch answered--> fetching
    fetching --OFFSET_OUT_OF_RANGE--> (truncate or start at the leader's log start) fetching
    fetching --NOT_LEADER_OR_FOLLOWER / FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH--> paused
    paused --add_partition (its new role)--> truncating
    (any) --other errors--> same state, retried after replica.fetch.backoff.ms

One request is in flight at a time: while partitions are truncating the loop asks the leader
where their epochs end (``truncation.py``) and cuts the logs; then one Fetch (v11, this
broker's id as ``replica_id``, ``current_leader_epoch`` per partition) for every partition
ready to fetch, long-polled by the leader for ``replica.fetch.wait.max.ms``.  Batches are
appended as the leader sent them (only whole ones; a fetch may end inside one), and the
follower's high watermark is the leader's capped at its own log end.  When there is nothing
to fetch the loop sleeps until a partition is added or a backoff ends; it never spins.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from twisted.internet import defer

from ..protocol.errors import KafkaError, error_for_code
from ..protocol.records import split_batches
from ..protocol.registry import ApiKey
from ..protocol.schema import ProtocolError
from . import truncation
from .client import BrokerClient
from .log import FollowerLog

log = logging.getLogger(__name__)

NONE = 0
OFFSET_OUT_OF_RANGE = error_for_code(1).code
UNSUPPORTED_VERSION = error_for_code(35).code
# Our leader epoch is older than the leader's: a new role is on its way, wait to be told it.
# NOT_LEADER_OR_FOLLOWER and UNKNOWN_LEADER_EPOCH are retried after the backoff instead (as
# Kafka's fetcher does): the leader may simply not have taken up its new state yet.
PAUSING_ERRORS = frozenset({error_for_code(74).code})
FETCH_VERSION = 11
LATEST_TIMESTAMP = -1

TRUNCATING, FETCHING, PAUSED = "truncating", "fetching", "paused"


@dataclass(frozen=True)
class FetcherConfig:
    """The replica fetcher's settings, with Kafka's names and defaults."""

    fetch_wait_max_ms: int = 500  # replica.fetch.wait.max.ms
    fetch_min_bytes: int = 1  # replica.fetch.min.bytes
    fetch_max_bytes: int = 1048576  # replica.fetch.max.bytes: per partition
    fetch_response_max_bytes: int = 10485760  # replica.fetch.response.max.bytes
    fetch_backoff_ms: int = 1000  # replica.fetch.backoff.ms
    socket_timeout_ms: int = 30000  # replica.socket.timeout.ms

    PROPERTIES: ClassVar[dict[str, str]] = {
        "replica.fetch.wait.max.ms": "fetch_wait_max_ms",
        "replica.fetch.min.bytes": "fetch_min_bytes",
        "replica.fetch.max.bytes": "fetch_max_bytes",
        "replica.fetch.response.max.bytes": "fetch_response_max_bytes",
        "replica.fetch.backoff.ms": "fetch_backoff_ms",
        "replica.socket.timeout.ms": "socket_timeout_ms",
    }

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> FetcherConfig:
        """The settings named in ``props`` (others keep Kafka's defaults); ValueError with
        one line naming the property for a value that is not a positive integer, or a socket
        timeout not above the fetch wait (Kafka's rule)."""
        values = {}
        for name, attr in cls.PROPERTIES.items():
            if name in props:
                text = props[name].strip()
                if not text.isdigit() or int(text) <= 0:
                    raise ValueError(f"{name} must be a positive integer, not {text!r}")
                values[attr] = int(text)
        config = cls(**values)
        if config.socket_timeout_ms < config.fetch_wait_max_ms:
            raise ValueError(
                f"replica.socket.timeout.ms ({config.socket_timeout_ms}) must not be below "
                f"replica.fetch.wait.max.ms ({config.fetch_wait_max_ms})"
            )
        return config


@dataclass(eq=False)
class PartitionFetch:
    """One partition this fetcher follows."""

    topic: str
    partition: int
    log: FollowerLog
    leader_epoch: int
    state: str = TRUNCATING
    delayed_until: float = 0.0  # reactor seconds; backoff after an error

    @property
    def key(self) -> tuple[str, int]:
        return self.topic, self.partition


def whole_batches(records, fetch_offset: int) -> bytes:
    """The bytes of the whole batches in a fetched ``records`` that end after
    ``fetch_offset``: a leader may send a batch from before it (it reads from a segment
    position) and a piece of one after the size limit."""
    start = end = None
    for pos, header in split_batches(records):
        if header.next_offset <= fetch_offset:
            continue
        if start is None:
            start = pos
        end = pos + header.size
    return b"" if start is None or end is None else bytes(records[start:end])


class ReplicaFetcher:
    """Follows the partitions of one leader broker into local logs."""

    def __init__(
        self,
        clock,
        client: BrokerClient,
        broker_id: int,
        config: FetcherConfig | None = None,
    ):
        self.clock = clock
        self.client = client
        self.broker_id = broker_id
        self.config = config or FetcherConfig()
        self.partitions: dict[tuple[str, int], PartitionFetch] = {}
        self._leader_serves_epochs: bool | None = None  # asked with ApiVersions once
        self._stopping = False
        self._done: defer.Deferred | None = None
        self._wakeup: defer.Deferred | None = None

    # --- control ------------------------------------------------------------------------------

    def add_partition(
        self, topic: str, partition: int, log: FollowerLog, leader_epoch: int
    ) -> None:
        """Follow ``topic``-``partition`` of this leader at ``leader_epoch`` (again, after a
        pause or with a new epoch): it truncates first, then fetches."""
        self.partitions[topic, partition] = PartitionFetch(topic, partition, log, leader_epoch)
        self._wake()

    def remove_partition(self, topic: str, partition: int) -> None:
        """Stop following a partition; a response in flight for it is ignored."""
        self.partitions.pop((topic, partition), None)

    def state(self, topic: str, partition: int) -> str | None:
        fetch = self.partitions.get((topic, partition))
        return None if fetch is None else fetch.state

    def start(self) -> None:
        """Start the loop (once)."""
        if self._done is None:
            self._done = defer.ensureDeferred(self._run())

    def stop(self) -> defer.Deferred:
        """End the loop: the request in flight fails, the client closes; fires when done."""
        self._stopping = True
        self._wake()
        closed = self.client.close()
        if self._done is None:
            return closed
        return defer.gatherResults([closed, self._done])

    # --- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = self.config.fetch_backoff_ms / 1000.0
        while not self._stopping:
            try:
                if self._leader_serves_epochs is None:
                    await self._ask_versions()
                now = self.clock.seconds()
                ready = [f for f in self.partitions.values() if f.delayed_until <= now]
                truncating = [f for f in ready if f.state == TRUNCATING]
                fetching = [f for f in ready if f.state == FETCHING]
                if truncating:
                    await self._truncate(truncating)
                elif fetching:
                    await self._fetch(fetching)
                else:
                    await self._sleep(self._next_due(now))
            except (KafkaError, ProtocolError, ConnectionError) as exc:
                if self._stopping:
                    break
                log.warning("replica fetcher to %s: %s", self.client, exc)
                await self._sleep(backoff)
            except Exception:
                if self._stopping:
                    break
                log.exception("replica fetcher to %s failed; retrying", self.client)
                await self._sleep(backoff)

    def _next_due(self, now: float) -> float | None:
        due = [
            f.delayed_until - now
            for f in self.partitions.values()
            if f.state != PAUSED and f.delayed_until > now
        ]
        return min(due) if due else None

    def _sleep(self, seconds: float | None) -> defer.Deferred:
        """Until ``seconds`` pass (None: forever) or ``_wake``."""
        wakeup: defer.Deferred = defer.Deferred()
        self._wakeup = wakeup
        if seconds is not None:
            timer = self.clock.callLater(max(seconds, 0.0), self._wake)
            wakeup.addBoth(lambda r: (timer.cancel() if timer.active() else None, r)[1])
        return wakeup

    def _wake(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.called:
            wakeup.callback(None)

    def _delay(self, fetch: PartitionFetch) -> None:
        fetch.delayed_until = self.clock.seconds() + self.config.fetch_backoff_ms / 1000.0

    def _current(self, fetch: PartitionFetch, state: str) -> bool:
        """True if ``fetch`` is still followed and in ``state`` (a response may arrive after
        the partition was removed or added again)."""
        return self.partitions.get(fetch.key) is fetch and fetch.state == state

    async def _ask_versions(self) -> None:
        body = await self.client.request(ApiKey.API_VERSIONS, {})
        served = {k["api_key"]: k["max_version"] for k in body["api_keys"]}
        self._leader_serves_epochs = (
            served.get(ApiKey.OFFSET_FOR_LEADER_EPOCH, -1)
            >= truncation.OFFSET_FOR_LEADER_EPOCH_VERSION
        )

    # --- truncation ---------------------------------------------------------------------------

    async def _truncate(self, fetches: list[PartitionFetch]) -> None:
        asking = {}
        for fetch in fetches:
            latest = fetch.log.latest_epoch()
            if latest is None or not self._leader_serves_epochs:
                self._truncated(fetch, truncation.truncation_without_epochs(fetch.log))
            else:
                asking[fetch.key] = (fetch, latest)
        if not asking:
            return
        answers = await truncation.epoch_end_offsets(
            self.client,
            self.broker_id,
            {key: (fetch.leader_epoch, latest) for key, (fetch, latest) in asking.items()},
        )
        for key, (fetch, _) in asking.items():
            if not self._current(fetch, TRUNCATING):
                continue
            answer = answers.get(key)
            if answer is None:
                self._delay(fetch)
            elif answer.error_code == NONE:
                decision = truncation.truncation_for(
                    fetch.log, answer.leader_epoch, answer.end_offset
                )
                self._truncated(fetch, decision)
            elif answer.error_code == UNSUPPORTED_VERSION:
                self._truncated(fetch, truncation.truncation_without_epochs(fetch.log))
            else:
                self._error(fetch, answer.error_code, "OffsetForLeaderEpoch")

    def _truncated(self, fetch: PartitionFetch, decision: truncation.Truncation) -> None:
        if truncation.apply_truncation(fetch.log, decision):
            log.info("%s-%d truncated to %d", fetch.topic, fetch.partition, decision.offset)
        fetch.log.high_watermark = min(fetch.log.high_watermark, fetch.log.log_end_offset)
        if decision.complete:
            fetch.state = FETCHING

    # --- fetching -----------------------------------------------------------------------------

    def fetch_request(self, fetches: list[PartitionFetch]) -> dict:
        """The Fetch v11 body asking for ``fetches`` at their logs' ends."""
        by_topic: dict[str, list[dict]] = {}
        for fetch in fetches:
            by_topic.setdefault(fetch.topic, []).append(
                {
                    "partition": fetch.partition,
                    "current_leader_epoch": fetch.leader_epoch,
                    "fetch_offset": fetch.log.log_end_offset,
                    "log_start_offset": fetch.log.log_start_offset,
                    "partition_max_bytes": self.config.fetch_max_bytes,
                }
            )
        return {
            "replica_id": self.broker_id,
            "max_wait_ms": self.config.fetch_wait_max_ms,
            "min_bytes": self.config.fetch_min_bytes,
            "max_bytes": self.config.fetch_response_max_bytes,
            "isolation_level": 0,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
            "forgotten_topics_data": [],
            "rack_id": "",
        }

    async def _fetch(self, fetches: list[PartitionFetch]) -> None:
        sent = {f.key: (f, f.log.log_end_offset) for f in fetches}
        body = await self.client.request(
            ApiKey.FETCH, self.fetch_request(fetches), version=FETCH_VERSION
        )
        if body["error_code"] != NONE:
            for fetch in fetches:
                self._error(fetch, body["error_code"], "Fetch")
            return
        out_of_range = []
        for topic in body["responses"]:
            for answer in topic["partitions"]:
                entry = sent.get((topic["topic"], answer["partition_index"]))
                if entry is None or not self._current(entry[0], FETCHING):
                    continue
                fetch, offset = entry
                if fetch.log.log_end_offset != offset:
                    continue  # the log moved under us (truncated by its owner): ask again
                code = answer["error_code"]
                if code == NONE:
                    self._append(fetch, answer)
                elif code == OFFSET_OUT_OF_RANGE:
                    out_of_range.append((fetch, answer["log_start_offset"]))
                else:
                    self._error(fetch, code, "Fetch")
        for fetch, leader_start in out_of_range:
            await self._out_of_range(fetch, leader_start)

    def _append(self, fetch: PartitionFetch, answer: dict) -> None:
        records = answer["records"]
        if records:
            try:
                whole = whole_batches(records, fetch.log.log_end_offset)
                if whole:
                    fetch.log.append_as_follower(whole)
            except KafkaError as exc:  # corrupt data or a log refusing it: this one waits
                log.error("%s-%d: append failed: %s", fetch.topic, fetch.partition, exc)
                self._delay(fetch)
                return
        fetch.log.high_watermark = min(answer["high_watermark"], fetch.log.log_end_offset)
        if answer["log_start_offset"] > fetch.log.log_start_offset:  # DeleteRecords at the leader
            fetch.log.delete_records_before(answer["log_start_offset"])

    async def _out_of_range(self, fetch: PartitionFetch, leader_start: int) -> None:
        body = await self.client.request(
            ApiKey.LIST_OFFSETS,
            {
                "replica_id": self.broker_id,
                "isolation_level": 0,
                "topics": [
                    {
                        "name": fetch.topic,
                        "partitions": [
                            {
                                "partition_index": fetch.partition,
                                "current_leader_epoch": fetch.leader_epoch,
                                "timestamp": LATEST_TIMESTAMP,
                            }
                        ],
                    }
                ],
            },
        )
        answer = body["topics"][0]["partitions"][0]
        if not self._current(fetch, FETCHING):
            return
        if answer["error_code"] != NONE:
            self._error(fetch, answer["error_code"], "ListOffsets")
            return
        action, offset = truncation.out_of_range_action(
            fetch.log.log_end_offset, leader_start, answer["offset"]
        )
        if action == "truncate_to":
            fetch.log.truncate_to(offset)
        elif action == "start_at":
            fetch.log.truncate_fully_and_start_at(offset)
        else:
            self._delay(fetch)
        log.info("%s-%d out of range: %s %d", fetch.topic, fetch.partition, action, offset)

    def _error(self, fetch: PartitionFetch, code: int, api: str) -> None:
        error = error_for_code(code)
        if code in PAUSING_ERRORS:
            fetch.state = PAUSED
            log.info("%s-%d paused: %s answered %s", fetch.topic, fetch.partition, api, error.name)
        else:
            self._delay(fetch)
            log.warning("%s-%d: %s answered %s", fetch.topic, fetch.partition, api, error.name)
