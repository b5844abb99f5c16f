"""Command lines the integration tests run: ``headrace`` as a module (so that subprocesses run
this tree's code, imported from the cwd, not the installed console script's) and kcat."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEADRACE = [sys.executable, "-m", "headrace.cli"]
ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python bench/<script> <args>`` from the repository root, its output captured."""
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def group_args(command: str, zookeeper: str, topic: str, group: str, *options: str) -> list[str]:
    """The arguments of ``headrace <command>`` for one topic and group on ``zookeeper``."""
    return [command, "--zookeeper", zookeeper, "--topic", topic, "--group", group, *options]


def load_cmd(cluster, topic: str, group: str, url: str, *extra: str) -> list[str]:
    """``headrace load`` of ``topic`` into ``url``, partitioned by the events' ``ts`` field."""
    args = group_args("load", cluster.zookeeper_connect, topic, group, "--to", url)
    return [*HEADRACE, *args, "--time-field", "ts", *extra]


def kcat_send(
    bootstrap: str, topic: str, keyed: bytes, codec: str, delimiter: str, *extra: str
) -> None:
    """Produce ``keyed`` lines (key, ``delimiter``, value) with kcat, compressed by ``codec``."""
    subprocess.run(
        ["kcat", "-b", bootstrap, "-P", "-t", topic, "-z", codec, "-K", delimiter, *extra],
        input=keyed,
        check=True,
        timeout=60,
    )


def kcat_produce(
    bootstrap: str, topic: str, lines: list[bytes], codec: str = "lz4", *extra: str
) -> None:
    """Lines to a topic with kcat, keyed by their position so they spread over partitions."""
    keyed = b"\n".join(b"%d\t%s" % (i, line) for i, line in enumerate(lines)) + b"\n"
    kcat_send(bootstrap, topic, keyed, codec, "\t", "-X", "linger.ms=20", *extra)


def kcat_read(bootstrap: str, topic: str, fmt: str) -> str:
    """Everything in ``topic`` from the beginning, one ``fmt`` line (kcat's ``-f``) a message."""
    return subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", fmt],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
