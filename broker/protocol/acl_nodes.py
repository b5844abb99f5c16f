"""The ACLs' nodes in ZooKeeper, exactly as Kafka's ZkAclStore keeps them: their paths and
the encoding of each.  Pure, like ``zookeeper.py``, whose 600-line budget is why they live
beside it.

Under the chroot of ``zookeeper.connect``::

    /kafka-acl                              literal patterns
    └── <ResourceType>                      Topic, Group, Cluster, TransactionalId, ...
        └── <name>                          {"version":1,"acls":[{"principal":"User:alice",
                                              "permissionType":"Allow","operation":"Write",
                                              "host":"*"}]}   (the name may be "*")
    /kafka-acl-extended
    └── prefixed                            prefixed patterns
        └── <ResourceType>
            └── <prefix>                    the same JSON
    /kafka-acl-changes
    └── acl_changes_<seq>                   persistent sequential: "TOPIC:<name>" (literal)
    /kafka-acl-extended-changes
    └── acl_changes_<seq>                   {"version":1,"resourceType":"TOPIC","name":...,
                                              "patternType":"PREFIXED"}

A pattern's node is written at the version read (created if absent), and deleted when its
last ACL goes; each change is announced by a change node naming the pattern, which every
broker's cache reads again.  Kafka's tools and brokers read these nodes as we write them.

    >>> from broker.protocol.acls import TOPIC, PREFIXED
    >>> acl_path(ResourcePattern(TOPIC, "clicks-", PREFIXED))
    '/kafka-acl-extended/prefixed/Topic/clicks-'
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .acls import (
    LITERAL,
    OPERATION_NAMES,
    PERMISSION_NAMES,
    PREFIXED,
    RESOURCE_TYPE_NAMES,
    AccessControlEntry,
    ResourcePattern,
)
from .zookeeper import MalformedNodeError, _check, _reading

KAFKA_ACL = "/kafka-acl"  # literal patterns' ACLs
KAFKA_ACL_EXTENDED = "/kafka-acl-extended"
KAFKA_ACL_PREFIXED = f"{KAFKA_ACL_EXTENDED}/prefixed"  # prefixed patterns' ACLs
KAFKA_ACL_CHANGES = "/kafka-acl-changes"  # change notifications of literal patterns
KAFKA_ACL_EXTENDED_CHANGES = "/kafka-acl-extended-changes"  # and of the others
ACL_CHANGE_PREFIX = "acl_changes_"
ACL_VERSION = 1

# Each pattern type's store: its ACL root and its change root.
STORES = {
    LITERAL: (KAFKA_ACL, KAFKA_ACL_CHANGES),
    PREFIXED: (KAFKA_ACL_PREFIXED, KAFKA_ACL_EXTENDED_CHANGES),
}

_TYPE_BY_NAME = {name.lower(): code for code, name in RESOURCE_TYPE_NAMES.items()}
_OPERATION_BY_NAME = {name.lower(): code for code, name in OPERATION_NAMES.items()}
_PERMISSION_BY_NAME = {name.lower(): code for code, name in PERMISSION_NAMES.items()}
# Kafka's Java enum names (ResourceType.TRANSACTIONAL_ID.name()), used by change nodes.
_ENUM_NAMES = {
    code: "".join("_" + c if c.isupper() and i else c for i, c in enumerate(name)).upper()
    for code, name in RESOURCE_TYPE_NAMES.items()
}
_TYPE_BY_ENUM = {enum: code for code, enum in _ENUM_NAMES.items()}


class InvalidResourceNameError(ValueError):
    """A resource name that cannot be a ZooKeeper node's name."""


def check_node_name(name: str) -> None:
    """Refuse names ZooKeeper cannot hold as one node (empty, ``.``, ``..``, a ``/``)."""
    if not name or name in (".", "..") or "/" in name or "\x00" in name:
        raise InvalidResourceNameError(f"resource name {name!r} cannot be stored in ZooKeeper")


def acl_type_root(pattern_type: int, resource_type: int) -> str:
    """The parent of every pattern of one pattern type and resource type."""
    return f"{STORES[pattern_type][0]}/{RESOURCE_TYPE_NAMES[resource_type]}"


def acl_path(pattern: ResourcePattern) -> str:
    """The node holding one pattern's ACLs."""
    check_node_name(pattern.name)
    return f"{acl_type_root(pattern.pattern_type, pattern.resource_type)}/{pattern.name}"


def resource_type_of(type_name: str) -> int:
    """A resource type from its name in a path (``Topic``; any case, as Kafka reads it)."""
    code = _TYPE_BY_NAME.get(type_name.lower())
    if code is None:
        raise ValueError(f"unknown resource type {type_name!r}")
    return code


def change_root(pattern_type: int) -> str:
    return STORES[pattern_type][1]


def change_node_prefix(pattern_type: int) -> str:
    """The path to create sequentially to announce a change of a pattern of this type."""
    return f"{change_root(pattern_type)}/{ACL_CHANGE_PREFIX}"


def encode_acls(entries: Iterable[AccessControlEntry]) -> bytes:
    """A pattern node's data, as Kafka's AclEntry writes it."""
    acls = [
        {
            "principal": e.principal,
            "permissionType": PERMISSION_NAMES[e.permission],
            "operation": OPERATION_NAMES[e.operation],
            "host": e.host,
        }
        for e in sorted(entries)
    ]
    return json.dumps({"version": ACL_VERSION, "acls": acls}, separators=(",", ":")).encode()


def decode_acls(data: bytes, path: str = "") -> frozenset[AccessControlEntry]:
    """A pattern node's ACLs; empty data is no ACL.  Names are read in any case, as Kafka
    reads them; anything else raises MalformedNodeError."""
    if not data:
        return frozenset()
    with _reading("ACLs", data, path):
        doc = json.loads(data)
        _check(doc["version"] == ACL_VERSION, f"version {doc['version']} is not {ACL_VERSION}")
        entries = set()
        for item in doc["acls"]:
            principal, host = item["principal"], item["host"]
            _check(isinstance(principal, str) and ":" in principal, "a principal is Type:name")
            _check(isinstance(host, str), "a host is a string")
            operation = _OPERATION_BY_NAME[item["operation"].lower()]
            permission = _PERMISSION_BY_NAME[item["permissionType"].lower()]
            entries.add(AccessControlEntry(principal, host, operation, permission))
        return frozenset(entries)


def encode_change(pattern: ResourcePattern) -> bytes:
    """A change node's data naming the pattern whose ACLs changed."""
    if pattern.pattern_type == LITERAL:
        return f"{_ENUM_NAMES[pattern.resource_type]}:{pattern.name}".encode()
    doc = {
        "version": ACL_VERSION,
        "resourceType": _ENUM_NAMES[pattern.resource_type],
        "name": pattern.name,
        "patternType": "PREFIXED",
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_change(data: bytes, extended: bool, path: str = "") -> ResourcePattern:
    """The pattern a change node names (``extended``: under ``/kafka-acl-extended-changes``)."""
    with _reading("an ACL change", data, path):
        if not extended:
            type_name, sep, name = data.decode().partition(":")
            _check(bool(sep), "a literal change is ResourceType:name")
            return ResourcePattern(_change_type(type_name), name, LITERAL)
        doc = json.loads(data)
        _check(doc["version"] <= ACL_VERSION, f"version {doc['version']} is too new")
        _check(doc["patternType"].upper() == "PREFIXED", "only PREFIXED patterns are extended")
        return ResourcePattern(_change_type(doc["resourceType"]), doc["name"], PREFIXED)


def _change_type(name: str) -> int:
    code = _TYPE_BY_ENUM.get(name.upper())
    if code is None:
        code = _TYPE_BY_NAME[name.lower()]  # KeyError: malformed
    return code


__all__ = [
    "ACL_CHANGE_PREFIX",
    "KAFKA_ACL",
    "KAFKA_ACL_CHANGES",
    "KAFKA_ACL_EXTENDED",
    "KAFKA_ACL_EXTENDED_CHANGES",
    "KAFKA_ACL_PREFIXED",
    "STORES",
    "InvalidResourceNameError",
    "MalformedNodeError",
    "acl_path",
    "acl_type_root",
    "change_node_prefix",
    "change_root",
    "check_node_name",
    "decode_acls",
    "decode_change",
    "encode_acls",
    "encode_change",
    "resource_type_of",
]
