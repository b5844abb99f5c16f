"""A member of a Kafka consumer group coordinated by the brokers (JoinGroup, SyncGroup,
Heartbeat, LeaveGroup, OffsetFetch, OffsetCommit), so a group can span our brokers or any
Kafka cluster reached by bootstrap servers alone, and share a group with other Kafka clients.

    >>> with KafkaGroupConsumer("mirror", ["clicks"], "kafka1:9092") as consumer:
    ...     for message in consumer:            # each message goes to one member of the group
    ...         handle(message)                 # finished when the next one is requested

``poll()`` joins (or rejoins) the group when it must: the coordinator is found
(``coordinator.py``), the member joins with its subscription in the consumer protocol
(``broker/protocol/consumer_protocol.py``; "range" and "roundrobin" offered, in Kafka's
``partition.assignment.strategy`` order), the leader - any member, of any client - assigns
(``assignors.py``), SyncGroup hands each member its partitions, the committed offsets are
fetched (none: ``auto_offset_reset``), ``on_assign(owned)`` runs (it may ``seek``), and
fetching starts.  Heartbeats go from a thread of their own, so a slow poll loop keeps the
membership.  A heartbeat answered REBALANCE_IN_PROGRESS makes the next poll call
``on_revoke(owned)`` (on the polling thread, before the partitions are given up: the caller
may flush and commit), commit what was handed over (with ``auto_commit``), and rejoin; a member
the coordinator no longer knows (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, after its session
expired) rejoins without committing; a coordinator that moved or went away is found again,
with back-off.  An application that does not poll for ``rebalance_timeout_ms`` (Kafka's
``max.poll.interval.ms``) is taken out of the group by the heartbeat thread, so its
partitions go on being read by the others; its next poll rejoins.

At least once: a commit stores the offset after what poll handed over (``commit()``), or
what the caller says (``commit_offsets``).  Auto-commit (every ``auto_commit_interval_ms``,
inside poll; before a rebalance gives the partitions up; at ``close``) commits what earlier
polls returned, never what this poll returns.  Every commit carries the member id and the
generation, so a fenced member never moves an offset: ``CommitFailedError``.

Static membership (KIP-345): with ``group_instance_id``, a restarted member takes its old
place without a rebalance, and ``close()`` does not leave the group.

States: *new*, *joining*, *stable*, *closed*.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from broker.protocol.consumer_protocol import (
    PROTOCOL_TYPE,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from broker.protocol.errors import (
    KafkaError,
    MemberIdRequiredError,
    OffsetOutOfRangeError,
    RebalanceInProgressError,
    UnknownMemberIdError,
    error_for_code,
)
from broker.protocol.registry import ApiKey
from broker.protocol.schema import ProtocolError

from .assignors import Member, assignor
from .cluster import ClusterClient
from .consumer import EARLIEST, LATEST, Consumer, Message
from .coordinator import (
    FENCED,
    CommitFailedError,
    CoordinatorLink,
    CoordinatorLostError,
    Generation,
    Heartbeats,
)
from .security import PLAINTEXT, ClientSecurity

log = logging.getLogger(__name__)

_RESETS = {"earliest": EARLIEST, "smallest": EARLIEST, "latest": LATEST, "largest": LATEST}
METADATA_CHECK_S = 5.0  # how often a leader looks for grown or new topics


class _Rejoin(Exception):
    """Join again at once (the coordinator asked for it)."""


class KafkaGroupConsumer:
    """A member of a broker-coordinated consumer group; see the module docstring."""

    def __init__(
        self,
        group: str,
        topics: list[str],
        bootstrap_servers: str,
        *,
        on_assign=None,
        on_revoke=None,
        auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        auto_offset_reset: str = "latest",
        session_timeout_ms: int = 10000,
        rebalance_timeout_ms: int = 300000,
        heartbeat_interval_ms: int = 3000,
        group_instance_id: str | None = None,
        consumer_options: dict | None = None,
        partition_assignment_strategy: tuple[str, ...] = ("range", "roundrobin"),
        client_id: str = "headrace-consumer",
        request_timeout_ms: int = 30000,
        security: ClientSecurity = PLAINTEXT,
    ):
        if not isinstance(group, str) or not group:
            raise ValueError("the group needs a name")
        if isinstance(topics, str) or not topics or not all(isinstance(t, str) for t in topics):
            raise ValueError("topics must be a non-empty list of topic names")
        if auto_offset_reset not in (*_RESETS, "none"):
            raise ValueError("auto_offset_reset must be earliest, latest or none")
        if not 0 < heartbeat_interval_ms < session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be above 0 and below session_timeout_ms")
        if not partition_assignment_strategy:
            raise ValueError("name at least one partition assignment strategy")
        for name in partition_assignment_strategy:
            assignor(name)  # ValueError for an unknown name
        self.group = group
        self.topics = sorted(set(topics))
        self.on_assign, self.on_revoke = on_assign, on_revoke
        self.auto_commit = auto_commit
        self.auto_commit_interval = auto_commit_interval_ms / 1000.0
        self.auto_offset_reset = auto_offset_reset
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.group_instance_id = group_instance_id
        self.strategies = tuple(partition_assignment_strategy)
        self.cluster = ClusterClient(
            bootstrap_servers,
            client_id=client_id,
            request_timeout=request_timeout_ms / 1000,
            security=security,
        )
        self.consumer = Consumer(
            cluster=self.cluster,
            **{
                "fetch_max_wait_ms": 200,
                "auto_offset_reset": "earliest"
                if _RESETS.get(auto_offset_reset) == EARLIEST
                else "latest",
                **(consumer_options or {}),
            },
        )
        self.link = CoordinatorLink(self.cluster, group, request_timeout_ms / 1000)
        self.generation = Generation()
        self.heartbeats = Heartbeats(
            self.link,
            self.generation,
            group,
            group_instance_id,
            heartbeat_interval_ms / 1000,
            max_poll_interval=rebalance_timeout_ms / 1000,
        )
        self.state = "new"
        self.rebalances = 0
        self._owned: dict[str, list[int]] = {}
        self._delivered: dict[tuple[str, int], int] = {}  # the offset after what was handed over
        self._committed: dict[tuple[str, int], int] = {}
        self._last_commit = time.monotonic()
        self._leader_counts: dict[str, int] | None = None  # partitions a leader assigned
        self._last_check = time.monotonic()

    # --- the group -----------------------------------------------------------------------

    @property
    def owned(self) -> dict[str, list[int]]:
        """The partitions this member owns, by topic (each list sorted)."""
        return {t: list(ps) for t, ps in self._owned.items()}

    @property
    def member_id(self) -> str:
        return self.generation.member_id

    def start(self) -> KafkaGroupConsumer:
        """Find the coordinator, join, sync, fetch the committed offsets and assign."""
        if self.state == "new":
            self.state = "joining"
            self.heartbeats.start()
            self._ensure_active()
        return self

    def subscribe(self, topics: list[str]) -> None:
        """Change the topics: the next poll gives the partitions up and rejoins."""
        if isinstance(topics, str) or not topics:
            raise ValueError("topics must be a non-empty list of topic names")
        self.topics = sorted(set(topics))
        with self.generation.lock:
            self.generation.rejoin = True

    def _ensure_active(self) -> None:
        with self.generation.lock:
            needed = self.generation.rejoin or not self.generation.stable
            fenced = self.generation.fenced
        if not needed:
            return
        self._revoke(fenced)
        self.state = "joining"
        backoff = 0.1
        while True:
            if self.link.closed.is_set():
                raise CoordinatorLostError(f"{self.group}: closed while joining")
            try:
                assignment = self._join_and_sync()
                offsets = self._fetch_committed(assignment)
                break
            except _Rejoin:
                continue
            except CoordinatorLostError as exc:
                log.info("%s: %s; joining again", self.group, exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        self._assign(assignment, offsets)

    def _revoke(self, fenced: bool) -> None:
        """Give the owned partitions up: ``on_revoke``, then (unless fenced) auto-commit."""
        owned = self.owned
        if owned and self.on_revoke is not None:
            try:
                self.on_revoke(owned)
            except CommitFailedError as exc:
                if not fenced:
                    raise
                log.info("%s: a fenced member's commit was refused: %s", self.group, exc)
        if owned and self.auto_commit and not fenced:
            self._commit_quietly()
        self._owned = {}
        self._delivered.clear()
        self._committed.clear()
        self.consumer.assign([])

    def _commit_quietly(self) -> None:
        try:
            self.commit()
        except (KafkaError, CoordinatorLostError) as exc:  # CommitFailedError among them
            log.warning("%s: offsets not committed: %s", self.group, exc)

    def _join_and_sync(self) -> dict[str, list[int]]:
        """One JoinGroup and SyncGroup; the partitions assigned to this member."""
        with self.generation.lock:
            self.generation.stable = self.generation.fenced = False
            self.generation.generation_id = -1
            member_id = self.generation.member_id
        self.rebalances += 1
        metadata = encode_subscription(self.topics)
        join_timeout = self.rebalance_timeout_ms / 1000 + self.link.request_timeout
        answer = self.link.request(
            ApiKey.JOIN_GROUP,
            {
                "group_id": self.group,
                "session_timeout_ms": self.session_timeout_ms,
                "rebalance_timeout_ms": self.rebalance_timeout_ms,
                "member_id": member_id,
                "group_instance_id": self.group_instance_id,
                "protocol_type": PROTOCOL_TYPE,
                "protocols": [{"name": n, "metadata": metadata} for n in self.strategies],
            },
            timeout=join_timeout,
        )
        code = answer["error_code"]
        if code == MemberIdRequiredError.code:
            with self.generation.lock:
                self.generation.member_id = answer["member_id"]
            raise _Rejoin
        if code == UnknownMemberIdError.code:
            with self.generation.lock:
                self.generation.member_id = ""
            raise _Rejoin
        if code == RebalanceInProgressError.code:
            raise _Rejoin
        if code:
            detail = {
                26: f" (session_timeout_ms={self.session_timeout_ms})",
                23: " (the name belongs to another kind of group, or no protocol is common)",
            }.get(code, "")
            raise error_for_code(code)(f"JoinGroup of group {self.group} refused{detail}")
        member_id, generation_id = answer["member_id"], answer["generation_id"]
        with self.generation.lock:
            self.generation.member_id, self.generation.generation_id = member_id, generation_id
        assignments = []
        self._leader_counts = None
        if answer["leader"] == member_id:
            assignments = self._lead(answer["protocol_name"], answer["members"])
        answer = self.link.request(
            ApiKey.SYNC_GROUP,
            {
                "group_id": self.group,
                "generation_id": generation_id,
                "member_id": member_id,
                "group_instance_id": self.group_instance_id,
                "assignments": assignments,
            },
            timeout=join_timeout,
        )
        code = answer["error_code"]
        if code == RebalanceInProgressError.code:
            raise _Rejoin
        if code in FENCED:
            self.generation.fence(code)
            raise _Rejoin
        if code:
            raise error_for_code(code)(f"SyncGroup of group {self.group} refused")
        try:
            partitions = decode_assignment(answer["assignment"]).partitions
        except ProtocolError as exc:
            raise ProtocolError(
                f"{self.group}: the leader's assignment is malformed: {exc}"
            ) from exc
        with self.generation.lock:
            if (self.generation.member_id, self.generation.generation_id) == (
                member_id,
                generation_id,
            ):
                self.generation.stable = True
                self.generation.rejoin = False
        log.info(
            "%s: member %s of generation %d owns %s",
            self.group,
            member_id,
            generation_id,
            partitions,
        )
        return partitions

    def _lead(self, protocol: str, members: list[dict]) -> list[dict]:
        """The leader's SyncGroup assignments: every member's subscription, the topics'
        partition counts, and the group's assignor."""
        subscribed: dict[str, Member] = {}
        for m in members:
            try:
                topics = decode_subscription(m["metadata"]).topics
            except ProtocolError as exc:
                log.warning("%s: member %s's subscription: %s", self.group, m["member_id"], exc)
                topics = []
            subscribed[m["member_id"]] = Member(topics, m.get("group_instance_id"))
        counts = self._partition_counts(sorted({t for s in subscribed.values() for t in s.topics}))
        result = assignor(protocol)(subscribed, counts)
        self._leader_counts = counts
        self._last_check = time.monotonic()
        log.info("%s: leader assigned with %s: %s", self.group, protocol, result)
        return [{"member_id": m, "assignment": encode_assignment(ps)} for m, ps in result.items()]

    def _partition_counts(self, topics: list[str]) -> dict[str, int]:
        if not topics:
            return {}
        self.cluster.refresh(topics, allow_auto_create=True)
        return {t: len(self.cluster.topics[t]) for t in topics if self.cluster.topics.get(t)}

    def _fetch_committed(self, assignment: dict[str, list[int]]) -> dict[tuple[str, int], int]:
        """The group's committed offsets of ``assignment`` (absent: none committed)."""
        if not assignment:
            return {}
        answer = self.link.request(
            ApiKey.OFFSET_FETCH,
            {
                "group_id": self.group,
                "topics": [{"name": t, "partition_indexes": ps} for t, ps in assignment.items()],
                "require_stable": True,
            },
        )
        if answer.get("error_code"):
            raise error_for_code(answer["error_code"])(f"OffsetFetch of group {self.group}")
        found = {}
        for topic in answer["topics"]:
            for p in topic["partitions"]:
                if p["error_code"]:
                    raise error_for_code(p["error_code"])(
                        f"OffsetFetch {self.group} {topic['name']}-{p['partition_index']}"
                    )
                if p["committed_offset"] >= 0:
                    found[(topic["name"], p["partition_index"])] = p["committed_offset"]
        return found

    def _assign(
        self, assignment: dict[str, list[int]], offsets: dict[tuple[str, int], int]
    ) -> None:
        starts = []
        for topic, partitions in assignment.items():
            for p in partitions:
                offset = offsets.get((topic, p))
                if offset is None:
                    if self.auto_offset_reset == "none":
                        raise OffsetOutOfRangeError(
                            f"group {self.group} has no committed offset for {topic}-{p} "
                            "and auto_offset_reset is none"
                        )
                    offset = _RESETS[self.auto_offset_reset]
                starts.append((topic, p, offset))
        self.consumer.assign(starts)
        self._owned = {t: sorted(ps) for t, ps in sorted(assignment.items()) if ps}
        self._committed = dict(offsets)
        # the starting positions count as handed over, so a reset to the latest sticks
        self._delivered = {(t, p): self.consumer.position(t, p) for t, p, _ in starts}
        self.state = "stable"
        if self.on_assign is not None:
            self.on_assign(self.owned)

    def _check_partition_counts(self) -> None:
        """A leader rejoins when a subscribed topic grew or appeared (every few seconds)."""
        if self._leader_counts is None or time.monotonic() - self._last_check < METADATA_CHECK_S:
            return
        self._last_check = time.monotonic()
        try:
            counts = self._partition_counts(self.topics_of_group())
        except (OSError, KafkaError) as exc:
            log.debug("%s: metadata check failed: %r", self.group, exc)
            return
        if counts != self._leader_counts:
            log.info("%s: partitions changed (%s); rebalancing", self.group, counts)
            with self.generation.lock:
                self.generation.rejoin = True

    def topics_of_group(self) -> list[str]:
        """The topics the leader assigned last (every member's subscription)."""
        return sorted(set(self._leader_counts or {}) | set(self.topics))

    # --- reading -------------------------------------------------------------------------

    def poll(self, timeout: float = 1.0, max_messages: int = 100_000) -> list[Message]:
        """The next messages for this member, waiting up to ``timeout`` seconds; rebalances
        and auto-commits happen in here (see the module docstring)."""
        messages = self._poll(timeout, max_messages)
        for m in messages:
            self._delivered[(m.topic, m.partition)] = m.offset + 1
        return messages

    def _poll(self, timeout: float, max_messages: int) -> list[Message]:
        if self.state == "closed":
            raise RuntimeError(f"the member of group {self.group} is closed")
        if self.state == "new":
            self.start()
        deadline = time.monotonic() + timeout
        while True:
            self.heartbeats.polled()
            self._ensure_active()
            self._check_partition_counts()
            if (
                self.auto_commit
                and time.monotonic() - self._last_commit >= self.auto_commit_interval
            ):
                self._commit_quietly()
            left = deadline - time.monotonic()
            if self._owned:
                messages = self.consumer.poll(max(0.0, min(left, 0.5)), max_messages)
                if messages:
                    return messages
            elif left > 0:
                time.sleep(min(left, 0.1))
            if deadline - time.monotonic() <= 0:
                return []

    def __iter__(self) -> Iterator[Message]:
        """Every message for this member; a message is handed over when the next is
        requested (so a commit at that point covers it)."""
        while self.state != "closed":
            for m in self._poll(1.0, 100_000):
                yield m
                if self.state == "closed":
                    return
                if m.partition in self._owned.get(m.topic, ()):
                    self._delivered[(m.topic, m.partition)] = m.offset + 1

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read an owned partition from ``offset`` on (EARLIEST -2 / LATEST -1 resolved);
        the next commit stores that position."""
        if partition not in self._owned.get(topic, ()):
            raise ValueError(f"{topic}-{partition} is not owned by this member")
        self.consumer.seek(topic, partition, offset)
        self._delivered[(topic, partition)] = self.consumer.position(topic, partition)

    # --- committing ----------------------------------------------------------------------

    def commit(self) -> None:
        """Commit the offset after everything handed over so far, in every owned partition."""
        changed = {k: o for k, o in self._delivered.items() if self._committed.get(k) != o}
        self._last_commit = time.monotonic()
        if changed:
            self.commit_offsets(changed)

    def commit_offsets(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit ``{(topic, partition): next offset to read}`` in this member's generation
        (offsets this member committed already are skipped).
        CommitFailedError if the coordinator no longer counts this member in the group's
        current generation (nothing is committed; the next poll rejoins); the KafkaError of
        any other refusal; CoordinatorLostError if no coordinator answered in time."""
        if not offsets:
            return
        with self.generation.lock:
            member_id, generation_id = self.generation.member_id, self.generation.generation_id
            fenced = self.generation.fenced or generation_id < 0
        if fenced:
            raise CommitFailedError(
                f"group {self.group}: this member is not in the current generation "
                "(fenced, or rejoining); nothing committed",
                self.generation.fenced_code,
                offsets,
            )
        offsets = {k: o for k, o in offsets.items() if self._committed.get(k) != o}
        if not offsets:  # all committed already, by this member in this generation
            return
        by_topic: dict[str, list] = {}
        for (topic, partition), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append(
                {
                    "partition_index": partition,
                    "committed_offset": offset,
                    "committed_leader_epoch": -1,
                    "committed_metadata": "",
                }
            )
        body = {
            "group_id": self.group,
            "generation_id_or_member_epoch": generation_id,
            "member_id": member_id,
            "group_instance_id": self.group_instance_id,
            "topics": [{"name": t, "partitions": ps} for t, ps in by_topic.items()],
        }
        deadline = time.monotonic() + self.link.request_timeout
        while True:  # a coordinator that moved or died is found again, until the deadline
            try:
                answer = self.link.request(ApiKey.OFFSET_COMMIT, body)
                break
            except CoordinatorLostError:
                if time.monotonic() > deadline or self.link.closed.is_set():
                    raise
                time.sleep(0.1)
        codes = {
            (t["name"], p["partition_index"]): p["error_code"]
            for t in answer["topics"]
            for p in t["partitions"]
        }
        refused = {k: c for k, c in codes.items() if c}
        done = {k: o for k, o in offsets.items() if codes.get(k, 0) == 0}
        self._committed.update(done)
        if not refused:
            return
        code = next(iter(refused.values()))
        if code in FENCED or code == RebalanceInProgressError.code:
            if code in FENCED:
                self.generation.fence(code)
            else:
                with self.generation.lock:
                    self.generation.rejoin = True
            raise CommitFailedError(
                f"group {self.group}: the coordinator refused the commit of member "
                f"{member_id} in generation {generation_id} ({error_for_code(code).name})",
                code,
                refused,
            )
        raise error_for_code(code)(f"OffsetCommit of group {self.group}: {sorted(refused)}")

    # --- leaving -------------------------------------------------------------------------

    def close(self) -> None:
        """``on_revoke``, commit what was handed over (with ``auto_commit``), leave the group
        (a static member stays, to come back without a rebalance), and disconnect."""
        if self.state == "closed":
            return
        try:
            with self.generation.lock:
                active = self.generation.stable and not self.generation.fenced
                member_id = self.generation.member_id
            if self.state != "new" and active:
                self._revoke(fenced=False)
                if self.group_instance_id is None:
                    self._leave(member_id)
        finally:
            self.state = "closed"
            self.heartbeats.stop()
            self.link.close()
            self.consumer.close()
            self.cluster.close()

    def _leave(self, member_id: str) -> None:
        try:
            code = self.link.request(
                ApiKey.LEAVE_GROUP, {"group_id": self.group, "member_id": member_id}
            )["error_code"]
        except CoordinatorLostError as exc:
            log.info("%s: could not leave the group: %s", self.group, exc)
            return
        if code:
            log.info("%s: LeaveGroup answered %s", self.group, error_for_code(code).name)
        with self.generation.lock:
            self.generation.stable = False

    def __enter__(self) -> KafkaGroupConsumer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["CommitFailedError", "CoordinatorLostError", "KafkaGroupConsumer"]
