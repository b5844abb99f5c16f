"""The log shipper: follows files like ``tail -F`` and sends their lines to a topic.

    >>> shipper = Shipper("weblogs", ["/var/log/nginx/access.log", "/var/log/app/*.log"],
    ...                   bootstrap_servers="127.0.0.1:9092",
    ...                   state_file="/var/lib/headrace/shipper.json", key_field="client")
    >>> shipper.run()                      # until shipper.stop() from another thread

    python -m consumers.shipper --topic weblogs --bootstrap-server 127.0.0.1:9092 \\
        --state-file /var/lib/headrace/shipper.json /var/log/nginx/access.log '/var/log/app/*.log'

Each line (bytes, without its ``\\n``; a partial last line waits for its newline) becomes one
message, keyed by a JSON field of the line with ``key_field``.  Glob patterns are expanded again
every ``scan_interval`` seconds, so new files are picked up.  A file is an inode: when its path
names another inode (logrotate's rename), the old file is read to its end through the open
descriptor, and kept open for ``rotate_wait`` seconds without new data (a writer may not have
reopened yet), while the new file is read from its start; a file shorter than our position was
truncated (copytruncate) and is read again from 0.

Delivery is at least once.  Per file, the offsets of sent lines are kept in order, and the
committed position only moves to the end of the longest acknowledged prefix; the state file
(JSON: path, device, inode and offset per file, replaced atomically) is written every poll loop
when it changed.  After kill -9 the shipper resumes from there: nothing is lost, and at most
the lines that were sent but not yet acknowledged are sent twice.  A failed delivery (the
producer already retried) stops the file's position where it was and re-reads the file from
its committed position after a backoff.

On start, saved files are found by (device, inode) first, then by path.  A path that now names
an inode we have not seen was rotated while we were away: the new file is read from its start,
and the old one, if it is still in the same directory under another name, is read to its end.
Files without saved state start at their end (after the last complete line) unless
``from_beginning``; files that appear after the start are new and always read from their start.
"""

from __future__ import annotations

import argparse
import errno
import glob
import json
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections import deque
from pathlib import Path

from broker.protocol.compression import CODECS_BY_NAME
from broker.protocol.durable import atomic_write
from broker.protocol.errors import KafkaError

from .producer import Producer, ProducerClosedError

log = logging.getLogger(__name__)

__all__ = [
    "Shipper",
    "StateError",
    "add_arguments",
    "main",
    "run",
]

STATE_VERSION = 1
_CHUNK = 256 * 1024
_LINE_COST = 64  # bookkeeping per in-flight line, counted against max_inflight_bytes


class StateError(RuntimeError):
    """The state file exists but cannot be used."""


def load_state(path: str | os.PathLike) -> list[dict]:
    """The saved files of a state file ([] if there is none); StateError if it is unusable."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"cannot read the state file {path}: {exc}") from exc
    try:
        doc = json.loads(text)
        entries = []
        for e in doc["files"]:
            entries.append(
                {
                    "path": str(e["path"]),
                    "dev": int(e["dev"]),
                    "ino": int(e["ino"]),
                    "offset": int(e["offset"]),
                }
            )
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(
            f"the state file {path} is not a shipper state ({exc!r}); move it away to start over"
        ) from exc
    return entries


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class _Tail:
    """One followed file (an inode), from discovery until it is gone and fully acknowledged."""

    __slots__ = (
        "committed",
        "dev",
        "failures",
        "fd",
        "inflight",
        "inflight_bytes",
        "ino",
        "last_data",
        "orphaned_since",
        "path",
        "pending",
        "read_pos",
        "retry_at",
    )

    def __init__(self, path: str, fd: int, st: os.stat_result, position: int):
        self.path = path
        self.fd = fd
        self.dev, self.ino = st.st_dev, st.st_ino
        self.read_pos = position  # file offset of pending[0]: the end of the last line sent
        self.pending = b""  # bytes read after the last newline
        self.committed = position  # every line before it is acknowledged
        self.inflight: deque = deque()  # (end offset, cost, DeliveryFuture), in file order
        self.inflight_bytes = 0
        self.orphaned_since: float | None = None  # its path stopped naming it (rotated, removed)
        self.last_data = time.monotonic()
        self.retry_at = 0.0
        self.failures = 0

    @property
    def identity(self) -> tuple[int, int]:
        return (self.dev, self.ino)

    def __repr__(self) -> str:
        return f"<{self.path} dev={self.dev} ino={self.ino} at {self.read_pos}>"


class Shipper:
    """Follows ``files`` (paths and glob patterns) and sends their lines to ``topic``.

    ``run()`` loops until ``stop()``; or drive it with ``start()``, ``poll_once()`` and
    ``close()``.  Give ``producer`` to share one (it is then not closed here), or
    ``bootstrap_servers``/``zookeeper`` (and ``producer_config``) to have one made.
    """

    def __init__(
        self,
        topic: str,
        files,
        *,
        bootstrap_servers: str | None = None,
        zookeeper: str | None = None,
        state_file: str | os.PathLike | None = None,
        key_field: str | None = None,
        from_beginning: bool = False,
        poll_interval: float = 0.25,
        compression: str = "none",
        acks: int | str = "all",
        enable_idempotence: bool | None = None,
        producer: Producer | None = None,
        producer_config: dict | None = None,
        scan_interval: float = 1.0,
        rotate_wait: float = 5.0,
        max_inflight_bytes: int = 16 * 1024 * 1024,
        max_line_bytes: int = 500_000,
        retry_backoff: float = 1.0,
        max_retry_backoff: float = 30.0,
        stop_timeout: float = 30.0,
    ):
        if not topic:
            raise ValueError("a topic is required")
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        self.patterns = [os.path.expanduser(os.fspath(f)) for f in files]
        if not self.patterns:
            raise ValueError("give at least one file or glob pattern")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.topic = topic
        self.state_file = os.path.abspath(state_file) if state_file else None
        self.key_field = key_field or None
        self.from_beginning = from_beginning
        self.poll_interval = poll_interval
        self.scan_interval = max(scan_interval, poll_interval)
        self.rotate_wait = rotate_wait
        self.max_inflight_bytes = max_inflight_bytes
        self.retry_backoff = retry_backoff
        self.max_retry_backoff = max_retry_backoff
        self.stop_timeout = stop_timeout
        self._own_producer = producer is None
        if producer is None:
            if not bootstrap_servers and not zookeeper:
                raise ValueError("give bootstrap_servers or zookeeper")
            config = {
                "acks": acks,
                "compression": compression,
                "max_block_ms": 10_000,
                "enable_idempotence": enable_idempotence,
            }
            config.update(producer_config or {})
            producer = Producer(bootstrap_servers, zookeeper, **config)
        self.producer = producer
        # a line and a key made from it must fit in one request
        limit = (getattr(producer, "max_request_size", 1_048_576) - 200) // 2
        self.max_line_bytes = max(1, min(max_line_bytes, limit))

        self._tails: dict[tuple[int, int], _Tail] = {}
        self._inflight_bytes = 0
        self._started = False
        self._closed = False
        self._stop = threading.Event()
        self._stop_requested: str | None = None  # set by signal handlers, which must not lock
        self._next_scan = 0.0
        self._send_retry_at = 0.0
        self._send_failures = 0
        self._saved_doc: dict | None = None
        self._state_error_logged = False
        self._warned_paths: set[str] = set()
        # counters, for tests and monitoring
        self.lines_sent = 0
        self.lines_acked = 0
        self.lines_failed = 0

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Load the state file and open the files; called by run()."""
        if self._started:
            return
        saved: list[dict] = []
        if self.state_file:
            os.makedirs(os.path.dirname(self.state_file), exist_ok=True)
            saved = load_state(self.state_file)
            self._saved_doc = self._doc_of(saved)
        self._started = True
        self._initial_scan(saved)
        self._next_scan = time.monotonic() + self.scan_interval
        self.commit()

    def run(self) -> None:
        """Follow the files until stop() (or a signal handler) asks to stop, then close()."""
        self.start()
        try:
            while not self.stopping:
                try:
                    more = self.poll_once()
                except Exception:  # keep shipping; the next loop tries again
                    log.exception("shipper loop failed; trying again in %.1f s", self.retry_backoff)
                    self._stop.wait(self.retry_backoff)
                    continue
                if not more:
                    self._stop.wait(self.poll_interval)
        finally:
            if self._stop_requested is not None:
                log.info("%s: stopping", self._stop_requested)
            self.close()

    @property
    def stopping(self) -> bool:
        return self._stop_requested is not None or self._stop.is_set()

    def stop(self) -> None:
        """Ask run() to stop; thread-safe."""
        self._stop.set()

    def request_stop(self, why: str = "asked to stop") -> None:
        """Ask run() to stop from a signal handler (takes no lock, logs nothing; noticed
        within a poll interval)."""
        self._stop_requested = why

    def close(self, timeout: float | None = None) -> None:
        """Deliver what was sent (up to ``timeout``, default ``stop_timeout``), commit the
        positions of what was acknowledged, close the files (and our producer)."""
        if self._closed:
            return
        self._closed = True
        timeout = self.stop_timeout if timeout is None else timeout
        try:
            self.producer.flush(timeout)
            for tail in list(self._tails.values()):
                self._collect(tail)
            unacked = sum(len(t.inflight) for t in self._tails.values())
            if unacked:
                log.warning(
                    "%d lines were not acknowledged within %.0f s; they are sent again "
                    "on the next start",
                    unacked,
                    timeout,
                )
            if self._started:
                self.commit()
        finally:
            if self._own_producer:
                self.producer.close(0)
            for tail in self._tails.values():
                try:
                    os.close(tail.fd)
                except OSError:
                    pass
            self._tails.clear()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # --- one loop ------------------------------------------------------------------------

    def poll_once(self) -> bool:
        """Discover files (every scan_interval), take acknowledgements, read and send new
        lines, retire drained rotated files, commit the state if it changed.  True if there
        is more to read right away."""
        if not self._started:
            self.start()
        now = time.monotonic()
        if now >= self._next_scan:
            self._scan()
            self._next_scan = now + self.scan_interval
        for tail in list(self._tails.values()):
            self._collect(tail)
        more = False
        if now >= self._send_retry_at:
            # rotated-away files first: their lines came before those of the new files
            tails = sorted(
                self._tails.values(), key=lambda t: (t.orphaned_since is None, t.path, t.ino)
            )
            share = max(_CHUNK, self.max_inflight_bytes // max(1, len(tails)))
            for tail in tails:
                room = self.max_inflight_bytes - self._inflight_bytes
                if room <= 0:
                    break
                budget = min(room, share)
                try:
                    if self._read(tail, budget) >= budget:
                        more = True
                except OSError as exc:
                    tail.failures += 1
                    delay = self._backoff(tail.failures)
                    log.error("cannot read %s: %s; trying again in %.1f s", tail.path, exc, delay)
                    tail.retry_at = time.monotonic() + delay
                if time.monotonic() < self._send_retry_at:
                    more = False
                    break
        self._retire()
        self.commit()
        return more

    # --- finding files -------------------------------------------------------------------

    def _expand(self) -> dict[tuple[int, int], tuple[str, os.stat_result]]:
        """Regular files the patterns name now, by identity."""
        found: dict[tuple[int, int], tuple[str, os.stat_result]] = {}
        for pattern in self.patterns:
            paths = sorted(glob.glob(pattern, recursive=True)) if _has_magic(pattern) else [pattern]
            for path in paths:
                try:
                    st = os.stat(path)
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                        self._warn_once(path, f"cannot stat {path}: {exc}")
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.setdefault((st.st_dev, st.st_ino), (path, st))
        return found

    def _warn_once(self, path: str, message: str) -> None:
        if path not in self._warned_paths:
            self._warned_paths.add(path)
            log.warning("%s", message)

    def _open(
        self, path: str, identity: tuple[int, int] | None
    ) -> tuple[int, os.stat_result] | None:
        """Open ``path`` read-only; None if it is gone or is no longer ``identity``."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                self._warn_once(path, f"cannot open {path}: {exc}")
            return None
        st = os.fstat(fd)
        if identity is not None and (st.st_dev, st.st_ino) != identity:
            os.close(fd)  # replaced between stat and open: the next scan sees the new file
            return None
        self._warned_paths.discard(path)
        return fd, st

    def _add(self, path: str, fd: int, st: os.stat_result, position: int) -> _Tail:
        tail = _Tail(path, fd, st, position)
        self._tails[tail.identity] = tail
        return tail

    def _initial_scan(self, saved: list[dict]) -> None:
        found = self._expand()
        by_identity = {(e["dev"], e["ino"]): e for e in saved}
        saved_paths: dict[str, list[dict]] = {}
        for e in saved:
            saved_paths.setdefault(e["path"], []).append(e)
        used: set[tuple[int, int]] = set()

        def resume(path, st, e, how):
            opened = self._open(path, (st.st_dev, st.st_ino))
            if opened is None:
                return
            fd, st = opened
            position = e["offset"]
            if st.st_size < position:
                log.warning(
                    "%s is shorter (%d bytes) than its saved position %d: truncated "
                    "while we were away; reading it from the start",
                    path,
                    st.st_size,
                    position,
                )
                position = 0
            else:
                log.info("%s: resuming at offset %d of %d%s", path, position, st.st_size, how)
            self._add(path, fd, st, position)

        for identity, (path, st) in found.items():  # by (device, inode) first
            e = by_identity.get(identity)
            if e is not None:
                used.add(identity)
                resume(path, st, e, "" if e["path"] == path else f" (was {e['path']})")
        for identity, (path, st) in found.items():  # then by path
            if identity in used or identity in self._tails:
                continue
            at_path = saved_paths.get(path, [])
            same_inode = [
                e for e in at_path if e["ino"] == st.st_ino and (e["dev"], e["ino"]) not in used
            ]
            if same_inode:  # the device number changed (a remount); the inode is the same
                e = same_inode[0]
                used.add((e["dev"], e["ino"]))
                resume(path, st, e, f" (device {e['dev']} is now {st.st_dev})")
                continue
            opened = self._open(path, identity)
            if opened is None:
                continue
            fd, st = opened
            if at_path:
                log.warning(
                    "%s is a new file (inode %d, saved inode %s): the old one was rotated "
                    "away or removed while we were away; reading the new one from the start",
                    path,
                    st.st_ino,
                    ", ".join(str(e["ino"]) for e in at_path),
                )
                position = 0
            elif self.from_beginning:
                position = 0
            else:
                position = self._last_line_start(fd, st.st_size)
            log.info("%s: starting at offset %d of %d", path, position, st.st_size)
            self._add(path, fd, st, position)
        for e in saved:  # saved files the patterns no longer find
            identity = (e["dev"], e["ino"])
            if identity in used or identity in self._tails:
                continue
            self._find_rotated(e)

    def _find_rotated(self, e: dict) -> None:
        """A saved file we did not find: if its directory still holds its inode under another
        name (rotated while we were away), read it to its end; otherwise forget it."""
        directory = os.path.dirname(e["path"]) or "."
        identity = (e["dev"], e["ino"])
        try:
            with os.scandir(directory) as entries:
                candidates = [d.path for d in entries if d.inode() == e["ino"]]
        except OSError:
            candidates = []
        for path in candidates:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != identity:
                continue
            if path == e["path"]:
                log.info("%s is no longer among the files to follow; forgetting it", path)
                return
            if st.st_size < e["offset"]:
                log.warning(
                    "%s has the inode of %s but is shorter than its saved position; not reading it",
                    path,
                    e["path"],
                )
                return
            if st.st_size == e["offset"]:
                log.info(
                    "%s was rotated to %s while we were away; it was read completely",
                    e["path"],
                    path,
                )
                return
            opened = self._open(path, identity)
            if opened is None:
                return
            fd, st = opened
            log.warning(
                "%s was rotated to %s while we were away; reading its last %d bytes",
                e["path"],
                path,
                st.st_size - e["offset"],
            )
            tail = self._add(path, fd, st, e["offset"])
            tail.orphaned_since = time.monotonic()
            return
        log.warning(
            "%s (inode %d) is gone; lines written to it after offset %d, if any, were not shipped",
            e["path"],
            e["ino"],
            e["offset"],
        )

    def _last_line_start(self, fd: int, size: int) -> int:
        """Where the last (possibly partial) line of the file starts: tail -F's "end"."""
        pos = size
        floor = max(0, size - self.max_line_bytes)
        while pos > floor:
            start = max(floor, pos - 65536)
            data = os.pread(fd, pos - start, start)
            nl = data.rfind(b"\n")
            if nl >= 0:
                return start + nl + 1
            pos = start
        return 0 if floor == 0 else size

    def _scan(self) -> None:
        """Pick up new files and notice rotated or removed ones."""
        found = self._expand()
        now = time.monotonic()
        for identity, (path, st) in found.items():
            tail = self._tails.get(identity)
            if tail is not None:
                if tail.path != path:
                    log.info("%s was renamed to %s", tail.path, path)
                    tail.path = path
                if tail.orphaned_since is not None:
                    log.info("%s is back", path)
                    tail.orphaned_since = None
                continue
            opened = self._open(path, identity)
            if opened is None:
                continue
            fd, st = opened
            log.info("%s: new file, reading from the start", path)
            self._add(path, fd, st, 0)
        for identity, tail in self._tails.items():
            if identity not in found and tail.orphaned_since is None:
                tail.orphaned_since = now
                tail.last_data = now
                log.info("%s was rotated or removed; reading the old file to its end", tail.path)

    # --- reading and sending -------------------------------------------------------------

    def _read(self, tail: _Tail, budget: int) -> int:
        """Read up to ``budget`` bytes of new lines and send them; returns bytes read."""
        now = time.monotonic()
        if now < tail.retry_at:
            return 0
        size = os.fstat(tail.fd).st_size
        position = tail.read_pos + len(tail.pending)
        if size < position:
            log.warning(
                "%s was truncated (%d bytes, we were at %d); reading it from the start",
                tail.path,
                size,
                position,
            )
            self._rewind(tail, 0)
            tail.committed = 0
            position = 0
        used = 0
        while used < budget and position < size:
            data = os.pread(tail.fd, min(_CHUNK, budget - used), position)
            if not data:
                break
            used += len(data)
            position += len(data)
            tail.last_data = now
            buf = tail.pending + data if tail.pending else data
            base, start = tail.read_pos, 0
            while True:
                nl = buf.find(b"\n", start)
                if nl < 0:
                    break
                if not self._send(tail, buf[start:nl], base + nl + 1):
                    tail.read_pos, tail.pending = base + start, b""
                    return used
                start = nl + 1
            tail.read_pos = base + start
            rest = buf[start:]
            while len(rest) >= self.max_line_bytes:
                log.warning(
                    "%s: a line longer than %d bytes at offset %d; sending it in pieces",
                    tail.path,
                    self.max_line_bytes,
                    tail.read_pos,
                )
                piece, rest = rest[: self.max_line_bytes], rest[self.max_line_bytes :]
                if not self._send(tail, piece, tail.read_pos + len(piece)):
                    tail.pending = b""
                    return used
                tail.read_pos += len(piece)
            tail.pending = rest
        return used

    def _key(self, line: bytes) -> bytes | None:
        stripped = line.lstrip()
        if not stripped.startswith(b"{"):
            return None
        try:
            doc = json.loads(line)
        except Exception:  # not JSON, not UTF-8, nested too deeply: no key
            return None
        if not isinstance(doc, dict):
            return None
        value = doc.get(self.key_field)
        if value is None:
            return None
        return str(value).encode()

    def _send(self, tail: _Tail, line: bytes, end: int) -> bool:
        """Send one line ending at file offset ``end``; False (and a pause) if the producer
        refused it."""
        key = self._key(line) if self.key_field else None
        try:
            future = self.producer.send(self.topic, line, key=key)
        except ProducerClosedError:
            raise
        except Exception as exc:  # no broker, no such topic, buffer full, ZooKeeper down, ...
            self._send_failures += 1
            delay = self._backoff(self._send_failures)
            log.error("cannot send to %s: %s; trying again in %.1f s", self.topic, exc, delay)
            self._send_retry_at = time.monotonic() + delay
            return False
        self._send_failures = 0
        cost = len(line) + (len(key) if key else 0) + _LINE_COST
        tail.inflight.append((end, cost, future))
        tail.inflight_bytes += cost
        self._inflight_bytes += cost
        self.lines_sent += 1
        return True

    def _backoff(self, failures: int) -> float:
        return min(self.max_retry_backoff, self.retry_backoff * 2 ** min(failures - 1, 16))

    def _collect(self, tail: _Tail) -> None:
        """Move the committed position over the acknowledged prefix of the sent lines; on a
        failed delivery, go back to the committed position and send again after a pause."""
        queue = tail.inflight
        while queue:
            end, cost, future = queue[0]
            if not future.done():
                return
            queue.popleft()
            tail.inflight_bytes -= cost
            self._inflight_bytes -= cost
            error = future.exception(0)
            if error is None:
                tail.committed = end
                tail.failures = 0
                self.lines_acked += 1
                continue
            self.lines_failed += 1
            tail.failures += 1
            delay = self._backoff(tail.failures)
            log.error(
                "%s: delivery of the line ending at offset %d failed: %s; sending again "
                "from offset %d in %.1f s",
                tail.path,
                end,
                error,
                tail.committed,
                delay,
            )
            self._rewind(tail, tail.committed)
            tail.retry_at = time.monotonic() + delay
            return

    def _rewind(self, tail: _Tail, offset: int) -> None:
        """Forget the lines sent after ``offset`` (their outcome no longer matters) and read
        again from there."""
        self._inflight_bytes -= tail.inflight_bytes
        tail.inflight.clear()
        tail.inflight_bytes = 0
        tail.read_pos, tail.pending = offset, b""

    def _retire(self) -> None:
        """Close rotated-away or removed files that are read, acknowledged and quiet."""
        now = time.monotonic()
        for identity, tail in list(self._tails.items()):
            if tail.orphaned_since is None or now < tail.retry_at:
                continue
            if (
                now - tail.last_data < self.rotate_wait
                or now - tail.orphaned_since < self.rotate_wait
            ):
                continue
            try:
                size = os.fstat(tail.fd).st_size
            except OSError:
                size = tail.read_pos
            if size > tail.read_pos + len(tail.pending):
                continue  # more to read
            if tail.pending and not tail.inflight:
                log.warning("%s: its last line has no newline; sending it as it is", tail.path)
                if self._send(tail, tail.pending, tail.read_pos + len(tail.pending)):
                    tail.read_pos += len(tail.pending)
                    tail.pending = b""
                continue
            if tail.inflight or tail.pending:
                continue
            log.info(
                "%s: finished the rotated or removed file at offset %d", tail.path, tail.committed
            )
            os.close(tail.fd)
            del self._tails[identity]

    # --- state ---------------------------------------------------------------------------

    @staticmethod
    def _doc_of(entries: list[dict]) -> dict:
        files = sorted(
            (
                {"path": e["path"], "dev": e["dev"], "ino": e["ino"], "offset": e["offset"]}
                for e in entries
            ),
            key=lambda e: (e["path"], e["dev"], e["ino"]),
        )
        return {"version": STATE_VERSION, "files": files}

    def positions(self) -> list[dict]:
        """Committed position of every followed file: path, dev, ino, offset."""
        return self._doc_of(
            [
                {"path": t.path, "dev": t.dev, "ino": t.ino, "offset": t.committed}
                for t in list(self._tails.values())
            ]
        )["files"]

    def commit(self) -> bool:
        """Write the state file if the committed positions changed; True if written."""
        if not self.state_file:
            return False
        doc = {"version": STATE_VERSION, "files": self.positions()}
        if doc == self._saved_doc:
            return False
        try:
            atomic_write(self.state_file, (json.dumps(doc, indent=1) + "\n").encode())
        except OSError as exc:
            if not self._state_error_logged:
                log.error(
                    "cannot write the state file %s: %s (trying again every loop)",
                    self.state_file,
                    exc,
                )
                self._state_error_logged = True
            return False
        if self._state_error_logged:
            log.info("the state file %s is written again", self.state_file)
            self._state_error_logged = False
        self._saved_doc = doc
        return True


# --- the command -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The shipper's options, for ``python -m consumers.shipper`` and ``headrace ship``."""
    parser.add_argument("files", nargs="+", help="files or glob patterns to follow (quote globs)")
    parser.add_argument("--topic", required=True)
    parser.add_argument(
        "--bootstrap-server", help="host:port[,host:port...] of any broker (default 127.0.0.1:9092)"
    )
    parser.add_argument("--zookeeper", help="host:port[/chroot] to find the brokers instead")
    parser.add_argument(
        "--state-file",
        help="where read positions are kept (JSON); without it "
        "a restart starts at the files' ends again",
    )
    parser.add_argument("--key-field", help="a JSON field of each line to key the message by")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="read files that have no saved position from their start",
    )
    parser.add_argument("--poll-interval", type=float, default=0.25, help="seconds (default 0.25)")
    parser.add_argument("--compression", default="none", choices=sorted(CODECS_BY_NAME))


def run(args: argparse.Namespace) -> int:
    """Ship until SIGTERM or SIGINT, then deliver what was sent, commit and return 0; 2 for
    bad arguments or an unusable state file."""
    bootstrap = getattr(args, "bootstrap_server", None)
    zookeeper = getattr(args, "zookeeper", None)
    if not bootstrap and not zookeeper:
        bootstrap = "127.0.0.1:9092"
    state_file = getattr(args, "state_file", None)
    try:
        shipper = Shipper(
            args.topic,
            list(args.files),
            bootstrap_servers=bootstrap,
            zookeeper=zookeeper,
            state_file=state_file,
            key_field=getattr(args, "key_field", None),
            from_beginning=bool(getattr(args, "from_beginning", False)),
            poll_interval=float(getattr(args, "poll_interval", None) or 0.25),
            compression=getattr(args, "compression", None) or "none",
            enable_idempotence=getattr(args, "idempotence", None),
        )
    except (ValueError, KafkaError) as exc:
        log.error("%s", exc)
        return 2
    if not state_file:
        log.warning("no state file: read positions are not kept across restarts")

    def on_signal(signum, frame):  # no logging here: it may interrupt a log call
        shipper.request_stop(signal.Signals(signum).name)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        log.info("shipping %s to %s", " ".join(shipper.patterns), shipper.topic)
        shipper.run()
    except StateError as exc:
        log.error("%s", exc)
        shipper.close(0)
        return 2
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped: %d lines sent, %d acknowledged", shipper.lines_sent, shipper.lines_acked)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m consumers.shipper",
        description="Follow log files and send their lines to a topic.",
    )
    add_arguments(parser)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
