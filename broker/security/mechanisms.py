"""The server side of the SASL mechanisms, pure: PLAIN (RFC 4616) against a table of users,
and SCRAM-SHA-256/512 (RFC 5802/7677, through ``scramp``) against stored credentials.

A mechanism is stepped with each client token: ``step(token)`` returns the token to answer
with, and sets ``done`` and ``user`` once the client is authenticated; any failure raises
``AuthenticationFailed`` with the message Kafka's client is told and, for the log, the user
it claimed.  Wrong passwords and unknown users fail alike: an unknown SCRAM user is given a
salt derived from its name and a server secret, so the first exchange looks the same, and
fails at the proof.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from scramp import ScramException, ScramMechanism

from ..protocol.security_nodes import MIN_ITERATIONS, SCRAM_MECHANISMS, ScramCredential

SERVED = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class AuthenticationFailed(Exception):
    """A login refused: ``message`` for the client, ``user`` as claimed (for the log)."""

    def __init__(self, message: str, user: str | None = None):
        super().__init__(message)
        self.message = message
        self.user = user


class PlainServer:
    """PLAIN: ``[authzid] NUL authcid NUL passwd``; the authzid empty or the authcid."""

    mechanism = "PLAIN"

    def __init__(self, password_of: Callable[[str], str | None]):
        self._password_of = password_of
        self.done = False
        self.user: str | None = None

    def step(self, token: bytes) -> bytes:
        if self.done:
            raise AuthenticationFailed("PLAIN: a token after the login ended")
        parts = token.split(b"\x00")
        if len(parts) != 3:
            raise AuthenticationFailed("Invalid SASL/PLAIN response: expected 3 tokens")
        try:
            authzid, user, password = (p.decode() for p in parts)
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid SASL/PLAIN response: not UTF-8") from None
        if not user:
            raise AuthenticationFailed("Authentication failed: username not specified")
        if authzid and authzid != user:
            raise AuthenticationFailed(
                "Authentication failed: Client requested an authorization id that is "
                "different from username",
                user,
            )
        expected = self._password_of(user)
        # Compare in constant time, against a stand-in for an unknown user.
        same = hmac.compare_digest(
            (expected if expected is not None else "\x00unknown").encode(), password.encode()
        )
        if expected is None or not same:
            raise AuthenticationFailed("Authentication failed: Invalid username or password", user)
        self.done, self.user = True, user
        return b""


class ScramServer:
    """SCRAM-SHA-256/512: client-first -> server-first, client-final -> server-final."""

    def __init__(
        self,
        mechanism: str,
        credential_of: Callable[[str, str], ScramCredential | None],
        secret: bytes,
    ):
        if mechanism not in SCRAM_MECHANISMS:
            raise ValueError(f"{mechanism} is not a SCRAM mechanism")
        self.mechanism = mechanism
        self._credential_of = credential_of
        self._secret = secret
        self._server = ScramMechanism(mechanism).make_server(self._auth_info)
        self._stage = 0
        self._known = False
        self.done = False
        self.user: str | None = None
        self._claimed: str | None = None

    def _auth_info(self, user: str):
        credential = self._credential_of(user, self.mechanism)
        self._known = credential is not None
        if credential is None:
            name = SCRAM_MECHANISMS[self.mechanism]
            salt = hmac.new(self._secret, f"{self.mechanism}:{user}".encode(), name).digest()
            size = hashlib.new(name).digest_size
            return salt, os.urandom(size), os.urandom(size), MIN_ITERATIONS
        return credential.salt, credential.stored_key, credential.server_key, credential.iterations

    def _failed(self) -> AuthenticationFailed:
        return AuthenticationFailed(
            "Authentication failed during authentication due to invalid credentials with "
            f"SASL mechanism {self.mechanism}",
            self._claimed,
        )

    def step(self, token: bytes) -> bytes:
        try:
            text = token.decode()
        except UnicodeDecodeError:
            raise AuthenticationFailed(f"{self.mechanism}: a message that is not UTF-8") from None
        if self._stage == 0:
            self._stage = 1
            self._check_client_first(text)
            try:
                self._server.set_client_first(text)
                return self._server.get_server_first().encode()
            except ScramException as exc:
                raise AuthenticationFailed(
                    f"{self.mechanism}: invalid client-first message: {exc}", self._claimed
                ) from None
        if self._stage == 1:
            self._stage = 2
            try:
                self._server.set_client_final(text)
                final = self._server.get_server_final()
            except ScramException:
                raise self._failed() from None
            if not self._known:  # cannot pass with random keys; refuse all the same
                raise self._failed()
            self.done, self.user = True, self._claimed
            return final.encode()
        raise AuthenticationFailed(f"{self.mechanism}: a message after the login ended")

    def _check_client_first(self, text: str) -> None:
        """Kafka's form: gs2 header ``n,,`` (no channel binding, no authorization id), then
        ``n=<saslname>,r=<nonce>``, then extensions; token authentication is refused."""
        header, _, bare = text.partition(",")
        authzid, _, bare = bare.partition(",")
        if header != "n":
            raise AuthenticationFailed(
                f"{self.mechanism}: only gs2 header 'n' (no channel binding) is served"
            )
        attrs = {}
        for part in bare.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                raise AuthenticationFailed(f"{self.mechanism}: invalid client-first message")
            attrs.setdefault(key, value)
        user = attrs.get("n", "")
        if "=" in user.replace("=2C", "").replace("=3D", ""):
            raise AuthenticationFailed(f"{self.mechanism}: invalid user name encoding")
        self._claimed = user.replace("=2C", ",").replace("=3D", "=")
        if authzid:  # Kafka's clients send none; the gs2 header is then n,,
            raise AuthenticationFailed(
                f"{self.mechanism}: an authorization id in the gs2 header is not supported",
                self._claimed,
            )
        if attrs.get("tokenauth", "false").lower() == "true":
            raise AuthenticationFailed(
                "Authentication failed: delegation tokens are not supported", self._claimed
            )


def server_mechanism(
    mechanism: str,
    password_of: Callable[[str], str | None],
    credential_of: Callable[[str, str], ScramCredential | None],
    secret: bytes,
):
    """A fresh server side of ``mechanism`` for one login."""
    if mechanism == "PLAIN":
        return PlainServer(password_of)
    return ScramServer(mechanism, credential_of, secret)


__all__ = ["SERVED", "AuthenticationFailed", "PlainServer", "ScramServer", "server_mechanism"]
