"""How far a load is: events in a plan, partitions past their plan's end, complete hours.

Read from the plan and the committed offsets in ZooKeeper (and the log ends, for the lag);
an hour directory gets its ``_SUCCESS`` marker once every partition of its topic is loaded
past the hour's end.
"""

from __future__ import annotations

from .config import LoaderConfig
from .layout import HOUR_MS, hour_of_dir
from .registry import LoaderError, plan_path, read_offset, read_plan
from .storage import Storage


def read_plan_partitions(zk, config: LoaderConfig) -> dict:
    """The saved plan's partitions: ``{"topic/p": {"end", "ms"}}``."""
    return read_plan(zk, config.group)["partitions"]


def check_plan(zk, group: str) -> None:
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


def events_left(zk, config: LoaderConfig, plan: dict) -> int:
    """How many events of the load's topics ``plan`` holds past the committed offsets."""
    total = 0
    for name, entry in plan["partitions"].items():
        topic, p = name.rsplit("/", 1)
        if topic in config.topics:
            committed, _ = read_offset(zk, config.group, topic, int(p))
            total += max(0, entry["end"] - (committed or 0))
    return total


def progress_left(zk, cluster, config: LoaderConfig) -> tuple[bool, dict]:
    """Whether every partition of the plan reached its end, and the lag left per partition
    (log end now minus committed)."""
    plan = read_plan_partitions(zk, config)
    complete = True
    lag = {}
    for topic in config.topics:
        for p in cluster.partitions(topic):
            committed, _ = read_offset(zk, config.group, topic, p)
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
    store: Storage, config: LoaderConfig, plan_parts: dict, only_complete=False, zk=None
) -> int:
    """Write ``_SUCCESS`` into every hour directory that ended before each partition of its
    topic was loaded past it; returns how many markers were written."""
    marked = 0
    for topic in config.topics:
        entries = [(name, e) for name, e in plan_parts.items() if name.rsplit("/", 1)[0] == topic]
        if not entries:
            continue
        if only_complete:
            for name, e in entries:
                t, p = name.rsplit("/", 1)
                committed, _ = read_offset(zk, config.group, t, int(p))
                if committed is None or committed < e["end"]:
                    return marked  # not every partition is past the plan yet
        watermark = min(e["ms"] for _, e in entries)
        oldest = watermark - config.success_lookback_days * 86_400_000
        for day in store.list_dirs(topic):
            if not day.startswith("dt="):
                continue
            for hour in store.list_dirs(f"{topic}/{day}"):
                key = hour_of_dir(f"{day}/{hour}")
                if key is None or (key + 1) * HOUR_MS > watermark or (key + 1) * HOUR_MS < oldest:
                    continue
                rel = f"{topic}/{day}/{hour}/_SUCCESS"
                if not store.exists(rel):
                    store.write_small(rel, b"", f"_headrace/{config.group}/tmp")
                    marked += 1
    return marked
