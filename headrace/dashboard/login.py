"""The dashboard's login on twisted.web, when security is on: every page, ``/api/*`` and
the event streams need a session cookie (from the form at ``/login``) or HTTP Basic
credentials; the checks themselves are in ``credentials.py``.

    >>> site = Site(LoginGate(root, check, reactor))   # check(user, password) -> bool, blocking

Without a login, ``/api/...`` answers 401 (JSON, with a Basic challenge) and a page is
redirected to ``/login``.  The cookie is HttpOnly and SameSite=Strict.  A wrong password is
answered only after ``failure_delay`` seconds (Kafka's ``connection.failed.authentication.
delay.ms``, 1 s here), and an address with too many failures is refused with 429 for a while
(``credentials.Throttle``).  Passwords are checked in the reactor's thread pool.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Callable

from twisted.internet import task, threads
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET

from .credentials import Sessions, Throttle

log = logging.getLogger(__name__)

COOKIE = b"headrace_session"
FAILURE_DELAY_S = 1.0
REALM = b'Basic realm="headrace dashboard", charset="UTF-8"'

_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>headrace: log in</title>
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body><main class="login"><h1>headrace</h1>
<form method="post" action="/login" id="login">
<p class="error" id="login-error">{error}</p>
<label>User <input name="user" id="user" autocomplete="username" required autofocus></label>
<label>Password <input name="password" id="password" type="password"
 autocomplete="current-password" required></label>
<button type="submit" id="login-submit">Log in</button>
</form></main></body></html>
"""


def _address(request) -> str:
    return getattr(request.getClientAddress(), "host", "") or "unknown"


def _session_token(request) -> str | None:
    token = request.getCookie(COOKIE)
    return token.decode("ascii", "replace") if token else None


def _basic(request) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic`` header, or None."""
    header = request.getHeader(b"authorization") or b""
    scheme, _, value = header.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except ValueError:
        return None
    return (user, password) if sep else None


class LoginGate(Resource):
    """The site's root when a login is needed: it lets a request through to ``root`` only with
    a live session or good Basic credentials."""

    def __init__(
        self,
        root: Resource,
        check: Callable[[str, str], bool],
        reactor,
        sessions: Sessions | None = None,
        throttle: Throttle | None = None,
        failure_delay: float = FAILURE_DELAY_S,
    ):
        super().__init__()
        self.root = root
        self.check = check
        self.reactor = reactor
        self.sessions = sessions or Sessions(reactor.seconds)
        self.throttle = throttle or Throttle(reactor.seconds)
        self.failure_delay = failure_delay

    def getChildWithDefault(self, path, request):
        if path == b"login":
            return LoginPage(self)
        if path == b"logout":
            return LogoutPage(self)
        if self.sessions.user(_session_token(request)) is not None:
            return self.root.getChildWithDefault(path, request)
        credentials = _basic(request)
        if credentials is not None:
            return BasicCheck(self, self.root.getChildWithDefault(path, request), credentials)
        return Refused(path == b"api")

    def verify(self, request, user: str, password: str):
        """A Deferred firing True or False once the password is checked (False after the
        failure delay), or None at once when the address must wait (429 sent)."""
        address = _address(request)
        wait = self.throttle.retry_after(address)
        if wait > 0:
            request.setResponseCode(429)
            request.setHeader(b"retry-after", str(int(wait) + 1).encode())
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
            request.write(
                json.dumps({"error": f"too many failed logins; try again in {wait:.0f} s"}).encode()
            )
            request.finish()
            return None
        pool = self.reactor.getThreadPool()
        d = threads.deferToThreadPool(self.reactor, pool, self.check, user, password)

        def checked(ok, *_):
            if ok:
                self.throttle.succeeded(address)
                return True
            self.throttle.failed(address)
            log.warning("dashboard login failed for user %r from %s", user, address)
            return task.deferLater(self.reactor, self.failure_delay, lambda: False)

        def broken(failure):
            log.warning("dashboard login check failed: %s", failure.getErrorMessage())
            return False

        return d.addCallbacks(checked, broken)


class Refused(Resource):
    """No login: 401 for the API, a redirect to the form for the page."""

    isLeaf = True

    def __init__(self, api: bool):
        super().__init__()
        self.api = api

    def render(self, request):
        if self.api:
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", REALM)
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
            return b'{"error":"log in first (the dashboard needs a login)"}'
        request.setResponseCode(303)
        request.setHeader(b"location", b"/login")
        return b""


class BasicCheck(Resource):
    """Basic credentials: checked (in a thread), then the request goes on to ``child``."""

    isLeaf = True

    def __init__(self, gate: LoginGate, child: Resource, credentials: tuple[str, str]):
        super().__init__()
        self.gate, self.child, self.credentials = gate, child, credentials

    def render(self, request):
        d = self.gate.verify(request, *self.credentials)
        if d is None:
            return NOT_DONE_YET

        def done(ok):
            if request._disconnected:
                return
            if ok:
                request.render(getChildForRequest(self.child, request))
            else:
                request.setResponseCode(401)
                request.setHeader(b"www-authenticate", REALM)
                request.setHeader(b"content-type", b"application/json; charset=utf-8")
                request.write(b'{"error":"wrong user or password"}')
                request.finish()

        d.addCallback(done)
        return NOT_DONE_YET


class LoginPage(Resource):
    """``GET /login``: the form; ``POST /login``: check it, set the session cookie."""

    isLeaf = True

    def __init__(self, gate: LoginGate):
        super().__init__()
        self.gate = gate

    @staticmethod
    def _form(request, error: str = "", status: int = 200) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return _FORM.format(error=html.escape(error)).encode()

    def render_GET(self, request):
        return self._form(request)

    def render_POST(self, request):
        def field(name: bytes) -> str:
            values = request.args.get(name) or [b""]
            return values[0].decode("utf-8", "replace")

        user, password = field(b"user"), field(b"password")
        d = self.gate.verify(request, user, password)
        if d is None:
            return NOT_DONE_YET

        def done(ok):
            if request._disconnected:
                return
            if not ok:
                request.write(self._form(request, "Wrong user or password.", 401))
                request.finish()
                return
            token = self.gate.sessions.new(user)
            request.addCookie(COOKIE, token.encode(), path=b"/", httpOnly=True, sameSite="strict")
            request.setResponseCode(303)
            request.setHeader(b"location", b"/")
            request.finish()

        d.addCallback(done)
        return NOT_DONE_YET


class LogoutPage(Resource):
    """``POST /logout``: the session ends."""

    isLeaf = True

    def __init__(self, gate: LoginGate):
        super().__init__()
        self.gate = gate

    def render_POST(self, request):
        self.gate.sessions.drop(_session_token(request))
        request.addCookie(COOKIE, b"", path=b"/", httpOnly=True, sameSite="strict", max_age=b"0")
        request.setResponseCode(303)
        request.setHeader(b"location", b"/login")
        return b""


__all__ = ["COOKIE", "LoginGate"]
