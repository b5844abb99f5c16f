"""``headrace acls``: add, remove and list ACLs with kafka-acls' options and output, through
the ACL APIs of a broker (``--bootstrap-server``) or by writing Kafka's ZooKeeper nodes
directly (``--zookeeper``, as kafka-acls' ``--authorizer-properties zookeeper.connect=``).

    headrace acls --bootstrap-server B --add --allow-principal User:alice --operation Write \\
        --topic clicks
    headrace acls --zookeeper Z --add --allow-principal User:etl --consumer --topic logs- \\
        --group etl --resource-pattern-type prefixed
    headrace acls --bootstrap-server B --list --topic clicks
    headrace acls --bootstrap-server B --remove --topic clicks --force
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from kazoo.exceptions import KazooException, NoAuthError
from kazoo.handlers.threading import KazooTimeoutError

from broker.config import parse_properties
from broker.protocol.acls import (
    ALL,
    ALLOW,
    ANY,
    CLUSTER,
    CLUSTER_NAME,
    CREATE,
    DENY,
    DESCRIBE,
    GROUP,
    IDEMPOTENT_WRITE,
    LITERAL,
    MATCH,
    OPERATION_NAMES,
    PREFIXED,
    READ,
    RESOURCE_TYPE_NAMES,
    TOPIC,
    TRANSACTIONAL_ID,
    WRITE,
    AclBinding,
    AclError,
    AclFilter,
    ResourcePattern,
)
from broker.protocol.errors import KafkaError, error_for_code
from broker.protocol.registry import ApiKey

_PATTERN_TYPES = {"literal": LITERAL, "prefixed": PREFIXED, "match": MATCH, "any": ANY}
_OPERATIONS = {name.lower(): code for code, name in OPERATION_NAMES.items()}
# Kafka's Java enum names as kafka-acls prints them; pattern types and permissions apart,
# since their codes overlap (LITERAL and ALLOW are both 3).
_PATTERN_NAMES = {LITERAL: "LITERAL", PREFIXED: "PREFIXED"}
_PERMISSION_NAMES = {ALLOW: "ALLOW", DENY: "DENY"}


class AclCommandError(ValueError):
    """Options that do not make an ACL command."""


def add_parser(sub) -> None:
    p = sub.add_parser("acls", help="add, remove or list ACLs (as kafka-acls)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--bootstrap-server", help="host:port[,host:port...] of any broker")
    where.add_argument(
        "--zookeeper", help="zookeeper.connect of the cluster: write the ACL nodes directly"
    )
    p.add_argument("--command-config", help="client properties (security.protocol, sasl.*, ssl.*)")
    from .zk_auth import add_auth_argument

    add_auth_argument(p)
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--add", action="store_true")
    action.add_argument("--remove", action="store_true")
    action.add_argument("--list", action="store_true")
    for flag in ("--allow-principal", "--deny-principal", "--allow-host", "--deny-host"):
        p.add_argument(flag, action="append", default=[])
    p.add_argument("--principal", action="append", default=[], help="with --list: whose ACLs")
    p.add_argument(
        "--operation", action="append", default=[], help="Read, Write, Describe, ..., All"
    )
    p.add_argument("--topic", action="append", default=[])
    # not "group": the shared check of consumer group names is not for ACL patterns
    p.add_argument("--group", action="append", default=[], dest="acl_groups")
    p.add_argument("--transactional-id", action="append", default=[])
    p.add_argument("--cluster", action="store_true")
    p.add_argument(
        "--resource-pattern-type",
        default=None,
        choices=sorted(_PATTERN_TYPES),
        help="literal (default for --add), prefixed; match or any to --list or --remove",
    )
    p.add_argument("--producer", action="store_true", help="Write, Describe, Create on topics")
    p.add_argument(
        "--consumer", action="store_true", help="Read, Describe on topics, Read on group"
    )
    p.add_argument("--idempotent", action="store_true", help="with --producer: IdempotentWrite")
    p.add_argument("--force", action="store_true", help="remove without asking")
    p.set_defaults(func=run_acls_command)


# --- from options to bindings and filters -----------------------------------------------------


def _operation(name: str) -> int:
    code = _OPERATIONS.get(name.replace("-", "").replace("_", "").lower())
    if code is None:
        raise AclCommandError(
            f"unknown operation {name!r}; one of {', '.join(OPERATION_NAMES.values())}"
        )
    return code


def _resources(args, pattern_type: int) -> list[ResourcePattern]:
    found = [ResourcePattern(TOPIC, t, pattern_type) for t in args.topic]
    found += [ResourcePattern(GROUP, g, pattern_type) for g in args.acl_groups]
    found += [ResourcePattern(TRANSACTIONAL_ID, i, pattern_type) for i in args.transactional_id]
    if args.cluster:
        found.append(ResourcePattern(CLUSTER, CLUSTER_NAME, LITERAL))
    return found


def bindings_to_add(args) -> list[AclBinding]:
    """Every ACL ``--add`` asks for: each principal x host x operation x resource, or the
    sets of ``--producer`` and ``--consumer``."""
    pattern_type = _PATTERN_TYPES[args.resource_pattern_type or "literal"]
    if pattern_type not in (LITERAL, PREFIXED):
        raise AclCommandError("--add takes --resource-pattern-type literal or prefixed")
    who = [(p, ALLOW, args.allow_host or ["*"]) for p in args.allow_principal]
    who += [(p, DENY, args.deny_host or ["*"]) for p in args.deny_principal]
    if not who:
        raise AclCommandError("--add needs --allow-principal or --deny-principal")
    wanted: list[tuple[ResourcePattern, int]] = []
    if args.producer or args.consumer:
        if args.producer:
            if not args.topic and not args.transactional_id:
                raise AclCommandError("--producer needs --topic or --transactional-id")
            wanted += [
                (ResourcePattern(TOPIC, t, pattern_type), op)
                for t in args.topic
                for op in (WRITE, DESCRIBE, CREATE)
            ]
            wanted += [
                (ResourcePattern(TRANSACTIONAL_ID, i, pattern_type), op)
                for i in args.transactional_id
                for op in (WRITE, DESCRIBE)
            ]
            if args.idempotent:
                wanted.append((ResourcePattern(CLUSTER, CLUSTER_NAME, LITERAL), IDEMPOTENT_WRITE))
        if args.consumer:
            if not args.topic or not args.acl_groups:
                raise AclCommandError("--consumer needs --topic and --group")
            wanted += [
                (ResourcePattern(TOPIC, t, pattern_type), op)
                for t in args.topic
                for op in (READ, DESCRIBE)
            ]
            wanted += [(ResourcePattern(GROUP, g, pattern_type), READ) for g in args.acl_groups]
    else:
        resources = _resources(args, pattern_type)
        if not resources:
            raise AclCommandError(
                "name a resource: --topic, --group, --transactional-id or --cluster"
            )
        operations = [_operation(o) for o in args.operation] or [ALL]
        wanted = [(r, op) for r in resources for op in operations]
    bindings = []
    for pattern, op in wanted:
        for principal, permission, hosts in who:
            for host in hosts:
                acl = AclBinding.of(pattern, _entry(principal, host, op, permission))
                try:
                    acl.check()
                except AclError as exc:
                    raise AclCommandError(str(exc)) from None
                bindings.append(acl)
    return sorted(set(bindings))


def _entry(principal, host, op, permission):
    from broker.protocol.acls import AccessControlEntry

    return AccessControlEntry(principal, host, op, permission)


def filters_of(args) -> list[AclFilter]:
    """The filters of ``--list`` and ``--remove``: each resource named (every resource when
    none is), narrowed by principals, hosts and operations when given."""
    default = "literal" if args.remove else "any"
    pattern_type = _PATTERN_TYPES[args.resource_pattern_type or default]
    resources = _resources(args, pattern_type)
    targets: list[tuple[int, str | None, int]] = [
        (r.resource_type, r.name, r.pattern_type if r.resource_type != CLUSTER else pattern_type)
        for r in resources
    ] or [(ANY, None, pattern_type)]
    principals = args.allow_principal + args.deny_principal + args.principal or [None]
    permission = ALLOW if args.allow_principal and not args.deny_principal else ANY
    if args.deny_principal and not args.allow_principal:
        permission = DENY
    hosts = args.allow_host + args.deny_host or [None]
    operations = [_operation(o) for o in args.operation] or [ANY]
    return [
        AclFilter(rtype, name, ptype, principal, host, op, permission)
        for rtype, name, ptype in targets
        for principal in principals
        for host in hosts
        for op in operations
    ]


# --- kafka-acls' output -----------------------------------------------------------------------


def describe_pattern(pattern: ResourcePattern) -> str:
    rtype = RESOURCE_TYPE_NAMES[pattern.resource_type]
    rtype = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(rtype)).upper()
    return (
        f"ResourcePattern(resourceType={rtype}, name={pattern.name}, "
        f"patternType={_PATTERN_NAMES.get(pattern.pattern_type, pattern.pattern_type)})"
    )


def describe_entry(acl: AclBinding) -> str:
    operation = OPERATION_NAMES[acl.operation]
    operation = "".join(
        "_" + c if c.isupper() and i else c for i, c in enumerate(operation)
    ).upper()
    return (
        f"(principal={acl.principal}, host={acl.host}, operation={operation}, "
        f"permissionType={_PERMISSION_NAMES[acl.permission]})"
    )


def print_acls(title: str, acls: Iterable[AclBinding], out=None) -> None:
    out = out or sys.stdout
    by_pattern: dict[ResourcePattern, list[AclBinding]] = {}
    for acl in acls:
        by_pattern.setdefault(acl.pattern, []).append(acl)
    for pattern, entries in sorted(by_pattern.items()):
        print(f"{title} `{describe_pattern(pattern)}`: ", file=out)
        for acl in sorted(entries):
            print(f" \t{describe_entry(acl)} ", file=out)
        print(file=out)


# --- the two back ends ------------------------------------------------------------------------


class BrokerAcls:
    """The ACL APIs of a broker."""

    def __init__(self, bootstrap: str, security=None):
        from consumers.client import connect_any

        self.conn = connect_any(bootstrap, **({"security": security} if security else {}))

    def close(self) -> None:
        self.conn.close()

    def add(self, bindings: list[AclBinding]) -> None:
        creations = [
            {
                "resource_type": b.resource_type,
                "resource_name": b.name,
                "resource_pattern_type": b.pattern_type,
                "principal": b.principal,
                "host": b.host,
                "operation": b.operation,
                "permission_type": b.permission,
            }
            for b in bindings
        ]
        answer = self.conn.request(ApiKey.CREATE_ACLS, {"creations": creations})
        for result in answer["results"]:
            _raise_for(result)

    def matching(self, acl_filter: AclFilter) -> list[AclBinding]:
        answer = self.conn.request(ApiKey.DESCRIBE_ACLS, _filter_body(acl_filter))
        _raise_for(answer)
        return [
            AclBinding(
                r["resource_type"],
                r["resource_name"],
                r["pattern_type"],
                a["principal"],
                a["host"],
                a["operation"],
                a["permission_type"],
            )
            for r in answer["resources"]
            for a in r["acls"]
        ]

    def remove(self, filters: list[AclFilter]) -> None:
        answer = self.conn.request(
            ApiKey.DELETE_ACLS, {"filters": [_filter_body(f) for f in filters]}
        )
        for result in answer["filter_results"]:
            _raise_for(result)


class ZooKeeperAcls:
    """Kafka's ACL nodes, written directly; brokers follow the change notifications."""

    def __init__(self, connect: str, credentials=None):
        from broker.protocol.zk_client import zookeeper_client
        from broker.security.acl_store import ZkAclStore

        # With an identity, nodes are created as a secure broker creates them (Kafka's
        # tools decide the same way): owned by it, readable by all.
        self.client = zookeeper_client(connect, credentials, secure=credentials is not None)
        self.client.start(timeout=15)
        self.store = ZkAclStore(self.client)

    def close(self) -> None:
        self.client.stop()
        self.client.close()

    def add(self, bindings: list[AclBinding]) -> None:
        self.store.add(bindings)

    def matching(self, acl_filter: AclFilter) -> list[AclBinding]:
        return self.store.load().matching(acl_filter)

    def remove(self, filters: list[AclFilter]) -> None:
        acls = self.store.load()
        self.store.remove({a for f in filters for a in acls.matching(f)})


def _filter_body(f: AclFilter) -> dict:
    return {
        "resource_type_filter": f.resource_type,
        "resource_name_filter": f.name,
        "pattern_type_filter": f.pattern_type,
        "principal_filter": f.principal,
        "host_filter": f.host,
        "operation": f.operation,
        "permission_type": f.permission,
    }


def _raise_for(result: dict) -> None:
    if result["error_code"]:
        error = error_for_code(result["error_code"])
        raise error(result.get("error_message") or error.description)


# --- the command ------------------------------------------------------------------------------


def _backend(args):
    if args.zookeeper:
        from .zk_auth import credentials_from_args

        return ZooKeeperAcls(args.zookeeper, credentials_from_args(args))
    security = None
    if args.command_config:
        from consumers.security import ClientSecurity

        text = Path(args.command_config).read_text(encoding="utf-8")
        security = ClientSecurity.from_properties(parse_properties(text))
    return BrokerAcls(args.bootstrap_server, security)


def run_acls_command(args) -> int:
    try:
        if args.add:
            bindings = bindings_to_add(args)
        filters = filters_of(args)
        backend = _backend(args)
    except (
        AclCommandError,
        OSError,
        ValueError,
        ConnectionError,
        KazooException,
        KazooTimeoutError,
    ) as exc:
        print(f"headrace acls: {exc}", file=sys.stderr)
        return 1
    try:
        if args.add:
            print_acls("Adding ACLs for resource", bindings)
            backend.add(bindings)
            patterns = sorted({b.pattern for b in bindings})
            _print_current(
                backend, [AclFilter(p.resource_type, p.name, p.pattern_type) for p in patterns]
            )
        elif args.remove:
            doomed = sorted({a for f in filters for a in backend.matching(f)})
            if not doomed:
                print("No ACLs match.", file=sys.stderr)
                return 0
            if not args.force:
                print_acls("ACLs to remove from resource", doomed)
                answer = input("Are you sure you want to remove these ACLs? (y/n) ")
                if answer.strip().lower() not in ("y", "yes"):
                    return 1
            backend.remove(filters)
            patterns = sorted({a.pattern for a in doomed})
            _print_current(
                backend, [AclFilter(p.resource_type, p.name, p.pattern_type) for p in patterns]
            )
        else:
            _print_current(backend, filters)
    except KafkaError as exc:
        print(f"headrace acls: {exc.name}: {exc.args[0]}", file=sys.stderr)
        return 1
    except NoAuthError:
        print(
            "headrace acls: ZooKeeper refused the write (NoAuth): the ACL nodes belong to "
            "another identity; give --zookeeper-auth-file with the brokers' identity",
            file=sys.stderr,
        )
        return 1
    except (AclError, KazooException, KazooTimeoutError) as exc:
        print(f"headrace acls: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    return 0


def _print_current(backend, filters: list[AclFilter]) -> None:
    found = sorted({a for f in filters for a in backend.matching(f)})
    print_acls("Current ACLs for resource", found)


__all__ = ["add_parser", "bindings_to_add", "filters_of", "run_acls_command"]
