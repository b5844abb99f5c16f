"""The copy loop of one mirror worker: a member of the source group that sends each message
it is handed to the target partition of the same number (key, value, headers and timestamp
kept, plus a header naming its source), and commits a source offset only once the target
acknowledged every message before it.

On assignment it asks the target what it already holds (``resume.last_mirrored``) and skips
every message up to there, so neither a crash before the commit nor one after it makes a
copy twice.  On revocation it flushes the producer and commits, so the next owner finds every
write.  A message the target refuses for good stops its partition (logged, counted; nothing
past it is committed); the other partitions go on.

With a ``lease`` (``lease.py``; the producer's ``send_gate`` asks it too) nothing is handed
to the producer, nor sent by it, while the lease is not valid.  When it lapses (the process
was stopped past its session, ZooKeeper went silent) the records not yet sent are dropped and
the polled ones thrown away; if the session turns out to live on, the lease is confirmed
again and each partition resumes where the target's scan says (the consumer seeks there),
else the group's rebalance assigns afresh and ``on_assign`` scans.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from broker.protocol.errors import KafkaError
from broker.protocol.records import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP

from ..cluster import ClusterClient
from ..consumer import CorruptBatchError, Message
from ..producer import Producer
from ..producer.batch import BATCH_OVERHEAD, RECORD_OVERHEAD
from .lease import Lease, LeaseLapsedError
from .resume import HEADER, Source, last_mirrored, source_header
from .source import SourceFactory, SourceGroup
from .topics import max_message_bytes

log = logging.getLogger(__name__)

Key = tuple[str, int]


@dataclass
class PartitionCopy:
    """One owned source partition: where copying resumes, what is in flight, what the target
    acknowledged (``acked``: the next source offset not yet known to be in the target)."""

    resume_from: int | None = None  # skip source offsets below this (the target has them)
    acked: int | None = None
    committed: int | None = None
    prefix: bytes = b""  # the source header's value before the offset
    pending: deque = field(default_factory=deque)  # (last source offset, future, records)
    failed: str | None = None
    copied: int = 0
    limit: int | None = None  # the target topic's max.message.bytes, when known


@dataclass
class MirrorCounters:
    """What a worker did; read by the metrics page."""

    copied: int = 0  # records the target acknowledged
    skipped: int = 0  # records skipped because the target already held them
    deleted: int = 0  # records deleted from the source before they were mirrored
    failed: int = 0  # records the target refused for good
    commits: int = 0
    resumes: int = 0


class MirrorWorker:
    """One member of the source group and its copy loop; ``run()`` until ``stop`` is set."""

    def __init__(
        self,
        name: str,
        make_source: SourceFactory,
        producer: Producer,
        target: ClusterClient,
        source_cluster: ClusterClient,
        cluster_id: str,
        topics: list[str],
        commit_interval: float = 5.0,
        poll_timeout: float = 0.5,
        lease: Lease | None = None,
        make_renewal=None,
        refused: set[Key] | None = None,
    ):
        """``lease``, when given, is renewed by ``make_renewal(member)`` (an object with
        ``start``, ``stop``, ``claim`` and ``confirm``) for each group member made."""
        self.name = name
        self.producer = producer
        self.target = target
        self.source_cluster = source_cluster
        self.cluster_id = cluster_id
        self.commit_interval = commit_interval
        self.poll_timeout = poll_timeout
        self.counters = MirrorCounters()
        self.parts: dict[Key, PartitionCopy] = {}
        self.lock = threading.Lock()  # guards ``parts`` against the metrics page
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._topics = list(topics)
        self._wanted: list[str] | None = None
        self.make_source = make_source
        # a member exists only while there are topics to mirror (a Kafka group member
        # cannot subscribe to none)
        self.member: SourceGroup | None = None
        self._last_commit = time.monotonic()
        self.lease = lease
        self.make_renewal = make_renewal
        self.renewal = None
        self.lapsed = False  # the lease lapsed: nothing is copied until it is settled
        # partitions with a batch the target refused for good; the producer's send_gate
        # holds back everything after it (filled on the sender's thread, at once)
        self.refused: set[Key] = refused if refused is not None else set()

    # --- the group's callbacks (polling thread) ---------------------------------------------

    def _assigned(self, owned: dict[str, list[int]]) -> None:
        # what a lapsed lease holds back is dropped (the new scan decides); writes still in
        # flight (a session lost without a revocation) land before the scan
        self._flush()
        self._settle()
        self.lapsed = False
        self.refused.clear()  # a fresh start: the scan decides
        if self.renewal is not None:
            self.renewal.claim()
        parts = {}
        for topic, partitions in owned.items():
            for partition in partitions:
                parts[(topic, partition)] = self._resume_retrying(topic, partition)
        with self.lock:
            self.parts = parts
        log.info("%s: copying %s", self.name, {t: ps for t, ps in owned.items()})

    def _resume_retrying(self, topic: str, partition: int) -> PartitionCopy:
        """``_resume``, asked again (while the group session lives on its own thread) until
        the target and the source answer: copying cannot start before."""
        while True:
            try:
                return self._resume(topic, partition)
            except (OSError, KafkaError) as exc:
                if self.stop.is_set():
                    raise
                log.warning(
                    "%s-%d: cannot find where to resume (%r); retrying", topic, partition, exc
                )
                self.stop.wait(1.0)

    def _resume(self, topic: str, partition: int) -> PartitionCopy:
        copy = PartitionCopy(prefix=source_header(self.cluster_id, topic, partition, 0)[1][:-1])
        if partition not in self.target.topics.get(topic, {}):
            self.target.refresh([topic], allow_auto_create=False)
        if partition not in self.target.topics.get(topic, {}):  # the source grew: not here
            copy.failed = f"the target topic has no partition {partition}"
            log.error("%s-%d: not mirrored: %s", topic, partition, copy.failed)
            return copy
        if self.producer.config.codec == 0:  # uncompressed: a record's size is known here
            copy.limit = max_message_bytes(self.target, topic)
            if copy.limit is not None:  # batches of small records must fit it too
                self.producer.cap_batch_size(copy.limit * 3 // 4)
        last = last_mirrored(
            self.target, topic, partition, Source(self.cluster_id, topic, partition)
        )
        if last is None:
            return copy
        end = self.source_cluster.list_offset(topic, partition, LATEST_TIMESTAMP)
        if last >= end:
            log.warning(
                "%s-%d: the target holds source offset %d, past the source's end %d (was the "
                "source topic deleted and created again?); not resuming from the target",
                topic,
                partition,
                last,
                end,
            )
            return copy
        copy.resume_from = last + 1
        self.counters.resumes += 1
        start = self.source_cluster.list_offset(topic, partition, EARLIEST_TIMESTAMP)
        if start > copy.resume_from:
            lost = start - copy.resume_from
            self.counters.deleted += lost
            log.warning(
                "%s-%d: the source deleted offsets %d..%d before they were mirrored "
                "(%d records); going on from its log start %d",
                topic,
                partition,
                copy.resume_from,
                start - 1,
                lost,
                start,
            )
            copy.resume_from = start
        log.info("%s-%d: the target holds up to source offset %d", topic, partition, last)
        return copy

    def _revoked(self, owned: dict[str, list[int]]) -> None:
        self._flush()
        self._settle()
        self._commit()
        with self.lock:
            self.parts = {}

    # --- the loop ---------------------------------------------------------------------------

    def subscribe(self, topics: list[str]) -> None:
        """Mirror these topics from the next round on (any thread)."""
        self._wanted = list(topics)

    def run(self) -> None:
        try:
            self._follow(self._topics)
            while not self.stop.is_set():
                wanted, self._wanted = self._wanted, None
                if wanted is not None and wanted != self._topics:
                    self._topics = wanted
                    self._follow(wanted)
                if self.member is None:
                    self.stop.wait(0.2)
                    continue
                messages = self._poll()
                if (
                    self.lease is not None
                    and self.parts
                    and (self.lapsed or not self.lease.valid())
                ):
                    self._lapse()
                    continue
                self._copy(messages)
                self._settle()
                if time.monotonic() - self._last_commit >= self.commit_interval:
                    self._commit()
            self._flush()
            self._settle()
            self._commit()
        except BaseException as exc:  # reported by the command, which stops the process
            self.error = exc
            log.exception("%s: stopped", self.name)
        finally:
            try:
                self._leave()
            except Exception as exc:
                log.warning("%s: closing the group member: %r", self.name, exc)

    def _follow(self, topics: list[str]) -> None:
        """Join the group with these topics, change them, or leave it when there are none."""
        if not topics:
            self._leave()
        elif self.member is None:
            member = self.make_source(list(topics), self._assigned, self._revoked)
            self.member = member
            if self.make_renewal is not None:
                self.renewal = self.make_renewal(member)
                self.renewal.start()  # before the member's start, which may assign at once
            member.start()
        else:
            self.member.subscribe(list(topics))

    def _leave(self) -> None:
        member = self.member
        if member is not None:
            if self.renewal is not None:
                self.renewal.stop()
                self.renewal = None
            member.close()  # revokes: flushed and committed
            self.member = None
            with self.lock:
                self.parts = {}

    # --- the lease --------------------------------------------------------------------------

    def _flush(self) -> None:
        """Wait until the producer has nothing open, queued or in flight; with a lease, what
        it holds back once the lease lapsed is dropped rather than waited for."""
        if self.lease is None:
            self.producer.flush()
            return
        while self.producer.flush(0.2) or self.producer.in_flight:
            self._drop_unsent()

    def _drop_unsent(self) -> None:
        """Without a valid lease, drop what the producer still holds of our partitions."""
        if self.lease is None or self.lease.valid() or not self.parts:
            return
        dropped = self.producer.drop_unsent(
            list(self.parts), LeaseLapsedError("the lease on the partition lapsed")
        )
        if dropped:
            log.warning(
                "%s: the lease lapsed; %d records not sent (the partitions' next scan decides)",
                self.name,
                dropped,
            )

    def _lapse(self) -> None:
        """The lease is not valid: drop what waits to be sent and copy nothing until it is
        confirmed on the same session (then every partition is scanned again and read from
        there) or the group assigns afresh (``_assigned``)."""
        if not self.lapsed:
            log.warning("%s: the lease on its partitions lapsed; copying stops", self.name)
            self.lapsed = True
        self._drop_unsent()
        self._settle()
        if self.renewal is None or not self.renewal.confirm():
            self.stop.wait(0.1)  # the session may be lost: the member's poll rebalances
            return
        assert self.member is not None
        with self.lock:
            keys = list(self.parts)
        self._flush()  # in flight before the lapse: lands before the scan
        self._settle()
        parts = {}
        for topic, partition in keys:
            old = self.parts[(topic, partition)]
            if old.failed is not None:
                parts[(topic, partition)] = old
                continue
            copy = self._resume_retrying(topic, partition)
            start = copy.resume_from
            if start is None:
                start = old.acked if old.acked is not None else self._log_start(topic, partition)
            copy.acked, copy.committed = old.acked, old.committed
            self.member.seek(topic, partition, start)
            parts[(topic, partition)] = copy
        with self.lock:
            self.parts = parts
        self.lapsed = False
        log.info("%s: the lease is confirmed again; copying resumes", self.name)

    def _log_start(self, topic: str, partition: int) -> int:
        return self.source_cluster.list_offset(topic, partition, EARLIEST_TIMESTAMP)

    def _poll(self) -> list[Message]:
        """The next messages; a source that cannot be reached now is waited for."""
        assert self.member is not None
        try:
            return self.member.poll(self.poll_timeout, 20_000)
        except CorruptBatchError as err:  # copied by nobody: the partition stops before it
            copy = self.parts.get((err.topic, err.partition))
            if copy is not None:
                self._fail(err.topic, err.partition, copy, err.first_offset, err)
            self.member.seek(err.topic, err.partition, err.next_offset)
        except (OSError, KafkaError) as exc:
            log.warning("%s: cannot fetch now (%r); trying again", self.name, exc)
            self.stop.wait(0.5)
        return []

    def _copy(self, messages: list[Message]) -> None:
        """Send the messages, a run of one partition's at a time (a fetch returns them so)."""
        key: Key | None = None
        copy: PartitionCopy | None = None
        prefix = b""
        run: list[tuple] = []
        offsets: list[int] = []
        for m in messages:
            if (m.topic, m.partition) != key:
                self._send_run(key, copy, run, offsets)
                run, offsets = [], []
                key = (m.topic, m.partition)
                copy = self.parts.get(key)
                if copy is not None:
                    prefix = copy.prefix
            if copy is None or copy.failed is not None:
                continue
            offset = m.offset
            if copy.resume_from is not None:
                if offset < copy.resume_from:
                    self.counters.skipped += 1
                    if copy.acked is None or copy.acked < copy.resume_from:
                        copy.acked = copy.resume_from  # the target has these: done
                    continue
                copy.resume_from = None
            if copy.limit is not None and _batch_size(m) > copy.limit:
                # stop before it: a batch holding it would be refused with its neighbours
                self._send_run(key, copy, run, offsets)
                run, offsets = [], []
                self._stop_before(m, copy)
                continue
            run.append(
                (m.key, m.value, (*m.headers, (HEADER, prefix + b"%d" % offset)), m.timestamp)
            )
            offsets.append(offset)
        self._send_run(key, copy, run, offsets)

    def _send_run(
        self, key: Key | None, copy: PartitionCopy | None, run: list, offsets: list[int]
    ) -> None:
        if not run or key is None or copy is None:
            return
        pending = copy.pending
        last = -1
        for i, future in self.producer.send_many(key[0], key[1], run):
            count = i - last
            last = i
            # one entry per record batch: its last source offset and a future of it
            if pending and pending[-1][1].same_batch(future):
                pending[-1] = (offsets[i], future, pending[-1][2] + count)
            else:
                pending.append((offsets[i], future, count))
                future.add_done_callback(lambda f, key=key: self._batch_done(key, f))

    def _batch_done(self, key: Key, future) -> None:
        """On the sender's thread, as a batch completes: one refused for good closes its
        partition's gate before the sender can send the batches behind it again (the
        target refuses those as out of sequence; sent again, they would land past a gap
        that a restart's scan would then skip)."""
        error = future.exception(0)
        if error is not None and not isinstance(error, LeaseLapsedError):
            self.refused.add(key)

    def _settle(self) -> None:
        """Move each partition's acknowledged offset past the leading batches the target
        has; stop a partition at a batch the target refused for good."""
        for (topic, partition), copy in list(self.parts.items()):
            pending = copy.pending
            while pending and pending[0][1].done():
                offset, future, count = pending[0]
                error = future.exception()
                if isinstance(error, LeaseLapsedError):  # not sent: scanned for again
                    pending.clear()
                    break
                if error is not None:
                    self._fail(topic, partition, copy, copy.acked, error)
                    break
                pending.popleft()
                copy.acked = offset + 1
                copy.copied += count
                self.counters.copied += count

    def _stop_before(self, m: Message, copy: PartitionCopy) -> None:
        """Stop a partition at a record larger than the target topic takes: what came
        before it is sent and acknowledged as usual, nothing after it is sent."""
        copy.failed = (
            f"the record at source offset {m.offset} (about {_batch_size(m)} bytes in a batch "
            f"of its own) is larger than the target topic's max.message.bytes {copy.limit}"
        )
        self.counters.failed += 1
        log.error(
            "%s-%d: %s; this partition stops here (grow the target topic's max.message.bytes "
            "and restart the mirror)",
            m.topic,
            m.partition,
            copy.failed,
        )

    def _fail(self, topic: str, partition: int, copy: PartitionCopy, offset, error) -> None:
        if copy.failed is None:
            copy.failed = (
                f"the records from source offset {offset} on: {type(error).__name__}: {error}"
            )
            self.counters.failed += 1
            log.error(
                "%s-%d: the target refused %s; this partition stops here (committed up to "
                "offset %s)",
                topic,
                partition,
                copy.failed,
                copy.acked,
            )
        copy.pending.clear()
        self.refused.add((topic, partition))
        # what the gate holds back for it is failed here, so flushes do not wait for it
        self.producer.drop_unsent([(topic, partition)], KafkaError(copy.failed))

    def _commit(self) -> None:
        self._last_commit = time.monotonic()
        # every acknowledged offset, changed or not: the member skips what it already
        # committed, and one that could not be written (ZooKeeper away) is written now
        offsets = {key: copy.acked for key, copy in self.parts.items() if copy.acked is not None}
        if not offsets or self.member is None:
            return
        try:
            self.member.commit_offsets(offsets)
        except (KafkaError, OSError, RuntimeError) as exc:  # fenced, or the group moved on
            log.warning("%s: offsets not committed: %r", self.name, exc)
            return
        for key, offset in offsets.items():
            if key in self.parts:
                self.parts[key].committed = offset
        self.counters.commits += 1

    def snapshot(self) -> dict[Key, PartitionCopy]:
        with self.lock:
            return dict(self.parts)


def _batch_size(m: Message) -> int:
    """At most the bytes of a record batch holding ``m`` alone, with the mirror's header."""
    size = BATCH_OVERHEAD + 2 * RECORD_OVERHEAD + 64  # the source header and its varints
    size += len(m.key or b"") + len(m.value or b"")
    return size + sum(10 + len(k) + len(v or b"") for k, v in m.headers)
