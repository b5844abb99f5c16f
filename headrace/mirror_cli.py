"""``headrace mirror``: copy the topics of a live cluster into another one, exactly once
(``consumers/mirror``); its options and its run until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from consumers.metrics import MetricsPortError, add_metrics_arguments, serve_metrics
from consumers.security import SecurityConfigError, add_security_arguments, security_from_args

from .zk_auth import add_auth_argument, credentials_from_args

log = logging.getLogger("headrace.mirror")


def add_parser(sub) -> None:
    mirror = sub.add_parser(
        "mirror",
        help="mirror a live cluster's topics into another cluster, exactly once",
        description="Members of a consumer group on the source copy every matching topic to "
        "the target, partition by partition, with an idempotent producer; a restarted mirror "
        "resumes from what the target holds.",
    )
    source = mirror.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from-zookeeper", metavar="HOST:PORT[/CHROOT]", help="the source cluster's ZooKeeper"
    )
    source.add_argument(
        "--from-bootstrap-server", metavar="HOST:PORT", help="the source cluster's brokers"
    )
    add_auth_argument(mirror)
    mirror.add_argument(
        "--to-bootstrap-server", required=True, metavar="HOST:PORT", help="the target's brokers"
    )
    mirror.add_argument("--include", required=True, metavar="REGEX", help="topics to mirror")
    mirror.add_argument("--exclude", metavar="REGEX", help="topics not to mirror")
    mirror.add_argument("--group", required=True, help="the mirror's consumer group on the source")
    mirror.add_argument(
        "--workers", type=int, default=1, help="group members in this process (default 1)"
    )
    mirror.add_argument(
        "--processes",
        type=int,
        default=1,
        help="run this many mirror processes here, each with --workers members (default 1); "
        "each --metrics-port P serves on P+i",
    )
    mirror.add_argument(
        "--refresh-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often to look for new source topics (default 30)",
    )
    mirror.add_argument(
        "--replication-factor",
        type=int,
        default=-1,
        help="of the target topics it creates (default: the target's default)",
    )
    mirror.add_argument(
        "--zookeeper-session-timeout-ms",
        type=int,
        default=6000,
        help="the group members' session timeout (default 6000)",
    )
    mirror.add_argument(
        "--offset-commit-interval-ms",
        type=int,
        default=5000,
        help="how often acknowledged source offsets are committed (default 5000)",
    )
    mirror.add_argument("--linger-ms", type=float, default=5.0, help="the producer's linger.ms")
    mirror.add_argument(
        "--compression-type",
        default="none",
        help="the producer's compression: none, gzip, snappy, lz4 or zstd",
    )
    add_metrics_arguments(mirror)
    # MirrorMaker's --consumer.config / --producer.config are accepted for the two files
    add_security_arguments(
        mirror, "source", "the source cluster's brokers", aliases=("--consumer.config",)
    )
    add_security_arguments(
        mirror, "target", "the target cluster's brokers", aliases=("--producer.config",)
    )
    mirror.set_defaults(func=run)


def _problem(args) -> str | None:
    from broker.protocol import compression
    from broker.protocol.errors import KafkaError
    from consumers.client import parse_bootstrap

    for flag in ("to_bootstrap_server", "from_bootstrap_server"):
        servers = getattr(args, flag)
        if servers:
            try:
                parse_bootstrap(servers)
            except ValueError as exc:
                return f"--{flag.replace('_', '-')}: {exc} (give host:port)"
    if args.from_zookeeper:
        from kazoo.hosts import collect_hosts

        try:
            collect_hosts(args.from_zookeeper)
        except ValueError as exc:
            return f"--from-zookeeper {args.from_zookeeper}: {exc}"
    if args.workers < 1:
        return f"--workers must be at least 1, not {args.workers}"
    if args.processes < 1:
        return f"--processes must be at least 1, not {args.processes}"
    if not args.refresh_interval > 0:
        return (
            f"--refresh-interval must be a positive number of seconds, not {args.refresh_interval}"
        )
    if args.zookeeper_session_timeout_ms < 1000:
        return "--zookeeper-session-timeout-ms must be at least 1000"
    if args.offset_commit_interval_ms < 0:
        return "--offset-commit-interval-ms must not be negative"
    try:
        compression.codec_by_name(args.compression_type)
    except (KafkaError, KeyError, ValueError) as exc:
        return f"--compression-type {args.compression_type}: {exc}"
    return None


def run(args) -> int:
    from kazoo.handlers.threading import KazooTimeoutError

    from consumers.mirror import Mirror, MirrorError, MirrorSettings
    from consumers.mirror.metrics import mirror_registry

    problem = _problem(args)
    if problem:
        print(f"headrace mirror: {problem}", file=sys.stderr)
        return 2
    if args.processes > 1:
        return _supervise(args)
    try:
        source_security = security_from_args(args, "source")
        target_security = security_from_args(args, "target")
    except SecurityConfigError as exc:
        print(f"headrace mirror: {exc}", file=sys.stderr)
        return 2
    settings = MirrorSettings(
        group=args.group,
        include=args.include,
        exclude=args.exclude,
        target=args.to_bootstrap_server,
        zookeeper=args.from_zookeeper,
        bootstrap=args.from_bootstrap_server,
        workers=args.workers,
        refresh_interval=args.refresh_interval,
        replication_factor=args.replication_factor,
        session_timeout_ms=args.zookeeper_session_timeout_ms,
        commit_interval=args.offset_commit_interval_ms / 1000.0,
        linger_ms=args.linger_ms,
        compression=args.compression_type,
        source_security=source_security,
        target_security=target_security,
        zookeeper_credentials=credentials_from_args(args),
    )
    try:
        mirror = Mirror(settings)
    except MirrorError as exc:
        print(f"headrace mirror: {exc}", file=sys.stderr)
        return 2
    try:
        page = serve_metrics(mirror_registry(mirror), args.metrics_port, args.metrics_host)
    except MetricsPortError as exc:
        print(f"headrace mirror: {exc}", file=sys.stderr)
        return 2
    if page is not None:
        log.info("metrics on http://%s:%d/metrics", page.host, page.port)

    def on_signal(signum, frame):  # no logging here: it may interrupt a log call
        mirror.stop()

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
    try:
        mirror.run()
    except MirrorError as exc:
        print(f"headrace mirror: {exc}", file=sys.stderr)
        return 2
    except KazooTimeoutError:
        print(f"headrace mirror: cannot reach ZooKeeper at {args.from_zookeeper}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"headrace mirror: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a worker stopped: its traceback is in the log
        print(f"headrace mirror: stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if page is not None:
            page.close()
    copied = sum(w.counters.copied for w in mirror.workers)
    log.info("stopped: %d records copied", copied)
    return 0


__all__ = ["add_parser", "run"]


# --- several processes ------------------------------------------------------------------------


def _child_command(args, index: int) -> list[str]:
    """This command line for one process of ``--processes``."""
    source = (
        ["--from-zookeeper", args.from_zookeeper]
        if args.from_zookeeper
        else ["--from-bootstrap-server", args.from_bootstrap_server]
    )
    command = [sys.executable, "-m", "headrace.cli", "--log-level", args.log_level, "mirror"]
    command += [*source, "--to-bootstrap-server", args.to_bootstrap_server]
    command += ["--include", args.include, "--group", args.group]
    if args.exclude:
        command += ["--exclude", args.exclude]
    if args.zookeeper_auth_file:
        command += ["--zookeeper-auth-file", args.zookeeper_auth_file]
    for flag, value in (
        ("--workers", args.workers),
        ("--refresh-interval", args.refresh_interval),
        ("--replication-factor", args.replication_factor),
        ("--zookeeper-session-timeout-ms", args.zookeeper_session_timeout_ms),
        ("--offset-commit-interval-ms", args.offset_commit_interval_ms),
        ("--linger-ms", args.linger_ms),
        ("--compression-type", args.compression_type),
    ):
        command += [flag, str(value)]
    for side in ("source", "target"):
        if getattr(args, f"{side}_command_config"):
            command += [f"--{side}-command-config", getattr(args, f"{side}_command_config")]
        for item in getattr(args, f"{side}_client_property"):
            command += [f"--{side}-property", item]
    if args.metrics_port is not None:
        port = args.metrics_port + index if args.metrics_port else 0
        command += ["--metrics-port", str(port), "--metrics-host", args.metrics_host]
    return command


def _die_with_parent() -> None:  # in the child, before exec: a SIGKILLed parent takes it along
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _supervise(args) -> int:
    """Run ``--processes`` mirror processes (the interpreter's lock makes threads share one
    CPU); SIGTERM/SIGINT stop them all; one that fails stops the others."""
    import subprocess

    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    children = [
        subprocess.Popen(_child_command(args, i), preexec_fn=_die_with_parent)
        for i in range(args.processes)
    ]
    log.info("started %d mirror processes: %s", len(children), [c.pid for c in children])
    failed = 0
    while not stopping.wait(0.2):
        done = [c for c in children if c.poll() is not None]
        if done:
            failed = done[0].returncode or 1
            log.error("mirror process %d exited with %s; stopping", done[0].pid, failed)
            break
    for child in children:
        if child.poll() is None:
            child.terminate()
    codes = [child.wait() for child in children]
    return failed or next((code for code in codes if code), 0)
