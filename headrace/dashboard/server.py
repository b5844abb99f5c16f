"""The dashboard's web server on twisted.web: the page's static files, the JSON snapshots
and the Server-Sent Event streams of the JSON API (README, "Dashboard").

    /                 the page (``static/index.html``); /static/... its files
    /api/cluster      /api/topics      /api/groups       snapshots (JSON)
    /api/events       the three snapshots once a second (SSE)
    /api/tail         /api/aggregate   live feeds (SSE), see ``feeds.py``
    /api/audit        the audit table (JSON), see ``audit.py``
    /login  /logout   with security on, everything else needs a login (``login.py``)

Bad parameters answer 400 and an unknown topic 404, with ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from twisted.internet import defer
from twisted.web import pages
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import File

from .sse import NOT_DONE_YET, EventStream

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
SNAPSHOTS = ("cluster", "topics", "groups")


class ApiError(Exception):
    """A request the API refuses: its HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def send_json(request, body, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-cache")
    return json.dumps(body, separators=(",", ":")).encode()


def send_error(request, error: ApiError) -> bytes:
    return send_json(request, {"error": str(error)}, error.status)


class ApiResource(Resource):
    """A leaf of the API: ``answer(request)`` returns a JSON body, or starts a stream and
    returns NOT_DONE_YET, or a Deferred of either; an ApiError becomes its status and
    ``{"error"}``, any other failure a 503."""

    isLeaf = True

    def __init__(self, answer):
        super().__init__()
        self.answer = answer

    def render_GET(self, request):
        try:
            body = self.answer(request)
        except ApiError as exc:
            return send_error(request, exc)
        if isinstance(body, defer.Deferred):
            body.addCallbacks(
                lambda value: self._later(request, value), self._failed, (), {}, (request,)
            )
            return NOT_DONE_YET
        return body if body is NOT_DONE_YET else send_json(request, body)

    @staticmethod
    def _later(request, body) -> None:
        if body is not NOT_DONE_YET:
            request.write(send_json(request, body))
            request.finish()

    @staticmethod
    def _failed(failure, request) -> None:
        error = failure.value
        if not isinstance(error, ApiError):
            log.warning("API request %s failed: %s", request.uri, failure.getTraceback())
            error = ApiError(503, f"{type(error).__name__}: {error}".splitlines()[0])
        request.write(send_error(request, error))
        request.finish()


class NotFound(Resource):
    isLeaf = True

    def render(self, request):
        return send_error(request, ApiError(404, f"no such API: {request.path.decode()}"))


class Api(Resource):
    def getChild(self, path, request):
        return NotFound()


class StaticFiles(File):
    """The page's files; no directory listings."""

    def directoryListing(self):
        return pages.forbidden()


class Events:
    """``/api/events``: every open stream gets each view the sampler builds."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.streams: set[EventStream] = set()
        sampler.listeners.append(self.broadcast)

    def open(self, request):
        stream = EventStream(request, on_close=self.streams.discard)
        self.streams.add(stream)
        for name in SNAPSHOTS:
            stream.send(name, self.sampler.snapshots[name])
        return NOT_DONE_YET

    def broadcast(self, name: str, view: dict) -> None:
        for stream in list(self.streams):
            stream.send(name, view)


def build_site(
    sampler, feeds=None, static_dir: Path = STATIC_DIR, audit=None, login=None, reactor=None
) -> Site:
    """The whole site: the page, the snapshots, the event stream, (given ``feeds``, a
    ``feeds.Feeds``) the tail and aggregate streams and (given ``audit``, an
    ``audit.AuditView``) the audit table; given ``login`` (``check(user, password)``), all
    of it behind a login (``login.py``)."""
    root = StaticFiles(str(static_dir))
    root.putChild(b"static", StaticFiles(str(static_dir)))
    api = Api()
    for name in SNAPSHOTS:
        api.putChild(name.encode(), ApiResource(lambda request, n=name: sampler.snapshots[n]))
    events = Events(sampler)
    api.putChild(b"events", ApiResource(events.open))
    if feeds is not None:
        api.putChild(b"tail", ApiResource(feeds.open_tail))
        api.putChild(b"aggregate", ApiResource(feeds.open_aggregate))
    if audit is not None:
        api.putChild(b"audit", ApiResource(audit.answer))
    root.putChild(b"api", api)
    if login is not None:
        from .login import LoginGate

        if reactor is None:
            from twisted.internet import reactor
        root = LoginGate(root, login, reactor)
    site = Site(root)
    site.displayTracebacks = False
    return site
