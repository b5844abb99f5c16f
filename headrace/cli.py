"""The ``headrace`` command: one entry point, one subcommand per job.

headrace broker --config server.properties [--override key=value ...]
headrace topics create|list|describe|alter|delete --bootstrap-server host:port ...
headrace configs --topic T | --broker N  --describe [--all] | --alter  topic and broker configs
headrace acls --add|--remove|--list --topic T|--group G|--cluster ...  ACLs, as kafka-acls
headrace users add|delete|list --user U (--zookeeper Z | --bootstrap-server B)  SCRAM users
headrace cluster up --brokers N | headrace cluster down
headrace produce|consume --topic T ...  stdin to a topic, a topic to stdout
headrace groups list|describe|delete G  consumer groups: kind, offsets, lag, owners
headrace groups --reset-offsets --group G --topic T --to-earliest ...  move a group's offsets
headrace ship --topic T FILE...         follow log files like tail -F and ship their lines
headrace load --topic T --group G --to URL   load topics into Parquet, each event once
headrace mirror --from-zookeeper A --to-bootstrap-server B --include RE --group G
                                       mirror a live cluster into another, exactly once
headrace dashboard --zookeeper Z       a live web dashboard and its JSON API
headrace schema-registry --zookeeper Z  Avro schemas by id, Confluent's Schema Registry API
headrace zookeeper-security-migration --zookeeper Z --zookeeper.acl secure|unsecure
                                       set every ZooKeeper node's ACL as zookeeper.set.acl would
headrace demo [--events N]             the whole pipeline here: a cluster in var/cluster, app
                                       logs shipped to it, loaded into ./warehouse, queried
headrace kill-demo                     kcat ships lines, a broker is killed, nothing is lost
headrace storage-demo [--log-dir DIR]  the storage engine alone: append, read, crash, recover
headrace dump-log PATH [--print-data]  list the batches of a segment file or partition dir
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from broker.log import ConfigError, LogConfig, LogManager
from broker.protocol import compression
from broker.protocol.errors import KafkaError
from broker.protocol.records import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    build_batch,
    compute_crc,
    decode_batch,
    iter_records,
    parse_header,
)

from . import __version__

log = logging.getLogger("headrace")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="headrace", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"headrace {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    broker = sub.add_parser("broker", help="run a broker")
    broker.add_argument("--config", required=True, help="a server.properties file")
    broker.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a property, overriding the file (repeatable)",
    )
    broker.set_defaults(func=cmd_broker)

    topics = sub.add_parser("topics", help="create, list, describe or delete topics")
    topics.add_argument(
        "--bootstrap-server",
        default="127.0.0.1:9092",
        help="host:port[,host:port...] of any broker (default 127.0.0.1:9092)",
    )
    topics_sub = topics.add_subparsers(dest="action", required=True)
    create = topics_sub.add_parser("create", help="create a topic")
    create.add_argument("--topic", required=True)
    create.add_argument("--partitions", type=int, default=-1, help="default: num.partitions")
    create.add_argument("--replication-factor", type=int, default=-1)
    create.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a topic setting such as retention.ms=86400000 (repeatable)",
    )
    topics_sub.add_parser("list", help="list topic names")
    describe = topics_sub.add_parser("describe", help="partitions, leaders and configs")
    describe.add_argument("--topic", help="one topic (default: all)")
    describe.add_argument(
        "--under-replicated-partitions",
        action="store_true",
        help="only partitions whose ISR is smaller than their replicas",
    )
    describe.add_argument(
        "--unavailable-partitions",
        action="store_true",
        help="only partitions without a live leader (offline)",
    )
    delete = topics_sub.add_parser("delete", help="delete a topic and its data")
    delete.add_argument("--topic", required=True)
    from . import configs as config_cli

    alter = config_cli.add_topics_alter(topics_sub)
    alter.add_argument("--partitions", type=int, help="the new partition count (more than now)")
    for action in (create, topics_sub.choices["list"], describe, alter, delete):
        # also after the action, as in the README and Kafka's kafka-topics.sh
        action.add_argument(
            "--bootstrap-server",
            default=argparse.SUPPRESS,
            help="host:port[,host:port...] of any broker",
        )
    topics.set_defaults(func=cmd_topics)
    config_cli.add_parser(sub)
    from . import acls as acl_cli

    acl_cli.add_parser(sub)
    from . import users

    users.add_parser(sub)

    from . import clients

    clients.add_parsers(sub)

    from loaders import cli as loader_cli

    loader_cli.add_parser(sub)

    from .audit import command as audit_command

    audit_command.add_parser(sub)

    from .dashboard import cli as dashboard_cli

    dashboard_cli.add_parser(sub)

    from .schema_registry import cli as schema_registry_cli

    schema_registry_cli.add_parser(sub)

    from . import mirror_cli

    mirror_cli.add_parser(sub)

    from . import zk_auth

    zk_auth.add_parser(sub)

    cluster = sub.add_parser("cluster", help="start or stop a local development cluster")
    cluster.add_argument("action", choices=["up", "down"])
    cluster.add_argument("--brokers", type=int, default=3)
    cluster.add_argument("--dir", default="var/cluster", help="state, configs, logs, data")
    cluster.add_argument(
        "--zookeeper",
        help="host:port[/chroot] of a running ZooKeeper (default: start one from Debian's package)",
    )
    cluster.add_argument("--zookeeper-port", type=int, default=2181)
    cluster.add_argument("--base-port", type=int, default=9092, help="port of broker 1")
    cluster.set_defaults(func=cmd_cluster)

    demo = sub.add_parser(
        "demo",
        help="the whole pipeline: start a cluster, write application logs, "
        "ship them, load them into Parquet, query them with DuckDB",
    )
    demo.add_argument("--events", type=int, default=50_000, help="access-log lines to generate")
    demo.add_argument(
        "--dir",
        default="var/cluster",
        help="cluster state, configs, logs, data, as `cluster up` (default var/cluster); "
        "a cluster running from there is reused",
    )
    demo.add_argument(
        "--work-dir",
        default="var/demo",
        help="generated application logs, shipper state and log (default var/demo)",
    )
    demo.add_argument(
        "--to",
        default="warehouse",
        dest="warehouse",
        help="the warehouse directory (default ./warehouse)",
    )
    demo.add_argument("--topic", default="access")
    demo.add_argument("--partitions", type=int, default=6, help="of a new topic (default 6)")
    demo.add_argument(
        "--replication-factor",
        type=int,
        help="of a new topic (default 3, or the number of brokers when fewer)",
    )
    demo.add_argument("--brokers", type=int, default=3)
    demo.add_argument("--files", type=int, default=3, help="log files (web servers) to write")
    demo.add_argument("--workers", type=int, default=2, help="loader worker processes")
    demo.add_argument(
        "--zookeeper-port", type=int, help="default 2181 if free, else a free port; 0: a free port"
    )
    demo.add_argument(
        "--base-port",
        type=int,
        help="port of broker 1 (default 9092 if free, else free ports; 0: free ports)",
    )
    demo.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the shipped lines to reach the brokers",
    )
    demo.add_argument("--seed", type=int, help="random seed of the generated events")
    demo.set_defaults(func=cmd_pipeline_demo)

    kill = sub.add_parser(
        "kill-demo",
        help="ship log lines through a local 3-broker cluster with kcat, "
        "kill a broker, check nothing was lost",
    )
    kill.add_argument("--messages", type=int, default=200_000, help="log lines to ship")
    kill.add_argument("--dir", help="cluster state and data (default: a temporary directory)")
    kill.add_argument("--keep", action="store_true", help="leave the cluster running")
    kill.set_defaults(func=cmd_kill_demo)

    storage = sub.add_parser(
        "storage-demo", help="storage engine alone: append, read, crash, recover"
    )
    storage.add_argument(
        "--log-dir", help="where to keep the logs (default: a temporary directory)"
    )
    storage.add_argument("--messages", type=int, default=200_000, help="log lines to append")
    storage.set_defaults(func=cmd_demo)

    dump = sub.add_parser("dump-log", help="list the record batches of a segment or partition")
    dump.add_argument("path", help="a .log segment file or a <topic>-<partition> directory")
    dump.add_argument("--print-data", action="store_true", help="print each record too")
    dump.set_defaults(func=cmd_dump_log)
    _add_security_arguments(sub)

    args = parser.parse_args(argv)
    problem = _bad_argument(args)
    if problem:
        print(f"headrace {args.command}: {problem}", file=sys.stderr)
        return 2
    if hasattr(args, "command_config"):
        from consumers.security import (
            PLAINTEXT,
            ClientSecurity,
            SecurityConfigError,
            client_properties,
        )

        try:  # the file and -X: the brokers' security, and (produce, consume) the registry's
            props = client_properties(args.command_config, getattr(args, "client_property", ()))
            args.client_properties = props
            args.security = ClientSecurity.from_properties(props) if props else PLAINTEXT
        except SecurityConfigError as exc:
            print(f"headrace {args.command}: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kazoo").setLevel(max(logging.WARNING, logging.getLogger().level))
    from kazoo.exceptions import KazooException
    from kazoo.handlers.threading import KazooTimeoutError

    from broker.protocol.zk_security import ZkSecurityError
    from consumers.sasl import SaslAuthenticationError

    try:
        return args.func(args)
    except (ConfigError, KafkaError, OSError, ZkSecurityError) as exc:
        print(f"headrace {args.command}: {exc}", file=sys.stderr)
        return 2
    except SaslAuthenticationError as exc:  # a refused login: Kafka's clients give up too
        print(f"headrace {args.command}: {exc}", file=sys.stderr)
        return 1
    except (KazooException, KazooTimeoutError) as exc:
        where = getattr(args, "zookeeper", None)
        zookeeper = f"ZooKeeper at {where}" if where else "ZooKeeper"
        if isinstance(exc, KazooTimeoutError):
            print(f"headrace {args.command}: cannot reach {zookeeper}: {exc}", file=sys.stderr)
        else:
            print(
                f"headrace {args.command}: {zookeeper} failed: {type(exc).__name__} {exc}".rstrip(),
                file=sys.stderr,
            )
        return 2


# Subcommands that talk to brokers: each takes --command-config FILE and -X key=value (the
# mirror has a pair of its own for its two clusters, see mirror_cli.py)
BROKER_CLIENTS = (
    "topics",
    "configs",
    "produce",
    "consume",
    "groups",
    "ship",
    "load",
    "audit",
    "dashboard",
)


def _add_security_arguments(sub) -> None:
    """``--command-config FILE`` and ``-X key=value`` on every subcommand that talks to
    brokers (and after each ``topics`` action too, as ``--bootstrap-server`` is)."""
    from consumers.security import add_security_arguments

    for name in BROKER_CLIENTS:
        add_security_arguments(sub.choices[name])
    topics_actions = next(
        a for a in sub.choices["topics"]._actions if isinstance(a, argparse._SubParsersAction)
    )
    for action in topics_actions.choices.values():
        action.add_argument("--command-config", default=argparse.SUPPRESS, metavar="FILE")
        action.add_argument(
            "-X",
            dest="client_property",
            action="append",
            default=argparse.SUPPRESS,
            metavar="KEY=VALUE",
        )


def _bad_argument(args) -> str | None:
    """What is wrong with arguments several subcommands share, or None: bootstrap servers
    without a port (Kafka's tools require one), a ZooKeeper address that does not parse,
    group names that are not a ZooKeeper node name, a follow interval that is not positive."""
    from broker.protocol.zookeeper import check_group_name
    from consumers.client import parse_bootstrap

    servers = getattr(args, "bootstrap_server", None)
    if servers:
        try:
            for host, port in parse_bootstrap(servers):
                if not 0 < port < 65536:
                    return f"--bootstrap-server {host}:{port}: the port must be 1-65535"
        except ValueError as exc:
            return f"--bootstrap-server: {exc} (give host:port, e.g. localhost:9092)"
    zookeeper = getattr(args, "zookeeper", None)
    if zookeeper:
        from kazoo.hosts import collect_hosts

        try:
            collect_hosts(zookeeper)
        except ValueError as exc:
            return f"--zookeeper {zookeeper}: {exc} (give host:port[,host:port...][/chroot])"
    group = getattr(args, "group", None)
    if group is not None:
        try:
            check_group_name(group)
        except ValueError as exc:
            return str(exc)
    interval = getattr(args, "interval", None)
    if interval is not None and not interval > 0:
        return f"--interval must be a positive number of seconds, not {interval}"
    return None


# --- broker, topics, cluster ------------------------------------------------------------------


def cmd_broker(args) -> int:
    from broker.config import BrokerConfig
    from broker.main import run

    config = BrokerConfig.from_file(args.config, args.override)
    return run(config)


def cmd_topics(args) -> int:
    from . import topics

    return topics.run(args)


def cmd_cluster(args) -> int:
    from . import devcluster

    directory = Path(args.dir)
    if args.action == "down":
        try:
            stopped = devcluster.cluster_down(directory)
        except devcluster.ClusterStateError as exc:
            print(f"headrace cluster down: {exc}", file=sys.stderr)
            return 1
        print(f"stopped {stopped} processes" if stopped else f"no cluster running from {directory}")
        return 0
    try:
        state = devcluster.cluster_up(
            directory, args.brokers, args.zookeeper, args.base_port, args.zookeeper_port
        )
    except RuntimeError as exc:
        print(f"headrace cluster up: {exc}", file=sys.stderr)
        return 1
    print(
        f"ZooKeeper at {state['zookeeper']}; {len(state['brokers'])} brokers; "
        f"bootstrap servers {state['bootstrap']}"
    )
    if devcluster.metrics_pages(state):
        print(f"metrics of brokers {devcluster.metrics_pages(state)}")
    print(f"logs and data under {directory}; stop with `headrace cluster down`")
    return 0


# --- demos ------------------------------------------------------------------------------------


def cmd_pipeline_demo(args) -> int:
    from . import demo

    return demo.run_demo(
        events=args.events,
        directory=Path(args.dir),
        work_dir=Path(args.work_dir),
        warehouse=Path(args.warehouse),
        topic=args.topic,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        brokers=args.brokers,
        files=args.files,
        workers=args.workers,
        zookeeper_port=args.zookeeper_port,
        base_port=args.base_port,
        timeout=args.timeout,
        seed=args.seed,
        log_level=args.log_level,
    )


def cmd_kill_demo(args) -> int:
    from . import kill_demo

    return kill_demo.run_kill_demo(args.messages, Path(args.dir) if args.dir else None, args.keep)


def cmd_demo(args) -> int:
    """Append web-server log lines to three partitions, read them back, crash, recover."""
    if args.log_dir:
        return _demo(Path(args.log_dir), args.messages)
    with tempfile.TemporaryDirectory(prefix="headrace-demo-") as tmp:
        return _demo(Path(tmp), args.messages)


def _demo(log_dir: Path, messages: int) -> int:
    config = LogConfig(segment_bytes=8 * 1024 * 1024)
    codecs = [compression.NONE, compression.GZIP, compression.LZ4]
    per_batch = 500
    manager = LogManager([log_dir], config)
    manager.startup()
    logs = [manager.get_or_create_log("access-log", p) for p in range(3)]
    start_offsets = [plog.log_end_offset for plog in logs]
    now = int(time.time() * 1000)
    began = time.perf_counter()
    appended = 0
    for n in range(0, messages, per_batch):
        p = (n // per_batch) % 3
        lines = [
            (
                b"host-%d" % (i % 17),
                b'10.0.%d.%d - - "GET /item/%d HTTP/1.1" 200 %d'
                % (i % 256, i % 199, i, 500 + i % 3000),
                None,
                now + i,
            )
            for i in range(n, min(n + per_batch, messages))
        ]
        logs[p].append(build_batch(lines, compression_type=codecs[p]))
        appended += len(lines)
    elapsed = time.perf_counter() - began
    print(
        f"appended {appended:,} log lines in {elapsed:.2f} s ({appended / elapsed:,.0f} lines/s) "
        f"to 3 partitions (none, gzip, lz4) under {log_dir}"
    )

    read = 0
    began = time.perf_counter()
    for plog, start in zip(logs, start_offsets):
        offset = start
        while offset < plog.log_end_offset:
            chunk = plog.read(offset, 1024 * 1024)
            records = list(iter_records(chunk))
            read += sum(1 for r in records if r.offset >= offset)
            offset = records[-1].offset + 1
    elapsed = time.perf_counter() - began
    print(f"read back {read:,} log lines in {elapsed:.2f} s ({read / elapsed:,.0f} lines/s)")

    ends = [plog.log_end_offset for plog in logs]
    manager.crash()  # as kill -9 would leave it: no flush, no clean-shutdown marker
    began = time.perf_counter()
    manager = LogManager([log_dir], config)
    manager.startup()
    recovered = [manager.get_log("access-log", p).log_end_offset for p in range(3)]
    print(
        f"crashed and recovered in {time.perf_counter() - began:.3f} s; "
        f"log end offsets {ends} -> {recovered}"
    )
    manager.shutdown()
    ok = read == appended and recovered == ends
    print("demo", "passed" if ok else "FAILED")
    return 0 if ok else 1


# --- dump-log ---------------------------------------------------------------------------------


def cmd_dump_log(args) -> int:
    path = Path(args.path)
    files = sorted(path.glob("*.log")) if path.is_dir() else [path]
    if not files:
        print(f"headrace dump-log: no .log files in {path}", file=sys.stderr)
        return 2
    bad = 0
    for segment in files:
        print(f"segment {segment}")
        bad += _dump_segment(segment, args.print_data)
    return 1 if bad else 0


def _dump_segment(segment: Path, print_data: bool) -> int:
    fd = os.open(segment, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        position = 0
        while position < size:
            head = os.pread(fd, HEADER_SIZE, position)
            if len(head) < HEADER_SIZE:
                print(f"  torn header at position {position} ({size - position} bytes left)")
                return 1
            header = parse_header(head)
            total = header.batch_length + LOG_OVERHEAD
            data = os.pread(fd, total, position)
            valid = len(data) == total and compute_crc(data) == header.crc
            print(
                f"  baseOffset {header.base_offset} lastOffset {header.last_offset} "
                f"count {header.record_count} position {position} size {total} "
                f"partitionLeaderEpoch {header.partition_leader_epoch} "
                f"maxTimestamp {header.max_timestamp} "
                f"codec {compression.CODEC_NAMES.get(header.compression, header.compression)} "
                f"producerId {header.producer_id} crc {header.crc:#010x} "
                f"{'valid' if valid else 'INVALID'}"
            )
            if not valid:
                return 1
            if print_data:
                for record in decode_batch(data).records:
                    print(
                        f"    offset {record.offset} timestamp {record.timestamp} "
                        f"key {record.key!r} value {record.value!r} headers {list(record.headers)}"
                    )
            position += total
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
