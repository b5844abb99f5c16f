"""ACLs as data, shared by the broker, the wire and ZooKeeper: Kafka's enum codes and names
(ResourceType, PatternType, AclOperation, AclPermissionType), resource patterns, entries,
bindings and binding filters, with Kafka's checks of what an ACL may hold.

    >>> AclFilter(TOPIC, "clicks-eu", MATCH).matches(
    ...     AclBinding(TOPIC, "clicks-", PREFIXED, "User:alice", "*", READ, ALLOW))
    True

Codes are Kafka's wire codes; names are Kafka's spellings (SecurityUtils), used in ZooKeeper
nodes and in ``headrace acls`` output.
"""

from __future__ import annotations

from dataclasses import dataclass

# ResourceType (Kafka's wire codes)
UNKNOWN, ANY = 0, 1
TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID, DELEGATION_TOKEN, USER = 2, 3, 4, 5, 6, 7
# PatternType
MATCH, LITERAL, PREFIXED = 2, 3, 4
# AclOperation
ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE = 2, 3, 4, 5, 6, 7, 8
CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE = 9, 10, 11, 12
CREATE_TOKENS, DESCRIBE_TOKENS = 13, 14
# AclPermissionType
DENY, ALLOW = 2, 3

CLUSTER_NAME = "kafka-cluster"  # the one cluster resource's name
WILDCARD = "*"  # a literal resource name, a host, and (User:*) a principal matching all
WILDCARD_PRINCIPAL = "User:*"

# Names as Kafka spells them in ZooKeeper and in kafka-acls' output (SecurityUtils).
RESOURCE_TYPE_NAMES = {
    TOPIC: "Topic",
    GROUP: "Group",
    CLUSTER: "Cluster",
    TRANSACTIONAL_ID: "TransactionalId",
    DELEGATION_TOKEN: "DelegationToken",
    USER: "User",
}
PATTERN_TYPE_NAMES = {LITERAL: "Literal", PREFIXED: "Prefixed", MATCH: "Match", ANY: "Any"}
OPERATION_NAMES = {
    ALL: "All",
    READ: "Read",
    WRITE: "Write",
    CREATE: "Create",
    DELETE: "Delete",
    ALTER: "Alter",
    DESCRIBE: "Describe",
    CLUSTER_ACTION: "ClusterAction",
    DESCRIBE_CONFIGS: "DescribeConfigs",
    ALTER_CONFIGS: "AlterConfigs",
    IDEMPOTENT_WRITE: "IdempotentWrite",
    CREATE_TOKENS: "CreateTokens",
    DESCRIBE_TOKENS: "DescribeTokens",
}
PERMISSION_NAMES = {DENY: "Deny", ALLOW: "Allow"}

# The operations an ACL on each resource type may name (Kafka's AclEntry.supportedOperations).
SUPPORTED_OPERATIONS = {
    TOPIC: (READ, WRITE, CREATE, DESCRIBE, DELETE, ALTER, DESCRIBE_CONFIGS, ALTER_CONFIGS),
    GROUP: (READ, DESCRIBE, DELETE),
    CLUSTER: (
        CREATE,
        CLUSTER_ACTION,
        DESCRIBE_CONFIGS,
        ALTER_CONFIGS,
        IDEMPOTENT_WRITE,
        ALTER,
        DESCRIBE,
    ),
    TRANSACTIONAL_ID: (DESCRIBE, WRITE),
    DELEGATION_TOKEN: (DESCRIBE,),
    USER: (CREATE_TOKENS, DESCRIBE_TOKENS),
}

# The operations whose ALLOW grants an operation (Kafka's implied operations); others: itself
# or ALL.
IMPLIED_BY = {
    DESCRIBE: (DESCRIBE, READ, WRITE, DELETE, ALTER, ALL),
    DESCRIBE_CONFIGS: (DESCRIBE_CONFIGS, ALTER_CONFIGS, ALL),
}


class AclError(ValueError):
    """An ACL or filter that cannot be: an unknown name, or a field a binding must not have."""


@dataclass(frozen=True, order=True)
class ResourcePattern:
    """A resource type, a name (``*``: every resource of the type) and LITERAL or PREFIXED."""

    resource_type: int
    name: str
    pattern_type: int

    def __str__(self) -> str:  # Kafka's ResourcePattern.toString, as the authorizer logs it
        pattern = PATTERN_TYPE_NAMES.get(self.pattern_type, "?").upper()
        return f"{RESOURCE_TYPE_NAMES.get(self.resource_type, '?')}:{pattern}:{self.name}"


@dataclass(frozen=True, order=True)
class AccessControlEntry:
    """Who (``User:<name>`` or ``User:*``), from where (an address or ``*``), what, and
    whether it is allowed or denied."""

    principal: str
    host: str
    operation: int
    permission: int


@dataclass(frozen=True, order=True)
class AclBinding:
    """One ACL: a resource pattern and an entry, flat as the wire carries them."""

    resource_type: int
    name: str
    pattern_type: int
    principal: str
    host: str
    operation: int
    permission: int

    @property
    def pattern(self) -> ResourcePattern:
        return ResourcePattern(self.resource_type, self.name, self.pattern_type)

    @property
    def entry(self) -> AccessControlEntry:
        return AccessControlEntry(self.principal, self.host, self.operation, self.permission)

    @classmethod
    def of(cls, pattern: ResourcePattern, entry: AccessControlEntry) -> AclBinding:
        return cls(
            pattern.resource_type,
            pattern.name,
            pattern.pattern_type,
            entry.principal,
            entry.host,
            entry.operation,
            entry.permission,
        )

    def check(self) -> None:
        """Raise AclError unless this can be stored: a concrete resource type, LITERAL or
        PREFIXED, a ``Type:name`` principal, an operation the resource type supports and
        ALLOW or DENY (Kafka's checks on CreateAcls)."""
        if self.resource_type not in SUPPORTED_OPERATIONS:
            raise AclError(f"resource type {self.resource_type} is not one an ACL can name")
        if self.pattern_type not in (LITERAL, PREFIXED):
            raise AclError("an ACL's pattern type must be LITERAL or PREFIXED")
        if not self.name:
            raise AclError("an ACL's resource name must not be empty")
        if self.pattern_type == PREFIXED and self.name == WILDCARD:
            raise AclError("a PREFIXED ACL cannot have the name '*'")
        if self.resource_type == CLUSTER and self.name != CLUSTER_NAME:
            raise AclError(f"the cluster resource is named {CLUSTER_NAME!r}")
        kind, sep, name = self.principal.partition(":")
        if not sep or not kind or not name:
            raise AclError(f"principal {self.principal!r} is not of the form Type:name")
        if not self.host:
            raise AclError("an ACL's host must be an address or '*'")
        if self.operation != ALL and self.operation not in SUPPORTED_OPERATIONS.get(
            self.resource_type, ()
        ):
            raise AclError(
                f"operation {OPERATION_NAMES.get(self.operation, self.operation)} is not "
                f"supported on {RESOURCE_TYPE_NAMES[self.resource_type]} resources"
            )
        if self.permission not in (ALLOW, DENY):
            raise AclError("an ACL's permission type must be ALLOW or DENY")


@dataclass(frozen=True)
class AclFilter:
    """Kafka's AclBindingFilter: None (or ANY) in a field matches anything; pattern type
    MATCH matches the literal and prefixed patterns that would apply to the resource named
    (so it needs a name), ANY every pattern type."""

    resource_type: int = ANY
    name: str | None = None
    pattern_type: int = ANY
    principal: str | None = None
    host: str | None = None
    operation: int = ANY
    permission: int = ANY

    def check(self) -> None:
        """Raise AclError for a filter that can match nothing sensible (UNKNOWN fields)."""
        for value, what in (
            (self.resource_type, "resource type"),
            (self.pattern_type, "pattern type"),
            (self.operation, "operation"),
            (self.permission, "permission type"),
        ):
            if value == UNKNOWN:
                raise AclError(f"the filter's {what} is UNKNOWN")

    def matches(self, acl: AclBinding) -> bool:
        if self.resource_type not in (ANY, acl.resource_type):
            return False
        if not self._matches_pattern(acl):
            return False
        if self.principal is not None and self.principal != acl.principal:
            return False
        if self.host is not None and self.host != acl.host:
            return False
        if self.operation not in (ANY, acl.operation):
            return False
        return self.permission in (ANY, acl.permission)

    def _matches_pattern(self, acl: AclBinding) -> bool:
        if self.pattern_type == MATCH:
            if self.name is None:
                return acl.pattern_type in (LITERAL, PREFIXED)
            if acl.pattern_type == LITERAL:
                return acl.name in (self.name, WILDCARD)
            return acl.pattern_type == PREFIXED and self.name.startswith(acl.name)
        if self.pattern_type not in (ANY, acl.pattern_type):
            return False
        return self.name is None or self.name == acl.name
