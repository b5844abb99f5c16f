"""A leader's lease on its ZooKeeper session: while it holds, the controller cannot have
deposed this broker, so a replicated partition it leads may take writes.

    >>> lease = SessionLease(cluster, reactor, session_timeout=6.0)
    >>> lease.start()        # renews every session_timeout / 6 with one ZooKeeper round trip
    >>> lease.held()         # False after a stall (SIGSTOP, a frozen VM) or a lost session
    >>> lease.may_lead(known_state.mzxid)   # held, and the state written for this registration

ZooKeeper expires a session only once it has heard nothing from it for the session timeout,
and the controller moves leadership only after that; so an answer to a request sent at time
``s`` proves the session alive until about ``s + timeout``.  A broker that was stopped past
that point wakes with requests queued in its sockets and a reactor that reads them before any
watch tells it of the new leader: without the lease it would acknowledge them (acks=1) and
then truncate them away as a follower.  States: *held* (renewed within ``HELD_FRACTION`` of
the timeout, on the current session), *lapsed* (not renewed since, or the session lost and
not registered again yet; the broker answers NOT_LEADER_OR_FOLLOWER, which clients retry
after a metadata refresh).

A new session (the old one expired) renews the lease, but proves nothing about the states
this broker cached: its watches read them again asynchronously, and the controller, which
sees this broker's new registration as a bounce (KIP-380), writes the partitions' new
leaders a moment later.  So a partition may take writes only under a state written after
this broker's registration (``may_lead``: the state node's mzxid above the broker epoch, the
czxid of the registration): the controller wrote it knowing this incarnation.  The controller
re-decides every partition a bounced broker led or followed in sync, and so does a newly
elected one for a live broker registered after a partition's state (``broker/controller.py``),
so such a state always comes; until it does the partition is refused.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task

# Of the session timeout: the share after the last confirmed request during which the session
# is surely alive (the rest is margin for ZooKeeper's tick-rounded expiry).
HELD_FRACTION = 0.8
RENEWALS_PER_TIMEOUT = 6


def written_after_registration(state_mzxid: int, broker_epoch: int) -> bool:
    """Whether a partition state last written at zxid ``state_mzxid`` was written after the
    registration whose czxid is ``broker_epoch`` (no registration yet: -1, never)."""
    return broker_epoch >= 0 and state_mzxid > broker_epoch


class SessionLease:
    """This broker's lease on its ZooKeeper session (see module)."""

    def __init__(self, cluster, reactor: Any, session_timeout: float):
        self.cluster = cluster  # a ZkCluster: its ``client`` (once started) and ``state``
        self.reactor = reactor
        self.session_timeout = session_timeout
        self.confirmed_at = reactor.seconds()  # start-up: registration just confirmed it
        self._session_id = None
        self._pending = False
        self._renew = task.LoopingCall(self.renew)
        self._renew.clock = reactor

    def start(self) -> None:
        self._renew.start(self.session_timeout / RENEWALS_PER_TIMEOUT, now=False)

    def stop(self) -> None:
        if self._renew.running:
            self._renew.stop()

    def held(self) -> bool:
        """Whether the session is surely alive now and this broker registered on it (see
        module)."""
        if not self.cluster.registered_again:
            return False
        return self.reactor.seconds() - self.confirmed_at < self.session_timeout * HELD_FRACTION

    def may_lead(self, state_mzxid: int) -> bool:
        """Whether a partition this broker leads under a state last written at zxid
        ``state_mzxid`` may take writes now: the lease holds and the state was written after
        this broker's registration (see module)."""
        return written_after_registration(state_mzxid, self.cluster.broker_epoch) and self.held()

    def refusal(self, state_mzxid: int) -> str:
        """Why ``may_lead`` is false, for the NOT_LEADER_OR_FOLLOWER answer."""
        if not self.held():
            return "this broker's ZooKeeper session is not confirmed (stalled or lost)"
        return (
            f"its state (zxid {state_mzxid}) predates this broker's registration (broker "
            f"epoch {self.cluster.broker_epoch}): the controller has not decided for it yet"
        )

    def renew(self) -> None:
        """Send one request (an ``exists`` of the root); its answer renews the lease."""
        client = self.cluster.client
        if client is None or self._pending:
            return
        self._pending = True
        sent = self.reactor.seconds()
        session = client.client_id
        result = client.exists_async("/")
        result.rawlink(lambda r: self.reactor.callFromThread(self._answered, sent, session, r))

    def _answered(self, sent: float, session, result) -> None:
        self._pending = False
        # A session the request was not sent on proves nothing about the old one; a new
        # session's first renewal counts only from its own requests.
        if result.successful() and session == self.cluster.client.client_id:
            self.confirmed_at = max(self.confirmed_at, sent)
