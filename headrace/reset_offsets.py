"""``headrace groups --reset-offsets``: move a group's committed offsets, with the flags of
Kafka's ``kafka-consumer-groups --reset-offsets``.

    headrace groups --zookeeper zk:2181/headrace --reset-offsets --group G --topic T[:P,...]
        (--to-earliest | --to-latest | --to-datetime ISO | --to-offset N | --shift-by N)
        [--dry-run | --execute] [--force]

It prints the plan (group, topic, partition, the committed offset and the new one); only
``--execute`` writes it (``--dry-run``, Kafka's explicit flag for the default, is refused with
``--execute``).  Every target is kept within what the brokers hold (log start to high
watermark), as Kafka's tool does.  A group with live members is refused (offsets moved under a
running consumer would be overwritten by its next commit).  A loader's group is refused unless
``--force``: its committed offsets are the warehouse's exactly-once record, so offsets moved
back load those events again (the files already written for them stay, so the warehouse holds
them twice) and offsets moved forward skip events that are never loaded.
"""

from __future__ import annotations

import sys
from datetime import datetime

from broker.protocol.errors import KafkaError
from broker.protocol.offsets import committed_partitions, read_kind, read_offset, write_offset
from broker.protocol.zookeeper import LOADER, group_path, members_path

from .kafka_groups import describe_group

EARLIEST, LATEST = -2, -1
LOADER_WARNING = (
    "this is a loader's group: its offsets are the warehouse's exactly-once record. Offsets "
    "moved back (or deleted: the next run starts over) load those events again (the files "
    "already written for them are not removed, so the warehouse holds them twice); offsets "
    "moved forward skip events that are never loaded"
)


class ResetError(ValueError):
    """A reset that cannot be planned or is refused; its message is the one line printed."""


def target_offset(how: str, value, current: int | None, earliest: int, latest: int) -> int:
    """The new offset of one partition: ``how`` is earliest, latest, offset (``value``),
    shift (``value`` added to ``current``) or datetime (``value`` the offset found for the
    time, -1 when no record is that recent: latest); kept within [earliest, latest]."""
    if how == "earliest":
        wanted = earliest
    elif how == "latest":
        wanted = latest
    elif how == "offset":
        wanted = value
    elif how == "datetime":
        wanted = latest if value < 0 else value
    elif current is None:
        raise ResetError("no committed offset to shift by; use --to-offset or --to-earliest")
    else:
        wanted = current + value
    return min(max(wanted, earliest), latest)


def parse_datetime(text: str) -> int:
    """An ISO-8601 time (a trailing Z or an offset; UTC without one) in epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ResetError(f"--to-datetime {text!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.now().astimezone().tzinfo).astimezone()
    return int(moment.timestamp() * 1000)


def _partitions(zk, cluster, group: str, args) -> list[tuple[str, int]]:
    """The partitions named by --topic T[:P,...] (every partition of T without a list) or
    --all-topics (every topic the group has offsets for)."""
    if args.all_topics:
        topics = list(committed_partitions(zk, group))
        if not topics:
            raise ResetError(f"group {group} has no committed offsets (--all-topics)")
        specs = topics
    elif args.topic:
        specs = args.topic
    else:
        raise ResetError("name the partitions: --topic T[:P,...] or --all-topics")
    wanted = []
    for spec in specs:
        topic, _, listed = spec.partition(":")
        cluster.refresh([topic], allow_auto_create=False)
        known = cluster.partitions(topic, wait=0)
        if not known:
            raise ResetError(f"topic {topic} does not exist")
        try:
            chosen = [int(p) for p in listed.split(",")] if listed else sorted(known)
        except ValueError:
            raise ResetError(f"--topic {spec!r}: partitions are numbers, T:0,1") from None
        missing = [p for p in chosen if p not in known]
        if missing:
            raise ResetError(f"topic {topic} has no partition {missing[0]}")
        wanted += [(topic, p) for p in chosen]
    return wanted


def _method(args) -> tuple[str, object]:
    if args.to_earliest:
        return "earliest", None
    if args.to_latest:
        return "latest", None
    if args.to_offset is not None:
        return "offset", args.to_offset
    if args.shift_by is not None:
        return "shift", args.shift_by
    if args.to_datetime is not None:
        return "datetime", parse_datetime(args.to_datetime)
    raise ResetError(
        "say where to: --to-earliest, --to-latest, --to-datetime, --to-offset or --shift-by"
    )


def _refuse_active(zk, cluster, group: str) -> str | None:
    """The kind recorded for ``group``; ResetError while it has live members or does not
    exist."""
    members = zk.get_children(members_path(group)) if zk.exists(members_path(group)) else []
    described = describe_group(cluster, group)
    if described is not None and described["members"]:
        members += [m["member_id"] for m in described["members"]]
    if members:
        raise ResetError(
            f"group {group} is active ({len(members)} live member(s)); stop them first: "
            "their next commit would overwrite the reset"
        )
    if not zk.exists(group_path(group)) and described is None:
        raise ResetError(f"no group {group}")
    return read_kind(zk, group)


def reset(zk, cluster, group: str, args) -> int:
    """Plan (and with ``args.execute`` apply) the reset; the exit status."""
    how, value = _method(args)
    kind = _refuse_active(zk, cluster, group)
    if kind == LOADER:
        if not args.force:
            raise ResetError(f"{LOADER_WARNING}. Add --force to reset it all the same")
        print(f"headrace groups: {LOADER_WARNING}", file=sys.stderr)
    plan = []
    for topic, partition in _partitions(zk, cluster, group, args):
        current = read_offset(zk, group, topic, partition)[0]
        earliest = cluster.list_offset(topic, partition, EARLIEST)
        latest = cluster.list_offset(topic, partition, LATEST)
        found = cluster.list_offset(topic, partition, value) if how == "datetime" else value
        new = target_offset(how, found, current, earliest, latest)
        plan.append((topic, partition, current, new))
    print(f"{'GROUP':<24} {'TOPIC':<24} {'PARTITION':>9} {'CURRENT-OFFSET':>14} {'NEW-OFFSET':>10}")
    for topic, partition, current, new in plan:
        shown = "-" if current is None else current
        print(f"{group:<24} {topic:<24} {partition:>9} {shown:>14} {new:>10}")
    if not args.execute:
        print(
            "headrace groups: a dry run, nothing changed; add --execute to apply", file=sys.stderr
        )
        return 0
    _refuse_active(zk, cluster, group)  # a member may have joined while we planned
    for topic, partition, _, new in plan:
        write_offset(zk, group, topic, partition, new)
    print(f"headrace groups: reset {len(plan)} partition(s) of {group}", file=sys.stderr)
    return 0


def run(zk, cluster, args) -> int:
    """``headrace groups --reset-offsets``: the exit status; a refusal is one line, status 1
    (2 for options that do not make a reset)."""
    group = args.group_option or args.group
    if not group:
        print("headrace groups --reset-offsets: name the group (--group G)", file=sys.stderr)
        return 2
    try:
        cluster.refresh([], allow_auto_create=False)
        return reset(zk, cluster, group, args)
    except ResetError as exc:
        print(f"headrace groups --reset-offsets: {exc}", file=sys.stderr)
        return 1
    except (KafkaError, OSError) as exc:
        print(
            f"headrace groups --reset-offsets: the brokers did not answer: {exc}", file=sys.stderr
        )
        return 1


def add_arguments(parser) -> None:
    """The reset's options, on ``headrace groups``'s parser."""
    parser.add_argument(
        "--reset-offsets", action="store_true", help="move a group's committed offsets"
    )
    parser.add_argument("--group", dest="group_option", help="the group (--reset-offsets)")
    parser.add_argument("--topic", action="append", default=[], help="T or T:P,P... (repeatable)")
    parser.add_argument("--all-topics", action="store_true", help="every topic it has offsets for")
    to = parser.add_mutually_exclusive_group()
    to.add_argument("--to-earliest", action="store_true", help="the log start")
    to.add_argument("--to-latest", action="store_true", help="the high watermark")
    to.add_argument("--to-datetime", metavar="ISO", help="the first record at or after a time")
    to.add_argument("--to-offset", type=int, metavar="N", help="offset N")
    to.add_argument("--shift-by", type=int, metavar="N", help="N from the committed offset")
    run = parser.add_mutually_exclusive_group()
    run.add_argument("--dry-run", action="store_true", help="print the plan only (the default)")
    run.add_argument("--execute", action="store_true", help="apply the plan (default: print it)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="reset or delete a loader's group (its events load again: exactly-once is lost)",
    )
