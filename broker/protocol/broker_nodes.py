"""``/brokers/ids/<id>``: a broker's registration, as Kafka writes it (version 4).  Pure.

    {"version": 4, "host": "h", "port": 9092, "jmx_port": -1, "timestamp": "<ms>",
     "endpoints": ["PLAINTEXT://h:9092", "SSL://h:9093"],
     "listener_security_protocol_map": {"PLAINTEXT": "PLAINTEXT", "SSL": "SSL"},
     "rack": null, "log_dirs": ["host:/path", ...]}

``endpoints`` are every advertised listener; ``host`` and ``port`` repeat the first endpoint
whose security protocol is PLAINTEXT, for old readers, and are null and -1 when there is none
(Kafka's rule).  Readers wanting an address take it from ``endpoints`` (``endpoint_map``,
``address_for``).  ``log_dirs`` is ours: it lets a restarted broker recognise the node its
previous run left.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .node_codec import check, dumps, reading

_ENDPOINT = re.compile(r"^([A-Za-z0-9_.-]+)://(\[[^\]]*\]|[^:/\[\]]*):(-?\d+)$")


def parse_endpoint(endpoint: str) -> tuple[str, str, int]:
    """``NAME://host:port`` -> (NAME upper-cased, host, port); ``[::1]`` loses its
    brackets.  ValueError if it is not of that form."""
    match = _ENDPOINT.match(endpoint.strip())
    if match is None:
        raise ValueError(f"{endpoint!r} is not of the form NAME://host:port")
    name, host, port = match.groups()
    if host.startswith("["):
        host = host[1:-1]
    return name.upper(), host, int(port)


def format_endpoint(name: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{name}://{shown}:{port}"


@dataclass(frozen=True)
class BrokerRegistration:
    """Where a broker listens: ``endpoints`` (``NAME://host:port``, every advertised
    listener) and each listener's security protocol; ``host``/``port`` are its PLAINTEXT
    endpoint (None/-1 when it has none)."""

    host: str | None
    port: int
    rack: str | None = None
    endpoints: tuple[str, ...] = ()
    log_dirs: tuple[str, ...] | None = None
    timestamp_ms: int = 0
    security_protocols: tuple[tuple[str, str], ...] = ()  # (listener, protocol); () = names

    def endpoint_map(self) -> dict[str, tuple[str, int]]:
        """Listener name -> (host, port), from ``endpoints`` (or host/port when there are
        none, as PLAINTEXT)."""
        found: dict[str, tuple[str, int]] = {}
        for endpoint in self.endpoints or (plaintext_endpoint(self.host or "", self.port),):
            try:
                name, host, port = parse_endpoint(endpoint)
            except ValueError:
                continue
            found.setdefault(name, (host, port))
        return found

    def protocol_of(self, listener: str) -> str:
        """The security protocol of ``listener`` (its name, when the map does not say)."""
        return dict(self.security_protocols).get(listener, listener)

    def address_for(self, listener: str | None = None) -> tuple[str, int] | None:
        """(host, port) of ``listener``; None: the PLAINTEXT address (host/port, else the
        first endpoint whose protocol is PLAINTEXT, else the first endpoint)."""
        endpoints = self.endpoint_map()
        if listener is not None:
            return endpoints.get(listener.upper())
        if self.host is not None and self.port >= 0:
            return self.host, self.port
        for name, address in endpoints.items():
            if self.protocol_of(name) == "PLAINTEXT":
                return address
        return next(iter(endpoints.values()), None)


def plaintext_endpoint(host: str, port: int) -> str:
    return format_endpoint("PLAINTEXT", host, port)


def encode_broker(reg: BrokerRegistration) -> bytes:
    endpoints = list(reg.endpoints or (plaintext_endpoint(reg.host or "", reg.port),))
    protocols = dict(reg.security_protocols) or {
        parse_endpoint(e)[0]: parse_endpoint(e)[0] for e in endpoints
    }
    return dumps(
        {
            "version": 4,
            "host": reg.host,
            "port": reg.port,
            "endpoints": endpoints,
            "listener_security_protocol_map": protocols,
            "rack": reg.rack,
            "jmx_port": -1,
            "timestamp": str(reg.timestamp_ms),
            "log_dirs": None if reg.log_dirs is None else list(reg.log_dirs),
        }
    )


def decode_broker(data: bytes, path: str = "") -> BrokerRegistration:
    with reading("a broker registration", data, path):
        doc = json.loads(data)
        endpoints, log_dirs, rack = doc.get("endpoints") or [], doc.get("log_dirs"), doc.get("rack")
        protocols = doc.get("listener_security_protocol_map") or {}
        host = doc.get("host")
        check(host is None or isinstance(host, str), "host must be a string")
        check(host is not None or bool(endpoints), "a broker needs a host or endpoints")
        check(isinstance(endpoints, list), "endpoints must be a list")
        check(isinstance(protocols, dict), "listener_security_protocol_map must be an object")
        check(rack is None or isinstance(rack, str), "rack must be a string")
        check(log_dirs is None or isinstance(log_dirs, list), "log_dirs must be a list")
        return BrokerRegistration(
            host,
            int(doc["port"]) if doc.get("port") is not None else -1,
            rack,
            tuple(str(e) for e in endpoints),
            None if log_dirs is None else tuple(str(d) for d in log_dirs),
            int(doc.get("timestamp") or 0),
            tuple((str(k).upper(), str(v).upper()) for k, v in protocols.items()),
        )
