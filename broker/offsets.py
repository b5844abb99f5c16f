"""The offset registry in ZooKeeper, shared by every kind of group (DESIGN.md).

    /consumers/<group>/kind                    persistent, which kind of group owns the name:
                                               "zookeeper", "kafka" or "loader"
    /consumers/<group>/offsets/<topic>/<p>     persistent, the next offset to read, decimal text

The paper's ZooKeeper consumers, the warehouse loaders and the brokers' group coordinator
(for Kafka clients' OffsetCommit/OffsetFetch) all read and write offsets here, so one lag tool
serves every group.  A group name belongs to one kind from its first use (``claim_kind``
creates the kind node if it is absent) until ``headrace groups delete`` removes the group;
the other kinds may not join it or commit to it.  Members that own partitions in
``/consumers/<group>/owners`` commit with ``commit_owned``: one transaction that checks the
owner node is still this session's.  Plain blocking kazoo calls: callers on a reactor run
them in a thread.
"""

from __future__ import annotations

from kazoo.exceptions import NodeExistsError, NoNodeError, RolledBackError

ZOOKEEPER, KAFKA, LOADER = "zookeeper", "kafka", "loader"
KINDS = {
    ZOOKEEPER: "the paper's ZooKeeper consumers",
    KAFKA: "Kafka clients (coordinated by the brokers)",
    LOADER: "a warehouse loader",
}
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


def check_group_name(group: str) -> None:
    """A group name is one ZooKeeper node name under ``/consumers``: ValueError if it is
    empty, ``.`` or ``..``, or holds ``/`` or characters ZooKeeper refuses."""
    if not group or group in (".", "..") or "/" in group:
        raise ValueError(
            f"group name {group!r} cannot name a ZooKeeper node: it must not be "
            "empty, . or .., or contain /"
        )
    bad = [
        c
        for c in group
        if c < "\x20"
        or "\x7f" <= c <= "\x9f"
        or "\ud800" <= c <= "\uf8ff"
        or "\ufff0" <= c <= "\uffff"
    ]
    if bad:
        raise ValueError(
            f"group name {group!r} holds {bad[0]!r}, which ZooKeeper refuses in a node name"
        )


def offset_path(group: str, topic: str, partition: int) -> str:
    return f"/consumers/{group}/offsets/{topic}/{partition}"


def owner_path(group: str, topic: str, partition: int) -> str:
    return f"/consumers/{group}/owners/{topic}/{partition}"


def kind_path(group: str) -> str:
    return f"/consumers/{group}/kind"


def read_kind(client, group: str) -> str | None:
    """The kind recorded for ``group``; for a group from before kinds were recorded, the kind
    its nodes show (a loader plan: loader; members: zookeeper); None if nothing tells."""
    try:
        return client.get(kind_path(group))[0].decode()
    except NoNodeError:
        pass
    if client.exists(f"/consumers/{group}/loader/plan"):
        return LOADER
    if client.exists(f"/consumers/{group}/ids"):
        return ZOOKEEPER
    return None


def claim_kind(client, group: str, kind: str) -> None:
    """Make sure ``group`` is a group of ``kind``: record it if nothing is recorded yet
    (create-if-absent, so two first users agree), else raise GroupKindError if it is another."""
    path = kind_path(group)
    try:
        owner = client.get(path)[0].decode()
    except NoNodeError:
        owner = read_kind(client, group) or kind
        try:
            client.create(path, owner.encode(), makepath=True)
        except NodeExistsError:
            owner = client.get(path)[0].decode()
    if owner != kind:
        raise GroupKindError(group, owner, kind)


def read_offset(client, group: str, topic: str, partition: int) -> tuple[int | None, int | None]:
    """(committed offset, node version), or (None, None) when nothing was committed; a node
    that does not hold a decimal offset raises ValueError."""
    path = offset_path(group, topic, partition)
    try:
        data, stat = client.get(path)
    except NoNodeError:
        return None, None
    try:
        return int(data.decode().strip()), stat.version
    except ValueError:
        raise ValueError(f"{path} holds {data!r}, not an offset") from None


def write_offset(client, group: str, topic: str, partition: int, offset: int) -> None:
    """Store ``offset`` unconditionally (the coordinator's commits for Kafka clients, whose
    generations it checks itself).  Two writers creating the node at once both succeed."""
    path, data = offset_path(group, topic, partition), str(offset).encode()
    try:
        client.set(path, data)
    except NoNodeError:
        try:
            client.create(path, data, makepath=True)
        except NodeExistsError:
            client.set(path, data)


def check_owner(client, group: str, topic: str, partition: int, consumer_id: str):
    """The owner node's stat if ``consumer_id`` owns the partition through this very
    ZooKeeper session (a member that lost its session and registered again under the same
    name does not); else OwnershipError."""
    try:
        owner, stat = client.get(owner_path(group, topic, partition))
    except NoNodeError:
        raise OwnershipError(f"{topic}-{partition}: no longer owned by {consumer_id}") from None
    session = client.client_id[0] if client.client_id else None
    if owner.decode() != consumer_id or stat.ephemeralOwner != session:
        raise OwnershipError(
            f"{topic}-{partition}: now owned by {owner.decode()}, not {consumer_id}"
        )
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
    opath, wpath = owner_path(group, topic, partition), offset_path(group, topic, partition)
    ostat = check_owner(client, group, topic, partition, consumer_id)
    if version == ANY_VERSION:
        stat = client.exists(wpath)
        version = None if stat is None else -1
    if version is None:
        client.ensure_path(wpath.rsplit("/", 1)[0])
    tx = client.transaction()
    tx.check(opath, ostat.version)
    if version is None:
        tx.create(wpath, str(offset).encode())
    else:
        tx.set_data(wpath, str(offset).encode(), version=version)
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
