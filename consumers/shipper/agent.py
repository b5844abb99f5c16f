"""The shipping loop: follows files like ``tail -F``, sends their lines through a producer and
commits each file's position once the broker acknowledged the lines before it."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from ..producer import Producer, ProducerClosedError
from ..sasl import SaslAuthenticationError
from .files import FileFinder, Tail
from .follow import Change, Retire, Seen, quiet_for, read_from, retire, scan_changes
from .resume import open_at_start
from .state import StateFile, state_doc

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_LINE_COST = 64  # bookkeeping per in-flight line, counted against max_inflight_bytes


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
        self.state = StateFile(state_file) if state_file else None
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

        self._files = FileFinder(self.patterns)
        self._tails: dict[tuple[int, int], Tail] = {}
        self._inflight_bytes = 0
        self._started = False
        self._closed = False
        self._stop = threading.Event()
        self._stop_requested: str | None = None  # set by signal handlers, which must not lock
        self._next_scan = 0.0
        self._send_retry_at = 0.0
        self._send_failures = 0
        # counters, for tests and monitoring
        self.lines_sent = 0
        self.lines_acked = 0
        self.lines_failed = 0
        self.bytes_acked = 0
        self.last_commit_time = 0.0  # time.time() of the last state file write

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Load the state file and open the files; called by run()."""
        if self._started:
            return
        saved = self.state.load() if self.state else []
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
                except SaslAuthenticationError:
                    raise  # the brokers refused our login: trying again changes nothing
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

    def _add(self, path: str, fd: int, st: os.stat_result, position: int) -> Tail:
        tail = Tail(path, fd, st, position)
        self._tails[tail.identity] = tail
        return tail

    def _initial_scan(self, saved: list[dict]) -> None:
        for tail in open_at_start(self._files, saved, self.from_beginning, self.max_line_bytes):
            self._tails[tail.identity] = tail

    def _scan(self) -> None:
        """Pick up new files and notice rotated or removed ones."""
        found = self._files.expand()
        now = time.monotonic()
        followed = {i: (t.path, t.orphaned_since is not None) for i, t in self._tails.items()}
        paths = {identity: path for identity, (path, _) in found.items()}
        for change, identity, path in scan_changes(followed, paths):
            tail = self._tails.get(identity)
            if change is Change.RENAMED:
                log.info("%s was renamed to %s", tail.path, path)
                tail.path = path
            elif change is Change.BACK:
                log.info("%s is back", path)
                tail.orphaned_since = None
            elif change is Change.GONE:
                tail.orphaned_since = now
                tail.last_data = now
                log.info("%s was rotated or removed; reading the old file to its end", tail.path)
            else:
                opened = self._files.open(path, identity)
                if opened is None:
                    continue
                fd, st = opened
                log.info("%s: new file, reading from the start", path)
                self._add(path, fd, st, 0)

    # --- reading and sending -------------------------------------------------------------

    def _read(self, tail: Tail, budget: int) -> int:
        """Read up to ``budget`` bytes of new lines and send them; returns bytes read."""
        now = time.monotonic()
        if now < tail.retry_at:
            return 0
        size = os.fstat(tail.fd).st_size
        seen, position = read_from(size, tail.end)
        if seen is Seen.TRUNCATED:
            log.warning(
                "%s was truncated (%d bytes, we were at %d); reading it from the start",
                tail.path,
                size,
                tail.end,
            )
            self._rewind(tail, 0)
            tail.committed = 0
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

    def _send(self, tail: Tail, line: bytes, end: int) -> bool:
        """Send one line ending at file offset ``end``; False (and a pause) if the producer
        refused it."""
        key = self._key(line) if self.key_field else None
        try:
            future = self.producer.send(self.topic, line, key=key)
        except (ProducerClosedError, SaslAuthenticationError):
            raise  # a refused login is not tried again: the settings are wrong
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

    def _collect(self, tail: Tail) -> None:
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
                self.bytes_acked += cost - _LINE_COST
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

    def _rewind(self, tail: Tail, offset: int) -> None:
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
            if not quiet_for(
                now, tail.orphaned_since, tail.last_data, tail.retry_at, self.rotate_wait
            ):
                continue
            try:
                size = os.fstat(tail.fd).st_size
            except OSError:
                size = tail.read_pos
            step = retire(size, tail.end, bool(tail.pending), bool(tail.inflight))
            if step is Retire.SEND_LAST_LINE:
                log.warning("%s: its last line has no newline; sending it as it is", tail.path)
                if self._send(tail, tail.pending, tail.end):
                    tail.read_pos += len(tail.pending)
                    tail.pending = b""
            elif step is Retire.CLOSE:
                log.info(
                    "%s: finished the rotated or removed file at offset %d",
                    tail.path,
                    tail.committed,
                )
                os.close(tail.fd)
                del self._tails[identity]

    # --- state ---------------------------------------------------------------------------

    def _state_doc(self) -> dict:
        return state_doc(
            [
                {"path": t.path, "dev": t.dev, "ino": t.ino, "offset": t.committed}
                for t in list(self._tails.values())
            ]
        )

    def positions(self) -> list[dict]:
        """Committed position of every followed file: path, dev, ino, offset."""
        return self._state_doc()["files"]

    def commit(self) -> bool:
        """Write the state file if the committed positions changed; True if written."""
        if not self.state:
            return False
        if not self.state.save(self._state_doc()):
            return False
        self.last_commit_time = time.time()
        return True
