"""The authorization rules of the APIs, one function per API (or a builder shared by
several): ``rule(check, body, version) -> Verdict``.  ``guard.py`` applies them; those that need
the broker's state (Produce, Fetch, Metadata, DeleteTopics) are its methods.

Each rule asks what Kafka's KafkaApis asks of the same request and answers as it does:
refused resources are taken out of the request and put back into the answer with Kafka's
error, or the whole request is answered with one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..protocol import errors
from ..protocol.acls import (
    ALTER,
    CLUSTER,
    CLUSTER_ACTION,
    CLUSTER_NAME,
    CREATE,
    DELETE,
    DESCRIBE,
    GROUP,
    IDEMPOTENT_WRITE,
    READ,
    TOPIC,
    TRANSACTIONAL_ID,
    WRITE,
)
from .authorizer import Authorizer

log = logging.getLogger(__name__)

TOPIC_DENIED = errors.TopicAuthorizationFailedError.code
GROUP_DENIED = errors.GroupAuthorizationFailedError.code
CLUSTER_DENIED = errors.ClusterAuthorizationFailedError.code
TXN_DENIED = errors.TransactionalIdAuthorizationFailedError.code
_ZERO_UUID = uuid.UUID(int=0)
_CONFIG_TOPIC, _CONFIG_BROKER, _CONFIG_BROKER_LOGGER = 2, 4, 8  # DescribeConfigs' types


@dataclass(frozen=True)
class Check:
    """One request's asker: the connection's principal and address, and the API."""

    authorizer: Authorizer
    principal: str
    host: str
    api: str

    def __call__(self, operation: int, resource_type: int, name: str) -> bool:
        return self.authorizer.authorize(
            self.principal, self.host, operation, resource_type, name, self.api
        )

    def quietly(self, operation: int, resource_type: int, name: str) -> bool:
        """As a call, a denial logged at debug: for listings that leave out what may not be
        seen (Kafka logs those quietly too)."""
        return self.authorizer.authorize(
            self.principal, self.host, operation, resource_type, name, self.api, False
        )

    def cluster(self, operation: int) -> bool:
        return self(operation, CLUSTER, CLUSTER_NAME)

    def operations(self, resource_type: int, name: str) -> int:
        return self.authorizer.authorized_operations(self.principal, self.host, resource_type, name)

    def may_write_some_topic(self) -> bool:
        """KIP-679: Write on some topic, by Kafka's ``authorizeByResourceType`` (see
        ``Authorizer.authorize_by_resource_type``)."""
        return self.authorizer.authorize_by_resource_type(self.principal, self.host, WRITE, TOPIC)


@dataclass
class Verdict:
    """A rule's answer: ``response`` (answer this, the handler is not called), or the
    ``body`` to hand the handler and ``merge`` to apply to its answer (None: as it is)."""

    body: Any = None
    merge: Callable[[Any], Any] | None = None
    response: Any = None


def split(items, allowed: Callable[[Any], bool]):
    ok: list = []
    denied: list = []
    for item in items:
        (ok if allowed(item) else denied).append(item)
    return ok, denied


# --- rule builders ---------------------------------------------------------------------------


def host(connection) -> str:
    transport = getattr(connection, "transport", None)
    peer = transport.getPeer() if transport is not None else None
    return getattr(peer, "host", "") or ""


def extend(field: str, refused: list) -> Callable[[dict], dict]:
    def merge(response: dict) -> dict:
        response[field] = list(response.get(field) or []) + refused
        return response

    return merge


def cluster_rule(operation: int, extra: dict | None = None):
    """The whole request needs ``operation`` on the cluster."""

    def rule(check: Check, body, version: int) -> Verdict:
        if check.cluster(operation):
            return Verdict()
        return Verdict(response={"error_code": CLUSTER_DENIED, **(extra or {})})

    return rule


def group_rule(operation: int):
    """The request's ``group_id`` needs ``operation`` on it."""

    def rule(check: Check, body, version: int) -> Verdict:
        if check(operation, GROUP, body["group_id"]):
            return Verdict()
        return Verdict(response={"error_code": GROUP_DENIED, "generation_id": -1, "member_id": ""})

    return rule


def topics_rule(operation: int, name_field: str, partitions_field: str, refused_partition):
    """Each entry of ``topics`` needs ``operation`` on its topic; a refused topic answers
    each of its partitions with ``refused_partition(partition)``."""

    def rule(check: Check, body, version: int) -> Verdict:
        ok, denied = split(body["topics"], lambda t: check(operation, TOPIC, t[name_field]))
        if not denied:
            return Verdict()
        refused = [
            {
                name_field: t[name_field],
                "partitions": [refused_partition(p) for p in t[partitions_field]],
            }
            for t in denied
        ]
        return Verdict(body={**body, "topics": ok}, merge=extend("topics", refused))

    return rule


def named_rule(operation: int, request_field: str, response_field: str, resource_type: int):
    """Each entry of ``request_field`` (a struct with a ``name``) needs ``operation``."""
    code = TOPIC_DENIED if resource_type == TOPIC else GROUP_DENIED

    def rule(check: Check, body, version: int) -> Verdict:
        ok, denied = split(
            body[request_field], lambda t: check(operation, resource_type, t["name"])
        )
        if not denied:
            return Verdict()
        refused = [
            {"name": t["name"], "error_code": code, "error_message": "not authorized"}
            for t in denied
        ]
        return Verdict(body={**body, request_field: ok}, merge=extend(response_field, refused))

    return rule


def configs_rule(operation: int, response_field: str):
    """A topic's configs need ``operation`` on the topic, a broker's on the cluster."""

    def allowed(check: Check, resource) -> bool:
        if resource["resource_type"] == _CONFIG_TOPIC:
            return check(operation, TOPIC, resource["resource_name"])
        if resource["resource_type"] in (_CONFIG_BROKER, _CONFIG_BROKER_LOGGER):
            return check.cluster(operation)
        return True  # the handler answers an unknown type

    def rule(check: Check, body, version: int) -> Verdict:
        ok, denied = split(body["resources"], lambda r: allowed(check, r))
        if not denied:
            return Verdict()
        refused = [
            {
                "error_code": TOPIC_DENIED
                if r["resource_type"] == _CONFIG_TOPIC
                else CLUSTER_DENIED,
                "error_message": "not authorized",
                "resource_type": r["resource_type"],
                "resource_name": r["resource_name"],
                "configs": [],
            }
            for r in denied
        ]
        return Verdict(body={**body, "resources": ok}, merge=extend(response_field, refused))

    return rule


def list_offsets_error(p) -> dict:
    return {
        "partition_index": p["partition_index"],
        "error_code": TOPIC_DENIED,
        "timestamp": -1,
        "offset": -1,
        "leader_epoch": -1,
    }


def delete_records_error(p) -> dict:
    return {
        "partition_index": p["partition_index"],
        "low_watermark": -1,
        "error_code": TOPIC_DENIED,
    }


def describe_producers_error(index) -> dict:
    return {"partition_index": index, "error_code": TOPIC_DENIED, "active_producers": []}


def fetch_refused(topic) -> dict:
    return {
        "topic": topic["topic"],
        "topic_id": topic.get("topic_id", _ZERO_UUID),
        "partitions": [
            {
                "partition_index": p["partition"],
                "error_code": TOPIC_DENIED,
                "high_watermark": -1,
                "last_stable_offset": -1,
                "log_start_offset": -1,
                "aborted_transactions": None,
                "preferred_read_replica": -1,
                "records": b"",
            }
            for p in topic["partitions"]
        ],
    }


def metadata_refused(name: str, topic_id) -> dict:
    return {
        "error_code": TOPIC_DENIED,
        "name": name,
        "topic_id": topic_id,
        "is_internal": False,
        "partitions": [],
    }


def metadata_answer(handlers, denied: list[str]) -> dict:
    """A Metadata answer naming only refused topics (v0, all asked for refused)."""
    return {
        "throttle_time_ms": 0,
        "brokers": [
            {"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
            for b in sorted(handlers.metadata.brokers.values(), key=lambda b: b.node_id)
        ],
        "topics": [metadata_refused(n, _ZERO_UUID) for n in denied],
    }


def delete_refused(name: str | None, topic_id) -> dict:
    return {
        "name": name,
        "topic_id": topic_id,
        "error_code": TOPIC_DENIED,
        "error_message": "not authorized to delete the topic",
    }


# --- group APIs ------------------------------------------------------------------------------


def offset_commit(check: Check, body, version: int) -> Verdict:
    """Read on the group, then Read on each topic."""
    if not check(READ, GROUP, body["group_id"]):
        refused = [
            {
                "name": t["name"],
                "partitions": [_partition_error(p, GROUP_DENIED) for p in t["partitions"]],
            }
            for t in body["topics"]
        ]
        return Verdict(response={"throttle_time_ms": 0, "topics": refused})
    return topics_rule(READ, "name", "partitions", lambda p: _partition_error(p, TOPIC_DENIED))(
        check, body, version
    )


def _partition_error(p, code: int) -> dict:
    return {"partition_index": p["partition_index"], "error_code": code}


def offset_delete(check: Check, body, version: int) -> Verdict:
    """Delete on the group, then Read on each topic."""
    if not check(DELETE, GROUP, body["group_id"]):
        return Verdict(response={"error_code": GROUP_DENIED, "topics": []})
    return topics_rule(READ, "name", "partitions", lambda p: _partition_error(p, TOPIC_DENIED))(
        check, body, version
    )


def offset_fetch(check: Check, body, version: int) -> Verdict:
    """Read on each group; its topics' offsets only where Describe is allowed (asked by
    name: TOPIC_AUTHORIZATION_FAILED; all of them: the others left out)."""
    if version < 8:
        if not check(READ, GROUP, body["group_id"]):
            return Verdict(response={"error_code": GROUP_DENIED, "topics": []})
        return Verdict(merge=lambda r: {**r, "topics": _fetched_topics(check, r["topics"])})
    ok, denied = split(body["groups"], lambda g: check(READ, GROUP, g["group_id"]))
    refused = [
        {"group_id": g["group_id"], "topics": [], "error_code": GROUP_DENIED} for g in denied
    ]
    if not ok:
        return Verdict(response={"groups": refused})

    def merge(response):
        for group in response["groups"]:
            group["topics"] = _fetched_topics(check, group["topics"])
        response["groups"] = response["groups"] + refused
        return response

    return Verdict(body={**body, "groups": ok}, merge=merge)


def _fetched_topics(check: Check, topics) -> list:
    kept = []
    for topic in topics:
        if check(DESCRIBE, TOPIC, topic["name"]):
            kept.append(topic)
            continue
        for p in topic["partitions"]:
            p.update(committed_offset=-1, metadata="", error_code=TOPIC_DENIED)
        kept.append(topic)
    return kept


def find_coordinator(check: Check, body, version: int) -> Verdict:
    """Describe on the group (or, key type 1, on the transactional id)."""
    key_type = body.get("key_type", 0)
    resource, code = (GROUP, GROUP_DENIED) if key_type == 0 else (TRANSACTIONAL_ID, TXN_DENIED)
    refused = {"error_code": code, "error_message": "not authorized", "node_id": -1, "host": ""}
    refused["port"] = -1
    if version < 4:
        return Verdict() if check(DESCRIBE, resource, body["key"]) else Verdict(response=refused)
    ok, denied = split(body["coordinator_keys"], lambda k: check(DESCRIBE, resource, k))
    if not denied:
        return Verdict()
    answers = [{"key": k, **refused} for k in denied]
    if not ok:
        return Verdict(response={"coordinators": answers})
    return Verdict(body={**body, "coordinator_keys": ok}, merge=extend("coordinators", answers))


def describe_groups(check: Check, body, version: int) -> Verdict:
    """Describe on each group; its authorized operations, when asked, the authorizer's."""
    ok, denied = split(body["groups"], lambda g: check(DESCRIBE, GROUP, g))
    refused = [
        {
            "error_code": GROUP_DENIED,
            "group_id": g,
            "group_state": "",
            "protocol_type": "",
            "protocol_data": "",
            "members": [],
        }
        for g in denied
    ]

    def merge(response):
        if body.get("include_authorized_operations"):
            for group in response["groups"]:
                group["authorized_operations"] = check.operations(GROUP, group["group_id"])
        response["groups"] = response["groups"] + refused
        return response

    if not ok:
        return Verdict(response={"groups": refused})
    return Verdict(body={**body, "groups": ok}, merge=merge)


def list_groups(check: Check, body, version: int) -> Verdict:
    """Describe on the cluster lists every group; otherwise only those Describe allows."""
    if check.cluster(DESCRIBE):
        return Verdict()

    def merge(response):
        response["groups"] = [
            g for g in response["groups"] if check.quietly(DESCRIBE, GROUP, g["group_id"])
        ]
        return response

    return Verdict(merge=merge)


def delete_groups(check: Check, body, version: int) -> Verdict:
    ok, denied = split(body["groups_names"], lambda g: check(DELETE, GROUP, g))
    if not denied:
        return Verdict()
    refused = [{"group_id": g, "error_code": GROUP_DENIED} for g in denied]
    if not ok:
        return Verdict(response={"results": refused})
    return Verdict(body={**body, "groups_names": ok}, merge=extend("results", refused))


# --- topics, producers, the cluster ------------------------------------------------------------


def create_topics(check: Check, body, version: int) -> Verdict:
    """Create on the cluster, or on each topic."""
    if check.cluster(CREATE):
        return Verdict()
    ok, denied = split(body["topics"], lambda t: check(CREATE, TOPIC, t["name"]))
    if not denied:
        return Verdict()
    refused = [
        {
            "name": t["name"],
            "error_code": TOPIC_DENIED,
            "error_message": "not authorized to create the topic",
            "topic_config_error_code": TOPIC_DENIED,
            "num_partitions": -1,
            "replication_factor": -1,
            "configs": None,
        }
        for t in denied
    ]
    return Verdict(body={**body, "topics": ok}, merge=extend("topics", refused))


def init_producer_id(check: Check, body, version: int) -> Verdict:
    """Write on the transactional id when one is given; else IdempotentWrite on the cluster
    or Write on some topic (KIP-679)."""
    refused = {"producer_id": -1, "producer_epoch": -1}
    txn = body.get("transactional_id")
    if txn is not None:
        if check(WRITE, TRANSACTIONAL_ID, txn):
            return Verdict()
        return Verdict(response={"error_code": TXN_DENIED, **refused})
    if check.cluster(IDEMPOTENT_WRITE) or check.may_write_some_topic():
        return Verdict()
    return Verdict(response={"error_code": CLUSTER_DENIED, **refused})


def offset_for_leader_epoch(check: Check, body, version: int) -> Verdict:
    """A follower (replica_id >= 0) needs ClusterAction on the cluster; a consumer Describe
    on each topic."""
    follower_ok = body.get("replica_id", -1) >= 0 and check.cluster(CLUSTER_ACTION)

    def allowed(topic) -> bool:
        if body.get("replica_id", -1) >= 0:
            return follower_ok
        return check(DESCRIBE, TOPIC, topic["topic"])

    ok, denied = split(body["topics"], allowed)
    if not denied:
        return Verdict()
    refused = [
        {
            "topic": t["topic"],
            "partitions": [
                {
                    "error_code": TOPIC_DENIED,
                    "partition": p["partition"],
                    "leader_epoch": -1,
                    "end_offset": -1,
                }
                for p in t["partitions"]
            ],
        }
        for t in denied
    ]
    return Verdict(body={**body, "topics": ok}, merge=extend("topics", refused))


def create_acls(check: Check, body, version: int) -> Verdict:
    if check.cluster(ALTER):
        return Verdict()
    refused = {"error_code": CLUSTER_DENIED, "error_message": "not authorized to alter ACLs"}
    return Verdict(response={"results": [dict(refused) for _ in body["creations"]]})


def delete_acls(check: Check, body, version: int) -> Verdict:
    if check.cluster(ALTER):
        return Verdict()
    refused = {"error_code": CLUSTER_DENIED, "error_message": "not authorized to alter ACLs"}
    return Verdict(
        response={"filter_results": [{**refused, "matching_acls": []} for _ in body["filters"]]}
    )


def elect_leaders(check: Check, body, version: int) -> Verdict:
    if check.cluster(ALTER):
        return Verdict()
    results = [
        {
            "topic": t["topic"],
            "partition_result": [
                {"partition_id": p, "error_code": CLUSTER_DENIED, "error_message": "not authorized"}
                for p in t["partitions"]
            ],
        }
        for t in body["topic_partitions"] or []
    ]
    return Verdict(response={"error_code": CLUSTER_DENIED, "replica_election_results": results})


def alter_user_scram_credentials(check: Check, body, version: int) -> Verdict:
    """Alter on the cluster; refused, each user named answers CLUSTER_AUTHORIZATION_FAILED."""
    if check.cluster(ALTER):
        return Verdict()
    users = sorted({x["name"] for x in body["deletions"] + body["upsertions"]})
    results = [
        {"user": u, "error_code": CLUSTER_DENIED, "error_message": "not authorized"} for u in users
    ]
    return Verdict(response={"results": results})


def describe_cluster(check: Check, body, version: int) -> Verdict:
    """Anyone may ask; the cluster's authorized operations, when asked, are the authorizer's."""
    if not body.get("include_cluster_authorized_operations"):
        return Verdict()

    def merge(response):
        response["cluster_authorized_operations"] = check.operations(CLUSTER, CLUSTER_NAME)
        return response

    return Verdict(merge=merge)


__all__ = ["Check", "Verdict"]
