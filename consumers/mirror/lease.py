"""A mirror worker's lease on its source partitions: the monotonic time until which it is sure
no other member can own them, so that it may still send their records to the target.

A member owns its partitions while its group session lives, and the group can give them to
another member only once that session expired.  A request the member sent at monotonic time
``t`` and saw answered on its session proves the session lived at ``t``, so it cannot expire
before ``t + session timeout``: the lease runs to ``t + LEASE_FRACTION * session timeout``,
the rest of the session being the margin for the last request to reach the target's broker.
``CLOCK_MONOTONIC`` counts on while a process is stopped (SIGSTOP, a frozen VM), so a member
woken after its session sees its lease lapsed at once.

    >>> lease = Lease(session_timeout=6.0)
    >>> lease.claim(session)                      # partitions claimed on this session
    >>> lease.confirm(sent_at, session)           # a request sent at sent_at was answered
    >>> lease.valid()                             # until sent_at + 4 s

``ZooKeeperRenewal`` renews it for a member of the paper's group: a thread reads the member's
ephemeral registration every ``session / 6`` seconds and confirms when the node is there and
owned by the session the partitions were claimed on.  ``HeartbeatRenewal`` renews it for a
member of a Kafka-protocol group: each heartbeat answered without error in the generation of
the assignment confirms (the coordinator restarts the member's session timer when it takes
the heartbeat, and a rebalance that began later waits its rebalance timeout, at least the
session, for the member before giving its partitions away).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from broker.protocol import zookeeper as layout
from broker.protocol.errors import KafkaError

log = logging.getLogger(__name__)

LEASE_FRACTION = 0.6  # of the session timeout, counted from the send of a confirmed request
RENEWALS_PER_SESSION = 6


class LeaseLapsedError(KafkaError):
    """A batch dropped unsent: the worker's lease on its partition lapsed (its group session
    may be gone), so another member may be copying the partition now."""

    code = -1
    name = "LEASE_LAPSED"
    retriable = False


class Lease:
    """The lease itself (thread-safe; no I/O): ``claim`` on assignment, ``confirm`` for each
    request answered on that session, ``valid`` before sending."""

    def __init__(
        self,
        session_timeout: float,
        fraction: float = LEASE_FRACTION,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.term = session_timeout * fraction
        self.clock = clock
        self._lock = threading.Lock()
        self._session: object = None  # the session the partitions were claimed on
        self._until = float("-inf")

    def claim(self, session: object) -> None:
        """Partitions were claimed on ``session``: earlier confirmations count no more."""
        with self._lock:
            self._session = session
            self._until = float("-inf")

    def confirm(self, sent_at: float, session: object) -> bool:
        """A request sent at ``sent_at`` (by ``clock``) was answered on ``session``."""
        with self._lock:
            if session is None or session != self._session:
                return False
            self._until = max(self._until, sent_at + self.term)
            return True

    def valid(self) -> bool:
        return self.clock() < self._until

    def allows(self, topic: str, partition: int) -> bool:
        """``valid``, shaped as a producer's ``send_gate``."""
        return self.clock() < self._until


class ZooKeeperRenewal:
    """Renews ``lease`` for a ``GroupConsumer`` (the paper's group) from a thread of its own."""

    def __init__(self, member, lease: Lease, session_timeout: float):
        self.member = member
        self.lease = lease
        self.interval = session_timeout / RENEWALS_PER_SESSION
        self.timeout = session_timeout * LEASE_FRACTION
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mirror-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def claim(self) -> bool:
        """The member just claimed its partitions (on the polling thread): bind the lease to
        its session and confirm at once."""
        client_id = self.member.zk.client_id
        self.lease.claim(client_id[0] if client_id else None)
        return self.confirm()

    def confirm(self) -> bool:
        """One round trip: the member's registration read on the session of the claim."""
        zk = self.member.zk
        client_id = zk.client_id
        if not client_id:
            return False
        sent_at = self.lease.clock()
        try:
            stat = zk.exists_async(
                layout.member_path(self.member.group, self.member.consumer_id)
            ).get(timeout=self.timeout)
        except (KazooException, KazooTimeoutError) as exc:
            log.debug("lease not renewed: %r", exc)
            return False
        if stat is None or stat.ephemeralOwner != client_id[0] or zk.client_id != client_id:
            return False
        return self.lease.confirm(sent_at, client_id[0])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.confirm()
            except Exception as exc:  # never let the renewal die; the lease lapses instead
                log.warning("lease renewal failed: %r", exc)


class HeartbeatRenewal:
    """Renews ``lease`` for a ``KafkaGroupConsumer`` from its heartbeats."""

    def __init__(self, member, lease: Lease, session_timeout: float):
        self.member = member
        self.lease = lease
        self.wait = session_timeout * LEASE_FRACTION

    def start(self) -> None:
        self.member.heartbeats.on_confirmed = self.lease.confirm

    def stop(self) -> None:
        self.member.heartbeats.on_confirmed = None

    def claim(self) -> bool:
        """The member was just given its partitions (on the polling thread): bind the lease
        to this generation and wait, up to the lease's term, for its first heartbeat."""
        member_id, generation_id, _ = self.member.generation.snapshot()
        self.lease.claim((member_id, generation_id))
        deadline = self.lease.clock() + self.wait
        while not self.lease.valid() and self.lease.clock() < deadline:
            time.sleep(0.01)
        return self.lease.valid()

    def confirm(self) -> bool:
        """Heartbeats confirm on their own thread: is the lease valid now."""
        return self.lease.valid()


def renewal_for(member, lease: Lease, session_timeout: float):
    """The renewal that fits the kind of group member ``member`` is."""
    if hasattr(member, "heartbeats"):
        return HeartbeatRenewal(member, lease, session_timeout)
    return ZooKeeperRenewal(member, lease, session_timeout)
