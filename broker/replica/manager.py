"""The replica manager: turns the partition states this broker watches into its roles, and
keeps each led partition's ``LeaderState``, the acks=all waits and the fetchers.

    >>> replicas = ReplicaManager(broker_id, log_manager, cluster, reactor, config, waiters)
    >>> replicas.start()     # before cluster.start(): every state is delivered, then changes
    >>> replicas.stop()      # Deferred: fetchers stopped, waits failed

For each ``on_partition_state`` (a newer leader epoch or a new ISR, on the reactor thread):

- **leader** (the state names this broker): open the log, note the epoch at the log end in its
  epoch cache, stop fetching it, and lead with the state's ISR and the log's high watermark
  (with a single replica nothing is tracked: its high watermark is its log end, so replication
  factor 1 costs the append path nothing);
- **follower** (a replica, another leader): fail the partition's acks=all waits with
  NOT_LEADER_OR_FOLLOWER and hand the log to the ``ReplicaFetcher`` of its leader, which
  truncates it first (KIP-279) and then fetches;
- **not a replica**, or no leader: stop following it.

Every ``replica.lag.time.max.ms`` / 2 each leader takes its shrink candidates out of the ISR
with a conditional write of the state node (``ZkCluster.update_isr``); a follower that caught
up is put back the same way after its fetch.  A failed write means the controller (or a newer
leader) moved on: the state watch then delivers what to obey.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from typing import Any

from twisted.internet import defer, task

from ..protocol.errors import NONE, error_for_code
from ..security.interbroker import PLAINTEXT_LINK
from .client import BrokerClient
from .delayed import DelayedProduces
from .fetcher import FetcherConfig, ReplicaFetcher
from .lease import SessionLease
from .state import LeaderState

log = logging.getLogger(__name__)

NotEnoughReplicasError = error_for_code(19)  # NOT_ENOUGH_REPLICAS
NotLeaderOrFollowerError = error_for_code(6)  # NOT_LEADER_OR_FOLLOWER
UnknownLeaderEpochError = error_for_code(75)  # UNKNOWN_LEADER_EPOCH
OffsetNotAvailableError = error_for_code(78)  # OFFSET_NOT_AVAILABLE

Key = tuple[str, int]


class ReplicaManager:
    """This broker's roles for every partition it is a replica of (see module)."""

    def __init__(self, broker_id: int, logs, cluster, reactor: Any, config, waiters):
        self.broker_id = broker_id
        self.logs = logs
        self.cluster = cluster
        self.metadata = cluster.metadata
        self.reactor = reactor
        self.config = config
        self.waiters = waiters
        self.lag_ms = config["replica.lag.time.max.ms"]
        self.fetcher_config = FetcherConfig.from_properties(
            {k: str(config[k]) for k in FETCHER_PROPERTIES}
        )
        self.leaders: dict[Key, LeaderState] = {}
        self.delayed = DelayedProduces(reactor)
        self.fetchers: dict[int, ReplicaFetcher] = {}
        self.following: dict[Key, int] = {}  # partition -> the leader fetched from
        self._isr_writes: set[Key] = set()
        self.isr_shrinks = 0  # ISR changes this broker wrote as a leader (for metrics)
        self.isr_expands = 0
        self._shrink = task.LoopingCall(self.shrink_isrs)
        self._shrink.clock = reactor
        self.lease = SessionLease(cluster, reactor, config["zookeeper.session.timeout.ms"] / 1000)
        self.client_login = None  # (mechanism, user, password) on a SASL inter-broker listener

    def _now_ms(self) -> int:
        return int(self.reactor.seconds() * 1000)

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.cluster.on_partition_state.append(self.on_partition_state)
        self._shrink.start(self.lag_ms / 2000.0, now=False)
        self.lease.start()
        # The first renewal once the registries are loaded: a start-up that waited out an old
        # registration for longer than the lease would refuse writes until it came.
        self.cluster.on_loaded.append(lambda _metadata: self.lease.renew())

    def stop(self) -> defer.Deferred:
        if self._shrink.running:
            self._shrink.stop()
        self.lease.stop()
        for topic, partition in list(self.leaders):
            self.delayed.fail_all(topic, partition)
        fetchers, self.fetchers = list(self.fetchers.values()), {}
        return defer.DeferredList([f.stop() for f in fetchers])

    # --- roles --------------------------------------------------------------------------------

    def on_partition_state(self, topic: str, partition: int, state, version: int) -> None:
        replicas = self.metadata.topics.get(topic, {}).get(partition, [])
        if state.leader == self.broker_id:
            self._become_leader(topic, partition, state, replicas)
        elif self.broker_id in replicas and state.leader >= 0:
            self._become_follower(topic, partition, state)
        else:
            self.stop_replica(topic, partition)

    def _become_leader(self, topic: str, partition: int, state, replicas) -> None:
        key = (topic, partition)
        self._stop_fetching(key)
        plog = self._open_log(topic, partition)
        leo = plog.log_end_offset
        plog.leader_epochs.assign(state.leader_epoch, leo)
        if len(replicas) < 2:  # its only replica: the hw is the log end, nothing to track
            self.leaders.pop(key, None)
            return
        leader = self.leaders.get(key)
        if leader is None:
            leader = self.leaders[key] = LeaderState(topic, partition, self.broker_id)
        first = not leader.is_leader or leader.leader_epoch != state.leader_epoch
        leader.become_leader(
            state.leader_epoch, state.isr, replicas, leo, plog.high_watermark, self._now_ms()
        )
        self._hw_maybe_moved(topic, partition, plog, leader)
        if first:
            log.info("leading %s-%d at epoch %d", topic, partition, state.leader_epoch)
        if len(leader.isr) < plog.config.min_insync_replicas:
            self.delayed.not_enough_replicas(topic, partition)

    def _become_follower(self, topic: str, partition: int, state) -> None:
        key = (topic, partition)
        leader = self.leaders.pop(key, None)
        if leader is not None:
            leader.become_follower()
        self.delayed.fail_all(topic, partition)
        self.waiters.wake_all(topic, partition)
        if self.following.get(key) not in (None, state.leader):
            self._stop_fetching(key)
        info = self.metadata.brokers.get(state.leader)
        if info is None:
            return  # the leader's registration is not seen yet: the next state brings it
        link = getattr(self.cluster, "inter_broker", PLAINTEXT_LINK)
        address = link.address(info)
        if address is None:
            log.error(
                "cannot follow %s-%d: leader %d has no %s listener (inter.broker.listener.name)",
                topic,
                partition,
                state.leader,
                link.listener,
            )
            return
        plog = self._open_log(topic, partition)
        fetcher = self.fetchers.get(state.leader)
        if fetcher is None:
            client = BrokerClient(
                self.reactor,
                address[0],
                address[1],
                security=link,
                client_id=f"replica-{self.broker_id}",
                request_timeout_ms=self.fetcher_config.socket_timeout_ms,
                backoff_ms=self.fetcher_config.fetch_backoff_ms,
                max_response_bytes=self.fetcher_config.fetch_response_max_bytes * 2,
                login=self.client_login,
            )
            log.info(
                "fetching from broker %d at %s:%d over listener %s (%s)",
                state.leader,
                address[0],
                address[1],
                link.listener,
                link.security_protocol,
            )
            fetcher = ReplicaFetcher(self.reactor, client, self.broker_id, self.fetcher_config)
            self.fetchers[state.leader] = fetcher
            fetcher.start()
        self.following[key] = state.leader
        fetcher.add_partition(topic, partition, plog, state.leader_epoch)
        log.info("following %s-%d from broker %d", topic, partition, state.leader)

    def _open_log(self, topic: str, partition: int):
        """The partition's log, stamped with the topic's id.  A log of another topic of that
        name (another id) is never served: deleted if that topic is known to be deleted (its
        tombstone), set aside otherwise."""
        topic_id = self.metadata.topic_ids.get(topic)
        plog = self.logs.get_log(topic, partition)
        if plog is not None and topic_id and plog.topic_id not in (None, topic_id):
            old_id = plog.topic_id
            self.stop_replica(topic, partition)
            self.waiters.wake_all(topic, partition)
            if old_id in self.metadata.deleted_topic_ids:
                self.logs.delete_log(topic, partition)
                log.warning(
                    "%s-%d: deleted the log of deleted topic id %s", topic, partition, old_id
                )
            else:
                aside = self.logs.set_aside_log(topic, partition)
                log.warning(
                    "%s-%d: log of unknown topic id %s set aside as %s",
                    topic,
                    partition,
                    old_id,
                    aside,
                )
            plog = None
        if plog is None:
            plog = self.logs.get_or_create_log(topic, partition)
        if topic_id and plog.topic_id != topic_id:
            plog.set_topic_id(topic_id)
        return plog

    def stop_replica(self, topic: str, partition: int) -> None:
        """Neither lead nor follow the partition (its log is going away, or it is not ours)."""
        key = (topic, partition)
        self._stop_fetching(key)
        leader = self.leaders.pop(key, None)
        if leader is not None:
            leader.become_follower()
            self.delayed.fail_all(topic, partition)

    def _stop_fetching(self, key: Key) -> None:
        leader_id = self.following.pop(key, None)
        fetcher = self.fetchers.get(leader_id) if leader_id is not None else None
        if fetcher is not None:
            fetcher.remove_partition(*key)

    # --- the leader's side of requests --------------------------------------------------------

    def check_leading(self, topic: str, partition: int) -> None:
        """Before any append to a replicated partition: NOT_LEADER_OR_FOLLOWER unless this
        broker's session lease holds (a stalled leader may have been deposed unawares) and
        the state it leads under was written after its registration (after a new session,
        the cached state may be the old one's; ``lease.py``)."""
        if (topic, partition) in self.leaders:
            mzxid = self.metadata.states[topic][partition].mzxid
            if not self.lease.may_lead(mzxid):
                raise NotLeaderOrFollowerError(
                    f"{topic}-{partition}: {self.lease.refusal(mzxid)}; it may no longer lead"
                )

    def check_in_sync(self, topic: str, partition: int, min_isr: int) -> None:
        """Before an acks=all append: NOT_ENOUGH_REPLICAS if the ISR is below ``min_isr``."""
        leader = self.leaders.get((topic, partition))
        if leader is not None:
            isr = leader.isr
        else:  # a single replica (or a state not acted on yet): the state's ISR
            isr = frozenset(self.metadata.states[topic][partition].state.isr)
        if len(isr) < min_isr:
            raise NotEnoughReplicasError(
                f"{topic}-{partition} has {len(isr)} in-sync replicas {sorted(isr)}; "
                f"min.insync.replicas is {min_isr}"
            )

    def appended(self, topic: str, partition: int, plog, size: int) -> None:
        """The leader appended ``size`` bytes: followers' long polls wake; consumers' wake
        when the hw moves (at once with a single replica or an ISR of one)."""
        leader = self.leaders.get((topic, partition))
        if leader is None:  # a single replica: the hw is the log end
            plog.high_watermark = plog.log_end_offset  # the log cleaner stops there
            self.waiters.appended(topic, partition, size)
            return
        self.waiters.appended(topic, partition, size, consumers=False)
        if leader.leader_appended(plog.log_end_offset):
            self._hw_moved(topic, partition, plog, leader)

    def wait_for_hw(self, topic: str, partition: int, offset: int, timeout_ms: int):
        """None if the hw already covers ``offset``; else a Deferred of the error code."""
        leader = self.leaders.get((topic, partition))
        if leader is None or leader.high_watermark >= offset:
            return None
        return self.delayed.wait(topic, partition, offset, timeout_ms)

    def acks_all_answer(self, responses: list, timeout_ms: int) -> defer.Deferred | None:
        """For an acks=all Produce's answers (``produce.encode_response``'s tuples, changed
        in place): None if the high watermark covers every appended batch; else a Deferred
        fired once it does, or with REQUEST_TIMED_OUT / NOT_ENOUGH_REPLICAS_AFTER_APPEND /
        NOT_LEADER_OR_FOLLOWER written into the answers of the batches that failed."""
        waits = []
        for topic, answers in responses:
            for j, answer in enumerate(answers):
                if answer[1] == NONE:
                    plog = self.logs.get_log(topic, answer[0])
                    end = plog.log_end_offset if plog is not None else 0
                    d = self.wait_for_hw(topic, answer[0], end, timeout_ms)
                    if d is not None:
                        waits.append((answers, j, d))
        if not waits:
            return None

        def settle(codes):
            for (answers, j, _), code in zip(waits, codes, strict=True):
                if code != NONE:
                    message = error_for_code(code).description
                    answers[j] = (answers[j][0], code, -1, -1, -1, None, message)

        return defer.gatherResults([d for _, _, d in waits]).addCallback(settle)

    def high_watermark(self, topic: str, partition: int, plog) -> int:
        leader = self.leaders.get((topic, partition))
        return leader.high_watermark if leader is not None else plog.log_end_offset

    def latest_for_consumers(self, topic: str, partition: int, plog) -> int:
        """ListOffsets' latest offset for a consumer: the high watermark, once it is known.
        A new leader learns the true one from its followers' next fetches; until its hw
        reaches the start of its epoch it answers OFFSET_NOT_AVAILABLE (retriable), as
        Kafka's ``Partition.fetchOffsetForTimestamp`` does, rather than an end that is
        behind what was acknowledged."""
        hw = self.high_watermark(topic, partition, plog)
        entries = plog.leader_epochs.entries
        if (topic, partition) in self.leaders and entries and entries[-1].start_offset > hw:
            raise OffsetNotAvailableError(
                f"{topic}-{partition}: the high watermark {hw} is behind the start of leader "
                f"epoch {entries[-1].epoch} at {entries[-1].start_offset}"
            )
        return hw

    @staticmethod
    def epoch_at(plog, offset: int, timestamp: int) -> int:
        """The leader epoch ListOffsets answers with the offset it found (as Kafka: the latest
        epoch for the log end, else the epoch of the offset's batch from the epoch cache);
        -1 if there is none."""
        entries = plog.leader_epochs.entries
        if offset < 0 or not entries:
            return -1
        if timestamp == -1:
            return plog.leader_epochs.latest_epoch
        at = bisect_right([e.start_offset for e in entries], offset)
        return entries[at - 1].epoch if at else -1

    def follower_fetched(
        self,
        topic: str,
        partition: int,
        replica_id: int,
        offset: int,
        plog,
        leader_epoch=-1,
        log_start: int = -1,
    ):
        """A follower's Fetch at ``offset`` (its log end; ``log_start`` its log start, for
        ``low_watermark``).  From a broker that is not a
        replica it is refused as Kafka's ``Partition.followerReplicaOrThrow`` does:
        UNKNOWN_LEADER_EPOCH if the fetch named a current leader epoch (it may be a replica
        this leader does not know of yet), else NOT_LEADER_OR_FOLLOWER; both are retried."""
        key = (topic, partition)
        leader = self.leaders.get(key)
        replicas = leader.replicas if leader else self.metadata.topics.get(topic, {}).get(partition)
        if replica_id not in (replicas or ()):
            refusal = UnknownLeaderEpochError if leader_epoch >= 0 else NotLeaderOrFollowerError
            raise refusal(
                f"broker {replica_id} is not a replica of {topic}-{partition} "
                f"(replicas {list(replicas or ())})"
            )
        if leader is None:  # a single replica: nothing to track
            return
        if leader.follower_fetched(replica_id, offset, plog.log_end_offset, self._now_ms()):
            self._hw_moved(topic, partition, plog, leader)
        leader.followers[replica_id].log_start_offset = log_start
        if leader.expand_candidate(replica_id):
            self._write_isr(
                key, leader, leader.isr | {replica_id}, f"replica {replica_id} caught up"
            )

    def low_watermark(self, topic: str, partition: int, plog) -> int:
        """Kafka's low watermark of a led partition: the smallest log start offset among its
        replicas on live brokers, as their fetches last reported them (-1 while one has not
        reported since this leader's epoch began); DeleteRecords waits for it."""
        leader = self.leaders.get((topic, partition))
        starts = [plog.log_start_offset]
        if leader is not None:
            live = self.metadata.brokers
            starts += [f.log_start_offset for r, f in leader.followers.items() if r in live]
        return min(starts)

    def _hw_maybe_moved(self, topic, partition, plog, leader) -> None:
        if leader.high_watermark != plog.high_watermark:
            self._hw_moved(topic, partition, plog, leader)

    def _hw_moved(self, topic, partition, plog, leader) -> None:
        # Kafka's DelayedProduce: a wait the hw reaches while the ISR is below
        # min.insync.replicas answers NOT_ENOUGH_REPLICAS_AFTER_APPEND, however the ISR shrank
        # (our own write, or the state node's watch seen first).
        if len(leader.isr) < plog.config.min_insync_replicas:
            self.delayed.not_enough_replicas(topic, partition)
        plog.high_watermark = leader.high_watermark
        self.delayed.hw_moved(topic, partition, leader.high_watermark)
        self.waiters.hw_moved(topic, partition)

    # --- ISR ----------------------------------------------------------------------------------

    def shrink_isrs(self) -> None:
        now = self._now_ms()
        for key, leader in list(self.leaders.items()):
            out = leader.shrink_candidates(now, self.lag_ms)
            if out:
                self._write_isr(
                    key, leader, leader.isr - out, f"replicas {sorted(out)} fell behind"
                )

    def _write_isr(self, key: Key, leader: LeaderState, isr, why: str) -> None:
        """Propose ``isr`` (one write per partition at a time), logging ``why``."""
        known = self.metadata.states.get(key[0], {}).get(key[1])
        if known is None or key in self._isr_writes:
            return
        if not self.lease.may_lead(known.mzxid):
            # A state from before our registration is the controller's to replace; a write
            # of ours would pass for one made after it (lease.py).
            return
        self._isr_writes.add(key)
        new_isr = sorted(isr, key=lambda b: (b != self.broker_id, b))
        log.info("%s-%d: %s; writing ISR %s", *key, why, new_isr)
        d = self.cluster.update_isr(*key, new_isr, leader.leader_epoch, known.version)

        def written(_):
            # Against the ISR the write replaced (the state's watch may have applied it first).
            if len(new_isr) < len(known.state.isr):
                self.isr_shrinks += 1
            elif len(new_isr) > len(known.state.isr):
                self.isr_expands += 1
            if self.leaders.get(key) is leader and leader.leader_epoch == known.state.leader_epoch:
                plog = self.logs.get_log(*key)
                if plog is not None and len(new_isr) < plog.config.min_insync_replicas:
                    self.delayed.not_enough_replicas(*key)
                if leader.apply_isr(new_isr) and plog is not None:
                    self._hw_moved(key[0], key[1], plog, leader)
            log.info("%s-%d: ISR now %s", *key, new_isr)

        def refused(failure):
            log.info("%s-%d: ISR change not written (%s)", *key, failure.value)

        d.addCallbacks(written, refused)
        d.addBoth(lambda _: self._isr_writes.discard(key))


FETCHER_PROPERTIES = (
    "replica.fetch.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.fetch.min.bytes",
    "replica.fetch.backoff.ms",
    "replica.socket.timeout.ms",
)

__all__ = ["ReplicaManager"]
