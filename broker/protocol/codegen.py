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


def _field_default(f):
    return f.default if f.default is not None else schema._default(f.type)


class _Source:
    """Lines of generated code and the names they refer to."""

    def __init__(self):
        self.lines: list[str] = []
        self.names: dict = {
            "ProtocolError": schema.ProtocolError,
            "_default": schema._default,
            "_I16": schema._I16,
            "_I32": schema._I32,
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


def _is_fixed(t) -> bool:
    return isinstance(t, schema._Fixed)


def _fixed_run(fields: list, i: int, version: int) -> list:
    """The fields from ``fields[i]`` on that are present at ``version`` and of fixed size."""
    run: list = []
    while i + len(run) < len(fields):
        f = fields[i + len(run)]
        if not (f.present(version) and _is_fixed(f.type)):
            break
        run.append(f)
    return run


def _run_format(run: list) -> struct.Struct:
    """One big-endian struct format for a run of fixed-size fields."""
    return struct.Struct(">" + "".join(f.type.fmt.format[1:] for f in run))


# --- decoders --------------------------------------------------------------------------------


def _read_length(
    src: _Source, indent: int, target: str, nullable: bool, width: int, what: str
) -> str:
    """Code that reads a length (or count) prefix of ``width`` bytes: -1 is None where
    ``nullable``, other negatives are refused.  The code after it goes in the ``else:``
    branch this opens, at ``indent + 1``; returns the length's variable."""
    emit = src.emit
    length = src.fresh("n")
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


def _read_value(src: _Source, t, version: int, indent: int, target: str) -> None:
    """Code that reads one value of type ``t`` at ``pos`` into ``target``."""
    emit = src.emit
    if _is_fixed(t):
        fmt = src.name(t.fmt, "S")
        emit(indent, f"{target}, = {fmt}.unpack_from(buf, pos)")
        emit(indent, f"pos += {t.fmt.size}")
        if isinstance(t, schema._Bool):
            emit(indent, f"{target} = {target} != 0")
        return
    if isinstance(t, (schema._String, schema._Bytes)):
        string = isinstance(t, schema._String)
        length = _read_length(
            src, indent, target, t.nullable, 2 if string else 4, "string" if string else "bytes"
        )
        emit(indent + 1, f"if pos + {length} > size:")
        emit(
            indent + 2,
            f"raise ProtocolError(f'need {{{length}}} bytes at {{pos}}, have {{size - pos}}')",
        )
        value = f"buf[pos:pos + {length}]"
        if string:
            value = f"str({value}, 'utf-8')"
        elif not t.view:  # type: ignore[union-attr]  # a _Bytes when not string
            value = f"bytes({value})"
        emit(indent + 1, f"{target} = {value}")
        emit(indent + 1, f"pos += {length}")
        return
    if isinstance(t, schema.Struct):
        reader = src.name(compile_decoder(t, version), "read")
        emit(indent, f"{target}, pos = {reader}(buf, pos, size)")
        return
    if isinstance(t, schema.Array):
        count = _read_length(src, indent, target, t.nullable, 4, "array")
        emit(indent + 1, f"if {count} > size - pos:")
        emit(
            indent + 2,
            f"raise ProtocolError(f'array of {{{count}}} elements in {{size - pos}} bytes')",
        )
        emit(indent + 1, f"{target} = []")
        item = src.fresh("e")
        emit(indent + 1, f"for _ in range({count}):")
        _read_value(src, t.item, version, indent + 2, item)
        emit(indent + 2, f"{target}.append({item})")
        return
    raise TypeError(f"no decoder for {t!r}")


def compile_decoder(struct_: schema.Struct, version: int):
    """``read(buf, pos, size) -> (dict, pos)`` for ``struct_`` at ``version``; ``buf`` is a
    memoryview and ``size`` its length."""
    cached = struct_._decoders.get(version)
    if cached is not None:
        return cached
    src = _Source()
    src.emit(0, "def read(buf, pos, size):")
    fields = list(struct_.fields)
    values = []
    i = 0
    while i < len(fields):
        f = fields[i]
        if not f.present(version):
            default = _field_default(f)
            if isinstance(default, (list, dict)):
                values.append(
                    f"_default({src.name(f.type, 'T')})"
                    if f.default is None
                    else f"{src.name(f.default, 'D')}.copy()"
                )
            else:
                values.append(src.name(default, "D"))
            i += 1
            continue
        run = _fixed_run(fields, i, version)
        if len(run) > 1:  # a run of fixed-size fields: one struct call
            fmt = _run_format(run)
            names = [src.fresh() for _ in run]
            src.emit(1, f"{', '.join(names)} = {src.name(fmt, 'S')}.unpack_from(buf, pos)")
            src.emit(1, f"pos += {fmt.size}")
            for g, name in zip(run, names):
                values.append(f"{name} != 0" if isinstance(g.type, schema._Bool) else name)
            i += len(run)
            continue
        target = src.fresh()
        _read_value(src, f.type, version, 1, target)
        values.append(target)
        i += 1
    pairs = ", ".join(f"{f.name!r}: {v}" for f, v in zip(fields, values))
    src.emit(1, f"return {{{pairs}}}, pos")
    read = src.build("read")
    struct_._decoders[version] = read
    return read


# --- encoders --------------------------------------------------------------------------------


def _write_value(src: _Source, t, version: int, indent: int, value: str) -> None:
    """Code that appends the encoding of ``value`` (an expression) to ``out``."""
    emit = src.emit
    if _is_fixed(t):
        if isinstance(t, schema._Bool):
            emit(indent, f"out.append(b'\\x01' if {value} else b'\\x00')")
        else:
            emit(indent, f"out.append({src.name(t.fmt, 'S')}.pack({value}))")
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
            emit(indent + 1, f"out.append({null!r})")
        else:
            emit(indent + 1, f"raise ProtocolError('{kind} is None')")
        emit(indent, "else:")
        indent += 1
    if isinstance(t, schema._String):
        data = src.fresh("d")
        emit(indent, f"{data} = {v}.encode('utf-8')")
        emit(indent, f"out.append(_I16.pack(len({data})))")
        emit(indent, f"out.append({data})")
    elif isinstance(t, schema._Bytes):
        emit(indent, f"out.append(_I32.pack(len({v})))")
        emit(indent, f"out.append({v})")
    elif isinstance(t, schema.Struct):
        emit(indent, f"{src.name(compile_encoder(t, version), 'write')}(out, {v})")
    elif isinstance(t, schema.Array):
        emit(indent, f"out.append(_I32.pack(len({v})))")
        item = src.fresh("e")
        emit(indent, f"for {item} in {v}:")
        _write_value(src, t.item, version, indent + 1, item)
    else:
        raise TypeError(f"no encoder for {t!r}")


def compile_encoder(struct_: schema.Struct, version: int):
    """``write(out, obj)`` for ``struct_`` at ``version``: appends the encoding's parts to the
    list ``out`` (record bytes and file ranges stay as they are)."""
    cached = struct_._encoders.get(version)
    if cached is not None:
        return cached
    src = _Source()
    src.emit(0, "def write(out, obj):")
    src.emit(1, "get = obj.get")
    fields = [f for f in struct_.fields if f.present(version)]

    def value_of(f) -> str:
        return f"get({f.name!r}, {src.name(_field_default(f), 'D')})"

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
            _write_value(src, f.type, version, 1, value_of(f))
        i += len(run)
    src.emit(1, "return out")
    write = src.build("write")
    struct_._encoders[version] = write
    return write
