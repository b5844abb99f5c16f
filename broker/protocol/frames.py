"""Request and response framing: int32 size, then a header and the body.

Request header v1 is api_key, api_version, correlation_id and client_id (an int16-length
string); v2, at an API's flexible versions (KIP-482), adds a tagged-field section after
client_id.  Response header v0 is the correlation id; v1, at flexible versions, adds an empty
tagged-field section - except ApiVersions, whose response header is always v0, so a client
can read the answer whatever version it asked for.

Pure functions over bytes, used by the broker (split the stream, decode requests, encode
responses) and by clients and tests (the reverse).  Every request frame starts with api_key,
api_version and correlation_id at fixed offsets, so even a request we cannot parse can be
answered.

    >>> splitter = FrameSplitter(max_length=1 << 20)
    >>> splitter.feed(encode_request(ApiKey.API_VERSIONS, 2, 7, "c", {})[:5])
    >>> splitter.next_frame() is None      # not whole yet
    True
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from . import produce
from .errors import UnsupportedVersionError
from .registry import API_BY_KEY, Api, ApiKey, api_versions_body
from .schema import DECODE_ERRORS, NULLABLE_STRING, ProtocolError, skip_tagged_fields

_SIZE = struct.Struct(">i")
_HEAD = struct.Struct(">hhi")  # api_key, api_version, correlation_id
_HEAD_CLIENT = struct.Struct(">hhih")  # ... and the length of client_id
_PRODUCE = API_BY_KEY[ApiKey.PRODUCE]


class FrameTooLargeError(ProtocolError):
    """A frame whose size prefix is over the limit (``socket.request.max.bytes``); a
    negative prefix reads as its unsigned value, over 2 GB."""

    def __init__(self, size: int, limit: int):
        super().__init__(
            f"request frame of {size} bytes is over socket.request.max.bytes ({limit})"
        )
        self.size = size
        self.limit = limit


class FrameSplitter:
    """Cuts a stream of int32-size-prefixed frames into whole frames, without I/O: ``feed``
    the bytes as they arrive, then take frames with ``next_frame`` until it returns None.

    Pieces of a large frame are joined once, when the frame is complete (not on every
    ``feed``); small frames are cut out of one buffer as memoryviews, not copied.  A size
    prefix over ``max_length`` raises FrameTooLargeError when reached, after the frames
    before it; the stream cannot go on past it.
    """

    __slots__ = ("_buf", "_buffered", "_more", "_needed", "_pos", "_view", "max_length")

    def __init__(self, max_length: int):
        self.max_length = max_length
        self._buf = b""  # joined bytes; frames are cut from _pos on
        self._view = memoryview(self._buf)
        self._pos = 0
        self._more: list = []  # bytes fed after _buf, not joined yet
        self._buffered = 0  # bytes fed and not yet cut into frames
        self._needed = 4  # bytes needed before the next frame (or size prefix) is whole

    def feed(self, data) -> None:
        """Add bytes received from the stream."""
        if data:
            self._more.append(data)
            self._buffered += len(data)

    def next_frame(self) -> memoryview | None:
        """The next whole frame's payload (without its size prefix), or None until more
        bytes are fed."""
        if self._buffered < self._needed:
            if not self._buffered and self._pos:  # all cut: let the buffer go
                self._buf, self._view, self._pos = b"", memoryview(b""), 0
            return None
        if self._more:
            more = self._more
            if self._pos < len(self._buf):
                more.insert(0, self._buf[self._pos :])
            self._buf = more[0] if len(more) == 1 else b"".join(more)
            self._view = memoryview(self._buf)
            self._pos = 0
            self._more = []
        pos = self._pos
        size = _SIZE.unpack_from(self._buf, pos)[0]
        if size < 0 or size > self.max_length:
            raise FrameTooLargeError(size if size >= 0 else size + 2**32, self.max_length)
        if self._buffered - 4 < size:
            self._needed = size + 4
            return None
        end = pos + 4 + size
        self._pos = end
        self._buffered -= 4 + size
        self._needed = 4
        return self._view[pos + 4 : end]


class RequestHeader(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


def response_header_v1(api: Api, version: int) -> bool:
    """Whether the response to ``api`` at ``version`` has header v1 (flexible versions,
    except ApiVersions', always v0)."""
    return api.is_flexible(version) and api.key != ApiKey.API_VERSIONS


class Request(NamedTuple):
    header: RequestHeader
    api: Api
    body: dict | produce.ProduceRequest  # a Produce request's body is a ProduceRequest


class UnsupportedApiError(ProtocolError):
    """A request for an API key or version this broker does not serve."""

    def __init__(self, header: RequestHeader, message: str):
        super().__init__(message)
        self.header = header


def decode_request(payload) -> Request:
    """Decode a request frame's payload (without the size prefix).

    Raises UnsupportedApiError for unknown keys or versions and ProtocolError for anything
    that does not decode.
    """
    size = len(payload)
    if size < _HEAD_CLIENT.size:
        raise ProtocolError(f"request of {size} bytes is shorter than a header")
    api_key, api_version, correlation_id, length = _HEAD_CLIENT.unpack_from(payload, 0)
    pos = _HEAD_CLIENT.size
    if length < 0:
        if length != -1:
            raise ProtocolError(f"client_id length {length}")
        client_id = None
    else:
        pos += length
        if pos > size:
            raise ProtocolError(f"client_id of {length} bytes in a request of {size}")
        try:
            client_id = str(payload[_HEAD_CLIENT.size : pos], "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"client_id is not UTF-8: {exc}") from None
    header = RequestHeader(api_key, api_version, correlation_id, client_id)
    api = API_BY_KEY.get(api_key)
    if api is None:
        raise UnsupportedApiError(header, f"api key {api_key} is not served")
    if not api.min_version <= api_version <= api.max_version:
        raise UnsupportedApiError(
            header,
            f"{api.name} v{api_version} is not served"
            f" (versions {api.min_version}-{api.max_version})",
        )
    body: object
    try:
        if api.is_flexible(api_version):  # request header v2
            pos = skip_tagged_fields(payload, pos)
        if api is _PRODUCE:  # the hot path: tuples, not dicts
            body = produce.decode_request(payload, pos, api_version)
        else:
            # bytes after the last field are ignored, as Kafka does: librdkafka 2.16 pads its
            # all-topics Metadata v10+ request with three
            body = api.request.decode(payload, api_version, pos, trailing_ok=True)
    except DECODE_ERRORS as exc:
        raise ProtocolError(f"malformed {api.name} v{api_version} request: {exc}") from None
    return Request(header, api, body)


_RESPONSE_HEAD = struct.Struct(">ii")
_NO_TAGGED_FIELDS = b"\x00"


def response_head(correlation_id: int, api: Api, version: int, body_size: int) -> bytes:
    """The size prefix and response header of a frame whose body is ``body_size`` bytes."""
    if response_header_v1(api, version):
        return _RESPONSE_HEAD.pack(body_size + 5, correlation_id) + _NO_TAGGED_FIELDS
    return _RESPONSE_HEAD.pack(body_size + 4, correlation_id)


def encode_response(correlation_id: int, api: Api, version: int, body: dict) -> bytes:
    """A whole response frame: size, header, body."""
    payload = b"".join(api.response.encode_parts(body, version))
    return response_head(correlation_id, api, version, len(payload)) + payload


def encode_response_parts(correlation_id: int, api: Api, version: int, body: dict) -> list:
    """A whole response frame as parts: bytes-like pieces, and, where a body holds a file
    range instead of bytes (a fetch's records), that object, to be streamed by the caller.
    Every part has a ``len``; the size prefix counts them all."""
    parts = api.response.encode_parts(body, version)
    size = sum(len(p) for p in parts)
    return [response_head(correlation_id, api, version, size), *parts]


def api_versions_fallback(correlation_id: int) -> bytes:
    """The reply to an ApiVersions request at a version we do not serve (KIP-511): a v0 body
    with UNSUPPORTED_VERSION and the full key list, so the client retries at one we do."""
    api = API_BY_KEY[ApiKey.API_VERSIONS]
    return encode_response(correlation_id, api, 0, api_versions_body(UnsupportedVersionError.code))


# --- the client side -------------------------------------------------------------------------


def encode_request(
    api_key: ApiKey, version: int, correlation_id: int, client_id: str | None, body: dict
) -> bytes:
    """A whole request frame, size prefix included."""
    api = API_BY_KEY[api_key]
    head = _HEAD.pack(api_key, version, correlation_id)
    out = [head]
    NULLABLE_STRING.write(out, client_id)  # int16-length even in header v2
    if api.is_flexible(version):
        out.append(_NO_TAGGED_FIELDS)
    out += api.request.encode_parts(body, version)
    payload = b"".join(bytes(p) if isinstance(p, memoryview) else p for p in out)
    return _SIZE.pack(len(payload)) + payload


def decode_response_header(api: Api, version: int, payload) -> tuple[int, int]:
    """(correlation_id, where the body starts) of a response frame's payload (without the
    size prefix) to ``api`` at ``version``."""
    if len(payload) < 4:
        raise ProtocolError("response shorter than its header")
    correlation_id = _SIZE.unpack_from(payload, 0)[0]
    if response_header_v1(api, version):
        return correlation_id, skip_tagged_fields(payload, 4)
    return correlation_id, 4


def decode_response(api_key: ApiKey, version: int, payload) -> tuple[int, dict]:
    """(correlation_id, body) of a response frame's payload (without the size prefix)."""
    api = API_BY_KEY[api_key]
    correlation_id, pos = decode_response_header(api, version, payload)
    return correlation_id, api.response.decode(payload, version, pos)
