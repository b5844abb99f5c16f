"""``headrace produce``, ``consume``, ``groups`` and ``ship``: console tools over the clients."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from broker.protocol.errors import KafkaError
from broker.protocol.offsets import committed_partitions, read_offset, read_owner
from broker.protocol.zookeeper import (
    CONSUMERS,
    KAFKA,
    LOADER,
    decode_consumer,
    group_path,
    member_path,
    members_path,
    offset_path,
)
from consumers.metrics import add_metrics_arguments

from . import group_view, reset_offsets, zk_auth
from .kafka_groups import describe_group, list_groups
from .reset_offsets import LOADER_WARNING


def _endpoints(args) -> dict:
    if not args.bootstrap_server and not args.zookeeper:
        args.bootstrap_server = "127.0.0.1:9092"
    return {
        "bootstrap_servers": args.bootstrap_server,
        "zookeeper": args.zookeeper,
        "security": args.security,
        "zookeeper_credentials": zk_auth.credentials_from_args(args),
    }


def produce(args) -> int:
    """stdin lines to a topic; with --key-field, JSON lines are keyed by that field."""
    from consumers.producer import Producer, audit
    from consumers.schemas import RegistryError

    from .avro_console import AvroInputError, encoder_from

    failures = []
    try:
        encoder = encoder_from(args)
    except ValueError as exc:
        print(f"headrace produce: {exc}", file=sys.stderr)
        return 2
    except RegistryError as exc:
        print(f"headrace produce: the value schema: {exc}", file=sys.stderr)
        return 1
    try:
        producer = Producer(
            **_endpoints(args),
            compression=args.compression,
            acks=args.acks,
            enable_idempotence=args.idempotence,
            **audit.options_from(args),
        )
    except ValueError as exc:
        print(f"headrace produce: {exc}", file=sys.stderr)
        return 2
    count = 0
    bad = None
    try:
        for number, raw in enumerate(sys.stdin.buffer, 1):
            line = raw.rstrip(b"\n")
            key = None
            if args.key_field:
                try:
                    value = json.loads(line).get(args.key_field)
                    key = None if value is None else str(value).encode()
                except (ValueError, AttributeError):
                    key = None
            if encoder is not None:
                if not line.strip():
                    continue
                try:
                    line = encoder.encode(line, number)
                except AvroInputError as exc:
                    bad = exc
                    break
            future = producer.send(args.topic, line, key=key)
            future.add_done_callback(lambda f: f.exception() and failures.append(f.exception()))
            count += 1
        left = producer.flush(args.timeout)
    finally:
        producer.close(1)
    if failures or left:
        print(
            f"headrace produce: {len(failures) + left} of {count} messages not delivered"
            f"{': ' + str(failures[0]) if failures else ''}",
            file=sys.stderr,
        )
        return 1
    if bad is not None:
        print(
            f"headrace produce: {bad}; stopped there: the {count} messages before it were "
            "sent, nothing from it on",
            file=sys.stderr,
        )
        return 1
    print(f"produced {count} messages to {args.topic}", file=sys.stderr)
    return 0


def consume(args) -> int:
    """A topic to stdout: from a group's offsets, the beginning, the end, or one partition.
    As a group member it commits only lines written out and flushed: a broken pipe (``| head``)
    commits nothing past the last line that reached the pipe.  A batch that cannot be decoded
    stops it with a message naming the offsets (exit 1)."""
    from consumers.consumer import CorruptBatchError

    from .avro_console import RegistryDownError, ValuePrinter

    try:
        printer = (
            ValuePrinter(args.schema_registry, properties=args.client_properties)
            if args.schema_registry
            else None
        )
    except ValueError as exc:
        print(f"headrace consume: --schema-registry: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out = sys.stdout.buffer
    count = 0
    written = {}  # (topic, partition) -> the last message written out and flushed
    kafka_group = bool(args.group) and not args.zookeeper
    if kafka_group:
        source = _kafka_group_member(args, written)
        try:
            source.cluster.refresh([args.topic])  # an unreachable cluster is said at once
            source.start()
        except (KafkaError, OSError, ValueError) as exc:
            source.close()
            print(f"headrace consume: group {args.group}: {exc}", file=sys.stderr)
            return 2
    elif args.group:
        from broker.protocol.offsets import GroupKindError
        from consumers.group import GroupConsumer

        source = GroupConsumer(
            args.group,
            [args.topic],
            args.zookeeper,
            bootstrap_servers=args.bootstrap_server,
            auto_offset_reset="smallest" if args.from_beginning else "largest",
            security=args.security,
            zookeeper_credentials=zk_auth.credentials_from_args(args),
        )
        try:
            source.start()
        except GroupKindError as exc:
            print(f"headrace consume: {exc}", file=sys.stderr)
            return 2
    else:
        from consumers.consumer import EARLIEST, LATEST, Consumer

        source = Consumer(**_endpoints(args), auto_offset_reset="earliest")
        partitions = (
            [args.partition]
            if args.partition is not None
            else source.cluster.partitions(args.topic)
        )
        if args.offset is not None:
            start = args.offset
        else:
            start = EARLIEST if args.from_beginning else LATEST
        source.assign([(args.topic, p, start) for p in partitions])
    idle = 0.0
    try:
        while not stop.is_set():
            left = args.max_messages - count if args.max_messages else 100_000
            messages = source.poll(0.5, left)
            idle = 0.0 if messages else idle + 0.5
            batch = {}
            for m in messages:
                value = m.value or b""
                if printer is not None:
                    try:
                        value = printer.render(m.value, f"{m.topic}-{m.partition}@{m.offset}")
                    except RegistryDownError:
                        out.flush()  # what was written is committed; nothing from here on
                        written.update(batch)
                        raise
                if value is not None:
                    if args.print_key:
                        out.write((m.key or b"") + b"\t")
                    out.write(value + b"\n")
                batch[(m.topic, m.partition)] = m
                count += 1
                if args.max_messages and count >= args.max_messages:
                    stop.set()
                    break
            out.flush()
            written.update(batch)
            if args.timeout and idle >= args.timeout:
                break
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except RegistryDownError as err:
        print(f"consumed {count} messages", file=sys.stderr)
        print(f"headrace consume: {err}; stopped before it", file=sys.stderr)
        return 1
    except CorruptBatchError as err:
        print(f"consumed {count} messages", file=sys.stderr)
        print(
            f"headrace consume: {err.topic}-{err.partition}: the record batch at offsets "
            f"{err.first_offset}..{err.last_offset} cannot be decoded ({err.reason}); "
            + (
                "the group's offset stays before it (set "
                f"{offset_path(args.group, err.topic, err.partition)} to {err.next_offset} "
                "to skip it)"
                if args.group and not kafka_group
                else "the group's offset stays before it"
                if kafka_group
                else f"to skip it: --partition {err.partition} --offset {err.next_offset}"
            ),
            file=sys.stderr,
        )
        return 1
    finally:
        if kafka_group:
            _commit_written(source, written)
            source.close()
        elif args.group:
            for m in written.values():
                source.commit(m)
            source.close(failed=True)  # nothing handed over but not written out
        else:
            source.close()
    print(f"consumed {count} messages", file=sys.stderr)
    return 0


def _kafka_group_member(args, written: dict):
    """A member of a group the brokers coordinate (no --zookeeper): it commits only lines
    written out, also before a rebalance hands its partitions to another member."""
    from consumers.kafka_group import KafkaGroupConsumer

    def revoked(owned):
        _commit_written(source, written)
        written.clear()

    source = KafkaGroupConsumer(
        args.group,
        [args.topic],
        args.bootstrap_server or "127.0.0.1:9092",
        on_revoke=revoked,
        auto_commit=False,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        security=args.security,
    )
    return source


def _commit_written(source, written: dict) -> None:
    """Commit the offset after each partition's last line written out; a member fenced
    meanwhile commits nothing (its lines will be read again by the group)."""
    from consumers.coordinator import CommitFailedError, CoordinatorLostError

    try:
        source.commit_offsets({key: m.offset + 1 for key, m in written.items()})
    except (CommitFailedError, CoordinatorLostError) as exc:
        print(f"headrace consume: offsets not committed: {exc}", file=sys.stderr)


def groups(args) -> int:
    """List groups - the paper's ZooKeeper groups, loaders, and Kafka clients' groups that the
    brokers coordinate - with their kind, describe one (kind, members, and per partition the
    committed offset, end offset, lag and owner), or delete one that has no live members."""
    from kazoo.exceptions import NoNodeError, NotEmptyError

    from broker.protocol.offsets import read_kind
    from broker.protocol.zk_client import zookeeper_client
    from consumers.cluster import ClusterClient

    if not args.zookeeper:
        return group_view.groups_by_bootstrap(args)
    if args.action is None and not args.reset_offsets:
        print("headrace groups: say list, describe G, delete G or --reset-offsets", file=sys.stderr)
        return 2
    credentials = zk_auth.credentials_from_args(args)
    zk = zookeeper_client(args.zookeeper, credentials, secure=credentials is not None)
    zk.start(timeout=15)
    cluster = ClusterClient(
        args.bootstrap_server,
        None if args.bootstrap_server else args.zookeeper,
        security=args.security,
        zookeeper_credentials=credentials,
    )
    try:
        if args.reset_offsets:
            return reset_offsets.run(zk, cluster, args)
        try:
            names = set(zk.get_children(CONSUMERS))
        except NoNodeError:
            names = set()
        try:
            cluster.refresh([], allow_auto_create=False)
            protocol = list_groups(cluster)
        except (KafkaError, OSError):
            protocol = {}
        if args.action == "list":
            print(f"{'GROUP':<32} KIND")
            for name in sorted(names | set(protocol)):
                kind = read_kind(zk, name) if name in names else None
                if name in protocol and kind in (None, KAFKA):
                    kind = f"kafka ({protocol[name]})" if protocol[name] else KAFKA
                print(f"{name:<32} {kind or 'offsets only'}")
            return 0
        if not args.group:
            print(f"headrace groups {args.action}: name the group", file=sys.stderr)
            return 2
        group = args.group
        described = describe_group(cluster, group)
        if group not in names and described is None:
            print(f"headrace groups: no group {group}", file=sys.stderr)
            return 1
        ids = members_path(group)
        members = sorted(zk.get_children(ids)) if zk.exists(ids) else []
        kind = read_kind(zk, group) or (KAFKA if described is not None else "offsets only")
        if args.action == "delete":
            live = len(members) + len(described["members"] if described is not None else [])
            if live:
                print(
                    f"headrace groups: group {group} ({kind}) has {live} live member(s); stop "
                    "them before deleting it",
                    file=sys.stderr,
                )
                return 1
            if group not in names:  # an empty group a broker still lists holds nothing
                print(f"headrace groups: no group {group}", file=sys.stderr)
                return 1
            if kind == LOADER and not args.force:
                print(f"headrace groups: {LOADER_WARNING}; add --force", file=sys.stderr)
                return 1
            try:
                zk.delete(group_path(group), recursive=True)
            except NotEmptyError:
                print(
                    f"headrace groups: a member joined {group} while it was being deleted; "
                    "stop it and delete again",
                    file=sys.stderr,
                )
                return 1
            print(
                f"deleted group {group} ({kind}): its offsets and its kind are gone",
                file=sys.stderr,
            )
            return 0
        owners: dict = {}
        subscribed = group_view.subscribed_topics(described)
        if described is not None:
            owners = group_view.print_kafka_group(described, kind)
        else:
            print(f"GROUP {group}: kind {kind}, {len(members)} live members")
        for member in members:
            try:
                data = zk.get(member_path(group, member))[0]
                subscribed.update(decode_consumer(data, member_path(group, member)).subscription)
            except (NoNodeError, ValueError):  # gone since listed, or not a member's node
                continue
        committed = {
            (topic, p): offset
            for topic, partitions in committed_partitions(zk, group).items()
            for p in partitions
            if (offset := read_offset(zk, group, topic, p)[0]) is not None
        }
        group_view.print_partitions(
            cluster,
            committed,
            subscribed,
            lambda t, p: read_owner(zk, group, t, p) or owners.get((t, p), "-"),
        )
        return 0
    finally:
        cluster.close()
        zk.stop()
        zk.close()


def ship(args) -> int:
    from consumers import shipper

    return shipper.run(args)


def add_parsers(sub) -> None:
    """The four subcommands, for headrace.cli."""
    from consumers.producer import audit

    from . import avro_console

    def endpoints(p):
        p.add_argument(
            "--bootstrap-server", help="host:port[,...] of brokers (default 127.0.0.1:9092)"
        )
        p.add_argument("--zookeeper", help="host:port[/chroot]: find brokers (and groups) there")
        zk_auth.add_auth_argument(p)

    def idempotence(p):
        p.add_argument(
            "--idempotence",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="enable.idempotence: each message stored once even when a request is "
            "retried (default: on with --acks all)",
        )

    p = sub.add_parser("produce", help="send stdin lines to a topic")
    endpoints(p)
    p.add_argument("--topic", required=True)
    p.add_argument("--key-field", help="key each JSON line by this field")
    p.add_argument(
        "--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"]
    )
    p.add_argument("--acks", default="all", choices=["0", "1", "all", "-1"])
    idempotence(p)
    audit.add_arguments(p, on_by_default=False)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for delivery")
    avro_console.add_produce_arguments(p)
    p.set_defaults(func=produce)

    p = sub.add_parser("consume", help="print a topic's messages")
    endpoints(p)
    p.add_argument("--topic", required=True)
    p.add_argument(
        "--group",
        help="consume as a member of this group: the paper's ZooKeeper group with "
        "--zookeeper, else a Kafka group the brokers coordinate (--bootstrap-server)",
    )
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--partition", type=int)
    p.add_argument("--offset", type=int)
    p.add_argument("--max-messages", type=int)
    p.add_argument("--timeout", type=float, help="stop after this many idle seconds")
    p.add_argument("--print-key", action="store_true")
    avro_console.add_consume_arguments(p)
    p.set_defaults(func=consume)

    p = sub.add_parser(
        "groups",
        help="list consumer groups, describe one's offsets and lag, "
        "delete one with no live members, or reset its offsets (--reset-offsets)",
    )
    endpoints(p)
    p.add_argument("action", nargs="?", choices=["list", "describe", "delete"])
    p.add_argument("group", nargs="?")
    reset_offsets.add_arguments(p)
    p.set_defaults(func=groups)

    p = sub.add_parser("ship", help="follow log files like tail -F and ship their lines")
    endpoints(p)
    p.add_argument("--topic", required=True)
    p.add_argument("files", nargs="+", help="files or glob patterns")
    p.add_argument("--state-file", default=".headrace-ship.json", help="where read positions live")
    p.add_argument("--key-field", help="key each JSON line by this field")
    p.add_argument(
        "--from-beginning", action="store_true", help="read existing files from the start"
    )
    p.add_argument("--poll-interval", type=float, default=0.2)
    p.add_argument(
        "--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"]
    )
    idempotence(p)
    audit.add_arguments(p, on_by_default=True)
    add_metrics_arguments(p)
    p.set_defaults(func=ship)
