"""Rates from counters sampled once a second, and the short history each view keeps.
Pure: times are passed in.

    >>> rates = Rates()
    >>> rates.update("clicks", 10.0, 100), rates.update("clicks", 11.0, 150)
    (None, 50.0)
"""

from __future__ import annotations

from collections import deque


class Rates:
    """Per key, the rate of a counter between its last two samples.  A counter that goes
    down (a log cut by retention or truncation) counts as no input, never as negative; a
    missing value (None) gives no rate and keeps the last known sample, so the next one
    spans the gap."""

    def __init__(self):
        self._last: dict = {}

    def update(self, key, t: float, value: int | None) -> float | None:
        if value is None:
            return None
        previous = self._last.get(key)
        self._last[key] = (t, value)
        if previous is None or t <= previous[0]:
            return None
        return max(0, value - previous[1]) / (t - previous[0])

    def keep_only(self, keys) -> None:
        """Forget every key not in ``keys`` (deleted topics, gone groups)."""
        keys = set(keys)
        for key in [k for k in self._last if k not in keys]:
            del self._last[key]


class Histories:
    """Per key, the last ``length`` samples (dicts), oldest first."""

    def __init__(self, length: int):
        self.length = length
        self._samples: dict = {}

    def add(self, key, sample: dict) -> list[dict]:
        """Append ``sample`` to ``key``'s history; the history as a list."""
        samples = self._samples.get(key)
        if samples is None:
            samples = self._samples[key] = deque(maxlen=self.length)
        samples.append(sample)
        return list(samples)

    def get(self, key) -> list[dict]:
        return list(self._samples.get(key, ()))

    def keep_only(self, keys) -> None:
        keys = set(keys)
        for key in [k for k in self._samples if k not in keys]:
            del self._samples[key]
