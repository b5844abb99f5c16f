"""The ``headrace load`` subcommand's arguments."""

from __future__ import annotations

import sys

from consumers.metrics import add_metrics_arguments


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = (
        text.strip().lower().rstrip("ib").rstrip("b")
        if text[-1:].lower() in "bB"
        else text.strip().lower()
    )
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "load", help="load topics into Parquet files in a warehouse (any fsspec URL)"
    )
    p.add_argument(
        "--zookeeper", required=True, help="host:port[/chroot] of the cluster's ZooKeeper"
    )
    p.add_argument(
        "--zookeeper-auth-file",
        metavar="FILE",
        help="ZooKeeper digest identity: a JAAS Client section (DigestLoginModule) "
        "or one line user:password",
    )
    p.add_argument(
        "--topic", action="append", required=True, dest="topics", help="a topic (repeatable)"
    )
    p.add_argument(
        "--group", required=True, help="the loader group; its offsets live in /consumers/<group>"
    )
    p.add_argument(
        "--to",
        required=True,
        dest="url",
        help="warehouse URL: a directory, file://, memory://, s3://, hdfs://",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--until-caught-up",
        action="store_true",
        help="load up to the end offsets seen at start, then exit (the default)",
    )
    mode.add_argument("--follow", action="store_true", help="keep loading as events arrive")
    p.add_argument(
        "--interval",
        type=float,
        default=60.0,
        help="with --follow: seconds between plans (default 60)",
    )
    p.add_argument(
        "--value-format",
        "--format",
        dest="format",
        default="json",
        metavar="{json,string,raw,avro}",
        help="how to store values: typed JSON columns, a string column, raw bytes, or typed "
        "columns of schema-registry Avro (needs --schema-registry)",
    )
    p.add_argument(
        "--schema-registry",
        metavar="URL",
        help="with --value-format avro: the schema registry, e.g. http://127.0.0.1:8081",
    )
    p.add_argument(
        "--value-subject",
        help="with --value-format avro: the subject whose latest version reads the values "
        "(default <topic>-value)",
    )
    p.add_argument(
        "--time-field",
        help="JSON or Avro field with the event time (default: the record timestamp)",
    )
    p.add_argument("--schema", dest="schema_file", help="declared schema file (default: inferred)")
    p.add_argument("--max-rows", type=int, default=1_000_000, help="rows per file at most")
    p.add_argument(
        "--max-bytes",
        type=_size,
        default=256 << 20,
        help="input bytes per file at most (e.g. 256M)",
    )
    p.add_argument(
        "--max-open-writers", type=int, default=32, help="open files per partition at most"
    )
    p.add_argument(
        "--max-chunk-bytes",
        type=_size,
        default=256 << 20,
        help="input bytes a partition holds before its files are written (bounds memory)",
    )
    p.add_argument(
        "--allow-gaps",
        action="store_true",
        help="skip offsets deleted by retention before they were loaded (logged)",
    )
    p.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec option for the warehouse, e.g. endpoint_url=http://... (repeatable)",
    )
    p.add_argument(
        "--parquet-compression", default="snappy", choices=["snappy", "zstd", "gzip", "lz4", "none"]
    )
    p.add_argument(
        "--session-timeout-ms",
        type=int,
        default=6000,
        help="ZooKeeper session timeout of each worker (zookeeper.session.timeout.ms)",
    )
    add_metrics_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import logging

    from broker.protocol.zk_client import read_credentials
    from consumers.security import PLAINTEXT

    from .config import ConfigError, LoaderConfig
    from .run import load
    from .storage import parse_storage_options

    level = logging.getLevelName(logging.getLogger().level)
    try:
        config = LoaderConfig(
            zookeeper=args.zookeeper,
            zookeeper_credentials=read_credentials(args.zookeeper_auth_file),
            topics=args.topics,
            group=args.group,
            url=args.url,
            workers=args.workers,
            follow=args.follow,
            interval=args.interval,
            format=args.format,
            time_field=args.time_field,
            schema_registry=args.schema_registry,
            value_subject=args.value_subject,
            schema_file=args.schema_file,
            max_rows=args.max_rows,
            max_bytes=args.max_bytes,
            max_open_writers=args.max_open_writers,
            allow_gaps=args.allow_gaps,
            max_chunk_bytes=args.max_chunk_bytes,
            storage_options=parse_storage_options(args.storage_option),
            parquet_compression=args.parquet_compression,
            session_timeout_ms=args.session_timeout_ms,
            log_level="WARNING" if level == "INFO" else level,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
            security=getattr(args, "security", PLAINTEXT),
            registry_properties={
                key: value
                for key, value in getattr(args, "client_properties", {}).items()
                if key.startswith(("schema.registry.", "basic.auth."))
            },
        )
    except (ConfigError, ValueError) as exc:
        print(f"headrace load: {exc}", file=sys.stderr)
        return 2
    return load(config)
