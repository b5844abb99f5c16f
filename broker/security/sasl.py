"""A connection's SASL authentication, as a state machine without sockets.

A connection on a SASL_PLAINTEXT or SASL_SSL listener gets a ``SaslGate``; the server asks it
whether each request may pass and hands it the SASL requests.  States::

    HANDSHAKE     ApiVersions and SaslHandshake allowed
        | SaslHandshake v1 (a mechanism enabled)     | SaslHandshake v0
        v                                            v
    AUTHENTICATE  SaslAuthenticate requests     RAW  size-prefixed SASL tokens, no header
        | the mechanism is satisfied                 |
        v                                            v
    COMPLETE      every request passes; ``principal`` is ``User:<name>``
    FAILED        any failure: the answer leaves after connection.failed.authentication
                  .delay.ms, then the connection is closed

Errors are Kafka's: UNSUPPORTED_SASL_MECHANISM (with the enabled mechanisms),
ILLEGAL_SASL_STATE for a request out of order, SASL_AUTHENTICATION_FAILED with a message.
Any other request before authentication closes the connection without an answer.  Every
failure is logged with the peer and the user claimed.

    >>> from twisted.internet.task import Clock
    >>> gate = SaslGate(ListenerSasl(("PLAIN",), {"u": "p"}.get), Clock(), "peer")
    >>> gate.handshake({"mechanism": "PLAIN"}, 1)
    {'error_code': 0, 'mechanisms': ['PLAIN']}
    >>> gate.authenticate(b"\\x00u\\x00p", 2)["error_code"], gate.principal
    (0, 'User:u')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from twisted.internet import task

from ..protocol import errors
from ..protocol.registry import ApiKey
from ..protocol.security_nodes import ScramCredential
from .mechanisms import AuthenticationFailed, PlainServer, ScramServer, server_mechanism

log = logging.getLogger(__name__)

BEFORE_LOGIN = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})
FAILED_DELAY_MS = 100  # Kafka's connection.failed.authentication.delay.ms


def _no_credential(user: str, mechanism: str) -> ScramCredential | None:
    return None


@dataclass(frozen=True)
class ListenerSasl:
    """A listener's SASL: the mechanisms enabled, where PLAIN's passwords and SCRAM's
    credentials are looked up, the delay before a failure is answered, and the secret that
    derives unknown users' fake salts."""

    mechanisms: tuple[str, ...]
    password_of: Callable[[str], str | None] = lambda user: None
    credential_of: Callable[[str, str], ScramCredential | None] = _no_credential
    failed_delay_ms: int = FAILED_DELAY_MS
    secret: bytes = field(default_factory=lambda: os.urandom(32))


class State(Enum):
    HANDSHAKE = "handshake"
    AUTHENTICATE = "authenticate"
    RAW = "raw"
    COMPLETE = "complete"
    FAILED = "failed"


class SaslGate:
    """The SASL state of one connection; ``clock`` delays the answers to failures."""

    def __init__(self, settings: ListenerSasl, clock, peer: str):
        self.settings = settings
        self.clock = clock
        self.peer = peer
        self.state = State.HANDSHAKE
        self.principal: str | None = None
        self._mechanism: PlainServer | ScramServer | None = None

    @property
    def authenticated(self) -> bool:
        return self.state is State.COMPLETE

    @property
    def failed(self) -> bool:
        return self.state is State.FAILED

    @property
    def raw_tokens(self) -> bool:
        """After SaslHandshake v0: the next frames are bare SASL tokens."""
        return self.state is State.RAW

    def allows(self, api_key: int) -> bool:
        """Whether a request of ``api_key`` may be handled now; False: close, unanswered."""
        if self.state is State.COMPLETE:
            return True
        if self.state is State.HANDSHAKE:
            return api_key in BEFORE_LOGIN
        if self.state is State.AUTHENTICATE:
            return api_key in (ApiKey.SASL_AUTHENTICATE, ApiKey.SASL_HANDSHAKE)
        return False

    def refuse(self, api_name: str) -> None:
        """A request that may not come now: logged; the server closes the connection."""
        log.warning(
            "closing %s: %s request before SASL authentication completed", self.peer, api_name
        )
        self.state = State.FAILED

    def handshake(self, body: dict, version: int):
        """SaslHandshake: choose the mechanism; v0 switches to raw tokens.  A body, or a
        Deferred of one for a failure (then the server closes the connection)."""
        enabled = list(self.settings.mechanisms)
        if self.state is not State.HANDSHAKE:
            return self._fail(
                {"error_code": errors.IllegalSaslStateError.code, "mechanisms": enabled},
                f"SaslHandshake in state {self.state.value}",
            )
        mechanism = body["mechanism"]
        if mechanism not in enabled:
            return self._fail(
                {"error_code": errors.UnsupportedSaslMechanismError.code, "mechanisms": enabled},
                f"mechanism {mechanism!r} is not enabled (enabled: {', '.join(enabled)})",
            )
        s = self.settings
        self._mechanism = server_mechanism(mechanism, s.password_of, s.credential_of, s.secret)
        self.state = State.RAW if version == 0 else State.AUTHENTICATE
        return {"error_code": errors.NONE, "mechanisms": enabled}

    def authenticate(self, auth_bytes: bytes, version: int):
        """SaslAuthenticate: one step of the mechanism.  A body, or a Deferred of one."""
        if self.state is not State.AUTHENTICATE:
            return self._fail(
                _auth_body(errors.IllegalSaslStateError.code, "Unexpected SaslAuthenticate"),
                f"SaslAuthenticate in state {self.state.value}",
            )
        try:
            token = self._step(auth_bytes)
        except AuthenticationFailed as exc:
            body = _auth_body(errors.SaslAuthenticationFailedError.code, exc.message)
            return self._fail(body, exc.message, exc.user)
        return _auth_body(errors.NONE, None, token)

    def raw_token(self, token: bytes):
        """A bare token after SaslHandshake v0: the bare token to answer (None once the
        login is complete and the mechanism has nothing to send), or a Deferred that fires
        with None after the delay of a failure (then the server closes the connection)."""
        try:
            return self._step(token)
        except AuthenticationFailed as exc:
            return self._fail(None, exc.message, exc.user)

    def _step(self, token: bytes) -> bytes:
        mechanism = self._mechanism
        if mechanism is None:  # no SaslHandshake chose one: a token out of order
            raise AuthenticationFailed("a SASL token before SaslHandshake")
        answer = mechanism.step(bytes(token))
        if mechanism.done:
            self.state = State.COMPLETE
            self.principal = f"User:{mechanism.user}"
            log.info(
                "%s authenticated as %s with %s", self.peer, self.principal, mechanism.mechanism
            )
        return answer

    def _fail(self, body, why: str, user: str | None = None):
        self.state = State.FAILED
        log.warning(
            "SASL authentication of %s failed (user %s): %s",
            self.peer,
            user if user is not None else "unknown",
            why,
        )
        return task.deferLater(self.clock, self.settings.failed_delay_ms / 1000, lambda: body)


def _auth_body(code: int, message: str | None, token: bytes = b"") -> dict:
    return {
        "error_code": code,
        "error_message": message,
        "auth_bytes": token,
        "session_lifetime_ms": 0,
    }


__all__ = ["BEFORE_LOGIN", "FAILED_DELAY_MS", "ListenerSasl", "SaslGate", "State"]
