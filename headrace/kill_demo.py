"""``headrace kill-demo``: kcat ships keyed log lines into a throw-away cluster, a broker is
killed with SIGKILL and restarted, and every line must still be there in per-client order.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from . import devcluster

KILL_TOPIC = "access-log"
KILL_PARTITIONS = 6


def log_lines(count: int) -> str:
    """Access-log lines keyed by client address; each carries a per-client sequence number."""
    lines = []
    seq = defaultdict(int)
    for i in range(count):
        client = f"10.0.{i % 7}.{i % 41}"
        n = seq[client]
        seq[client] += 1
        lines.append(
            f'{client}\t{client} - - "GET /item/{i % 997} HTTP/1.1" 200 {500 + i % 3000} seq={n}\n'
        )
    return "".join(lines)


def consume(bootstrap: str) -> list[tuple[int, str, int]]:
    out = subprocess.run(
        [
            "kcat",
            "-b",
            bootstrap,
            "-C",
            "-t",
            KILL_TOPIC,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%p\t%k\t%s\n",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    result = []
    for line in out.splitlines():
        partition, key, value = line.split("\t", 2)
        result.append((int(partition), key, int(value.rsplit("seq=", 1)[1])))
    return result


def in_order(records) -> bool:
    """Every client's lines are in one partition, in sequence, none missing or repeated."""
    last: dict[str, int] = {}
    home: dict[str, int] = {}
    for partition, key, seq in records:
        if home.setdefault(key, partition) != partition or seq != last.get(key, -1) + 1:
            return False
        last[key] = seq
    return True


def run_kill_demo(messages: int, directory: Path | None, keep: bool) -> int:
    """kcat ships lines into a cluster, a broker is killed and restarted, nothing may be lost."""
    if shutil.which("kcat") is None:
        print("headrace kill-demo: kcat is not installed; run `bash deploy/setup.sh`")
        return 2
    workdir = directory or Path(tempfile.mkdtemp(prefix="headrace-demo-"))
    began = time.perf_counter()
    state = devcluster.cluster_up(workdir, 3, None, base_port=0, zookeeper_port=0)
    ok = False
    try:
        bootstrap = state["bootstrap"]
        print(
            f"cluster up in {time.perf_counter() - began:.1f} s: ZooKeeper {state['zookeeper']}, "
            f"brokers {bootstrap}"
        )
        from .topics import create_topic_simple

        create_topic_simple(bootstrap, KILL_TOPIC, KILL_PARTITIONS)
        data = log_lines(messages)
        began = time.perf_counter()
        subprocess.run(
            [
                "kcat",
                "-b",
                bootstrap,
                "-P",
                "-t",
                KILL_TOPIC,
                "-z",
                "gzip",
                "-K",
                "\t",
                "-X",
                "linger.ms=20",
            ],
            input=data,
            text=True,
            timeout=600,
            check=True,
        )
        elapsed = time.perf_counter() - began
        print(
            f"kcat shipped {messages:,} log lines (gzip, keyed by client) in {elapsed:.2f} s "
            f"({messages / elapsed:,.0f} lines/s)"
        )

        second = bootstrap.split(",")[1]
        began = time.perf_counter()
        records = consume(second)
        elapsed = time.perf_counter() - began
        print(
            f"kcat read back {len(records):,} lines in {elapsed:.2f} s; per-client order "
            f"{'kept' if in_order(records) else 'BROKEN'}"
        )

        victim = state["brokers"][1]
        devcluster.kill_broker(victim)
        print(f"killed broker {victim['id']} with SIGKILL; restarting it")
        devcluster.restart_broker(workdir, state, victim)
        again = consume(bootstrap.split(",")[0])
        print(
            f"after the restart: {len(again):,} lines, order "
            f"{'kept' if in_order(again) else 'BROKEN'}"
        )
        ok = len(records) == len(again) == messages and in_order(records) and in_order(again)
    finally:
        if keep:
            print(
                f"cluster left running from {workdir}; stop it with "
                f"`headrace cluster down --dir {workdir}`"
            )
        else:
            devcluster.cluster_down(workdir)
            if directory is None:
                shutil.rmtree(workdir, ignore_errors=True)
    print("demo", "passed" if ok else "FAILED")
    return 0 if ok else 1
