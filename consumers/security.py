"""A client's security settings: Kafka's ``security.protocol``, ``sasl.*`` and ``ssl.*``
properties, read once into a frozen ``ClientSecurity`` that every connection applies.

    >>> security = ClientSecurity.from_properties({"security.protocol": "SASL_SSL",
    ...     "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "alice",
    ...     "sasl.password": "secret", "ssl.truststore.location": "ca.pem"})
    >>> sock = security.secure(socket.create_connection(addr), host, "my-client")

``secure`` wraps a connected socket in TLS (``tls.py``) for SSL and SASL_SSL, then logs in
(``sasl.py``) for SASL_PLAINTEXT and SASL_SSL; it returns the socket to use.  Both Java's
names (``ssl.truststore.location`` with PEM, ``sasl.jaas.config``) and librdkafka's
(``ssl.ca.location``, ``sasl.username``) are accepted, so one client properties file works
for Kafka's tools and ours.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


class SecurityConfigError(ValueError):
    """A client security setting is missing, unknown or contradictory."""


@dataclass(frozen=True)
class ClientSecurity:
    """How a client connects: the protocol, and what it needs for TLS and SASL."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "GSSAPI"
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None  # PEM certificates of the CAs to trust
    ssl_certfile: str | None = None  # PEM: this client's certificate chain (and key)
    ssl_keyfile: str | None = None  # PEM: this client's key, if not in ssl_certfile
    ssl_key_password: str | None = None
    ssl_check_hostname: bool = True  # ssl.endpoint.identification.algorithm=https
    ssl_verify: bool = True  # enable.ssl.certificate.verification (librdkafka)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> ClientSecurity:
        """Settings from client properties (Kafka's names, or librdkafka's)."""
        protocol = props.get("security.protocol", "PLAINTEXT").strip().upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise SecurityConfigError(
                f"security.protocol {protocol!r} is not one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        security = cls(security_protocol=protocol, **_sasl_settings(props), **_ssl_settings(props))
        if security.uses_sasl:
            from broker.protocol.sasl_login import MECHANISMS

            if security.sasl_mechanism not in MECHANISMS:
                raise SecurityConfigError(
                    f"sasl.mechanism {security.sasl_mechanism} is not served; use one of "
                    f"{', '.join(MECHANISMS)}"
                )
            if not security.sasl_username or security.sasl_password is None:
                raise SecurityConfigError(
                    f"{protocol} needs sasl.username and sasl.password (or sasl.jaas.config)"
                )
        return security

    def secure(self, sock: socket.socket, host: str, client_id: str) -> socket.socket:
        """``sock`` made ready for requests: TLS if the protocol has it, then a SASL login
        if it has that.  Raises on a refused handshake or login (the socket is closed)."""
        try:
            if self.uses_tls:
                from .tls import wrap_socket

                sock = wrap_socket(sock, host, self)
            if self.uses_sasl:
                from .sasl import authenticate

                authenticate(sock, self, client_id)
        except BaseException:
            sock.close()
            raise
        return sock


def _sasl_settings(props: dict[str, str]) -> dict:
    """``sasl.mechanism`` (librdkafka's ``sasl.mechanisms`` too), and the user name and
    password from ``sasl.username``/``sasl.password`` or Java's ``sasl.jaas.config``."""
    from broker.protocol.jaas import JaasConfigError, parse_jaas

    settings: dict = {}
    mechanism = props.get("sasl.mechanism") or props.get("sasl.mechanisms")
    if mechanism:
        settings["sasl_mechanism"] = mechanism.strip().upper()
    if props.get("sasl.jaas.config"):
        try:
            options = parse_jaas(props["sasl.jaas.config"]).options
        except JaasConfigError as exc:
            raise SecurityConfigError(str(exc)) from None
        settings["sasl_username"] = options.get("username")
        settings["sasl_password"] = options.get("password")
    if "sasl.username" in props:
        settings["sasl_username"] = props["sasl.username"]
    if "sasl.password" in props:
        settings["sasl_password"] = props["sasl.password"]
    return settings


def _ssl_settings(props: dict[str, str]) -> dict:
    """The ``ssl_*`` fields from Java's names (PEM stores) or librdkafka's."""
    for key in ("ssl.truststore.type", "ssl.keystore.type"):
        if props.get(key, "PEM").strip().upper() != "PEM":
            raise SecurityConfigError(
                f"{key}={props[key]}: only PEM stores are supported (a PEM file of "
                "certificates; a keystore with the private key and its chain)"
            )
    found: dict = {}
    cafile = props.get("ssl.truststore.location") or props.get("ssl.ca.location")
    if cafile:
        found["ssl_cafile"] = cafile
    keystore = props.get("ssl.keystore.location")
    if keystore:
        found["ssl_certfile"] = keystore  # the key and its chain in one PEM file
    elif props.get("ssl.certificate.location"):
        found["ssl_certfile"] = props["ssl.certificate.location"]
        found["ssl_keyfile"] = props.get("ssl.key.location")
    elif props.get("ssl.key.location"):
        raise SecurityConfigError("ssl.key.location needs ssl.certificate.location")
    if props.get("ssl.key.password"):
        found["ssl_key_password"] = props["ssl.key.password"]
    algorithm = props.get("ssl.endpoint.identification.algorithm")
    if algorithm is not None:
        if algorithm.strip().lower() not in ("", "https", "none"):
            raise SecurityConfigError(
                f"ssl.endpoint.identification.algorithm={algorithm}: use https or empty"
            )
        found["ssl_check_hostname"] = algorithm.strip().lower() == "https"
    verify = props.get("enable.ssl.certificate.verification")
    if verify is not None:
        if verify.strip().lower() not in ("true", "false"):
            raise SecurityConfigError(
                f"enable.ssl.certificate.verification={verify}: true or false"
            )
        found["ssl_verify"] = verify.strip().lower() == "true"
    return found


PLAINTEXT = ClientSecurity()

__all__ = ["PLAINTEXT", "SECURITY_PROTOCOLS", "ClientSecurity", "SecurityConfigError"]
