"""The broker's answers to the SASL APIs outside a login, and to the SCRAM credential admin
APIs (KIP-554): DescribeUserScramCredentials reads the credentials cache, and
AlterUserScramCredentials writes ZooKeeper (in the reactor's thread pool), one result per
user, with Kafka's per-user errors.

SaslHandshake and SaslAuthenticate reach these handlers only on a connection that needs no
login or has logged in already: both answer ILLEGAL_SASL_STATE, as Kafka does.
"""

from __future__ import annotations

import logging
from collections import Counter

from twisted.internet import threads

from ..protocol import errors
from ..protocol.registry import ApiKey
from ..protocol.sasl_apis import ScramMechanism
from ..protocol.security_nodes import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    SCRAM_MECHANISMS,
    credential_from_salted,
)
from .credentials import delete_credential, read_credentials, write_credential

log = logging.getLogger(__name__)


def _mechanism(code: int) -> str | None:
    try:
        name = ScramMechanism(code).mechanism_name
    except ValueError:
        return None
    return name if name in SCRAM_MECHANISMS else None


class ScramAdminHandlers:
    """Handlers of the SASL and SCRAM credential APIs; ``cluster.client`` is the broker's
    kazoo client."""

    def __init__(self, cluster, reactor):
        self.cluster = cluster
        self.reactor = reactor

    @property
    def contextual(self) -> dict:
        return {
            ApiKey.SASL_HANDSHAKE: self.sasl_handshake,
            ApiKey.SASL_AUTHENTICATE: self.sasl_authenticate,
            ApiKey.DESCRIBE_USER_SCRAM_CREDENTIALS: self.describe,
            ApiKey.ALTER_USER_SCRAM_CREDENTIALS: self.alter,
        }

    def sasl_handshake(self, request, connection):
        return {"error_code": errors.IllegalSaslStateError.code, "mechanisms": []}

    def sasl_authenticate(self, request, connection):
        return {
            "error_code": errors.IllegalSaslStateError.code,
            "error_message": "SaslAuthenticate request received after successful "
            "authentication, or on a listener without SASL",
            "auth_bytes": b"",
            "session_lifetime_ms": 0,
        }

    def _authorized(self, connection, operation: str) -> bool:
        """Whether ``connection.principal`` may ``operation`` (Describe or Alter) the
        cluster: always here, since with an authorizer the request guard
        (``guard.py``) has already refused whoever may not."""
        return True

    def _in_thread(self, work):
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), work)

    def describe(self, request, connection):
        names = [u["name"] for u in request.body["users"] or []]
        if not self._authorized(connection, "Describe"):
            return _describe_refused(errors.ClusterAuthorizationFailedError.code)
        client = self.cluster.client

        def work():
            found = read_credentials(client, None if not names else set(names))
            counts = Counter(names)
            results: list[dict] = []
            for name in names or list(found):
                if counts[name] > 1:
                    if name in (r["user"] for r in results):
                        continue
                    results.append(
                        _user_error(
                            name,
                            errors.DuplicateResourceError.code,
                            "Cannot describe SCRAM credentials for the same user twice in a "
                            "single request",
                        )
                    )
                    continue
                if name not in found:
                    results.append(
                        _user_error(
                            name,
                            errors.ResourceNotFoundError.code,
                            "Attempt to describe a user credential that does not exist",
                        )
                    )
                    continue
                infos = [
                    {"mechanism": ScramMechanism[m.replace("-", "_")], "iterations": c.iterations}
                    for m, c in sorted(found[name].items())
                ]
                results.append(
                    {
                        "user": name,
                        "error_code": 0,
                        "error_message": None,
                        "credential_infos": infos,
                    }
                )
            return {
                "throttle_time_ms": 0,
                "error_code": 0,
                "error_message": None,
                "results": results,
            }

        return self._in_thread(work)

    def alter(self, request, connection):
        body = request.body
        deletions, upsertions = body["deletions"], body["upsertions"]
        if not self._authorized(connection, "Alter"):
            users = {x["name"] for x in deletions + upsertions}
            code = errors.ClusterAuthorizationFailedError.code
            return {"throttle_time_ms": 0, "results": [_alter_error(u, code, None) for u in users]}
        errors_of: dict[str, tuple[int, str]] = {}
        seen = Counter((x["name"], x["mechanism"]) for x in deletions + upsertions)
        order: list[str] = []
        for item in deletions + upsertions:
            name = item["name"]
            if name not in order:
                order.append(name)
            if name in errors_of:
                continue
            if not name:
                errors_of[name] = (
                    errors.UnacceptableCredentialError.code,
                    "Username must not be empty",
                )
            elif _mechanism(item["mechanism"]) is None:
                errors_of[name] = (
                    errors.UnsupportedSaslMechanismError.code,
                    "Unknown SCRAM mechanism",
                )
            elif seen[(name, item["mechanism"])] > 1:
                errors_of[name] = (
                    errors.DuplicateResourceError.code,
                    "A user credential cannot be altered twice in the same request",
                )
            elif (
                "iterations" in item and not MIN_ITERATIONS <= item["iterations"] <= MAX_ITERATIONS
            ):
                errors_of[name] = (
                    errors.UnacceptableCredentialError.code,
                    f"Iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}",
                )
            elif "salted_password" in item and not (item["salt"] and item["salted_password"]):
                errors_of[name] = (
                    errors.UnacceptableCredentialError.code,
                    "Salt and salted password must not be empty",
                )
        client = self.cluster.client

        def work():
            for item in deletions:
                name = item["name"]
                if name in errors_of:
                    continue
                mechanism = _mechanism(item["mechanism"])
                if mechanism is None or not delete_credential(client, name, mechanism):
                    errors_of[name] = (
                        errors.ResourceNotFoundError.code,
                        "Attempt to delete a user credential that does not exist",
                    )
            for item in upsertions:
                name = item["name"]
                if name in errors_of:
                    continue
                mechanism = _mechanism(item["mechanism"])
                if mechanism is None:  # refused above: errors_of names the user
                    continue
                credential = credential_from_salted(
                    mechanism,
                    item["salted_password"],
                    item["salt"],
                    item["iterations"],
                )
                write_credential(client, name, credential)
                log.info("SCRAM credential %s of user %s set", credential.mechanism, name)
            return {
                "throttle_time_ms": 0,
                "results": [_alter_error(u, *errors_of.get(u, (0, None))) for u in order],
            }

        return self._in_thread(work)


def _user_error(user: str, code: int, message: str) -> dict:
    return {"user": user, "error_code": code, "error_message": message, "credential_infos": []}


def _alter_error(user: str, code: int, message: str | None) -> dict:
    return {"user": user, "error_code": code, "error_message": message}


def _describe_refused(code: int) -> dict:
    return {"throttle_time_ms": 0, "error_code": code, "error_message": None, "results": []}


__all__ = ["ScramAdminHandlers"]
