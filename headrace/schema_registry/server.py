"""The schema registry's web server on twisted.web: every request is handed to a thread
(ZooKeeper's calls block) where ``api.Registry`` answers it, and the answer is written back
on the reactor.  Each request is logged in one line."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse

from twisted.internet import threads
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from .api import RawJson, Registry
from .metrics import RegistryMetrics

log = logging.getLogger(__name__)

CONTENT_TYPE = b"application/vnd.schemaregistry.v1+json"
ACCEPTED_BODIES = (
    "application/vnd.schemaregistry.v1+json",
    "application/vnd.schemaregistry+json",
    "application/json",
    "application/octet-stream",
)
MAX_BODY = 4 * 1024 * 1024  # a schema is JSON text; larger is not one


def _refusal(status: int, code: int, message: str) -> tuple[int, object]:
    return status, {"error_code": code, "message": message}


class RegistryResource(Resource):
    """The whole API as one leaf: the path is routed by ``Registry.handle``."""

    isLeaf = True

    def __init__(self, registry: Registry, reactor, metrics: RegistryMetrics | None = None):
        super().__init__()
        self.registry = registry
        self.reactor = reactor
        self.metrics = metrics

    def render(self, request):
        started = time.monotonic()
        gone: list[bool] = []  # the client hung up: nothing to write the answer to
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        method = request.method.decode("latin-1")
        path = request.path.decode("latin-1")
        query = urllib.parse.parse_qs(
            urllib.parse.urlsplit(request.uri.decode("latin-1")).query, keep_blank_values=True
        )
        body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        kind = (request.getHeader(b"content-type") or b"").decode("latin-1")
        kind = kind.split(";")[0].strip().lower()
        if len(body) > MAX_BODY:
            self._finish(
                request, started, gone, _refusal(413, 413, "The request body is too large")
            )
        elif body and kind and kind not in ACCEPTED_BODIES:
            self._finish(
                request,
                started,
                gone,
                _refusal(
                    415, 415, f"HTTP 415 Unsupported Media Type: {kind}; send {ACCEPTED_BODIES[0]}"
                ),
            )
        else:
            d = threads.deferToThreadPool(
                self.reactor,
                self.reactor.getThreadPool(),
                self.registry.handle,
                method,
                path,
                query,
                body,
            )
            d.addErrback(self._crashed, method, path)
            d.addCallback(lambda answer: self._finish(request, started, gone, answer))
        return NOT_DONE_YET

    @staticmethod
    def _crashed(failure, method: str, path: str):
        log.error("%s %s failed: %s", method, path, failure.getTraceback())
        return _refusal(500, 500, "Internal Server Error")

    def _finish(self, request, started: float, gone: list[bool], answer) -> None:
        status, document = answer
        if self.metrics is not None:
            self.metrics.count(
                request.method.decode("latin-1"), request.path.decode("latin-1"), status
            )
        log.info(
            "%s %s %d %.1f ms",
            request.method.decode("latin-1"),
            request.uri.decode("latin-1"),
            status,
            (time.monotonic() - started) * 1000,
        )
        if gone:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", CONTENT_TYPE)
        text = document if isinstance(document, RawJson) else json.dumps(document)
        request.write(text.encode())
        request.finish()


def build_site(registry: Registry, reactor, metrics: RegistryMetrics | None = None) -> Site:
    site = Site(RegistryResource(registry, reactor, metrics))
    site.displayTracebacks = False
    return site
