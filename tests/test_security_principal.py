"""The principal of a TLS connection, with the broker's own TLS contexts and protocol joined
in memory (``twisted.test.iosim``: no sockets): a client certificate's subject through the
mapping rules on an SSL listener, ANONYMOUS without one, a refused connection when no rule
applies, a certificate from another CA failing the handshake, and a connection the broker
drops closed over TLS."""

from __future__ import annotations

import struct

from OpenSSL import SSL
from twisted.internet import protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim

from broker.config import BrokerConfig
from broker.main import _certificate_principal
from broker.security import TlsSettings
from broker.security.tls import ServerTls
from broker.server import ANONYMOUS, KafkaServerFactory


class _Client(protocol.Protocol):
    lost = False

    def connectionLost(self, reason=None):
        self.lost = True


def _client_context(certs, name):
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.load_verify_locations(str(certs.ca))
    context.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    if name is not None:
        keystore = str(certs.other_client if name == "other" else certs.client(name))
        context.use_certificate_chain_file(keystore)
        context.use_privatekey_file(keystore)
    return context


def _connect(certs, name, client_auth="requested", rules="DEFAULT", pumps=None):
    """A server connection of an SSL listener after a client (``name``'s certificate, or
    none) connected and the handshake ran; (server protocol, client protocol).  ``pumps``,
    a list, gets the in-memory connection's pump."""
    props = {**certs.broker_properties(client_auth), "ssl.principal.mapping.rules": rules}
    settings = TlsSettings.for_listener(BrokerConfig(props), "SSL")
    factory = KafkaServerFactory(None, 1 << 20, listener_name="SSL", security_protocol="SSL")
    factory.on_handshake = lambda conn: _certificate_principal(conn, settings)
    built = []
    build = factory.buildProtocol
    factory.buildProtocol = lambda addr: built.append(build(addr)) or built[-1]
    server_tls = TLSMemoryBIOFactory(ServerTls(settings), False, factory)
    client_factory = protocol.Factory.forProtocol(_Client)
    clients = []
    build_client = client_factory.buildProtocol
    client_factory.buildProtocol = lambda addr: clients.append(build_client(addr)) or clients[-1]

    class Creator:
        def clientConnectionForTLS(self, tls_protocol):
            connection = SSL.Connection(_client_context(certs, name), None)
            connection.set_app_data(tls_protocol)
            return connection

    from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
    from zope.interface import directlyProvides

    creator = Creator()
    directlyProvides(creator, IOpenSSLClientConnectionCreator)
    client_tls = TLSMemoryBIOFactory(creator, True, client_factory)
    server = server_tls.buildProtocol(None)
    client = client_tls.buildProtocol(None)
    pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client))
    pump.flush()
    if pumps is not None:
        pumps.append(pump)
    return built[0], clients[0]


def test_a_client_certificate_names_the_principal(certs):
    server, client = _connect(certs, "alice")
    assert server.principal == "User:CN=alice,OU=test,O=headrace"
    assert not client.lost


def test_mapping_rules_shape_the_principal(certs):
    server, _ = _connect(certs, "alice", rules="RULE:^CN=(.*?),OU=(.*?),O=.*$/$1@$2/U,DEFAULT")
    assert server.principal == "User:ALICE@TEST"


def test_no_certificate_on_requested_is_anonymous(certs):
    server, client = _connect(certs, None)
    assert server.principal == ANONYMOUS
    assert not client.lost


def test_a_subject_no_rule_maps_closes_the_connection(certs):
    server, client = _connect(certs, "alice", rules="RULE:^CN=(.*?),OU=admins.*$/$1/")
    assert server.principal == ANONYMOUS
    assert client.lost


def test_no_certificate_on_required_fails_the_handshake(certs):
    server, client = _connect(certs, None, client_auth="required")
    assert client.lost
    assert server.principal == ANONYMOUS


def test_another_cas_certificate_fails_the_handshake(certs):
    server, client = _connect(certs, "other")
    assert client.lost
    assert server.principal == ANONYMOUS


def test_a_connection_the_broker_drops_is_closed_over_tls(certs):
    """A frame over socket.request.max.bytes drops the connection: over TLS too, where the
    TLS layer sends its close only once the protocol stops being its streaming producer."""
    pumps: list = []
    server, client = _connect(certs, "alice", pumps=pumps)
    # Over 64 KiB, so the client's TLS layer writes it at once (smaller writes wait for
    # the reactor, which this in-memory connection does not run).
    client.transport.write(struct.pack(">i", (1 << 20) + 1) + b"x" * 100_000)
    pumps[0].flush()
    assert server._closed
    assert client.lost  # the broker's TLS close came, and the connection ended
