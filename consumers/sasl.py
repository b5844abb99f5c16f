"""A blocking client's SASL login on a new connection: SaslHandshake v1 with the mechanism,
then SaslAuthenticate v2 requests carrying the tokens of ``broker.protocol.sasl_login``
(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) until the login completes.  A SCRAM login checks the
server's final signature too.  Any refusal raises ``SaslAuthenticationError`` naming the
broker's error and message.

    >>> authenticate(sock, ClientSecurity.from_properties(props), "my-client")
"""

from __future__ import annotations

import socket
import struct

from broker.protocol import frames
from broker.protocol.errors import error_for_code
from broker.protocol.registry import ApiKey
from broker.protocol.sasl_login import SaslLoginError, client_login

_SIZE = struct.Struct(">i")
HANDSHAKE_VERSION, AUTHENTICATE_VERSION = 1, 2


class SaslAuthenticationError(Exception):
    """The broker refused the login, or the login could not be carried out."""


def _exchange(sock: socket.socket, api_key: ApiKey, version: int, cid: int, client_id, body):
    sock.sendall(frames.encode_request(api_key, version, cid, client_id, body))
    size = _SIZE.unpack(_read(sock, 4))[0]
    got, answer = frames.decode_response(api_key, version, _read(sock, size))
    if got != cid:
        raise SaslAuthenticationError(f"answer to request {got}, expected {cid}")
    return answer


def _read(sock: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 16))
        if not chunk:
            raise SaslAuthenticationError("the broker closed the connection during the login")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _refused(what: str, code: int, message: str | None) -> SaslAuthenticationError:
    name = error_for_code(code).name if code else "?"
    return SaslAuthenticationError(f"{what}: {name} ({code}){': ' + message if message else ''}")


def authenticate(sock: socket.socket, security, client_id: str | None) -> None:
    """Log in on ``sock`` with ``security``'s mechanism, user name and password."""
    try:
        login = client_login(
            security.sasl_mechanism, security.sasl_username, security.sasl_password
        )
    except SaslLoginError as exc:
        raise SaslAuthenticationError(str(exc)) from None
    handshake = _exchange(
        sock,
        ApiKey.SASL_HANDSHAKE,
        HANDSHAKE_VERSION,
        1,
        client_id,
        {"mechanism": login.mechanism},
    )
    if handshake["error_code"]:
        enabled = ", ".join(handshake["mechanisms"])
        raise _refused(
            f"SASL mechanism {login.mechanism}", handshake["error_code"], f"enabled: {enabled}"
        )
    token: bytes | None = login.first()
    cid = 2
    while token is not None:
        answer = _exchange(
            sock,
            ApiKey.SASL_AUTHENTICATE,
            AUTHENTICATE_VERSION,
            cid,
            client_id,
            {"auth_bytes": token},
        )
        cid += 1
        if answer["error_code"]:
            raise _refused(
                f"SASL login as {security.sasl_username}",
                answer["error_code"],
                answer["error_message"],
            )
        try:
            token = login.step(answer["auth_bytes"])
        except SaslLoginError as exc:
            raise SaslAuthenticationError(str(exc)) from None


__all__ = ["SaslAuthenticationError", "authenticate"]
