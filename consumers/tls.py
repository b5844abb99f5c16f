"""TLS for our blocking clients: a connected socket wrapped in stdlib ``ssl`` from a
``ClientSecurity`` (CA file, client certificate chain and key, key password, host check).

    >>> sock = wrap_socket(socket.create_connection((host, port)), host, security)

The handshake happens here, so a refused certificate raises ``ssl.SSLError`` at once rather
than at the first request.  Without ``ssl_cafile`` the system's CAs are trusted.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any


def client_context(security: Any) -> ssl.SSLContext:
    """An SSLContext from the security's ``ssl_*`` settings."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if security.ssl_cafile:
        context.load_verify_locations(cafile=security.ssl_cafile)
    else:
        context.load_default_certs()
    context.check_hostname = bool(security.ssl_check_hostname)
    if not security.ssl_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if security.ssl_certfile:
        context.load_cert_chain(
            security.ssl_certfile,
            security.ssl_keyfile or None,
            password=security.ssl_key_password,
        )
    return context


def wrap_socket(sock: socket.socket, host: str, security: Any) -> ssl.SSLSocket:
    """``sock`` (connected, blocking or with a timeout) inside TLS, handshake done."""
    return client_context(security).wrap_socket(sock, server_hostname=host)
