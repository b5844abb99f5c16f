"""Listeners: ``listeners``, ``advertised.listeners``, ``listener.security.protocol.map``
and the inter-broker listener read into ``Listener`` values, with Kafka's checks.  Pure.

    >>> plan = listener_plan(config)
    >>> plan.listeners            # [Listener("PLAINTEXT", "PLAINTEXT", "127.0.0.1", 9092), ...]
    >>> plan.advertised           # what the broker registers (same names, other addresses)
    >>> plan.inter_broker         # the listener name brokers use among themselves

Listener names are case-insensitive and kept upper-case; a name that is not a security
protocol must be mapped to one in ``listener.security.protocol.map``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..log.config import ConfigError
from ..protocol.broker_nodes import format_endpoint, parse_endpoint

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
DEFAULT_PROTOCOL_MAP = {p: p for p in SECURITY_PROTOCOLS}  # Kafka's default map


@dataclass(frozen=True)
class Listener:
    """One listener: its name, security protocol and address (host "" = every interface)."""

    name: str
    security_protocol: str
    host: str
    port: int

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in TLS_PROTOCOLS

    @property
    def endpoint(self) -> str:
        return format_endpoint(self.name, self.host, self.port)


@dataclass(frozen=True)
class ListenerPlan:
    """Every listener to open, what to advertise, and the inter-broker listener's name."""

    listeners: tuple[Listener, ...]
    advertised: tuple[Listener, ...]
    inter_broker: str
    protocol_map: dict[str, str]

    def listener(self, name: str) -> Listener:
        return next(x for x in self.listeners if x.name == name.upper())

    def advertised_listener(self, name: str) -> Listener:
        return next(x for x in self.advertised if x.name == name.upper())


def parse_protocol_map(text: str | None) -> dict[str, str]:
    """``NAME:PROTOCOL,...`` -> {NAME: PROTOCOL}; None or empty: Kafka's default map."""
    if text is None or not text.strip():
        return dict(DEFAULT_PROTOCOL_MAP)
    result: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, protocol = item.partition(":")
        name, protocol = name.strip().upper(), protocol.strip().upper()
        if not sep or not name:
            raise ConfigError(
                f"listener.security.protocol.map: {item.strip()!r} is not NAME:PROTOCOL"
            )
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"listener.security.protocol.map: {protocol!r} (for {name}) is not one of "
                + ", ".join(SECURITY_PROTOCOLS)
            )
        if name in result:
            raise ConfigError(f"listener.security.protocol.map: {name} is mapped twice")
        result[name] = protocol
    return result


def parse_listeners(
    property_name: str, entries: list[str], protocol_map: dict[str, str], unique_ports=True
) -> tuple[Listener, ...]:
    """Each ``NAME://host:port`` of ``entries`` as a Listener; names unique, and ports too
    unless ``unique_ports`` is false (advertised addresses may share a port)."""
    found: list[Listener] = []
    for entry in entries:
        try:
            name, host, port = parse_endpoint(entry)
        except ValueError:
            raise ConfigError(
                f"{property_name}: {entry!r} is not of the form NAME://host:port"
            ) from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"{property_name}: {entry!r} has port {port}, not 0-65535")
        protocol = protocol_map.get(name)
        if protocol is None:
            raise ConfigError(
                f"{property_name}: no security protocol defined for listener {name} "
                "(add it to listener.security.protocol.map, e.g. "
                f"{name}:PLAINTEXT)"
            )
        if any(x.name == name for x in found):
            raise ConfigError(f"{property_name}: each listener must have a different name ({name})")
        if unique_ports and port and any(x.port == port for x in found):
            raise ConfigError(f"{property_name}: each listener must have a different port ({port})")
        found.append(Listener(name, protocol, host, port))
    return tuple(found)


def listener_plan(config) -> ListenerPlan:
    """The listeners of a broker configuration (a ``BrokerConfig`` or a dict of parsed
    values), checked as Kafka checks them; ConfigError says what is wrong."""
    protocol_map = parse_protocol_map(config["listener.security.protocol.map"])
    listeners = parse_listeners("listeners", config["listeners"], protocol_map)
    advertised_entries = config["advertised.listeners"] or config["listeners"]
    advertised = parse_listeners(
        "advertised.listeners", advertised_entries, protocol_map, unique_ports=False
    )
    names = {x.name for x in listeners}
    for x in advertised:
        if x.name not in names:
            raise ConfigError(
                f"advertised.listeners: listener {x.name} is not one of listeners "
                f"({', '.join(sorted(names))})"
            )
    inter_name = config["inter.broker.listener.name"]
    inter_protocol = config["security.inter.broker.protocol"]
    if inter_name and inter_protocol:
        raise ConfigError(
            "only one of inter.broker.listener.name and security.inter.broker.protocol "
            "should be set"
        )
    if inter_protocol:
        inter_protocol = inter_protocol.strip().upper()
        if inter_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"security.inter.broker.protocol: {inter_protocol!r} is not one of "
                + ", ".join(SECURITY_PROTOCOLS)
            )
        inter = inter_protocol
    else:
        inter = (inter_name or "PLAINTEXT").strip().upper()
    if inter not in {x.name for x in advertised}:
        raise ConfigError(
            f"inter.broker.listener.name: {inter} must be a listener name defined in "
            f"advertised.listeners ({', '.join(x.name for x in advertised)}); set "
            "inter.broker.listener.name to one of them"
        )
    return ListenerPlan(listeners, advertised, inter, protocol_map)
