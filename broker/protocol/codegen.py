"""Per-version codecs generated from the schema tables, for the request hot path.

``schema.Struct`` describes a message once; walking that description field by field on every
request costs a Python call per field.  ``compile_decoder`` and ``compile_encoder`` turn one
(struct, version) into straight-line Python source, compiled once: runs of fixed-size fields
become one ``struct`` call, absent fields become constants, nested structs and arrays become
calls to their own generated functions.  The output is the generic codec's, byte for byte and
dict for dict (``tests/test_codegen.py`` checks every API and version with hypothesis), and
malformed input raises the same ``ProtocolError``.

    >>> from .schema import Field, INT32, STRING, Struct
    >>> s = Struct(Field("name", STRING), Field("port", INT32))
    >>> read = compile_decoder(s, 0)
    >>> read(memoryview(b"\\x00\\x01a\\x00\\x00\\x00\\x07"), 0, 7)
    ({'name': 'a', 'port': 7}, 7)
"""

from __future__ import annotations

import struct

from . import schema
from .varint import encode_uvarint


class _Source:
    """Lines of generated code and the names they refer to."""

    def __init__(self):
        self.lines: list[str] = []
        self.names: dict = {
            "ProtocolError": schema.ProtocolError,
            "_default": schema._default,
            "_I16": schema._I16,
            "_I32": schema._I32,
            "_uvarint": schema.decode_uvarint,
            "_uv": encode_uvarint,
            "_UUID": schema.uuid.UUID,
        }
        self._count = 0

    def name(self, value, prefix: str = "c") -> str:
        self._count += 1
        name = f"{prefix}{self._count}"
        self.names[name] = value
        return name

    def fresh(self, prefix: str = "v") -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def build(self, function: str):
        exec(compile("\n".join(self.lines), f"<codegen {function}>", "exec"), self.names)
        return self.names[function]


_NULL_STRING = b"\xff\xff"
_NULL_BYTES = b"\xff\xff\xff\xff"
_NULL_COMPACT = b"\x00"  # length + 1 = 0


def _is_fixed(t) -> bool:
    return isinstance(t, schema._Fixed)


def _fixed_run(fields: list, i: int, version: int) -> list:
    """The fields from ``fields[i]`` on that are in the body at ``version`` and of fixed
    size."""
    run: list = []
    while i + len(run) < len(fields):
        f = fields[i + len(run)]
        if not (f.in_body(version) and _is_fixed(f.type)):
            break
        run.append(f)
    return run


def _run_format(run: list) -> struct.Struct:
    """One big-endian struct format for a run of fixed-size fields."""
    return struct.Struct(">" + "".join(f.type.fmt.format[1:] for f in run))


def _default_expression(src: _Source, f) -> str:
    """An expression for a field's default: a fresh copy where it is a list or dict."""
    default = schema.field_default(f)
    if isinstance(default, (list, dict)):
        if f.default is None:
            return f"_default({src.name(f.type, 'T')})"
        return f"{src.name(f.default, 'D')}.copy()"
    return src.name(default, "D")


# --- decoders --------------------------------------------------------------------------------


def _read_uvarint(src: _Source, indent: int, target: str) -> None:
    """Code that reads an unsigned varint into ``target``: one byte inline, longer ones (and
    the end of the buffer) by ``schema.decode_uvarint``."""
    emit = src.emit
    emit(indent, f"{target} = buf[pos] if pos < size else 128")
    emit(indent, f"if {target} < 128:")
    emit(indent + 1, "pos += 1")
    emit(indent, "else:")
    emit(indent + 1, f"{target}, pos = _uvarint(buf, pos)")


def _read_length(
    src: _Source, indent: int, target: str, nullable: bool, width: int, what: str, compact: bool
) -> str:
    """Code that reads a length (or count) prefix of ``width`` bytes, or compact (an unsigned
    varint of length + 1): -1 is None where ``nullable``, other negatives are refused.  The
    code after it goes in the ``else:`` branch this opens, at ``indent + 1``; returns the
    length's variable."""
    emit = src.emit
    length = src.fresh("n")
    if compact:
        _read_uvarint(src, indent, length)
        emit(indent, f"{length} -= 1")
    else:
        emit(indent, f"{length}, = {'_I16' if width == 2 else '_I32'}.unpack_from(buf, pos)")
        emit(indent, f"pos += {width}")
    emit(indent, f"if {length} < 0:")
    if nullable:
        emit(indent + 1, f"if {length} != -1:")
        emit(indent + 2, f"raise ProtocolError(f'{what} length {{{length}}}')")
        emit(indent + 1, f"{target} = None")
    else:
        emit(indent + 1, f"raise ProtocolError(f'{what} length {{{length}}}')")
    emit(indent, "else:")
    return length


def _need(src: _Source, indent: int, n: str) -> None:
    src.emit(indent, f"if pos + {n} > size:")
    message = f"need {{{n}}} bytes at {{pos}}, have {{size - pos}}"
    src.emit(indent + 1, f"raise ProtocolError(f'{message}')")


def _read_value(src: _Source, t, version: int, flexible: bool, indent: int, target: str) -> None:
    """Code that reads one value of type ``t`` at ``pos`` into ``target``."""
    emit = src.emit
    if _is_fixed(t):
        fmt = src.name(t.fmt, "S")
        emit(indent, f"{target}, = {fmt}.unpack_from(buf, pos)")
        emit(indent, f"pos += {t.fmt.size}")
        if isinstance(t, schema._Bool):
            emit(indent, f"{target} = {target} != 0")
        return
    if isinstance(t, schema._Uuid):
        _need(src, indent, "16")
        emit(indent, f"{target} = _UUID(bytes=bytes(buf[pos:pos + 16]))")
        emit(indent, "pos += 16")
        return
    if isinstance(t, (schema._String, schema._Bytes)):
        string = isinstance(t, schema._String)
        width, what = (2, "string") if string else (4, "bytes")
        length = _read_length(src, indent, target, t.nullable, width, what, flexible)
        _need(src, indent + 1, length)
        value = f"buf[pos:pos + {length}]"
        if string:
            value = f"str({value}, 'utf-8')"
        elif not t.view:  # type: ignore[union-attr]  # a _Bytes when not string
            value = f"bytes({value})"
        emit(indent + 1, f"{target} = {value}")
        emit(indent + 1, f"pos += {length}")
        return
    if isinstance(t, schema.Struct):
        reader = src.name(compile_decoder(t, version, flexible), "read")
        emit(indent, f"{target}, pos = {reader}(buf, pos, size)")
        return
    if isinstance(t, schema.Array):
        count = _read_length(src, indent, target, t.nullable, 4, "array", flexible)
        emit(indent + 1, f"if {count} > size - pos:")
        emit(
            indent + 2,
            f"raise ProtocolError(f'array of {{{count}}} elements in {{size - pos}} bytes')",
        )
        emit(indent + 1, f"{target} = []")
        item = src.fresh("e")
        emit(indent + 1, f"for _ in range({count}):")
        _read_value(src, t.item, version, flexible, indent + 2, item)
        emit(indent + 2, f"{target}.append({item})")
        return
    raise TypeError(f"no decoder for {t!r}")


def _read_tagged(src: _Source, tagged: list, version: int) -> dict:
    """Code that reads a tagged-field section: the known tags' values into variables (their
    defaults when absent), unknown tags skipped.  Returns {field name: variable}."""
    emit = src.emit
    values = {}
    for f in tagged:
        values[f.name] = src.fresh("t")
        emit(1, f"{values[f.name]} = {_default_expression(src, f)}")
    count, tag, length, end = src.fresh("n"), src.fresh("g"), src.fresh("n"), src.fresh("p")
    _read_uvarint(src, 1, count)
    emit(1, f"for _ in range({count}):")
    _read_uvarint(src, 2, tag)
    _read_uvarint(src, 2, length)
    emit(2, f"{end} = pos + {length}")
    emit(2, f"if {end} > size:")
    emit(3, f"raise ProtocolError(f'tagged field of {{{length}}} bytes in {{size - pos}}')")
    for i, f in enumerate(tagged):
        emit(2, f"{'if' if i == 0 else 'elif'} {tag} == {f.tag}:")
        _read_value(src, f.type, version, True, 3, values[f.name])
        emit(3, f"if pos != {end}:")
        emit(4, f"raise ProtocolError('tagged field {f.name} does not fill its size')")
    emit(2, f"pos = {end}")
    return values


def compile_decoder(struct_: schema.Struct, version: int, flexible: bool = False):
    """``read(buf, pos, size) -> (dict, pos)`` for ``struct_`` at ``version`` (``flexible``:
    compact encodings and a tagged-field section); ``buf`` is a memoryview and ``size`` its
    length."""
    key = ("read", version, flexible)
    cached = struct_._compiled.get(key)
    if cached is not None:
        return cached
    src = _Source()
    src.emit(0, "def read(buf, pos, size):")
    fields = list(struct_.fields)
    values: dict = {}
    i = 0
    while i < len(fields):
        f = fields[i]
        if not f.in_body(version):
            values[f.name] = _default_expression(src, f)
            i += 1
            continue
        run = _fixed_run(fields, i, version)
        if len(run) > 1:  # a run of fixed-size fields: one struct call
            fmt = _run_format(run)
            names = [src.fresh() for _ in run]
            src.emit(1, f"{', '.join(names)} = {src.name(fmt, 'S')}.unpack_from(buf, pos)")
            src.emit(1, f"pos += {fmt.size}")
            for g, name in zip(run, names):
                values[g.name] = f"{name} != 0" if isinstance(g.type, schema._Bool) else name
            i += len(run)
            continue
        target = src.fresh()
        _read_value(src, f.type, version, flexible, 1, target)
        values[f.name] = target
        i += 1
    if flexible:
        values.update(_read_tagged(src, [f for f in fields if f.tagged(version, True)], version))
    pairs = ", ".join(f"{f.name!r}: {values[f.name]}" for f in fields)
    src.emit(1, f"return {{{pairs}}}, pos")
    read = src.build("read")
    struct_._compiled[key] = read
    return read


# --- encoders --------------------------------------------------------------------------------


def _write_value(src: _Source, t, version: int, flexible: bool, indent: int, value: str) -> None:
    """Code that appends the encoding of ``value`` (an expression) to ``out``."""
    emit = src.emit
    if _is_fixed(t):
        if isinstance(t, schema._Bool):
            emit(indent, f"out.append(b'\\x01' if {value} else b'\\x00')")
        else:
            emit(indent, f"out.append({src.name(t.fmt, 'S')}.pack({value}))")
        return
    if isinstance(t, schema._Uuid):
        emit(indent, f"out.append({value}.bytes)")
        return
    v = src.fresh()
    emit(indent, f"{v} = {value}")
    if isinstance(t, (schema._String, schema._Bytes, schema.Array)):
        kind = {
            schema._String: "a non-nullable string",
            schema._Bytes: "non-nullable bytes",
            schema.Array: "a non-nullable array",
        }[type(t)]
        emit(indent, f"if {v} is None:")
        if t.nullable:
            null = _NULL_STRING if isinstance(t, schema._String) else _NULL_BYTES
            emit(indent + 1, f"out.append({_NULL_COMPACT if flexible else null!r})")
        else:
            emit(indent + 1, f"raise ProtocolError('{kind} is None')")
        emit(indent, "else:")
        indent += 1

    def length(n: str, prefix: str) -> str:
        return f"out.append(_uv({n} + 1))" if flexible else f"out.append({prefix}.pack({n}))"

    if isinstance(t, schema._String):
        data = src.fresh("d")
        emit(indent, f"{data} = {v}.encode('utf-8')")
        emit(indent, length(f"len({data})", "_I16"))
        emit(indent, f"out.append({data})")
    elif isinstance(t, schema._Bytes):
        emit(indent, length(f"len({v})", "_I32"))
        emit(indent, f"out.append({v})")
    elif isinstance(t, schema.Struct):
        emit(indent, f"{src.name(compile_encoder(t, version, flexible), 'write')}(out, {v})")
    elif isinstance(t, schema.Array):
        emit(indent, length(f"len({v})", "_I32"))
        item = src.fresh("e")
        emit(indent, f"for {item} in {v}:")
        _write_value(src, t.item, version, flexible, indent + 1, item)
    else:
        raise TypeError(f"no encoder for {t!r}")


def _write_tagged(src: _Source, tagged: list, version: int) -> None:
    """Code that appends a tagged-field section: each tagged field not at its default, in
    tag order, as tag, size and value."""
    emit = src.emit
    if not tagged:
        emit(1, "out.append(b'\\x00')")
        return
    parts, saved = src.fresh("t"), src.fresh("o")
    emit(1, f"{parts} = []")
    for f in sorted(tagged, key=lambda f: f.tag):
        default = src.name(schema.field_default(f), "D")
        value = src.fresh()
        emit(1, f"{value} = get({f.name!r}, {default})")
        emit(1, f"if {value} != {default}:")
        emit(2, f"{saved}, out = out, []")
        _write_value(src, f.type, version, True, 2, value)
        data = src.fresh("d")
        emit(2, f"{data}, out = b''.join(out), {saved}")
        emit(2, f"{parts} += ({encode_uvarint(f.tag)!r}, _uv(len({data})), {data})")
    emit(1, f"out.append(_uv(len({parts}) // 3))")
    emit(1, f"out += {parts}")


def compile_encoder(struct_: schema.Struct, version: int, flexible: bool = False):
    """``write(out, obj)`` for ``struct_`` at ``version`` (``flexible`` as for the decoder):
    appends the encoding's parts to the list ``out`` (record bytes and file ranges stay as
    they are)."""
    key = ("write", version, flexible)
    cached = struct_._compiled.get(key)
    if cached is not None:
        return cached
    src = _Source()
    src.emit(0, "def write(out, obj):")
    src.emit(1, "get = obj.get")
    fields = [f for f in struct_.fields if f.in_body(version)]

    def value_of(f) -> str:
        return f"get({f.name!r}, {src.name(schema.field_default(f), 'D')})"

    i = 0
    while i < len(fields):
        f = fields[i]
        run = _fixed_run(fields, i, version) or [f]
        if len(run) > 1:
            fmt = _run_format(run)
            args = ", ".join(
                f"1 if {value_of(g)} else 0" if isinstance(g.type, schema._Bool) else value_of(g)
                for g in run
            )
            src.emit(1, f"out.append({src.name(fmt, 'S')}.pack({args}))")
        else:
            _write_value(src, f.type, version, flexible, 1, value_of(f))
        i += len(run)
    if flexible:
        _write_tagged(src, [f for f in struct_.fields if f.tagged(version, True)], version)
    src.emit(1, "return out")
    write = src.build("write")
    struct_._compiled[key] = write
    return write
