"""Partition assignors for Kafka consumer groups: what the group's leader runs to split the
subscribed topics' partitions among the members.  Pure functions, same results as the Java
client's assignors of the same names, so any member of a mixed group may lead.

    >>> members = {"a": Member(["t"]), "b": Member(["t"])}
    >>> range_assign(members, {"t": 3})
    {'a': {'t': [0, 1]}, 'b': {'t': [2]}}

Members are ordered as Kafka orders them: static members (with a ``group.instance.id``) first,
by instance id, then the others by member id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Member(NamedTuple):
    """What an assignor knows of a member: its subscribed topics and its instance id."""

    topics: list[str]
    group_instance_id: str | None = None


Assignment = dict[str, dict[str, list[int]]]  # member id -> topic -> partitions


def member_order(members: dict[str, Member]) -> list[str]:
    """Member ids in Kafka's order: static members by instance id, then the rest by id."""
    return sorted(
        members,
        key=lambda m: (
            (0, members[m].group_instance_id, m)
            if members[m].group_instance_id is not None
            else (1, "", m)
        ),
    )


def range_assign(members: dict[str, Member], partitions: dict[str, int]) -> Assignment:
    """Per topic, each subscribed member in order takes a contiguous run of the partitions:
    ``n // m`` each, one more for the first ``n % m`` (Kafka's RangeAssignor).  Topics
    missing from ``partitions`` (unknown to the leader) are skipped."""
    result: Assignment = {m: {} for m in members}
    order = member_order(members)
    for topic in sorted({t for m in members.values() for t in m.topics}):
        count = partitions.get(topic, 0)
        consumers = [m for m in order if topic in members[m].topics]
        if count <= 0 or not consumers:
            continue
        per, extra = divmod(count, len(consumers))
        for i, member in enumerate(consumers):
            start = per * i + min(i, extra)
            length = per + (1 if i < extra else 0)
            if length:
                result[member][topic] = list(range(start, start + length))
    return result


def roundrobin_assign(members: dict[str, Member], partitions: dict[str, int]) -> Assignment:
    """Every partition of every subscribed topic, sorted by topic then partition, dealt to the
    members in order, in turn, skipping a member not subscribed to the partition's topic
    (Kafka's RoundRobinAssignor)."""
    result: Assignment = {m: {} for m in members}
    order = member_order(members)
    if not order:
        return result
    turn = 0
    for topic in sorted({t for m in members.values() for t in m.topics}):
        for partition in range(partitions.get(topic, 0)):
            while topic not in members[order[turn]].topics:
                turn = (turn + 1) % len(order)
            result[order[turn]].setdefault(topic, []).append(partition)
            turn = (turn + 1) % len(order)
    return result


ASSIGNORS: dict[str, Callable[[dict[str, Member], dict[str, int]], Assignment]] = {
    "range": range_assign,
    "roundrobin": roundrobin_assign,
}


def assignor(name: str) -> Callable[[dict[str, Member], dict[str, int]], Assignment]:
    """The assignor of that name (Kafka's ``partition.assignment.strategy`` names);
    ValueError naming the known ones otherwise."""
    try:
        return ASSIGNORS[name]
    except KeyError:
        raise ValueError(
            f"unknown partition assignment strategy {name!r} (known: {', '.join(ASSIGNORS)})"
        ) from None


__all__ = ["ASSIGNORS", "Member", "assignor", "member_order", "range_assign", "roundrobin_assign"]
