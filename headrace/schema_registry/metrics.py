"""The schema registry's Prometheus page (``headrace schema-registry --metrics-port``):
requests answered by endpoint (the route, its names and numbers as placeholders), method and
status, counted on the reactor thread; schemas and subjects registered, read from ZooKeeper
when Prometheus scrapes."""

from __future__ import annotations

import logging
import threading
import urllib.parse

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

# Per route head: which positions of the path are values, and their placeholders.
_PLACEHOLDERS = {
    "subjects": {1: "{subject}", 3: "{version}"},
    "schemas": {2: "{id}"},
    "compatibility": {2: "{subject}", 4: "{version}"},
    "config": {1: "{subject}"},
    "mode": {1: "{subject}"},
}


def endpoint_of(path: str) -> str:
    """``/subjects/clicks-value/versions/3`` -> ``/subjects/{subject}/versions/{version}``;
    a path of no route the API has is ``other``, so clients cannot grow the label set."""
    parts = [p for p in urllib.parse.urlsplit(path).path.split("/") if p]
    if not parts:
        return "/"
    names = _PLACEHOLDERS.get(parts[0])
    if names is None or len(parts) > 6:
        return "other"
    return "/" + "/".join(names.get(i, p) for i, p in enumerate(parts))


class RegistryMetrics:
    """Counts of answered requests; ``collect`` for ``prometheus_client``."""

    def __init__(self, store=None):
        self.store = store
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}

    def count(self, method: str, path: str, status: int) -> None:
        key = (endpoint_of(path), method, str(status))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1

    def describe(self):
        return []

    def collect(self):
        requests = CounterMetricFamily(
            "headrace_schema_registry_requests",
            "Requests answered, by endpoint, method and HTTP status",
            labels=["endpoint", "method", "status"],
        )
        with self._lock:
            counts = sorted(self._requests.items())
        for labels, value in counts:
            requests.add_metric(list(labels), value)
        yield requests
        if self.store is None:
            return
        try:
            schemas, subjects = self.store.counts()
        except Exception as exc:  # ZooKeeper away: no gauges this time
            log.debug("no registry counts: %r", exc)
            return
        yield GaugeMetricFamily(
            "headrace_schema_registry_schemas", "Schemas registered (distinct ids)", value=schemas
        )
        yield GaugeMetricFamily(
            "headrace_schema_registry_subjects",
            "Subjects with a version (soft-deleted ones included)",
            value=subjects,
        )


def registry_page(metrics: RegistryMetrics) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(metrics)
    return registry
