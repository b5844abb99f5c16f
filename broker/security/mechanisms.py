"""The server side of the SASL mechanisms, pure: PLAIN (RFC 4616) against a table of users,
and SCRAM-SHA-256/512 (RFC 5802/7677) against stored credentials.

A mechanism is stepped with each client token: ``step(token)`` returns the token to answer
with, and sets ``done`` and ``user`` once the client is authenticated; any failure raises
``AuthenticationFailed`` with the message Kafka's client is told and, for the log, the user
it claimed.  Wrong passwords and unknown users fail alike: an unknown SCRAM user is given a
salt derived from its name and a server secret, so the first exchange looks the same, and
fails at the proof.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable

from ..protocol.security_nodes import MIN_ITERATIONS, SCRAM_MECHANISMS, ScramCredential

log = logging.getLogger(__name__)

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
    """SCRAM-SHA-256/512: client-first -> server-first, client-final -> server-final.

    Checked as Kafka's broker checks it: the client-final nonce must end with the
    server-first nonce (librdkafka sends its own nonce before the combined one), the proof
    is verified over the auth message the client signed, in constant time."""

    def __init__(
        self,
        mechanism: str,
        credential_of: Callable[[str, str], ScramCredential | None],
        secret: bytes,
    ):
        if mechanism not in SCRAM_MECHANISMS:
            raise ValueError(f"{mechanism} is not a SCRAM mechanism")
        self.mechanism = mechanism
        self._hash = SCRAM_MECHANISMS[mechanism]
        self._credential_of = credential_of
        self._secret = secret
        self._stage = 0
        self._credential: ScramCredential | None = None
        self._known = False
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self.done = False
        self.user: str | None = None
        self._claimed: str | None = None

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
            return self._client_first(text).encode()
        if self._stage == 1:
            self._stage = 2
            return self._client_final(text).encode()
        raise AuthenticationFailed(f"{self.mechanism}: a message after the login ended")

    def _client_first(self, text: str) -> str:
        """Kafka's form: gs2 header ``n,,`` (no channel binding, no authorization id), then
        ``n=<saslname>,r=<nonce>``, then extensions; token authentication is refused.  An
        unknown user gets a salt derived from its name and random keys."""
        header, _, rest = text.partition(",")
        authzid, _, bare = rest.partition(",")
        if header != "n":
            raise AuthenticationFailed(
                f"{self.mechanism}: only gs2 header 'n' (no channel binding) is served"
            )
        attrs = _attributes(bare, self.mechanism, "client-first")
        if list(attrs)[:2] != ["n", "r"]:
            raise AuthenticationFailed(f"{self.mechanism}: invalid client-first message")
        user, nonce = attrs["n"], attrs["r"]
        if "=" in user.replace("=2C", "").replace("=3D", "") or not user:
            raise AuthenticationFailed(f"{self.mechanism}: invalid user name encoding")
        self._claimed = user.replace("=2C", ",").replace("=3D", "=")
        if authzid:  # Kafka's clients send none
            raise AuthenticationFailed(
                f"{self.mechanism}: an authorization id in the gs2 header is not supported",
                self._claimed,
            )
        if attrs.get("tokenauth", "false").lower() == "true":
            raise AuthenticationFailed(
                "Authentication failed: delegation tokens are not supported", self._claimed
            )
        if not all(0x21 <= ord(c) <= 0x7E for c in nonce):
            raise AuthenticationFailed(f"{self.mechanism}: invalid nonce", self._claimed)
        credential = self._credential_of(self._claimed, self.mechanism)
        self._known = credential is not None
        if credential is None:  # a 32-byte salt, as our tools write them
            salt = hmac.new(self._secret, f"{self.mechanism}:{user}".encode(), self._hash)
            size = hashlib.new(self._hash).digest_size
            credential = ScramCredential(
                self.mechanism,
                salt.digest()[:32],
                os.urandom(size),
                os.urandom(size),
                MIN_ITERATIONS,
            )
        self._credential = credential
        self._client_first_bare = bare
        self._nonce = nonce + secrets.token_urlsafe(24)
        salt_b64 = base64.b64encode(credential.salt).decode()
        self._server_first = f"r={self._nonce},s={salt_b64},i={credential.iterations}"
        return self._server_first

    def _client_final(self, text: str) -> str:
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise self._failed()
        attrs = _attributes(without_proof, self.mechanism, "client-final")
        if attrs.get("c") != "biws":  # base64 of the gs2 header "n,,"
            raise AuthenticationFailed(f"{self.mechanism}: invalid channel binding")
        if not attrs.get("r", "").endswith(self._nonce):
            raise AuthenticationFailed(f"{self.mechanism}: invalid client nonce", self._claimed)
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise self._failed() from None
        credential = self._credential
        assert credential is not None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = hmac.new(credential.stored_key, auth_message, self._hash).digest()
        if len(proof) != len(signature):
            raise self._failed()
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        stored_key = hashlib.new(self._hash, client_key).digest()
        if not hmac.compare_digest(stored_key, credential.stored_key) or not self._known:
            log.info("%s proof of %s refused", self.mechanism, self._claimed)
            raise self._failed()
        server_signature = hmac.new(credential.server_key, auth_message, self._hash).digest()
        self.done, self.user = True, self._claimed
        return "v=" + base64.b64encode(server_signature).decode()


def _attributes(text: str, mechanism: str, what: str) -> dict[str, str]:
    """``k=v,k=v`` of a SCRAM message (the first of a repeated key kept)."""
    attrs: dict[str, str] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise AuthenticationFailed(f"{mechanism}: invalid {what} message")
        attrs.setdefault(key, value)
    return attrs


def server_mechanism(
    mechanism: str,
    password_of: Callable[[str], str | None],
    credential_of: Callable[[str, str], ScramCredential | None],
    secret: bytes,
) -> PlainServer | ScramServer:
    """A fresh server side of ``mechanism`` for one login."""
    if mechanism == "PLAIN":
        return PlainServer(password_of)
    return ScramServer(mechanism, credential_of, secret)


__all__ = ["SERVED", "AuthenticationFailed", "PlainServer", "ScramServer", "server_mechanism"]
