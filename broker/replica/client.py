"""A broker-to-broker Kafka client on Twisted: requests named by ApiKey, Deferreds of their
decoded response bodies.

    >>> client = BrokerClient(reactor, "10.0.0.2", 9092, client_id="broker-1")
    >>> d = client.request(ApiKey.METADATA, {"topics": None})
    >>> d.addCallback(lambda body: body["brokers"])
    >>> client.close()

Requests are encoded with the registry's schemas at our clients' version (or the one given)
and framed as ``broker/protocol/frames.py`` frames them; several may be in flight on one
connection, answered in order (a response whose correlation id is not the oldest request's
drops the connection).  The connection is made on demand; after a failure or a lost
connection the next one waits ``replica.fetch.backoff.ms``.  Each request has a timeout
(``replica.socket.timeout.ms``): when it passes, that request fails with REQUEST_TIMED_OUT
and the connection is dropped, failing the others in flight with NETWORK_EXCEPTION, as
requests on a connection that broke do.  ``close`` fails what is pending and disconnects.

With ``login`` (mechanism, user name, password), each new connection first logs in with
SaslHandshake v1 and SaslAuthenticate v2 (``broker/protocol/sasl_login.py``); requests wait
for it, and a refused login fails them with the broker's error and drops the connection.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.base import DelayedCall
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.python.failure import Failure

from ..protocol.errors import KafkaError, error_for_code
from ..protocol.frames import FrameSplitter, decode_response_header, encode_request
from ..protocol.registry import API_BY_KEY, ApiKey, client_version
from ..protocol.sasl_login import SaslLoginError, client_login
from ..protocol.schema import DECODE_ERRORS, ProtocolError, Struct

RequestTimedOutError = error_for_code(7)
NetworkExceptionError = error_for_code(13)

_SIZE = struct.Struct(">i")
DEFAULT_MAX_RESPONSE = 100 * 1024 * 1024


def _transport(connection: protocol.Protocol) -> Any:
    """A connected protocol's TCP transport (typed loosely: zope interfaces do not type)."""
    assert connection.transport is not None
    return connection.transport


class _Pending:
    __slots__ = ("api_key", "correlation_id", "deferred", "frame", "response", "timer", "version")

    def __init__(self, api_key: int, version: int, correlation_id: int, response: Struct):
        self.api_key = api_key
        self.version = version
        self.correlation_id = correlation_id
        self.response = response
        self.frame = b""
        self.deferred: defer.Deferred[dict] = defer.Deferred()
        self.timer: DelayedCall | None = None


class _Connection(protocol.Protocol):
    """Cuts the response stream into frames for its client."""

    def __init__(self, client: BrokerClient, max_length: int):
        self.client = client
        self.splitter = FrameSplitter(max_length)

    def dataReceived(self, data: bytes) -> None:
        self.splitter.feed(data)
        try:
            while (frame := self.splitter.next_frame()) is not None:
                self.client._response(self, frame)
        except ProtocolError as exc:
            self.client._broken(self, exc)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.client._lost(self, reason)


class BrokerClient:
    """One connection (made on demand) to one broker; see the module docstring."""

    def __init__(
        self,
        reactor: Any,  # IReactorTCP and IReactorTime
        host: str,
        port: int,
        client_id: str | None = None,
        request_timeout_ms: int = 30000,
        backoff_ms: int = 1000,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE,
        security: Any = None,
        login: tuple[str, str, str] | None = None,
    ):
        self.reactor = reactor
        # How to connect (an InterBrokerSecurity): its ``endpoint`` (TCP, or TLS over it) and
        # its ``secure(connection)`` step before the first request; None: plain TCP.
        self.security = security
        self.login = login  # (mechanism, user, password) for SASL listeners
        self._logging_in = False  # the connection's login is under way: requests wait
        self.host = host
        self.port = port
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.backoff_ms = backoff_ms
        self.max_response_bytes = max_response_bytes
        self._connection: _Connection | None = None
        self._connecting: defer.Deferred | None = None
        self._retry_at = 0.0  # no connection attempt before this time (backoff)
        self._unsent: deque[_Pending] = deque()  # waiting for a connection
        self._in_flight: deque[_Pending] = deque()  # sent, oldest first
        self._next_correlation = 0
        self._closed = False
        self._lost_waiters: list[defer.Deferred[None]] = []

    def __repr__(self) -> str:
        return f"BrokerClient({self.host}:{self.port})"

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def request(self, api_key: ApiKey, body: dict, version: int | None = None) -> defer.Deferred:
        """Send a request of a registry API (at our clients' version unless ``version`` is
        given); a Deferred of the decoded response body."""
        if self._closed:
            return defer.fail(NetworkExceptionError(f"client for {self.host}:{self.port} closed"))
        pending = self._pending(api_key, body, client_version(api_key, version))
        if self._connection is not None and not self._logging_in:
            self._send(self._connection, pending)
        else:
            self._unsent.append(pending)
            self._connect()
        return pending.deferred

    def _pending(self, api_key: ApiKey, body: dict, version: int) -> _Pending:
        pending = _Pending(api_key, version, self._next_correlation, API_BY_KEY[api_key].response)
        self._next_correlation = (self._next_correlation + 1) & 0x7FFFFFFF
        pending.frame = encode_request(
            api_key, version, pending.correlation_id, self.client_id, body
        )
        pending.deferred = defer.Deferred(canceller=lambda _: self._cancel(pending))
        pending.timer = self.reactor.callLater(
            self.request_timeout_ms / 1000.0, self._timed_out, pending
        )
        return pending

    def close(self) -> defer.Deferred[None]:
        """Fail every pending request and disconnect; the Deferred fires once disconnected."""
        self._closed = True
        error = NetworkExceptionError(f"client for {self.host}:{self.port} closed")
        self._fail_all(error)
        if self._connecting is not None:
            self._connecting.cancel()
        if self._connection is None:
            return defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()
        self._lost_waiters.append(done)
        _transport(self._connection).loseConnection()
        return done

    def disconnect(self) -> None:
        """Drop the connection now, failing what is in flight; the next request reconnects
        (after the backoff)."""
        connection = self._connection
        if connection is None:
            return
        self._drop(connection, "dropped")
        if connection.transport is not None:
            _transport(connection).abortConnection()

    # --- connection ---------------------------------------------------------------------------

    def _connect(self) -> None:
        if self._connecting is not None or self._closed:
            return
        delay = self._retry_at - self.reactor.seconds()
        if delay > 0:
            attempt: defer.Deferred = defer.Deferred()
            call = self.reactor.callLater(delay, attempt.callback, None)
            attempt.addCallback(lambda _: self._open())
            self._connecting = defer.Deferred(canceller=lambda _: call.cancel())
            attempt.chainDeferred(self._connecting)
        else:
            self._connecting = self._open()
        self._connecting.addCallbacks(self._connected, self._connect_failed)

    def _open(self) -> defer.Deferred:
        timeout = max(1, self.request_timeout_ms // 1000)
        if self.security is None:
            endpoint = TCP4ClientEndpoint(self.reactor, self.host, self.port, timeout=timeout)
        else:
            endpoint = self.security.endpoint(self.reactor, self.host, self.port, timeout)
        d = connectProtocol(endpoint, _Connection(self, self.max_response_bytes))
        if self.security is not None:
            d.addCallback(self._secure)
        return d

    def _secure(self, connection: _Connection) -> defer.Deferred:
        """The security's step after connecting, before any request (the SASL login is
        ``login``'s, run once the connection is the client's); the connection is dropped if
        it fails."""

        def failed(reason: Failure) -> Failure:
            if connection.transport is not None:
                _transport(connection).abortConnection()
            return reason

        d = defer.maybeDeferred(self.security.secure, connection)
        return d.addCallbacks(lambda _: connection, failed)

    def _connected(self, connection: _Connection) -> None:
        self._connecting = None
        if self._closed:
            _transport(connection).loseConnection()
            return
        self._connection = connection
        if self.login is not None:
            self._logging_in = True
            d = self._log_in(connection)
            d.addCallbacks(
                self._logged_in,
                self._login_failed,
                callbackArgs=(connection,),
                errbackArgs=(connection,),
            )
            return
        while self._unsent:
            self._send(connection, self._unsent.popleft())

    @defer.inlineCallbacks
    def _log_in(self, connection: _Connection):
        """SaslHandshake v1, then SaslAuthenticate v2 until the mechanism is done."""
        assert self.login is not None
        mechanism, user, password = self.login
        login = client_login(mechanism, user, password)

        def exchange(api_key: ApiKey, body: dict, version: int) -> defer.Deferred:
            pending = self._pending(api_key, body, version)
            self._send(connection, pending)
            return pending.deferred

        answer = yield exchange(ApiKey.SASL_HANDSHAKE, {"mechanism": mechanism}, 1)
        if answer["error_code"]:
            raise error_for_code(answer["error_code"])(
                f"{mechanism} not enabled at {self.host}:{self.port}: {answer['mechanisms']}"
            )
        token = login.first()
        while token is not None:
            answer = yield exchange(ApiKey.SASL_AUTHENTICATE, {"auth_bytes": token}, 2)
            if answer["error_code"]:
                raise error_for_code(answer["error_code"])(
                    f"login as {user} at {self.host}:{self.port}: {answer['error_message']}"
                )
            token = login.step(answer["auth_bytes"])

    def _logged_in(self, _, connection: _Connection) -> None:
        self._logging_in = False
        if connection is not self._connection:
            return
        while self._unsent:
            self._send(connection, self._unsent.popleft())

    def _login_failed(self, reason: Failure, connection: _Connection) -> None:
        """A refused login fails the requests waiting for it and drops the connection."""
        self._logging_in = False
        error = reason.value
        if not isinstance(error, KafkaError | SaslLoginError):
            error = NetworkExceptionError(f"login at {self.host}:{self.port}: {error}")
        unsent, self._unsent = self._unsent, deque()
        for pending in unsent:
            self._finish(pending, error)
        if connection is self._connection:
            self.disconnect()

    def _connect_failed(self, reason: Failure) -> None:
        self._connecting = None
        self._retry_at = self.reactor.seconds() + self.backoff_ms / 1000.0
        if self._closed:
            return
        error = NetworkExceptionError(
            f"cannot connect to {self.host}:{self.port}: {reason.getErrorMessage()}"
        )
        unsent, self._unsent = self._unsent, deque()
        for pending in unsent:
            self._finish(pending, error)

    def _send(self, connection: _Connection, pending: _Pending) -> None:
        self._in_flight.append(pending)
        _transport(connection).write(pending.frame)
        pending.frame = b""

    # --- responses ----------------------------------------------------------------------------

    def _response(self, connection: _Connection, frame: memoryview) -> None:
        if connection is not self._connection:
            return
        if len(frame) < 4:
            raise ProtocolError("response shorter than its header")
        correlation_id = _SIZE.unpack_from(frame, 0)[0]  # where both header versions have it
        if not self._in_flight or self._in_flight[0].correlation_id != correlation_id:
            expected = self._in_flight[0].correlation_id if self._in_flight else None
            raise ProtocolError(
                f"response with correlation id {correlation_id}, expected {expected}"
            )
        pending = self._in_flight.popleft()
        try:
            _, start = decode_response_header(API_BY_KEY[pending.api_key], pending.version, frame)
            body = pending.response.decode(frame, pending.version, start)
        except DECODE_ERRORS as exc:
            raise ProtocolError(
                f"malformed response to api {pending.api_key} v{pending.version}: {exc}"
            ) from None
        self._finish(pending, body)

    def _broken(self, connection: _Connection, exc: Exception) -> None:
        """A response that cannot be read: fail the oldest request with it, drop the rest."""
        if connection is not self._connection:
            return
        if self._in_flight:
            self._finish(self._in_flight.popleft(), exc)
        self.disconnect()

    def _lost(self, connection: _Connection, reason: Failure) -> None:
        if connection is self._connection:
            self._drop(connection, f"lost: {reason.getErrorMessage()}")
        waiters, self._lost_waiters = self._lost_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _drop(self, connection: _Connection, why: str) -> None:
        """Forget the connection: what is in flight on it fails, the next one waits out the
        backoff."""
        self._connection = None
        self._retry_at = self.reactor.seconds() + self.backoff_ms / 1000.0
        in_flight, self._in_flight = self._in_flight, deque()
        error = NetworkExceptionError(f"connection to {self.host}:{self.port} {why}")
        for pending in in_flight:
            self._finish(pending, error)
        if self._unsent and not self._closed:  # asked for while the old one was dying
            self._connect()

    # --- completion ---------------------------------------------------------------------------

    def _timed_out(self, pending: _Pending) -> None:
        pending.timer = None
        error = RequestTimedOutError(
            f"no response from {self.host}:{self.port} within {self.request_timeout_ms} ms"
        )
        if pending in self._unsent:
            self._unsent.remove(pending)
            self._finish(pending, error)
            return
        self._finish(pending, error)
        self.disconnect()  # the stream is out of step with our requests now

    def _cancel(self, pending: _Pending) -> None:
        """A caller gave up on a request: unsent, it is dropped; in flight, the connection
        goes (its response would arrive out of step)."""
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        if pending in self._unsent:
            self._unsent.remove(pending)
        elif pending in self._in_flight:
            self._in_flight.remove(pending)
            self.disconnect()

    def _fail_all(self, error: KafkaError) -> None:
        pending_all = list(self._unsent) + list(self._in_flight)
        self._unsent.clear()
        self._in_flight.clear()
        for pending in pending_all:
            self._finish(pending, error)

    def _finish(self, pending: _Pending, result: dict | Exception) -> None:
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        if pending.deferred.called:
            return
        if isinstance(result, Exception):
            pending.deferred.errback(Failure(result))
        else:
            pending.deferred.callback(result)
