"""How this broker connects to the others: to their ``inter.broker.listener.name`` endpoint,
in TLS when that listener's protocol has it, then through an optional ``secure`` step (where
a SASL login goes) before the first request.

    >>> link = InterBrokerSecurity.from_config(config, plan)
    >>> link.address(registration)               # ("10.0.0.2", 9093), the INTERNAL endpoint
    >>> endpoint = link.endpoint(reactor, host, port, timeout=30)   # TCP, wrapped in TLS
    >>> d = link.secure(connection)              # fires once the connection may send requests

The client trusts ``ssl.truststore.location`` and presents the keystore's certificate (a
listener asking for client certificates gets it), checks the other broker's host name unless
``ssl.endpoint.identification.algorithm`` is empty, all read for the inter-broker listener
(``listener.name.<name>.ssl.*`` over ``ssl.*``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet._sslverify import ClientTLSOptions
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer  # type: ignore[import-untyped]

from .listeners import TLS_PROTOCOLS, ListenerPlan
from .tls import TlsSettings


@implementer(IOpenSSLClientConnectionCreator)
class _NoHostnameCheck:
    """TLS to a broker whose certificate is checked against the truststore only."""

    def __init__(self, context: SSL.Context):
        self._context = context

    def clientConnectionForTLS(self, tls_protocol):
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tls_protocol)
        return connection


def _secured(connection) -> defer.Deferred:
    return defer.succeed(connection)


@dataclass
class InterBrokerSecurity:
    """The inter-broker listener's name and protocol, and how to connect over it."""

    listener: str = "PLAINTEXT"
    security_protocol: str = "PLAINTEXT"
    tls: TlsSettings | None = None
    # secure(connection) -> Deferred: run after connecting (and the TLS handshake's start),
    # before the first request; another login step (SASL) replaces it.
    secure: Callable[[Any], defer.Deferred] = field(default=_secured)

    @classmethod
    def from_config(cls, config, plan: ListenerPlan) -> InterBrokerSecurity:
        """The inter-broker side of a broker configuration and its listener plan."""
        listener = plan.inter_broker
        protocol = plan.protocol_map.get(listener, listener)
        tls = None
        if protocol in TLS_PROTOCOLS:
            tls = TlsSettings.for_listener(config, listener, need_keystore=False)
        return cls(listener, protocol, tls)

    def address(self, registration) -> tuple[str, int] | None:
        """(host, port) of a broker's inter-broker endpoint (a BrokerRegistration or a
        BrokerInfo with ``endpoints``), or None when it has no such listener."""
        if hasattr(registration, "address"):  # a BrokerInfo
            return registration.address(self.listener)
        return registration.address_for(self.listener)

    def endpoint(self, reactor, host: str, port: int, timeout: float):
        """A client endpoint to ``host:port``: TCP, inside TLS when the listener has it."""
        tcp = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
        if self.tls is None:
            return tcp
        context = self.tls.context(server=False)
        creator: Any = _NoHostnameCheck(context)
        if self.tls.check_hostname:  # the certificate must name host (DNS or IP SAN)
            creator = ClientTLSOptions(creator.clientConnectionForTLS, host)
        return wrapClientTLS(creator, cast(Any, tcp))


PLAINTEXT_LINK = InterBrokerSecurity()
