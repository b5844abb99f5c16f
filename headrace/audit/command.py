"""``headrace audit``: the paper's audit of one topic, as a table or JSON; exit status 0 when
every closed window matches, 1 when one does not, 2 when the audit cannot be made."""

from __future__ import annotations

import argparse
import json
import sys
import time

from consumers.audit import parse_duration, parse_time

from .compare import AuditError
from .report import audit_report, format_table


def add_parser(sub) -> None:
    """The ``audit`` subcommand, for headrace.cli."""
    p = sub.add_parser(
        "audit",
        help="compare per window what audited producers counted, the brokers hold "
        "and the warehouse loaded",
    )
    p.add_argument("--zookeeper", help="host:port[/chroot] to find the brokers")
    p.add_argument("--bootstrap-server", help="host:port[,...] of brokers instead")
    p.add_argument("--topic", required=True)
    p.add_argument("--warehouse", help="the loader's --to URL (without it: no loaded column)")
    p.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an fsspec option for the warehouse (repeatable)",
    )
    p.add_argument(
        "--since",
        help="from the window holding this time: ISO-8601, epoch ms, or a duration ago "
        "(2h); default everything the brokers hold",
    )
    p.add_argument("--window", default="1m", help="window length, UTC-aligned (default 1m)")
    p.add_argument(
        "--grace", default="5m", help="a window is closed once its end plus this has passed"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    now_ms = int(time.time() * 1000)
    try:
        window_ms = parse_duration(args.window, "--window")
        grace_ms = parse_duration(args.grace, "--grace")
        if window_ms <= 0:
            raise ValueError("--window must be longer than 0")
        since_ms = parse_time(args.since, now_ms) if args.since else None
        options = {}
        for item in args.storage_option:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--storage-option {item!r} is not KEY=VALUE")
            options[key] = value
    except ValueError as exc:
        print(f"headrace audit: {exc}", file=sys.stderr)
        return 2
    if not args.zookeeper and not args.bootstrap_server:
        print("headrace audit: give --zookeeper or --bootstrap-server", file=sys.stderr)
        return 2
    try:
        report = audit_report(
            args.zookeeper,
            args.topic,
            args.warehouse,
            since_ms,
            window_ms,
            grace_ms,
            now_ms,
            bootstrap_servers=args.bootstrap_server,
            storage_options=options or None,
            security=args.security,
        )
    except AuditError as exc:
        print(f"headrace audit: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if args.json else format_table(report))
    return 0 if report["ok"] else 1
