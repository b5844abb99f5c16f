"""A declarative description of Kafka messages and the one generic codec that reads it.

Each request and response is a list of fields; a field has a name, a type and the versions
that carry it ("3+", "0-4").  ``Struct.decode(buf, version)`` turns bytes into nested dicts and
``Struct.encode(obj, version)`` turns dicts back into bytes, for any version in the table.
Only non-flexible (pre-KIP-482) encodings are described: int16-length strings, int32-count
arrays.  ``struct_array`` and ``topic_partitions`` build the commonest composite fields (an
array of structs; topics each with an array of partitions), so tables write them once.

    >>> s = Struct(Field("name", STRING), Field("rack", NULLABLE_STRING, "1+"))
    >>> s.decode(s.encode({"name": "a", "rack": None}, 1), 1)
    {'name': 'a', 'rack': None}
"""

from __future__ import annotations

import struct
from typing import Any

from . import codegen
from .errors import CorruptMessageError

__all__ = [
    "BOOL",
    "BYTES",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "NULLABLE_BYTES",
    "NULLABLE_STRING",
    "RECORDS",
    "STRING",
    "Array",
    "Field",
    "ProtocolError",
    "Reader",
    "Struct",
    "struct_array",
    "topic_partitions",
]


class ProtocolError(ValueError):
    """Bytes that do not decode as the message they claim to be."""


class Reader:
    """A cursor over a bytes-like buffer; every read checks that the bytes are there."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf, pos: int = 0):
        self.buf = memoryview(buf)
        self.pos = pos

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise ProtocolError(f"need {n} bytes at {self.pos}, have {len(self.buf) - self.pos}")
        view = self.buf[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: struct.Struct):
        if self.pos + fmt.size > len(self.buf):
            raise ProtocolError(f"message ends at byte {len(self.buf)} inside a field")
        value = fmt.unpack_from(self.buf, self.pos)[0]
        self.pos += fmt.size
        return value

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos


class _Fixed:
    def __init__(self, name: str, fmt: str, default):
        self.name = name
        self.fmt = struct.Struct(fmt)
        self.default = default

    def read(self, r: Reader):
        return r.unpack(self.fmt)

    def write(self, out: list, value) -> None:
        try:
            out.append(self.fmt.pack(value))
        except struct.error as exc:
            raise ProtocolError(f"{self.name} value {value!r}: {exc}") from None


class _Bool(_Fixed):
    def read(self, r: Reader):
        return r.unpack(self.fmt) != 0

    def write(self, out: list, value) -> None:
        out.append(b"\x01" if value else b"\x00")


_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


class _LengthPrefixed:
    """A value behind a length (or count) prefix: -1 is None where ``nullable``, other
    negative lengths are refused.  ``what`` names the kind in error messages."""

    length: struct.Struct  # the prefix
    what: str  # the kind, in "<what> length -2"
    null: bytes  # how None is written
    refused_null: str  # the message when None is written and not allowed

    def __init__(self, nullable: bool):
        self.nullable = nullable

    def read_length(self, r: Reader) -> int | None:
        n = r.unpack(self.length)
        if n < 0:
            if n == -1 and self.nullable:
                return None
            raise ProtocolError(f"{self.what} length {n}")
        return n

    def write_null(self, out: list) -> None:
        if not self.nullable:
            raise ProtocolError(self.refused_null)
        out.append(self.null)


class _String(_LengthPrefixed):
    length, what, null = _I16, "string", b"\xff\xff"
    refused_null = "a non-nullable string is None"

    def __init__(self, nullable: bool):
        super().__init__(nullable)
        self.default = None if nullable else ""

    def read(self, r: Reader):
        n = self.read_length(r)
        if n is None:
            return None
        try:
            return str(r.take(n), "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"string is not UTF-8: {exc}") from None

    def write(self, out: list, value) -> None:
        if value is None:
            return self.write_null(out)
        data = value.encode("utf-8")
        out.append(_I16.pack(len(data)))
        out.append(data)


class _Bytes(_LengthPrefixed):
    """int32-length bytes; ``records`` decode to a zero-copy memoryview."""

    length, what, null = _I32, "bytes", b"\xff\xff\xff\xff"
    refused_null = "non-nullable bytes are None"

    def __init__(self, nullable: bool, view: bool = False):
        super().__init__(nullable)
        self.view = view
        self.default = None if nullable else b""

    def read(self, r: Reader):
        n = self.read_length(r)
        if n is None:
            return None
        data = r.take(n)
        return data if self.view else bytes(data)

    def write(self, out: list, value) -> None:
        if value is None:
            return self.write_null(out)
        out.append(_I32.pack(len(value)))
        out.append(value)


INT8 = _Fixed("int8", ">b", 0)
INT16 = _Fixed("int16", ">h", 0)
INT32 = _Fixed("int32", ">i", 0)
INT64 = _Fixed("int64", ">q", 0)
BOOL = _Bool("bool", ">b", False)
STRING = _String(nullable=False)
NULLABLE_STRING = _String(nullable=True)
BYTES = _Bytes(nullable=False)
NULLABLE_BYTES = _Bytes(nullable=True)
RECORDS = _Bytes(nullable=True, view=True)


def _parse_versions(spec: str) -> tuple[int, int]:
    if spec.endswith("+"):
        return int(spec[:-1]), 1 << 15
    if "-" in spec:
        low, high = spec.split("-")
        return int(low), int(high)
    return int(spec), int(spec)


class Field:
    """One field: name, type (a primitive, an Array or a Struct), and the versions having it."""

    def __init__(self, name: str, type_, versions: str = "0+", default: Any = None):
        self.name = name
        self.type = type_
        self.low, self.high = _parse_versions(versions)
        self.default = default

    def present(self, version: int) -> bool:
        return self.low <= version <= self.high


class Array(_LengthPrefixed):
    """An int32-count array of a type; ``nullable`` allows count -1 (None)."""

    length, what, null = _I32, "array", b"\xff\xff\xff\xff"
    refused_null = "a non-nullable array is None"

    def __init__(self, item, nullable: bool = False):
        super().__init__(nullable)
        self.item = item
        self.default: list | None = None if nullable else []

    def read(self, r: Reader, version: int = 0):
        n = self.read_length(r)
        if n is None:
            return None
        if n > r.remaining:  # every element takes at least one byte
            raise ProtocolError(f"array of {n} elements in {r.remaining} bytes")
        item = self.item
        if isinstance(item, Struct):
            return [item.read(r, version) for _ in range(n)]
        return [item.read(r) for _ in range(n)]

    def write(self, out: list, value, version: int = 0) -> None:
        if value is None:
            return self.write_null(out)
        out.append(_I32.pack(len(value)))
        item = self.item
        if isinstance(item, Struct):
            for element in value:
                item.write(out, element, version)
        else:
            for element in value:
                item.write(out, element)


class Struct:
    """An ordered list of fields, encoded one after another."""

    def __init__(self, *fields: Field):
        self.fields = fields
        self._plans: dict[int, tuple] = {}
        self._decoders: dict = {}  # version -> generated decoder (codegen.py)
        self._encoders: dict = {}  # version -> generated encoder

    def holds(self, type_) -> bool:
        """Whether any field, however deeply nested, is of ``type_``."""
        for f in self.fields:
            t = f.type.item if isinstance(f.type, Array) else f.type
            if t is type_ or (isinstance(t, Struct) and t.holds(type_)):
                return True
        return False

    def _plan(self, version: int) -> tuple:
        """Per version: (name, present, type, composite, field) for each field, computed once."""
        plan = self._plans.get(version)
        if plan is None:
            plan = tuple(
                (f.name, f.present(version), f.type, isinstance(f.type, (Struct, Array)), f)
                for f in self.fields
            )
            self._plans[version] = plan
        return plan

    def read(self, r: Reader, version: int) -> dict:
        result = {}
        for name, present, t, composite, f in self._plan(version):
            if not present:
                result[name] = f.default if f.default is not None else _default(t)
            elif composite:
                result[name] = t.read(r, version)
            else:
                result[name] = t.read(r)
        return result

    def write(self, out: list, obj: dict, version: int) -> None:
        for name, present, t, composite, f in self._plan(version):
            if not present:
                continue
            if name in obj:
                value = obj[name]
            else:
                value = f.default if f.default is not None else _default(t)
            if composite:
                t.write(out, value, version)
            else:
                t.write(out, value)

    def decode(self, buf, version: int, pos: int = 0) -> dict:
        """Decode a whole message; trailing bytes are an error.  Runs the decoder generated
        for this version (``codegen``), which agrees with ``read``."""
        read = self._decoders.get(version) or codegen.compile_decoder(self, version)
        return run_decoder(read, buf, pos)

    def encode(self, obj: dict, version: int) -> bytes:
        return b"".join(self.encode_parts(obj, version))

    def encode_parts(self, obj: dict, version: int) -> list:
        """The encoding as a list of bytes-like parts (records stay un-copied), by the encoder
        generated for this version, which agrees with ``write``."""
        write = self._encoders.get(version) or codegen.compile_encoder(self, version)
        try:
            return write([], obj)
        except struct.error as exc:
            raise ProtocolError(f"cannot encode a value: {exc}") from None

    def decode_generic(self, buf, version: int, pos: int = 0) -> dict:
        """``decode`` by walking the field table (the reference the generated code follows)."""
        r = Reader(buf, pos)
        result = self.read(r, version)
        if r.remaining:
            raise ProtocolError(f"{r.remaining} bytes left over after the message")
        return result

    def encode_generic(self, obj: dict, version: int) -> bytes:
        out: list = []
        self.write(out, obj, version)
        return b"".join(out)


def struct_array(name: str, *fields: Field, versions: str = "0+", nullable: bool = False) -> Field:
    """A field ``name`` holding an array of structs of ``fields`` (Kafka's ``"[]Name"`` type),
    in the ``versions`` given; ``nullable`` as for ``Array``."""
    return Field(name, Array(Struct(*fields), nullable=nullable), versions)


def topic_partitions(
    name: str, *partition_fields: Field, topic: str = "name", partitions: str = "partitions"
) -> Field:
    """Kafka's commonest shape: a field ``name`` holding an array of topics, each a ``topic``
    name and a ``partitions`` array of structs of ``partition_fields``.

    >>> f = topic_partitions("topics", Field("partition_index", INT32))
    >>> one_topic = "00000001" "0001" "74" "00000001" "00000007"  # [{"t", [{7}]}]
    >>> Struct(f).decode(bytes.fromhex(one_topic), 0)
    {'topics': [{'name': 't', 'partitions': [{'partition_index': 7}]}]}
    """
    return struct_array(name, Field(topic, STRING), struct_array(partitions, *partition_fields))


def run_decoder(read, buf, pos: int = 0, *args):
    """Run ``read(view, pos, size, *args) -> (value, end)`` over a whole message from ``pos``:
    a field cut short, text that is not UTF-8 and trailing bytes become ProtocolError."""
    view = memoryview(buf)
    size = len(view)
    try:
        result, end = read(view, pos, size, *args)
    except struct.error as exc:
        raise ProtocolError(f"message ends inside a field: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"string is not UTF-8: {exc}") from None
    if end != size:
        raise ProtocolError(f"{size - end} bytes left over after the message")
    return result


def _default(type_):
    if isinstance(type_, Struct):
        return {f.name: _default(f.type) for f in type_.fields}
    default = type_.default
    return list(default) if isinstance(default, list) else default


# Decoding errors surface as one type for the server to handle.
DECODE_ERRORS = (ProtocolError, CorruptMessageError, UnicodeDecodeError, struct.error)
