"""The broker's network side: a Twisted protocol that frames requests and keeps responses
in request order, and the factory that holds the request handlers.

The protocol only connects bytes to handlers: ``frames.FrameSplitter`` cuts the stream into
frames, ``frames.decode_request`` parses, a handler returns a response body (or a Deferred of
one, or None for a Produce with acks=0), a ``PendingResponse`` keeps its place in request
order, and ``frames.encode_response_parts`` serialises.  A frame over
``socket.request.max.bytes``, or one that does not parse, closes that connection only, with a
log line.

A fetch response carries file ranges (``FileSlice``) rather than record bytes: the response's
framing is written first, then each range goes out by ``os.sendfile`` from the page cache to
the socket once the transport's buffer is empty (plain TCP; a full socket waits for Twisted to
find it writable), or, on other transports, is read and written in pieces of ``SEND_CHUNK``
bytes, the next piece only when the transport's write buffer has drained (the protocol is the
transport's streaming producer).  So a connection holds at most one piece in memory however
large the fetch, and responses still leave in request order.  Responses completed while one
read's frames are handled leave in one write.

On a SASL_PLAINTEXT or SASL_SSL listener each connection has a ``SaslGate``
(``broker/security/sasl.py``): until it is authenticated the gate decides which requests
pass, answers the SASL ones, and after SaslHandshake v0 takes the frames as bare tokens; a
refused login is answered after the gate's delay and the connection closed.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from collections import deque

from OpenSSL import SSL
from twisted.internet import defer, protocol, tcp
from twisted.internet.interfaces import IHandshakeListener
from zope.interface import implementer

from .log.segment import FileSlice
from .protocol import frames
from .protocol.registry import APIS, Api, ApiKey
from .protocol.schema import RECORDS, ProtocolError
from .security.sasl import ListenerSasl, SaslGate

log = logging.getLogger(__name__)

_NO_RESPONSE = object()
CLOSE_CONNECTION = object()  # a handler's answer: write what came before, then close
ANONYMOUS = "User:ANONYMOUS"  # the principal of a connection nobody authenticated
MAX_PENDING = 64  # requests in progress per connection before we stop reading from it
SEND_CHUNK = 1 << 20  # bytes of a file range read and written at a time
USE_SENDFILE = hasattr(os, "sendfile")
_NO_SENDFILE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)  # sendfile cannot serve these fds


# APIs whose responses may carry file ranges (Fetch's records), encoded as parts.
_STREAMED = frozenset(api.key for api in APIS if api.response.holds(RECORDS))


class PendingResponse:
    """A response owed to a request in progress: it leaves once ``ready`` and every response
    before it has left.  ``api`` None: ``body`` is a whole frame encoded already."""

    __slots__ = ("api", "body", "correlation_id", "deferred", "ready", "version")

    def __init__(self, correlation_id: int | None, api: Api | None, version: int | None):
        self.correlation_id = correlation_id
        self.api = api
        self.version = version
        self.body = None  # the handler's answer, _NO_RESPONSE, or CLOSE_CONNECTION
        self.ready = False
        self.deferred: defer.Deferred | None = None  # the handler's answer still to come


@implementer(IHandshakeListener)
class KafkaServerProtocol(protocol.Protocol):
    """One client connection: int32-size framing, requests in, responses out in order."""

    def __init__(
        self,
        handlers,
        max_length: int,
        listener_name: str = "PLAINTEXT",
        security_protocol: str = "PLAINTEXT",
    ):
        self.handlers = handlers
        self.MAX_LENGTH = max_length
        # The listener this connection came in on, its security protocol, and who the peer
        # is: ``User:ANONYMOUS`` until a TLS certificate or a SASL login says otherwise.
        self.listener_name = listener_name
        self.security_protocol = security_protocol
        self.principal = ANONYMOUS
        self._pending: deque[PendingResponse] = deque()  # responses owed, in request order
        self._closed = False
        self.peer = "?"
        self._splitter = frames.FrameSplitter(max_length)
        self._queue_full = False  # too many requests in progress: reading paused
        self._writes_full = False  # the transport's write buffer is full: reading paused
        self._out: deque = deque()  # response parts not yet written: bytes or file ranges
        self._out_sent = 0  # bytes of the file range at the head of _out already written
        self._closing = False  # close once _out is written
        self._receiving = False  # inside dataReceived: _send_more waits for its end
        self._socket = None  # the socket's descriptor when file ranges go by sendfile
        self._tcp = False  # a plain TCP transport: responses may go straight to its socket
        self.client_software = None  # (name, version) the client gave in ApiVersions v3+
        self.sasl: SaslGate | None = None  # on SASL listeners: the login's state

    def dataReceived(self, data: bytes):
        """Feed the splitter and handle each whole frame; responses ready meanwhile leave in
        one write, after."""
        splitter = self._splitter
        splitter.feed(data)
        if self._closed:
            return
        try:
            frame = splitter.next_frame()
        except frames.FrameTooLargeError as exc:
            self.lengthLimitExceeded(exc.size)
            return
        if frame is None:  # a piece of a frame: nothing to do yet
            return
        self._receiving = True
        too_long = None
        try:
            while frame is not None:
                self.stringReceived(frame)
                if self._closed:
                    break
                frame = splitter.next_frame()
        except frames.FrameTooLargeError as exc:
            too_long = exc
        finally:
            self._receiving = False
        self._send_more()
        if too_long is not None:
            self.lengthLimitExceeded(too_long.size)

    def connectionMade(self):
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        # Pipelined requests get their answers at once, not after the client's delayed ACK
        # (Nagle would hold the second small response until the first is acknowledged).
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.factory.connections.add(self)
        if self.factory.sasl is not None:
            self.sasl = SaslGate(self.factory.sasl, self.factory.clock, self.peer)
        # As a streaming producer, we are told when the client reads too slowly; we then
        # stop reading its requests, so a client cannot pile responses up in our memory.
        self.transport.registerProducer(self, True)
        # File ranges of fetches go by sendfile on plain TCP; anything else (TLS, tests'
        # in-memory transports) reads them with pread.
        self._tcp = type(self.transport) is tcp.Server
        if self._tcp and USE_SENDFILE:
            self._socket = self.transport.fileno()

    def handshakeCompleted(self):
        """A TLS listener's handshake is done (before any request arrives): the factory's
        ``on_handshake`` may set ``principal`` from the client's certificate, or close."""
        on_handshake = getattr(self.factory, "on_handshake", None)
        if on_handshake is not None:
            on_handshake(self)

    def connectionLost(self, reason=None):
        self._closed = True
        self.factory.connections.discard(self)
        waiting = [slot.deferred for slot in self._pending if slot.deferred is not None]
        self._pending.clear()
        self._out.clear()
        for deferred in waiting:  # e.g. long-polled fetches: nobody will read their answers
            if not deferred.called:
                deferred.cancel()

    # IPushProducer: the transport's write buffer filled up or drained.
    def pauseProducing(self):
        self._writes_full = True
        self._update_reading()

    def resumeProducing(self):
        self._writes_full = False
        self._send_more()
        self._update_reading()

    def stopProducing(self):
        self._closed = True

    def _update_reading(self):
        if self._closed or self.transport is None:
            return
        if self._writes_full or self._queue_full:
            self.transport.pauseProducing()
        else:
            self.transport.resumeProducing()

    def lengthLimitExceeded(self, length):
        log.warning(
            "closing %s: request frame of %d bytes is over socket.request.max.bytes (%d)",
            self.peer,
            length,
            self.MAX_LENGTH,
        )
        self._lose_connection()
        self._closed = True

    def _decode(self, payload):
        """The request in ``payload``, or None if it was answered or the connection closed."""
        try:
            return frames.decode_request(payload)
        except frames.UnsupportedApiError as exc:
            header = exc.header
            if header.api_key == ApiKey.API_VERSIONS:
                # KIP-511: answer in v0 with the versions we serve; the client retries.
                self._enqueue_raw(frames.api_versions_fallback(header.correlation_id))
                return None
            log.warning("closing %s: %s", self.peer, exc)
            self._abort()
            return None
        except ProtocolError as exc:
            log.warning("closing %s: %s", self.peer, exc)
            self._abort()
            return None

    def stringReceived(self, payload):
        if self._closed or self._closing:
            return
        if self.sasl is not None and not self.sasl.authenticated and self._before_login(payload):
            return
        request = self._decode(payload)
        if request is None:
            return
        header = request.header
        # With nothing in progress before it, a request answered at once skips the queue.
        slot = self._queue_slot(header, request.api) if self._pending else None
        try:
            result = self.handlers.handle(request, self)
        except Exception:
            log.exception(
                "closing %s: %s v%d handler failed", self.peer, request.api.name, header.api_version
            )
            self._abort()
            return
        if slot is None:
            if result is None:  # a Produce with acks=0: no answer
                return
            if result is not CLOSE_CONNECTION and not isinstance(result, defer.Deferred):
                if self._encode(header.correlation_id, request.api, header.api_version, result):
                    self._send_more()
                return
            slot = self._queue_slot(header, request.api)
        if isinstance(result, defer.Deferred):
            slot.deferred = result
            result.addCallbacks(
                self._completed, self._failed, callbackArgs=(slot,), errbackArgs=(slot,)
            )
        else:
            self._completed(result, slot)

    def _before_login(self, payload) -> bool:
        """A frame before the login completed, given to the gate; False: an ApiVersions
        request, for the handlers."""
        gate = self.sasl
        if gate.failed:  # a refusal's answer is on its way; then the connection closes
            return True
        if gate.raw_tokens:
            answer = gate.raw_token(payload)
            if isinstance(answer, defer.Deferred):
                self._answer_later(PendingResponse(None, None, None), answer)
            else:
                self._enqueue_raw(struct.pack(">i", len(answer)) + answer)
                self.principal = gate.principal or self.principal
            return True
        request = self._decode(payload)
        if request is None:
            return True
        api, header = request.api, request.header
        if not gate.allows(api.key):
            gate.refuse(api.name)
            self._abort()
            return True
        if api.key == ApiKey.SASL_HANDSHAKE:
            result = gate.handshake(request.body, header.api_version)
        elif api.key == ApiKey.SASL_AUTHENTICATE:
            result = gate.authenticate(request.body["auth_bytes"], header.api_version)
        else:
            return False
        if isinstance(result, defer.Deferred):
            slot = PendingResponse(header.correlation_id, api, header.api_version)
            self._answer_later(slot, result)
        else:
            self._completed(result, self._queue_slot(header, api))
            if gate.authenticated:
                self.principal = gate.principal
        return True

    def _answer_later(self, slot: PendingResponse, answer: defer.Deferred) -> None:
        """A refused login: its answer (None: none) leaves when ``answer`` fires, after the
        gate's delay; then the connection closes."""
        slot.deferred = answer
        self._pending.append(slot)
        answer.addCallback(self._completed, slot)
        answer.addCallback(lambda _: self._close_when_written())
        answer.addErrback(lambda f: f.trap(defer.CancelledError))

    def _close_when_written(self) -> None:
        self._closing = True
        self._send_more()

    def _queue_slot(self, header, api) -> PendingResponse:
        """A place in the response queue for a request in progress."""
        slot = PendingResponse(header.correlation_id, api, header.api_version)
        self._pending.append(slot)
        if len(self._pending) >= MAX_PENDING and not self._queue_full:
            self._queue_full = True
            self._update_reading()
        return slot

    def _completed(self, body, slot: PendingResponse):
        slot.body = _NO_RESPONSE if body is None else body
        slot.ready = True
        self._flush()

    def _failed(self, failure, slot):
        if self._closed and failure.check(defer.CancelledError):
            return  # cancelled because the connection went away
        log.error(
            "closing %s: %s request failed: %s", self.peer, slot.api.name, failure.getTraceback()
        )
        self._abort()

    def _enqueue_raw(self, data: bytes):
        slot = PendingResponse(None, None, None)
        slot.body, slot.ready = data, True
        self._pending.append(slot)
        self._flush()

    def _flush(self):
        """Write every response at the head of the queue that is ready, in request order."""
        pending = self._pending
        while pending and pending[0].ready:
            slot = pending.popleft()
            body = slot.body
            if self._closed or body is _NO_RESPONSE:
                continue
            if body is CLOSE_CONNECTION:
                log.info(
                    "closing %s: an acks=0 produce failed; the client will refresh metadata",
                    self.peer,
                )
                pending.clear()
                self._closing = True  # after the responses before it are written
                self._send_more()
                return
            if slot.api is None:  # a frame encoded already
                self._out.append(body)
                continue
            if not self._encode(slot.correlation_id, slot.api, slot.version, body):
                return
        self._send_more()
        if self._queue_full and len(pending) < MAX_PENDING // 2:
            self._queue_full = False
            self._update_reading()

    def _encode(self, correlation_id: int, api, version: int, body) -> bool:
        """Queue a response frame for writing: ``body`` is a dict for the API's codec, or
        bytes a handler encoded itself.  False (and the connection closed) if it cannot be
        encoded."""
        try:
            if type(body) is bytes:
                self._out.append(
                    frames.response_head(correlation_id, api, version, len(body)) + body
                )
                return True
            if api.key not in _STREAMED:  # no file ranges: one bytes object
                self._out.append(frames.encode_response(correlation_id, api, version, body))
                return True
            parts = frames.encode_response_parts(correlation_id, api, version, body)
        except Exception:
            log.exception("closing %s: cannot encode %s v%d response", self.peer, api.name, version)
            self._abort()
            return False
        run: list = []  # consecutive small parts are written as one piece
        for part in parts:
            if isinstance(part, FileSlice):
                if run:
                    self._out.append(b"".join(run))
                    run = []
                if part.size:
                    self._out.append(part)
            else:
                run.append(part)
        if run:
            self._out.append(b"".join(run))
        return True

    def _send_more(self):
        """Write queued parts until the transport asks us to pause: bytes at once, file
        ranges a piece at a time."""
        if self._receiving:
            return
        out = self._out
        while out and not self._writes_full and not self._closed:
            part = out[0]
            if not isinstance(part, FileSlice):
                out.popleft()
                if out and not isinstance(out[0], FileSlice):
                    run = [part]  # consecutive responses: one write
                    while out and not isinstance(out[0], FileSlice):
                        run.append(out.popleft())
                    part = b"".join(run)
                self._write(part)
                continue
            if self._socket is not None:
                if not self._send_file_range(part):
                    return
                continue
            length = min(SEND_CHUNK, part.size - self._out_sent)
            try:
                data = part.read_range(self._out_sent, length)
            except OSError as exc:  # the segment went away under a slow reader
                log.warning("closing %s: cannot read fetched data: %s", self.peer, exc)
                self._abort()
                return
            self._out_sent += length
            if self._out_sent == part.size:
                out.popleft()
                self._out_sent = 0
            self.transport.write(data)
        if self._closing and not out and not self._closed:
            self._abort()

    def _write(self, data) -> None:
        """Write ``data``: on plain TCP with nothing buffered before it, straight to the
        socket (what the kernel takes now costs Twisted no writer registration and no extra
        turn of the reactor loop); the rest, and on other transports all of it, through the
        transport."""
        transport = self.transport
        if (
            self._tcp
            and len(transport.dataBuffer) <= transport.offset
            and not transport._tempDataLen
        ):
            try:
                sent = transport.socket.send(data)
            except OSError:  # full (EAGAIN) or broken: Twisted retries or reports it
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def _send_file_range(self, part: FileSlice) -> bool:
        """Send the file range at the head of ``_out`` with sendfile, page cache to socket;
        True when it is all sent.  Only into an empty transport buffer (what was written
        before must leave first): else, and when the socket is full, wait for Twisted to find
        it writable and call ``resumeProducing``.  Falls back to pread for good if the kernel
        refuses sendfile for these descriptors."""
        transport = self.transport
        if len(transport.dataBuffer) > transport.offset or transport._tempDataLen:
            self._wait_writable()
            return False
        while self._out_sent < part.size:
            try:
                sent = os.sendfile(
                    self._socket,
                    part.fd,
                    part.position + self._out_sent,
                    min(part.size - self._out_sent, SEND_CHUNK),
                )
            except BlockingIOError:
                self._wait_writable()
                return False
            except OSError as exc:
                if exc.errno in _NO_SENDFILE:
                    log.info(
                        "%s: sendfile refused (%s); sending fetched data by pread", self.peer, exc
                    )
                    self._socket = None
                    return True
                log.info("closing %s: sending fetched data failed: %s", self.peer, exc)
                self._abort()
                return False
            if sent == 0:  # the file ends before the range does: it was cut under us
                log.warning("closing %s: segment file is shorter than a fetch expected", self.peer)
                self._abort()
                return False
            self._out_sent += sent
        self._out.popleft()
        self._out_sent = 0
        return True

    def _wait_writable(self):
        """Pause until the transport's buffer is empty and its socket writable; Twisted then
        resumes its paused streaming producer, this protocol."""
        self._writes_full = True
        self.transport.producerPaused = True
        self.transport.startWriting()

    def _abort(self):
        self._closed = True
        self._pending.clear()
        self._out.clear()
        self._lose_connection()

    def _lose_connection(self) -> None:
        """Close after what is written: first stop being the transport's streaming
        producer, since a TLS transport sends its close only without one.  TLS then waits
        for the peer's close in answer before closing the TCP connection; a peer that never
        answers would hold it open, so once our close is out the TCP connection under it is
        closed too (as Kafka does)."""
        transport = self.transport
        if transport is None:
            return
        transport.unregisterProducer()
        transport.loseConnection()
        tls = getattr(transport, "_tlsConnection", None)  # Twisted's TLSMemoryBIOProtocol
        lower = getattr(transport, "transport", None)
        if tls is not None and lower is not None and tls.get_shutdown() & SSL.SENT_SHUTDOWN:
            lower.loseConnection()


class KafkaServerFactory(protocol.ServerFactory):
    """Makes a protocol per connection of one listener; ``handlers`` answers requests;
    ``sasl`` (with a ``clock``) is required on SASL listeners."""

    def __init__(
        self,
        handlers,
        max_request_bytes: int,
        listener_name: str = "PLAINTEXT",
        security_protocol: str = "PLAINTEXT",
        sasl: ListenerSasl | None = None,
        clock=None,
    ):
        self.handlers = handlers
        self.max_request_bytes = max_request_bytes
        self.listener_name = listener_name
        self.security_protocol = security_protocol
        if security_protocol.startswith("SASL_") and (sasl is None or clock is None):
            raise ValueError(f"listener {listener_name}: {security_protocol} needs SASL settings")
        self.sasl = sasl  # the listener's SASL settings on SASL_PLAINTEXT and SASL_SSL
        self.clock = clock  # delays the answers to refused logins
        self.connections: set[KafkaServerProtocol] = set()
        self.on_handshake = None  # on_handshake(connection): a TLS handshake completed

    def buildProtocol(self, addr):
        proto = KafkaServerProtocol(
            self.handlers, self.max_request_bytes, self.listener_name, self.security_protocol
        )
        proto.factory = self
        return proto
