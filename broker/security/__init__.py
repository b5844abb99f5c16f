"""The broker's security: listeners and their security protocols, TLS contexts from PEM
keystores, and the principal a TLS client certificate names.

- ``listeners``: ``listener_plan(config)`` -> ``ListenerPlan`` of ``Listener`` values (pure).
- ``principal``: ``PrincipalMapper`` for ``ssl.principal.mapping.rules`` (pure).
- ``tls``: ``TlsSettings.for_listener``, ``ServerTls`` (a listener's context factory),
  ``principal_of`` (a TLS transport's client certificate as ``User:...``).
- ``interbroker``: ``InterBrokerSecurity``: how this broker connects to the others.
- ``authorizer``: ``Authorizer`` over an ``AclSet`` (pure, Kafka's AclAuthorizer rules);
  ``acl_cache``: the ACLs kept current from ZooKeeper; ``guard``/``rules``: the per-API checks;
  ``acl_handlers``: DescribeAcls, CreateAcls, DeleteAcls.
- ``sasl``: ``SaslGate``, a connection's SASL login (pure); its mechanisms in
  ``mechanisms``, a listener's settings in ``sasl_settings``, the SCRAM credentials kept in
  ZooKeeper in ``credentials``, the credential admin APIs in ``scram_admin``.
"""

from .authorizer import AclSet, Authorizer
from .interbroker import PLAINTEXT_LINK, InterBrokerSecurity
from .listeners import (
    SASL_PROTOCOLS,
    SECURITY_PROTOCOLS,
    TLS_PROTOCOLS,
    Listener,
    ListenerPlan,
    listener_plan,
    parse_protocol_map,
)
from .principal import NoMatchingRule, PrincipalMapper
from .tls import ServerTls, TlsSettings, principal_of, subject_of

__all__ = [
    "PLAINTEXT_LINK",
    "SASL_PROTOCOLS",
    "SECURITY_PROTOCOLS",
    "TLS_PROTOCOLS",
    "AclSet",
    "Authorizer",
    "InterBrokerSecurity",
    "Listener",
    "ListenerPlan",
    "NoMatchingRule",
    "PrincipalMapper",
    "ServerTls",
    "TlsSettings",
    "listener_plan",
    "parse_protocol_map",
    "principal_of",
    "subject_of",
]
