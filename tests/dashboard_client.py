"""A ``headrace dashboard`` process for the tests, and HTTP helpers: JSON GETs and a
Server-Sent Events reader that collects events in a thread of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from headrace.devcluster import free_port


class DashboardProcess:
    """``python -m headrace.cli dashboard`` on a free port; its output in ``log_path``."""

    def __init__(self, zookeeper: str, workdir: Path, *extra: str, port: int | None = None):
        self.zookeeper = zookeeper
        self.port = port or free_port()
        self.log_path = Path(workdir) / f"dashboard-{self.port}.log"
        self.extra = extra
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> DashboardProcess:
        command = [sys.executable, "-m", "headrace.cli", "dashboard"]
        command += ["--zookeeper", self.zookeeper, "--port", str(self.port), *self.extra]
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if get_json(self.url + "/api/cluster")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"dashboard not up in {timeout} s: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def get_json(url: str, timeout: float = 10.0) -> tuple[int, dict]:
    """(status, JSON body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


class EventReader:
    """Reads an SSE stream line by line in a thread; ``events`` holds (name, data) pairs."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.response = urllib.request.urlopen(url, timeout=timeout)
        self.events: list[tuple[str, object]] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        name = "message"
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    with self._lock:
                        self.events.append((name, json.loads(line[len("data: ") :])))
                elif not line:
                    name = "message"
        except (OSError, ValueError, AttributeError) as exc:  # AttributeError: closed
            self.error = exc

    def of(self, name: str) -> list:
        with self._lock:
            return [data for n, data in self.events if n == name]

    def wait_for(self, condition, timeout: float):
        """Wait until ``condition(reader)`` is truthy (its value) or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition(self)
            if value:
                return value
            if not self._thread.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no such event in {timeout} s (error {self.error!r})")

    def close(self) -> None:
        self.response.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
