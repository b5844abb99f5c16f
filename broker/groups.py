"""Consumer groups of Kafka clients: the coordinator's state machine, without sockets.

    >>> coordinator = GroupCoordinator(clock=reactor)
    >>> d = coordinator.join("g", "", None, "consumer", [("range", metadata)], 10000, 30000,
    ...                      version=5, client_id="c", client_host="/127.0.0.1")
    >>> d.addCallback(print)   # fires when the rebalance completes (or with an error at once)

The group protocol of Kafka's clients (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), as a
broker answers it.  States::

    Empty --join--> PreparingRebalance --all joined / timeout--> CompletingRebalance
    CompletingRebalance --leader's SyncGroup--> Stable --join, leave, expiry--> PreparingRebalance
    (any) --last member gone--> Empty

A rebalance completes when every known member has rejoined, or when the largest rebalance
timeout of the members passes (dynamic members that did not rejoin are removed; a member
joining again unchanged gets the current generation, as in Kafka); a group's first
rebalance waits ``initial_rebalance_delay_ms`` for more members (Kafka's
``group.initial.rebalance.delay.ms``).  The protocol is the one every member supports that
the members rank highest (a vote, as Kafka does).  The leader (the first member to join, kept
across generations while it stays) gets every member's metadata and hands out assignments in
SyncGroup.  A member that sends nothing for its session timeout is removed.  Errors where
clients expect them: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS,
MEMBER_ID_REQUIRED (JoinGroup v4+ with no member id), INCONSISTENT_GROUP_PROTOCOL (also a
SyncGroup v5+ naming another protocol type or name than the group's), INVALID_SESSION_TIMEOUT.

Static membership (KIP-345's ``group.instance.id``) as Kafka serves it, its bookkeeping in
``static_members.py``: a restarted static member takes its old self's place without a
rebalance, and the old member id is fenced (FENCED_INSTANCE_ID).

Responses are dicts shaped like the schemas in ``protocol/group_apis.py``.  Time comes from
``clock`` (a reactor, or ``twisted.internet.task.Clock`` in tests); nothing here blocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TypeGuard

from twisted.internet import defer
from twisted.internet.base import DelayedCall

from . import static_members
from .group_protocols import supported_by_all, vote
from .protocol.errors import (
    NONE,
    InconsistentGroupProtocolError,
    InvalidSessionTimeoutError,
    MemberIdRequiredError,
    NotCoordinatorError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
)

log = logging.getLogger(__name__)

EMPTY_GROUP_TTL = 60.0  # seconds an empty group stays before it is forgotten


@dataclass
class Member:
    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    joining: defer.Deferred | None = None  # a JoinGroup waiting for the rebalance
    syncing: defer.Deferred | None = None  # a SyncGroup waiting for the leader
    expiry: DelayedCall | None = None  # the session timer
    group_instance_id: str | None = None  # a static member's (KIP-345)

    def metadata(self, protocol: str | None) -> bytes:
        return next(meta for name, meta in self.protocols if name == protocol)


@dataclass
class Group:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    # member ids handed out (v4+) and not yet joined, with the timers that forget them
    pending: dict[str, DelayedCall | None] = field(default_factory=dict)
    rebalance_timer: DelayedCall | None = None
    # an empty group is forgotten after a while (its offsets stay in ZooKeeper)
    forget_timer: DelayedCall | None = None
    initial_delay: bool = False  # a first rebalance waits its whole delay for more members
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id


class GroupCoordinator:
    """All the groups one broker coordinates; see the module docstring."""

    def __init__(
        self,
        clock,
        *,
        min_session_timeout_ms: int = 6000,
        max_session_timeout_ms: int = 1_800_000,
        initial_rebalance_delay_ms: int = 3000,
    ):
        self.clock = clock
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.initial_rebalance_delay_ms = initial_rebalance_delay_ms
        self.groups: dict[str, Group] = {}

    # --- JoinGroup -----------------------------------------------------------------------

    def join(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        *,
        version: int,
        client_id: str = "",
        client_host: str = "",
        reason: str | None = None,
    ) -> defer.Deferred:
        """A JoinGroup; the Deferred fires with the response body.  A ``group_instance_id``
        makes the member static (see ``static_members``); ``reason`` (v8+) is logged."""
        if reason:
            log.info("a member %r joins group %s: %s", member_id, group_id, reason)
        if rebalance_timeout_ms < 0:  # v0 has none: the session timeout serves
            rebalance_timeout_ms = session_timeout_ms
        if not (self.min_session_timeout_ms <= session_timeout_ms <= self.max_session_timeout_ms):
            return defer.succeed(self._join_error(InvalidSessionTimeoutError.code, member_id))
        group = self.groups.get(group_id)
        if (
            not protocols
            or not protocol_type
            or (
                group is not None
                and group.members
                and (
                    group.protocol_type != protocol_type
                    or not supported_by_all(
                        [m for mid, m in group.members.items() if mid != member_id], protocols
                    )
                )
            )
        ):
            return defer.succeed(self._join_error(InconsistentGroupProtocolError.code, member_id))
        if group is None:
            if member_id:  # as Kafka: only a join with no member id creates a group
                return defer.succeed(self._join_error(UnknownMemberIdError.code, member_id))
            group = self.groups[group_id] = Group(group_id)
        if member_id == "":
            member_id = static_members.new_member_id(group_instance_id or client_id or "member")
            if group_instance_id in group.static_members:
                answer = static_members.rejoin(
                    self,
                    group,
                    group_instance_id,
                    member_id,
                    protocols,
                    session_timeout_ms,
                    rebalance_timeout_ms,
                    stable=group.state == STABLE,
                    version=version,
                )
                if answer is not None:
                    return defer.succeed(answer)
            elif version >= 4 and group_instance_id is None:
                # KIP-394: hand out the id and wait for the member to come back with it
                group.pending[member_id] = self.clock.callLater(
                    session_timeout_ms / 1000.0, self._pending_expired, group, member_id
                )
                return defer.succeed(self._join_error(MemberIdRequiredError.code, member_id))
        elif member_id in group.pending:
            timer = group.pending.pop(member_id)
            if timer is not None and timer.active():
                timer.cancel()
        else:
            error = static_members.member_error(group, member_id, group_instance_id)
            if error:
                return defer.succeed(self._join_error(error, member_id))
            known = group.members[member_id]
            if known.protocols == list(protocols) and (
                group.state == COMPLETING or (group.state == STABLE and member_id != group.leader)
            ):
                # As Kafka: a member joining again unchanged (it missed the answer, or an old
                # heartbeat answer sent it) gets the current generation; a leader's join in a
                # stable group is a rebalance (it saw the topics change).
                self._touch(group, known)
                return defer.succeed(self._joined(group, known))

        member = group.members.get(member_id)
        if member is None:
            member = group.members[member_id] = Member(
                member_id,
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms,
                list(protocols),
                group_instance_id=group_instance_id,
            )
            static_members.add(group, member)
        else:
            member.protocols = list(protocols)
            member.session_timeout_ms = session_timeout_ms
            member.rebalance_timeout_ms = rebalance_timeout_ms
        group.protocol_type = protocol_type
        if member.joining is not None and not member.joining.called:
            # the same member joined again before the rebalance completed: answer the old one
            superseded = member.joining
            member.joining = None
            superseded.callback(self._join_error(RebalanceInProgressError.code, member_id))
        joining = member.joining = defer.Deferred()
        if group.forget_timer is not None and group.forget_timer.active():
            group.forget_timer.cancel()
        self._touch(group, member)
        if group.leader is None:
            group.leader = member_id
        if group.state in (EMPTY, STABLE, COMPLETING):
            self._prepare_rebalance(group, initial=group.state == EMPTY)
        else:
            self._maybe_complete_join(group)
        return joining  # member.joining is None already if this join completed the rebalance

    def _pending_expired(self, group: Group, member_id: str) -> None:
        group.pending.pop(member_id, None)
        if not group.members:
            self._forget_later(group)

    def _forget_later(self, group: Group) -> None:
        """An empty group stays visible (DescribeGroups: Empty) for ``EMPTY_GROUP_TTL`` s, then
        goes, so one-off group ids do not pile up in memory."""
        if group.forget_timer is not None and group.forget_timer.active():
            group.forget_timer.cancel()
        group.forget_timer = self.clock.callLater(EMPTY_GROUP_TTL, self._forget, group)

    def _forget(self, group: Group) -> None:
        group.forget_timer = None
        if not group.members and not group.pending and self.groups.get(group.group_id) is group:
            del self.groups[group.group_id]

    def _prepare_rebalance(self, group: Group, initial: bool = False) -> None:
        for member in group.members.values():  # answer SyncGroups left waiting: rejoin
            if member.syncing is not None and not member.syncing.called:
                d, member.syncing = member.syncing, None
                d.callback({"error_code": RebalanceInProgressError.code, "assignment": b""})
        group.state = PREPARING
        if group.rebalance_timer is not None and group.rebalance_timer.active():
            group.rebalance_timer.cancel()
        timeout = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
        group.initial_delay = initial and self.initial_rebalance_delay_ms > 0
        if group.initial_delay:
            timeout = min(timeout, self.initial_rebalance_delay_ms)
        group.rebalance_timer = self.clock.callLater(timeout / 1000.0, self._complete_join, group)
        self._maybe_complete_join(group)  # waits out group.initial_delay by itself

    def _maybe_complete_join(self, group: Group) -> None:
        if group.state == PREPARING and all(
            m.joining is not None and not m.joining.called for m in group.members.values()
        ):
            if group.initial_delay:
                return  # everyone is in, but a first rebalance waits out its delay for more
            if group.rebalance_timer is not None and group.rebalance_timer.active():
                group.rebalance_timer.cancel()
            self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        if group.state != PREPARING:
            return
        group.rebalance_timer = None
        joined = {mid for mid, m in group.members.items() if _waiting(m.joining)}
        for member_id, member in list(group.members.items()):
            # a dynamic member that did not rejoin in time goes; a static one stays (Kafka)
            if member_id not in joined and member.group_instance_id is None:
                self._remove(group, member_id, rebalance=False)
        if group.members and not joined:  # only absent static members: wait for them again
            timeout = max(m.rebalance_timeout_ms for m in group.members.values()) / 1000.0
            group.rebalance_timer = self.clock.callLater(timeout, self._complete_join, group)
            return
        if not group.members:
            group.state, group.protocol, group.leader = EMPTY, None, None
            self._forget_later(group)
            group.generation += 1
            return
        if group.leader not in joined:
            group.leader = next(iter(joined))
        group.protocol = vote(group.members.values())
        group.generation += 1
        group.state = COMPLETING
        for member in group.members.values():
            member.assignment = b""
        for member in group.members.values():
            self._touch(group, member)  # its timer may have lapsed while it waited to join
            d = member.joining
            member.joining = None
            if _waiting(d):  # a static member that did not rejoin syncs when it comes back
                d.callback(self._joined(group, member))

    def _joined(self, group: Group, member: Member, *, leader=None, skip_assignment=False):
        """The JoinGroup answer of ``member`` in the current generation: the leader (or
        ``leader``, as a returning static member is told) gets every member's metadata;
        ``skip_assignment`` (KIP-814) only for a static leader's return."""
        leader = group.leader if leader is None else leader
        return {
            "throttle_time_ms": 0,
            "error_code": NONE,
            "generation_id": group.generation,
            "protocol_type": group.protocol_type,
            "protocol_name": group.protocol,
            "leader": leader,
            "skip_assignment": skip_assignment,
            "member_id": member.member_id,
            "members": self._everyone(group) if member.member_id == leader else [],
        }

    def _everyone(self, group: Group) -> list[dict]:
        """Every member's metadata for the group's protocol, as the leader gets them."""
        return [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "metadata": m.metadata(group.protocol),
            }
            for m in group.members.values()
        ]

    def _join_error(self, code: int, member_id: str) -> dict:
        return {
            "throttle_time_ms": 0,
            "error_code": code,
            "generation_id": -1,
            "protocol_type": None,
            "protocol_name": "",  # JoinGroup v7+ says null (the handler sets it)
            "leader": "",
            "skip_assignment": False,
            "member_id": member_id,
            "members": [],
        }

    def _answer_waiting(self, member: Member, code: int) -> None:
        """Answer a JoinGroup or SyncGroup of ``member`` still waiting with error ``code``
        (one body serves both: each response takes the fields it has)."""
        for d in (member.joining, member.syncing):
            if d is not None and not d.called:
                d.callback({**self._join_error(code, member.member_id), "assignment": b""})

    # --- SyncGroup -----------------------------------------------------------------------

    def sync(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        assignments: list[tuple[str, bytes]],
        protocol_type: str | None = None,
        protocol_name: str | None = None,
        group_instance_id: str | None = None,
    ) -> defer.Deferred:
        """A SyncGroup; the Deferred fires with the response body.  A ``protocol_type`` or
        ``protocol_name`` (v5+; None: not said) that is not the group's is refused."""
        group = self.groups.get(group_id)
        error = static_members.member_error(group, member_id, group_instance_id, generation_id)
        if (
            group is not None
            and not error
            and (
                protocol_type not in (None, group.protocol_type)
                or protocol_name not in (None, group.protocol or protocol_name)
            )
        ):
            error = InconsistentGroupProtocolError.code
        if error:
            return defer.succeed({"throttle_time_ms": 0, "error_code": error, "assignment": b""})
        assert group is not None  # member_error answered UnknownMemberId otherwise
        member = group.members[member_id]
        self._touch(group, member)
        if group.state == PREPARING:
            return defer.succeed(
                {
                    "throttle_time_ms": 0,
                    "error_code": RebalanceInProgressError.code,
                    "assignment": b"",
                }
            )
        if group.state == STABLE:
            return defer.succeed(
                {"throttle_time_ms": 0, "error_code": NONE, "assignment": member.assignment}
            )
        if member.syncing is not None and not member.syncing.called:
            old = member.syncing  # never leave a Deferred unfired
            member.syncing = None
            old.callback(
                {
                    "throttle_time_ms": 0,
                    "error_code": RebalanceInProgressError.code,
                    "assignment": b"",
                }
            )
        member.syncing = defer.Deferred()
        if member_id == group.leader:
            given = dict(assignments)
            for mid, m in group.members.items():
                m.assignment = given.get(mid, b"")
            group.state = STABLE
            for m in group.members.values():
                if m.syncing is not None and not m.syncing.called:
                    d, m.syncing = m.syncing, None
                    d.callback(
                        {"throttle_time_ms": 0, "error_code": NONE, "assignment": m.assignment}
                    )
        return (
            member.syncing
            if member.syncing is not None
            else defer.succeed(
                {"throttle_time_ms": 0, "error_code": NONE, "assignment": member.assignment}
            )
        )

    # --- Heartbeat, LeaveGroup -----------------------------------------------------------

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id=None
    ) -> dict:
        group = self.groups.get(group_id)
        error = static_members.member_error(group, member_id, group_instance_id, generation_id)
        if error:
            return {"throttle_time_ms": 0, "error_code": error}
        assert group is not None  # member_error answered UnknownMemberId otherwise
        self._touch(group, group.members[member_id])
        if group.state == PREPARING:
            return {"throttle_time_ms": 0, "error_code": RebalanceInProgressError.code}
        return {"throttle_time_ms": 0, "error_code": NONE}

    def leave(self, group_id: str, member_id: str, group_instance_id: str | None = None) -> dict:
        """A member leaves: named by its member id, its instance id (fenced if another
        member id holds it now), or (LeaveGroup v3+, an administrator) its instance id alone."""
        group = self.groups.get(group_id)
        member_id = static_members.leaving_member_id(group, member_id, group_instance_id)
        error = static_members.member_error(group, member_id, group_instance_id)
        if error:
            return {"throttle_time_ms": 0, "error_code": error}
        assert group is not None  # member_error answered UnknownMemberId otherwise
        self._remove(group, member_id, rebalance=True)
        return {"throttle_time_ms": 0, "error_code": NONE}

    def check_commit(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id=None
    ) -> int:
        """The error for an OffsetCommit, if any: a commit outside group management
        (generation -1, no member id nor instance id) is taken as is; a member's must match
        the group (v7+: its instance id too)."""
        group = self.groups.get(group_id)
        if generation_id < 0 and not member_id and group_instance_id is None:
            if group is not None and group.members:
                return UnknownMemberIdError.code  # a managed group takes members' commits only
            return NONE
        error = static_members.member_error(group, member_id, group_instance_id, generation_id)
        if error:
            return error
        assert group is not None  # member_error answered UnknownMemberId otherwise
        if group.state == COMPLETING:  # a new generation whose assignment is not out yet
            return RebalanceInProgressError.code
        # PreparingRebalance: the generation that ends may still commit (as in Kafka; the
        # Java consumer commits in onJoinPrepare, before it rejoins)
        self._touch(group, group.members[member_id])
        return NONE

    # --- sessions ------------------------------------------------------------------------

    def _touch(self, group: Group, member: Member) -> None:
        if member.expiry is not None and member.expiry.active():
            member.expiry.reset(member.session_timeout_ms / 1000.0)
        else:
            member.expiry = self.clock.callLater(
                member.session_timeout_ms / 1000.0, self._expire, group, member.member_id
            )

    def _expire(self, group: Group, member_id: str) -> None:
        member = group.members.get(member_id)
        if member is None:
            return
        if any(d is not None and not d.called for d in (member.joining, member.syncing)):
            member.expiry = None
            self._touch(group, member)  # waiting in a rebalance: it is alive
            return
        self._remove(group, member_id, rebalance=True)

    def _remove(self, group: Group, member_id: str, rebalance: bool) -> None:
        member = group.members.pop(member_id)
        static_members.remove(group, member)
        if member.expiry is not None and member.expiry.active():
            member.expiry.cancel()
        self._answer_waiting(member, UnknownMemberIdError.code)
        if group.leader == member_id:
            group.leader = next(iter(group.members), None)
        if not rebalance:
            return
        if not group.members:
            if group.rebalance_timer is not None and group.rebalance_timer.active():
                group.rebalance_timer.cancel()
            group.state, group.protocol, group.leader = EMPTY, None, None
            self._forget_later(group)
            group.generation += 1
        elif group.state in (STABLE, COMPLETING):
            self._prepare_rebalance(group)
        elif group.state == PREPARING:
            self._maybe_complete_join(group)

    # --- DescribeGroups, ListGroups ------------------------------------------------------

    def describe(self, group_id: str) -> dict:
        group = self.groups.get(group_id)
        if group is None:
            return {
                "error_code": NONE,
                "group_id": group_id,
                "group_state": DEAD,
                "protocol_type": "",
                "protocol_data": "",
                "members": [],
            }
        stable = group.state == STABLE
        return {
            "error_code": NONE,
            "group_id": group_id,
            "group_state": group.state,
            "protocol_type": group.protocol_type or "",
            "protocol_data": group.protocol or "",
            "members": [
                {
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_metadata": next(
                        (meta for name, meta in m.protocols if name == group.protocol), b""
                    ),
                    "member_assignment": m.assignment if stable else b"",
                }
                for m in group.members.values()
            ],
        }

    def list(self) -> list[dict]:
        return [
            {"group_id": g.group_id, "protocol_type": g.protocol_type or "", "group_state": g.state}
            for g in self.groups.values()
        ]

    def drop(self, group_id: str) -> None:
        """Forget a group that another broker coordinates now: waiting members are told
        NOT_COORDINATOR and go find the new coordinator."""
        group = self.groups.pop(group_id, None)
        if group is None:
            return
        _cancel_timers(group)
        for member in group.members.values():
            self._answer_waiting(member, NotCoordinatorError.code)

    def close(self) -> None:
        """Cancel every timer (the broker stops, or hands the groups to another broker)."""
        for group in self.groups.values():
            _cancel_timers(group)
        self.groups.clear()


def _waiting(d: defer.Deferred | None) -> TypeGuard[defer.Deferred]:
    """Whether ``d`` is a request still waiting for its answer."""
    return d is not None and not d.called


def _cancel_timers(group: Group) -> None:
    """Cancel every timer a group and its members have running."""
    for timer in [
        group.rebalance_timer,
        group.forget_timer,
        *group.pending.values(),
        *(m.expiry for m in group.members.values()),
    ]:
        if timer is not None and timer.active():
            timer.cancel()
