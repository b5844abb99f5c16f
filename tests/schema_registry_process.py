"""``headrace schema-registry`` as a real process on a free loopback port, and a small HTTP
helper speaking to it (the tests' own, so a failing client library cannot hide a server bug)."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request

from command_lines import HEADRACE, ROOT

from headrace.devcluster import free_port

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryProcess:
    """One registry process on ``zookeeper`` (a ``zookeeper.connect`` string)."""

    def __init__(self, zookeeper: str, *extra: str):
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                *HEADRACE,
                "schema-registry",
                "--zookeeper",
                zookeeper,
                "--port",
                str(self.port),
                *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "schema registry at" not in line:
            self.process.kill()
            raise RuntimeError(f"the registry did not start: {line}{self.process.stderr.read()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then its exit status and stderr."""
        self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


def call(
    url: str,
    method: str,
    path: str,
    body=None,
    raw: bytes | None = None,
    content_type: str = CONTENT_TYPE,
):
    """(status, decoded JSON body, content type) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            status, payload, kind = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, payload, kind = exc.code, exc.read(), exc.headers
    return status, json.loads(payload), kind.get("Content-Type")
