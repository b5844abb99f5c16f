"""A declarative description of Kafka messages and the one generic codec that reads it.

Each request and response is a list of fields; a field has a name, a type and the versions
that carry it ("3+", "0-4").  ``Struct.decode(buf, version)`` turns bytes into nested dicts and
``Struct.encode(obj, version)`` turns dicts back into bytes, for any version in the table.
Tables use the ordinary types (STRING, BYTES, Array ...); at a flexible version (KIP-482: the
message's ``flexible_from`` and later, set from its registry row) the same types are written in
compact form (unsigned-varint length + 1, 0 for null) and every struct ends with a tagged-field
section: a count, then tag, size and value of each field declared ``Field(..., tag=N)`` that is
not at its default, in tag order; tags a table does not know are skipped.  ``struct_array`` and
``topic_partitions`` build the commonest composite fields (an array of structs; topics each
with an array of partitions), so tables write them once.

    >>> s = Struct(Field("name", STRING), Field("rack", NULLABLE_STRING, "1+"), flexible_from=2)
    >>> s.decode(s.encode({"name": "a", "rack": None}, 1), 1)
    {'name': 'a', 'rack': None}
    >>> s.encode({"name": "a", "rack": None}, 2)  # compact "a", compact null, no tagged fields
    b'\x02a\x00\x00'
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

from . import codegen
from .errors import CorruptMessageError
from .varint import encode_uvarint

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
    "UUID",
    "Array",
    "Field",
    "ProtocolError",
    "Reader",
    "Struct",
    "decode_uvarint",
    "skip_tagged_fields",
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

    def uvarint(self) -> int:
        value, self.pos = decode_uvarint(self.buf, self.pos)
        return value


def decode_uvarint(buf, pos: int) -> tuple[int, int]:
    """The unsigned varint (at most 5 bytes, as Kafka reads them) at ``pos`` of ``buf``, and
    the position after it."""
    value = shift = 0
    size = len(buf)
    while True:
        if pos >= size:
            raise ProtocolError(f"message ends inside an unsigned varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise ProtocolError(f"unsigned varint longer than 5 bytes before byte {pos}")


def skip_tagged_fields(buf, pos: int) -> int:
    """The position after the tagged-field section at ``pos``, every field skipped (a
    header's, or a struct whose table declares no tags)."""
    if pos < len(buf) and buf[pos] == 0:  # the usual case: no tagged fields
        return pos + 1
    count, pos = decode_uvarint(buf, pos)
    for _ in range(count):
        _, pos = decode_uvarint(buf, pos)
        size, pos = decode_uvarint(buf, pos)
        pos += size
        if pos > len(buf):
            raise ProtocolError(f"a tagged field of {size} bytes runs past the message")
    return pos


class _Fixed:
    def __init__(self, name: str, fmt: str, default):
        self.name = name
        self.fmt = struct.Struct(fmt)
        self.default = default

    def read(self, r: Reader, compact: bool = False):
        return r.unpack(self.fmt)

    def write(self, out: list, value, compact: bool = False) -> None:
        try:
            out.append(self.fmt.pack(value))
        except struct.error as exc:
            raise ProtocolError(f"{self.name} value {value!r}: {exc}") from None


class _Bool(_Fixed):
    def read(self, r: Reader, compact: bool = False):
        return r.unpack(self.fmt) != 0

    def write(self, out: list, value, compact: bool = False) -> None:
        out.append(b"\x01" if value else b"\x00")


class _Uuid:
    """16 bytes (KIP-516's topic ids), as a ``uuid.UUID``; the zero UUID is Kafka's "none"."""

    default = uuid.UUID(int=0)

    def read(self, r: Reader, compact: bool = False) -> uuid.UUID:
        return uuid.UUID(bytes=bytes(r.take(16)))

    def write(self, out: list, value, compact: bool = False) -> None:
        out.append(value.bytes)


_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


class _LengthPrefixed:
    """A value behind a length (or count) prefix: -1 is None where ``nullable``, other
    negative lengths are refused.  ``what`` names the kind in error messages.  Compact (at
    flexible versions): an unsigned varint holding length + 1, so 0 is None."""

    length: struct.Struct  # the prefix
    what: str  # the kind, in "<what> length -2"
    null: bytes  # how None is written
    refused_null: str  # the message when None is written and not allowed

    def __init__(self, nullable: bool):
        self.nullable = nullable

    def read_length(self, r: Reader, compact: bool = False) -> int | None:
        n = r.uvarint() - 1 if compact else r.unpack(self.length)
        if n < 0:
            if n == -1 and self.nullable:
                return None
            raise ProtocolError(f"{self.what} length {n}")
        return n

    def write_null(self, out: list, compact: bool = False) -> None:
        if not self.nullable:
            raise ProtocolError(self.refused_null)
        out.append(b"\x00" if compact else self.null)

    def write_length(self, out: list, n: int, compact: bool) -> None:
        out.append(encode_uvarint(n + 1) if compact else self.length.pack(n))


class _String(_LengthPrefixed):
    length, what, null = _I16, "string", b"\xff\xff"
    refused_null = "a non-nullable string is None"

    def __init__(self, nullable: bool):
        super().__init__(nullable)
        self.default = None if nullable else ""

    def read(self, r: Reader, compact: bool = False):
        n = self.read_length(r, compact)
        if n is None:
            return None
        try:
            return str(r.take(n), "utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"string is not UTF-8: {exc}") from None

    def write(self, out: list, value, compact: bool = False) -> None:
        if value is None:
            return self.write_null(out, compact)
        data = value.encode("utf-8")
        self.write_length(out, len(data), compact)
        out.append(data)


class _Bytes(_LengthPrefixed):
    """int32-length bytes; ``records`` decode to a zero-copy memoryview."""

    length, what, null = _I32, "bytes", b"\xff\xff\xff\xff"
    refused_null = "non-nullable bytes are None"

    def __init__(self, nullable: bool, view: bool = False):
        super().__init__(nullable)
        self.view = view
        self.default = None if nullable else b""

    def read(self, r: Reader, compact: bool = False):
        n = self.read_length(r, compact)
        if n is None:
            return None
        data = r.take(n)
        return data if self.view else bytes(data)

    def write(self, out: list, value, compact: bool = False) -> None:
        if value is None:
            return self.write_null(out, compact)
        self.write_length(out, len(value), compact)
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
UUID = _Uuid()


def _parse_versions(spec: str) -> tuple[int, int]:
    if spec.endswith("+"):
        return int(spec[:-1]), 1 << 15
    if "-" in spec:
        low, high = spec.split("-")
        return int(low), int(high)
    return int(spec), int(spec)


class Field:
    """One field: name, type (a primitive, an Array or a Struct), and the versions having it.
    With ``tag`` it is a tagged field (Kafka's "tag" and "taggedVersions"): at flexible
    versions among ``versions`` it travels in its struct's tagged section, written only when
    not at its default; at other versions it is absent."""

    def __init__(
        self, name: str, type_, versions: str = "0+", default: Any = None, tag: int | None = None
    ):
        self.name = name
        self.type = type_
        self.low, self.high = _parse_versions(versions)
        self.default = default
        self.tag = tag

    def present(self, version: int) -> bool:
        return self.low <= version <= self.high

    def in_body(self, version: int) -> bool:
        """Whether the field is in the struct's ordinary sequence at this version."""
        return self.tag is None and self.low <= version <= self.high

    def tagged(self, version: int, flexible: bool) -> bool:
        """Whether the field may come in the struct's tagged section at this version."""
        return flexible and self.tag is not None and self.low <= version <= self.high


class Array(_LengthPrefixed):
    """An int32-count array of a type; ``nullable`` allows count -1 (None)."""

    length, what, null = _I32, "array", b"\xff\xff\xff\xff"
    refused_null = "a non-nullable array is None"

    def __init__(self, item, nullable: bool = False):
        super().__init__(nullable)
        self.item = item
        self.default: list | None = None if nullable else []

    def read(self, r: Reader, version: int = 0, flexible: bool = False):
        n = self.read_length(r, flexible)
        if n is None:
            return None
        if n > r.remaining:  # every element takes at least one byte
            raise ProtocolError(f"array of {n} elements in {r.remaining} bytes")
        item = self.item
        if isinstance(item, Struct):
            return [item.read(r, version, flexible) for _ in range(n)]
        return [item.read(r, flexible) for _ in range(n)]

    def write(self, out: list, value, version: int = 0, flexible: bool = False) -> None:
        if value is None:
            return self.write_null(out, flexible)
        self.write_length(out, len(value), flexible)
        item = self.item
        if isinstance(item, Struct):
            for element in value:
                item.write(out, element, version, flexible)
        else:
            for element in value:
                item.write(out, element, flexible)


class Struct:
    """An ordered list of fields, encoded one after another; ``flexible_from`` is the first
    flexible version of the message it describes (None: it has none).  Nested structs take
    their flexibility from the message they are in."""

    def __init__(self, *fields: Field, flexible_from: int | None = None):
        self.fields = fields
        self._plans: dict[tuple, tuple] = {}
        self._compiled: dict[tuple, Any] = {}  # (kind, version, flexible) -> codegen's code
        self._decoders: dict = {}  # version -> generated decoder of the whole message
        self._encoders: dict = {}  # version -> generated encoder
        self._flexible_from = flexible_from

    @property
    def flexible_from(self) -> int | None:
        return self._flexible_from

    @flexible_from.setter
    def flexible_from(self, version: int | None) -> None:
        self._flexible_from = version
        self._decoders.clear()
        self._encoders.clear()

    def is_flexible(self, version: int) -> bool:
        """Whether ``version`` of this message is flexible (KIP-482)."""
        return self._flexible_from is not None and version >= self._flexible_from

    def holds(self, type_) -> bool:
        """Whether any field, however deeply nested, is of ``type_``."""
        for f in self.fields:
            t = f.type.item if isinstance(f.type, Array) else f.type
            if t is type_ or (isinstance(t, Struct) and t.holds(type_)):
                return True
        return False

    def _plan(self, version: int, flexible: bool) -> tuple:
        """Per version: (name, in body, type, composite, field) for each field, and the
        tagged fields by tag, computed once."""
        plan = self._plans.get((version, flexible))
        if plan is None:
            plan = (
                tuple(
                    (f.name, f.in_body(version), f.type, isinstance(f.type, (Struct, Array)), f)
                    for f in self.fields
                ),
                {f.tag: f for f in self.fields if f.tagged(version, flexible)},
            )
            self._plans[(version, flexible)] = plan
        return plan

    def read(self, r: Reader, version: int, flexible: bool = False) -> dict:
        body, tagged = self._plan(version, flexible)
        result = {}
        for name, present, t, composite, f in body:
            if not present:
                result[name] = field_default(f)
            elif composite:
                result[name] = t.read(r, version, flexible)
            else:
                result[name] = t.read(r, flexible)
        if flexible:
            for _ in range(r.uvarint()):
                tag, size = r.uvarint(), r.uvarint()
                data = r.take(size)
                f = tagged.get(tag)
                if f is None:  # a tag this table does not know: skipped
                    continue
                sub = Reader(data)
                t = f.type
                is_composite = isinstance(t, (Struct, Array))
                result[f.name] = t.read(sub, version, True) if is_composite else t.read(sub, True)
                if sub.remaining:
                    raise ProtocolError(f"tagged field {f.name}: {sub.remaining} bytes left over")
        return result

    def write(self, out: list, obj: dict, version: int, flexible: bool = False) -> None:
        body, tagged = self._plan(version, flexible)
        for name, present, t, composite, f in body:
            if not present:
                continue
            value = obj[name] if name in obj else field_default(f)
            if composite:
                t.write(out, value, version, flexible)
            else:
                t.write(out, value, flexible)
        if flexible:
            fields: list = []
            for tag in sorted(tagged):
                f = tagged[tag]
                default = field_default(f)
                value = obj.get(f.name, default)
                if value == default:
                    continue
                sub: list = []
                if isinstance(f.type, (Struct, Array)):
                    f.type.write(sub, value, version, True)
                else:
                    f.type.write(sub, value, True)
                data = b"".join(sub)
                fields += (encode_uvarint(tag), encode_uvarint(len(data)), data)
            out.append(encode_uvarint(len(fields) // 3))
            out += fields

    def decode(self, buf, version: int, pos: int = 0, trailing_ok: bool = False) -> dict:
        """Decode a whole message; trailing bytes are an error unless ``trailing_ok`` (a
        request, which Kafka reads up to its last field and no further).  Runs the decoder
        generated for this version (``codegen``), which agrees with ``read``."""
        read = self._decoders.get(version)
        if read is None:
            read = codegen.compile_decoder(self, version, self.is_flexible(version))
            self._decoders[version] = read
        return run_decoder(read, buf, pos, trailing_ok=trailing_ok)

    def encode(self, obj: dict, version: int) -> bytes:
        return b"".join(self.encode_parts(obj, version))

    def encode_parts(self, obj: dict, version: int) -> list:
        """The encoding as a list of bytes-like parts (records stay un-copied), by the encoder
        generated for this version, which agrees with ``write``."""
        write = self._encoders.get(version)
        if write is None:
            write = codegen.compile_encoder(self, version, self.is_flexible(version))
            self._encoders[version] = write
        try:
            return write([], obj)
        except struct.error as exc:
            raise ProtocolError(f"cannot encode a value: {exc}") from None

    def decode_generic(self, buf, version: int, pos: int = 0) -> dict:
        """``decode`` by walking the field table (the reference the generated code follows)."""
        r = Reader(buf, pos)
        result = self.read(r, version, self.is_flexible(version))
        if r.remaining:
            raise ProtocolError(f"{r.remaining} bytes left over after the message")
        return result

    def encode_generic(self, obj: dict, version: int) -> bytes:
        out: list = []
        self.write(out, obj, version, self.is_flexible(version))
        return b"".join(out)


def struct_array(
    name: str,
    *fields: Field,
    versions: str = "0+",
    nullable: bool = False,
    tag: int | None = None,
) -> Field:
    """A field ``name`` holding an array of structs of ``fields`` (Kafka's ``"[]Name"`` type),
    in the ``versions`` given; ``nullable`` as for ``Array``; ``tag`` as for ``Field``."""
    return Field(name, Array(Struct(*fields), nullable=nullable), versions, tag=tag)


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


def run_decoder(read, buf, pos: int = 0, *args, trailing_ok: bool = False):
    """Run ``read(view, pos, size, *args) -> (value, end)`` over a whole message from ``pos``:
    a field cut short, text that is not UTF-8 and (unless ``trailing_ok``) trailing bytes
    become ProtocolError."""
    view = memoryview(buf)
    size = len(view)
    try:
        result, end = read(view, pos, size, *args)
    except struct.error as exc:
        raise ProtocolError(f"message ends inside a field: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"string is not UTF-8: {exc}") from None
    if end != size and not trailing_ok:
        raise ProtocolError(f"{size - end} bytes left over after the message")
    return result


def field_default(f: Field):
    """The value a field has when a message leaves it out (or a version lacks it)."""
    return f.default if f.default is not None else _default(f.type)


def _default(type_):
    if isinstance(type_, Struct):
        return {f.name: field_default(f) for f in type_.fields}
    default = type_.default
    return list(default) if isinstance(default, list) else default


# Decoding errors surface as one type for the server to handle.
DECODE_ERRORS = (ProtocolError, CorruptMessageError, UnicodeDecodeError, struct.error)
