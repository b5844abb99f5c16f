"""DescribeAcls (29), CreateAcls (30) and DeleteAcls (31): the ACLs as Kafka's admin clients
see them.  Described from this broker's cache; created and deleted in ZooKeeper (in the
reactor's thread pool), then applied to the cache at once, the other brokers following the
change notifications.  Without an authorizer each answers SECURITY_DISABLED, as Kafka does.

A creation that is not a valid ACL (an ANY or UNKNOWN field, a PREFIXED ``*``, an operation
its resource type does not have, a name ZooKeeper cannot hold) answers INVALID_REQUEST with
the reason; a filter with an UNKNOWN field too.
"""

from __future__ import annotations

import logging

from twisted.internet import defer, threads

from ..protocol import errors
from ..protocol.acl_nodes import InvalidResourceNameError, check_node_name
from ..protocol.acls import AclBinding, AclError, AclFilter, ResourcePattern
from ..protocol.errors import NONE
from ..protocol.registry import ApiKey
from .acl_store import ZkAclStore
from .authorizer import Authorizer

log = logging.getLogger(__name__)

SECURITY_DISABLED = errors.SecurityDisabledError.code
INVALID_REQUEST = errors.InvalidRequestError.code
_DISABLED_MESSAGE = "no authorizer is configured on the broker"


def acl_filter(body: dict) -> AclFilter:
    """The filter of a DescribeAcls request or a DeleteAcls filter."""
    return AclFilter(
        body["resource_type_filter"],
        body["resource_name_filter"],
        body.get("pattern_type_filter", 3),
        body["principal_filter"],
        body["host_filter"],
        body["operation"],
        body["permission_type"],
    )


def binding_answer(acl: AclBinding) -> dict:
    return {
        "resource_type": acl.resource_type,
        "resource_name": acl.name,
        "pattern_type": acl.pattern_type,
        "principal": acl.principal,
        "host": acl.host,
        "operation": acl.operation,
        "permission_type": acl.permission,
    }


class AclHandlers:
    """The three ACL APIs over an authorizer (None: security disabled) and a cluster's
    ZooKeeper client."""

    def __init__(self, authorizer: Authorizer | None, cluster, reactor):
        self.authorizer = authorizer
        self.cluster = cluster
        self.reactor = reactor
        self.table = {
            ApiKey.DESCRIBE_ACLS: self.describe_acls,
            ApiKey.CREATE_ACLS: self.create_acls,
            ApiKey.DELETE_ACLS: self.delete_acls,
        }

    def _in_pool(self, work, *args):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), work, *args)

    def describe_acls(self, body, version):
        if self.authorizer is None:
            return {"error_code": SECURITY_DISABLED, "error_message": _DISABLED_MESSAGE}
        wanted = acl_filter(body)
        try:
            wanted.check()
        except AclError as exc:
            return {"error_code": INVALID_REQUEST, "error_message": str(exc)}
        resources: dict[ResourcePattern, list] = {}
        for acl in self.authorizer.acls.matching(wanted):
            resources.setdefault(acl.pattern, []).append(
                {
                    "principal": acl.principal,
                    "host": acl.host,
                    "operation": acl.operation,
                    "permission_type": acl.permission,
                }
            )
        return {
            "error_code": NONE,
            "error_message": None,
            "resources": [
                {
                    "resource_type": p.resource_type,
                    "resource_name": p.name,
                    "pattern_type": p.pattern_type,
                    "acls": acls,
                }
                for p, acls in sorted(resources.items())
            ],
        }

    @defer.inlineCallbacks
    def create_acls(self, body, version):
        creations = body["creations"]
        if self.authorizer is None:
            refused = {"error_code": SECURITY_DISABLED, "error_message": _DISABLED_MESSAGE}
            return {"results": [dict(refused) for _ in creations]}
        results = []
        valid: list[tuple[int, AclBinding]] = []
        for c in creations:
            acl = AclBinding(
                c["resource_type"],
                c["resource_name"],
                c.get("resource_pattern_type", 3),
                c["principal"],
                c["host"],
                c["operation"],
                c["permission_type"],
            )
            try:
                acl.check()
                check_node_name(acl.name)
            except (AclError, InvalidResourceNameError) as exc:
                results.append({"error_code": INVALID_REQUEST, "error_message": str(exc)})
                continue
            results.append({"error_code": NONE, "error_message": None})
            valid.append((len(results) - 1, acl))
        store = ZkAclStore(self.cluster.client)
        for index, acl in valid:
            try:
                entries = yield self._in_pool(
                    store.update, acl.pattern, lambda cur, e=acl.entry: cur | {e}
                )
            except Exception as exc:
                log.warning("creating ACL %s failed: %s", acl, exc)
                results[index] = {
                    "error_code": -1,
                    "error_message": f"storing the ACL failed: {exc}",
                }
                continue
            self.authorizer.acls.set(acl.pattern, entries)
            log.info("ACL created: %s", acl)
        return {"throttle_time_ms": 0, "results": results}

    @defer.inlineCallbacks
    def delete_acls(self, body, version):
        filters = body["filters"]
        if self.authorizer is None:
            refused = {"error_code": SECURITY_DISABLED, "error_message": _DISABLED_MESSAGE}
            return {"filter_results": [{**refused, "matching_acls": []} for _ in filters]}
        store = ZkAclStore(self.cluster.client)
        answers = []
        for f in filters:
            wanted = acl_filter(f)
            try:
                wanted.check()
            except AclError as exc:
                answers.append(
                    {"error_code": INVALID_REQUEST, "error_message": str(exc), "matching_acls": []}
                )
                continue
            patterns = sorted({acl.pattern for acl in self.authorizer.acls.matching(wanted)})
            matched: list[AclBinding] = []
            error = None
            for pattern in patterns:
                removed: list = []

                def change(current, pattern=pattern, removed=removed, wanted=wanted):
                    gone = {e for e in current if wanted.matches(AclBinding.of(pattern, e))}
                    removed[:] = sorted(gone)
                    return current - gone

                try:
                    entries = yield self._in_pool(store.update, pattern, change)
                except Exception as exc:
                    log.warning("deleting the ACLs of %s failed: %s", pattern, exc)
                    error = f"deleting the ACLs of {pattern} failed: {exc}"
                    continue
                self.authorizer.acls.set(pattern, entries)
                matched.extend(AclBinding.of(pattern, e) for e in removed)
            for acl in matched:
                log.info("ACL deleted: %s", acl)
            answers.append(
                {
                    "error_code": NONE if error is None else -1,
                    "error_message": error,
                    "matching_acls": [
                        {"error_code": NONE, "error_message": None, **binding_answer(a)}
                        for a in matched
                    ],
                }
            )
        return {"throttle_time_ms": 0, "filter_results": answers}
