"""The one place a headrace process makes a ZooKeeper client: kazoo, logged in with a digest
identity when one is given, creating each node with the ACL ``zk_security.node_acl`` names.

    >>> client = zookeeper_client("127.0.0.1:2181/headrace", credentials, secure=True)
    >>> client.start()
    >>> client.create("/brokers/topics/clicks", b"...")   # creator ALL, world READ
    >>> secure_tree(client, secure=True)                  # fix up nodes made before

Brokers, clients, loaders and tools all build their clients here; it lives in the contract
tier because every tier may import it (the broker may not import ``consumers/``).  Like
``offsets.py`` it touches ZooKeeper only through kazoo.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kazoo.client import KazooClient, TransactionRequest
from kazoo.exceptions import NoAuthError, NoNodeError
from kazoo.security import (
    ACL,
    CREATOR_ALL_ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Permissions,
    make_digest_acl_credential,
)

from .zk_security import (
    OPEN,
    PRIVATE,
    PUBLIC,
    ZkCredentials,
    ZkSecurityError,
    node_acl,
    parse_credentials,
)
from .zookeeper import BROKER_IDS

log = logging.getLogger(__name__)

ACLS: dict[str, list[ACL]] = {
    OPEN: list(OPEN_ACL_UNSAFE),
    PUBLIC: list(CREATOR_ALL_ACL) + list(READ_ACL_UNSAFE),
    PRIVATE: list(CREATOR_ALL_ACL),
}


BATCH = 1000  # nodes whose requests are in flight at once while securing a tree


def acl_for(path: str, secure: bool) -> list[ACL]:
    """kazoo ACLs for a node at ``path`` (relative to the chroot)."""
    return ACLS[node_acl(path, secure)]


class _Transaction(TransactionRequest):
    def create(self, path, value=b"", acl=None, ephemeral=False, sequence=False):
        if acl is None:
            acl = acl_for(path, self.client.secure)
        return super().create(path, value, acl=acl, ephemeral=ephemeral, sequence=sequence)


class SecureKazooClient(KazooClient):
    """A KazooClient whose nodes get their ACL from the path when the caller names none
    (``create``, ``ensure_path``, ``create(makepath=True)`` and transactions)."""

    def __init__(self, *args, secure: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.secure = secure

    def create_async(self, path, value=b"", acl=None, **kwargs):
        if acl is None and isinstance(path, str):
            acl = acl_for(path, self.secure)
        return super().create_async(path, value, acl=acl, **kwargs)

    def transaction(self):
        return _Transaction(self)


def zookeeper_client(
    connect: str,
    credentials: ZkCredentials | None = None,
    secure: bool = False,
    timeout: float = 10.0,
    **kwargs,
) -> SecureKazooClient:
    """An unstarted client for ``connect`` (``host:port[,...][/chroot]``), logged in as
    ``credentials`` if given.  With ``secure`` (``zookeeper.set.acl``) it creates nodes with
    ACLs, which needs an identity; other keyword arguments go to KazooClient."""
    if secure and credentials is None:
        raise ZkSecurityError("zookeeper.set.acl needs a ZooKeeper identity to own the nodes")
    return SecureKazooClient(
        hosts=connect,
        timeout=timeout,
        auth_data=credentials.auth_data if credentials else None,
        secure=secure,
        **kwargs,
    )


def read_credentials(path: str | None) -> ZkCredentials | None:
    """The identity in the auth file ``path`` (None for none): a JAAS ``Client`` section or
    one line ``user:password``; an unreadable or malformed file raises ZkSecurityError."""
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ZkSecurityError(f"cannot read ZooKeeper auth file {path}: {exc}") from None
    try:
        return parse_credentials(text)
    except ZkSecurityError as exc:
        raise ZkSecurityError(f"ZooKeeper auth file {path}: {exc}") from None


def ensure_chroot(
    connect: str, credentials: ZkCredentials | None, secure: bool, timeout: float = 30.0
) -> None:
    """Create the chroot of ``connect`` (if it has one) with its ancestors, each as a node of
    the tree's top (``PUBLIC`` when secure)."""
    hosts, slash, chroot = connect.partition("/")
    if not slash or chroot.strip("/") == "":
        return
    root = zookeeper_client(hosts, credentials, secure, timeout=timeout)
    root.start(timeout=timeout)
    try:
        root.ensure_path("/" + chroot.strip("/"), acl=acl_for("/", secure))
    finally:
        root.stop()
        root.close()


def secure_tree(
    client: KazooClient, secure: bool, path: str = "/", skip: tuple[str, ...] = ()
) -> tuple[int, int]:
    """Set every node's ACL from ``path`` down to what ``node_acl`` says (Kafka's
    zookeeper-security-migration), not descending into ``skip`` nor ZooKeeper's own
    ``/zookeeper``, and leaving ZooKeeper's root alone when there is no chroot; returns
    (nodes seen, nodes changed).  One level of the tree at a time, its requests pipelined.
    A node this identity may not administer raises ``NoAuthError`` naming it."""
    seen = changed = 0
    stored = {kind: _stored(acls, client) for kind, acls in ACLS.items()}
    level = [path]
    while level:
        next_level: list[str] = []
        for start in range(0, len(level), BATCH):
            nodes = [n for n in level[start : start + BATCH] if n != "/zookeeper"]
            acls = [client.get_acls_async(n) for n in nodes]
            children = [None if n in skip else client.get_children_async(n) for n in nodes]
            writes = []
            for node, acl_result, child_result in zip(nodes, acls, children, strict=True):
                try:
                    have, _ = acl_result.get()
                except NoNodeError:  # deleted while we walked
                    continue
                seen += 1
                kind = node_acl(node, secure)
                if node == "/" and not client.chroot:
                    pass  # ZooKeeper's own root, shared with others: left as it is
                elif {(a.perms, a.id.scheme, a.id.id) for a in have} != stored[kind]:
                    writes.append((node, client.set_acls_async(node, ACLS[kind])))
                if child_result is not None:
                    try:
                        names = child_result.get()
                    except NoNodeError:
                        names = []
                    prefix = node.rstrip("/")
                    next_level += [f"{prefix}/{name}" for name in sorted(names)]
            for node, result in writes:
                try:
                    result.get()
                except NoNodeError:
                    continue
                except NoAuthError:
                    raise NoAuthError(
                        f"ZooKeeper refused to change the ACL of {node}: it belongs to another "
                        "identity than this process's ZooKeeper credentials"
                    ) from None
                changed += 1
        level = next_level
    return seen, changed


def is_secured(client: KazooClient, path: str = BROKER_IDS) -> bool:
    """Whether the node at ``path`` has the ACL a secure client of this identity gives it:
    a tree whose top is secured was secured whole (by a broker's first secure start or the
    migration), and nodes made since by secure brokers are born with their ACL."""
    have, _ = client.get_acls(path)
    want = _stored(acl_for(path, True), client)
    return {(a.perms, a.id.scheme, a.id.id) for a in have} == want


def may_write(client: KazooClient, path: str) -> bool:
    """Whether this client's identities (or anyone) may set the data of the node at
    ``path``, by its ACL: a process can say at start that it was given the wrong identity."""
    acls, _ = client.get_acls(path)
    mine = {
        ("digest", make_digest_acl_credential(*auth.split(":", 1)))
        for scheme, auth in client.auth_data
        if scheme == "digest"
    }
    mine.add(("world", "anyone"))
    return any(a.perms & Permissions.WRITE and (a.id.scheme, a.id.id) in mine for a in acls)


def _stored(want: list[ACL], client: KazooClient) -> frozenset[tuple[int, str, str]]:
    """The ACL the server stores for ``want`` set by this client: it replaces the ``auth``
    scheme by the caller's digest identities."""
    ids = [auth for scheme, auth in client.auth_data if scheme == "digest"]
    stored = set()
    for acl in want:
        if acl.id.scheme == "auth":
            stored |= {
                (acl.perms, "digest", make_digest_acl_credential(*auth.split(":", 1)))
                for auth in ids
            }
        else:
            stored.add((acl.perms, acl.id.scheme, acl.id.id))
    return frozenset(stored)
