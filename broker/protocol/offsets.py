"""The offset registry in ZooKeeper, shared by every kind of group (ARCHITECTURE.md, ZooKeeper).
Blocking operations over a kazoo client passed in; paths and node data from ``zookeeper.py``.

The paper's ZooKeeper consumers, the warehouse loaders and the brokers' group coordinator
(for Kafka clients' OffsetCommit/OffsetFetch) all read and write offsets in
``/consumers/<group>/offsets/<topic>/<p>``, so one lag tool serves every group.  A group name
belongs to one kind from its first use (``claim_kind`` creates ``/consumers/<group>/kind`` if
it is absent) until ``headrace groups delete`` removes the group; the other kinds may not join
it or commit to it.  Members that own partitions in ``/consumers/<group>/owners`` commit with
``commit_owned``: one transaction that checks the owner node is still this session's.
Callers on a reactor run these in a thread.
"""

from __future__ import annotations

from kazoo.exceptions import NodeExistsError, NoNodeError, RolledBackError

from . import zookeeper as layout
from .zookeeper import KINDS, LOADER, ZOOKEEPER

ANY_VERSION = -1  # commit_owned: set the offset whatever its version (create it if absent)


class GroupKindError(RuntimeError):
    """The group name belongs to another kind of group."""

    def __init__(self, group: str, owner: str, wanted: str):
        self.group, self.owner, self.wanted = group, owner, wanted
        super().__init__(
            f"group {group!r} belongs to {KINDS.get(owner, owner)} (kind {owner}), not to "
            f"{KINDS.get(wanted, wanted)}: use another group name, or remove it with "
            f"'headrace groups delete {group}'"
        )


class OwnershipError(RuntimeError):
    """This session does not own the partition (any more), or the commit lost a race."""


def read_kind(client, group: str) -> str | None:
    """The kind recorded for ``group``; for a group from before kinds were recorded, the kind
    its nodes show (a loader plan: loader; members: zookeeper); None if nothing tells."""
    path = layout.kind_path(group)
    try:
        return layout.decode_kind(client.get(path)[0], path)
    except NoNodeError:
        pass
    if client.exists(layout.plan_path(group)):
        return LOADER
    if client.exists(layout.members_path(group)):
        return ZOOKEEPER
    return None


def groups_of_kind(client, kind: str) -> list[str]:
    """The group names under ``/consumers`` that belong to ``kind`` (as ``read_kind`` tells;
    a name whose kind node cannot be read is left out), sorted."""
    found = []
    for group in sorted(_children(client, layout.CONSUMERS)):
        try:
            if read_kind(client, group) == kind:
                found.append(group)
        except (NoNodeError, ValueError):  # deleted meanwhile, or not readable
            continue
    return found


def claim_kind(client, group: str, kind: str) -> None:
    """Make sure ``group`` is a group of ``kind``: record it if nothing is recorded yet
    (create-if-absent, so two first users agree), else raise GroupKindError if it is another."""
    path = layout.kind_path(group)
    try:
        owner = layout.decode_kind(client.get(path)[0], path)
    except NoNodeError:
        owner = read_kind(client, group) or kind
        try:
            client.create(path, layout.encode_kind(owner), makepath=True)
        except NodeExistsError:
            owner = layout.decode_kind(client.get(path)[0], path)
    if owner != kind:
        raise GroupKindError(group, owner, kind)


def read_offset(client, group: str, topic: str, partition: int) -> tuple[int | None, int | None]:
    """(committed offset, node version), or (None, None) when nothing was committed; a node
    that does not hold a decimal offset raises MalformedNodeError (a ValueError)."""
    path = layout.offset_path(group, topic, partition)
    try:
        data, stat = client.get(path)
    except NoNodeError:
        return None, None
    return layout.decode_offset(data, path), stat.version


def committed_partitions(client, group: str) -> dict[str, list[int]]:
    """Every topic with committed offsets in ``group``, with its partitions, sorted."""
    found = {}
    for topic in sorted(_children(client, layout.offsets_path(group))):
        parts = _children(client, layout.topic_offsets_path(group, topic))
        found[topic] = sorted(int(p) for p in parts if p.isdigit())
    return found


def write_offset(client, group: str, topic: str, partition: int, offset: int) -> None:
    """Store ``offset`` unconditionally (the coordinator's commits for Kafka clients, whose
    generations it checks itself).  Two writers creating the node at once both succeed."""
    put(client, layout.offset_path(group, topic, partition), layout.encode_offset(offset))


def put(client, path: str, data: bytes) -> None:
    """Set a persistent node's data, creating it (and its parents) if it is absent; two
    writers creating it at once both succeed."""
    try:
        client.set(path, data)
    except NoNodeError:
        try:
            client.create(path, data, makepath=True)
        except NodeExistsError:
            client.set(path, data)


def read_owner(client, group: str, topic: str, partition: int) -> str | None:
    """The consumer id that owns the partition, or None if nobody does."""
    path = layout.owner_path(group, topic, partition)
    try:
        return layout.decode_owner(client.get(path)[0], path)
    except NoNodeError:
        return None


def check_owner(client, group: str, topic: str, partition: int, consumer_id: str):
    """The owner node's stat if ``consumer_id`` owns the partition through this very
    ZooKeeper session (a member that lost its session and registered again under the same
    name does not); else OwnershipError."""
    path = layout.owner_path(group, topic, partition)
    try:
        data, stat = client.get(path)
    except NoNodeError:
        raise OwnershipError(f"{topic}-{partition}: no longer owned by {consumer_id}") from None
    owner = layout.decode_owner(data, path)
    session = client.client_id[0] if client.client_id else None
    if owner != consumer_id or stat.ephemeralOwner != session:
        raise OwnershipError(f"{topic}-{partition}: now owned by {owner}, not {consumer_id}")
    return stat


def commit_owned(
    client,
    group: str,
    topic: str,
    partition: int,
    offset: int,
    consumer_id: str,
    version: int | None = ANY_VERSION,
) -> int:
    """Move the partition's committed offset to ``offset`` in one transaction that checks
    this session still owns the partition; ``version`` None creates the node, a version is
    a compare-and-set, ANY_VERSION sets (or creates) it whatever it holds.  Returns the
    node's new version; OwnershipError if the owner or the version changed (nothing is
    written then), KazooException if ZooKeeper could not be asked."""
    opath = layout.owner_path(group, topic, partition)
    wpath = layout.offset_path(group, topic, partition)
    ostat = check_owner(client, group, topic, partition, consumer_id)
    if version == ANY_VERSION:
        stat = client.exists(wpath)
        version = None if stat is None else -1
    if version is None:
        client.ensure_path(layout.topic_offsets_path(group, topic))
    tx = client.transaction()
    tx.check(opath, ostat.version)
    if version is None:
        tx.create(wpath, layout.encode_offset(offset))
    else:
        tx.set_data(wpath, layout.encode_offset(offset), version=version)
    results = tx.commit()
    failures = [
        r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)
    ]
    if failures:
        raise OwnershipError(
            f"{topic}-{partition}: commit of offset {offset} refused "
            f"({type(failures[0]).__name__}): another member moved it or took the partition"
        )
    return 0 if version is None else results[1].version


def _children(client, path: str) -> list[str]:
    try:
        return client.get_children(path)
    except NoNodeError:
        return []
