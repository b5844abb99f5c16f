"""SCRAM credentials in ZooKeeper, kept as Kafka keeps them: paths (built on the roots that
``zookeeper.py`` names), the credential text, and the formula that makes one from a
password.  Pure, like ``zookeeper.py``, whose 600-line budget is why they live beside it.

Under the chroot of ``zookeeper.connect``::

    /config/users/<user>        persistent  {"version": 1, "config": {"SCRAM-SHA-512":
                                             "salt=<b64>,stored_key=<b64>,server_key=<b64>,
                                              iterations=<n>", ...}}
    /config/changes/config_change_<seq>     {"version": 2, "entity_path": "users/<user>"}

A user's node may hold other per-user configs too (Kafka's quotas): they are kept as they
are.  The password is never stored; iterations below 4096 are refused.

    >>> c = scram_credential("SCRAM-SHA-256", "pw", salt=b"s" * 16, iterations=4096)
    >>> parse_credential(format_credential(c)) == c
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from .zk_security import CONFIG_USERS  # a sensitive root: no world READ when secured
from .zookeeper import _check, _reading

SCRAM_MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS = 4096  # Kafka's floor (and RFC 7677's recommendation)
MAX_ITERATIONS = 16384  # Kafka's ceiling for credentials altered through the API


def user_path(user: str) -> str:
    """``/config/users/<user>``: Kafka keeps the name as it is (it may not hold ``/``)."""
    _check_user(user)
    return f"{CONFIG_USERS}/{user}"


def user_entity_path(user: str) -> str:
    """The ``entity_path`` of a change notification about ``user``."""
    return f"users/{user}"


def _check_user(user: str) -> None:
    if not user or "/" in user or user in (".", ".."):
        raise ValueError(f"user name {user!r} cannot name a ZooKeeper node")


@dataclass(frozen=True)
class ScramCredential:
    """What the server keeps of a SCRAM password (RFC 5802): salt, StoredKey, ServerKey and
    the iteration count."""

    mechanism: str
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


def salted_password(mechanism: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    """RFC 5802's Hi(password, salt, i): PBKDF2 with the mechanism's HMAC."""
    return hashlib.pbkdf2_hmac(SCRAM_MECHANISMS[mechanism], password, salt, iterations)


def credential_from_salted(
    mechanism: str, salted: bytes, salt: bytes, iterations: int
) -> ScramCredential:
    """StoredKey = H(HMAC(salted, "Client Key")), ServerKey = HMAC(salted, "Server Key")."""
    name = SCRAM_MECHANISMS[mechanism]
    client_key = hmac.new(salted, b"Client Key", name).digest()
    stored_key = hashlib.new(name, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", name).digest()
    return ScramCredential(mechanism, salt, stored_key, server_key, iterations)


def scram_credential(
    mechanism: str, password: str, salt: bytes | None = None, iterations: int = MIN_ITERATIONS
) -> ScramCredential:
    """A new credential for ``password`` (random 32-byte salt unless given)."""
    if mechanism not in SCRAM_MECHANISMS:
        raise ValueError(f"{mechanism!r} is not one of {', '.join(SCRAM_MECHANISMS)}")
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"iterations must be at least {MIN_ITERATIONS}, not {iterations}")
    if not password:
        raise ValueError("the password must not be empty")
    salt = os.urandom(32) if salt is None else salt
    salted = salted_password(mechanism, password.encode(), salt, iterations)
    return credential_from_salted(mechanism, salted, salt, iterations)


def format_credential(c: ScramCredential) -> str:
    """Kafka's text of a credential: ``salt=..,stored_key=..,server_key=..,iterations=n``."""
    b64 = base64.b64encode
    return (
        f"salt={b64(c.salt).decode()},stored_key={b64(c.stored_key).decode()},"
        f"server_key={b64(c.server_key).decode()},iterations={c.iterations}"
    )


def parse_credential(text: str, mechanism: str = "SCRAM-SHA-256") -> ScramCredential:
    """The credential in Kafka's text (ValueError if it is not one)."""
    fields = dict(part.split("=", 1) for part in text.split(","))
    iterations = int(fields["iterations"])
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"iterations {iterations} is below {MIN_ITERATIONS}")
    b64 = base64.b64decode
    return ScramCredential(
        mechanism,
        b64(fields["salt"], validate=True),
        b64(fields["stored_key"], validate=True),
        b64(fields["server_key"], validate=True),
        iterations,
    )


def decode_user_config(data: bytes | None, path: str = "") -> dict[str, str]:
    """``/config/users/<user>``: the user's whole config map (SCRAM and any other)."""
    if not data:
        return {}
    with _reading("a user config", data, path):
        config = json.loads(data).get("config", {})
        _check(isinstance(config, dict), "config must be an object")
        return {str(k): str(v) for k, v in config.items()}


def decode_user_credentials(data: bytes | None, path: str = "") -> dict[str, ScramCredential]:
    """The SCRAM credentials of a user's node, by mechanism; malformed ones are an error."""
    config = decode_user_config(data, path)
    with _reading("a SCRAM credential", data or b"", path):
        return {
            mech: parse_credential(text, mech)
            for mech, text in config.items()
            if mech in SCRAM_MECHANISMS
        }


def encode_user_config(config: dict[str, str]) -> bytes:
    return json.dumps({"version": 1, "config": config}).encode()


def with_credential(config: dict[str, str], credential: ScramCredential) -> dict[str, str]:
    """``config`` with ``credential`` set (other entries kept)."""
    return {**config, credential.mechanism: format_credential(credential)}


def without_mechanism(config: dict[str, str], mechanism: str) -> dict[str, str]:
    return {k: v for k, v in config.items() if k != mechanism}


__all__ = [
    "CONFIG_USERS",
    "MIN_ITERATIONS",
    "SCRAM_MECHANISMS",
    "ScramCredential",
    "credential_from_salted",
    "decode_user_config",
    "decode_user_credentials",
    "encode_user_config",
    "format_credential",
    "parse_credential",
    "salted_password",
    "scram_credential",
    "user_entity_path",
    "user_path",
    "with_credential",
    "without_mechanism",
]
