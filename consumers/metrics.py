"""Prometheus pages of the client-side processes (``headrace ship``, ``headrace load``):
their ``--metrics-port`` / ``--metrics-host`` options and the page itself, served by
``prometheus_client``'s own HTTP server on a thread of its own.

    >>> registry = CollectorRegistry()
    >>> page = serve_metrics(registry, 9405, "127.0.0.1")   # http://127.0.0.1:9405/metrics
    >>> page.close()
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


class MetricsPortError(OSError):
    """The metrics page cannot listen where it was told to."""


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port (off by default; 0: any free port)",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address of the metrics page (default 127.0.0.1)",
    )


class MetricsPage:
    """A running page; ``port`` is the one it listens on."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str):
        from prometheus_client import start_http_server

        try:
            self.server, self.thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise MetricsPortError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self.port = self.server.server_port
        self.host = host

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_metrics(registry: CollectorRegistry, port: int | None, host: str) -> MetricsPage | None:
    """The page of ``registry`` on ``host:port``; None when ``port`` is None (metrics off)."""
    if port is None:
        return None
    return MetricsPage(registry, port, host)


__all__ = ["MetricsPage", "MetricsPortError", "add_metrics_arguments", "serve_metrics"]
