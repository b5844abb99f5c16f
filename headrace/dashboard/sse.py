"""Server-Sent Events over twisted.web: a stream per request, events written as they come,
and a callback when the client goes away.

    >>> stream = EventStream(request, on_close=forget)   # in a resource's render_GET
    >>> stream.send("cluster", {"brokers": []})          # event: cluster / data: {...}
    >>> return NOT_DONE_YET
"""

from __future__ import annotations

import json

from twisted.web.server import NOT_DONE_YET

__all__ = ["NOT_DONE_YET", "EventStream", "encode_event"]


def encode_event(name: str, data) -> bytes:
    """One SSE frame: ``event: <name>`` and the JSON of ``data`` on one ``data:`` line."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return f"event: {name}\ndata: {payload}\n\n".encode()


class EventStream:
    """The SSE response to one request; ``closed`` once the client is gone (or ``close()``),
    after which ``send`` does nothing and ``on_close`` has been called once."""

    def __init__(self, request, on_close=None):
        self.request = request
        self.closed = False
        self._on_close = on_close
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        request.write(b"retry: 2000\n\n")
        request.notifyFinish().addBoth(self._finished)

    def send(self, name: str, data) -> None:
        if not self.closed:
            self.request.write(encode_event(name, data))

    def close(self) -> None:
        """End the response from the server's side."""
        if not self.closed:
            self._finished(None)
            self.request.finish()

    def _finished(self, _result) -> None:
        if self.closed:
            return
        self.closed = True
        if self._on_close is not None:
            self._on_close(self)
