"""The offset registry in ZooKeeper, shared by every kind of group (DESIGN.md).

    /consumers/<group>/offsets/<topic>/<p>     persistent, the next offset to read, decimal text

The paper's ZooKeeper consumers, the warehouse loaders and the brokers' group coordinator
(for Kafka clients' OffsetCommit/OffsetFetch) all read and write offsets here, so one lag tool
serves every group.  Plain blocking kazoo calls: callers on a reactor run them in a thread.
"""

from __future__ import annotations

from kazoo.exceptions import NodeExistsError, NoNodeError


def check_group_name(group: str) -> None:
    """A group name is one ZooKeeper node name under ``/consumers``: ValueError if it is
    empty, ``.`` or ``..``, or holds ``/`` or characters ZooKeeper refuses."""
    if not group or group in (".", "..") or "/" in group:
        raise ValueError(f"group name {group!r} cannot name a ZooKeeper node: it must not be "
                         "empty, . or .., or contain /")
    bad = [c for c in group if c < "\x20" or "\x7f" <= c <= "\x9f" or "\ud800" <= c <= "\uf8ff"
           or "\ufff0" <= c <= "\uffff"]
    if bad:
        raise ValueError(f"group name {group!r} holds {bad[0]!r}, which ZooKeeper refuses in a "
                         "node name")


def offset_path(group: str, topic: str, partition: int) -> str:
    return f"/consumers/{group}/offsets/{topic}/{partition}"


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
    """Store ``offset`` (unconditionally; the loaders' fenced commit is a transaction of its
    own).  Two writers creating the node at once both succeed."""
    path, data = offset_path(group, topic, partition), str(offset).encode()
    try:
        client.set(path, data)
    except NoNodeError:
        try:
            client.create(path, data, makepath=True)
        except NodeExistsError:
            client.set(path, data)
