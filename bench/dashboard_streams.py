"""The dashboard's Server-Sent Event streams as a page holds them open, for
``dashboard_bench.py``: ``events(response)`` parses one stream (sseclient-py) into
(name, JSON data) pairs.  Run as a script (``StreamReaders`` starts it), it reads every URL
given, each in a thread of its own, until SIGTERM; then, once each URL has sent an event of
the name given with it (or after STREAM_TIMEOUT_S), it prints how many events of each name
every URL sent, as JSON.

    python bench/dashboard_streams.py URL NAME [URL NAME ...]
    # prints "ready" once every stream answered, then "flowing" once each sent an event

Running the readers in a process of their own keeps their work off the benchmark's producer,
as a browser's would be.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import sseclient

STREAM_TIMEOUT_S = 30.0  # every stream sends at least one event a second


def open_stream(url: str):
    """The response to a GET of an SSE ``url``, once its headers arrived."""
    return urllib.request.urlopen(url, timeout=STREAM_TIMEOUT_S)


def events(response) -> Iterator[tuple[str, object]]:
    """(event name, parsed JSON data) of each event of an SSE response, as they come."""
    for event in sseclient.SSEClient(response).events():
        if event.data:
            yield event.event, json.loads(event.data)


class StreamsError(RuntimeError):
    """A stream did not open, broke, or did not send the event it should have."""


class StreamReaders:
    """``dashboard_streams.py`` in a process of its own, holding open the URLs of
    ``expected`` (url -> an event name each must send)."""

    def __init__(self, expected: dict[str, str]):
        script = Path(__file__)
        self.expected = expected
        urls = list(expected)
        self.process = subprocess.Popen(
            [sys.executable, str(script), *(x for pair in expected.items() for x in pair)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for word in ("ready", "flowing"):  # every stream answered, then sent an event
            if self.process.stdout.readline().strip() != word:
                self.process.kill()
                self.process.wait()
                raise StreamsError(f"the stream reader: not {word}: {urls}")

    def stop(self) -> dict:
        """Events of each name every stream sent, after checking that each sent its
        expected event (the reader waits for them a while) and none broke."""
        self.process.terminate()
        out, _ = self.process.communicate(timeout=60)
        summary = json.loads(out)
        for url, seen in summary.items():
            if seen["error"] or not seen["events"].get(self.expected[url]):
                raise StreamsError(f"{url}: events {seen['events']}, error {seen['error']}")
        return summary


def main(args: list[str]) -> int:
    expected = dict(zip(args[::2], args[1::2]))  # url -> the event it must have sent
    urls = list(expected)
    counts = {url: Counter[str]() for url in urls}
    errors: dict[str, str] = {}
    lock = threading.Lock()

    def read(url: str, response) -> None:
        try:
            for name, _data in events(response):
                with lock:
                    counts[url][name] += 1
        except Exception as exc:  # the summary says which stream broke
            errors[url] = repr(exc)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    responses = [(url, open_stream(url)) for url in urls]
    for url, response in responses:
        threading.Thread(target=read, args=(url, response), daemon=True).start()
    print("ready", flush=True)

    def wait_for(seen) -> bool:
        deadline = time.monotonic() + STREAM_TIMEOUT_S
        while time.monotonic() < deadline:
            with lock:
                if all(seen(url) for url in urls):
                    return True
            time.sleep(0.05)
        return False

    print("flowing" if wait_for(lambda url: counts[url]) else "stalled", flush=True)
    stop.wait()
    wait_for(lambda url: counts[url][expected[url]] or url in errors)
    with lock:
        summary = {url: {"events": dict(counts[url]), "error": errors.get(url)} for url in urls}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
