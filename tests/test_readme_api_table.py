"""README's table of the APIs served ("API (key) | versions | flexible from | our clients")
is the registry's ``APIS``, row for row: a widened row without its README line fails here."""

from __future__ import annotations

import re
from pathlib import Path

from broker.protocol.registry import APIS

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\| (\w+) \((\d+)\) \| ([\d-]+) \| ([\d-]+) \| (\d+) \|")


def _span(api) -> str:
    if api.min_version == api.max_version:
        return str(api.min_version)
    return f"{api.min_version}-{api.max_version}"


def test_readmes_api_table_is_the_registry():
    table = [m.groups() for m in map(ROW.match, README.read_text().splitlines()) if m]
    expected = [
        (
            api.name,
            str(int(api.key)),
            _span(api),
            "-" if api.flexible_from is None else str(api.flexible_from),
            str(api.client_version),
        )
        for api in APIS
    ]
    assert sorted(table, key=lambda row: int(row[1])) == sorted(expected, key=lambda r: int(r[1]))
