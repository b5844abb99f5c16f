"""``headrace schema-registry --zookeeper HOST:PORT[/chroot] [--port 8081] [--bind
127.0.0.1]``: a schema registry speaking Confluent's REST API, its data in ZooKeeper so
that several of them serve the same schemas, until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import sys
import warnings

from consumers.metrics import add_metrics_arguments

log = logging.getLogger(__name__)

DEFAULT_PORT = 8081
DEFAULT_BIND = "127.0.0.1"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "schema-registry",
        help="a schema registry (Confluent's REST API) keeping Avro schemas in ZooKeeper",
    )
    p.add_argument("--zookeeper", required=True, help="host:port[,host:port...][/chroot]")
    from ..zk_auth import add_auth_argument

    add_auth_argument(p)
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument(
        "--bind", default=DEFAULT_BIND, help=f"address to listen on (default {DEFAULT_BIND})"
    )
    p.add_argument(
        "--zookeeper-timeout",
        type=float,
        default=15.0,
        help="seconds to wait for ZooKeeper at start (default 15)",
    )
    add_metrics_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from kazoo.exceptions import NoAuthError
    from kazoo.handlers.threading import KazooTimeoutError
    from twisted.internet import error, reactor

    from broker.protocol.zk_client import may_write, read_credentials, zookeeper_client
    from broker.protocol.zookeeper import BROKER_IDS, SCHEMA_IDS, SCHEMA_REGISTRY
    from consumers.metrics import MetricsPortError, serve_metrics

    from .api import Registry
    from .metrics import RegistryMetrics, registry_page
    from .server import build_site
    from .store import SchemaStore

    if not 0 <= args.port < 65536:
        print(f"headrace schema-registry: --port {args.port}: give 0-65535", file=sys.stderr)
        return 2
    try:
        # the registry's nodes are owned by its identity (the brokers'), world-readable
        credentials = read_credentials(args.zookeeper_auth_file)
        zk = zookeeper_client(args.zookeeper, credentials, credentials is not None, timeout=10)
    except ValueError as exc:
        print(f"headrace schema-registry: --zookeeper {args.zookeeper}: {exc}", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():  # a missing chroot is made by ensure_paths below
            warnings.filterwarnings("ignore", "No chroot path exists")
            zk.start(timeout=args.zookeeper_timeout)
    except KazooTimeoutError:
        print(
            f"headrace schema-registry: ZooKeeper at {args.zookeeper} cannot be reached",
            file=sys.stderr,
        )
        zk.close()
        return 1
    if zk.exists(SCHEMA_REGISTRY) is None and zk.exists(BROKER_IDS) is None:
        chroot = "/" + args.zookeeper.partition("/")[2]
        print(
            f"headrace schema-registry: nothing under {chroot} in ZooKeeper {args.zookeeper} "
            "(no brokers registered, no schemas): starting an empty registry there; is this "
            "the cluster's zookeeper.connect?",
            file=sys.stderr,
            flush=True,
        )
    store = SchemaStore(zk)
    try:
        store.ensure_paths()
        owned = may_write(zk, SCHEMA_IDS)
    except NoAuthError:
        owned = False
    if not owned:
        print(
            f"headrace schema-registry: the schema registry's nodes in ZooKeeper "
            f"{args.zookeeper} belong to another ZooKeeper identity (the cluster is secured "
            "with zookeeper.set.acl): give the brokers' identity with --zookeeper-auth-file",
            file=sys.stderr,
        )
        zk.stop()
        zk.close()
        return 2
    metrics = RegistryMetrics(store)
    try:
        page = serve_metrics(registry_page(metrics), args.metrics_port, args.metrics_host)
    except MetricsPortError as exc:
        print(f"headrace schema-registry: {exc}", file=sys.stderr)
        zk.stop()
        zk.close()
        return 2
    try:
        port = reactor.listenTCP(
            args.port, build_site(Registry(store), reactor, metrics), interface=args.bind
        )
    except error.CannotListenError as exc:
        print(
            f"headrace schema-registry: cannot listen on {args.bind}:{args.port}: "
            f"{exc.socketError}",
            file=sys.stderr,
        )
        zk.stop()
        zk.close()
        if page is not None:
            page.close()
        return 2

    def shut_down():
        if page is not None:
            page.close()
        zk.stop()
        zk.close()

    reactor.addSystemEventTrigger("after", "shutdown", shut_down)
    host = args.bind if args.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if page is not None:
        log.info("metrics on http://%s:%d/metrics", page.host, page.port)
    print(f"schema registry at http://{host}:{port.getHost().port}/", flush=True)
    reactor.run()
    return 0
