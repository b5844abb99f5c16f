"""``headrace produce``, ``consume``, ``groups`` and ``ship``: console tools over the client side."""

from __future__ import annotations

import json
import signal
import sys
import threading

from broker.protocol.errors import KafkaError


def _endpoints(args) -> dict:
    if not args.bootstrap_server and not args.zookeeper:
        args.bootstrap_server = "127.0.0.1:9092"
    return {"bootstrap_servers": args.bootstrap_server, "zookeeper": args.zookeeper}


def produce(args) -> int:
    """stdin lines to a topic; with --key-field, JSON lines are keyed by that field."""
    from consumers.producer import Producer

    failures = []
    producer = Producer(**_endpoints(args), compression=args.compression, acks=args.acks)
    count = 0
    try:
        for raw in sys.stdin.buffer:
            line = raw.rstrip(b"\n")
            key = None
            if args.key_field:
                try:
                    value = json.loads(line).get(args.key_field)
                    key = None if value is None else str(value).encode()
                except (ValueError, AttributeError):
                    key = None
            future = producer.send(args.topic, line, key=key)
            future.add_done_callback(lambda f: f.exception() and failures.append(f.exception()))
            count += 1
        left = producer.flush(args.timeout)
    finally:
        producer.close(1)
    if failures or left:
        print(f"headrace produce: {len(failures) + left} of {count} messages not delivered"
              f"{': ' + str(failures[0]) if failures else ''}", file=sys.stderr)
        return 1
    print(f"produced {count} messages to {args.topic}", file=sys.stderr)
    return 0


def consume(args) -> int:
    """A topic to stdout: from a group's offsets, the beginning, the end, or one partition."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out = sys.stdout.buffer
    count = 0
    if args.group:
        from consumers.group import GroupConsumer

        if not args.zookeeper:
            print("headrace consume: --group needs --zookeeper (the group lives there)", file=sys.stderr)
            return 2
        source = GroupConsumer(args.group, [args.topic], args.zookeeper,
                               bootstrap_servers=args.bootstrap_server,
                               auto_offset_reset="smallest" if args.from_beginning else "largest")
        source.start()
    else:
        from consumers.consumer import EARLIEST, LATEST, Consumer

        source = Consumer(**_endpoints(args), auto_offset_reset="earliest")
        partitions = [args.partition] if args.partition is not None else source.cluster.partitions(args.topic)
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
            for m in messages:
                if args.print_key:
                    out.write((m.key or b"") + b"\t")
                out.write((m.value or b"") + b"\n")
                count += 1
                if args.max_messages and count >= args.max_messages:
                    stop.set()
                    break
            out.flush()
            if args.timeout and idle >= args.timeout:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if args.group:
            source.commit()
        source.close()
    print(f"consumed {count} messages", file=sys.stderr)
    return 0


def groups(args) -> int:
    """List groups, or describe one: per partition committed offset, end offset, lag, owner."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoNodeError

    from consumers.cluster import ClusterClient

    if not args.zookeeper:
        print("headrace groups: --zookeeper is needed (groups live there)", file=sys.stderr)
        return 2
    zk = KazooClient(hosts=args.zookeeper)
    zk.start(timeout=15)
    try:
        try:
            names = sorted(zk.get_children("/consumers"))
        except NoNodeError:
            names = []
        if args.action == "list":
            for name in names:
                print(name)
            return 0
        group = args.group
        if group not in names:
            print(f"headrace groups: no group {group}", file=sys.stderr)
            return 1
        cluster = ClusterClient(args.bootstrap_server, None if args.bootstrap_server else args.zookeeper)
        base = f"/consumers/{group}"
        members = sorted(zk.get_children(f"{base}/ids")) if zk.exists(f"{base}/ids") else []
        topics = sorted(zk.get_children(f"{base}/offsets")) if zk.exists(f"{base}/offsets") else []
        print(f"GROUP {group}: {len(members)} live members")
        print(f"{'TOPIC':<24} {'PARTITION':>9} {'COMMITTED':>12} {'END':>12} {'LAG':>10}  OWNER")
        for topic in topics:
            cluster.refresh([topic], allow_auto_create=False)
            for p in sorted(int(x) for x in zk.get_children(f"{base}/offsets/{topic}")):
                committed = int(zk.get(f"{base}/offsets/{topic}/{p}")[0].decode())
                try:
                    end = cluster.list_offset(topic, p, -1)
                    lag = str(max(0, end - committed))
                except (KafkaError, OSError):
                    end, lag = "?", "?"
                try:
                    owner = zk.get(f"{base}/owners/{topic}/{p}")[0].decode()
                except NoNodeError:
                    owner = "-"
                print(f"{topic:<24} {p:>9} {committed:>12} {end!s:>12} {lag:>10}  {owner}")
        cluster.close()
        return 0
    finally:
        zk.stop()
        zk.close()


def ship(args) -> int:
    from consumers import shipper

    return shipper.run(args)


def add_parsers(sub) -> None:
    """The four subcommands, for headrace.cli."""

    def endpoints(p):
        p.add_argument("--bootstrap-server", help="host:port[,...] of brokers (default 127.0.0.1:9092)")
        p.add_argument("--zookeeper", help="host:port[/chroot]: find brokers (and groups) there")

    p = sub.add_parser("produce", help="send stdin lines to a topic")
    endpoints(p)
    p.add_argument("--topic", required=True)
    p.add_argument("--key-field", help="key each JSON line by this field")
    p.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    p.add_argument("--acks", default="1", choices=["0", "1", "all", "-1"])
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for delivery")
    p.set_defaults(func=produce)

    p = sub.add_parser("consume", help="print a topic's messages")
    endpoints(p)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", help="consume as a member of this ZooKeeper group (needs --zookeeper)")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--partition", type=int)
    p.add_argument("--offset", type=int)
    p.add_argument("--max-messages", type=int)
    p.add_argument("--timeout", type=float, help="stop after this many idle seconds")
    p.add_argument("--print-key", action="store_true")
    p.set_defaults(func=consume)

    p = sub.add_parser("groups", help="list consumer groups or describe one's offsets and lag")
    endpoints(p)
    p.add_argument("action", choices=["list", "describe"])
    p.add_argument("group", nargs="?")
    p.set_defaults(func=groups)

    p = sub.add_parser("ship", help="follow log files like tail -F and ship their lines")
    endpoints(p)
    p.add_argument("--topic", required=True)
    p.add_argument("files", nargs="+", help="files or glob patterns")
    p.add_argument("--state-file", default=".headrace-ship.json", help="where read positions live")
    p.add_argument("--key-field", help="key each JSON line by this field")
    p.add_argument("--from-beginning", action="store_true", help="read existing files from the start")
    p.add_argument("--poll-interval", type=float, default=0.2)
    p.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    p.set_defaults(func=ship)
