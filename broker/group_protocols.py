"""The group protocol a consumer group uses: the one every member supports, by a vote.

Pure functions over the members' ``protocols`` (name, metadata) lists, ranked by each member
as it sent them, as Kafka's GroupMetadata selects a group's protocol.
"""

from __future__ import annotations

from collections.abc import Iterable


def supported_by_all(members: Iterable, protocols: list[tuple[str, bytes]]) -> bool:
    """Whether some protocol of ``protocols`` is one every member of ``members`` offers
    (True with no members)."""
    offered = [{n for n, _ in m.protocols} for m in members]
    return not offered or any(all(name in o for o in offered) for name, _ in protocols)


def vote(members: Iterable) -> str:
    """The protocol every member supports that ranks best across the members (ties go to
    the first name in sorted order)."""
    members = list(members)
    common = set.intersection(*({n for n, _ in m.protocols} for m in members))
    scores = {
        name: sum(next(i for i, (n, _) in enumerate(m.protocols) if n == name) for m in members)
        for name in common
    }
    return min(sorted(scores), key=lambda name: scores[name])
