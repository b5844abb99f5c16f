"""Static group membership (KIP-345): the coordinator's bookkeeping of ``group.instance.id``.

A member that names an instance id is static: the group maps the instance id to its current
member id (``Group.static_members``).  When the instance comes back under no member id (a
restarted process), it gets a new member id that takes the old member's place, assignment
and leadership included, and a stable group whose protocol stays the same does not
rebalance; the old member id is fenced (FENCED_INSTANCE_ID whenever a request names the
instance with it).  As in Kafka's GroupCoordinator, a static member that does not rejoin in
a rebalance stays in the group (only its session timeout removes it), and JoinGroup v9 tells
a static leader coming back to a stable group to skip the assignment (``skip_assignment``).

    >>> member_error(group, "host-1-0b0e...", "host-1")  # 0, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID

Pure: the coordinator (``broker.groups``) calls these with its own state and clock.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from .group_protocols import vote
from .protocol.errors import (
    NONE,
    FencedInstanceIdError,
    IllegalGenerationError,
    UnknownMemberIdError,
)

if TYPE_CHECKING:
    from .groups import Group, GroupCoordinator, Member

log = logging.getLogger(__name__)

# The first JoinGroup version whose leader may be told to skip the assignment (KIP-814).
SKIP_ASSIGNMENT_VERSION = 9


def new_member_id(prefix: str) -> str:
    """A member id as Kafka makes them: the instance id (else the client id), ``-``, a UUID."""
    return f"{prefix}-{uuid.uuid4()}"


def member_error(
    group: Group | None, member_id: str, instance_id: str | None, generation: int | None = None
) -> int:
    """The error for a request of ``member_id`` naming ``instance_id`` (None: a dynamic
    member's request), as Kafka's ``validateCurrentMember``: a named instance must be known
    and mapped to this member id (FENCED_INSTANCE_ID if another took its place), the member
    id must be in the group, and a ``generation`` (if given) the group's own."""
    error = _member_error(group, member_id, instance_id)
    if error or generation is None:
        return error
    assert group is not None  # _member_error answered UnknownMemberId otherwise
    return NONE if generation == group.generation else IllegalGenerationError.code


def _member_error(group: Group | None, member_id: str, instance_id: str | None) -> int:
    if group is None:
        return UnknownMemberIdError.code
    if instance_id is not None:
        current = group.static_members.get(instance_id)
        if current is None:
            return UnknownMemberIdError.code
        if current != member_id:
            log.info(
                "member %s of group %s is fenced: instance %s is member %s now",
                member_id,
                group.group_id,
                instance_id,
                current,
            )
            return FencedInstanceIdError.code
        return NONE
    return NONE if member_id in group.members else UnknownMemberIdError.code


def leaving_member_id(group: Group | None, member_id: str, instance_id: str | None) -> str:
    """The member a LeaveGroup v3+ entry names: its member id, or, when it names only an
    instance id (an administrator removing a static member), that instance's member."""
    if member_id or group is None or instance_id is None:
        return member_id
    return group.static_members.get(instance_id, "")


def add(group: Group, member: Member) -> None:
    """Map a new static member's instance id to its member id."""
    if member.group_instance_id is not None:
        group.static_members[member.group_instance_id] = member.member_id


def remove(group: Group, member: Member) -> None:
    """Forget the mapping of a member that leaves the group (left, expired, or not rejoined)."""
    instance_id = member.group_instance_id
    if instance_id is not None and group.static_members.get(instance_id) == member.member_id:
        del group.static_members[instance_id]


def rejoin(
    coordinator: GroupCoordinator,
    group: Group,
    instance_id: str,
    new_id: str,
    protocols: list[tuple[str, bytes]],
    session_timeout_ms: int,
    rebalance_timeout_ms: int,
    *,
    stable: bool,
    version: int,
) -> dict | None:
    """A known instance joins with no member id: ``new_id`` replaces its member (the old
    id's waiting JoinGroup or SyncGroup answered FENCED_INSTANCE_ID).  In a stable group
    whose protocol stays the same the JoinGroup response comes at once, with the member's
    current generation and no rebalance; otherwise None, and the join goes on as any known
    member's (a rebalance starts, or the one under way waits for it)."""
    old_leader = group.leader
    old_id = group.static_members[instance_id]
    member = group.members.pop(old_id)
    coordinator._answer_waiting(member, FencedInstanceIdError.code)
    if member.expiry is not None and member.expiry.active():
        member.expiry.cancel()  # its timer names the old member id
    member.expiry = None
    member.member_id = new_id
    group.members[new_id] = member
    group.static_members[instance_id] = new_id
    if group.leader == old_id:
        group.leader = new_id
    member.protocols = list(protocols)
    member.session_timeout_ms = session_timeout_ms
    member.rebalance_timeout_ms = rebalance_timeout_ms
    coordinator._touch(group, member)
    log.info(
        "static member %s of group %s is back as %s (was %s)",
        instance_id,
        group.group_id,
        new_id,
        old_id,
    )
    if not stable or vote(group.members.values()) != group.protocol:
        return None
    # As Kafka: below v9 the answer names the leader as it was, so a returning leader does
    # not take itself for the leader (a stable group would ignore its new assignment); from
    # v9 it is told it leads, with every member, and to skip the assignment.
    leads = version >= SKIP_ASSIGNMENT_VERSION and group.leader == new_id
    leader = group.leader if leads else old_leader
    return coordinator._joined(group, member, leader=leader, skip_assignment=leads)
