"""``/api/audit``: the table ``headrace audit --json`` prints, made in a thread of the reactor's
pool (it reads the brokers and the warehouse) and cached for a few seconds per query.

    GET /api/audit?topic=T[&since=ISO-TIME|2h][&window=1m][&grace=5m][&warehouse=URL]
"""

from __future__ import annotations

import time

from twisted.internet import threads

from consumers.audit import parse_duration, parse_time
from consumers.security import PLAINTEXT

from ..audit import AuditError, audit_report
from .server import ApiError

CACHE_S = 5.0


def _arg(request, name: str) -> str | None:
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else None


class AuditView:
    """Answers ``/api/audit`` for one dashboard.  The warehouse compared is the request's,
    else the one a loader of the topic recorded with its last run (the sampler's groups view),
    else the dashboard's ``--warehouse``; with none, ``loaded`` is null."""

    def __init__(self, zookeeper: str, reactor, warehouse: str | None, sampler=None):
        self.zookeeper = zookeeper
        self.reactor = reactor
        self.warehouse = warehouse
        self.sampler = sampler
        self._cache: dict[tuple, tuple[float, dict]] = {}

    def query(self, request) -> tuple:
        """The report's arguments from the request; ApiError 400 for a bad one."""
        topic = _arg(request, "topic")
        if not topic:
            raise ApiError(400, "topic is required")
        now_ms = int(time.time() * 1000)
        try:
            window_ms = parse_duration(_arg(request, "window") or "1m", "window")
            grace_ms = parse_duration(_arg(request, "grace") or "5m", "grace")
            since = _arg(request, "since")
            since_ms = parse_time(since, now_ms) if since else None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if window_ms <= 0:
            raise ApiError(400, "window must be longer than 0")
        warehouse = _arg(request, "warehouse") or self._loaders_warehouse(topic) or self.warehouse
        return topic, warehouse, since_ms, window_ms, grace_ms

    def _loaders_warehouse(self, topic: str) -> str | None:
        groups = (self.sampler.snapshots.get("groups") or {}) if self.sampler else {}
        for group in groups.get("groups", []):
            loader = group.get("loader")
            if loader and loader.get("warehouse") and topic in group.get("topics", []):
                return loader["warehouse"]
        return None

    def answer(self, request):
        key = self.query(request)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._report, key)
        return d

    def _report(self, key: tuple) -> dict:
        topic, warehouse, since_ms, window_ms, grace_ms = key
        try:
            report = audit_report(
                self.zookeeper,
                topic,
                warehouse,
                since_ms,
                window_ms,
                grace_ms,
                security=self.sampler.security if self.sampler else PLAINTEXT,
            )
        except AuditError as exc:
            status = 404 if "does not exist" in str(exc) else 400
            raise ApiError(status, str(exc)) from None
        self._cache[key] = (time.monotonic(), report)
        return report
