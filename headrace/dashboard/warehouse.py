"""The event hours a loader marked ``_SUCCESS`` in its warehouse, read through fsspec
(``<url>/<topic>/dt=YYYY-MM-DD/hour=HH/_SUCCESS``) at most every few seconds per warehouse
and topic.  Blocking: called from the sampler's thread."""

from __future__ import annotations

import logging
import re
import time

from fsspec.core import url_to_fs

log = logging.getLogger(__name__)

_HOUR = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/_SUCCESS$")


def success_hours(url: str, topic: str) -> list[str]:
    """``["YYYY-MM-DDTHH", ...]``, sorted, for the hours of ``topic`` marked ``_SUCCESS``."""
    fs, root = url_to_fs(url.rstrip("/"))
    found = []
    for path in fs.glob(f"{root}/{topic}/dt=*/hour=*/_SUCCESS"):
        m = _HOUR.search(path)
        if m:
            found.append(f"{m.group(1)}T{m.group(2)}")
    return sorted(found)


class SuccessHours:
    """``success_hours`` remembered for ``every_s`` seconds per (url, topic); a warehouse
    that cannot be read gives the last known answer (or none)."""

    def __init__(self, every_s: float):
        self.every_s = every_s
        self._cache: dict[tuple[str, str], tuple[float, list[str]]] = {}

    def get(self, url: str | None, topics: list[str]) -> list[str]:
        if not url:
            return []
        hours: set[str] = set()
        now = time.monotonic()
        for topic in topics:
            at, found = self._cache.get((url, topic), (None, []))
            if at is None or now - at >= self.every_s:
                try:
                    found = success_hours(url, topic)
                except Exception as exc:  # fsspec raises what its backend raises
                    log.info("cannot list _SUCCESS markers in %s/%s: %r", url, topic, exc)
                self._cache[(url, topic)] = (now, found)
            hours.update(found)
        return sorted(hours)
