"""One loader worker: a member of the group that turns its partitions into Parquet files.

The commit protocol, per chunk of a partition (offsets [first, next)):

1. write a manifest ``<first>-<next>.json`` naming every file of the chunk;
2. publish each file atomically (rename, or one whole-object write);
3. move ``/consumers/<group>/offsets/<topic>/<p>`` from ``first`` to ``next`` with a
   compare-and-set that also checks, in the same transaction, that this worker's ZooKeeper
   session still owns the partition;
4. delete the manifest.

Reconciling (after every rebalance, before fetching) settles each partition's committed offset
with the manifests a dead worker left between steps 1 and 4: see ``loaders.reconcile``.

A stored batch that cannot be decoded becomes one dead letter (its bytes, its offset range)
at its place in the offsets, and the load goes on after it; a rerun meets it at the same
place, so chunks are cut the same way.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid

from kazoo.exceptions import KazooException

from broker.protocol import zookeeper as zk_layout
from broker.protocol.errors import OffsetOutOfRangeError
from consumers.consumer import Block, CorruptBatchError
from consumers.group import GroupConsumer

from .avroschemas import RegistrySchemas
from .blocks import decode_value_block, offset_index
from .chunk import Chunk, Limits, parquet_bytes
from .config import LoaderConfig
from .convert import Converter, ValueFormat, dead_batch, rest_of
from .layout import (
    DEAD_LETTER,
    QUARANTINE,
    bucket_dir,
    manifest_dir,
    manifest_name,
    tmp_dir,
)
from .reconcile import reconcile
from .registry import (
    FencedError,
    GapError,
    LoaderError,
    ZkSchemas,
    check_owner,
    commit_offset,
    read_offset,
    read_plan,
)
from .schema import FixedSchemas, load_declared_schema
from .storage import Storage

log = logging.getLogger(__name__)


class Worker:
    """See the module docstring.  ``config`` is the load's LoaderConfig; ``report``
    receives one dict per committed chunk (and per recovered chunk or gap)."""

    def __init__(
        self,
        config: LoaderConfig,
        report=lambda event: None,
        parent_pid: int | None = None,
        stop_event=None,
    ):
        self.config = config
        self.stop_event = stop_event
        self.report = report
        self.parent_pid = parent_pid
        self.group_name = config.group
        self.topics = config.topics
        self.store = Storage(config.url, config.storage_options)
        self.limits = Limits(
            config.max_rows, config.max_bytes, config.max_open_writers, config.max_chunk_bytes
        )
        self.follow = config.follow
        self.allow_gaps = config.allow_gaps
        self.max_future_ms = config.max_future_ms
        self.compression = config.parquet_compression
        consumer_id = (
            f"{self.group_name}_{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.group = GroupConsumer(
            self.group_name,
            self.topics,
            config.zookeeper,
            zookeeper_credentials=config.zookeeper_credentials,
            consumer_id=consumer_id,
            kind="loader",
            auto_offset_reset="smallest",
            session_timeout_ms=config.session_timeout_ms,
            rebalance_backoff_ms=50,
            fetch_max_wait_ms=200,
            auto_commit=False,
            on_assign=self._on_assign,
            # JSON values are read as lines of one buffer (blocks.py), the others as lists
            columnar=decode_value_block if config.format == "json" else True,
            # gaps are handled (and reported) here, not reset
            consumer_options={"auto_offset_reset": "none", "max_partition_fetch_bytes": 4 << 20},
            security=config.security,
        )
        self.zk = self.group.zk
        self.cluster = self.group.cluster
        if config.schema_file:
            schemas = FixedSchemas(load_declared_schema(config.schema_file))
        else:
            schemas = ZkSchemas(self.zk, self.group_name)
        self.avro = RegistrySchemas(config) if config.format == "avro" else None
        self.converter = Converter(
            ValueFormat(config.format),
            schemas,
            config.time_field,
            # pyarrow's pool also takes what other workers leave idle
            threads=True,
            avro=self._avro_values if self.avro is not None else None,
        )
        self.plan: dict[tuple[str, int], tuple[int, int]] = {}
        self.readers: dict[tuple[str, int], int] = {}  # Avro: the plan's reader schema ids
        self.chunks: dict[tuple[str, int], Chunk] = {}
        self.versions: dict[tuple[str, int], int | None] = {}
        self.finished: set[tuple[str, int]] = set()
        self._plan_changed = False
        self._reached: dict[tuple[str, int], int] = {}  # offsets seen committed at the plan's end
        self._success_dirs: set[str] = set()
        self.tmp_root = tmp_dir("", self.group_name).lstrip("/")
        self.tmp = f"{self.tmp_root}/{consumer_id}"  # one per worker: the dead ones' are swept

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        last_done_check = 0.0
        try:
            self.group.start()
            if self.follow:
                from kazoo.recipe.watchers import DataWatch

                DataWatch(self.zk, zk_layout.plan_path(self.group_name), self._on_plan)
            while True:
                if self.parent_pid is not None and os.getppid() != self.parent_pid:
                    log.warning("the load's parent process is gone; this worker stops")
                    return
                if self.stop_event is not None and self.stop_event.is_set():
                    return
                idle = self._all_mine_finished() and not self.follow
                if idle and self.group.rebalance_pending and self._plan_done():
                    # another worker left because all is loaded: no rebalance for nothing
                    self._remove_own_tmp()
                    return
                try:
                    messages = self.group.poll(0.05 if idle else 0.3, max_messages=200_000)
                except OffsetOutOfRangeError as exc:
                    self._out_of_range(exc)
                    continue
                except CorruptBatchError as exc:
                    self._dead_batch(exc)
                    continue
                if messages:
                    self._feed_all(messages)
                self._finish_reached()
                if self._plan_changed:
                    try:
                        self._extend_plan()
                    except KazooException as exc:  # ZooKeeper busy or reconnecting: later
                        log.warning("cannot read the plan yet (%r)", exc)
                        self._plan_changed = True
                if not self.follow and self.group.owned is not None and self._all_mine_finished():
                    now = time.monotonic()
                    if now - last_done_check >= 0.1:
                        last_done_check = now
                        if self._plan_done():
                            self._remove_own_tmp()
                            return
        finally:
            self.group.close()

    def _remove_own_tmp(self) -> None:
        if self.store.rename_based:
            self.store.clear_dir(self.tmp)

    def _feed_all(self, blocks: list) -> None:
        for block in blocks:
            key = (block.topic, block.partition)
            if key in self.chunks:
                self._feed(key, block)

    def _feed(self, key: tuple[str, int], block) -> None:
        end, plan_ms = self.plan.get(key, (-1, 0))
        chunk = self.chunks[key]
        offsets = block.offsets
        if offsets[0] < chunk.next or offsets[-1] >= end:
            lo = offset_index(offsets, chunk.next)
            hi = offset_index(offsets, end)
            block = block[lo:hi]
        if not len(block):
            return
        converted = self.converter.convert(key[0], key[1], block, plan_ms + self.max_future_ms)
        while True:
            taken, cut = chunk.take(block, converted)
            if cut:
                chunk = self._cut(key, chunk.next)
                if chunk is None:
                    return  # the partition was lost; the group rebalances
            if taken == len(block):
                return
            block, converted = block[taken:], rest_of(converted, taken)

    def _dead_batch(self, err: CorruptBatchError) -> None:
        """Keep a batch that cannot be decoded as a dead letter in the current chunk, as if it
        were a record at its first offset, and read on after it."""
        key = (err.topic, err.partition)
        chunk = self.chunks.get(key)
        if chunk is None or err.first_offset >= self.plan.get(key, (-1, 0))[0]:
            self.group.consumer.seek(err.topic, err.partition, err.first_offset)  # not in this plan
            return
        log.error("CORRUPT BATCH: %s; kept in %s/_dead_letters", err, err.topic)
        offset = max(err.first_offset, chunk.next)  # (a committed offset may lie inside it)
        block = Block(err.topic, err.partition, [offset], [-1], [None], [err.raw])
        converted = dead_batch(
            err.topic, err.partition, err.first_offset, err.last_offset, err.reason, err.raw
        )
        while True:
            taken, cut = chunk.take(block, converted)
            if taken:
                chunk.next = err.next_offset
            if cut:
                chunk = self._cut(key, chunk.next)
                if chunk is None:
                    return  # the partition was lost; the group rebalances
            if taken:
                break
        self.group.consumer.seek(err.topic, err.partition, err.next_offset)

    def _finish_reached(self) -> None:
        consumer = self.group.consumer
        for key, chunk in list(self.chunks.items()):
            if key in self.finished:
                continue
            end = self.plan.get(key, (-1, 0))[0]
            if key not in consumer.positions:
                continue
            if consumer.position(*key) >= end and not consumer.buffered(*key):
                if (chunk.next < end or chunk.writers) and self._cut(key, end) is None:
                    continue  # lost the partition; the group rebalances
                self.finished.add(key)
                consumer.pause(key)

    def _out_of_range(self, exc: OffsetOutOfRangeError) -> None:
        """Retention deleted offsets this worker had not loaded yet (or the log shrank)."""
        key = (getattr(exc, "topic", None), getattr(exc, "partition", None))
        start, position = getattr(exc, "log_start", -1), getattr(exc, "position", -1)
        if key not in self.chunks or not (0 <= position < start):
            raise LoaderError(
                f"{exc}; the log no longer holds what the plan expects "
                "(was the topic re-created or truncated?)"
            ) from exc
        gap = (
            f"{key[0]}-{key[1]}: offsets {position}..{start - 1} ({start - position} messages) "
            "were deleted by retention before they were loaded"
        )
        if not self.allow_gaps:
            raise GapError(gap + "; rerun with --allow-gaps to skip them") from exc
        log.error("GAP: %s; skipped (--allow-gaps)", gap)
        self.report(
            {"type": "gap", "topic": key[0], "partition": key[1], "first": position, "next": start}
        )
        self.group.consumer.seek(key[0], key[1], start)

    def _all_mine_finished(self) -> bool:
        return all(key in self.finished for key in self.chunks)

    def _plan_done(self) -> bool:
        try:
            return self._plan_complete()
        except KazooException as exc:  # ZooKeeper busy or reconnecting: ask again later
            log.warning("cannot check the plan's progress yet (%r)", exc)
            return False

    def _plan_complete(self) -> bool:
        """Whether every partition of the plan reached its end (partitions seen there once
        are not read again)."""
        plan = read_plan(self.zk, self.group_name)["partitions"]
        for topic in self.topics:
            for p in self.cluster.partitions(topic):
                entry = plan.get(f"{topic}/{p}")
                if entry is None or self._reached.get((topic, p), -1) >= entry["end"]:
                    continue
                committed, _ = read_offset(self.zk, self.group_name, topic, p)
                if committed is None or committed < entry["end"]:
                    return False
                self._reached[(topic, p)] = committed
        return True

    def _on_plan(self, data, stat, event=None):
        self._plan_changed = True

    def _extend_plan(self) -> None:
        self._plan_changed = False
        self._load_plan()
        consumer = self.group.consumer
        for key in list(self.finished & self.chunks.keys()):
            end = self.plan.get(key, (-1, 0))[0]
            if end > self.chunks[key].next:
                self.finished.discard(key)
                consumer.seek(key[0], key[1], self.chunks[key].next)
                consumer.resume(key)

    # --- commit protocol -----------------------------------------------------------------

    def _cut(self, key: tuple[str, int], next_offset: int) -> Chunk | None:
        """Publish the chunk's files and commit ``next_offset``; returns the next chunk, or
        None when the partition turned out to belong to another worker now."""
        topic, partition = key
        chunk = self.chunks[key]
        files = chunk.files()
        started = time.monotonic()
        mdir = manifest_dir("", self.group_name, topic, partition).lstrip("/")
        mrel = f"{mdir}/{manifest_name(chunk.start, next_offset)}"
        try:
            return self._publish_and_commit(key, chunk, files, next_offset, mrel, started)
        except FencedError as exc:
            log.warning("%s; giving the partition up", exc)
            self._drop(key)
            return None

    def _publish_and_commit(self, key, chunk, files, next_offset, mrel, started) -> Chunk:
        topic, partition = key
        written = late = 0
        if files:
            manifest = {
                "topic": topic,
                "partition": partition,
                "first": chunk.start,
                "next": next_offset,
                "files": [f.rel for f in files],
                "worker": self.group.consumer_id,
            }
            check_owner(self.zk, self.group_name, topic, partition, self.group.consumer_id)
            self.store.write_small(mrel, json.dumps(manifest).encode(), self.tmp)
            for f in files:
                data = parquet_bytes(f.table, self.compression)
                if f.key not in (QUARANTINE, DEAD_LETTER) and self._hour_complete(topic, f.key):
                    late += f.table.num_rows
                self.store.publish(f.rel, data, self.tmp)
                written += len(data)
        self.versions[key] = commit_offset(
            self.zk,
            self.group_name,
            topic,
            partition,
            next_offset,
            self.versions.get(key),
            self.group.consumer_id,
        )
        if files:
            try:
                self.store.delete(mrel)
            except OSError as exc:  # harmless: deleted when the next worker reconciles
                log.warning("cannot delete manifest %s: %s", mrel, exc)
        counts = chunk.counts()
        self.report(
            {
                "type": "chunk",
                "topic": topic,
                "partition": partition,
                "first": chunk.start,
                "next": next_offset,
                "files": len(files),
                "bytes": chunk.input_bytes,
                "written": written,
                "late": late,
                "conflicts": chunk.conflicts,
                "seconds": time.monotonic() - started,
                **counts,
            }
        )
        new = self.chunks[key] = Chunk(topic, partition, next_offset, self.limits)
        return new

    def _hour_complete(self, topic: str, key: int) -> bool:
        rel = f"{topic}/{bucket_dir(key)}/_SUCCESS"
        if rel in self._success_dirs:
            return True
        if self.store.exists(rel):
            self._success_dirs.add(rel)
            return True
        return False

    def _drop(self, key: tuple[str, int]) -> None:
        self.chunks.pop(key, None)
        self.finished.discard(key)
        self.group.request_rebalance()

    # --- reconciling ---------------------------------------------------------------------

    def _load_plan(self) -> None:
        plan = read_plan(self.zk, self.group_name)["partitions"]
        self.plan = {}
        self.readers = {}
        for name, entry in plan.items():
            topic, p = name.rsplit("/", 1)
            self.plan[(topic, int(p))] = (entry["end"], entry["ms"])
            if "value_schema_id" in entry:
                self.readers[(topic, int(p))] = entry["value_schema_id"]

    def _avro_values(self, topic: str, partition: int):
        """The decoder of a partition's Avro values: the reader schema its plan entry fixed."""
        reader_id = self.readers.get((topic, partition))
        if reader_id is None or self.avro is None:
            raise LoaderError(
                f"the plan of {topic}-{partition} names no reader schema; it was planned by a "
                "load of another --value-format"
            )
        return self.avro.values(reader_id)

    def _on_assign(self, owned: dict[str, list[int]]) -> None:
        self.chunks.clear()
        self.finished.clear()
        self.versions.clear()
        if isinstance(self.converter.schemas, ZkSchemas):
            self.converter.schemas.refresh()
        self._load_plan()
        self._sweep_tmp()
        consumer = self.group.consumer
        consumer.resume(*consumer.paused())
        for topic, partitions in owned.items():
            for p in partitions:
                key = (topic, p)
                planned = self.plan.get(key, (-1, 0))[0]
                try:
                    committed, self.versions[key] = reconcile(self, topic, p, planned)
                except FencedError as exc:
                    log.warning("%s; rebalancing again", exc)
                    self.group.request_rebalance()
                    continue
                self.chunks[key] = Chunk(topic, p, committed, self.limits)
                if committed >= self.plan.get(key, (-1, 0))[0]:
                    self.finished.add(key)
                    consumer.pause(key)

    def _sweep_tmp(self) -> None:
        """Delete temporary files of workers that are no longer members (killed mid-write)."""
        if not self.store.rename_based:
            return
        live = set(self.zk.get_children(zk_layout.members_path(self.group_name)))
        for member in self.store.list_dirs(self.tmp_root):
            if member in live:
                continue
            # (A member missing from the registry may only be between two sessions, still
            # writing: Storage.publish writes a swept temporary file again.)
            self.store.clear_dir(f"{self.tmp_root}/{member}")
