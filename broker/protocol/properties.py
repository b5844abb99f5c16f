"""Java ``.properties`` text read into a dict: the format of Kafka's broker configs and of its
clients' ``--command-config`` files, so the broker and every client read them alike.  Pure:
text in, dict out; a malformed ``\\uxxxx`` escape raises ``PropertiesError``."""

from __future__ import annotations

import re


class PropertiesError(ValueError):
    """The text is not well-formed ``.properties``."""


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "u":
                digits = text[i + 2 : i + 6]
                if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise PropertiesError(
                        f'malformed \\uxxxx escape "{text[i : i + 6]}" in "{text}"'
                    )
                out.append(chr(int(digits, 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Parse Java ``.properties`` text: ``#``/``!`` comments, ``=``, ``:`` or blank as the
    separator, backslash line continuation and escapes."""
    result: dict[str, str] = {}
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:  # an odd number of backslashes continues the line
            logical.append(line[:-1])
            continue
        logical.append(line)
        entry = "".join(logical)
        logical = []
        match = re.match(r"((?:\\.|[^=:\s\\])*)\s*[=:\s]?\s*(.*)$", entry)
        if not match:
            continue
        key, value = _unescape(match.group(1)), _unescape(match.group(2))
        if key:
            result[key] = value
    if logical:
        entry = "".join(logical)
        key, _, value = entry.partition("=")
        result[_unescape(key.strip())] = _unescape(value.strip())
    return result


__all__ = ["PropertiesError", "parse_properties"]
