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

import argparse
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from broker.protocol.properties import PropertiesError, parse_properties

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


# --- client properties from the command line ---------------------------------------------


def read_client_properties(path: str) -> dict[str, str]:
    """A Java-properties file of client settings (Kafka tools' ``--command-config``)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise SecurityConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return parse_properties(text)
    except PropertiesError as exc:
        raise SecurityConfigError(f"{path}: {exc}") from None


def parse_property_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` (kcat's ``-X``) as a dict; a clear error for one without ``=``."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SecurityConfigError(f"-X {item!r}: give key=value, e.g. security.protocol=SSL")
        result[key.strip()] = value.strip()
    return result


def client_properties(
    command_config: str | None = None, overrides: Iterable[str] = ()
) -> dict[str, str]:
    """The file's properties (if one is named), each ``key=value`` override on top."""
    props = read_client_properties(command_config) if command_config else {}
    props.update(parse_property_overrides(overrides))
    return props


def security_from_config(
    command_config: str | None = None, overrides: Iterable[str] = ()
) -> ClientSecurity:
    """A ``ClientSecurity`` from a command-config file and ``-X`` overrides (PLAINTEXT when
    neither says anything)."""
    props = client_properties(command_config, overrides)
    return ClientSecurity.from_properties(props) if props else PLAINTEXT


def add_security_arguments(
    parser: argparse.ArgumentParser,
    prefix: str = "",
    what: str = "the brokers",
    aliases: tuple[str, ...] = (),
) -> None:
    """``--[prefix-]command-config FILE`` and the repeatable override (``-X key=value`` with no
    prefix, ``--<prefix>-property key=value`` with one); ``security_from_args`` reads them."""
    dest = f"{prefix}_" if prefix else ""
    flags = [f"--{prefix}-command-config" if prefix else "--command-config", *aliases]
    parser.add_argument(
        *flags,
        dest=f"{dest}command_config",
        metavar="FILE",
        help=f"client properties for {what} (security.protocol, sasl.*, ssl.*), as "
        "Kafka's tools take them",
    )
    parser.add_argument(
        f"--{prefix}-property" if prefix else "-X",
        dest=f"{dest}client_property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"a client property for {what}, over the file's (repeatable)",
    )


def security_from_args(args: argparse.Namespace, prefix: str = "") -> ClientSecurity:
    """The ``ClientSecurity`` that ``add_security_arguments(parser, prefix)`` options give."""
    dest = f"{prefix}_" if prefix else ""
    return security_from_config(
        getattr(args, f"{dest}command_config", None),
        getattr(args, f"{dest}client_property", None) or (),
    )


__all__ = [
    "PLAINTEXT",
    "SECURITY_PROTOCOLS",
    "ClientSecurity",
    "SecurityConfigError",
    "add_security_arguments",
    "client_properties",
    "parse_property_overrides",
    "read_client_properties",
    "security_from_args",
    "security_from_config",
]
