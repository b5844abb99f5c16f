"""``headrace load``: plan a run, start the worker processes, report, mark complete hours.

    headrace load --zookeeper 127.0.0.1:2181 --topic access --group warehouse \\
        --to ./warehouse --workers 2 --format json --time-field ts --until-caught-up

Scheduled mode (``--until-caught-up``, the default): snapshot every partition's end offset
into the run plan, load exactly up to it, print a summary and exit 0; any failure gives a
message and a non-zero exit.  ``--follow`` plans again every ``--interval`` seconds and keeps
loading with the same commit protocol until interrupted.  After a complete run, every
``dt=/hour=`` directory whose hour ended before the plan was taken gets a ``_SUCCESS`` marker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_module
import signal
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from broker.protocol.errors import KafkaError
from consumers.cluster import ClusterClient

from .layout import HOUR_MS, hour_of_dir
from .registry import LoaderError, make_plan, plan_path, read_offset, read_plan
from .schema import SchemaError, load_declared_schema
from .storage import Storage, StorageError
from .worker import run_worker, worker_main

log = logging.getLogger(__name__)

DEFAULTS = {
    "workers": 1,
    "format": "json",
    "time_field": None,
    "schema_file": None,
    "max_rows": 1_000_000,
    "max_bytes": 256 * 1024 * 1024,
    "max_open_writers": 32,
    "max_chunk_bytes": 256 * 1024 * 1024,
    "allow_gaps": False,
    "follow": False,
    "interval": 60.0,
    "storage_options": {},
    "parquet_compression": "snappy",
    "session_timeout_ms": 6000,
    "max_future_ms": 86_400_000,
    "success_lookback_days": 7,
    "log_level": "WARNING",
}


class Stats:
    """What the workers reported, per partition."""

    FIELDS = (
        "rows",
        "dead_letters",
        "quarantined",
        "late",
        "conflicts",
        "bytes",
        "written",
        "files",
    )

    def __init__(self):
        self.parts: dict[tuple[str, int], dict] = {}
        self.recovered: list[dict] = []
        self.gaps: list[dict] = []
        self.errors: list[str] = []
        self.failed: set[int] = set()  # workers that reported an error

    def add(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "error":
            self.errors.append(f"worker {event['worker']}: {event['message']}")
            self.failed.add(event["worker"])
            return
        if kind == "recovered":
            self.recovered.append(event)
            return
        if kind == "gap":
            self.gaps.append(event)
            return
        if kind != "chunk":
            return
        key = (event["topic"], event["partition"])
        p = self.parts.setdefault(key, {f: 0 for f in self.FIELDS} | {"first": None, "next": None})
        for f in self.FIELDS:
            p[f] += event.get(f, 0)
        p["first"] = event["first"] if p["first"] is None else min(p["first"], event["first"])
        p["next"] = event["next"] if p["next"] is None else max(p["next"], event["next"])

    def total(self, field: str) -> int:
        return sum(p[field] for p in self.parts.values())


def load(config: dict, out=None, err=None) -> int:
    """Run a load; returns the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    config = DEFAULTS | {k: v for k, v in config.items() if v is not None}
    started = time.monotonic()
    try:
        store = Storage(config["url"], config["storage_options"])
        store.check()  # fail now, not in every worker, if the warehouse is unreachable
        if config["schema_file"]:
            declared = load_declared_schema(config["schema_file"])
            field = config["time_field"]
            if field and any(field not in fields for fields in declared.values()):
                raise SchemaError(
                    f"--time-field {field} is not in the declared schema "
                    f"{config['schema_file']}; declare it (e.g. as string or double)"
                )
        for name in ("workers", "max_rows", "max_bytes", "max_open_writers", "max_chunk_bytes"):
            if config[name] < 1:
                raise LoaderError(f"--{name.replace('_', '-')} must be at least 1")
    except (StorageError, SchemaError, LoaderError) as exc:
        print(f"headrace load: {exc}", file=err)
        return 2
    workers = _start_workers(config)  # before this process starts any thread of its own
    zk = KazooClient(hosts=config["zookeeper"], timeout=10)
    try:
        zk.start(timeout=15)
    except Exception as exc:
        _stop_workers(workers)
        print(f"headrace load: cannot reach ZooKeeper at {config['zookeeper']}: {exc}", file=err)
        return 2
    cluster = ClusterClient(zookeeper=config["zookeeper"], client_id="headrace-loader")
    try:
        for topic in config["topics"]:
            if not zk.exists(f"/brokers/topics/{topic}"):
                _stop_workers(workers)
                print(f"headrace load: unknown topic {topic!r}", file=err)
                return 2
        _check_plan(zk, config["group"])
        stats = Stats()
        while True:
            made = {}

            def plan_now() -> int:
                """Plan (while the workers start); returns how many events the plan holds."""
                plan = made["plan"] = make_plan(zk, cluster, config["group"], config["topics"])
                total = 0
                for name, entry in plan["partitions"].items():
                    topic, p = name.rsplit("/", 1)
                    if topic in config["topics"]:
                        committed, _ = read_offset(zk, config["group"], topic, int(p))
                        total += max(0, entry["end"] - (committed or 0))
                return total

            status = _supervise(config, zk, cluster, err, stats, plan_now, workers)
            workers = None  # a second pass starts new ones
            plan = made["plan"]
            if (
                status
                or config["follow"]
                or not plan["resumed"]
                or not _progress_left(zk, cluster, config)[0]
            ):
                break
            # This run finished the plan of an interrupted one (same chunks, same files); now
            # load what arrived since, up to the current end.
            log.info("finished an interrupted run's plan; planning again")
        complete, lag = _progress_left(zk, cluster, config)
        if complete and not config["follow"]:
            marked = mark_complete_hours(store, config, read_plan_partitions(zk, config))
        else:
            marked = 0
        _summary(out, stats, lag, marked, time.monotonic() - started)
        for message in stats.errors:
            print(f"headrace load: {message}", file=err)
        if not complete and not config["follow"]:
            left = sum(v for v in lag.values() if v > 0)
            print(
                f"headrace load: the run did not finish its plan ({left} messages left); "
                "run it again to resume from the committed offsets",
                file=err,
            )
            return 1
        return status
    except (LoaderError, StorageError) as exc:
        print(f"headrace load: {exc}", file=err)
        return 1
    except (KazooException, KazooTimeoutError) as exc:
        print(
            f"headrace load: ZooKeeper at {config['zookeeper']} failed the load: "
            f"{type(exc).__name__} {exc}".rstrip(),
            file=err,
        )
        return 1
    finally:
        if workers is not None:  # never let go
            _stop_workers(workers)
        cluster.close()
        zk.stop()
        zk.close()


def read_plan_partitions(zk, config) -> dict:
    return read_plan(zk, config["group"])["partitions"]


def _check_plan(zk, group: str) -> None:
    """LoaderError if the group's saved plan is not one a loader wrote (it would fail the
    planner and every worker with a traceback)."""
    try:
        plan = read_plan(zk, group)
        for key, entry in plan["partitions"].items():
            int(key.rsplit("/", 1)[1])
            int(entry["end"])
            int(entry["ms"])
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise LoaderError(
            f"the loader plan at {plan_path(group)} in ZooKeeper is malformed "
            f"({type(exc).__name__}: {exc}); it was not written by a loader"
        ) from None


def _start_workers(config: dict):
    """(workers, their report queue, the event that lets them go).  Worker processes start
    now and wait for the plan; they are forked when this process has no other thread yet
    (nothing to import again), spawned otherwise.  memory:// lives inside one process, so
    its workers are threads of this one, started later."""
    if Storage(config["url"], config["storage_options"]).protocol == "memory":
        events = queue_module.Queue()
        stop_event = threading.Event()
        return (
            [_ThreadWorker(config, events, i, stop_event) for i in range(config["workers"])],
            events,
            None,
        )
    fork = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if fork else "spawn")
    # Made in the spawn context: forked workers inherit them, and replacements started
    # later (spawned, as this process runs threads by then) can be handed them too.
    shared = multiprocessing.get_context("spawn")
    events = shared.Queue()
    go = shared.Event()  # set once the plan is saved
    procs = [
        ctx.Process(target=worker_main, args=(config, events, i, os.getpid(), go), daemon=True)
        for i in range(config["workers"])
    ]
    for p in procs:
        p.start()
    return procs, events, go


def _stop_workers(workers) -> None:
    for p in workers[0]:
        if p.ident is not None and p.is_alive():
            p.terminate()


def _supervise(config: dict, zk, cluster, err, stats: Stats, plan_now, workers=None) -> int:
    """Plan while the workers start up (``plan_now``), let them go, collect their reports,
    and return the run's exit status."""
    procs, events, go = workers or _start_workers(config)
    stopping = []
    terminated: set[int] = set()
    restarts: dict[int, tuple[float, float]] = {}  # worker -> (when it may restart, back-off)

    def stop(signum, frame):
        stopping.append(signum)

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    tty = err.isatty()
    t0 = time.monotonic()
    next_plan = time.monotonic() + config["interval"]
    try:
        try:
            total = plan_now()
        except BaseException:
            _stop_workers((procs, events, go))
            raise
        if go is None:
            for p in procs:
                p.start()
        else:
            go.set()
        while True:
            try:
                stats.add(events.get(timeout=0.05))
                while True:
                    stats.add(events.get_nowait())
            except queue_module.Empty:
                pass
            if tty:
                done = stats.total("rows") + stats.total("dead_letters")
                rate = done / max(time.monotonic() - t0, 1e-9)
                pct = f" ({100 * done / total:.0f}%)" if total and not config["follow"] else ""
                print(
                    f"\rloading: {done:,}{'' if config['follow'] else f' / {total:,}'} events{pct}, "
                    f"{rate:,.0f}/s   ",
                    end="",
                    file=err,
                    flush=True,
                )
            if stopping:
                for p in procs:
                    if p.is_alive():
                        p.terminate()
            if config["follow"] and time.monotonic() >= next_plan and not stopping:
                next_plan = time.monotonic() + config["interval"]
                try:
                    mark_complete_hours(
                        Storage(config["url"], config["storage_options"]),
                        config,
                        read_plan_partitions(zk, config),
                        only_complete=True,
                        zk=zk,
                    )
                    make_plan(zk, cluster, config["group"], config["topics"])
                except (KafkaError, OSError, KazooException) as exc:  # a broker or ZooKeeper
                    log.warning(
                        "cannot plan now (%s); trying again in %.0f s", exc, config["interval"]
                    )
                    try:
                        cluster.refresh(config["topics"], allow_auto_create=False)
                    except (KafkaError, OSError):
                        pass
            if config["follow"] and not stopping:
                _restart_failed(config, procs, events, restarts, err)
            if not any(p.is_alive() for p in procs):
                break
            if stats.failed and not config["follow"]:
                for i, p in enumerate(
                    procs
                ):  # one worker failed: the run has failed; stop the rest
                    if p.is_alive() and i not in stats.failed and i not in terminated:
                        terminated.add(i)
                        p.terminate()
        for p in procs:
            p.join()
        try:
            while True:
                stats.add(events.get_nowait())
        except queue_module.Empty:
            pass
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if tty:
            print(file=err)
    status = 0
    for i, p in enumerate(procs):
        if p.exitcode not in (0, None) and not stopping:
            if p.exitcode < 0 and i not in terminated:
                stats.errors.append(f"worker {i} was killed by signal {-p.exitcode}")
            elif p.exitcode > 0 and i not in stats.failed:
                stats.errors.append(f"worker {i} died (exit status {p.exitcode})")
            status = 1
    if stats.errors:
        status = 1
    if stopping:
        status = 130 if stopping[0] == signal.SIGINT else 143
    return status


def _restart_failed(config: dict, procs: list, events, restarts: dict, err) -> None:
    """With --follow, a worker that died is replaced (after a back-off that doubles up to a
    minute while it keeps dying), so the load goes on with all its workers."""
    now = time.monotonic()
    for i, p in enumerate(procs):
        if p.is_alive() or (p.exitcode is None and not isinstance(p, _ThreadWorker)):
            continue
        when, backoff = restarts.get(i, (0.0, 1.0))
        if when == 0.0:  # just noticed
            restarts[i] = (now + backoff, backoff)
            print(
                f"headrace load: worker {i} stopped (exit status {p.exitcode}); "
                f"starting another in {backoff:.0f} s",
                file=err,
            )
            continue
        if now < when:
            continue
        if isinstance(p, _ThreadWorker):
            replacement = _ThreadWorker(config, events, i, p.stop_event)
        else:  # this process runs threads now: spawn, not fork
            replacement = multiprocessing.get_context("spawn").Process(
                target=worker_main, args=(config, events, i, os.getpid(), None), daemon=True
            )
        replacement.start()
        procs[i] = replacement
        restarts[i] = (0.0, min(backoff * 2, 60.0))


class _ThreadWorker(threading.Thread):
    """A worker as a thread, with the bits of multiprocessing.Process that _supervise uses."""

    def __init__(self, config, events, index, stop_event):
        super().__init__(name=f"loader-worker-{index}", daemon=True)
        self.args = (config, events, index)
        self.stop_event = stop_event
        self.exitcode = None

    def run(self):
        self.exitcode = 1  # until run_worker returns: a thread that dies failed
        self.exitcode = run_worker(*self.args, parent_pid=None, stop_event=self.stop_event)

    def terminate(self):
        self.stop_event.set()


def _progress_left(zk, cluster, config) -> tuple[bool, dict]:
    """Whether every partition of the plan reached its end, and the lag left per partition
    (log end now minus committed)."""
    plan = read_plan_partitions(zk, config)
    complete = True
    lag = {}
    for topic in config["topics"]:
        for p in cluster.partitions(topic):
            committed, _ = read_offset(zk, config["group"], topic, p)
            entry = plan.get(f"{topic}/{p}")
            if entry is not None and (committed is None or committed < entry["end"]):
                complete = False
            try:
                end = cluster.list_offset(topic, p, -1)
            except Exception:
                end = committed or 0
            lag[(topic, p)] = end - (committed or 0)
    return complete, lag


def mark_complete_hours(
    store: Storage, config: dict, plan_parts: dict, only_complete=False, zk=None
) -> int:
    """Write ``_SUCCESS`` into every hour directory that ended before each partition of its
    topic was loaded past it; returns how many markers were written."""
    marked = 0
    for topic in config["topics"]:
        entries = [(name, e) for name, e in plan_parts.items() if name.rsplit("/", 1)[0] == topic]
        if not entries:
            continue
        if only_complete:
            for name, e in entries:
                t, p = name.rsplit("/", 1)
                committed, _ = read_offset(zk, config["group"], t, int(p))
                if committed is None or committed < e["end"]:
                    return marked  # not every partition is past the plan yet
        watermark = min(e["ms"] for _, e in entries)
        oldest = watermark - config["success_lookback_days"] * 86_400_000
        for day in store.list_dirs(topic):
            if not day.startswith("dt="):
                continue
            for hour in store.list_dirs(f"{topic}/{day}"):
                key = hour_of_dir(f"{day}/{hour}")
                if key is None or (key + 1) * HOUR_MS > watermark or (key + 1) * HOUR_MS < oldest:
                    continue
                rel = f"{topic}/{day}/{hour}/_SUCCESS"
                if not store.exists(rel):
                    store.write_small(rel, b"", f"_headrace/{config['group']}/tmp")
                    marked += 1
    return marked


def _summary(out, stats: Stats, lag: dict, marked: int, seconds: float) -> None:
    header = (
        "topic",
        "part",
        "rows",
        "dead",
        "quarantined",
        "late",
        "conflicts",
        "input bytes",
        "files",
        "offsets",
        "lag left",
    )
    rows = []
    for topic, p in sorted(set(stats.parts) | set(lag)):
        s = stats.parts.get((topic, p))
        if s is None:
            rows.append(
                (
                    topic,
                    str(p),
                    "0",
                    "0",
                    "0",
                    "0",
                    "0",
                    "0",
                    "0",
                    "-",
                    f"{lag.get((topic, p), 0):,}",
                )
            )
            continue
        rows.append(
            (
                topic,
                str(p),
                f"{s['rows']:,}",
                f"{s['dead_letters']:,}",
                f"{s['quarantined']:,}",
                f"{s['late']:,}",
                f"{s['conflicts']:,}",
                f"{s['bytes']:,}",
                f"{s['files']:,}",
                f"{s['first']}-{s['next'] - 1}" if s["next"] > s["first"] else "-",
                f"{lag.get((topic, p), 0):,}",
            )
        )
    rows.append(
        (
            "total",
            "",
            f"{stats.total('rows'):,}",
            f"{stats.total('dead_letters'):,}",
            f"{stats.total('quarantined'):,}",
            f"{stats.total('late'):,}",
            f"{stats.total('conflicts'):,}",
            f"{stats.total('bytes'):,}",
            f"{stats.total('files'):,}",
            "",
            f"{sum(v for v in lag.values() if v > 0):,}",
        )
    )
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(len(header))]
    for r in [header, *rows]:
        print(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            ),
            file=out,
        )
    loaded = stats.total("rows") + stats.total("dead_letters")
    print(
        f"loaded {loaded:,} events in {seconds:.1f} s ({loaded / max(seconds, 1e-9):,.0f}/s); "
        f"{marked} hour(s) marked _SUCCESS",
        file=out,
    )
    for r in stats.recovered:
        print(
            f"recovered: {r['topic']}-{r['partition']} offsets {r['first']}-{r['next'] - 1} were "
            "published by an interrupted run; committed without writing them again",
            file=out,
        )
    for g in stats.gaps:
        print(
            f"GAP: {g['topic']}-{g['partition']} offsets {g['first']}-{g['next'] - 1} were deleted "
            "before they were loaded (skipped with --allow-gaps)",
            file=out,
        )
