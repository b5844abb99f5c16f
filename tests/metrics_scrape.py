"""Scrape a Prometheus page over HTTP and parse it with ``prometheus_client``'s own parser."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape: ``scrape["headrace_requests_total", {"api": "Produce"}]`` is the sum of the
    samples of that name whose labels include those given (0 when none match)."""

    def __init__(self, text: str):
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def __getitem__(self, key) -> float:
        name, labels = key if isinstance(key, tuple) else (key, {})
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def names(self) -> set[str]:
        """Every sample name on the page."""
        return {s.name for s in self.samples}


def scrape(url: str, timeout: float = 10.0) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return Scrape(response.read().decode())
