"""A client's side of a SASL login, pure: the tokens to send and the checks of the server's,
for PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802/7677, through ``scramp``).  Our
blocking clients (``consumers/sasl.py``) and the brokers' own Twisted client carry the
tokens in SaslAuthenticate requests.

    >>> login = client_login("PLAIN", "alice", "pw")
    >>> login.first()
    b'\\x00alice\\x00pw'
    >>> login.step(b""), login.done
    (None, True)

A SCRAM login checks the server's final signature, so a server that does not know the
password cannot pass itself off; any refusal raises ``SaslLoginError``.
"""

from __future__ import annotations

from scramp import ScramClient, ScramException

MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SaslLoginError(Exception):
    """The login could not go on: a bad server message, a failed check, or a setting."""


class PlainLogin:
    """PLAIN: one message, ``authzid NUL authcid NUL passwd`` with an empty authzid."""

    mechanism = "PLAIN"

    def __init__(self, username: str, password: str):
        if not username or "\x00" in username or "\x00" in password:
            raise SaslLoginError("PLAIN needs a user name, and no NUL in the name or password")
        self.token = b"\x00" + username.encode() + b"\x00" + password.encode()
        self.done = False

    def first(self) -> bytes:
        return self.token

    def step(self, challenge: bytes) -> bytes | None:
        """The server's answer to the one message: nothing more to send."""
        self.done = True
        return None


class ScramLogin:
    """SCRAM: client-first, then client-final, then the server's signature is checked."""

    def __init__(self, mechanism: str, username: str, password: str, nonce: str | None = None):
        if mechanism not in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise SaslLoginError(f"{mechanism} is not a SCRAM mechanism")
        try:
            self._client = ScramClient([mechanism], username, password, c_nonce=nonce)
        except ScramException as exc:
            raise SaslLoginError(f"{mechanism}: {exc}") from None
        self.mechanism = mechanism
        self._stage = 0
        self.done = False

    def first(self) -> bytes:
        self._stage = 1
        return self._client.get_client_first().encode()

    def step(self, challenge: bytes) -> bytes | None:
        """The next message for the server's ``challenge``; None once the server's final
        message is verified."""
        try:
            text = challenge.decode()
            if self._stage == 1:
                self._client.set_server_first(text)
                self._stage = 2
                return self._client.get_client_final().encode()
            if self._stage == 2:
                self._client.set_server_final(text)
                self._stage = 3
                self.done = True
                return None
        except (ScramException, UnicodeDecodeError) as exc:
            raise SaslLoginError(f"{self.mechanism}: the server's message fails: {exc}") from None
        raise SaslLoginError(f"{self.mechanism}: a server message after the login ended")


def client_login(mechanism: str, username: str | None, password: str | None):
    """A login for ``mechanism`` with these credentials (SaslLoginError if it cannot be)."""
    if mechanism not in MECHANISMS:
        raise SaslLoginError(f"sasl.mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}")
    if not username or password is None:
        raise SaslLoginError(f"{mechanism} needs a user name and a password")
    if mechanism == "PLAIN":
        return PlainLogin(username, password)
    return ScramLogin(mechanism, username, password)


__all__ = ["MECHANISMS", "PlainLogin", "SaslLoginError", "ScramLogin", "client_login"]
