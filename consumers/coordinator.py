"""The link from a Kafka group member to its group's coordinator, and the heartbeat thread.

    >>> link = CoordinatorLink(cluster, "mirror-group")
    >>> link.request(ApiKey.HEARTBEAT, body)       # finds the coordinator first if need be

``CoordinatorLink`` finds the coordinator (FindCoordinator to any broker, with back-off while
the brokers answer COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR, or none answers) and keeps
two connections to it, one per caller: the polling thread's (JoinGroup may wait a whole
rebalance) and the heartbeat thread's.  A broken connection or an answer saying the
coordinator moved forgets the coordinator; the next request finds it again.

``Heartbeats`` sends a Heartbeat every ``heartbeat.interval.ms`` from a thread of its own
while the member is in a stable generation, so a slow poll loop keeps its membership (as the
Java client does since KIP-62), and records what the answers mean in the member's
``Generation``: a rebalance to join, or the member fenced (rejoin without committing).  A
poll loop stuck for longer than the rebalance timeout (Kafka's ``max.poll.interval.ms``)
makes it leave the group, so the stuck member's partitions go to the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from broker.protocol.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    FencedInstanceIdError,
    IllegalGenerationError,
    KafkaError,
    NotCoordinatorError,
    RebalanceInProgressError,
    UnknownMemberIdError,
    error_for_code,
)
from broker.protocol.registry import ApiKey

from .client import BrokerConnection
from .cluster import ClusterClient

log = logging.getLogger(__name__)

# Answers meaning: find the coordinator again.
COORDINATOR_MOVED = frozenset(
    {
        NotCoordinatorError.code,
        CoordinatorNotAvailableError.code,
        CoordinatorLoadInProgressError.code,
    }
)
# Answers meaning: this member is not in the group's current generation any more.
FENCED = frozenset(
    {UnknownMemberIdError.code, IllegalGenerationError.code, FencedInstanceIdError.code}
)


class CoordinatorLostError(ConnectionError):
    """The coordinator could not be reached, or said it is not the coordinator; it is
    looked up again on the next request."""


class CommitFailedError(KafkaError):
    """An offset commit the coordinator refused because this member is not in the group's
    current generation (fenced after its session expired, or the group rebalanced without
    it): nothing was committed.  ``code`` is the coordinator's answer, ``partitions`` what
    was to be committed.  The member rejoins on its next poll."""

    name = "COMMIT_FAILED"

    def __init__(self, message: str, code: int, partitions=()):
        super().__init__(message)
        self.code = code
        self.partitions = sorted(partitions)


@dataclass
class Generation:
    """The member's place in the group, shared by the polling and heartbeat threads (under
    ``lock``): ids of the current generation, whether it is stable (assignment received),
    and what heartbeats learnt: ``rejoin`` (a rebalance began) and ``fenced`` (the
    coordinator no longer knows this generation of the member)."""

    member_id: str = ""
    generation_id: int = -1
    stable: bool = False
    rejoin: bool = True
    fenced: bool = False
    fenced_code: int = IllegalGenerationError.code  # the answer that fenced the member

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def snapshot(self) -> tuple[str, int, bool]:
        with self.lock:
            return self.member_id, self.generation_id, self.stable

    def fence(self, code: int) -> None:
        """The coordinator refused this generation: forget it (and, for an unknown member,
        the member id) and rejoin."""
        with self.lock:
            if code == UnknownMemberIdError.code:
                self.member_id = ""
            self.generation_id = -1
            self.stable = False
            self.fenced = self.rejoin = True
            self.fenced_code = code


class CoordinatorLink:
    """Connections to a group's coordinator; see the module docstring."""

    CHANNELS = ("main", "heartbeat")

    def __init__(
        self,
        cluster: ClusterClient,
        group: str,
        request_timeout: float = 30.0,
        retry_backoff: float = 0.1,
        max_backoff: float = 2.0,
    ):
        self.cluster = cluster
        self.group = group
        self.request_timeout = request_timeout
        self.retry_backoff, self.max_backoff = retry_backoff, max_backoff
        self.node: tuple[int, str, int] | None = None  # id, host, port
        self._lock = threading.Lock()
        self._locks = {c: threading.Lock() for c in self.CHANNELS}
        self._conns: dict[str, BrokerConnection] = {}
        self.closed = threading.Event()

    def find(self, timeout: float | None = None) -> tuple[int, str, int]:
        """The coordinator (id, host, port), looked up if unknown, with back-off; raises
        CoordinatorLostError after ``timeout`` seconds (None: keep trying until closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = self.retry_backoff
        while True:
            with self._lock:
                if self.node is not None:
                    return self.node
            try:
                node = self._find_once()
            except (OSError, ValueError, KafkaError) as exc:
                log.debug("%s: no coordinator yet (%r)", self.group, exc)
                node = None
            if node is not None:
                with self._lock:
                    self.node = node
                log.info("%s: coordinator is broker %d at %s:%d", self.group, *node)
                return node
            if self.closed.is_set() or (deadline is not None and time.monotonic() > deadline):
                raise CoordinatorLostError(f"no coordinator found for group {self.group}")
            self.closed.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def _find_once(self) -> tuple[int, str, int] | None:
        self.cluster.refresh([], allow_auto_create=False)
        last: Exception | None = None
        for node_id in sorted(self.cluster.brokers):
            try:
                body = self.cluster.request(
                    node_id, ApiKey.FIND_COORDINATOR, {"key": self.group, "key_type": 0}
                )
            except (OSError, ValueError) as exc:
                last = exc
                continue
            if body["error_code"] in COORDINATOR_MOVED:
                return None
            if body["error_code"]:
                raise error_for_code(body["error_code"])(f"FindCoordinator {self.group}")
            return body["node_id"], body["host"], body["port"]
        raise CoordinatorLostError(f"no broker answered FindCoordinator: {last}")

    def forget(self, node: tuple[int, str, int] | None = None) -> None:
        """Forget the coordinator (only if it is still ``node``, when given) and drop the
        connections to it."""
        with self._lock:
            if node is not None and self.node != node:
                return
            self.node = None
            conns, self._conns = self._conns, {}
        for conn in conns.values():
            try:
                conn.close()
            except OSError:
                pass

    def request(
        self, api_key: ApiKey, body: dict, channel: str = "main", timeout: float | None = None
    ) -> dict:
        """One request to the coordinator on ``channel``'s connection, waiting up to
        ``timeout`` seconds (default the request timeout) for the answer.  A broken
        connection or an unreachable coordinator raises CoordinatorLostError; an answer with
        a top-level error saying the coordinator moved does too."""
        node = self.find(timeout=self.request_timeout)
        with self._locks[channel]:
            try:
                conn = self._conns.get(channel)
                if conn is None:
                    conn = BrokerConnection(
                        node[1],
                        node[2],
                        self.request_timeout,
                        self.cluster.client_id,
                        security=self.cluster.security,
                    )
                    with self._lock:
                        if self.node != node:  # forgotten meanwhile
                            conn.close()
                            raise CoordinatorLostError("the coordinator moved")
                        self._conns[channel] = conn
                conn.sock.settimeout(timeout or self.request_timeout)
                answer = conn.request(api_key, body)
            except (OSError, ValueError) as exc:
                if isinstance(exc, CoordinatorLostError):
                    raise
                self.forget(node)
                raise CoordinatorLostError(
                    f"coordinator {node[0]} at {node[1]}:{node[2]}: {exc}"
                ) from exc
        if answer.get("error_code") in COORDINATOR_MOVED:
            self.forget(node)
            raise CoordinatorLostError(
                f"broker {node[0]} answered {error_for_code(answer['error_code']).name}"
            )
        return answer

    def close(self) -> None:
        self.closed.set()
        self.forget()


class Heartbeats(threading.Thread):
    """The heartbeat thread of one member; see the module docstring."""

    def __init__(
        self,
        link: CoordinatorLink,
        generation: Generation,
        group: str,
        instance_id: str | None,
        interval: float,
        max_poll_interval: float = 300.0,
    ):
        super().__init__(name=f"heartbeat-{group}", daemon=True)
        self.link, self.generation, self.group = link, generation, group
        self.instance_id = instance_id
        self.interval = interval
        self.max_poll_interval = max_poll_interval
        self.stopping = threading.Event()
        self.paused = threading.Event()  # tests: a member that stops heartbeating
        self.last_answer = time.monotonic()
        self.last_poll = time.monotonic()
        # called with (monotonic time sent, (member id, generation id)) for each heartbeat
        # answered without error: the member was in that generation when it was sent
        self.on_confirmed: Callable[[float, tuple[str, int]], object] | None = None

    def polled(self) -> None:
        """The polling thread is alive (called by every poll)."""
        self.last_poll = time.monotonic()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            member_id, generation_id, stable = self.generation.snapshot()
            if not stable or self.paused.is_set():
                continue
            if time.monotonic() - self.last_poll > self.max_poll_interval:
                self.leave(member_id, generation_id)
                continue
            self.beat(member_id, generation_id)

    def leave(self, member_id: str, generation_id: int) -> None:
        """The application has not polled within the poll interval (Kafka's
        ``max.poll.interval.ms``, here the rebalance timeout): give the partitions to the rest
        of the group as the Java client does.  A dynamic member leaves (LeaveGroup), a static
        one stops heartbeating and its session expires; either way it counts as fenced, and
        its next poll rejoins without committing."""
        log.warning(
            "%s: no poll for %.1f s (more than the rebalance timeout): leaving the group",
            self.group,
            time.monotonic() - self.last_poll,
        )
        if self.instance_id is None:
            try:
                self.link.request(
                    ApiKey.LEAVE_GROUP,
                    {"group_id": self.group, "member_id": member_id},
                    channel="heartbeat",
                )
            except CoordinatorLostError as exc:
                log.info("%s: could not leave the group: %s", self.group, exc)
        with self.generation.lock:
            if (self.generation.member_id, self.generation.generation_id) != (
                member_id,
                generation_id,
            ):
                return
        code = UnknownMemberIdError if self.instance_id is None else IllegalGenerationError
        self.generation.fence(code.code)

    def beat(self, member_id: str, generation_id: int) -> None:
        body = {
            "group_id": self.group,
            "generation_id": generation_id,
            "member_id": member_id,
            "group_instance_id": self.instance_id,
        }
        sent_at = time.monotonic()
        try:
            code = self.link.request(ApiKey.HEARTBEAT, body, channel="heartbeat")["error_code"]
        except CoordinatorLostError as exc:
            log.info("%s: heartbeat failed (%s); finding the coordinator", self.group, exc)
            return
        self.last_answer = time.monotonic()
        with self.generation.lock:
            if (member_id, generation_id) != (
                self.generation.member_id,
                self.generation.generation_id,
            ):
                return  # the member rejoined meanwhile: this answer is about the past
        confirmed = self.on_confirmed
        if code == 0 and confirmed is not None:
            confirmed(sent_at, (member_id, generation_id))
        if code == RebalanceInProgressError.code:
            with self.generation.lock:
                self.generation.rejoin = True
        elif code in FENCED:
            log.warning(
                "%s: member %s of generation %d was fenced (%s); rejoining",
                self.group,
                member_id,
                generation_id,
                error_for_code(code).name,
            )
            self.generation.fence(code)
        elif code:
            log.warning("%s: heartbeat answered %s", self.group, error_for_code(code).name)

    def stop(self) -> None:
        self.stopping.set()


__all__ = [
    "COORDINATOR_MOVED",
    "FENCED",
    "CommitFailedError",
    "CoordinatorLink",
    "CoordinatorLostError",
    "Generation",
    "Heartbeats",
]
