"""Who may use the dashboard when security is on, without sockets: passwords checked against the
SCRAM credentials the brokers use (ZooKeeper's ``/config/users/<user>``, as Kafka keeps them)
or against a users file; failed logins throttled per client address; sessions by random token.

    >>> check = PasswordFile.read("users.properties").check    # alice=secret / alice:secret
    >>> check("alice", "secret")
    True
    >>> throttle = Throttle(clock=time.monotonic)
    >>> throttle.retry_after("10.0.0.7")          # 0.0 while it may try; seconds to wait if not

A SCRAM password is checked as a SCRAM server checks a proof (RFC 5802): SaltedPassword =
PBKDF2-HMAC(password, salt, iterations), ClientKey = HMAC(SaltedPassword, "Client Key"),
StoredKey = H(ClientKey), compared in constant time with the stored one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable

from broker.protocol.properties import PropertiesError, parse_properties

SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS = 4096  # Kafka refuses fewer


class CredentialsError(ValueError):
    """A users file or a stored credential cannot be read."""


def parse_scram_credential(text: str) -> tuple[bytes, bytes, int]:
    """(salt, stored_key, iterations) of Kafka's ``salt=..,stored_key=..,server_key=..,
    iterations=n``; CredentialsError if it is not one."""
    try:
        fields = dict(part.split("=", 1) for part in text.split(","))
        salt = base64.b64decode(fields["salt"], validate=True)
        stored_key = base64.b64decode(fields["stored_key"], validate=True)
        iterations = int(fields["iterations"])
    except (KeyError, ValueError) as exc:
        raise CredentialsError(f"not a SCRAM credential: {exc}") from None
    if iterations < MIN_ITERATIONS:
        raise CredentialsError(f"iterations {iterations} is below {MIN_ITERATIONS}")
    return salt, stored_key, iterations


def verify_scram(
    password: str, mechanism: str, salt: bytes, stored_key: bytes, iterations: int
) -> bool:
    """Whether ``password`` is the one a SCRAM credential was made from."""
    name = SCRAM_HASHES[mechanism]
    salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", name).digest()
    return hmac.compare_digest(hashlib.new(name, client_key).digest(), stored_key)


class ScramUsers:
    """Checks passwords against SCRAM credentials: ``read_config(user)`` returns the user's
    config map from ZooKeeper (``{"SCRAM-SHA-512": "salt=..", ...}``, empty for an unknown
    user); any SCRAM mechanism stored for the user may match, ``mechanisms`` first."""

    def __init__(
        self,
        read_config: Callable[[str], dict[str, str]],
        mechanisms: Iterable[str] = ("SCRAM-SHA-512", "SCRAM-SHA-256"),
    ):
        self.read_config = read_config
        self.mechanisms = [m for m in mechanisms if m in SCRAM_HASHES] + [
            m for m in SCRAM_HASHES if m not in mechanisms
        ]

    def check(self, user: str, password: str) -> bool:
        """Blocking (ZooKeeper, PBKDF2): call it off the reactor."""
        if not user or "/" in user or user in (".", ".."):
            return False
        config = self.read_config(user)
        for mechanism in self.mechanisms:
            text = config.get(mechanism)
            if text is None:
                continue
            try:
                salt, stored_key, iterations = parse_scram_credential(text)
            except CredentialsError:
                continue
            if verify_scram(password, mechanism, salt, stored_key, iterations):
                return True
        return False


class PasswordFile:
    """Users and passwords from a file (``user=password`` or ``user:password`` lines, Java
    properties syntax), for PLAIN clusters; compared in constant time."""

    def __init__(self, users: dict[str, str]):
        self.users = users

    @classmethod
    def read(cls, path: str) -> PasswordFile:
        try:
            with open(path, encoding="utf-8") as f:
                users = parse_properties(f.read())
        except OSError as exc:
            raise CredentialsError(f"cannot read {path}: {exc.strerror or exc}") from None
        except PropertiesError as exc:
            raise CredentialsError(f"{path}: {exc}") from None
        if not users:
            raise CredentialsError(f"{path} names no user")
        return cls(users)

    def check(self, user: str, password: str) -> bool:
        known = self.users.get(user)
        # compared also for an unknown user, so the answer takes as long
        match = hmac.compare_digest(
            (known if known is not None else secrets.token_hex(16)).encode(), password.encode()
        )
        return match and known is not None


class Throttle:
    """Failed logins per client address: after ``max_failures`` within ``window`` seconds the
    address must wait until the oldest of them is ``window`` old."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_failures=5, window=60.0):
        self.clock = clock
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, address: str) -> list[float]:
        now = self.clock()
        recent = [t for t in self._failures.get(address, []) if now - t < self.window]
        if recent:
            self._failures[address] = recent
        else:
            self._failures.pop(address, None)
        return recent

    def retry_after(self, address: str) -> float:
        """0.0 when ``address`` may try now; else the seconds until it may."""
        recent = self._recent(address)
        if len(recent) < self.max_failures:
            return 0.0
        return max(0.0, recent[0] + self.window - self.clock())

    def failed(self, address: str) -> None:
        self._recent(address)
        self._failures.setdefault(address, []).append(self.clock())

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


class Sessions:
    """Logged-in browsers: a random token (the cookie's value) per session, each valid for
    ``ttl`` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, ttl: float = 8 * 3600):
        self.clock = clock
        self.ttl = ttl
        self._sessions: dict[str, tuple[str, float]] = {}

    def new(self, user: str) -> str:
        now = self.clock()
        for token, (_, expires) in list(self._sessions.items()):
            if expires <= now:
                del self._sessions[token]
        token = secrets.token_urlsafe(32)
        self._sessions[token] = (user, now + self.ttl)
        return token

    def user(self, token: str | None) -> str | None:
        """The user of a live session, else None."""
        found = self._sessions.get(token) if token else None
        if found is None:
            return None
        if found[1] <= self.clock():
            self._sessions.pop(token, None)  # type: ignore[arg-type]
            return None
        return found[0]

    def drop(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)


__all__ = [
    "CredentialsError",
    "PasswordFile",
    "ScramUsers",
    "Sessions",
    "Throttle",
    "parse_scram_credential",
    "verify_scram",
]
