"""Per-API authorization, in one place: before a request reaches its handler, the rule of its
API asks the authorizer what Kafka's KafkaApis asks, and either answers the whole request
with Kafka's error (CLUSTER_AUTHORIZATION_FAILED ...), or takes the resources it may not touch
out of the request and puts them back into the handler's answer with their error
(TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED ...).

    >>> guard = RequestGuard(authorizer, handlers)
    >>> guard.handle(request, connection, dispatch)   # what the handler would answer, checked

A rule is ``rule(check, body, version) -> Verdict``; ``check`` is the connection's
``Check`` (principal, host, API) over the authorizer.  APIs without a rule (ApiVersions,
the SASL APIs) need no authorization.  Which operation each API needs is the table in
README.md, "Security: ACLs".
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from ..protocol import errors
from ..protocol.acls import (
    ALTER,
    ALTER_CONFIGS,
    CLUSTER,
    CLUSTER_ACTION,
    CLUSTER_NAME,
    CREATE,
    DELETE,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    READ,
    TOPIC,
    TRANSACTIONAL_ID,
    WRITE,
)
from ..protocol.registry import ApiKey
from . import rules as r
from .authorizer import Authorizer
from .rules import Check, Verdict

log = logging.getLogger(__name__)

_ZERO_UUID = uuid.UUID(int=0)
# The APIs anyone may call (before or after authenticating): they touch no resource.
NO_AUTHORIZATION = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})


class RequestGuard:
    """Checks each request against the authorizer before its handler sees it."""

    def __init__(self, authorizer: Authorizer, handlers):
        self.authorizer = authorizer
        self.handlers = handlers
        self.rules: dict[int, Callable[[Check, Any, int], Verdict]] = {
            ApiKey.PRODUCE: self.produce,
            ApiKey.FETCH: self.fetch,
            ApiKey.LIST_OFFSETS: r.topics_rule(
                DESCRIBE, "name", "partitions", r.list_offsets_error
            ),
            ApiKey.METADATA: self.metadata,
            ApiKey.CONTROLLED_SHUTDOWN: r.cluster_rule(CLUSTER_ACTION),
            ApiKey.OFFSET_COMMIT: r.offset_commit,
            ApiKey.OFFSET_FETCH: r.offset_fetch,
            ApiKey.FIND_COORDINATOR: r.find_coordinator,
            ApiKey.JOIN_GROUP: r.group_rule(READ),
            ApiKey.HEARTBEAT: r.group_rule(READ),
            ApiKey.LEAVE_GROUP: r.group_rule(READ),
            ApiKey.SYNC_GROUP: r.group_rule(READ),
            ApiKey.DESCRIBE_GROUPS: r.describe_groups,
            ApiKey.LIST_GROUPS: r.list_groups,
            ApiKey.CREATE_TOPICS: r.create_topics,
            ApiKey.DELETE_TOPICS: self.delete_topics,
            ApiKey.DELETE_RECORDS: r.topics_rule(
                DELETE, "name", "partitions", r.delete_records_error
            ),
            ApiKey.INIT_PRODUCER_ID: r.init_producer_id,
            ApiKey.OFFSET_FOR_LEADER_EPOCH: r.offset_for_leader_epoch,
            ApiKey.DESCRIBE_ACLS: r.cluster_rule(DESCRIBE),
            ApiKey.CREATE_ACLS: r.create_acls,
            ApiKey.DELETE_ACLS: r.delete_acls,
            ApiKey.DESCRIBE_CONFIGS: r.configs_rule(DESCRIBE_CONFIGS, "results"),
            ApiKey.ALTER_CONFIGS: r.configs_rule(ALTER_CONFIGS, "responses"),
            ApiKey.INCREMENTAL_ALTER_CONFIGS: r.configs_rule(ALTER_CONFIGS, "responses"),
            ApiKey.DESCRIBE_LOG_DIRS: r.cluster_rule(DESCRIBE, {"results": []}),
            ApiKey.CREATE_PARTITIONS: r.named_rule(ALTER, "topics", "results", TOPIC),
            ApiKey.DELETE_GROUPS: r.delete_groups,
            ApiKey.ELECT_LEADERS: r.elect_leaders,
            ApiKey.OFFSET_DELETE: r.offset_delete,
            ApiKey.DESCRIBE_CLUSTER: r.describe_cluster,
            ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: r.cluster_rule(DESCRIBE, {"results": []}),
            ApiKey.ALTER_USER_SCRAM_CREDENTIALS: r.alter_user_scram_credentials,
            ApiKey.DESCRIBE_PRODUCERS: r.topics_rule(
                READ, "name", "partition_indexes", r.describe_producers_error
            ),
        }

    def handle(self, request, connection, dispatch):
        """The answer to ``request`` from ``connection``: ``dispatch(request, connection)``'s
        once the rule of its API let it (or part of it) through."""
        rule = self.rules.get(request.api.key)
        if rule is None:
            if request.api.key in NO_AUTHORIZATION:
                return dispatch(request, connection)
            # An API served without a rule yet: refused rather than let through unchecked.
            log.warning("refusing %s: no authorization rule for it", request.api.name)
            return {"error_code": r.CLUSTER_DENIED}
        check = Check(self.authorizer, connection.principal, r.host(connection), request.api.name)
        verdict = rule(check, request.body, request.header.api_version)
        if verdict.response is not None:
            return verdict.response
        if verdict.body is not None:
            request = request._replace(body=verdict.body)
        answer = dispatch(request, connection)
        if verdict.merge is None:
            return answer
        if isinstance(answer, defer.Deferred):
            return answer.addCallback(verdict.merge)
        return verdict.merge(answer)

    # --- rules that need the broker's state ------------------------------------------------

    def produce(self, check: Check, body, version: int) -> Verdict:
        """Write on each topic (and on the transactional id if one is given); a refused
        partition's records are replaced by the error it answers."""
        refusal = None
        if body.transactional_id is not None and not check(
            WRITE, TRANSACTIONAL_ID, body.transactional_id
        ):
            refusal = errors.TransactionalIdAuthorizationFailedError(
                f"not authorized to write as transactional id {body.transactional_id}"
            )
        topics = []
        for topic, partitions in body.topics:
            error = refusal
            if error is None and not check(WRITE, TOPIC, topic):
                error = errors.TopicAuthorizationFailedError(f"not authorized to write {topic}")
            if error is not None:
                partitions = [(index, error) for index, _ in partitions]
            topics.append((topic, partitions))
        return Verdict(body=body._replace(topics=topics))

    def fetch(self, check: Check, body, version: int) -> Verdict:
        """A follower's fetch needs ClusterAction on the cluster, a consumer's Read on each
        topic; refused partitions answer TOPIC_AUTHORIZATION_FAILED, and a fetch of nothing
        but refused partitions answers at once."""
        if version >= 13:
            self.handlers.topic_ids.name_fetched_topics(body["topics"])
        if body["replica_id"] >= 0:
            follower_ok = check.cluster(CLUSTER_ACTION)
            ok, denied = r.split(body["topics"], lambda t: follower_ok)
        else:
            ok, denied = r.split(
                body["topics"], lambda t: t["topic"] is None or check(READ, TOPIC, t["topic"])
            )
        if not denied:
            return Verdict()
        refused = [r.fetch_refused(t) for t in denied]
        if not ok:
            return Verdict(response={"throttle_time_ms": 0, "error_code": 0, "responses": refused})

        def merge(response):
            response["responses"].extend(refused)
            return response

        return Verdict(body={**body, "topics": ok}, merge=merge)

    def metadata(self, check: Check, body, version: int) -> Verdict:
        """Describe on each topic: topics not allowed are left out of a listing of all and
        answer TOPIC_AUTHORIZATION_FAILED when asked by name; a topic the request would
        create needs Create on the cluster or on it; the authorized operations asked for
        are the authorizer's."""
        requested = body["topics"]
        known = self.handlers.metadata.topics
        config = self.handlers.config
        creating = config["auto.create.topics.enable"] and (
            version < 4 or body.get("allow_auto_topic_creation")
        )
        named = requested is not None and not (version == 0 and not requested)
        denied: list[str] = []
        new_body = None
        if named:
            ok = []
            for topic in requested:
                name = topic["name"]
                if name is None:
                    ok.append(topic)
                elif not check(DESCRIBE, TOPIC, name) or (
                    creating
                    and name not in known
                    and not (check.cluster(CREATE) or check(CREATE, TOPIC, name))
                ):
                    denied.append(name)
                else:
                    ok.append(topic)
            new_body = {**body, "topics": ok}
            if version == 0 and not ok:
                return Verdict(response=r.metadata_answer(self.handlers, denied))

        def merge(response):
            kept = []
            for topic in response["topics"]:
                name = topic["name"]
                see = check if named else check.quietly  # a listing of all leaves out quietly
                if name is not None and not see(DESCRIBE, TOPIC, name):
                    if named:
                        kept.append(r.metadata_refused(name, topic.get("topic_id", _ZERO_UUID)))
                    continue
                if body.get("include_topic_authorized_operations") and name is not None:
                    topic["topic_authorized_operations"] = check.operations(TOPIC, name)
                kept.append(topic)
            response["topics"] = kept + [r.metadata_refused(n, _ZERO_UUID) for n in denied]
            if body.get("include_cluster_authorized_operations"):
                response["cluster_authorized_operations"] = check.operations(CLUSTER, CLUSTER_NAME)
            return response

        return Verdict(body=new_body, merge=merge)

    def delete_topics(self, check: Check, body, version: int) -> Verdict:
        """Delete on each topic, named or (v6+) given by id."""
        names = self.handlers.topic_ids

        def name_of(topic) -> str | None:
            if topic.get("name") is not None:
                return topic["name"]
            return names.name_of(topic.get("topic_id", _ZERO_UUID))

        def allowed(topic) -> bool:
            name = name_of(topic)
            return name is None or check(DELETE, TOPIC, name)  # an unknown id: the handler's

        refused: list[dict] = []
        if version >= 6:
            ok, denied = r.split(body["topics"], allowed)
            refused = [r.delete_refused(name_of(t), t.get("topic_id", _ZERO_UUID)) for t in denied]
            new_body = {**body, "topics": ok}
        else:
            ok, denied = r.split(body["topic_names"], lambda n: check(DELETE, TOPIC, n))
            refused = [r.delete_refused(n, _ZERO_UUID) for n in denied]
            new_body = {**body, "topic_names": ok}
        if not refused:
            return Verdict()
        return Verdict(body=new_body, merge=r.extend("responses", refused))


__all__ = ["NO_AUTHORIZATION", "RequestGuard"]
