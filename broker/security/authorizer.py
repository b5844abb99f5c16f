"""Kafka's ACL authorizer, pure: the ACLs known, indexed by resource, and the decision.

    >>> from broker.protocol.acls import TOPIC, LITERAL, WRITE, ALLOW, DESCRIBE
    >>> acl = AclBinding(TOPIC, "clicks", LITERAL, "User:alice", "*", WRITE, ALLOW)
    >>> authorizer = Authorizer(AclSet([acl]))
    >>> authorizer.authorize("User:alice", "10.0.0.1", DESCRIBE, TOPIC, "clicks")  # implied
    True
    >>> authorizer.authorize("User:bob", "10.0.0.1", WRITE, TOPIC, "clicks")
    False

The rules are Kafka's AclAuthorizer's: a super user may do anything; a resource with no ACL
that applies to it (literal by its name or ``*``, or prefixed by a prefix of its name) is open
to everyone only when ``allow.everyone.if.no.acl.found``; otherwise a DENY that matches the
principal (or ``User:*``), the host (or ``*``) and the operation (or ALL) refuses, whatever
ALLOWs say, and only then an ALLOW grants.  READ, WRITE, DELETE and ALTER grant DESCRIBE, and
ALTER_CONFIGS grants DESCRIBE_CONFIGS, as in Kafka; a DENY denies only what it names (or
ALL).  Hosts are compared as IP addresses (``::1`` and ``0:0:0:0:0:0:0:1`` are one host, an
IPv4-mapped IPv6 address is its IPv4 one); a host that is not an address is compared as
written; ``*`` matches every host.  Enum codes are Kafka's wire codes (ResourceType,
PatternType, AclOperation, AclPermissionType), so the wire, the ZooKeeper nodes and the
decision share them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from functools import lru_cache

from ..protocol.acls import (
    ALL,
    ALLOW,
    DENY,
    IMPLIED_BY,
    LITERAL,
    OPERATION_NAMES,
    PREFIXED,
    RESOURCE_TYPE_NAMES,
    SUPPORTED_OPERATIONS,
    WILDCARD,
    WILDCARD_PRINCIPAL,
    AccessControlEntry,
    AclBinding,
    AclFilter,
    ResourcePattern,
)

log = logging.getLogger("kafka.authorizer.logger")

# authorizer.class.name values that switch the authorizer on: Kafka's class names and ours.
AUTHORIZER_CLASSES = (
    "kafka.security.authorizer.AclAuthorizer",
    "kafka.security.auth.SimpleAclAuthorizer",
    "headrace.AclAuthorizer",
)


class AclSet:
    """The ACLs known, indexed by resource pattern, with the prefixed patterns also indexed
    by resource type so a check looks up at most one prefix per character of a name.
    Changed only by its owner (the broker's cache on the reactor thread); read by
    ``Authorizer``."""

    def __init__(self, acls: Iterable[AclBinding] = ()):
        self.by_pattern: dict[ResourcePattern, frozenset[AccessControlEntry]] = {}
        self._prefixed: dict[int, dict[str, frozenset[AccessControlEntry]]] = {}
        for acl in acls:
            self.add(acl)

    def add(self, acl: AclBinding) -> None:
        pattern = acl.pattern
        self.set(pattern, self.by_pattern.get(pattern, frozenset()) | {acl.entry})

    def set(self, pattern: ResourcePattern, entries: Iterable[AccessControlEntry]) -> None:
        """Replace the entries of one pattern (none: forget it)."""
        entries = frozenset(entries)
        prefixed = (
            self._prefixed.setdefault(pattern.resource_type, {})
            if pattern.pattern_type == PREFIXED
            else None
        )
        if entries:
            self.by_pattern[pattern] = entries
            if prefixed is not None:
                prefixed[pattern.name] = entries
        else:
            self.by_pattern.pop(pattern, None)
            if prefixed is not None:
                prefixed.pop(pattern.name, None)

    def replace(self, other: AclSet) -> None:
        """Become a copy of ``other`` (a fresh load)."""
        self.by_pattern = dict(other.by_pattern)
        self._prefixed = {t: dict(p) for t, p in other._prefixed.items()}

    def __len__(self) -> int:
        return sum(len(entries) for entries in self.by_pattern.values())

    def bindings(self) -> list[AclBinding]:
        return sorted(
            AclBinding.of(pattern, entry)
            for pattern, entries in self.by_pattern.items()
            for entry in entries
        )

    def matching(self, acl_filter: AclFilter) -> list[AclBinding]:
        return [acl for acl in self.bindings() if acl_filter.matches(acl)]

    def applying_to(self, resource_type: int, name: str) -> list[AccessControlEntry]:
        """Every entry whose pattern covers the resource: literal by its name or ``*``, or
        prefixed by a prefix of its name."""
        found: list[AccessControlEntry] = []
        for literal in (name, WILDCARD):
            found.extend(self.by_pattern.get(ResourcePattern(resource_type, literal, LITERAL), ()))
        prefixed = self._prefixed.get(resource_type)
        if prefixed:
            if len(prefixed) <= len(name):
                for prefix, entries in prefixed.items():
                    if name.startswith(prefix):
                        found.extend(entries)
            else:
                for end in range(1, len(name) + 1):
                    found.extend(prefixed.get(name[:end], ()))
        return found


@lru_cache(maxsize=4096)
def canonical_host(host: str) -> str:
    """``host`` as one spelling of its address: ``ipaddress``'s compressed form, an
    IPv4-mapped IPv6 address as its IPv4 address; anything that is not an address (``*``, a
    name) as it is."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.compressed


def host_matches(acl_host: str, host: str) -> bool:
    """Whether an ACL's host covers a client connected from ``host``: ``*``, or the same
    address however it is spelled."""
    return acl_host in (WILDCARD, host) or canonical_host(acl_host) == canonical_host(host)


def parse_super_users(text: str | None) -> frozenset[str]:
    """``super.users``: principals separated by semicolons (``User:a;User:b``)."""
    return frozenset(p.strip() for p in (text or "").split(";") if p.strip())


class Authorizer:
    """Decides whether a principal connected from a host may perform an operation on a
    resource, by Kafka's AclAuthorizer rules over ``acls``; denials are logged at info and
    grants at debug, on the ``kafka.authorizer.logger`` logger as Kafka does."""

    def __init__(
        self,
        acls: AclSet | None = None,
        super_users: Iterable[str] = (),
        allow_everyone_if_no_acl_found: bool = False,
    ):
        self.acls = acls if acls is not None else AclSet()
        self.super_users = frozenset(super_users)
        self.allow_everyone_if_no_acl_found = allow_everyone_if_no_acl_found

    def authorize(
        self,
        principal: str,
        host: str,
        operation: int,
        resource_type: int,
        name: str,
        api: str = "",
        log_denial: bool = True,
    ) -> bool:
        """Whether ``principal`` connected from ``host`` may perform ``operation`` on the
        resource, logged for request ``api``; ``log_denial`` false (a listing that leaves
        out what may not be seen, as Kafka's) logs a denial at debug, not info."""
        allowed = self._decide(principal, host, operation, resource_type, name)
        if allowed and not log.isEnabledFor(logging.DEBUG):
            return True
        message = (
            "Principal = %s is %s Operation = %s from host = %s on resource = %s:LITERAL:%s "
            "for request = %s"
        )
        args = (
            principal,
            "Allowed" if allowed else "Denied",
            OPERATION_NAMES.get(operation, operation),
            host,
            RESOURCE_TYPE_NAMES.get(resource_type, resource_type),
            name,
            api or "?",
        )
        level = logging.INFO if not allowed and log_denial else logging.DEBUG
        log.log(level, message, *args)
        return allowed

    def _decide(self, principal: str, host: str, operation: int, resource_type: int, name: str):
        if principal in self.super_users:
            return True
        entries = self.acls.applying_to(resource_type, name)
        if not entries:
            return self.allow_everyone_if_no_acl_found
        principals = (principal, WILDCARD_PRINCIPAL)
        mine = [e for e in entries if e.principal in principals and host_matches(e.host, host)]
        if any(e.permission == DENY and e.operation in (operation, ALL) for e in mine):
            return False
        granting = IMPLIED_BY.get(operation, (operation, ALL))
        return any(e.permission == ALLOW and e.operation in granting for e in mine)

    def authorize_by_resource_type(
        self, principal: str, host: str, operation: int, resource_type: int
    ) -> bool:
        """Whether ``principal`` may perform ``operation`` on *some* resource of the type
        (KIP-679: InitProducerId's Write on any topic), by Kafka's
        ``Authorizer.authorizeByResourceType``: allowed if the literal name ``hardcode``
        would be (super users, ``allow.everyone.if.no.acl.found``); else denied by a DENY on
        the literal ``*``; else allowed by an ALLOW on the literal ``*``, or by an ALLOW of a
        literal name that no literal DENY of that name and no prefixed DENY of a prefix of it
        takes back, or by an ALLOW of a prefix that no prefixed DENY of a prefix of it
        takes back.  The entries counted match the principal (or ``User:*``), the host (or
        ``*``) and the operation (or ALL)."""
        if self._decide(principal, host, operation, resource_type, "hardcode"):
            return True
        deny: dict[int, set[str]] = {LITERAL: set(), PREFIXED: set()}
        allow: dict[int, set[str]] = {LITERAL: set(), PREFIXED: set()}
        wildcard_allow = False
        for pattern, entries in self.acls.by_pattern.items():
            if pattern.resource_type != resource_type or pattern.pattern_type not in deny:
                continue
            for e in entries:
                if e.principal not in (principal, WILDCARD_PRINCIPAL):
                    continue
                if not host_matches(e.host, host) or e.operation not in (operation, ALL):
                    continue
                literal_wildcard = pattern.pattern_type == LITERAL and pattern.name == WILDCARD
                if e.permission == DENY:
                    if literal_wildcard:
                        return False
                    deny[pattern.pattern_type].add(pattern.name)
                elif e.permission == ALLOW:
                    if literal_wildcard:
                        wildcard_allow = True
                    else:
                        allow[pattern.pattern_type].add(pattern.name)
        if wildcard_allow:
            return True
        for pattern_type, names in allow.items():
            for name in names:
                if pattern_type == LITERAL and name in deny[LITERAL]:
                    continue
                if not any(name[:end] in deny[PREFIXED] for end in range(1, len(name) + 1)):
                    return True
        return False

    def authorized_operations(
        self, principal: str, host: str, resource_type: int, name: str
    ) -> int:
        """The bit field of the operations allowed on the resource (Kafka's
        ``authorized_operations`` in Metadata, DescribeGroups and DescribeCluster)."""
        bits = 0
        for op in SUPPORTED_OPERATIONS.get(resource_type, ()):
            if self._decide(principal, host, op, resource_type, name):
                bits |= 1 << op
        return bits


__all__ = [
    "AUTHORIZER_CLASSES",
    "AclSet",
    "Authorizer",
    "canonical_host",
    "host_matches",
    "parse_super_users",
]
