"""The leader's view of one partition: replicas, ISR, leader epoch, each follower's progress
and the high watermark (Kafka's ``Partition`` on the leader), as a pure state machine.

    >>> p = LeaderState("clicks", 0, local_id=1)
    >>> p.become_leader(epoch=3, isr={1, 2}, replicas=[1, 2, 3], leo=10, hw=10, now_ms=0)
    >>> p.leader_appended(12)                    # 2 is in the ISR and has not fetched: no move
    False
    >>> p.follower_fetched(2, fetch_offset=12, leader_leo=12, now_ms=5)
    True
    >>> p.high_watermark
    12

No I/O and no clock of its own: every time is an argument.  The rules are Kafka's:

- A follower is *caught up* at a fetch whose offset reaches the leader's log end at that
  moment (caught up now), or the leader's log end at its previous fetch (caught up as of
  that previous fetch) (``Replica.updateFetchState``).
- A follower leaves the ISR when its log end differs from the leader's and it has not been
  caught up for ``replica.lag.time.max.ms`` (lag by time only, as Kafka since 0.9 dropped
  ``replica.lag.max.messages``, KAFKA-1546; ``Partition.getOutOfSyncReplicas``).
- A follower may join the ISR when its log end reaches the high watermark and the start
  offset of the leader's current epoch (``Partition.isFollowerInSync``).
- The high watermark is the smallest log end offset in the ISR, the leader's included, and
  never moves back while this broker leads.  A follower whose log end is unknown (no fetch
  since this broker became leader) holds it where it is.
- ISR changes are proposed (``shrink_candidates``, ``expand_candidate``) and applied only
  once ZooKeeper accepted them (``apply_isr``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..protocol.errors import error_for_code

UNKNOWN_OFFSET = -1

NotLeaderOrFollowerError = error_for_code(6)
ReplicaNotAvailableError = error_for_code(9)


class NotAssignedReplicaError(ReplicaNotAvailableError):  # type: ignore[misc, valid-type]
    """A fetch from a broker that is not one of the partition's replicas."""


@dataclass
class FollowerProgress:
    """What the leader knows of one follower (Kafka's ``ReplicaState``)."""

    log_end_offset: int = UNKNOWN_OFFSET
    last_caught_up_ms: int = 0
    last_fetch_leader_leo: int = UNKNOWN_OFFSET
    last_fetch_ms: int = 0
    log_start_offset: int = UNKNOWN_OFFSET  # as its last fetch reported it (DeleteRecords)

    def fetched(self, fetch_offset: int, leader_leo: int, now_ms: int) -> None:
        """Record a fetch at ``fetch_offset`` made when the leader's log ended at
        ``leader_leo``."""
        if fetch_offset >= leader_leo:
            self.last_caught_up_ms = max(self.last_caught_up_ms, now_ms)
        elif fetch_offset >= self.last_fetch_leader_leo:
            self.last_caught_up_ms = max(self.last_caught_up_ms, self.last_fetch_ms)
        self.log_end_offset = fetch_offset
        self.last_fetch_leader_leo = leader_leo
        self.last_fetch_ms = now_ms


class LeaderState:
    """One partition as its leader tracks it.  Before ``become_leader`` (or after
    ``become_follower``) it leads nothing and the follower-facing calls raise
    NOT_LEADER_OR_FOLLOWER."""

    def __init__(self, topic: str, partition: int, local_id: int):
        self.topic = topic
        self.partition = partition
        self.local_id = local_id
        self.is_leader = False
        self.leader_epoch = -1
        self.epoch_start_offset = UNKNOWN_OFFSET  # the leader's log end when its epoch began
        self.replicas: list[int] = []
        self.isr: frozenset[int] = frozenset()
        self.log_end_offset = 0  # the leader's own
        self.high_watermark = 0
        self.followers: dict[int, FollowerProgress] = {}

    def __repr__(self) -> str:
        return (
            f"LeaderState({self.topic}-{self.partition}, epoch {self.leader_epoch}, "
            f"isr {sorted(self.isr)}, leo {self.log_end_offset}, hw {self.high_watermark})"
        )

    # --- roles --------------------------------------------------------------------------------

    def become_leader(
        self,
        epoch: int,
        isr: Iterable[int],
        replicas: Iterable[int],
        leo: int,
        hw: int,
        now_ms: int,
    ) -> None:
        """Lead at ``epoch``.  A new epoch (or a first leadership) starts every follower afresh,
        as Kafka's ``makeLeader`` does: log end unknown, caught up now if in the ISR, else
        never.  The same epoch again only updates the replica set and ISR."""
        new_term = not self.is_leader or epoch != self.leader_epoch
        self.replicas = list(replicas)
        self.isr = frozenset(isr) | {self.local_id}
        self.log_end_offset = leo
        self.is_leader = True
        if new_term:
            self.leader_epoch = epoch
            self.epoch_start_offset = leo
            self.high_watermark = min(hw, leo)
            self.followers = {
                r: FollowerProgress(last_caught_up_ms=now_ms if r in self.isr else 0)
                for r in self.replicas
                if r != self.local_id
            }
        else:
            kept = {r: self.followers.get(r, FollowerProgress()) for r in self.replicas}
            kept.pop(self.local_id, None)
            self.followers = kept
        self._advance_hw()

    def become_follower(self) -> None:
        """Leadership lost: forget the followers' progress."""
        self.is_leader = False
        self.followers = {}

    # --- events -------------------------------------------------------------------------------

    def leader_appended(self, leo: int) -> bool:
        """The leader's log now ends at ``leo``; True if the high watermark moved (an ISR of
        one moves it at once)."""
        self._check_leader()
        self.log_end_offset = leo
        return self._advance_hw()

    def follower_fetched(
        self, replica_id: int, fetch_offset: int, leader_leo: int, now_ms: int
    ) -> bool:
        """A follower fetched from ``fetch_offset`` (so its log ends there) while the leader's
        log ended at ``leader_leo``; True if the high watermark moved."""
        self._check_leader()
        progress = self.followers.get(replica_id)
        if progress is None:
            raise NotAssignedReplicaError(
                f"broker {replica_id} is not a replica of {self.topic}-{self.partition} "
                f"(replicas {self.replicas})"
            )
        self.log_end_offset = leader_leo
        progress.fetched(fetch_offset, leader_leo, now_ms)
        return self._advance_hw()

    # --- ISR ----------------------------------------------------------------------------------

    def shrink_candidates(self, now_ms: int, lag_ms: int) -> set[int]:
        """The ISR members that fell behind: log end not the leader's, and not caught up for
        more than ``lag_ms`` (``replica.lag.time.max.ms``)."""
        if not self.is_leader:
            return set()
        out = set()
        for replica_id in self.isr - {self.local_id}:
            progress = self.followers.get(replica_id)
            if progress is None:
                out.add(replica_id)  # no longer assigned
            elif (
                progress.log_end_offset != self.log_end_offset
                and now_ms - progress.last_caught_up_ms > lag_ms
            ):
                out.add(replica_id)
        return out

    def expand_candidate(self, replica_id: int) -> bool:
        """True if follower ``replica_id`` is out of the ISR and may join it: its log end
        reached the high watermark and the start of the current leader epoch."""
        if not self.is_leader or replica_id in self.isr:
            return False
        progress = self.followers.get(replica_id)
        if progress is None:
            return False
        leo = progress.log_end_offset
        return leo >= self.high_watermark and leo >= self.epoch_start_offset

    def apply_isr(self, new_isr: Iterable[int]) -> bool:
        """Take the ISR ZooKeeper accepted; True if the high watermark moved (a shrink can
        move it)."""
        self.isr = frozenset(new_isr)
        return self._advance_hw() if self.is_leader else False

    def enough_replicas(self, min_isr: int) -> bool:
        """True if the ISR has at least ``min_isr`` members (``min.insync.replicas``)."""
        return len(self.isr) >= min_isr

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)

    # --- internals ----------------------------------------------------------------------------

    def _check_leader(self) -> None:
        if not self.is_leader:
            raise NotLeaderOrFollowerError(
                f"this broker ({self.local_id}) is not the leader of {self.topic}-{self.partition}"
            )

    def _advance_hw(self) -> bool:
        ends = [self.log_end_offset]
        for replica_id in self.isr:
            if replica_id == self.local_id:
                continue
            progress = self.followers.get(replica_id)
            if progress is not None:
                ends.append(progress.log_end_offset)
        candidate = min(ends)
        if candidate > self.high_watermark:
            self.high_watermark = candidate
            return True
        return False
