"""ACLs in ZooKeeper through a kazoo client: read them all, and change a pattern's ACLs
with a conditional write at the version read, then announce the change as Kafka does.

    >>> store = ZkAclStore(client)
    >>> acls = store.load()                             # an AclSet of every stored ACL
    >>> store.add([AclBinding(TOPIC, "clicks", LITERAL, "User:alice", "*", WRITE, ALLOW)])

Blocking: the broker calls it from its thread pool, ``headrace acls --zookeeper`` directly.
The node layout and data are ``broker/protocol/acl_nodes.py``'s (Kafka's own), so ACLs
written by Kafka's tools are read here and the reverse.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError

from ..protocol import acl_nodes
from ..protocol.acl_nodes import MalformedNodeError
from ..protocol.acls import LITERAL, PREFIXED, AccessControlEntry, AclBinding, ResourcePattern
from .authorizer import AclSet

log = logging.getLogger(__name__)

Entries = frozenset[AccessControlEntry]


class ZkAclStore:
    """The ACL nodes under a kazoo client's chroot."""

    def __init__(self, client):
        self.client = client

    def ensure_paths(self) -> None:
        for pattern_type in (LITERAL, PREFIXED):
            self.client.ensure_path(acl_nodes.STORES[pattern_type][0])
            self.client.ensure_path(acl_nodes.change_root(pattern_type))

    def read(self, pattern: ResourcePattern) -> tuple[Entries, int]:
        """One pattern's ACLs and its node's version (-1: no node).  A node that cannot be
        read counts as no ACL, logged: one bad node must not stop a broker."""
        path = acl_nodes.acl_path(pattern)
        try:
            data, stat = self.client.get(path)
        except NoNodeError:
            return frozenset(), -1
        try:
            return acl_nodes.decode_acls(data, path), stat.version
        except MalformedNodeError as exc:
            log.error("ignoring the ACLs of %s: %s", path, exc)
            return frozenset(), stat.version

    def patterns(self) -> list[ResourcePattern]:
        """Every pattern that has a node."""
        found: list[ResourcePattern] = []
        for pattern_type in (LITERAL, PREFIXED):
            root = acl_nodes.STORES[pattern_type][0]
            try:
                type_names = self.client.get_children(root)
            except NoNodeError:
                continue
            for type_name in type_names:
                try:
                    resource_type = acl_nodes.resource_type_of(type_name)
                    names = self.client.get_children(f"{root}/{type_name}")
                except (ValueError, NoNodeError):
                    continue
                found.extend(ResourcePattern(resource_type, n, pattern_type) for n in names)
        return found

    def load(self) -> AclSet:
        """Every stored ACL."""
        acls = AclSet()
        for pattern in self.patterns():
            acls.set(pattern, self.read(pattern)[0])
        return acls

    def update(self, pattern: ResourcePattern, change: Callable[[Entries], Entries]) -> Entries:
        """Replace the pattern's ACLs by ``change(current)`` with a write at the version read
        (created if absent, deleted when empty), again from a fresh read if another writer
        came between; then announce the change.  The ACLs written."""
        path = acl_nodes.acl_path(pattern)
        while True:
            current, version = self.read(pattern)
            wanted = frozenset(change(current))
            if wanted == current:
                return current
            try:
                if not wanted:
                    self.client.delete(path, version=version)
                elif version < 0:
                    self.client.create(path, acl_nodes.encode_acls(wanted), makepath=True)
                else:
                    self.client.set(path, acl_nodes.encode_acls(wanted), version=version)
            except (BadVersionError, NodeExistsError, NoNodeError, NotEmptyError):
                continue
            break
        self.client.create(
            acl_nodes.change_node_prefix(pattern.pattern_type),
            acl_nodes.encode_change(pattern),
            sequence=True,
            makepath=True,
        )
        return wanted

    def add(self, bindings: Iterable[AclBinding]) -> None:
        """Store the ACLs (each checked first: AclError), one write per pattern."""
        by_pattern: dict[ResourcePattern, set[AccessControlEntry]] = {}
        for acl in bindings:
            acl.check()
            acl_nodes.check_node_name(acl.name)
            by_pattern.setdefault(acl.pattern, set()).add(acl.entry)
        for pattern, entries in by_pattern.items():
            self.update(pattern, _adding(frozenset(entries)))

    def remove(self, bindings: Iterable[AclBinding]) -> None:
        """Remove exactly these ACLs, one write per pattern."""
        by_pattern: dict[ResourcePattern, set[AccessControlEntry]] = {}
        for acl in bindings:
            by_pattern.setdefault(acl.pattern, set()).add(acl.entry)
        for pattern, entries in by_pattern.items():
            self.update(pattern, _removing(frozenset(entries)))


def _adding(entries: Entries) -> Callable[[Entries], Entries]:
    return lambda current: current | entries


def _removing(entries: Entries) -> Callable[[Entries], Entries]:
    return lambda current: current - entries
