"""kafkajs, the Node.js Kafka client with its own protocol code, run from the tests: the scripts
under ``tests/js/`` take the bootstrap address and JSON arguments and print JSON. kafkajs is
pinned in ``tests/js/package-lock.json`` and installed by ``deploy/setup.sh --test``."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path

from command_lines import HEADRACE
from conftest import wait_for

from consumers.consumer import EARLIEST, Consumer

JS = Path(__file__).resolve().parent / "js"
NODE_MODULES = JS / "node_modules" / "kafkajs"


class KafkaJSError(Exception):
    """A kafkajs call failed; ``type`` is the Kafka error kafkajs reported (e.g.
    ``UNKNOWN_TOPIC_OR_PARTITION``) or None, ``name`` kafkajs's error class."""

    def __init__(self, error: dict, stderr: str):
        super().__init__(f"{error.get('name')} {error.get('type')}: {error.get('message')}")
        self.name = error.get("name")
        self.type = error.get("type")
        self.stderr = stderr


def node(
    script: str, *args: str, stdin: str = "", timeout: float = 60, security=None
) -> subprocess.CompletedProcess:
    """``node tests/js/<script> <args>``, ``stdin`` its input, its output captured; fails
    clearly when kafkajs is not installed. ``security``: kafkajs's ``{ssl, sasl}`` options
    (PEM files by path), see ``_environment``."""
    if not NODE_MODULES.is_dir():
        raise RuntimeError(f"kafkajs is not installed in {JS} (run: bash deploy/setup.sh --test)")
    return subprocess.run(
        ["node", str(JS / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_environment(security),
    )


def _environment(security) -> dict[str, str]:
    """The scripts' environment; ``security`` given to ``tests/js/common.js`` as
    ``KAFKAJS_SECURITY`` (JSON)."""
    env = {**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"}
    if security is not None:
        env["KAFKAJS_SECURITY"] = json.dumps(security)
    return env


def run_js(script: str, bootstrap: str, *args, stdin=None, timeout: float = 60, security=None):
    """The JSON a script printed (given ``args`` and ``stdin`` as JSON); its ``{"error": ...}``
    raises KafkaJSError."""
    text = "" if stdin is None else json.dumps(stdin)
    arguments = (a if isinstance(a, str) else json.dumps(a) for a in args)
    done = node(script, bootstrap, *arguments, stdin=text, timeout=timeout, security=security)
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"{script} printed nothing (status {done.returncode}): {done.stderr}")
    result = json.loads(lines[-1])
    if isinstance(result, dict) and "error" in result:
        raise KafkaJSError(result["error"], done.stderr)
    assert done.returncode == 0, done.stderr
    return result


def admin(bootstrap: str, call: str, *args, timeout: float = 60, security=None):
    """kafkajs's ``admin().<call>(*args)``, its result as JSON (Buffers as {"type", "data"})."""
    return run_js("admin.js", bootstrap, call, list(args), timeout=timeout, security=security)


def produce(
    bootstrap: str, topic: str, batches: list[list[dict]], security=None, **options
) -> list:
    """Each batch of messages ({"key", "value", "partition", "headers", "timestamp"}) sent by
    one kafkajs ``send()`` (all in one ``sendBatch()`` with ``send_batch=True``); options:
    ``idempotent``, ``acks``, ``compression`` ("GZIP"). The RecordMetadata lists per send."""
    spec = {"topic": topic, "batches": batches, **options}
    return run_js("produce.js", bootstrap, stdin=spec, security=security)


class GroupMember:
    """A kafkajs consumer group member (``tests/js/group_member.js``) in its own process; its
    JSON events are read by a thread into ``events``. ``leave()`` closes its stdin, and it
    disconnects (LeaveGroup)."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, security=None):
        if not NODE_MODULES.is_dir():
            raise RuntimeError(f"kafkajs is not installed in {JS}")
        self.name = name
        self.process = subprocess.Popen(
            ["node", str(JS / "group_member.js"), bootstrap, group, topic, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_environment(security),
        )
        self.events: list[dict] = []
        self._new: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            self.events.append(event)
            self._new.put(event)

    def wait_event(self, predicate, timeout: float = 45) -> dict:
        """The first event that ``predicate`` accepts among those no earlier wait has looked
        at (they are looked at in order); AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self._new.get(timeout=left)
            except queue.Empty:
                break
            assert event["event"] not in ("error", "crash"), f"{self.name}: {event}"
            if predicate(event):
                return event
        raise AssertionError(f"{self.name}: no such event within {timeout} s: {self.events}")

    def assignment(self) -> list[int]:
        """The partitions of its last join."""
        joins = [e for e in self.events if e["event"] == "assigned"]
        return joins[-1]["partitions"] if joins else []

    def messages(self) -> list[dict]:
        return [e for e in self.events if e["event"] == "message"]

    def leave(self, timeout: float = 30) -> None:
        """Close its stdin: it leaves the group and exits."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
        self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


# --- what the brokers hold, read back by our own tools ------------------------------------


def headrace(*args: str) -> str:
    """What ``headrace <args>`` (this tree's) printed; a failure raises."""
    return subprocess.run(
        [*HEADRACE, *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def read_back(bootstrap: str, topic: str, partitions: int, count: int) -> list:
    """``count`` messages of ``topic`` read with our own consumer, sorted by partition and
    offset (fewer if they are not there within 30 s)."""
    consumer = Consumer(bootstrap, auto_offset_reset="earliest")
    consumer.assign([(topic, p, EARLIEST) for p in range(partitions)])
    got: list = []
    try:
        wait_for(lambda: len(got) >= count or got.extend(consumer.poll(0.5)), 30)
    except AssertionError:
        pass
    finally:
        consumer.close()
    return sorted(got, key=lambda m: (m.partition, m.offset))


def base_offsets(results: list) -> dict[int, list[int]]:
    """partition -> the base offsets kafkajs reported, in send order."""
    offsets: dict[int, list[int]] = {}
    for send in results:
        for meta in send:
            assert meta["errorCode"] == 0, meta
            offsets.setdefault(meta["partition"], []).append(int(meta["baseOffset"]))
    return offsets


def groups_list(cluster) -> str:
    """``headrace groups list``'s output."""
    return headrace("groups", "list", "--zookeeper", cluster.zookeeper_connect)


def groups_describe(cluster, group: str) -> dict[int, tuple[int, int]]:
    """partition -> (committed, end) as ``headrace groups describe`` prints them."""
    out = headrace("groups", "describe", group, "--zookeeper", cluster.zookeeper_connect)
    rows = {}
    for line in out.splitlines()[2:]:
        fields = line.split()
        if len(fields) >= 4 and fields[1].isdigit():
            rows[int(fields[1])] = (int(fields[2]), int(fields[3]))
    return rows


def stored_batches(broker, topic: str, partition: int) -> list[dict[str, int]]:
    """The batch headers of a partition's log on ``broker``, as ``headrace dump-log`` lists
    them (baseOffset, producerId, partitionLeaderEpoch... as ints)."""
    log_dir = broker.workdir / f"broker-{broker.broker_id}-logs" / f"{topic}-{partition}"
    dump = headrace("dump-log", str(log_dir))
    headers = []
    for line in dump.splitlines():
        words = line.split()
        if words and words[0] == "baseOffset":
            pairs = dict(zip(words[:-1:2], words[1:-1:2], strict=True))
            headers.append({k: int(v, 0) for k, v in pairs.items() if k != "codec"})
    return headers
